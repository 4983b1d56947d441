"""Where a sweep stands, read from its run folder only (`spikerl-bench status RUN`), so it works while the
runs execute on other nodes: per run its state, steps done, recent steps/s, ETA, placement and energy so
far, and the ETA of the whole sweep. Rendering lives in bench.cli.status.

Nothing read here is trusted. plan.json is validated by Plan.from_json before any path is built from it,
and each seed folder comes from store.seed_dir. config.json, progress.csv and result.json are checked for
type and range; a file that fails is reported on its own row ("?" and a note), never as a traceback.

States: complete / failed / interrupted (result.json), running (no result yet, or an older unfinished
result with a resume writing after it, and a file written within the staleness window), stalled (the same,
but silent for longer: a killed task, to be finished with --resume), pending (no folder yet), corrupt (a
result.json that cannot be read).
"""
from __future__ import annotations

import csv
import io
import math
import os
import time
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from bench import schema
from bench.run import store
from bench.run.plan import Plan
from bench.schema import Status

STALE_MIN_S = 300.0
"""A run that wrote nothing for this long (or STALE_LOG_INTERVALS progress intervals, if longer) is stalled."""
STALE_LOG_INTERVALS = 10
RECENT_ROWS = 5
"""Steps/s is measured over the last RECENT_ROWS progress intervals, not since the start."""
TAIL_BYTES = 256 * 1024
"""Only the header and this much of the end of progress.csv are read (what --watch rereads every refresh)."""
MAX_STEPS = 10**12
STALLED = "stalled"
LAUNCHERS = ("inline", "local", "slurm")


@dataclass(frozen=True)
class Placement:
    """Where a run executes: config.json's "placement", written by the sweep launcher (bench.run.sweep)."""

    host: str
    pid: int
    launcher: str
    job_id: str | None
    slot: int | None
    cpus: tuple[int, ...] | None
    cuda_visible_devices: str | None
    concurrent_runs: int

    @classmethod
    def from_json(cls, d: Any) -> "Placement | None":
        """The placement if every field has the right type and range, else None (shown as nothing)."""
        if not isinstance(d, dict):
            return None
        cpus = d.get("cpus")
        ok = (_is_label(d.get("host"), 255) and _is_int(d.get("pid"), 1, 2**31) and d.get("launcher") in LAUNCHERS
              and (d.get("job_id") is None or _is_label(d.get("job_id"), 64))
              and (d.get("slot") is None or _is_int(d.get("slot"), 0, 2**20))
              and (cpus is None or (isinstance(cpus, list) and len(cpus) <= 4096
                                    and all(_is_int(c, 0, 2**20) for c in cpus)))
              and (d.get("cuda_visible_devices") in (None, "")  # "": no GPU visible (submitit's CPU jobs)
                   or _is_label(d.get("cuda_visible_devices"), 256, ","))
              and _is_int(d.get("concurrent_runs"), 1, 2**20))
        if not ok:
            return None
        return cls(host=d["host"], pid=d["pid"], launcher=d["launcher"], job_id=d.get("job_id"), slot=d.get("slot"),
                   cpus=None if cpus is None else tuple(cpus), cuda_visible_devices=d.get("cuda_visible_devices"),
                   concurrent_runs=d["concurrent_runs"])


@dataclass(frozen=True)
class RunStatus:
    """One method x env x seed of the plan."""

    method: str
    env: str
    seed: int
    state: str
    """A schema.Status value, or "stalled"."""
    steps: int | None = None
    """Env steps done (all ranks); None where unknown (a corrupt progress.csv)."""
    total_steps: int | None = None
    sps: float | None = None
    """Env steps/s over the last few progress rows; None before two rows (or for a finished run)."""
    eta_s: float | None = None
    energy_j: float | None = None
    """Energy so far: the last progress row's (result.json's once finished)."""
    energy_estimated: bool | None = None
    """True where the run's result or config says its energy is estimated; None where nothing says."""
    energy_attributed: bool = False
    """Its CPU and RAM energy is a share of the machine's (runs side by side: concurrent_runs > 1)."""
    seed_batch: int = 1
    """Seeds trained in its process: its energy is the process's / seed_batch."""
    device: str | None = None
    placement: Placement | None = None
    last_update_s: float | None = None
    """Seconds since the run last wrote progress.csv or config.json."""
    notes: tuple[str, ...] = ()
    """What could not be read, why the run is stalled, its error."""

    @property
    def unfinished(self) -> bool:
        return self.state in (Status.RUNNING.value, Status.PENDING.value)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["placement"] = None if self.placement is None else {
            **asdict(self.placement), "cpus": None if self.placement.cpus is None else list(self.placement.cpus)}
        d["notes"] = list(self.notes)
        return d


@dataclass(frozen=True)
class SweepStatus:
    run_dir: Path
    plan_total_steps: int
    runs: tuple[RunStatus, ...]
    checked_at: float = field(default_factory=time.time)

    def count(self, state: str) -> int:
        return sum(r.state == state for r in self.runs)

    @property
    def counts(self) -> dict[str, int]:
        order = (Status.COMPLETE.value, Status.RUNNING.value, STALLED, Status.PENDING.value, Status.FAILED.value,
                 Status.INTERRUPTED.value, Status.CORRUPT.value)
        return {s: self.count(s) for s in order if self.count(s)}

    @property
    def finished(self) -> bool:
        """Nothing runs and nothing waits to (stalled runs need a --resume to move again)."""
        return not any(r.unfinished for r in self.runs)

    @property
    def remaining_steps(self) -> int | None:
        """Env steps left in running and pending runs; None where a running run's steps are unknown."""
        left = 0
        for r in self.runs:
            if r.state == Status.PENDING.value:
                left += r.total_steps or self.plan_total_steps
            elif r.state == Status.RUNNING.value:
                if r.steps is None or r.total_steps is None:
                    return None
                left += max(0, r.total_steps - r.steps)
        return left

    @property
    def throughput_sps(self) -> float | None:
        """Env steps/s of every running run together (runs in parallel add up); None when none is measured."""
        rates = [r.sps for r in self.runs if r.state == Status.RUNNING.value and r.sps]
        return sum(rates) if rates else None

    @property
    def eta_s(self) -> float | None:
        """Remaining steps of running and pending runs at the running runs' combined recent throughput."""
        left, rate = self.remaining_steps, self.throughput_sps
        if left is None or rate is None:
            return None
        return left / rate

    def to_json(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "checked_at": self.checked_at, "counts": self.counts,
                "remaining_steps": self.remaining_steps, "throughput_sps": self.throughput_sps,
                "eta_s": self.eta_s, "finished": self.finished, "runs": [r.to_json() for r in self.runs]}


def read_status(run_dir: Path, now: float | None = None) -> SweepStatus:
    """The state of every run of RUN's plan. A folder that is not a run folder (or an invalid plan.json)
    raises store.RunFolderError."""
    run_dir = Path(run_dir)
    plan = Plan.from_json(store.load_plan(run_dir), run_dir / schema.PLAN)
    now = time.time() if now is None else now
    runs = tuple(run_status(run_dir, plan, m, e, s, now) for m, e, s in plan.runs())
    return SweepStatus(run_dir=run_dir, plan_total_steps=plan.total_steps, runs=runs, checked_at=now)


def run_status(run_dir: Path, plan: Plan, method: str, env_id: str, seed: int, now: float) -> RunStatus:
    folder = store.seed_dir(run_dir, method, env_id, seed)
    if not folder.is_dir():
        return RunStatus(method=method, env=env_id, seed=seed, state=Status.PENDING.value, steps=0,
                         total_steps=plan.total_steps)
    notes: list[str] = []
    total_steps, device, placement, config_estimated = _read_config(folder / schema.CONFIG, notes)
    total_steps = total_steps or plan.total_steps
    rows = _read_progress(folder / schema.PROGRESS, notes)
    result, result_t = _read_result(folder / schema.RESULT, notes)
    last_write = max((t for t in (_mtime(folder / schema.PROGRESS), _mtime(folder / schema.CONFIG)) if t is not None),
                     default=_mtime(folder))
    age = None if last_write is None else max(0.0, now - last_write)
    steps = None if rows is None else (rows[-1].step if rows else 0)
    energy = None if rows is None or not rows else rows[-1].energy_j

    resumed = result is not None and result["status"] != Status.COMPLETE.value and \
        last_write is not None and result_t is not None and last_write > result_t
    if result_t is not None and result is None:
        state = Status.CORRUPT.value
    elif result is not None and not resumed:  # finished (a resume that wrote nothing yet counts as not begun)
        state = result["status"]
        steps = result.get("steps", steps)
        energy = result.get("energy_j", energy)
        if result.get("error"):
            notes.append(result["error"])
    else:
        if resumed and result is not None:  # (resumed implies a result)
            notes.append(f"resumed after it was {result['status']}")
        if age is not None and age > stale_window_s(rows):
            state = STALLED
            notes.append(f"stalled, last update {age / 60:.0f} min ago")
        else:
            state = Status.RUNNING.value
    sps = eta = None
    if state == Status.RUNNING.value and rows:
        sps = recent_sps(rows)
        if sps and steps is not None:
            eta = max(0, total_steps - steps) / sps
    estimated = True if (result or {}).get("estimated") is True or config_estimated else None
    attributed = bool((result or {}).get("attributed")) or (placement is not None and placement.concurrent_runs > 1)
    seed_batch = int((result or {}).get("seed_batch", 1))
    return RunStatus(method=method, env=env_id, seed=seed, state=state, steps=steps, total_steps=total_steps,
                     sps=sps, eta_s=eta, energy_j=energy, energy_estimated=estimated, energy_attributed=attributed,
                     seed_batch=seed_batch, device=device, placement=placement, last_update_s=age,
                     notes=tuple(notes))


@dataclass(frozen=True)
class ProgressRow:
    step: int
    wall_s: float
    energy_j: float | None


def recent_sps(rows: list[ProgressRow]) -> float | None:
    """Env steps/s over the last RECENT_ROWS intervals between progress rows (rows of a resumed run
    continue the wall clock, so intervals across a resume count only training time)."""
    if len(rows) < 2:
        return None
    first, last = rows[-min(len(rows), RECENT_ROWS + 1)], rows[-1]
    dt = last.wall_s - first.wall_s
    return (last.step - first.step) / dt if dt > 0 and last.step > first.step else None


def stale_window_s(rows: list[ProgressRow] | None) -> float:
    """STALE_MIN_S, or STALE_LOG_INTERVALS times the recent seconds between progress rows if longer."""
    if not rows or len(rows) < 2:
        return STALE_MIN_S
    recent = rows[-min(len(rows), RECENT_ROWS + 1):]
    gaps = sorted(b.wall_s - a.wall_s for a, b in pairwise(recent))
    return max(STALE_MIN_S, STALE_LOG_INTERVALS * gaps[len(gaps) // 2])


# ---- reading one seed folder (each reader appends to `notes` what it could not read)

def _read_config(path: Path, notes: list[str]) -> tuple[int | None, str | None, Placement | None, bool]:
    """(td3.total_steps, device, placement, whether it says its energy is estimated) of config.json."""
    if not path.exists():
        return None, None, None, False
    try:
        config = store.read_json(path)
    except store.RunFolderError:
        config = None
    if not isinstance(config, dict):
        notes.append(f"corrupt {schema.CONFIG}")
        return None, "?", None, False
    td3 = config.get("td3")
    total = td3.get("total_steps") if isinstance(td3, dict) else None
    if not _is_int(total, 1, MAX_STEPS):
        notes.append(f"{schema.CONFIG}: no valid td3.total_steps (the plan's budget is used)")
        total = None
    device = config.get("device")
    if device is not None and not _is_label(device, 32):
        notes.append(f"{schema.CONFIG}: invalid device")
        device = "?"
    return total, device, Placement.from_json(config.get("placement")), config.get("estimated") is True


def _read_result(path: Path, notes: list[str]) -> tuple[dict | None, float | None]:
    """(validated result fields or None, result.json's mtime or None when there is none)."""
    mtime = _mtime(path)
    if mtime is None:
        return None, None
    try:
        result = store.read_json(path)
    except store.RunFolderError:
        result = None
    final = {s.value for s in schema.FINAL_STATUSES}
    if not isinstance(result, dict) or not isinstance(result.get("status"), str) or result["status"] not in final:
        notes.append(f"unreadable {schema.RESULT}")
        return None, mtime
    out: dict[str, Any] = {"status": result["status"]}
    if _is_int(result.get("steps"), 0, MAX_STEPS):
        out["steps"] = result["steps"]
    if _is_number(result.get("energy_j")):
        out["energy_j"] = float(result["energy_j"])
    if isinstance(result.get("estimated"), bool):
        out["estimated"] = result["estimated"]
    if isinstance(result.get("energy_source"), str) and "attributed" in result["energy_source"]:
        out["attributed"] = True
    if _is_int(result.get("seed_batch"), 2, 2**20):
        out["seed_batch"] = result["seed_batch"]
    if isinstance(result.get("error"), str) and result["error"]:
        out["error"] = _printable(result["error"], 160)
    return out, mtime


def _read_progress(path: Path, notes: list[str]) -> list[ProgressRow] | None:
    """The whole rows at the end of progress.csv ([] when it has none or does not exist yet); None, with a
    note, when it cannot be read or holds something its writer never writes."""
    try:
        with open(path, "rb") as f:
            head = f.readline(64 * 1024)
            size = os.fstat(f.fileno()).st_size
            start = max(f.tell(), size - TAIL_BYTES)
            f.seek(start)
            tail = f.read(TAIL_BYTES)
    except FileNotFoundError:
        return []
    except OSError as exc:
        notes.append(f"unreadable {schema.PROGRESS}: {exc.strerror or exc}")
        return None
    if start > len(head):  # the tail starts mid-line
        tail = tail[tail.find(b"\n") + 1:] if b"\n" in tail else b""
    tail = tail[:tail.rfind(b"\n") + 1]  # a last line cut off mid-write is not a row yet
    try:
        header = next(csv.reader([head.decode("utf-8")]), [])
        lines = list(csv.reader(io.StringIO(tail.decode("utf-8"))))
    except (UnicodeDecodeError, csv.Error):
        notes.append(f"corrupt {schema.PROGRESS}")
        return None
    if not head:
        return []
    if not {"step", "wall_s"} <= set(header) or len(set(header)) != len(header):
        notes.append(f"corrupt {schema.PROGRESS}: unexpected header")
        return None
    rows: list[ProgressRow] = []
    for line in lines:
        row = dict(zip(header, line, strict=True)) if len(line) == len(header) else None
        parsed = _progress_row(row) if row is not None else None
        if parsed is None or (rows and (parsed.step < rows[-1].step or parsed.wall_s < rows[-1].wall_s)):
            notes.append(f"corrupt {schema.PROGRESS}: malformed row {len(rows) + 1} of the last {len(lines)}")
            return None
        rows.append(parsed)
    return rows


def _progress_row(row: dict[str, str]) -> ProgressRow | None:
    step, wall, energy = _float(row.get("step")), _float(row.get("wall_s")), row.get("energy_j", "")
    if step is None or not step.is_integer() or not 0 <= step <= MAX_STEPS or wall is None or wall < 0:
        return None
    energy_j = None
    if energy not in ("", None):
        energy_j = _float(energy)
        if energy_j is None or energy_j < 0:
            return None
    return ProgressRow(step=int(step), wall_s=wall, energy_j=energy_j)


# ---- small checks

def _float(text: Any) -> float | None:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _is_int(x: Any, lo: int, hi: int) -> bool:
    return type(x) is int and lo <= x <= hi


def _is_number(x: Any) -> bool:
    return type(x) in (int, float) and math.isfinite(x) and x >= 0


def _is_label(x: Any, max_len: int, extra: str = "") -> bool:
    """A short name shown in a terminal: letters, digits and -_.:@/+ (no spaces, no control characters)."""
    return isinstance(x, str) and 0 < len(x) <= max_len and all(c.isalnum() or c in "-_.:@/+" + extra for c in x)


def _printable(text: str, max_len: int) -> str:
    text = "".join(c if c.isprintable() else " " for c in text)
    return " ".join(text.split())[:max_len]


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None
