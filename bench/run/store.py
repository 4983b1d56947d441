"""The run folder on disk: paths, atomic writes, and reading it back (names in bench.schema).

Every whole-file write goes to a temporary file in the same folder and is renamed over the
target, so a reader (or a crash) never sees half a file. CSV logs are appended line by line and
flushed, and on resume cut back to the checkpoint's step so no row is lost or repeated.
"""
from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from bench.csv_rows import csv_rows
from bench.run import log_repairs
from bench.schema import PLAN, SEED_DIR_PREFIX
from spikerl.atomic import FILE_MODE, WriteError, atomic_open, remove_stale_temps  # noqa: F401 (FILE_MODE: re-export)

FOLDER_LOCK = ".folder.lock"

class RunFolderError(ValueError):
    """A folder that is not (or no longer) a readable run folder."""


def is_simple_name(x: object) -> bool:
    """A single path component of ordinary characters: no separator, no '..', nothing hidden."""
    return isinstance(x, str) and 0 < len(x) <= 128 and not x.startswith(".") and \
        all(c.isalnum() or c in "-_." for c in x)


def seed_dir(run_dir: Path, method: str, env_id: str, seed: int) -> Path:
    """RUN/<method>/<env>/seed<k>. Its parts may come from a run folder's own files, so each
    must be one plain path component: the result never leaves the run folder."""
    if not (is_simple_name(method) and is_simple_name(env_id) and type(seed) is int and seed >= 0):
        raise RunFolderError(f"refusing a run folder path from {method!r}/{env_id!r}/seed {seed!r}")
    return Path(run_dir) / method / env_id / f"{SEED_DIR_PREFIX}{seed}"


@contextlib.contextmanager
def folder_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run folder's lock: one process at a time rebuilds what every run contributes to
    (summary.csv, the report), however many runs finish at once and on whichever node. POSIX
    record locks (lockf) are what NFS and the cluster filesystems SLURM sites share honour."""
    fd = os.open(Path(run_dir) / FOLDER_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


TRAIN_LOCK = ".train.lock"


class RunLock:
    """Held by the one process training a run, for as long as it trains: a second process (a
    resume started while the first still runs, a requeued task beside its old attempt) finds it
    taken and leaves the run alone. POSIX record locks vanish with their process, so a killed run
    never leaves a stale lock behind."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / TRAIN_LOCK
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock if it is free; False when another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_open(Path(path), "w") as f:
        f.write(text)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _jsonable(value.item())
    return value


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(_jsonable(data), indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunFolderError(f"missing {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise RunFolderError(f"corrupt {path}: {type(exc).__name__}: {str(exc)[:120]}") from None
    except OSError as exc:
        raise RunFolderError(f"unreadable {path}: {exc.strerror or exc}") from None


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: _cell(row.get(k)) for k in columns})
    atomic_write_text(path, buf.getvalue())


def _finite_float(text: str) -> float:
    """The number in a CSV cell, or NaN (which compares False with everything) if there is none."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if not math.isfinite(value) else repr(value)
    return value


class CsvLog:
    """An append-only CSV log with a fixed header, flushed after every row.

    `open(resume_step)` on resume rewrites the file (atomically) keeping only whole rows with
    step <= resume_step: the rows written after the checkpoint are redone, and a row cut short
    by a kill (or one that does not parse) is dropped rather than carried into the resumed log."""

    def __init__(self, path: Path, columns: Sequence[str], required: Sequence[str] = ("step",)):
        self.path, self.columns, self.required = Path(path), list(columns), tuple(required)
        self._f: io.TextIOWrapper | None = None

    def open(self, resume_step: int | None) -> None:
        if resume_step is None or not self.path.exists():
            write_csv(self.path, self.columns, [])
        else:
            write_csv(self.path, self.columns, self._rows_up_to(resume_step))
        self._f = f = open(self.path, "a", newline="", encoding="utf-8")
        self._w = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n")

    def _rows_up_to(self, step: int) -> list[dict[str, Any]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RunFolderError(f"unreadable {self.path}: {exc}") from None
        if not text.endswith("\n"):  # the last line was cut off mid-write: the latest row, past the checkpoint
            text = text[:text.rfind("\n") + 1]
        rows = csv_rows(io.StringIO(text))
        header = next(rows, (0, None))[1]
        if header != self.columns:
            raise RunFolderError(f"{self.path}: header {str(header)[:200]} does not match {self.columns}")
        kept, dropped = [], []
        for line_num, cells in rows:
            # a garbage row may be short or long (strict=False); its length is checked before it is kept
            row = dict(zip(self.columns, cells or [], strict=False))
            if cells is not None and len(cells) == len(self.columns) and self._whole(row):
                if _finite_float(row["step"]) <= step:
                    kept.append(row)
            elif cells is None or cells:  # a garbage row inside the log: said, not dropped silently
                label = log_repairs.dropped_label(cells[0] if cells else None, line_num)
                if not (label.isdigit() and int(label) > step):  # past the checkpoint: redone anyway
                    dropped.append(label)
        log_repairs.record(self.path.parent, self.path.name, dropped, step)
        return kept

    def _whole(self, row: dict[str, Any]) -> bool:
        return not any(math.isnan(_finite_float(row[c])) for c in self.required)

    def append(self, row: dict[str, Any]) -> None:
        assert self._f is not None, "CsvLog.open() first"
        try:
            self._w.writerow({k: _cell(row.get(k)) for k in self.columns})
            self._f.flush()
        except OSError as exc:  # a full disk: the run stops, naming the file; the rows before stay whole
            raise WriteError(self.path, exc) from None

    def close(self) -> None:
        if self._f is not None:
            f, self._f = self._f, None
            try:
                f.close()
            except OSError:
                pass  # only a row whose append already raised WriteError can be pending here


def is_run_folder(path: Path) -> bool:
    return (Path(path) / PLAN).is_file()


def load_plan(run_dir: Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunFolderError(f"{run_dir} is not a folder")
    if not is_run_folder(run_dir):
        raise RunFolderError(f"{run_dir} is not a spikerl-bench run folder (no {PLAN})")
    plan = read_json(run_dir / PLAN)
    if not isinstance(plan, dict) or not {"methods", "envs", "seeds"} <= set(plan):
        raise RunFolderError(f"{run_dir / PLAN} lacks methods/envs/seeds")
    return plan


def clean_stale_temps(run_dir: Path, seed_folders: Iterable[Path] = ()) -> list[Path]:
    """Remove what interrupted writes left in the run folder, its figures/ and these seed
    folders (spikerl.atomic.remove_stale_temps: our own temporary names only, of writers no
    longer running, older than this process); one line on stderr says how many went."""
    import sys

    removed: list[Path] = []
    for folder in (Path(run_dir), Path(run_dir) / "figures", *seed_folders):
        removed += remove_stale_temps(folder)
    if removed:
        print(f"spikerl-bench: removed {len(removed)} temporary file(s) of interrupted writes "
              f"({', '.join(sorted({p.name.split('.')[1] for p in removed}))})", file=sys.stderr)
    return removed
