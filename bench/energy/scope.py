"""Which CPUs an energy source covers, so that the contention beside it is measured over the same
CPUs: RAPL covers every CPU of its metered packages; the estimate covers the cores its TDP is
scaled to (the run's allocation)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

CPU_SYSFS = Path("/sys/devices/system/cpu")
_CPU_DIR = re.compile(r"^cpu(\d+)$")


def package_of_zone(zone_name: str) -> int | None:
    """'package-1' -> 1 (RAPL names package zones after the physical package id)."""
    m = re.fullmatch(r"package-(\d+)", zone_name)
    return int(m.group(1)) if m else None


def package_cpus(packages: Iterable[int], root: Path | None = None) -> list[int] | None:
    """Every logical CPU whose physical package is one of `packages`; None where the topology
    cannot be read (then the caller keeps its default)."""
    root = root or CPU_SYSFS
    wanted = set(packages)
    out = []
    try:
        for d in root.iterdir():
            m = _CPU_DIR.match(d.name)
            if not m:
                continue
            try:
                pkg = int((d / "topology" / "physical_package_id").read_text().strip())
            except (OSError, ValueError):
                continue
            if pkg in wanted:
                out.append(int(m.group(1)))
    except OSError:
        return None
    return sorted(out) or None
