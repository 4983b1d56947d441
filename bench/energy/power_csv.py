"""power.csv: the sampler's trace file (columns bench.schema.POWER_COLUMNS), written in batches.

Rows are queued by the sampler and written every few seconds, so the sampling interval
costs no disk I/O. An existing file is appended to (a resumed run continues its trace)
unless its header differs, in which case it is moved aside rather than mixed.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import IO, Any, Sequence

from bench.schema import POWER_COLUMNS

PowerRow = tuple[str, str, str, str, str, bool]
"""(t_s, device, power_w, energy_j, source, estimated), already formatted."""


class PowerCsv:
    """One open power.csv. Not thread-safe: the meter serialises calls under its lock."""

    def __init__(self, path: str | os.PathLike[str], errors: list[str]):
        """`errors` is the owner's problem list: a moved-aside file or a failed write lands there."""
        self.path = Path(path)
        self._errors = errors
        self._file: IO[str] | None = None
        self._writer: Any = None

    def open(self) -> None:
        if self._file is not None:
            return
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        header = ",".join(POWER_COLUMNS)
        if path.exists() and path.stat().st_size > 0:
            with path.open(encoding="utf-8") as f:
                first = f.readline().strip()
            if first != header:
                # Never mix schemas in one file (a resume with an older version).
                n = 1
                while path.with_name(f"{path.name}.bak{n}").exists():
                    n += 1
                path.rename(path.with_name(f"{path.name}.bak{n}"))
                self._errors.append(f"{path.name} had another header; moved to {path.name}.bak{n}")
        new = not path.exists() or path.stat().st_size == 0
        self._file = path.open("a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(POWER_COLUMNS)
            self._file.flush()

    def write(self, rows: Sequence[PowerRow]) -> None:
        """Append rows; a disk error is recorded, never raised (the trace must not stop training)."""
        if self._file is None or not rows:
            return
        try:
            self._writer.writerows(rows)
            self._file.flush()
        except OSError as exc:
            self._errors.append(f"{self.path.name}: {exc}")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = self._writer = None
