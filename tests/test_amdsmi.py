"""AMD GPUs through amdsmi, against a fake at the library boundary (tests/fake_amdsmi.py): the
energy accumulator times its counter resolution, power integration where there is no counter,
the same schema, coverage and recovery as NVML."""
from __future__ import annotations

import pytest

import bench.energy.amdsmi as amd_mod
import bench.energy.nvml as nvml_mod
from bench.energy import PowerMeter
from bench.energy.amdsmi import AmdsmiCounterSource, AmdsmiPowerSource, energy_j, open_amdsmi
from tests import fake_amdsmi
from tests.fake_amdsmi import FakeAmdGpu


class Clock:
    def __init__(self) -> None:
        self.t = 50.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds
        fake_amdsmi.advance(seconds)


@pytest.fixture
def amd(monkeypatch):
    fake_amdsmi.reset([FakeAmdGpu(uuid="amd-0", power_w=500.0),
                       FakeAmdGpu(uuid="amd-1", power_w=300.0, counter_supported=False)])
    monkeypatch.setattr(amd_mod, "load", lambda: fake_amdsmi)
    monkeypatch.setattr(nvml_mod, "pynvml", None)  # no NVIDIA driver here
    yield fake_amdsmi
    fake_amdsmi.reset()


def test_energy_is_the_accumulator_times_its_resolution():
    assert energy_j({"energy_accumulator": 1_000_000, "counter_resolution": 15.3}) == pytest.approx(15.3)
    assert energy_j({"power": 2_000_000, "counter_resolution": 1.0}) == pytest.approx(2.0)  # older releases


def test_meter_on_an_amd_machine_uses_the_counter_or_power(amd):
    clock = Clock()
    meter = PowerMeter.create(gpu_ids=["amd-0", 1], cpu="none", interval_s=None, clock=clock)
    assert [type(s) for s in meter._sources] == [AmdsmiCounterSource, AmdsmiPowerSource]
    meter.begin_window("w")
    for _ in range(4):
        clock.advance(0.5)
        meter.sample()
    m = meter.end_window("w")
    meter.stop()
    assert m.energy_j_by_device["gpu0"] == pytest.approx(1000.0, abs=0.01)  # 500 W x 2 s, from ticks
    assert m.energy_j_by_device["gpu1"] == pytest.approx(600.0)             # 300 W x 2 s, integrated
    assert m.source == "amdsmi-counter+amdsmi-power" and not m.estimated
    assert meter.device_uuids() == {"gpu0": "amd-0", "gpu1": "amd-1"}
    assert amd.initialised == 0


def test_a_lost_amd_gpu_is_retried_and_its_counter_counted_on_return(amd):
    clock = Clock()
    sources, problems = open_amdsmi([0], clock=clock)
    assert problems == []
    meter = PowerMeter(sources, interval_s=0.5, clock=clock, max_failures=2)
    meter.begin_window("w")
    for k in range(1, 21):  # 10 s; lost over [2, 5)
        clock.advance(0.5)
        amd.devices[0].lost = 2.0 <= k * 0.5 < 5.0
        meter.sample()
    m = meter.end_window("w")
    meter.stop()
    assert m.energy_j_by_device["gpu0"] == pytest.approx(5000.0, abs=0.05)
    assert meter.coverage()["gpu"] == pytest.approx((10.0, 10.0))
    assert meter.gaps[0].recovered and meter.gaps[0].counted


def test_no_amdsmi_installed_is_one_reason():
    sources, problems = open_amdsmi([0])
    assert sources == [] and "spikerl-bench[amd]" in problems[0]
