"""The context that makes a number reproducible: an idle baseline before training with gross and
dynamic energy per component, the NVML counter checked against integrated power, and the GPUs'
temperature, SM clock and power limit at the start and end (faked NVML and RAPL)."""
from __future__ import annotations

import pytest

import bench.energy.nvml as nvml_mod
from bench.energy import PowerMeter
from bench.energy.callback import EnergyCallback
from bench.energy.nvml import open_nvml
from bench.energy.rapl import open_rapl
from spikerl.callbacks import EndEvent, RunInfo
from tests import fake_pynvml
from tests.fake_pynvml import FakeGpu
from tests.fake_rapl import make_zone, set_energy_uj


class Machine:
    """One clock for the fake GPUs and the fake RAPL package."""

    def __init__(self, zone) -> None:
        self.t = 10.0
        self.zone = zone
        self.package_w = 20.0
        self.package_uj = 1_000_000

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds
        fake_pynvml.advance(seconds)
        self.package_uj += int(round(self.package_w * seconds * 1e6))
        set_energy_uj(self.zone, self.package_uj)


@pytest.fixture
def machine(tmp_path, monkeypatch):
    fake_pynvml.reset([FakeGpu(uuid="GPU-aaaa", power_w=50.0),
                       FakeGpu(uuid="GPU-bbbb", power_w=30.0, counter_bias=1.1, temperature_c=60)])
    monkeypatch.setattr(nvml_mod, "pynvml", fake_pynvml)
    zone = make_zone(tmp_path / "powercap", "intel-rapl:0", "package-0", 1_000_000)
    yield Machine(zone)
    fake_pynvml.reset()


def test_idle_baseline_dynamic_energy_counter_check_and_gpu_state(machine, tmp_path):
    made: list[PowerMeter] = []

    def factory(**kw) -> PowerMeter:
        gpus, _ = open_nvml(kw["gpu_ids"], clock=machine)
        rapl, _ = open_rapl(tmp_path / "powercap", clock=machine)
        made.append(PowerMeter([*gpus, rapl], interval_s=None, clock=machine))
        return made[-1]

    cb = EnergyCallback(codecarbon=False, gpu_ids=["GPU-aaaa", "GPU-bbbb"], cpu="rapl", ram="none",
                        idle_window_s=10.0, sleep_fn=machine.advance, meter_factory=factory)
    cb.on_train_start(RunInfo(run_dir=None, method="mlp", env_id="HalfCheetah-v4", seed=0, total_steps=10))
    # training: the GPUs at 200 W and 100 W, the package at 100 W, for 10 s
    fake_pynvml.devices[0].power_w, fake_pynvml.devices[1].power_w = 200.0, 100.0
    machine.package_w = 100.0
    fake_pynvml.devices[0].temperature_c = 80
    made[0].sample()  # the step in power lands on a read
    for _ in range(10):
        machine.advance(1.0)
        made[0].sample()
    cb.on_train_end(EndEvent(step=10, wall_s=10.0, status="complete"))
    r = cb.result_fields()
    assert r["idle_window_s"] == 10.0
    assert r["gpu_idle_power_w"] == pytest.approx(50.0 + 30.0 * 1.1)  # the counter's view of GPU 1
    assert r["cpu_idle_power_w"] == pytest.approx(20.0)
    assert r["gpu_energy_j"] == pytest.approx(2000.0 + 1100.0)
    assert r["gpu_dynamic_energy_j"] == pytest.approx(3100.0 - 83.0 * 10.0)
    assert r["cpu_energy_j"] == pytest.approx(1000.0)
    assert r["cpu_dynamic_energy_j"] == pytest.approx(1000.0 - 20.0 * 10.0)
    # GPU 1's counter runs 10 % fast against its power readings: flagged
    assert r["gpu_counter_power_ratio"] == pytest.approx(1.1, abs=1e-6)
    assert "counter / power = 1.100" in r["meter_errors"]
    # the package's idle power became its static power (runs side by side share it by allocation)
    assert made[0]._sources[-1].static_w == pytest.approx(20.0)
    state = r["gpu_state"]
    assert state["start"]["GPU-aaaa"] == {"temperature_c": 45.0, "sm_clock_mhz": 1755.0, "power_limit_w": 700.0}
    assert state["end"]["GPU-aaaa"]["temperature_c"] == 80.0 and state["end"]["GPU-bbbb"]["temperature_c"] == 60.0


def test_no_idle_window_leaves_the_baseline_columns_empty(machine, tmp_path):
    def factory(**kw) -> PowerMeter:
        rapl, _ = open_rapl(tmp_path / "powercap", clock=machine)
        return PowerMeter([rapl], interval_s=None, clock=machine)

    cb = EnergyCallback(codecarbon=False, cpu="rapl", meter_factory=factory)
    cb.on_train_start(RunInfo(run_dir=None, method="mlp", env_id="HalfCheetah-v4", seed=0, total_steps=10))
    machine.advance(2.0)
    cb.on_train_end(EndEvent(step=10, wall_s=2.0, status="complete"))
    r = cb.result_fields()
    assert r["idle_window_s"] is None and r["cpu_idle_power_w"] is None and r["cpu_dynamic_energy_j"] is None
    assert r["cpu_energy_j"] == pytest.approx(40.0) and "gpu_state" not in r


def _two_gpu_totals(idle_w_gpu1: float) -> object:
    from bench.energy.totals import EnergyTotals

    acc = {"train_j": 800.0, "eval_j": 0.0, "other_j": 0.0, "metered_s": 10.0, "window_s": 10.0,
           "check_counter_j": 0.0, "check_power_j": 0.0}
    return EnergyTotals(train_energy_j=1600.0, gpu_energy_j=1600.0, components=["gpu"],
                        component_estimated={"gpu": False}, idle_window_s=10.0, idle_baseline="sweep",
                        gpus={"GPU-a": {**acc, "idle_w": 50.0, "idle_j": 500.0},
                              "GPU-b": {**acc, "idle_w": idle_w_gpu1, "idle_j": idle_w_gpu1 * 10.0}})


def test_a_gpu_missing_from_the_idle_baseline_leaves_gpu_dynamic_energy_empty_not_gross():
    """A sweep baseline that lacked one GPU (noted at the start) gives it no idle figure: the GPUs'
    idle power and dynamic energy are then unknown, not 'idle 0 W, so all of its energy is dynamic'."""
    from bench.energy.meter_fields import meter_fields

    energy = {"gpu_energy_j": 1600.0, "gpu_estimated": False}
    both = meter_fields(_two_gpu_totals(40.0), energy)
    assert both["gpu_idle_power_w"] == 90.0 and both["gpu_dynamic_energy_j"] == 1600.0 - 900.0
    one = meter_fields(_two_gpu_totals(0.0), energy)
    assert one["gpu_idle_power_w"] is None and one["gpu_dynamic_energy_j"] is None
    assert one["gpu_coverage"] == 1.0 and one["gpu_devices_metered"] == 2  # what was metered still stands
