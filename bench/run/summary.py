"""RUN/summary.csv: one row per method × env × seed, with the cross-run metrics added."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pandas as pd

from bench import schema
from bench.energy.contention import CONTENDED_ABOVE, is_contended
from bench.metrics.equivalents import add_equivalent_columns
from bench.metrics.format import ratio_text
from bench.metrics.gpsup import PHASE_COLUMNS, PHASE_LABELS, add_gpsup_columns, aggregate_gpsup
from bench.metrics.target import add_target_columns
from bench.run import store
from bench.run.plan import Plan
from bench.schema import Status


def last_progress(folder: Path) -> dict[str, Any]:
    """Steps and wall time of a run that did not finish, from its last progress row."""
    try:
        with open(folder / schema.PROGRESS, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        return {"steps": int(float(rows[-1]["step"])), "wall_s": float(rows[-1]["wall_s"])}
    except (OSError, IndexError, KeyError, TypeError, ValueError, OverflowError, UnicodeDecodeError, csv.Error):
        return {"steps": 0, "wall_s": None}


def read_result(folder: Path) -> dict[str, Any] | None:
    """A run's result.json, or None when it has none (or it is unreadable)."""
    try:
        result = store.read_json(folder / schema.RESULT)
    except store.RunFolderError:
        return None
    return result if isinstance(result, dict) else None


def is_complete(folder: Path) -> bool:
    result = read_result(folder)
    return result is not None and result.get("status") == Status.COMPLETE


def collect_results(run_dir: Path, plan: Plan) -> list[dict[str, Any]]:
    rows = []
    for method, env_id, seed in plan.runs():
        folder = store.seed_dir(run_dir, method, env_id, seed)
        key = {"method": method, "env": env_id, "seed": seed}
        if (folder / schema.RESULT).exists():
            result = read_result(folder)
            if result is not None:
                rows.append({**result, **key})
            else:
                rows.append({**key, "status": Status.CORRUPT.value, "error": f"unreadable {schema.RESULT}"})
            continue
        status = Status.RUNNING if folder.exists() else Status.PENDING
        rows.append({**key, "status": status.value, **last_progress(folder)})
    return rows


def write_summary(run_dir: Path, plan: Plan) -> Path:
    """Rebuild summary.csv from every run's files. Under the folder's lock: a process that read
    the folder before another run finished must not write its older table over the newer one."""
    with store.folder_lock(run_dir):
        rows = enrich_summary(collect_results(run_dir, plan), plan, run_dir)
        columns: list[str] = list(schema.SUMMARY_COLUMNS)
        for r in rows:  # fields a newer writer added that the schema does not list yet still reach the table
            columns += [k for k, v in r.items() if k not in columns and not isinstance(v, (list, dict))]
        path = run_dir / schema.SUMMARY
        store.write_csv(path, columns, rows)
    return path


def enrich_summary(rows: list[dict[str, Any]], plan: Plan, run_dir: Path) -> list[dict[str, Any]]:
    """Cross-run columns: GPS-UP against the baseline run of the same env and seed, energy and
    time to the target return, and carbon equivalents of each run's emissions."""
    df = pd.DataFrame(rows)
    compared = sorted({c for cols in PHASE_COLUMNS.values() for c in cols[:2]})
    for col in (*compared, "emissions_kg", "final_return_mean"):
        df[col] = pd.to_numeric(df[col], errors="coerce") if col in df else float("nan")
    # only finished runs are compared: an interrupted run's time and energy are partial
    finished = df.copy()
    finished.loc[df["status"] != Status.COMPLETE.value, compared] = float("nan")
    df = add_gpsup_columns(finished, plan.baseline).assign(**{c: df[c] for c in compared})
    evals = {}
    for method, env_id, seed in plan.runs():
        path = store.seed_dir(run_dir, method, env_id, seed) / schema.EVALS
        try:
            evals[(method, env_id, seed)] = pd.read_csv(path)
        except (OSError, ValueError, UnicodeDecodeError, pd.errors.EmptyDataError):
            continue
    df = add_target_columns(df, evals, plan.baseline, target_return=plan.target_return)
    df = add_equivalent_columns(df)
    return [{k: (None if _isnan(v) else v) for k, v in r.items()} for r in df.to_dict("records")]


def _isnan(v: Any) -> bool:
    try:
        return bool(v != v)  # NaN, NA
    except (TypeError, ValueError):
        return False


def contention_warning(run_dir: Path, plan: Plan) -> str | None:
    """One line naming the runs that shared their hardware with other processes, or None."""
    bad = []
    for r in collect_results(run_dir, plan):
        share, gpus = (r.get(k) if isinstance(r.get(k), (int, float)) else None  # unreadable: unmeasured
                       for k in ("foreign_cpu_share", "foreign_gpu_processes"))
        if is_contended(share, gpus):
            what = f"{share:.0%} foreign CPU" if is_contended(share, None) else f"{gpus} other GPU process(es)"
            bad.append(f"{r['method']}/{r['env']}/seed{r['seed']} ({what})")
    if not bad:
        return None
    return (f"warning: {len(bad)} run(s) shared the machine with other processes (threshold "
            f"{CONTENDED_ABOVE:.0%}): {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}; their time, "
            "power and GPS-UP partly measure contention (marked in the report)")


def results_table(run_dir: Path, plan: Plan) -> str | None:
    """A short table for the terminal at the end of `spikerl-bench run`: per method × env, over its
    complete seeds, the mean final return, wall time, energy ('est.' where estimated), emissions
    and training-phase GPS-UP against the baseline: the ratio of means with its 95 % bootstrap
    interval, as the report computes it (bench.metrics.gpsup.aggregate_gpsup), and its basis."""
    try:
        df = pd.read_csv(run_dir / schema.SUMMARY)
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return None
    done = df[df["status"] == Status.COMPLETE.value] if "status" in df else df.iloc[0:0]
    if done.empty:
        return None
    head = ["method", "env", "seeds", "return", "time", "energy", "CO2e", "speedup", "powerup", "greenup", "basis"]
    points = aggregate_gpsup(done, plan.baseline).set_index(["method", "env"])
    notes: list[str] = []
    rows = []
    for (method, env), g in done.groupby(["method", "env"], sort=False):
        est = " est." if g.get("estimated", pd.Series(dtype=bool)).astype(str).str.lower().eq("true").any() else ""
        if g.get("energy_source", pd.Series(dtype=str)).astype(str).str.contains("attributed", regex=False).any():
            est += " attr."  # a share of the machine's: runs executed side by side
        k = pd.to_numeric(g.get("seed_batch", pd.Series(dtype=float)), errors="coerce").max()
        if k == k and k > 1:
            est += f" 1/{int(k)}"  # the process's energy over the seeds it trained together
        pt = points.loc[(method, env)] if (method, env) in points.index else None
        is_base = method == plan.baseline
        basis = "" if pt is None or is_base else str(pt["gpsup_basis"] or "—")
        if pt is not None and isinstance(pt["gpsup_note"], str) and not is_base:
            notes.append(f"  {method}/{env}: {pt['gpsup_note']}")

        energy, kg = _mean(g, "energy_j"), _mean(g, "emissions_kg")
        rows.append([str(method), str(env), str(len(g)), _num(_mean(g, "final_return_mean"), "{:,.1f}"),
                     _num(_mean(g, "wall_s"), "{:,.1f} s"), _num(energy / 1e3, "{:,.2f} kJ") + est,
                     _num(kg * 1e3, "{:,.3f} g") + est,
                     *(_ratio_cell(pt, col, is_base) for col in ("speedup", "powerup", "greenup")), basis])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    lines = ["results (complete seeds, means; GPS-UP of the " + PHASE_LABELS["train"] + " against " + plan.baseline
             + ": ratio of means (95 % bootstrap interval over seeds); basis: measured, model (a power model: powerup "
             "and greenup are not findings) or mixed; est. estimated, attr. a share of the machine's energy by CPU "
             "time, 1/K a seed batch's share):",
             _aligned(head, widths)]
    lines += [_aligned(r, widths) for r in rows]
    return "\n".join(lines + notes)


def _aligned(cells: list[str], widths: list[int]) -> str:
    """One line of the results table: method and env left-aligned, the numbers right-aligned."""
    return "  " + "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                            for i, (c, w) in enumerate(zip(cells, widths, strict=True)))


def _mean(g: pd.DataFrame, col: str) -> float:
    """The mean of a column over a method × env's complete seeds (NaN where the column is absent)."""
    return float(pd.to_numeric(g[col], errors="coerce").mean()) if col in g else float("nan")


def _ratio_cell(pt: pd.Series | None, col: str, is_base: bool) -> str:
    """A GPS-UP ratio with its interval; 'base' for the baseline, '—' where no point was computed."""
    if is_base:
        return "base"
    if pt is None:
        return "—"
    return ratio_text(pt[col], pt[f"{col}_ci_low"], pt[f"{col}_ci_high"])


def _num(v: float, fmt: str) -> str:
    return "—" if v != v else fmt.format(v)
