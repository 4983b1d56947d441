"""Read a run folder into typed frames, naming every file that is missing or unreadable.

The loader never crashes on a corrupt or missing file: it records a `Problem` and carries on,
because a report of a partial run (seeds still going, interrupted, failed) is still useful.
It raises `NotARunFolder` only when the folder is not a run folder at all. File names, columns
and statuses are bench.schema's, the layout `spikerl-bench run` writes.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench import schema
from bench.run import store
from bench.schema import Status

_SEED_DIR = re.compile(rf"^{re.escape(schema.SEED_DIR_PREFIX)}(-?\d+)$")
_SUMMARY_TEXT_COLUMNS = tuple(f.name for f in schema.SUMMARY_FIELDS if f.kind == "str")
_BOOL_COLUMNS = tuple(f.name for f in schema.SUMMARY_FIELDS if f.kind == "bool")
_SO_FAR_COLUMNS = ("progress_step", "progress_wall_s", "progress_energy_j")
"""From the last progress.csv row: what a running seed has done so far."""


def _numeric(fields: tuple[schema.Field, ...]) -> tuple[str, ...]:
    return tuple(f.name for f in fields if f.numeric)


MAX_MAGNITUDE = 1e100
"""Beyond any time, energy, power or return a run can record, and far enough below float overflow
that sums, squares and axis ranges of such numbers stay finite: larger values are not trusted."""


class NotARunFolder(ValueError):
    """The path does not exist, is not a folder, or holds nothing a run writes."""


@dataclass(frozen=True)
class Problem:
    """One missing, unreadable or inconsistent file, relative to the run folder."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class SeedRun:
    """Everything one method × env × seed left in its folder. Absent files are None."""

    method: str
    env: str
    seed: int
    rel_dir: str
    status: str
    """A bench.schema.Status value."""
    config: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    progress: pd.DataFrame | None = None
    evals: pd.DataFrame | None = None
    power: pd.DataFrame | None = None
    emissions: pd.DataFrame | None = None

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.method, self.env, self.seed)


@dataclass
class RunFolder:
    """A loaded run folder.

    `seeds` has one row per method × env × seed: the result.json fields (falling back to
    summary.csv where result.json is absent), the GPS-UP and equivalent columns of
    summary.csv, a `status` (a bench.schema.Status value), and `progress_step` / `progress_wall_s` / `progress_energy_j`
    from the last progress.csv row (what a running seed has done so far).
    """

    path: Path
    plan: dict[str, Any] | None
    environment: dict[str, Any] | None
    summary: pd.DataFrame | None
    seeds: pd.DataFrame
    runs: list[SeedRun]
    problems: list[Problem] = field(default_factory=list)

    @property
    def methods(self) -> list[str]:
        """Methods in plan order, then any others found on disk."""
        return _ordered(self.plan.get("methods") if self.plan else None,
                        [r.method for r in self.runs])

    @property
    def envs(self) -> list[str]:
        return _ordered(self.plan.get("envs") if self.plan else None, [r.env for r in self.runs])

    @property
    def baseline(self) -> str | None:
        base = (self.plan or {}).get("baseline")
        return str(base) if base else None

    def run(self, method: str, env: str, seed: int) -> SeedRun | None:
        for r in self.runs:
            if r.key == (method, env, seed):
                return r
        return None

    def runs_of(self, method: str, env: str) -> list[SeedRun]:
        return sorted((r for r in self.runs if r.method == method and r.env == env),
                      key=lambda r: r.seed)


def _ordered(declared: Any, found: list[str]) -> list[str]:
    out: list[str] = []
    if isinstance(declared, (list, tuple)):
        out = [str(x) for x in declared]
    for x in found:
        if x not in out:
            out.append(x)
    return out


# ----------------------------------------------------------------------------- readers


def _present(path: Path, rel: str, problems: list[Problem], required: bool) -> bool:
    """Whether the file is there; an absent required file is a problem, an optional one is not."""
    if path.is_file():
        return True
    if required:
        problems.append(Problem(rel, "missing"))
    return False


def _read_json(path: Path, rel: str, problems: list[Problem], *, required: bool) -> dict | None:
    if not _present(path, rel, problems, required):
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, RecursionError, ValueError) as exc:  # ValueError: JSONDecodeError
        problems.append(Problem(rel, f"unreadable JSON ({type(exc).__name__}: {str(exc)[:120]})"))
        return None
    if not isinstance(data, dict):
        problems.append(Problem(rel, f"expected a JSON object, found {type(data).__name__}"))
        return None
    return data


def _read_csv(path: Path, rel: str, problems: list[Problem], *, required: bool,
              numeric: tuple[str, ...] = (), must_have: tuple[str, ...] = ()) -> pd.DataFrame | None:
    if not _present(path, rel, problems, required):
        return None
    try:
        df = pd.read_csv(path, on_bad_lines="skip", skipinitialspace=True)
    except pd.errors.EmptyDataError:
        problems.append(Problem(rel, "empty file"))
        return None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, ValueError) as exc:
        problems.append(Problem(rel, f"unreadable CSV ({type(exc).__name__}: {exc})"))
        return None
    df.columns = [str(c).strip() for c in df.columns]
    absent = [c for c in must_have if c not in df.columns]
    if absent:
        problems.append(Problem(rel, f"lacks column(s) {', '.join(absent)}"))
        return None
    n_bad = 0
    for col in numeric:
        if col in df.columns:
            values = pd.to_numeric(df[col], errors="coerce")
            bad = values.notna() & ~values.abs().le(MAX_MAGNITUDE)
            n_bad += int(bad.sum())
            df[col] = values.mask(bad)
    if n_bad:
        problems.append(Problem(rel, f"{n_bad} value(s) out of range (inf, or beyond {MAX_MAGNITUDE:g}) "
                                     "shown as missing"))
    if must_have:
        n0 = len(df)
        df = df.dropna(subset=[c for c in must_have if c in numeric])
        if len(df) < n0:
            problems.append(Problem(rel, f"{n0 - len(df)} row(s) with unreadable numbers skipped"))
    if df.empty:
        problems.append(Problem(rel, "no data rows"))
    return df.reset_index(drop=True)


def _sane_result(result: dict | None, rel: str, problems: list[Problem]) -> dict | None:
    """result.json with its out-of-range numbers (inf, NaN, beyond MAX_MAGNITUDE) made missing."""
    if result is None:
        return None
    bad = [k for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
           and not (math.isfinite(v) and abs(v) <= MAX_MAGNITUDE)]
    if bad:
        problems.append(Problem(rel, f"out-of-range value(s) of {', '.join(bad[:8])} shown as missing"))
    return {k: (None if k in bad else v) for k, v in result.items()}


def _to_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (int, float)):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "y", "t"):
        return True
    if text in ("false", "0", "no", "n", "f", ""):
        return False
    return None


# ----------------------------------------------------------------------------- main entry


def _looks_like_run(path: Path) -> bool:
    if any((path / name).is_file() for name in (schema.PLAN, schema.SUMMARY, schema.ENVIRONMENT)):
        return True
    return any(True for _ in path.glob(f"*/*/{schema.SEED_DIR_PREFIX}*/"))


def load_run(run_dir: str | Path) -> RunFolder:
    """Read a run folder. Raises NotARunFolder only if `run_dir` is not a run folder."""
    path = Path(run_dir)
    if not path.exists():
        raise NotARunFolder(f"{path}: no such folder")
    if not path.is_dir():
        raise NotARunFolder(f"{path}: not a folder")
    if not _looks_like_run(path):
        raise NotARunFolder(
            f"{path}: not a run folder (no {schema.PLAN}, {schema.SUMMARY} or "
            f"<method>/<env>/{schema.SEED_DIR_PREFIX}<k>/ inside); "
            "pass the folder that `spikerl-bench run` created")
    # a report killed mid-write left its temporary files here: the next report (or run) removes them
    store.clean_stale_temps(path)
    problems: list[Problem] = []
    plan = _read_json(path / schema.PLAN, schema.PLAN, problems, required=True)
    environment = _read_json(path / schema.ENVIRONMENT, schema.ENVIRONMENT, problems, required=True)
    summary = _read_summary(path, problems)
    runs = [_load_seed(path, d, problems) for d in _seed_dirs(path)]
    _expect_planned(plan, runs, problems)
    seeds = _seed_table(runs, summary, problems)
    return RunFolder(path=path, plan=plan, environment=environment, summary=summary,
                     seeds=seeds, runs=runs, problems=problems)


def power_segment_starts(power: pd.DataFrame) -> tuple[float, ...]:
    """Where each resumed segment of a power trace starts (its segment_start_s), in order; empty
    for a trace of one segment or from before segments were recorded."""
    if "segment" not in power.columns or "segment_start_s" not in power.columns:
        return ()
    seg = power[["segment", "segment_start_s"]].dropna()
    seg = seg[seg["segment"] > seg["segment"].min()] if len(seg) else seg
    starts = seg.groupby("segment", sort=True)["segment_start_s"].first()
    return tuple(float(x) for x in starts if math.isfinite(float(x)))


def _read_summary(path: Path, problems: list[Problem]) -> pd.DataFrame | None:
    summary = _read_csv(path / schema.SUMMARY, schema.SUMMARY, problems, required=False,
                        numeric=schema.NUMERIC_SUMMARY_COLUMNS + ("seed",))
    if summary is None:
        return None
    if not {"method", "env", "seed"} <= set(summary.columns):
        problems.append(Problem(schema.SUMMARY, "lacks method/env/seed columns; ignored"))
        return None
    summary = summary.dropna(subset=["seed"]).copy()
    summary["method"] = summary["method"].astype(str)
    summary["env"] = summary["env"].astype(str)
    summary["seed"] = summary["seed"].astype(int)
    return summary


def _seed_dirs(path: Path) -> list[Path]:
    out = []
    for d in sorted(path.glob(f"*/*/{schema.SEED_DIR_PREFIX}*")):
        if d.is_dir() and _SEED_DIR.match(d.name) and not d.parts[-3].startswith((".", "_")):
            out.append(d)
    return out


def _load_seed(root: Path, d: Path, problems: list[Problem]) -> SeedRun:
    method, env = d.parent.parent.name, d.parent.name
    seed = int(_SEED_DIR.match(d.name).group(1))  # type: ignore[union-attr]
    rel = d.relative_to(root).as_posix()

    def read_log(name: str, fields: tuple[schema.Field, ...], required: bool = True) -> pd.DataFrame | None:
        return _read_csv(d / name, f"{rel}/{name}", problems, required=required, numeric=_numeric(fields),
                         must_have=schema.REQUIRED_COLUMNS[name])

    config = _read_json(d / schema.CONFIG, f"{rel}/{schema.CONFIG}", problems, required=True)
    result = _sane_result(_read_json(d / schema.RESULT, f"{rel}/{schema.RESULT}", problems, required=False),
                          f"{rel}/{schema.RESULT}", problems)
    power = read_log(schema.POWER, schema.POWER_FIELDS, required=not _batch_meter_elsewhere(config, seed, d))
    if power is not None:
        power["device"] = power["device"].astype(str)
        if "estimated" in power.columns:
            power["estimated"] = power["estimated"].map(_to_bool)
        if "source" in power.columns:
            power["source"] = power["source"].fillna("").astype(str)
    status = _seed_status(result, (d / schema.RESULT).is_file(), f"{rel}/{schema.RESULT}", problems)
    return SeedRun(method=method, env=env, seed=seed, rel_dir=rel, status=status, config=config,
                   result=result, progress=read_log(schema.PROGRESS, schema.PROGRESS_FIELDS),
                   evals=read_log(schema.EVALS, schema.EVAL_FIELDS), power=power,
                   emissions=_read_csv(d / schema.EMISSIONS, f"{rel}/{schema.EMISSIONS}", problems,
                                       required=False))


def batch_seeds(config: Any) -> list[int] | None:
    """The seeds of the seed batch config.json says this seed trained in (`seed_batch_seeds`, in
    order), or None for a lone run or fields that are not a batch's: K ≥ 2 distinct ints."""
    if not isinstance(config, dict):
        return None
    k, seeds = config.get("seed_batch"), config.get("seed_batch_seeds")
    if type(k) is not int or k < 2 or not isinstance(seeds, list) or len(seeds) != k:
        return None
    if not all(type(s) is int for s in seeds) or len(set(seeds)) != k:
        return None
    return seeds


def _batch_meter_elsewhere(config: Any, seed: int, folder: Path) -> bool:
    """Whether this seed trained in a seed batch whose one meter (power.csv, CodeCarbon's files)
    wrote into another seed folder beside this one, the batch's first seed's, which exists."""
    seeds = batch_seeds(config)
    if seeds is None or seed not in seeds or seeds[0] == seed:
        return False
    return (folder.parent / f"{schema.SEED_DIR_PREFIX}{seeds[0]}").is_dir()


def _seed_status(result: dict | None, result_exists: bool, rel: str, problems: list[Problem]) -> str:
    """The seed's Status, decided as bench decides it for summary.csv: no result.json means
    still running, an unreadable one (already named as a problem) means corrupt."""
    if result is None:
        if result_exists:
            return Status.CORRUPT.value
        problems.append(Problem(rel, "absent: seed still running (or killed before it finished)"))
        return Status.RUNNING.value
    # result.json written before statuses existed meant a finished run.
    return _parse_status(result.get("status") or Status.COMPLETE.value, rel, problems)


def _parse_status(raw: Any, rel: str, problems: list[Problem]) -> str:
    try:
        return Status(raw).value
    except ValueError:
        problems.append(Problem(rel, f"unknown status {raw!r}; shown as {Status.CORRUPT.value}"))
        return Status.CORRUPT.value


def _expect_planned(plan: dict | None, runs: list[SeedRun], problems: list[Problem]) -> None:
    """Name planned seed folders that do not exist."""
    if not plan:
        return
    try:
        keys = [(str(m), str(e), int(s)) for m in plan.get("methods", [])
                for e in plan.get("envs", []) for s in plan.get("seeds", [])]
    except (TypeError, ValueError):
        problems.append(Problem(schema.PLAN, "methods/envs/seeds are not lists of names and ints"))
        return
    have = {r.key for r in runs}
    for m, e, s in keys:
        if (m, e, s) not in have:
            problems.append(Problem(f"{m}/{e}/{schema.SEED_DIR_PREFIX}{s}/",
                                    "planned but no folder (not started yet?)"))


def _seed_table(runs: list[SeedRun], summary: pd.DataFrame | None,
                problems: list[Problem]) -> pd.DataFrame:
    rows: dict[tuple[str, str, int], dict[str, Any]] = {}
    if summary is not None:
        for rec in summary.to_dict("records"):
            rows[(rec["method"], rec["env"], int(rec["seed"]))] = {**rec, "from_summary": True}
    for r in runs:
        row = rows.setdefault(r.key, {"method": r.method, "env": r.env, "seed": r.seed,
                                      "from_summary": False})
        _merge_seed_files(row, r)
    have_dirs = {r.key for r in runs}
    for key, row in rows.items():
        row["folder_missing"] = key not in have_dirs
        if key not in have_dirs:
            _summary_only(row, key, problems)
        if _to_bool(row.get("estimated")) is None and "estimate" in str(row.get("energy_source") or ""):
            row["estimated"] = True
    return _typed_seed_frame(list(rows.values()))


def _merge_seed_files(row: dict[str, Any], r: SeedRun) -> None:
    """Overlay what the seed folder says on its summary.csv row: the folder is newer."""
    if r.result is not None:
        for k, v in r.result.items():
            if k not in ("method", "env", "seed") and not isinstance(v, (dict, list)):
                row[k] = v
    row["status"] = r.status
    row["rel_dir"] = r.rel_dir
    if r.progress is not None and not r.progress.empty:
        last = r.progress.iloc[-1]
        row["progress_step"] = last.get("step")
        row["progress_wall_s"] = last.get("wall_s")
        row["progress_energy_j"] = last.get("energy_j", float("nan"))
    if r.power is not None and "estimated" in r.power.columns and "estimated" not in row:
        est = r.power["estimated"].dropna()
        if len(est):
            row["estimated"] = bool(est.any())
    if r.power is not None and "source" in r.power.columns and not row.get("energy_source"):
        srcs = sorted({s for s in r.power["source"] if s})
        if srcs:
            row["energy_source"] = "+".join(srcs)


def _summary_only(row: dict[str, Any], key: tuple[str, str, int], problems: list[Problem]) -> None:
    """A summary.csv row whose seed folder does not exist: keep its status, name the folder."""
    row["rel_dir"] = f"{key[0]}/{key[1]}/{schema.SEED_DIR_PREFIX}{key[2]}"
    row["status"] = _parse_status(row.get("status"), f"{schema.SUMMARY} row {row['rel_dir']}", problems)
    # bench writes 'pending' exactly when the folder does not exist yet: nothing is missing.
    if row["status"] != Status.PENDING:
        problems.append(Problem(row["rel_dir"] + "/", f"in {schema.SUMMARY} but the folder is missing"))


def _typed_seed_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Every schema column present (NaN or None where no file gave it), numbers as floats."""
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=["method", "env", "seed", "status", "rel_dir"])
    for col in schema.NUMERIC_SUMMARY_COLUMNS + _SO_FAR_COLUMNS:
        df[col] = pd.to_numeric(df[col], errors="coerce") if col in df.columns else float("nan")
    for col in _BOOL_COLUMNS:
        df[col] = df[col].map(_to_bool) if col in df.columns else None
    for col in _SUMMARY_TEXT_COLUMNS:
        if col not in df.columns:
            df[col] = None
    df["seed"] = df["seed"].astype(int)
    df["status"] = df["status"].astype(str)
    return df.sort_values(["env", "method", "seed"], kind="stable").reset_index(drop=True)
