"""Two runs side by side on one faked RAPL tree: static power (the idle floor, the RAM model) is
split by allocated CPUs, dynamic power by CPU time, and the runs' charges plus their unattributed
parts add up to the machine's metered energy."""
from __future__ import annotations

from pathlib import Path

import pytest

from bench.energy import PowerMeter
from bench.energy.attribution import Interval, charge_j
from bench.energy.callback import EnergyCallback
from bench.energy.estimate import RamEstimateSource
from bench.energy.rapl import open_rapl
from spikerl.callbacks import EndEvent, ProgressEvent, RunInfo
from tests.fake_rapl import make_zone, set_energy_uj

IDLE_PACKAGE_W = 20.0
RAM_W = 12.0


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _probe(own_s_per_s: float, busy_s_per_s: float, clock: Clock):
    class Probe:
        """The run's CPU seconds and the machine's busy CPU seconds, per second of the clock."""

        def __init__(self, **kw):
            self.t0 = clock.t
            self.foreign_cpu_s = self.observed_cpu_s = 0.0
            self.foreign_gpu_processes = 0
            self.error = None

        def sample(self) -> None:
            pass

        @property
        def own_cpu_s(self) -> float:
            return own_s_per_s * (clock.t - self.t0)

        @property
        def machine_busy_cpu_s(self) -> float:
            return busy_s_per_s * (clock.t - self.t0)
    return Probe


def _run(powercap: Path, clock: Clock, own_s_per_s: float) -> EnergyCallback:
    def factory(**kw) -> PowerMeter:
        rapl, reason = open_rapl(powercap, clock=clock)
        assert rapl is not None, reason
        rapl.static_w = IDLE_PACKAGE_W  # the package's idle power, as an idle baseline measures it
        return PowerMeter([rapl, RamEstimateSource(power_w=RAM_W, clock=clock)], interval_s=None, clock=clock)

    # 16 CPUs; each run pinned to 4; the machine busy 5 CPU s per s: 3 + 1 from the runs, 1 foreign
    return EnergyCallback(codecarbon=False, concurrent_runs=2, allocated_cpu_share=4 / 16,
                          meter_factory=factory, probe_factory=_probe(own_s_per_s, 5.0, clock))


def test_two_runs_side_by_side_add_up_to_the_machines_energy(tmp_path):
    powercap = tmp_path / "powercap"
    zone = make_zone(powercap, "intel-rapl:0", "package-0", 1_000_000)
    clock = Clock()
    heavy, light = _run(powercap, clock, 3.0), _run(powercap, clock, 1.0)
    info = RunInfo(run_dir=None, method="mlp", env_id="HalfCheetah-v4", seed=0, total_steps=10)
    for cb in (heavy, light):
        cb.on_train_start(info)
    for k in range(1, 11):  # 10 s at 100 W on the package
        clock.t += 1.0
        set_energy_uj(zone, 1_000_000 + k * 100_000_000)
        for cb in (heavy, light):
            cb.on_progress(ProgressEvent(step=k, wall_s=float(k), episodes=0, train_return=None, sps=1.0,
                                         updates=0, losses={}))
    for cb in (heavy, light):
        cb.on_train_end(EndEvent(step=10, wall_s=10.0, status="complete"))
    h, lt = heavy.result_fields(), light.result_fields()
    # package 1000 J = 200 J static (20 W idle) + 800 J dynamic; RAM 120 J, all static
    # heavy: 200 x 4/16 + 800 x 3/5 = 530 J CPU, 120 x 4/16 = 30 J RAM
    assert (h["cpu_energy_j"], h["ram_energy_j"]) == pytest.approx((530.0, 30.0))
    # light: 50 + 800 x 1/5 = 210 J CPU, 30 J RAM. Split by CPU time alone it would be 280 J: the
    # idle floor no longer follows the CPU-heavy run
    assert (lt["cpu_energy_j"], lt["ram_energy_j"]) == pytest.approx((210.0, 30.0))
    machine_j = 1000.0 + 120.0
    runs_j = h["cpu_energy_j"] + h["ram_energy_j"] + lt["cpu_energy_j"] + lt["ram_energy_j"]
    remainder_j = h["unattributed_j"] + lt["unattributed_j"]
    # nobody was charged: the 8 unallocated CPUs' static 100 J + RAM 60 J, the foreign 1 CPU s/s: 160 J
    assert remainder_j == pytest.approx(320.0)
    assert runs_j + remainder_j == pytest.approx(machine_j)


def test_charge_splits_static_by_allocation_and_dynamic_by_cpu_time():
    assert charge_j(Interval(100.0, 30.0), 0.25, 0.5) == pytest.approx(30 * 0.25 + 70 * 0.5)
    assert charge_j(Interval(10.0, 30.0), 0.25, 0.5) == pytest.approx(2.5)  # static never above the energy
