"""CPU package energy from Linux RAPL (powercap sysfs).

CPU energy sums the top-level package zones (`intel-rapl:N`, named `package-N`) only:
psys contains the packages, and the core/uncore subzones (`intel-rapl:N:M`) sit inside
them, so adding any of those would count energy twice. The dram subzone is the exception:
memory is powered beside the package, not from it, so it is a component of its own (RAM)
and is read on request. AMD CPUs expose the same tree, usually without dram.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.energy.base import Clock, EnergySource, EnergySourceError, TraceAverage
from bench.energy.scope import package_cpus, package_of_zone

log = logging.getLogger(__name__)

POWERCAP_ROOT = Path("/sys/class/powercap")
_PACKAGE_ZONE = re.compile(r"^intel-rapl:(\d+)$")
_SUB_ZONE = re.compile(r"^intel-rapl:\d+:\d+$")


class RaplPermissionError(EnergySourceError):
    """energy_uj is root-only on most kernels since 2020 (the PLATYPUS side channel)."""

    def __init__(self, path: Path):
        super().__init__(
            f"RAPL file {path} is not readable (PermissionError). Run as root, or grant read access "
            f"with `sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj` (resets at reboot), "
            f"or use the CPU estimate (--cpu-power estimate).")
        self.path = path


@dataclass(frozen=True)
class RaplZone:
    path: Path
    name: str
    """The zone's own name, e.g. 'package-0' or 'dram'."""
    max_energy_range_uj: int
    device: str
    """Device key: 'cpu-package-0', or 'ram-dram-0' for the DRAM beside package 0."""


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except PermissionError as exc:
        raise RaplPermissionError(path) from exc
    except (OSError, ValueError) as exc:
        raise EnergySourceError(f"cannot read RAPL file {path}: {exc}") from exc


def find_package_zones(root: str | os.PathLike[str] = POWERCAP_ROOT) -> list[RaplZone]:
    """Package zones under `root`; raises RaplPermissionError if one is unreadable."""
    root = Path(root)
    zones: list[RaplZone] = []
    if not root.is_dir():
        return zones
    for zone_dir in sorted(root.iterdir(), key=lambda p: p.name):
        if not _PACKAGE_ZONE.match(zone_dir.name):
            continue
        try:
            name = (zone_dir / "name").read_text().strip()
        except OSError:
            continue
        if not name.startswith("package"):
            continue  # psys and friends overlap the packages
        _read_int(zone_dir / "energy_uj")  # probe readability now, not mid-run
        zones.append(RaplZone(zone_dir, name, _read_int(zone_dir / "max_energy_range_uj"), f"cpu-{name}"))
    return zones


def find_dram_zones(root: str | os.PathLike[str] = POWERCAP_ROOT) -> list[RaplZone]:
    """DRAM subzones under `root`, one per package. Skips (and logs) unreadable ones: RAM is
    an extra, and a missing extra must not cost the CPU measurement."""
    root = Path(root)
    # The kernel lists a subzone both inside its package and, as a link, at the top level.
    candidates = [*root.glob("intel-rapl:*/intel-rapl:*:*"), *root.glob("intel-rapl:*:*")]
    by_name = {p.name: p for p in candidates if _SUB_ZONE.match(p.name) and p.is_dir()}
    zones: list[RaplZone] = []
    for zone_name, zone_dir in sorted(by_name.items()):
        try:
            if (zone_dir / "name").read_text().strip() != "dram":
                continue
            _read_int(zone_dir / "energy_uj")
            max_uj = _read_int(zone_dir / "max_energy_range_uj")
        except (OSError, EnergySourceError) as exc:
            log.info("RAPL DRAM zone %s skipped: %s", zone_dir, exc)
            continue
        package = zone_name.split(":")[1]  # intel-rapl:<package>:<subzone>
        zones.append(RaplZone(zone_dir, "dram", max_uj, f"ram-dram-{package}"))
    return zones


def wrapped_delta_uj(previous_uj: int, current_uj: int, max_energy_range_uj: int) -> int:
    """Energy between two reads of a counter that wraps to 0 after max_energy_range_uj."""
    if current_uj >= previous_uj:
        return current_uj - previous_uj
    return max_energy_range_uj - previous_uj + current_uj


class RaplSource(EnergySource):
    """Cumulative energy of package (and optionally DRAM) zones. Read at least once per wrap
    period (minutes at full load); the meter's sampler does so every interval."""

    name = "rapl"
    source = "rapl"
    estimated = False
    counter = True

    def __init__(self, zones: list[RaplZone], clock: Clock = time.monotonic):
        if not zones:
            raise ValueError("RaplSource needs at least one zone")
        self._zones = zones
        self._clock = clock
        self._lock = threading.Lock()
        self.devices = [z.device for z in zones]
        packages = [p for z in zones if (p := package_of_zone(z.name)) is not None]
        self.cpus = package_cpus(packages) if packages else None
        """Every CPU of the metered packages (None: topology unknown, or DRAM zones only)."""
        self._last_uj = {z.device: _read_int(z.path / "energy_uj") for z in zones}
        self._energy_j = {d: 0.0 for d in self.devices}
        self._last_t_s = clock()
        self._trace = TraceAverage()
        self._trace.update(self._last_t_s, self._energy_j)

    def read_energy_j(self) -> dict[str, float]:
        with self._lock:
            t_s = self._clock()
            for z in self._zones:
                now_uj = _read_int(z.path / "energy_uj")
                delta_j = wrapped_delta_uj(self._last_uj[z.device], now_uj, z.max_energy_range_uj) / 1e6
                self._last_uj[z.device] = now_uj
                self._energy_j[z.device] += delta_j
            self._last_t_s = t_s
            return dict(self._energy_j)

    def read_power_w(self) -> dict[str, float]:
        """Average power since the previous call (RAPL has no power reading)."""
        with self._lock:
            return self._trace.update(self._last_t_s, self._energy_j)


def open_rapl(root: str | os.PathLike[str] = POWERCAP_ROOT, clock: Clock = time.monotonic,
              dram: bool = False) -> tuple[RaplSource | None, str | None]:
    """A RAPL source, or None and the reason (absent, unreadable) it cannot be used.
    `dram=True` adds the DRAM zones where the machine has readable ones."""
    try:
        zones = find_package_zones(root)
    except EnergySourceError as exc:
        return None, str(exc)
    if not zones:
        return None, f"no RAPL package zones under {root} (common in VMs and on non-x86 CPUs)"
    if dram:
        zones += find_dram_zones(root)
    try:
        return RaplSource(zones, clock=clock), None
    except EnergySourceError as exc:
        return None, str(exc)
