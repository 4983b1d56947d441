"""EnergyMonitor, the public metering API: real estimate here, NVML and RAPL faked at the boundary."""
from __future__ import annotations

import csv
import os
import threading
import time
from pathlib import Path

import pytest
import torch

import bench.energy.nvml as nvml_mod
from bench.energy import ComponentEnergy, EnergyMonitor, EnergyReport, EnergySourceError
from bench.energy.carbon import carbon_intensity_g_per_kwh
from bench.energy.estimate import lookup_ram_power
from bench.schema import POWER_COLUMNS
from tests import fake_pynvml
from tests.fake_pynvml import FakeGpu
from tests.fake_rapl import make_zone, set_energy_uj


@pytest.fixture
def fake_nvml(monkeypatch):
    fake_pynvml.reset([FakeGpu(uuid="GPU-aaaa", power_w=200.0), FakeGpu(uuid="GPU-bbbb", power_w=100.0)])
    monkeypatch.setattr(nvml_mod, "pynvml", fake_pynvml)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    yield fake_pynvml
    fake_pynvml.reset()


def _samplers() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "power-sampler"}


def _busy(seconds: float) -> None:
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        pass


# ----------------------------------------------------------------------------- the estimate, for real


@pytest.mark.parametrize("as_str", [True, False], ids=["str", "Path"])
def test_estimate_path_measures_a_busy_loop_and_writes_power_csv(tmp_path, as_str):
    path: str | Path = "out/power.csv" if as_str else tmp_path / "out" / "power.csv"
    m = EnergyMonitor(ram="none", country="FRA", power_csv=path, gpu_ids=[], cpu="estimate", interval_s=0.02,
                      tdp_w=40.0)
    t0 = time.perf_counter()
    with m:
        _busy(0.3)
    wall_s = time.perf_counter() - t0

    r = m.result
    assert isinstance(r, EnergyReport)
    assert 0.3 <= r.duration_s <= wall_s
    assert wall_s - r.duration_s < 0.25  # only set-up and tear-down fall outside the window
    # The load model keeps power within [0.1, 1] x TDP: the energy must lie in that band.
    assert 0.1 * 40.0 * r.duration_s * 0.9 <= r.energy_j <= 40.0 * r.duration_s * 1.1
    assert r.cpu == ComponentEnergy(r.energy_j, "estimate", True)
    assert r.gpu is None and r.gpu_energy_j is None and r.ram is None and r.ram_energy_j is None
    assert (r.source, r.estimated) == ("estimate", True)
    assert r.avg_power_w == r.energy_j / r.duration_s
    intensity = carbon_intensity_g_per_kwh("FRA")
    assert r.carbon_intensity_g_per_kwh == intensity
    assert r.emissions_kg == r.energy_j / 3.6e6 * intensity / 1000
    # The monitor reads through to its report.
    assert (m.energy_j, m.cpu_energy_j, m.gpu_energy_j, m.ram_energy_j, m.duration_s, m.avg_power_w,
            m.emissions_kg, m.source, m.estimated) == \
        (r.energy_j, r.cpu_energy_j, None, None, r.duration_s, r.avg_power_w, r.emissions_kg, "estimate", True)

    with (tmp_path / "out" / "power.csv").open(newline="") as f:
        reader = csv.reader(f)
        assert tuple(next(reader)) == POWER_COLUMNS
        rows = [dict(zip(POWER_COLUMNS, row, strict=True)) for row in reader]
    assert len(rows) >= 3
    assert {(row["device"], row["source"], row["estimated"]) for row in rows} == {("cpu", "estimate", "True")}
    # The trace starts with the meter, a poll before the window: it may hold a little more.
    assert float(rows[-1]["energy_j"]) >= r.energy_j - 1e-3


def test_report_to_dict_is_flat_and_says_none_for_what_was_not_metered():
    with EnergyMonitor(ram="none", country="usa", gpu_ids=[], cpu="estimate", tdp_w=10.0) as m:
        pass
    d = m.to_dict()
    assert d["country"] == "USA" and d["carbon_intensity_g_per_kwh"] == carbon_intensity_g_per_kwh("USA")
    assert d["energy_j"] == d["cpu_energy_j"] == m.energy_j and d["emissions_kg"] == m.emissions_kg
    assert (d["gpu_energy_j"], d["gpu_source"], d["gpu_estimated"]) == (None, None, None)
    assert (d["cpu_source"], d["cpu_estimated"]) == ("estimate", True)
    assert d["errors"] == [] and d["gaps"] == []


# ----------------------------------------------------------------------------- NVML, faked


def test_nvml_counters_give_exact_gpu_energy_for_every_visible_gpu(fake_nvml):
    with EnergyMonitor(ram="none", country="DEU", cpu="none", interval_s=0.01) as m:  # gpu_ids=None: all GPUs
        fake_nvml.advance(2.0)
        time.sleep(0.05)  # let the sampler poll between the reads too
        fake_nvml.advance(1.0)
    r = m.result
    assert r.energy_j_by_device == {"gpu0": pytest.approx(600.0, abs=1e-9), "gpu1": pytest.approx(300.0, abs=1e-9)}
    assert r.gpu == ComponentEnergy(pytest.approx(900.0, abs=1e-9), "nvml-counter", False)
    assert r.cpu is None and r.ram is None
    assert (r.energy_j, r.source, r.estimated) == (pytest.approx(900.0, abs=1e-9), "nvml-counter", False)
    assert r.emissions_kg == r.energy_j / 3.6e6 * carbon_intensity_g_per_kwh("DEU") / 1000
    assert fake_nvml.init_count == 0  # every nvmlInit was paired with a shutdown


def test_gpu_ids_and_cuda_visible_devices_choose_the_gpus(fake_nvml, monkeypatch):
    with EnergyMonitor(ram="none", gpu_ids=["GPU-bbbb"], cpu="none", interval_s=0.01) as by_uuid:
        fake_nvml.advance(1.0)
    assert by_uuid.energy_j_by_device == {"gpu1": pytest.approx(100.0, abs=1e-9)}

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,-1,0")  # CUDA stops at the first invalid entry
    with EnergyMonitor(ram="none", cpu="none", interval_s=0.01) as visible:
        fake_nvml.advance(1.0)
    assert visible.energy_j_by_device == {"gpu1": pytest.approx(100.0, abs=1e-9)}

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with EnergyMonitor(ram="none", cpu="estimate", tdp_w=10.0, interval_s=0.01) as hidden:
        fake_nvml.advance(1.0)
    assert hidden.gpu is None and hidden.cpu is not None


def test_a_gpu_read_failure_is_a_recovered_gap_and_its_energy_still_counts(fake_nvml):
    with EnergyMonitor(ram="none", cpu="none", interval_s=0.01) as m:
        fake_nvml.advance(1.0)
        fake_nvml.devices[0].fail_reads = 1
        deadline = time.monotonic() + 5.0
        while fake_nvml.devices[0].fail_reads and time.monotonic() < deadline:
            time.sleep(0.005)  # wait for the sampler to hit the failure
        fake_nvml.advance(1.0)
    r = m.result
    assert r.gpu_energy_j == pytest.approx(600.0, abs=1e-9) and not r.estimated
    assert len(r.gaps) == 1 and r.gaps[0].recovered and r.gaps[0].source == "nvml-counter"
    assert "GPU is lost" in r.gaps[0].error and any("GPU is lost" in e for e in r.errors)
    assert m.to_dict()["gaps"][0]["recovered"] is True


def test_named_gpus_that_cannot_be_metered_fail_at_start_and_leave_no_thread(fake_nvml):
    before = _samplers()
    with pytest.raises(EnergySourceError, match="GPU 5"):
        EnergyMonitor(ram="none", gpu_ids=[0, 5], cpu="estimate", tdp_w=10.0).start()
    assert not any(t.is_alive() for t in _samplers() - before)


# ----------------------------------------------------------------------------- RAPL, faked


@pytest.fixture
def powercap(tmp_path: Path) -> Path:
    root = tmp_path / "powercap"
    make_zone(root, "intel-rapl:0", "package-0", 999_000_000, max_uj=1_000_000_000)
    make_zone(root, "intel-rapl:0/intel-rapl:0:0", "core", 5_000_000)
    make_zone(root, "intel-rapl:0/intel-rapl:0:2", "dram", 7_000_000)
    os.symlink(root / "intel-rapl:0/intel-rapl:0:2", root / "intel-rapl:0:2")  # the kernel's top-level link
    make_zone(root, "intel-rapl:1", "package-1", 10_000_000)
    make_zone(root, "intel-rapl:2", "psys", 50_000_000)
    return root


def test_rapl_gives_exact_cpu_energy_through_a_wrap_and_dram_as_ram(powercap):
    with EnergyMonitor(gpu_ids=[], cpu="rapl", rapl_root=str(powercap), interval_s=0.005) as m:
        set_energy_uj(powercap / "intel-rapl:0", 999_500_000)       # +0.5 J
        set_energy_uj(powercap / "intel-rapl:1", 16_000_000)        # +6 J
        time.sleep(0.05)
        set_energy_uj(powercap / "intel-rapl:0", 3_000_000)         # wrapped: 1e9 - 999.5e6 + 3e6 uJ = +3.5 J
        set_energy_uj(powercap / "intel-rapl:0/intel-rapl:0:2", 9_500_000)  # DRAM +2.5 J
        set_energy_uj(powercap / "intel-rapl:0/intel-rapl:0:0", 9_000_000)  # core: inside the package
        set_energy_uj(powercap / "intel-rapl:2", 90_000_000)        # psys: contains the packages
    r = m.result
    assert r.energy_j_by_device == {"cpu-package-0": 4.0, "cpu-package-1": 6.0, "ram-dram-0": 2.5}
    assert r.cpu == ComponentEnergy(10.0, "rapl", False)
    assert r.ram == ComponentEnergy(2.5, "rapl", False)
    assert r.gpu is None
    assert (r.energy_j, r.source, r.estimated) == (12.5, "rapl", False)
    assert r.avg_power_w == 12.5 / r.duration_s


def test_rapl_without_dram_estimates_ram_or_reports_it_as_none(powercap):
    (powercap / "intel-rapl:0:2").unlink()
    (powercap / "intel-rapl:0/intel-rapl:0:2/name").write_text("dram-not\n")
    with EnergyMonitor(ram="none", gpu_ids=[], cpu="rapl", rapl_root=powercap, interval_s=0.01) as m:
        set_energy_uj(powercap / "intel-rapl:1", 11_000_000)
    assert m.ram is None and m.ram_energy_j is None and m.cpu_energy_j == 1.0
    with EnergyMonitor(gpu_ids=[], cpu="rapl", rapl_root=powercap, interval_s=0.01) as m:  # ram='auto'
        set_energy_uj(powercap / "intel-rapl:1", 12_000_000)
        time.sleep(0.05)
    assert m.ram is not None and m.ram.source == "estimate" and m.ram.estimated and m.estimated
    ram_w = lookup_ram_power().power_w
    assert m.ram_energy_j == pytest.approx(ram_w * m.duration_s, rel=0.05)
    assert m.energy_j == pytest.approx(1.0 + m.ram_energy_j) and m.source == "rapl+estimate"
    with pytest.raises(EnergySourceError, match="dram"):
        EnergyMonitor(gpu_ids=[], cpu="rapl", ram="rapl", rapl_root=powercap).start()


def test_rapl_that_breaks_mid_block_is_replaced_by_the_estimate_and_the_gap_kept(powercap):
    with EnergyMonitor(ram="none", gpu_ids=[], cpu="auto", rapl_root=powercap, interval_s=0.005, tdp_w=10.0) as m:
        set_energy_uj(powercap / "intel-rapl:1", 12_000_000)  # +2 J, read before the failure
        time.sleep(0.2)
        (powercap / "intel-rapl:1" / "energy_uj").unlink()  # the zone goes away for good
        time.sleep(0.5)
    r = m.result
    assert r.cpu is not None and set(r.cpu.source.split("+")) == {"rapl", "estimate"}
    assert r.cpu.estimated and r.estimated
    assert r.energy_j_by_device["cpu-package-1"] == 2.0 and r.energy_j_by_device["cpu"] > 0
    assert [(g.source, g.recovered) for g in r.gaps] == [("rapl", False)]
    assert any("dropped" in e and "estimated" in e for e in r.errors)


# ----------------------------------------------------------------------------- errors and lifecycle


@pytest.mark.parametrize("bad", ["ZZZ", "US", "France"])
def test_bad_country_fails_at_construction_naming_the_value(bad):
    before = _samplers()
    with pytest.raises(ValueError, match=bad):
        EnergyMonitor(country=bad)
    assert _samplers() == before


def test_bad_arguments_fail_at_construction():
    with pytest.raises(ValueError, match="cpu must be one of"):
        EnergyMonitor(ram="none", cpu="gpu")
    with pytest.raises(ValueError, match="interval_s"):
        EnergyMonitor(interval_s=0)


def test_an_exception_in_the_block_stops_the_sampler_and_still_gives_a_result():
    before = _samplers()
    with pytest.raises(KeyError, match="from the body"):
        with EnergyMonitor(ram="none", gpu_ids=[], cpu="estimate", interval_s=0.01, tdp_w=10.0) as m:
            ours = _samplers() - before
            assert len(ours) == 1 and all(t.is_alive() for t in ours)
            _busy(0.05)
            raise KeyError("from the body")
    assert not any(t.is_alive() for t in ours)
    assert m.duration_s >= 0.05 and m.energy_j > 0


def test_result_only_after_the_block_and_one_block_per_monitor():
    m = EnergyMonitor(ram="none", gpu_ids=[], cpu="estimate", tdp_w=10.0)
    with pytest.raises(RuntimeError, match="never started"):
        m.stop()
    with m:
        with pytest.raises(RuntimeError, match="once its block has ended"):
            _ = m.energy_j
        with pytest.raises(RuntimeError, match="already been started"):
            m.start()
    assert m.stop() is m.result  # stop() after the block hands back the same report
    with pytest.raises(AttributeError, match="no attribute 'energy_kwh'"):
        _ = m.energy_kwh


def test_queued_cuda_work_is_synchronised_at_both_ends(monkeypatch):
    synced: list[int] = []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda index: synced.append(index))
    with EnergyMonitor(ram="none", gpu_ids=[], cpu="estimate", tdp_w=10.0):
        assert synced == [0, 1]
    assert synced == [0, 1, 0, 1]
