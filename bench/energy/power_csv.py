"""power.csv: the sampler's trace file (columns bench.schema.POWER_COLUMNS), written in batches.

Rows are queued by the sampler and written every few seconds, so the sampling interval
costs no disk I/O. An existing file is appended to (a resumed run continues its trace)
unless its header differs, in which case it is moved aside rather than mixed. Each process
that trains the run writes one segment: its rows carry the segment's number and the t_s its
meter started at, so that a reader sees where one process's trace ends and the next begins
(bench.energy.segments). A file from before the segment columns is given them, empty.

A write that fails (a full disk) is recorded in the owner's problem list and kept as
`failure`, which the energy callback raises on the training thread: the run stops with one
line naming the file, and every row written before stays whole.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import IO, Any, Protocol, Sequence

from bench.csv_rows import csv_rows
from bench.schema import POWER_COLUMNS, POWER_COLUMNS_BEFORE_SEGMENTS
from spikerl.atomic import WriteError, atomic_open

PowerRow = tuple[str, str, str, str, str, bool]
"""(t_s, device, power_w, energy_j, source, estimated), already formatted."""


class ProblemSink(Protocol):
    """Where problems go: a plain list, or the meter's ErrorLog (bench.energy.errors)."""

    def append(self, message: str) -> object: ...


class PowerCsv:
    """One open power.csv. Not thread-safe: the meter serialises calls under its lock."""

    def __init__(self, path: str | os.PathLike[str], errors: ProblemSink, segment_start_s: float = 0.0):
        """`errors` is the owner's problem list: a moved-aside file or a failed write lands there.
        `segment_start_s`: the t_s this process's meter starts at (0, or the checkpoint's wall_s)."""
        self.path = Path(path)
        self._errors = errors
        self._file: IO[str] | None = None
        self._writer: Any = None
        self.segment = 0
        self.segment_start_s = float(segment_start_s)
        self.failure: WriteError | None = None

    def open(self) -> None:
        if self._file is not None:
            return
        path = self.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            header = ",".join(POWER_COLUMNS)
            if path.exists() and path.stat().st_size > 0:
                with path.open(encoding="utf-8", errors="replace") as f:
                    first = f.readline().strip()
                if first == ",".join(POWER_COLUMNS_BEFORE_SEGMENTS):
                    self._add_segment_columns()
                elif first != header:
                    # Never mix schemas in one file (a resume with an older version).
                    n = 1
                    while path.with_name(f"{path.name}.bak{n}").exists():
                        n += 1
                    path.rename(path.with_name(f"{path.name}.bak{n}"))
                    self._errors.append(f"{path.name} had another header; moved to {path.name}.bak{n}")
            new = not path.exists() or path.stat().st_size == 0
            self.segment = 0 if new else last_segment(path) + 1
            self._file = path.open("a", newline="", encoding="utf-8")
            self._writer = csv.writer(self._file, lineterminator="\n")
            if new:
                self._writer.writerow(POWER_COLUMNS)
                self._file.flush()
        except OSError as exc:
            self._fail(exc)

    def _add_segment_columns(self) -> None:
        """The old six columns, plus the segment columns left empty (which process wrote each row
        is not known); one atomic rewrite, so a crash leaves the old file or the new one."""
        text = self.path.read_text(encoding="utf-8", errors="replace")
        rows = [r for _, r in csv_rows(io.StringIO(text))][1:]
        with atomic_open(self.path, "w") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(POWER_COLUMNS)
            w.writerows(r + ["", ""] for r in rows if r is not None and len(r) == len(POWER_COLUMNS_BEFORE_SEGMENTS))

    def write(self, rows: Sequence[PowerRow]) -> None:
        """Append rows; a disk error is recorded and kept as `failure` (raised by the callback)."""
        if self._file is None or not rows or self.failure is not None:
            return
        tail = (self.segment, f"{self.segment_start_s:.3f}")
        try:
            self._writer.writerows(tuple(r) + tail for r in rows)
            self._file.flush()
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        self.failure = exc if isinstance(exc, WriteError) else WriteError(self.path, exc)
        self._errors.append(f"{self.path.name}: {self.failure.reason}")

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError as exc:  # the last buffered rows could not be written
                self._fail(exc)
            self._file = self._writer = None


def last_segment(path: Path) -> int:
    """The segment of the file's last whole row; -1 when it has none or no segment column (a
    trace from before segments counts as one segment, 0, before the next)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return -1
    lines = [ln for ln in tail.split("\n")[:-1] if ln]  # the part after the last newline is not whole
    for line in reversed(lines):
        try:
            cells = next(csv.reader([line]), [])
        except csv.Error:  # a field past the csv module's limit: not a row
            continue
        if len(cells) == len(POWER_COLUMNS):
            try:
                return int(cells[POWER_COLUMNS.index("segment")])
            except ValueError:
                return 0 if cells[0] != "t_s" else -1
    return -1
