"""The rows a resume dropped while healing a log, recorded once so that nothing is lost silently.

A kill can leave a row cut mid-line (always the last one written: it is past the checkpoint
and redone on resume, so not a loss) or, after a disk fault or an edit, a garbage row in the
middle of a log. The latter is dropped when the log is cut back to the checkpoint; its step (or
line number, when the step itself is unreadable) is appended to RUN/.../log_repairs.json and
shows in result.json as `log_rows_dropped` ("progress.csv:1250,1500; evals.csv:line 7") and in
the report's reproducibility appendix.
"""
from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any, Sequence

from spikerl.atomic import atomic_open

LOG_REPAIRS = "log_repairs.json"
MAX_ENTRIES = 10_000  # a log of garbage is listed by its first rows, not by a file the size of the log


def dropped_label(step_text: str | None, line_no: int) -> str:
    """'1250' for a row whose step reads as a whole number, else 'line 7' (1-based, header = 1)."""
    try:
        step = float(step_text) if step_text is not None else math.nan
    except ValueError:
        step = math.nan
    if math.isfinite(step) and step == int(step) and step >= 0:
        return str(int(step))
    return f"line {line_no}"


def record(folder: Path, file: str, dropped: Sequence[str], resume_step: float | None) -> None:
    """Append one repair of `file` (its dropped rows' labels) to the seed's record."""
    if not dropped:
        return
    entries = read(folder)
    entries.append({"file": file, "rows": list(dropped)[:MAX_ENTRIES], "rows_dropped": len(dropped),
                    "resume_step": resume_step,
                    "utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})
    with atomic_open(Path(folder) / LOG_REPAIRS, "w") as f:
        f.write(json.dumps(entries, indent=1) + "\n")


def read(folder: Path) -> list[dict[str, Any]]:
    """The seed's repairs; a record that does not read as one is replaced by one saying so (the
    record is ours, and an unreadable one must not stop a resume)."""
    path = Path(folder) / LOG_REPAIRS
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError, RecursionError):
        return [{"file": LOG_REPAIRS, "rows": ["unreadable: earlier repairs unknown"], "rows_dropped": 0}]
    if not isinstance(data, list):
        return [{"file": LOG_REPAIRS, "rows": ["not a list: earlier repairs unknown"], "rows_dropped": 0}]
    return [e for e in data if _valid(e)][:MAX_ENTRIES]


def _valid(entry: Any) -> bool:
    return isinstance(entry, dict) and isinstance(entry.get("file"), str) and len(entry["file"]) <= 64 \
        and isinstance(entry.get("rows"), list) and all(isinstance(r, str) and len(r) <= 64 for r in entry["rows"])


def summary(folder: Path) -> str | None:
    """'progress.csv:1250,1500; evals.csv:line 7' (files in order of first repair), None if none."""
    by_file: dict[str, list[str]] = {}
    for entry in read(folder):
        by_file.setdefault(entry["file"], []).extend(entry["rows"])
    return "; ".join(f"{name}:{','.join(rows)}" for name, rows in by_file.items()) or None


def result_fields(folder: Path) -> dict[str, Any]:
    """result.json's RESUME_FIELDS: the rows dropped and the power trace's time between segments."""
    from bench.energy.segments import unmetered_s
    from bench.schema import POWER

    return {"log_rows_dropped": summary(folder), "unmetered_s": unmetered_s(Path(folder) / POWER)}
