"""CPU energy scoped to what it covers: RAPL's contention is measured over every CPU of its
metered packages, and the estimate's TDP is scaled to the run's allocated CPUs (faked powercap and
CPU topology trees)."""
from __future__ import annotations

from pathlib import Path

import pytest

import bench.energy.estimate as estimate_mod
import bench.energy.scope as scope_mod
from bench.energy import PowerMeter
from bench.energy.callback import EnergyCallback
from bench.energy.estimate import EstimateSource, TdpInfo
from bench.energy.rapl import open_rapl
from spikerl.callbacks import EndEvent, RunInfo
from tests.fake_rapl import make_zone


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def topology(tmp_path: Path, monkeypatch) -> Path:
    """8 logical CPUs: 0-3 on package 0, 4-7 on package 1."""
    root = tmp_path / "cpu"
    for i in range(8):
        (root / f"cpu{i}" / "topology").mkdir(parents=True)
        (root / f"cpu{i}" / "topology" / "physical_package_id").write_text(f"{i // 4}\n")
    (root / "cpufreq").mkdir()  # not a CPU
    monkeypatch.setattr(scope_mod, "CPU_SYSFS", root)
    return root


def test_rapl_covers_every_cpu_of_its_packages_and_the_probe_is_told(tmp_path, topology):
    powercap = tmp_path / "powercap"
    make_zone(powercap, "intel-rapl:0", "package-0", 1_000_000)
    clock = Clock()
    rapl, reason = open_rapl(powercap, clock=clock)
    assert reason is None and rapl.cpus == [0, 1, 2, 3]
    made: list[dict] = []

    class RecordingProbe:
        foreign_cpu_s = observed_cpu_s = own_cpu_s = machine_busy_cpu_s = 0.0
        foreign_gpu_processes = 0
        error = None

        def __init__(self, **kw):
            made.append(kw)

        def sample(self) -> None:
            pass

    cb = EnergyCallback(codecarbon=False, probe_factory=RecordingProbe,
                        meter_factory=lambda **kw: PowerMeter([rapl], interval_s=None, clock=clock))
    cb.on_train_start(RunInfo(run_dir=None, method="mlp", env_id="HalfCheetah-v4", seed=0, total_steps=10))
    cb.on_train_end(EndEvent(step=10, wall_s=1.0, status="complete"))
    # before: the probe read the run's own affinity CPUs, whatever the package RAPL metered
    assert made[0]["cpus"] == [0, 1, 2, 3]


def test_estimate_tdp_is_scaled_by_allocated_over_machine_cpus(monkeypatch):
    monkeypatch.setattr(estimate_mod, "lookup_tdp", lambda: TdpInfo(200.0, "Test CPU", "codecarbon cpu_power.csv"))
    monkeypatch.setattr(estimate_mod, "machine_cpus", lambda: list(range(64)))
    clock = Clock()
    src = EstimateSource(load_fn=lambda: 1.0, clock=clock, cpus=[0, 1, 2, 3])
    assert src.tdp.tdp_w == pytest.approx(200.0 * 4 / 64)  # 12.5 W; before: all 200 W
    assert "scaled by 4/64 allocated CPUs" in src.model
    clock.t += 2.0
    assert src.read_energy_j()["cpu"] == pytest.approx(12.5 * 2.0)  # full load: TDP x 1.0
    assert src.static_w == pytest.approx(1.25)  # the idle floor, 0.1 x TDP
    whole = EstimateSource(load_fn=lambda: 1.0, clock=clock, cpus=list(range(64)))
    assert whole.tdp.tdp_w == 200.0 and "scaled" not in whole.model
