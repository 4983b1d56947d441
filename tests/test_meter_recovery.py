"""Per-GPU NVML sources that recover: one failing GPU never silences the others, a lost GPU is
retried with backoff and metered again once back, and coverage says how much of the window each
component was metered (faked NVML at the library boundary, a clock that moves only when told)."""
from __future__ import annotations

import pytest

import bench.energy.nvml as nvml_mod
from bench.energy import PowerMeter
from bench.energy.nvml import open_nvml
from tests import fake_pynvml
from tests.fake_pynvml import FakeClock, FakeGpu


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def nvml(monkeypatch):
    fake_pynvml.reset([FakeGpu(uuid="GPU-aaaa", power_w=200.0), FakeGpu(uuid="GPU-bbbb", power_w=100.0)])
    monkeypatch.setattr(nvml_mod, "pynvml", fake_pynvml)
    yield fake_pynvml
    fake_pynvml.reset()


def _run(meter: PowerMeter, clock: FakeClock, nvml, *, lost_from_s: float, back_at_s: float, end_s: float,
         step_s: float = 0.5) -> None:
    """Sample every step_s; GPU 1 falls off the bus over [lost_from_s, back_at_s)."""
    t_s = 0.0
    while t_s < end_s - 1e-9:
        clock.advance(step_s)
        t_s += step_s
        nvml.devices[1].lost = lost_from_s <= t_s + 1e-9 < back_at_s
        meter.sample()


def test_a_lost_counter_gpu_does_not_stop_the_other_and_is_counted_again_on_return(nvml, clock):
    sources, problems = open_nvml(["GPU-aaaa", "GPU-bbbb"], clock=clock)
    assert problems == [] and len(sources) == 2
    meter = PowerMeter(sources, interval_s=0.5, clock=clock, max_failures=5)
    meter.begin_window("w")
    _run(meter, clock, nvml, lost_from_s=2.0, back_at_s=6.0, end_s=10.0)
    m = meter.end_window("w")
    meter.stop()
    # the old shared source dropped BOTH GPUs after five failed reads: gpu0 stopped at 200 W x 2 s
    assert m.energy_j_by_device["gpu0"] == pytest.approx(2000.0)  # 200 W x 10 s, never interrupted
    # the counter kept counting while unreadable: its energy over the gap is still there
    assert m.energy_j_by_device["gpu1"] == pytest.approx(1000.0)
    gap = [g for g in meter.gaps if g.devices == ("gpu1",)]
    assert len(gap) == 1 and gap[0].recovered and gap[0].counted
    # reads failed at 2.0..4.0 (five), backoff 1 s -> 5.0 (failed), 2 s -> 7.0: back
    assert (gap[0].start_s, gap[0].end_s) == pytest.approx((2.0, 7.0))
    assert meter.coverage()["gpu"] == pytest.approx((20.0, 20.0))
    errors = list(meter.errors)
    # each distinct failure once, with its count and first/last time: five reads, then the retry's
    # look-up by UUID at 5.0 s
    assert any(e.startswith("t=2.0s nvml-counter gpu1") and "GPU is lost (x5, last t=4.0s)" in e
               for e in errors), errors
    assert any(e.startswith("t=5.0s") and "HandleByUUID failed: GPU is lost" in e for e in errors), errors
    assert any("gpu1: recovered" in e for e in errors)
    assert not any("gpu0" in e for e in errors)


def test_a_lost_sampled_gpu_is_unmetered_for_its_gap_and_coverage_says_so(nvml, clock):
    nvml.devices[1].counter_supported = False
    sources, _ = open_nvml([0, 1], clock=clock)
    meter = PowerMeter(sources, interval_s=0.5, clock=clock, max_failures=5)
    meter.begin_window("w")
    _run(meter, clock, nvml, lost_from_s=2.0, back_at_s=6.0, end_s=10.0)
    m = meter.end_window("w")
    meter.stop()
    # power integration cannot see the gap: from the last good read (1.5 s) to the return (7.0 s)
    assert m.energy_j_by_device["gpu1"] == pytest.approx(100.0 * (10.0 - 5.5))
    assert m.energy_j_by_device["gpu0"] == pytest.approx(2000.0)
    metered_s, window_s = meter.coverage()["gpu"]
    assert window_s == pytest.approx(20.0)           # two GPUs x 10 s
    assert metered_s / window_s == pytest.approx((20.0 - 5.5) / 20.0)  # 0.725


def test_a_gpu_lost_until_the_end_is_retried_with_backoff_not_every_tick(nvml, clock):
    sources, _ = open_nvml([0, 1], clock=clock)
    meter = PowerMeter(sources, interval_s=0.1, clock=clock, max_failures=5)
    nvml.devices[1].lost = True
    calls_before = len(nvml.calls)
    for _ in range(3000):  # five minutes at 0.1 s
        clock.advance(0.1)
        meter.sample()
    reads = nvml.calls[calls_before:].count("nvmlDeviceGetTotalEnergyConsumption")
    # gpu0 read every tick (3000); gpu1 five times, then at most once per 30 s after the ramp
    assert 3000 < reads < 3000 + 5 + 8 + 12
    cov_s, window_s = meter.coverage()["gpu"]
    assert cov_s / window_s == pytest.approx(0.5, abs=0.01)
    meter.stop()
    assert meter.gaps[-1].devices == ("gpu1",) and not meter.gaps[-1].recovered
