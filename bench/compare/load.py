"""One side of a comparison read back from disk: a run folder, a summary.csv, or exported JSON.

Nothing here is trusted. A run folder's plan.json is validated before any path is built from it;
every number is parsed and must be finite; malformed CSV rows are skipped and counted; a run
whose result is missing or unreadable is kept with its status, so the comparison can say so.
Columns a newer writer added are tolerated (and those that describe how a run ran take part in
the configuration check, bench.compare.config_diff).
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, Iterable

from bench import schema
from bench.run import store
from bench.run.plan import Plan
from bench.run.store import RunFolderError, is_simple_name
from bench.schema import Status

MAX_FILE_BYTES = 64 * 2**20  # a CSV or JSON larger than this is not one of ours


def column(names: Iterable[str], name: str) -> str:
    """`name`, checked against a schema tuple at import time: a renamed column fails loudly."""
    if name not in tuple(names):
        raise AssertionError(f"bench.schema no longer has the column {name!r}")
    return name


STEP = column(schema.PROGRESS_COLUMNS, "step")
WALL_S = column(schema.PROGRESS_COLUMNS, "wall_s")
UPDATES = column(schema.PROGRESS_COLUMNS, "updates")
ENERGY_J = column(schema.PROGRESS_COLUMNS, "energy_j")
RETURN_STD = column(schema.EVAL_COLUMNS, "return_std")
EPISODES = column(schema.EVAL_COLUMNS, "episodes")
METHOD, ENV, SEED, STATUS = (column(schema.RESULT_COLUMNS, c) for c in ("method", "env", "seed", "status"))
STEPS = column(schema.RESULT_COLUMNS, "steps")
FINAL_RETURN = column(schema.RESULT_COLUMNS, "final_return_mean")
AVG_POWER_W = column(schema.RESULT_COLUMNS, "avg_power_w")

RunKey = tuple[str, str, int]  # (method, env, seed)
WindowKey = tuple[int, int]    # (first step, last step] of a progress window


@dataclass(frozen=True)
class Windows:
    """Per-progress-window rates of one run's training phase (windows after the first update,
    without an evaluation inside), keyed by their step range."""

    sps: dict[WindowKey, float] = field(default_factory=dict)
    energy_per_step: dict[WindowKey, float] = field(default_factory=dict)
    avg_power: dict[WindowKey, float] = field(default_factory=dict)

    def of(self, metric: str) -> dict[WindowKey, float]:
        return getattr(self, metric)


@dataclass(frozen=True)
class RunData:
    """One method × env × seed of one side."""

    key: RunKey
    status: str
    record: dict[str, Any]
    """result.json (or the summary row): numbers parsed, everything else as read."""
    windows: Windows | None = None
    config: dict[str, Any] = field(default_factory=dict)
    """Flattened config.json (td3.*, actor.*, threads, ...), where the side has one."""
    last_eval_spread: tuple[float, int] | None = None
    """(return_std, episodes) of the last evaluation, where evals.csv has them."""

    @property
    def complete(self) -> bool:
        return self.status == Status.COMPLETE.value

    def number(self, name: str) -> float:
        v = self.record.get(name)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else math.nan


@dataclass(frozen=True)
class Side:
    path: Path
    kind: str  # "run folder" | "summary.csv" | "JSON"
    runs: dict[RunKey, list[RunData]]
    """Runs by key; more than one per key are repeats (possible in a summary or JSON export)."""
    setup: dict[str, Any] = field(default_factory=dict)
    """Run-wide settings and machine (plan.json, environment.json) that must match."""
    about: dict[str, Any] = field(default_factory=dict)
    """What describes the side but may differ (commit, versions, time)."""
    warnings: tuple[str, ...] = ()


# ----------------------------------------------------------------------------- parsing helpers

def _number(text: Any) -> float:
    if isinstance(text, bool):
        return math.nan
    try:
        v = float(text)
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan


def _read_text(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise RunFolderError(f"{path} is larger than {MAX_FILE_BYTES // 2**20} MiB; not a spikerl-bench file")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunFolderError(f"missing {path}") from None
    except UnicodeDecodeError:
        raise RunFolderError(f"{path} is not UTF-8 text") from None
    except OSError as exc:
        raise RunFolderError(f"unreadable {path}: {exc.strerror or exc}") from None


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts; a row with too many or too few cells is dropped."""
    text = _read_text(path)
    try:
        reader = csv.DictReader(io.StringIO(text))
        return [r for r in reader if None not in r and all(v is not None for v in r.values())]
    except csv.Error as exc:
        raise RunFolderError(f"corrupt {path}: {exc}") from None


_RECORD_KINDS = {f.name: f.kind for f in schema.SUMMARY_FIELDS}


def parse_record(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """A result or summary row with the schema's numeric fields parsed; identity checked."""
    rec: dict[str, Any] = {}
    for k, v in raw.items():
        if not isinstance(k, str):
            continue
        kind = _RECORD_KINDS.get(k)
        if kind in ("float", "int") and k != SEED:
            rec[k] = None if v in ("", None) else _number(v)
        elif kind == "bool" and isinstance(v, str):
            rec[k] = {"true": True, "false": False}.get(v.strip().lower(), v or None)
        elif kind is None and isinstance(v, str) and v and not math.isnan(_number(v)):
            rec[k] = _number(v)  # a numeric column a newer writer added: a measurement
        else:
            rec[k] = None if v == "" else v
    method, env, seed = rec.get(METHOD), rec.get(ENV), rec.get(SEED)
    if isinstance(seed, str) and seed.strip().isdigit():
        seed = int(seed.strip())
    if isinstance(seed, float) and seed.is_integer():
        seed = int(seed)
    if not (is_simple_name(method) and is_simple_name(env) and type(seed) is int and seed >= 0):
        raise RunFolderError(f"{source}: a row lacks a valid method, env and seed "
                             f"({str(method)[:40]!r}, {str(env)[:40]!r}, {str(seed)[:20]!r})")
    rec[SEED] = seed
    if not isinstance(rec.get(STATUS), str):
        rec[STATUS] = Status.CORRUPT.value
    return rec


# ----------------------------------------------------------------------------- progress windows

def progress_windows(progress: list[dict[str, str]], eval_walls: list[float]) -> Windows:
    """Rates per window between consecutive progress rows: only training-phase windows (TD3
    updates already running at the window's start, where the log says) that contain no
    evaluation (an evaluation's end time within the window)."""
    rows = []
    for r in progress:
        step, wall = _number(r.get(STEP)), _number(r.get(WALL_S))
        if math.isnan(step) or math.isnan(wall):
            continue
        rows.append((int(step), wall, _number(r.get(UPDATES)), _number(r.get(ENERGY_J))))
    rows.sort()
    out = Windows()
    for (s0, w0, u0, e0), (s1, w1, _, e1) in pairwise(rows):
        dt, ds = w1 - w0, s1 - s0
        if dt <= 0 or ds <= 0:
            continue
        if not math.isnan(u0) and u0 <= 0:
            continue  # random-action warm-up before the first update: another workload
        if any(w0 < t <= w1 for t in eval_walls):
            continue
        key = (s0, s1)
        out.sps[key] = ds / dt
        if not (math.isnan(e0) or math.isnan(e1)) and e1 >= e0:
            out.energy_per_step[key] = (e1 - e0) / ds
            out.avg_power[key] = (e1 - e0) / dt
    return out


def _freeze(v: Any) -> Any:
    """A JSON value made hashable and comparable: lists become tuples, objects sorted pairs."""
    if isinstance(v, dict):
        return tuple(sorted((str(k), _freeze(x)) for k, x in v.items()))
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    return v


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, name + "."))
        else:
            out[name] = _freeze(v)
    return out


# ----------------------------------------------------------------------------- the three kinds of input

def load_side(path: Path) -> Side:
    """A run folder, a summary.csv or an exported JSON file (a list of run records, an object
    with a "runs" list, or one result.json)."""
    path = Path(path)
    if path.is_dir():
        return load_run_folder(path)
    if not path.exists():
        raise RunFolderError(f"{path} does not exist (expected a run folder, a summary.csv or a JSON export)")
    if path.suffix.lower() == ".json":
        return load_json(path)
    if path.suffix.lower() == ".csv":
        return load_summary_csv(path)
    raise RunFolderError(f"{path}: expected a run folder, a {schema.SUMMARY} or a .json export")


def _group(records: list[RunData]) -> dict[RunKey, list[RunData]]:
    runs: dict[RunKey, list[RunData]] = {}
    for r in records:
        runs.setdefault(r.key, []).append(r)
    return runs


def load_summary_csv(path: Path) -> Side:
    rows = read_csv_rows(path)
    if not rows:
        raise RunFolderError(f"{path} has no rows")
    missing = [c for c in (METHOD, ENV, SEED, STATUS) if c not in rows[0]]
    if missing:
        raise RunFolderError(f"{path} is not a {schema.SUMMARY}: no column {missing[0]!r}")
    records = []
    for raw in rows:
        rec = parse_record(raw, str(path))
        records.append(RunData((rec[METHOD], rec[ENV], rec[SEED]), rec[STATUS], rec))
    return Side(path, schema.SUMMARY, _group(records))


def load_json(path: Path) -> Side:
    data = store.read_json(path)
    if isinstance(data, dict) and isinstance(data.get("runs"), list):
        data = data["runs"]
    elif isinstance(data, dict) and METHOD in data:
        data = [data]
    if not isinstance(data, list) or not data or not all(isinstance(x, dict) for x in data):
        raise RunFolderError(f"{path}: expected a list of run records (or an object with a \"runs\" list)")
    records = []
    for raw in data:
        rec = parse_record(raw, str(path))
        records.append(RunData((rec[METHOD], rec[ENV], rec[SEED]), rec[STATUS], rec))
    return Side(path, "JSON", _group(records))


# plan.json fields that change what a run does or how it is measured (the rest name or describe it)
PLAN_SETUP_KEYS = ("total_steps", "device", "precision", "td3_overrides", "actor_overrides", "method_overrides",
                   "nproc", "threads", "seed_batch", "backend", "power_interval_s", "country")
# environment.json fields that say which machine ran it; a different machine is not a code change
MACHINE_KEYS = ("cpu_model", "cpu_count", "gpus", "spiking_kernels")
ABOUT_KEYS = ("git_commit", "git_dirty", "torch", "python", "hostname", "spikerl_bench_version")


def load_run_folder(run_dir: Path) -> Side:
    plan = Plan.from_json(store.load_plan(run_dir), run_dir / schema.PLAN)
    warnings: list[str] = []
    plan_json = plan.to_json()
    setup = {f"plan.{k}": _freeze(plan_json[k]) for k in PLAN_SETUP_KEYS if k in plan_json}
    about: dict[str, Any] = {"profile": plan.profile, "created_utc": plan.created_utc}
    try:
        env_info = store.read_json(run_dir / schema.ENVIRONMENT)
    except RunFolderError as exc:
        env_info = {}
        warnings.append(f"{exc}; machine not checked")
    if isinstance(env_info, dict):
        for k in MACHINE_KEYS:
            if k in env_info:
                setup[f"machine.{k}"] = _freeze(env_info[k])
        about.update({k: env_info[k] for k in ABOUT_KEYS if k in env_info})
    records = []
    for method, env_id, seed in plan.runs():
        folder = store.seed_dir(run_dir, method, env_id, seed)
        records.append(_load_seed(folder, (method, env_id, seed), warnings))
    return Side(run_dir, "run folder", _group(records), setup, about, tuple(warnings))


def _load_seed(folder: Path, key: RunKey, warnings: list[str]) -> RunData:
    method, env_id, seed = key
    ident = {METHOD: method, ENV: env_id, SEED: seed}
    if not folder.exists():
        return RunData(key, Status.PENDING.value, ident)
    try:
        raw = store.read_json(folder / schema.RESULT)
        if not isinstance(raw, dict):
            raise RunFolderError(f"{folder / schema.RESULT} is not a JSON object")
        rec = parse_record({**raw, **ident}, str(folder / schema.RESULT))
    except RunFolderError as exc:
        missing = not (folder / schema.RESULT).exists()
        if not missing:
            warnings.append(str(exc))
        return RunData(key, (Status.RUNNING if missing else Status.CORRUPT).value, ident)
    config: dict[str, Any] = {}
    try:
        cfg = store.read_json(folder / schema.CONFIG)
        if isinstance(cfg, dict):
            # where a run executed (host, pid, job id, cores) is not how it ran; how many ran
            # beside it is, as is the launcher
            config = {k: v for k, v in _flatten(cfg).items()
                      if k.split(".")[0] not in (METHOD, ENV, SEED, "summary", "precision_reason", "placement")
                      or k in ("placement.launcher", "placement.concurrent_runs")}
    except RunFolderError as exc:
        warnings.append(f"{exc}; its settings not checked")
    eval_walls: list[float] = []
    spread = None
    try:
        evals = read_csv_rows(folder / schema.EVALS)
        eval_walls = [w for w in (_number(r.get(WALL_S)) for r in evals) if not math.isnan(w)]
        if evals:
            std, n = _number(evals[-1].get(RETURN_STD)), _number(evals[-1].get(EPISODES))
            if not (math.isnan(std) or math.isnan(n)) and std >= 0 and n >= 1:
                spread = (std, int(n))
    except RunFolderError as exc:
        warnings.append(f"{exc}; evaluation windows not excluded")
    windows = None
    try:
        windows = progress_windows(read_csv_rows(folder / schema.PROGRESS), eval_walls)
    except RunFolderError as exc:
        warnings.append(f"{exc}; no per-window noise estimate for {method}/{env_id}/seed{seed}")
    return RunData(key, rec[STATUS], rec, windows, config, spread)
