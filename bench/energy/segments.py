"""The segments of a resumed run's power trace, and the time between them no row covers.

Each process that trains a run writes one segment of power.csv (bench.energy.power_csv): t_s
continues from the checkpoint's wall seconds, and every row carries its segment's number and
start. On a resume the trace is cut back to the checkpoint, and the rows the killed process had
not yet flushed are gone, so the last row before a segment can lie well before that segment's
start. That stretch is `unmetered_s`: seconds of the run's time base no power row covers (its
energy is in the checkpoint's totals; the trace alone cannot show it). The meters' coverage
counts it as unmetered.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from bench.csv_rows import csv_rows
from bench.schema import POWER_COLUMNS

MAX_ROWS = 5_000_000  # a day at 0.1 s per device for a few devices; past it the trace is not read here


@dataclass(frozen=True)
class Segment:
    """One process's stretch of the trace: its number, the t_s its meter started at, and the
    t_s of its first and last rows."""

    index: int
    start_s: float
    first_t_s: float
    last_t_s: float


def read_segments(path: Path) -> list[Segment] | None:
    """The trace's segments in file order; None when the file is absent, unreadable or has no
    segment columns (a trace from before them). Rows that do not parse are skipped (the resume
    check records them, bench.run.log_repairs)."""
    try:
        f = open(path, newline="", encoding="utf-8", errors="replace")
    except OSError:
        return None
    with f:
        reader = csv_rows(f)
        if next(reader, (0, None))[1] != list(POWER_COLUMNS):
            return None
        i_t, i_seg, i_start = (POWER_COLUMNS.index(c) for c in ("t_s", "segment", "segment_start_s"))
        out: list[Segment] = []
        for n, (_, row) in enumerate(reader):
            if n >= MAX_ROWS:
                break
            if row is None or len(row) != len(POWER_COLUMNS):
                continue
            t_s, start_s = _num(row[i_t]), _num(row[i_start])
            try:
                index = int(row[i_seg])
            except ValueError:
                index, start_s = 0, 0.0  # rows from before segments: one segment from 0
            if not math.isfinite(t_s) or not math.isfinite(start_s):
                continue
            if out and out[-1].index == index:
                last = out[-1]
                out[-1] = Segment(index, last.start_s, last.first_t_s, max(last.last_t_s, t_s))
            else:
                out.append(Segment(index, start_s, t_s, t_s))
    return out


def unmetered_s(path: Path) -> float | None:
    """Seconds between the last row before each segment (0 for the first) and that segment's
    start, summed: a first process killed before it wrote a row leaves the trace starting at the
    second's start, and that counts too. None for a trace of one segment from 0 (or none)."""
    segments = read_segments(path)
    if not segments or (len(segments) == 1 and segments[0].start_s == 0.0):
        return None
    gap, covered_to = 0.0, 0.0
    for seg in segments:
        gap += max(0.0, seg.start_s - covered_to)
        covered_to = max(covered_to, seg.last_t_s)
    return round(gap, 3)


def _num(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan
