"""What this machine can measure, before anything runs (`spikerl-bench doctor`).

Each probe asks the real interface (NVML, amdsmi, powercap sysfs, SLURM's scontrol, /proc/cpuinfo)
and never raises: what cannot be asked is said in a note. The verdict per component is what a run
here would record: 'measured' (a hardware meter is readable), 'estimated' (the run falls back to
the estimate) or 'none' (no such device, e.g. no GPU)."""
from __future__ import annotations

import importlib
import importlib.metadata
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.energy import nvml
from bench.energy.base import EnergySourceError, NotSupportedError
from bench.energy.rapl import POWERCAP_ROOT

RAPL_FIX = ("sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj /sys/class/powercap/intel-rapl:*/*/energy_uj"
            "  # resets at reboot; to keep it, the same chmod in a udev rule on SUBSYSTEM==\"powercap\"")
RAPL_WHY = ("energy_uj is root-only on most kernels since the PLATYPUS power side channel (CVE-2020-8694); "
            "reading it leaks nothing to a user who already runs the benchmark, but the admin must allow it")


@dataclass
class Component:
    verdict: str  # measured | estimated | none
    source: str = ""
    devices: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Inventory:
    gpu: Component
    cpu: Component
    ram: Component
    notes: list[str]

    @property
    def verdict(self) -> str:
        return overall([self.gpu.verdict, self.cpu.verdict, self.ram.verdict])

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "gpu": asdict(self.gpu), "cpu": asdict(self.cpu), "ram": asdict(self.ram),
                "notes": list(self.notes)}


def overall(verdicts: list[str]) -> str:
    used = [v for v in verdicts if v != "none"]
    if used and all(v == "measured" for v in used):
        return "measured"
    if any(v == "measured" for v in used):
        return "partly estimated"
    return "estimated"


# ------------------------------------------------------------------ GPUs
def nvidia_gpus() -> tuple[list[dict[str, Any]], list[str]]:
    """Every GPU NVML lists: name, UUID, counter or power only, power limit; and notes."""
    try:
        nvml._call("nvmlInit")
    except EnergySourceError as exc:
        return [], [f"NVML: {exc}"]
    out: list[dict[str, Any]] = []
    notes: list[str] = []
    try:
        try:
            notes.append(f"NVIDIA driver {_text(nvml._call('nvmlSystemGetDriverVersion'))}")
        except EnergySourceError:
            pass
        for i in range(int(nvml._call("nvmlDeviceGetCount"))):
            h = nvml._call("nvmlDeviceGetHandleByIndex", i)
            dev: dict[str, Any] = {"index": i, "name": _text(nvml._call("nvmlDeviceGetName", h)),
                                   "uuid": _text(nvml._call("nvmlDeviceGetUUID", h))}
            try:
                nvml._call("nvmlDeviceGetTotalEnergyConsumption", h)
                dev["energy"] = "counter"
            except NotSupportedError:
                try:
                    nvml._call("nvmlDeviceGetPowerUsage", h)
                    dev["energy"] = "power only (sampled; about a 1 s average on Ampere and newer)"
                except EnergySourceError as exc:
                    dev["energy"] = f"unreadable ({exc})"
            except EnergySourceError as exc:
                dev["energy"] = f"unreadable ({exc})"
            try:
                dev["power_limit_w"] = nvml._call("nvmlDeviceGetEnforcedPowerLimit", h) / 1000.0
            except EnergySourceError:
                pass
            dev["power_averaging_window"] = "not reported by NVML"
            out.append(dev)
    except EnergySourceError as exc:
        notes.append(f"NVML: {exc}")
    finally:
        try:
            nvml._call("nvmlShutdown")
        except EnergySourceError:
            pass
    return out, notes


def amd_gpus() -> tuple[list[dict[str, Any]], list[str]]:
    """Every GPU amdsmi lists (the optional extra spikerl-bench[amd]); and notes."""
    try:
        amdsmi = _import_amdsmi()
    except Exception:  # noqa: BLE001 - absent or broken: say so, nothing else
        return [], ["amdsmi not installed (AMD GPUs: pip install \"spikerl-bench[amd]\")"]
    try:
        amdsmi.amdsmi_init()
    except Exception as exc:  # noqa: BLE001
        return [], [f"amdsmi: init failed ({exc})"]
    out: list[dict[str, Any]] = []
    notes: list[str] = []
    try:
        for i, h in enumerate(amdsmi.amdsmi_get_processor_handles()):
            dev: dict[str, Any] = {"index": i}
            try:
                dev["uuid"] = str(amdsmi.amdsmi_get_gpu_device_uuid(h))
            except Exception:  # noqa: BLE001
                pass
            try:
                amdsmi.amdsmi_get_energy_count(h)
                dev["energy"] = "counter"
            except Exception:  # noqa: BLE001
                try:
                    amdsmi.amdsmi_get_power_info(h)
                    dev["energy"] = "power only (sampled)"
                except Exception as exc:  # noqa: BLE001
                    dev["energy"] = f"unreadable ({exc})"
            out.append(dev)
    except Exception as exc:  # noqa: BLE001
        notes.append(f"amdsmi: {exc}")
    finally:
        try:
            amdsmi.amdsmi_shut_down()
        except Exception:  # noqa: BLE001
            pass
    return out, notes


def _import_amdsmi() -> Any:
    return importlib.import_module("amdsmi")


_text = nvml.as_text


# ------------------------------------------------------------------ RAPL
def rapl_zones(root: str | os.PathLike[str] = POWERCAP_ROOT) -> tuple[list[dict[str, Any]], list[str]]:
    """Package, dram and psys zones with whether energy_uj is readable; notes with the fix."""
    root = Path(root)
    if not root.is_dir():
        return [], [f"RAPL: {root} absent (no powercap driver, or not Linux)"]
    zones: list[dict[str, Any]] = []
    for d in sorted(root.glob("intel-rapl:*")) + sorted(root.glob("intel-rapl:*/intel-rapl:*:*")):
        try:
            name = (d / "name").read_text().strip()
        except OSError:
            continue
        kind = "package" if name.startswith("package") else name if name in ("dram", "psys") else None
        if kind is None or any(z["path"] == str(d.resolve()) for z in zones):
            continue
        try:
            (d / "energy_uj").read_text()
            readable = True
        except PermissionError:
            readable = False
        except OSError:
            continue
        zones.append({"zone": d.name, "name": name, "kind": kind, "readable": readable, "path": str(d.resolve())})
    notes = []
    if not zones:
        notes.append(f"RAPL: no package zone under {root}")
    elif not all(z["readable"] for z in zones):
        notes.append(f"RAPL present but not readable by this user. Fix (admin): {RAPL_FIX}. Why: {RAPL_WHY}")
    return zones, notes


# ------------------------------------------------------------------ the rest
def slurm_energy() -> str:
    exe = shutil.which("scontrol")
    if exe is None:
        return "not a SLURM machine (no scontrol)"
    try:
        out = subprocess.run([exe, "show", "config"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"scontrol failed ({exc})"
    for line in out.splitlines():
        if line.strip().startswith("AcctGatherEnergyType"):
            value = line.split("=", 1)[-1].strip()
            return f"AcctGatherEnergyType = {value}" + ("" if value.endswith("none") else " (configured)")
    return "acct_gather_energy not configured"


def cpu_bf16(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> str:
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return "unknown (/proc/cpuinfo unreadable)"
    flags = set(next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []))
    native = sorted(flags & {"avx512_bf16", "amx_bf16"})
    return f"native ({', '.join(native)})" if native else "not native (bf16 is emulated: slower than fp32 on CPU)"


def c_compiler() -> str:
    for name in (os.environ.get("CC") or "", "cc", "gcc", "clang"):
        if name and (path := shutil.which(name)):
            return path
    return "none (the native spiking kernels cannot be built; the torch engine is used)"


def codecarbon_info() -> str:
    try:
        version = importlib.metadata.version("codecarbon")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
    from bench.energy.carbon import carbon_intensity_g_per_kwh

    g = carbon_intensity_g_per_kwh("USA")
    return f"{version}; offline intensity data " + (f"present (USA {g:g} g/kWh)" if g else "missing")


def inventory(rapl_root: str | os.PathLike[str] = POWERCAP_ROOT) -> Inventory:
    notes: list[str] = []
    nv, nv_notes = nvidia_gpus()
    amd, amd_notes = amd_gpus()
    gpus = [{"vendor": "nvidia", **d} for d in nv] + [{"vendor": "amd", **d} for d in amd]
    metered = [d for d in gpus if not str(d.get("energy", "")).startswith("unreadable")]
    gpu = Component("measured" if metered else "none",
                    "+".join(dict.fromkeys(("nvml-counter" if d["vendor"] == "nvidia" else "amdsmi-counter")
                                           if d.get("energy") == "counter" else
                                           ("nvml-power" if d["vendor"] == "nvidia" else "amdsmi-power")
                                           for d in metered)),
                    gpus, nv_notes + amd_notes)
    zones, rapl_notes = rapl_zones(rapl_root)
    pkg = [z for z in zones if z["kind"] == "package"]
    dram = [z for z in zones if z["kind"] == "dram"]
    cpu_ok = bool(pkg) and all(z["readable"] for z in pkg)
    cpu = Component("measured" if cpu_ok else "estimated", "rapl" if cpu_ok else "estimate", zones, rapl_notes)
    ram_ok = bool(dram) and all(z["readable"] for z in dram)
    ram = Component("measured" if ram_ok else "estimated", "rapl" if ram_ok else "estimate", [],
                    [] if ram_ok else ["RAM from CodeCarbon's model (no readable RAPL dram zone)"])
    notes += [f"SLURM energy accounting: {slurm_energy()}", f"CPU bf16: {cpu_bf16()}",
              f"C compiler: {c_compiler()}", f"CodeCarbon: {codecarbon_info()}"]
    return Inventory(gpu, cpu, ram, notes)
