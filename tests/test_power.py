"""Power meter, vendor sources (faked at the boundary) and the EnergyCallback."""
from __future__ import annotations

import csv
import os
import socket
import time
from pathlib import Path

import pytest
import torch

import bench.energy.nvml as nvml_mod
from bench.energy import EnergySource, EnergySourceError, Measurement, PowerMeter
from bench.energy.base import PowerIntegrator
from bench.energy.callback import EnergyCallback
from bench.energy.estimate import CpuLoad, EstimateSource, load_power_w, lookup_tdp
from bench.energy.nvml import NvmlCounterSource, NvmlSampledSource, open_nvml
from bench.energy.rapl import RaplSource, find_package_zones, open_rapl, wrapped_delta_uj
from bench.schema import ENERGY_COLUMNS, METER_COLUMNS, POWER_COLUMNS
from spikerl.callbacks import EndEvent, EvalEvent, ProgressEvent, RunInfo
from tests import fake_pynvml
from tests.dist_workers import end_worker
from tests.fake_pynvml import FakeClock, FakeGpu
from tests.fake_rapl import make_zone, set_energy_uj


class ConstantSource(EnergySource):
    """A source at constant power; can be told to fail its next reads."""

    def __init__(self, devices: list[str], power_w: float, clock, *, source: str = "rapl",
                 estimated: bool = False):
        self.devices = devices
        self.source = source
        self.estimated = estimated
        self.power_w = power_w
        self.fail_reads = 0
        self._integ = PowerIntegrator(devices, mode="hold", clock=clock)
        self._integ.add({d: power_w for d in devices})
        self.closed = False

    def read_energy_j(self) -> dict[str, float]:
        if self.fail_reads:
            self.fail_reads -= 1
            raise EnergySourceError("device went away")
        return self._integ.add({d: self.power_w for d in self.devices})

    def read_power_w(self) -> dict[str, float]:
        return {d: self.power_w for d in self.devices}

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake_nvml(monkeypatch):
    fake_pynvml.reset([FakeGpu(uuid="GPU-aaaa", power_w=200.0), FakeGpu(uuid="GPU-bbbb", power_w=100.0)])
    monkeypatch.setattr(nvml_mod, "pynvml", fake_pynvml)
    yield fake_pynvml
    fake_pynvml.reset()


# ----------------------------------------------------------------------------- RAPL


@pytest.fixture
def powercap(tmp_path: Path) -> Path:
    root = tmp_path / "powercap"
    make_zone(root, "intel-rapl:0", "package-0", 999_000_000, max_uj=1_000_000_000)
    make_zone(root, "intel-rapl:0/intel-rapl:0:0", "core", 5_000_000)
    make_zone(root, "intel-rapl:0/intel-rapl:0:2", "dram", 7_000_000)
    make_zone(root, "intel-rapl:0:1", "uncore", 8_000_000)  # some kernels flatten subzones as links
    make_zone(root, "intel-rapl:1", "package-1", 10_000_000)
    make_zone(root, "intel-rapl:2", "psys", 50_000_000)
    make_zone(root, "intel-rapl-mmio:0", "package-0", 1_000)
    return root


def test_rapl_finds_package_zones_only(powercap):
    zones = find_package_zones(powercap)
    assert [z.name for z in zones] == ["package-0", "package-1"]
    assert [z.device for z in zones] == ["cpu-package-0", "cpu-package-1"]
    assert zones[0].max_energy_range_uj == 1_000_000_000


def test_rapl_wraparound_arithmetic():
    assert wrapped_delta_uj(100, 350, 1000) == 250
    assert wrapped_delta_uj(900, 150, 1000) == 250  # 100 to the wrap, 150 after it
    assert wrapped_delta_uj(5, 5, 1000) == 0


def test_rapl_source_counts_through_a_wrap(powercap, clock):
    src = RaplSource(find_package_zones(powercap), clock=clock)
    clock.advance(1.0)
    set_energy_uj(powercap / "intel-rapl:0", 3_000_000)   # wrapped: 1e9 - 999e6 + 3e6 = 4e6 uJ = 4 J
    set_energy_uj(powercap / "intel-rapl:1", 16_000_000)  # +6 J
    set_energy_uj(powercap / "intel-rapl:2", 90_000_000)  # psys must not count
    assert src.read_energy_j() == pytest.approx({"cpu-package-0": 4.0, "cpu-package-1": 6.0})
    assert src.read_power_w() == pytest.approx({"cpu-package-0": 4.0, "cpu-package-1": 6.0})


def test_rapl_in_meter_window(powercap, clock):
    meter = PowerMeter.create(cpu="rapl", rapl_root=powercap, interval_s=None, clock=clock)
    meter.begin_window("w")
    clock.advance(2.0)
    set_energy_uj(powercap / "intel-rapl:0", 1_000_000)  # wrap: 1 J + 1 J
    set_energy_uj(powercap / "intel-rapl:1", 30_000_000)  # 20 J
    m = meter.end_window("w")
    meter.stop()
    assert m.source == "rapl" and not m.estimated
    assert m.cpu_energy_j == pytest.approx(22.0) and m.gpu_energy_j == 0.0
    assert m.avg_power_w == pytest.approx(11.0)


def test_rapl_dram_zones_only_on_request(powercap, clock):
    default, _ = open_rapl(powercap, clock=clock)
    assert default is not None and default.devices == ["cpu-package-0", "cpu-package-1"]
    os.symlink(powercap / "intel-rapl:0/intel-rapl:0:2", powercap / "intel-rapl:0:2")  # as the kernel lists it
    src, _ = open_rapl(str(powercap), clock=clock, dram=True)
    assert src is not None and src.devices == ["cpu-package-0", "cpu-package-1", "ram-dram-0"]
    clock.advance(1.0)
    set_energy_uj(powercap / "intel-rapl:0/intel-rapl:0:2", 9_000_000)
    assert src.read_energy_j()["ram-dram-0"] == pytest.approx(2.0)
    # result.json has no RAM column yet, so the harness's meter leaves DRAM out.
    meter = PowerMeter.create(cpu="rapl", rapl_root=powercap, interval_s=None, clock=clock)
    assert set(meter.energy_j_by_device()) == {"cpu-package-0", "cpu-package-1"}
    meter.stop()
    # An unreadable DRAM zone costs the RAM figure only, never the CPU one.
    dram_uj = powercap / "intel-rapl:0/intel-rapl:0:2/energy_uj"
    dram_uj.unlink()
    dram_uj.mkdir()
    src, reason = open_rapl(powercap, clock=clock, dram=True)
    assert reason is None and src is not None and src.devices == ["cpu-package-0", "cpu-package-1"]


def test_meter_takes_str_paths(powercap, clock):
    meter = PowerMeter.create(cpu="rapl", rapl_root=str(powercap), interval_s=None, clock=clock,
                              csv_path="seed0/power.csv")  # relative to the test's folder
    clock.advance(1.0)
    set_energy_uj(powercap / "intel-rapl:1", 13_000_000)
    meter.sample()
    meter.stop()
    with Path("seed0/power.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == POWER_COLUMNS
    assert {r["device"]: float(r["energy_j"]) for r in rows} == {"cpu-package-0": 0.0, "cpu-package-1": 3.0}


def test_rapl_unreadable_is_reported_with_a_fix(powercap, monkeypatch, clock):
    real_read_text = Path.read_text

    def read_text(self, *a, **k):
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_text(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", read_text)
    src, reason = open_rapl(powercap)
    assert src is None
    assert "PermissionError" in reason and "root" in reason and "estimate" in reason
    with pytest.raises(EnergySourceError, match="RAPL requested"):
        PowerMeter.create(cpu="rapl", rapl_root=powercap, interval_s=None, clock=clock)
    meter = PowerMeter.create(cpu="auto", rapl_root=powercap, interval_s=None, clock=clock, tdp_w=50.0)
    assert meter.source == "estimate" and meter.estimated
    meter.stop()


def test_rapl_absent(tmp_path):
    src, reason = open_rapl(tmp_path / "nothing")
    assert src is None and "no RAPL package zones" in reason


# ----------------------------------------------------------------------------- NVML


def test_nvml_counter_energy_per_gpu(fake_nvml, clock):
    sources, problems = open_nvml([0, 1], clock=clock)
    assert problems == []
    # one source per GPU, each carrying its UUID (a shared source let one GPU silence the others)
    assert [type(s) for s in sources] == [NvmlCounterSource, NvmlCounterSource]
    assert [s.uuids for s in sources] == [{"gpu0": "GPU-aaaa"}, {"gpu1": "GPU-bbbb"}]
    meter = PowerMeter(sources, interval_s=None, clock=clock)
    meter.begin_window("w")
    clock.advance(2.5)
    m = meter.end_window("w")
    assert m.energy_j_by_device == pytest.approx({"gpu0": 500.0, "gpu1": 250.0})
    assert m.source == "nvml-counter" and not m.estimated
    assert m.gpu_energy_j == pytest.approx(750.0) and m.duration_s == pytest.approx(2.5)
    assert [s.read_power_w() for s in sources] == [{"gpu0": 200.0}, {"gpu1": 100.0}]
    meter.stop()
    assert fake_nvml.init_count == 0  # every nvmlInit got its nvmlShutdown


def test_a_sampler_tick_queries_each_gpus_power_once(fake_nvml, clock, tmp_path):
    """The counter check and the power trace share one nvmlDeviceGetPowerUsage per GPU per tick."""
    sources, _ = open_nvml([0, 1], clock=clock)
    meter = PowerMeter(sources, interval_s=None, csv_path=tmp_path / "power.csv", clock=clock)
    meter.start()
    fake_nvml.calls.clear()
    for _ in range(4):
        clock.advance(1.0)
        meter.sample()
    assert fake_nvml.calls.count("nvmlDeviceGetPowerUsage") == 4 * 2
    meter.stop()
    with open(tmp_path / "power.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["device"] == "gpu1"]
    assert len(rows) >= 4 and {float(r["power_w"]) for r in rows} == {100.0}  # every tick keeps its power


def test_nvml_strings_are_text_from_old_and_new_bindings():
    assert nvml_mod.as_text(b"GPU-aaaa") == "GPU-aaaa" and nvml_mod.as_text("GPU-aaaa") == "GPU-aaaa"


def test_nvml_sampled_fallback_when_counter_not_supported(fake_nvml, clock):
    fake_nvml.devices[1].counter_supported = False  # pre-Volta
    sources, problems = open_nvml([0, 1], clock=clock)
    assert problems == []
    assert sorted(type(s).__name__ for s in sources) == ["NvmlCounterSource", "NvmlSampledSource"]
    meter = PowerMeter(sources, interval_s=None, clock=clock)
    meter.begin_window("w")
    for _ in range(4):
        clock.advance(0.5)
        meter.sample()
    fake_nvml.devices[1].power_w = 300.0  # a step: the trapezoid splits the interval around it
    clock.advance(1.0)
    m = meter.end_window("w")
    meter.stop()
    assert m.energy_j_by_device["gpu0"] == pytest.approx(600.0)                # counter: 200 W x 3 s
    assert m.energy_j_by_device["gpu1"] == pytest.approx(100 * 2 + 0.5 * (100 + 300) * 1)
    assert m.source == "nvml-counter+nvml-sampled"
    assert isinstance(sources[1], NvmlSampledSource) and sources[1].source == "nvml-sampled"


def test_nvml_by_uuid_maps_to_nvml_index(fake_nvml, clock):
    sources, _ = open_nvml(["GPU-bbbb"], clock=clock)
    assert sources[0].devices == ["gpu1"]
    sources[0].close()


def test_nvml_missing_library_gives_no_sources(monkeypatch, clock):
    fake_pynvml.reset([FakeGpu()], fail_init=fake_pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    monkeypatch.setattr(nvml_mod, "pynvml", fake_pynvml)
    sources, problems = open_nvml([0], clock=clock)
    assert sources == [] and "NVML unavailable" in problems[0] and "Library Not Found" in problems[0]


def test_nvml_package_absent_meter_degrades_to_estimate(monkeypatch, clock, tmp_path):
    monkeypatch.setattr(nvml_mod, "pynvml", None)
    meter = PowerMeter.create(gpu_ids=[0], rapl_root=tmp_path, interval_s=None, clock=clock, tdp_w=40.0)
    assert meter.source == "estimate" and meter.estimated
    assert any("NVML unavailable" in e and "nvidia-ml-py" in e for e in meter.errors)
    meter.stop()


def test_nvml_device_without_power_or_counter_is_reported(fake_nvml, clock):
    fake_nvml.devices[0].counter_supported = False
    fake_nvml.devices[0].power_supported = False
    sources, problems = open_nvml([0, 1, 7], clock=clock)
    assert [s.devices for s in sources] == [["gpu1"]]
    assert any("gpu0" in p and "not measured" in p for p in problems)
    assert any(p.startswith("GPU 7") for p in problems)
    for s in sources:
        s.close()
    assert fake_nvml.init_count == 0


def test_failing_counter_records_gap_and_counts_energy_after_recovery(fake_nvml, clock):
    sources, _ = open_nvml([0], clock=clock)
    meter = PowerMeter(sources, interval_s=None, clock=clock, max_failures=5)
    meter.begin_window("w")
    fake_nvml.devices[0].fail_reads = 2
    for _ in range(3):
        clock.advance(1.0)
        meter.sample()
    m = meter.end_window("w")
    meter.stop()
    assert m.energy_j_by_device["gpu0"] == pytest.approx(600.0)  # the counter kept counting
    assert len(meter.gaps) == 1 and meter.gaps[0].recovered
    # reads at t=1 and t=2 failed, t=3 succeeded: the gap runs from the first failure to recovery
    assert meter.gaps[0].end_s - meter.gaps[0].start_s == pytest.approx(2.0)
    assert "GPU is lost" in meter.errors[0]


def test_failing_cpu_source_degrades_to_estimate(clock):
    rapl_like = ConstantSource(["cpu-package-0"], 30.0, clock)
    meter = PowerMeter([rapl_like], interval_s=None, clock=clock, max_failures=3,
                       fallback=lambda: EstimateSource(tdp_w=20.0, load_fn=lambda: 1.0, clock=clock))
    meter.begin_window("w")
    clock.advance(1.0)
    meter.sample()                      # 30 J from RAPL
    rapl_like.fail_reads = 100
    for _ in range(3):                  # three failures: dropped, estimate takes over
        clock.advance(1.0)
        meter.sample()
    clock.advance(2.0)
    m = meter.end_window("w")
    meter.stop()
    assert rapl_like.closed
    assert m.energy_j_by_device["cpu-package-0"] == pytest.approx(30.0)
    assert m.energy_j_by_device["cpu"] == pytest.approx(40.0)  # 20 W at full load for 2 s
    assert m.estimated and m.source == "estimate+rapl"
    assert any("dropped" in e and "estimated" in e for e in meter.errors)
    assert meter.gaps and not meter.gaps[-1].recovered


# ----------------------------------------------------------------------------- windows


def test_window_api_overlap_duplicate_unknown_cancel(clock):
    meter = PowerMeter([ConstantSource(["gpu0"], 100.0, clock, source="nvml-counter")], interval_s=None,
                       clock=clock)
    meter.begin_window("a")
    clock.advance(1.0)
    meter.begin_window("b")
    with pytest.raises(ValueError, match="already open"):
        meter.begin_window("b")
    clock.advance(2.0)
    a = meter.end_window("a")
    clock.advance(3.0)
    b = meter.end_window("b")
    assert a.total_energy_j == pytest.approx(300.0) and a.duration_s == pytest.approx(3.0)
    assert b.total_energy_j == pytest.approx(500.0) and b.duration_s == pytest.approx(5.0)
    with pytest.raises(ValueError, match="not open"):
        meter.end_window("a")
    meter.begin_window("c")
    meter.cancel_window("c")
    with pytest.raises(ValueError, match="not open"):
        meter.cancel_window("c")
    assert meter.open_windows() == []
    meter.stop()


def test_switch_window_windows_add_up_to_total(clock):
    meter = PowerMeter([ConstantSource(["cpu-package-0"], 10.0, clock)], interval_s=None, clock=clock)
    meter.begin_window("train")
    clock.advance(4.0)
    train1 = meter.switch_window("train", "eval")
    clock.advance(1.0)
    assert meter.read_window("eval").total_energy_j == pytest.approx(10.0)
    ev = meter.switch_window("eval", "train")
    clock.advance(5.0)
    train2 = meter.end_window("train")
    total = meter.total_energy_j()
    meter.stop()
    assert (train1.total_energy_j, ev.total_energy_j, train2.total_energy_j) == pytest.approx((40.0, 10.0, 50.0))
    assert total == pytest.approx(100.0)


def test_measurement_properties():
    m = Measurement(duration_s=4.0, energy_j_by_device={"gpu0": 300.0, "gpu1": 100.0, "cpu": 40.0},
                    source="nvml-counter+estimate", estimated=True)
    assert (m.total_energy_j, m.gpu_energy_j, m.cpu_energy_j, m.avg_power_w) == (440.0, 400.0, 40.0, 110.0)
    assert Measurement(duration_s=0.0).avg_power_w == 0.0


# ----------------------------------------------------------------------------- estimate


def test_load_model_matches_codecarbon():
    assert load_power_w(100.0, 0.0) == pytest.approx(10.0)
    assert load_power_w(100.0, 0.5) == pytest.approx(100 * (0.1 + 0.9 * 0.125))
    assert load_power_w(100.0, 1.0) == pytest.approx(100.0)
    assert load_power_w(100.0, 1.7) == pytest.approx(100.0)  # clamped


def test_estimate_is_labelled_and_energy_is_power_times_time(clock):
    load = {"now": 0.5}  # what /proc/stat would say about the interval ending now
    src = EstimateSource(tdp_w=80.0, load_fn=lambda: load["now"], clock=clock)
    assert src.estimated and src.source == "estimate" and src.devices == ["cpu"]
    meter = PowerMeter([src], interval_s=None, clock=clock)
    meter.begin_window("w")
    clock.advance(2.0)
    meter.sample()                      # load 0.5 over 2 s -> 80 x 0.2125 x 2 = 34 J
    load["now"] = 1.0
    clock.advance(1.0)
    m = meter.end_window("w")           # load 1.0 over 1 s -> 80 J
    meter.stop()
    assert m.estimated and m.source == "estimate"
    assert m.total_energy_j == pytest.approx(34.0 + 80.0)
    assert m.total_energy_j == pytest.approx(m.avg_power_w * m.duration_s)


def test_tdp_lookup_uses_codecarbon_or_4w_per_thread():
    info = lookup_tdp()
    assert info.tdp_w > 0
    if info.origin.startswith("4 W"):
        assert info.tdp_w == pytest.approx(4.0 * os.cpu_count())
    else:
        assert info.origin == "codecarbon cpu_power.csv"


def test_cpu_load_reads_this_process_cpus():
    load = CpuLoad()
    assert load() is None  # no baseline yet
    t_end = time.perf_counter() + 0.15
    while time.perf_counter() < t_end:
        pass
    value = load()
    assert value is not None and 0.0 < value <= 1.0


# ----------------------------------------------------------------------------- sampler and power.csv


def test_sampler_thread_writes_batched_power_csv(tmp_path):
    path = tmp_path / "seed0" / "power.csv"
    src = ConstantSource(["cpu-package-0"], 25.0, time.monotonic)
    meter = PowerMeter([src], interval_s=0.02, csv_path=path, flush_every_s=60.0, t_offset_s=100.0)
    meter.start()
    time.sleep(0.3)
    assert path.read_text().strip() == ",".join(POWER_COLUMNS)  # rows wait for a batch
    meter.stop()
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 5
    t = [float(r["t_s"]) for r in rows]
    e = [float(r["energy_j"]) for r in rows]
    assert t == sorted(t) and t[0] >= 100.0
    assert e == sorted(e)
    assert e[-1] == pytest.approx(25.0 * (t[-1] - 100.0), rel=0.1)
    assert {r["device"] for r in rows} == {"cpu-package-0"}
    assert {r["source"] for r in rows} == {"rapl"} and {r["estimated"] for r in rows} == {"False"}
    assert float(rows[-1]["power_w"]) == pytest.approx(25.0)


def test_power_csv_with_old_header_is_backed_up(tmp_path, clock):
    path = tmp_path / "power.csv"
    path.write_text("time,watts\n1,2\n")
    meter = PowerMeter([ConstantSource(["cpu"], 5.0, clock, source="estimate", estimated=True)],
                       interval_s=None, csv_path=path, clock=clock)
    meter.start()
    clock.advance(1.0)
    meter.sample()
    meter.stop()
    assert (tmp_path / "power.csv.bak1").read_text() == "time,watts\n1,2\n"
    assert path.read_text().splitlines()[0] == ",".join(POWER_COLUMNS)
    assert any("another header" in e for e in meter.errors)


# ----------------------------------------------------------------------------- EnergyCallback


def _info(run_dir: Path | None, **kw) -> RunInfo:
    return RunInfo(run_dir=run_dir, method="popsan", env_id="HalfCheetah-v4", seed=0, total_steps=1000, **kw)


def _meter_factory(clock, power_w: float = 10.0, estimated: bool = False, ram_w: float | None = None):
    def make(**kw) -> PowerMeter:
        src = ConstantSource(["cpu-package-0"], power_w, clock, source="estimate" if estimated else "rapl",
                             estimated=estimated)
        sources = [src]
        if ram_w is not None:
            ram = ConstantSource(["ram-estimate"], ram_w, clock, source="estimate", estimated=True)
            ram.model = "test RAM model"
            sources.append(ram)
        return PowerMeter(sources, interval_s=None, csv_path=kw.get("csv_path"), clock=clock,
                          t_offset_s=kw.get("t_offset_s", 0.0), energy_offset_j=kw.get("energy_offset_j"))
    return make


class FakeProbe:
    """A contention probe whose foreign CPU share is set by the test: 25 % of 2 CPUs per sample."""

    def __init__(self, **kw):
        self.foreign_cpu_s = self.observed_cpu_s = self.own_cpu_s = self.machine_busy_cpu_s = 0.0
        self.foreign_gpu_processes = 0
        self.error = None

    def sample(self) -> None:
        self.observed_cpu_s += 2.0
        self.foreign_cpu_s += 0.5
        self.own_cpu_s += 1.0  # the run's share of the machine's busy CPU time: 1 / 4
        self.machine_busy_cpu_s += 4.0


def _drive(cb: EnergyCallback, clock: FakeClock, run_dir: Path | None, *, start_wall_s: float = 0.0) -> None:
    cb.on_train_start(_info(run_dir, start_wall_s=start_wall_s, resumed=start_wall_s > 0))
    cb.on_phase("train", start_wall_s)  # as the loop does when it starts
    clock.advance(3.0)
    cb.on_eval_start(100, 3.0)
    clock.advance(1.0)
    cb.on_eval_end(EvalEvent(step=100, wall_s=4.0, return_mean=1.0, return_std=0.0, episodes=1))
    clock.advance(6.0)


def test_energy_callback_accounts_train_eval_and_resume(tmp_path, clock):
    cb = EnergyCallback(codecarbon=False, country_iso_code="FRA", meter_factory=_meter_factory(clock, 10.0),
                        probe_factory=FakeProbe)
    _drive(cb, clock, tmp_path)
    assert cb.total_energy_j() == pytest.approx(100.0)
    state = cb.state_dict()
    cb.on_train_end(EndEvent(step=1000, wall_s=10.0, status="complete"))
    r = cb.result_fields()
    assert tuple(r) == ENERGY_COLUMNS + METER_COLUMNS
    assert (r["energy_j"], r["train_energy_j"], r["eval_energy_j"]) == pytest.approx((100.0, 90.0, 10.0))
    # absent is empty, never zero: this machine has no GPU and no RAM meter
    assert r["cpu_energy_j"] == pytest.approx(100.0) and r["gpu_energy_j"] is None and r["ram_energy_j"] is None
    assert (r["cpu_source"], r["cpu_estimated"], r["gpu_source"], r["gpu_estimated"]) == ("rapl", False, None, None)
    assert r["avg_power_w"] == pytest.approx(10.0)
    assert r["energy_source"] == "rapl" and r["estimated"] is False
    # emissions follow from energy_j and the grid's intensity, CodeCarbon or not
    intensity = r["carbon_intensity_g_per_kwh"]
    assert r["country"] == "FRA" and 0 < intensity < 1000
    assert r["emissions_kg"] == pytest.approx(100.0 / 3.6e6 * intensity / 1000, rel=1e-12)
    assert r["codecarbon_emissions_kg"] is None and r["codecarbon_error"] == "CodeCarbon disabled"
    assert r["emissions_error"] is None and r["meter_errors"] is None
    assert r["foreign_cpu_share"] == pytest.approx(0.25) and r["foreign_gpu_processes"] is None

    resumed = EnergyCallback(codecarbon=False, country_iso_code="FRA", probe_factory=FakeProbe,
                             meter_factory=_meter_factory(clock, 20.0, estimated=True, ram_w=5.0))
    resumed.load_state_dict(state)
    _drive(resumed, clock, tmp_path, start_wall_s=10.0)
    assert resumed.total_energy_j() == pytest.approx(100.0 + 250.0)
    resumed.on_train_end(EndEvent(step=2000, wall_s=20.0, status="complete"))
    r2 = resumed.result_fields()
    assert r2["energy_j"] == pytest.approx(350.0) and r2["eval_energy_j"] == pytest.approx(10.0 + 25.0)
    assert r2["energy_j"] == pytest.approx(r2["cpu_energy_j"] + r2["ram_energy_j"])
    assert (r2["cpu_energy_j"], r2["ram_energy_j"]) == pytest.approx((300.0, 50.0))
    assert (r2["ram_source"], r2["ram_estimated"], r2["ram_power_model"]) == ("estimate", True, "test RAM model")
    assert r2["cpu_source"] == "rapl+estimate" and r2["cpu_estimated"] is True
    assert r2["avg_power_w"] == pytest.approx(17.5)
    assert r2["estimated"] is True and r2["energy_source"] == "rapl+estimate"
    assert r2["emissions_kg"] == pytest.approx(350.0 / 3.6e6 * intensity / 1000, rel=1e-12)
    with (tmp_path / "power.csv").open() as f:
        rows = [row for row in csv.DictReader(f) if row["device"] == "cpu-package-0"]
    # the trace continues across the resume: time from start_wall_s, energy from the checkpoint
    assert [float(r["t_s"]) for r in rows] == pytest.approx([10.0, 20.0])
    assert [float(r["energy_j"]) for r in rows] == pytest.approx([100.0, 300.0])


def _gpu_cpu_ram_factory(clock, *, gpu_w: float, cpu_w: float, ram_w: float, made: list):
    def make(**kw) -> PowerMeter:
        made.append(kw)
        gpu = ConstantSource(["gpu-0"], gpu_w, clock, source="nvml")
        cpu = ConstantSource(["cpu"], cpu_w, clock, source="estimate", estimated=True)
        ram = ConstantSource(["ram-estimate"], ram_w, clock, source="estimate", estimated=True)
        return PowerMeter([gpu, cpu, ram], interval_s=None, csv_path=kw.get("csv_path"), clock=clock,
                          t_offset_s=kw.get("t_offset_s", 0.0), energy_offset_j=kw.get("energy_offset_j"))
    return make


def test_concurrent_runs_are_charged_their_cpu_time_share_of_shared_energy(tmp_path, clock):
    """Two runs side by side: the GPU is the run's own, the machine's CPU and RAM energy is split
    by the run's share of the machine's busy CPU time (1/4 from FakeProbe); the account still sums."""
    made: list = []
    cb = EnergyCallback(codecarbon=False, country_iso_code="FRA", probe_factory=FakeProbe, concurrent_runs=2,
                        meter_factory=_gpu_cpu_ram_factory(clock, gpu_w=100.0, cpu_w=40.0, ram_w=20.0, made=made))
    _drive(cb, clock, tmp_path)  # 10 s: 1000 J GPU, 400 J CPU, 200 J RAM, of which eval 1 s
    state = cb.state_dict()
    cb.on_train_end(EndEvent(step=1000, wall_s=10.0, status="complete"))
    r = cb.result_fields()
    assert made[0]["estimate_cpus"] == list(range(len(made[0]["estimate_cpus"])))  # the machine's load
    assert r["attributed_share"] == pytest.approx(0.25) and r["concurrent_runs"] == 2
    assert (r["gpu_energy_j"], r["cpu_energy_j"], r["ram_energy_j"]) == pytest.approx((1000.0, 100.0, 50.0))
    assert r["energy_j"] == pytest.approx(1150.0)
    assert r["train_energy_j"] + r["eval_energy_j"] == pytest.approx(1150.0)
    assert r["eval_energy_j"] == pytest.approx(115.0)  # eval keeps its tenth of the run
    assert (r["gpu_source"], r["cpu_source"], r["ram_source"]) == ("nvml", "estimate+attributed",
                                                                   "estimate+attributed")
    assert r["energy_source"].endswith("+attributed")
    assert r["emissions_kg"] == pytest.approx(1150.0 / 3.6e6 * r["carbon_intensity_g_per_kwh"] / 1000, rel=1e-12)
    # the live column of progress.csv is attributed too, and a resume keeps the shares' seconds
    resumed = EnergyCallback(codecarbon=False, country_iso_code="FRA", probe_factory=FakeProbe, concurrent_runs=2,
                             meter_factory=_gpu_cpu_ram_factory(clock, gpu_w=100.0, cpu_w=40.0, ram_w=20.0,
                                                                made=made))
    resumed.load_state_dict(state)
    _drive(resumed, clock, tmp_path, start_wall_s=10.0)
    assert resumed.total_energy_j() == pytest.approx(2300.0)


class ScriptedShareProbe(FakeProbe):
    """The run's share of the machine's busy CPU time, interval by interval, from a list."""

    shares = [0.5, 0.5, 1.0, 1.0, 1.0, 1.0]

    def __init__(self, **kw):
        super().__init__(**kw)
        self._k = 0

    def sample(self) -> None:
        share = self.shares[min(self._k, len(self.shares) - 1)]
        self._k += 1
        self.observed_cpu_s += 2.0
        self.own_cpu_s += 2.0 * share
        self.machine_busy_cpu_s += 2.0


def test_attribution_is_charged_interval_by_interval_never_falls_and_survives_a_resume(tmp_path, clock):
    made: list = []
    factory = _gpu_cpu_ram_factory(clock, gpu_w=0.0, cpu_w=40.0, ram_w=20.0, made=made)
    cb = EnergyCallback(codecarbon=False, probe_factory=ScriptedShareProbe, concurrent_runs=2,
                        meter_factory=factory)
    cb.on_train_start(_info(tmp_path))
    clock.advance(10.0)
    cb.on_progress(ProgressEvent(step=10, wall_s=10.0, episodes=0, train_return=None, sps=1.0, updates=0,
                                 losses={}))  # interval 1: share 0.5 of 600 J
    first = cb.total_energy_j()
    clock.advance(10.0)
    cb.on_progress(ProgressEvent(step=20, wall_s=20.0, episodes=0, train_return=None, sps=1.0, updates=0,
                                 losses={}))  # interval 2: share 1.0 of 600 J (the other run ended)
    second = cb.total_energy_j()
    assert first == pytest.approx(300.0) and second == pytest.approx(900.0)  # never re-weighted backwards
    state = cb.state_dict()
    cb.on_train_end(EndEvent(step=20, wall_s=20.0, status="complete"))
    r = cb.result_fields()
    assert (r["cpu_energy_j"], r["ram_energy_j"]) == pytest.approx((600.0, 300.0))
    assert r["attributed_share"] == pytest.approx(900.0 / 1200.0)
    # resumed as the last unit of the sweep, alone: what was attributed stays so, labels included
    alone = EnergyCallback(codecarbon=False, probe_factory=ScriptedShareProbe, meter_factory=factory)
    alone.load_state_dict(state)
    alone.on_train_start(_info(tmp_path, start_wall_s=20.0, resumed=True))
    clock.advance(10.0)
    alone.on_train_end(EndEvent(step=30, wall_s=30.0, status="complete"))
    r2 = alone.result_fields()
    assert r2["energy_j"] == pytest.approx(900.0 + 600.0)  # the new segment, alone, is all its own
    assert r2["cpu_source"].endswith("+attributed") and r2["concurrent_runs"] == 2
    assert r2["attributed_share"] == pytest.approx(1500.0 / 1800.0)


def test_a_run_alone_is_not_attributed(tmp_path, clock):
    made: list = []
    cb = EnergyCallback(codecarbon=False, probe_factory=FakeProbe,
                        meter_factory=_gpu_cpu_ram_factory(clock, gpu_w=100.0, cpu_w=40.0, ram_w=20.0, made=made))
    _drive(cb, clock, tmp_path)
    cb.on_train_end(EndEvent(step=1000, wall_s=10.0, status="complete"))
    r = cb.result_fields()
    assert "estimate_cpus" not in made[0]
    assert r["attributed_share"] is None and r["concurrent_runs"] == 1
    assert r["energy_j"] == pytest.approx(1600.0) and "attributed" not in r["energy_source"]


def test_checkpoint_state_from_before_one_account_still_loads(tmp_path, clock):
    old = {"train_energy_j": 9.0, "eval_energy_j": 1.0, "gpu_energy_j": 0.0, "cpu_energy_j": 10.0,
           "emissions_kg": 2e-6, "codecarbon_energy_kwh": 3e-6, "sources": ["rapl"]}
    cb = EnergyCallback(codecarbon=False, meter_factory=_meter_factory(clock, 10.0), probe_factory=FakeProbe)
    cb.load_state_dict(old)
    cb.on_train_start(_info(tmp_path, start_wall_s=1.0, resumed=True))
    clock.advance(1.0)
    cb.on_train_end(EndEvent(step=10, wall_s=2.0, status="complete"))
    r = cb.result_fields()
    assert r["energy_j"] == pytest.approx(20.0) and r["cpu_energy_j"] == pytest.approx(20.0)
    assert r["gpu_energy_j"] is None


def test_energy_callback_on_a_non_zero_local_rank_meters_nothing(tmp_path, clock):
    made = []
    cb = EnergyCallback(codecarbon=False, meter_factory=lambda **kw: made.append(kw))
    cb.on_train_start(_info(tmp_path, rank=1, local_rank=1, world_size=2))
    assert made == [] and cb.total_energy_j() is None and cb.state_dict() == {}
    cb.on_train_end(EndEvent(step=10, wall_s=1.0, status="complete"))
    assert cb.result_fields()["energy_j"] is None  # this rank metered nothing: empty, not zero


def test_energy_callback_real_meter_writes_power_csv(tmp_path, monkeypatch):
    monkeypatch.setattr(nvml_mod, "pynvml", None)
    cb = EnergyCallback(codecarbon=False, interval_s=0.02)
    cb.on_train_start(_info(tmp_path))
    time.sleep(0.15)
    cb.on_train_end(EndEvent(step=10, wall_s=0.15, status="complete"))
    r = cb.result_fields()
    assert r["energy_j"] > 0 and r["estimated"] is True  # no RAPL or GPU on this test: labelled estimate
    assert "estimate" in r["energy_source"]
    header = (tmp_path / "power.csv").read_text().splitlines()[0]
    assert header == ",".join(POWER_COLUMNS)


def test_energy_callback_rejects_bad_country():
    with pytest.raises(ValueError, match="alpha-3"):
        EnergyCallback(country_iso_code="US")


# ----------------------------------------------------------------------------- distributed sum


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dist_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        results = {}
        # 'two_nodes': both processes are local rank 0 of their node, so both count.
        # 'one_node': rank 1 is the second process of node 0 (local rank 1), so it adds 0.
        for case, local_rank in (("two_nodes", 0), ("one_node", rank)):
            clock = FakeClock()
            cb = EnergyCallback(codecarbon=False, meter_factory=_meter_factory(clock, 10.0 * (rank + 1)))
            cb.on_train_start(_info(None, rank=rank, local_rank=local_rank, world_size=world))
            clock.advance(2.0)
            cb.on_train_end(EndEvent(step=100, wall_s=2.0, status="complete"))
            results[case] = cb.result_fields()
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()
    end_worker()


@pytest.mark.slow
def test_node_totals_are_summed_over_nodes_with_gloo(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_dist_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for r in results:  # every rank ends with the same, summed account
        # node 0 at 10 W and node 1 at 20 W, for 2 s each
        assert r["two_nodes"]["energy_j"] == pytest.approx(60.0)
        assert r["two_nodes"]["cpu_energy_j"] == pytest.approx(60.0)
        assert r["two_nodes"]["avg_power_w"] == pytest.approx(30.0)
        # only local rank 0 meters its node: rank 1's 20 W meter is never built
        assert r["one_node"]["energy_j"] == pytest.approx(20.0)


# ----------------------------------------------------------------------------- failing meters stay quiet and bounded


class BrokenLoad:
    """A CPU-load reader that always fails, as on a machine whose /proc/stat is unreadable."""

    def __call__(self):
        raise OSError("/proc/stat: permission denied")


def test_a_meter_whose_estimate_keeps_failing_records_each_problem_once(clock):
    def broken_estimate() -> EstimateSource:
        src = EstimateSource(tdp_w=10.0, load_fn=lambda: 0.5, clock=clock)
        src._load_fn = BrokenLoad()
        return src

    meter = PowerMeter([broken_estimate()], interval_s=None, clock=clock, fallback=broken_estimate)
    for _ in range(3000):  # 5 minutes of sampling at 0.1 s
        clock.advance(0.1)
        meter.sample()
    errors = list(meter.errors)
    # one line per distinct problem, with its count: not one per failed read
    assert len(errors) <= 4, errors
    assert any("permission denied" in e and "(x" in e for e in errors)
    # the third replacement is not replaced again but retried with backoff (up to 30 s apart)
    import re
    counts = [int(m) for e in errors for m in re.findall(r"\(x(\d+)", e)]
    assert counts and sum(counts) < 100, errors
    assert sum(len(e) for e in errors) < 2000
    meter.stop()


def test_error_log_counts_repeats_and_is_bounded():
    from bench.energy.errors import ErrorLog

    log = ErrorLog(max_distinct=3)
    assert log.add("rapl: gone", 1.0) is True
    assert log.add("rapl: gone", 2.5) is False
    for i in range(10):
        log.add(f"other {i}")
    assert log.lines() == ["t=1.0s rapl: gone (x2, last t=2.5s)", "other 0", "other 1",
                           "8 further problem(s) of other kinds not recorded individually"]
    assert log.count("rapl: gone") == 2 and len(log) == 4 and bool(log)


def test_the_sampler_thread_survives_a_clock_that_raises(tmp_path):
    calls = {"n": 0}

    def flaky_clock() -> float:
        calls["n"] += 1
        if 5 <= calls["n"] < 40:
            raise RuntimeError("clock went away")
        return time.monotonic()

    src = EstimateSource(tdp_w=10.0, load_fn=lambda: 0.5)
    meter = PowerMeter([src], interval_s=0.01, clock=flaky_clock, csv_path=tmp_path / "power.csv")
    meter.start()
    deadline = time.monotonic() + 5.0
    while calls["n"] < 60 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert meter._thread is not None and meter._thread.is_alive()  # still sampling after the failures
    assert calls["n"] >= 60
    meter.stop()
    assert sum("clock went away" in e for e in meter.errors) == 1


def test_a_failed_codecarbon_flush_is_recorded_once_with_its_count(tmp_path):
    from bench.energy.carbon import CarbonTracker

    class Flaky:
        run_id = "r"

        def start(self):
            pass

        def flush(self):
            raise OSError("disk full")

        def stop(self):
            return 1e-6

    tracker = CarbonTracker(None, tracker_factory=lambda **kw: Flaky())
    tracker.start()
    assert tracker.flush() is None and tracker.flush() is None
    assert list(tracker.errors) == ["CodeCarbon flush failed: OSError: disk full (x2)"]
    cb = EnergyCallback(meter_factory=_meter_factory(FakeClock()), probe_factory=FakeProbe,
                        tracker_factory=lambda out, **kw: tracker)
    cb.on_train_start(_info(tmp_path))
    cb.state_dict()  # a checkpoint: its flush fails too
    cb.on_train_end(EndEvent(step=10, wall_s=1.0, status="complete"))
    assert "CodeCarbon flush failed: OSError: disk full (x3)" in cb.result_fields()["codecarbon_error"]
