"""A fake Linux powercap tree (RAPL zones) in a temporary folder, as sysfs lays it out."""
from __future__ import annotations

import os
from pathlib import Path


def make_zone(root: Path, name: str, label: str, energy_uj: int, max_uj: int = 262_143_328_850) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "name").write_text(label + "\n")
    (d / "energy_uj").write_text(f"{energy_uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return d


def set_energy_uj(zone: Path, value: int) -> None:
    """Atomic, like sysfs: a sampler thread reading concurrently never sees a half-written file."""
    tmp = zone / "energy_uj.tmp"
    tmp.write_text(f"{value}\n")
    os.replace(tmp, zone / "energy_uj")
