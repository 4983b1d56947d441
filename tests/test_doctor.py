"""`spikerl-bench doctor`: faked powercap trees (readable, root-only, absent), faked NVML and a
faked amdsmi at the library boundary."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import bench.energy.nvml as nvml_mod
from bench.cli.main import main
from bench.energy import inventory as inv_mod
from bench.energy.inventory import RAPL_FIX, inventory
from tests import fake_amdsmi, fake_pynvml
from tests.fake_pynvml import FakeGpu
from tests.fake_rapl import make_zone


@pytest.fixture
def powercap(tmp_path: Path) -> Path:
    root = tmp_path / "powercap"
    make_zone(root, "intel-rapl:0", "package-0", 1_000)
    make_zone(root, "intel-rapl:0/intel-rapl:0:0", "dram", 2_000)
    make_zone(root, "intel-rapl:1", "psys", 3_000)
    return root


@pytest.fixture
def no_gpus(monkeypatch):
    fake_pynvml.reset([], fail_init=fake_pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    monkeypatch.setattr(nvml_mod, "pynvml", fake_pynvml)
    monkeypatch.setattr(inv_mod, "_import_amdsmi", _no_amdsmi)
    yield
    fake_pynvml.reset()


def _no_amdsmi():
    raise ImportError("amdsmi")


def test_readable_rapl_is_measured_and_no_gpu_is_none(powercap, no_gpus):
    inv = inventory(powercap)
    assert (inv.gpu.verdict, inv.cpu.verdict, inv.ram.verdict, inv.verdict) == ("none", "measured", "measured",
                                                                                 "measured")
    assert sorted(z["kind"] for z in inv.cpu.devices) == ["dram", "package", "psys"]


def test_root_only_rapl_is_estimated_with_the_fix(powercap, no_gpus, monkeypatch):
    real = Path.read_text

    def read_text(self, *a, **k):
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied")
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", read_text)
    inv = inventory(powercap)
    assert inv.cpu.verdict == "estimated" and inv.verdict == "estimated"
    assert all(not z["readable"] for z in inv.cpu.devices)
    assert any(RAPL_FIX in n and "CVE-2020-8694" in n for n in inv.cpu.notes)


def test_absent_rapl_and_two_nvidia_gpus_one_power_only(tmp_path, monkeypatch):
    fake_pynvml.reset([FakeGpu(uuid="GPU-aaaa"), FakeGpu(uuid="GPU-bbbb", counter_supported=False)])
    monkeypatch.setattr(nvml_mod, "pynvml", fake_pynvml)
    monkeypatch.setattr(inv_mod, "_import_amdsmi", _no_amdsmi)
    inv = inventory(tmp_path / "nothing")
    assert inv.gpu.verdict == "measured" and inv.gpu.source == "nvml-counter+nvml-power"
    assert [d["energy"].split(" ")[0] for d in inv.gpu.devices] == ["counter", "power"]
    assert inv.gpu.devices[0]["power_limit_w"] == 700.0
    assert inv.cpu.verdict == "estimated" and inv.verdict == "partly estimated"
    assert fake_pynvml.init_count == 0
    fake_pynvml.reset()


def test_amd_gpu_through_amdsmi_and_json_keys(tmp_path, monkeypatch, capsys):
    fake_pynvml.reset([], fail_init=fake_pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    monkeypatch.setattr(nvml_mod, "pynvml", fake_pynvml)
    fake_amdsmi.reset([fake_amdsmi.FakeAmdGpu(), fake_amdsmi.FakeAmdGpu(uuid="x", counter_supported=False)])
    monkeypatch.setattr(inv_mod, "_import_amdsmi", lambda: fake_amdsmi)
    monkeypatch.setattr(inv_mod, "POWERCAP_ROOT", tmp_path / "nothing")
    monkeypatch.setattr(inv_mod.inventory, "__defaults__", (tmp_path / "nothing",))
    assert main(["doctor", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"verdict", "gpu", "cpu", "ram", "notes"}
    assert out["gpu"]["source"] == "amdsmi-counter+amdsmi-power" and out["verdict"] == "partly estimated"
    assert fake_amdsmi.initialised == 0
    fake_pynvml.reset()
