"""CPU package energy from Linux RAPL (powercap sysfs).

Only the top-level package zones (`intel-rapl:N`, named `package-N`) are summed: psys
contains the packages, and the core/uncore/dram subzones (`intel-rapl:N:M`) sit inside
or beside them, so adding any of them would count energy twice. AMD CPUs expose the
same tree.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.energy.base import Clock, EnergySource, EnergySourceError, TraceAverage

log = logging.getLogger(__name__)

POWERCAP_ROOT = Path("/sys/class/powercap")
_PACKAGE_ZONE = re.compile(r"^intel-rapl:(\d+)$")


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
    """The zone's own name, e.g. 'package-0'."""
    max_energy_range_uj: int

    @property
    def device(self) -> str:
        return f"cpu-{self.name}"


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except PermissionError as exc:
        raise RaplPermissionError(path) from exc
    except (OSError, ValueError) as exc:
        raise EnergySourceError(f"cannot read RAPL file {path}: {exc}") from exc


def find_package_zones(root: Path = POWERCAP_ROOT) -> list[RaplZone]:
    """Package zones under `root`; raises RaplPermissionError if one is unreadable."""
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
        zones.append(RaplZone(zone_dir, name, _read_int(zone_dir / "max_energy_range_uj")))
    return zones


def wrapped_delta_uj(previous_uj: int, current_uj: int, max_energy_range_uj: int) -> int:
    """Energy between two reads of a counter that wraps to 0 after max_energy_range_uj."""
    if current_uj >= previous_uj:
        return current_uj - previous_uj
    return max_energy_range_uj - previous_uj + current_uj


class RaplSource(EnergySource):
    """Cumulative package energy. Read at least once per wrap period (minutes at full load);
    the meter's sampler does so every interval."""

    name = "rapl"
    source = "rapl"
    estimated = False

    def __init__(self, zones: list[RaplZone], clock: Clock = time.monotonic):
        if not zones:
            raise ValueError("RaplSource needs at least one package zone")
        self._zones = zones
        self._clock = clock
        self._lock = threading.Lock()
        self.devices = [z.device for z in zones]
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


def open_rapl(root: Path = POWERCAP_ROOT, clock: Clock = time.monotonic
              ) -> tuple[RaplSource | None, str | None]:
    """A RAPL source, or None and the reason (absent, unreadable) it cannot be used."""
    try:
        zones = find_package_zones(root)
    except EnergySourceError as exc:
        return None, str(exc)
    if not zones:
        return None, f"no RAPL package zones under {root} (common in VMs and on non-x86 CPUs)"
    try:
        return RaplSource(zones, clock=clock), None
    except EnergySourceError as exc:
        return None, str(exc)
