"""The report's content, independent of its format: facts, tables (as display strings) and the
data behind each figure. `reports.html` and `reports.pdf` both render one `Report`, so the HTML
and the PDF say exactly the same thing.

Rules kept here:
- Aggregates (return statistics, wall time, energy, GPS-UP) use only seeds whose status is
  'complete': an interrupted seed ran fewer steps, so its time and energy are not comparable.
  Every seed still appears in the per-seed table with its status.
- A missing number is shown as '—', never as 0.
- Every number derived from an estimated energy (energy, power, emissions, powerup, greenup,
  category, equivalents) is labelled estimated.
- Every table and figure names the run-folder files its numbers come from.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd

from reports import stats
from reports.load import Problem, RunFolder

DASH = "—"
EST_MARK = "†"
STATUS_ORDER = ("complete", "running", "interrupted", "failed", "missing")

SEED_FILES = "<method>/<env>/seed<k>/"


class ReportError(ValueError):
    """A request the report cannot honour (unknown baseline, ...)."""


# ----------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Cell:
    text: str
    cls: str = ""
    """CSS class: 'num', 'status-<status>', 'green', 'red', 'est', or ''."""


@dataclass
class Table:
    key: str
    title: str
    headers: list[str]
    rows: list[list[Cell]]
    source: str
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    title: str
    run_name: str
    generated_utc: str
    baseline: str
    estimated: bool
    energy_kind: str
    """'estimated' (any seed), 'measured' (every seed that reported), or 'none' (no seed did)."""
    headline: list[str]
    """Key messages, shown first (the estimated-energy warning comes first of all)."""
    findings: list[str]
    """One line per candidate method × env against the baseline."""
    facts: list[tuple[str, str]]
    facts_source: str
    power_sources: Table
    status_counts: dict[str, int]
    problems: list[Problem]
    results: list[tuple[str, Table, Table]]
    """Per env: (env, aggregate table, per-seed table)."""
    gpsup_points: pd.DataFrame
    gpsup_note: str
    equivalents: Table
    equivalents_data: pd.DataFrame
    command: str
    argv: list[str]
    environment: Table
    configs: list[tuple[str, str]]
    """(title, pretty JSON) per method × env, seed differences noted in the title."""
    plan_json: str


# ----------------------------------------------------------------------------- formatting


def _finite(v: Any) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def fmt_num(v: Any, sig: int = 3) -> str:
    """A number for display: thousands separators, `sig` significant digits, '—' if missing."""
    if not _finite(v):
        return DASH
    x = float(v)
    if x == 0:
        return "0"
    ax = abs(x)
    if ax >= 10 ** (sig - 1) or (x.is_integer() and ax < 1e15):
        return f"{x:,.0f}"
    if ax < 1e-3:
        return f"{x:.{sig - 1}e}"
    decimals = max(0, sig - 1 - int(math.floor(math.log10(ax))))
    return f"{x:,.{decimals}f}"


def fmt_ratio(v: Any) -> str:
    return DASH if not _finite(v) else f"{float(v):.2f}×"


@dataclass(frozen=True)
class Unit:
    label: str
    scale: float
    """Divide base-unit values by this to display them."""


def pick_unit(values: Iterable[Any], units: list[tuple[str, float]]) -> Unit:
    """The largest unit in which the largest |value| is still >= 1 (the first unit otherwise)."""
    xs = [abs(float(v)) for v in values if _finite(v)]
    top = max(xs) if xs else 0.0
    chosen = units[0]
    for label, scale in units:
        if top >= scale:
            chosen = (label, scale)
    return Unit(*chosen)


ENERGY_UNITS = [("J", 1.0), ("kJ", 1e3), ("MJ", 1e6), ("GJ", 1e9)]
TIME_UNITS = [("s", 1.0), ("min", 60.0), ("h", 3600.0)]
MASS_UNITS = [("mg CO₂e", 1e-6), ("g CO₂e", 1e-3), ("kg CO₂e", 1.0), ("t CO₂e", 1e3)]
POWER_UNITS = [("W", 1.0), ("kW", 1e3)]


def time_unit(values: Iterable[Any]) -> Unit:
    xs = [abs(float(v)) for v in values if _finite(v)]
    top = max(xs) if xs else 0.0
    if top >= 2 * 3600:
        return Unit("h", 3600.0)
    if top >= 10 * 60:
        return Unit("min", 60.0)
    return Unit("s", 1.0)


def fmt_in(v: Any, unit: Unit) -> str:
    return DASH if not _finite(v) else fmt_num(float(v) / unit.scale)


def est_header(name: str, est_flags: Iterable[bool | None]) -> tuple[str, str]:
    """Header text and the per-cell mark: all estimated -> '(estimated)' in the header and no
    mark; some estimated -> '† = estimated' in the header and '†' on those cells."""
    flags = [bool(f) for f in est_flags]
    if flags and all(flags):
        label = "estimated"
    elif any(flags):
        label = f"{EST_MARK} = estimated"
    else:
        return name, ""
    if name.endswith(")"):
        return f"{name[:-1]}, {label})", "" if label == "estimated" else EST_MARK
    return f"{name} ({label})", "" if label == "estimated" else EST_MARK


# ----------------------------------------------------------------------------- GPS-UP and equivalents


def _bench_module(name: str):
    try:
        module = __import__(f"bench.{name}", fromlist=[name])
    except ImportError:
        return None
    return module


def resolve_baseline(run: RunFolder, baseline: str | None) -> str:
    methods = run.methods
    if baseline:
        if baseline not in methods:
            raise ReportError(f"baseline {baseline!r} is not a method of this run "
                              f"(methods: {', '.join(methods) or 'none'})")
        return baseline
    if run.baseline and run.baseline in methods:
        return run.baseline
    if "popsan" in methods:
        return "popsan"
    if not methods:
        raise ReportError("the run folder holds no method")
    return methods[0]


def complete_seeds(run: RunFolder) -> pd.DataFrame:
    df = run.seeds
    return df[df["status"] == "complete"].copy()


def gpsup_tables(run: RunFolder, baseline: str) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(per-seed rows with speedup/powerup/greenup/gpsup_category, per method × env aggregate,
    a note naming where the numbers came from). Complete seeds only."""
    done = complete_seeds(run)
    cols = ["method", "env", "wall_s", "energy_j", "speedup", "powerup", "greenup", "gpsup_category"]
    gpsup = _bench_module("gpsup")
    plan_base = run.baseline
    if gpsup is not None and hasattr(gpsup, "add_gpsup_columns") and hasattr(gpsup, "aggregate_gpsup"):
        try:
            per_seed = gpsup.add_gpsup_columns(done.drop(
                columns=["speedup", "powerup", "greenup", "gpsup_category"], errors="ignore"), baseline)
            agg = gpsup.aggregate_gpsup(done, baseline)
            note = f"computed by bench.metrics.gpsup from result.json wall_s and energy_j (complete seeds), baseline {baseline}"
            return per_seed, _ensure(agg, cols), note
        except Exception as exc:  # noqa: BLE001 - degrade to summary.csv, and say so
            fallback = f"bench.metrics.gpsup failed ({type(exc).__name__}: {exc}); "
    else:
        fallback = "bench.metrics.gpsup not available; "
    # Fallback: the columns `spikerl-bench run` wrote into summary.csv.
    if plan_base and plan_base != baseline:
        empty = done.assign(speedup=np.nan, powerup=np.nan, greenup=np.nan, gpsup_category=np.nan)
        return empty, _ensure(pd.DataFrame(columns=cols), cols), (
            fallback + f"summary.csv is against {plan_base}, not {baseline}: no GPS-UP numbers")
    rows = []
    for (m, e), g in done.groupby(["method", "env"], sort=False):
        row = {"method": m, "env": e, "wall_s": g["wall_s"].mean(), "energy_j": g["energy_j"].mean()}
        for c in ("speedup", "powerup", "greenup"):
            row[c] = g[c].mean()
        cat = g["gpsup_category"].dropna()
        row["gpsup_category"] = cat.mode().iloc[0] if len(cat) else np.nan
        rows.append(row)
    agg = _ensure(pd.DataFrame(rows), cols)
    return done, agg, fallback + "speedup/powerup/greenup/category are summary.csv's per-seed columns, averaged"


def _ensure(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    df = df.copy()
    for c in cols:
        if c not in df.columns:
            df[c] = np.nan
    return df


def gpsup_points(run: RunFolder, baseline: str) -> tuple[pd.DataFrame, str]:
    """One row per method × env with complete seeds: speedup, powerup, greenup, category,
    seed spread (min/max of per-seed speedup and powerup), n seeds, estimated."""
    per_seed, agg, note = gpsup_tables(run, baseline)
    rows = []
    for rec in agg.to_dict("records"):
        m, e = rec["method"], rec["env"]
        ps = per_seed[(per_seed["method"] == m) & (per_seed["env"] == e)]
        s_lo, s_hi, n = stats.spread(ps.get("speedup", pd.Series(dtype=float)))
        p_lo, p_hi, _ = stats.spread(ps.get("powerup", pd.Series(dtype=float)))
        est = bool(ps["estimated"].fillna(False).astype(bool).any()) if "estimated" in ps else False
        rows.append({**rec, "s_lo": s_lo, "s_hi": s_hi, "p_lo": p_lo, "p_hi": p_hi,
                     "n_seeds": int(len(ps)), "estimated": est, "is_baseline": m == baseline})
    cols = ["method", "env", "wall_s", "energy_j", "speedup", "powerup", "greenup", "gpsup_category",
            "s_lo", "s_hi", "p_lo", "p_hi", "n_seeds", "estimated", "is_baseline"]
    return (pd.DataFrame(rows, columns=cols) if rows else pd.DataFrame(columns=cols)), note


EQUIV_COLUMNS = ("household_week_pct", "car_miles", "tv_hours")
EQUIV_LABELS = {
    "household_week_pct": "US household-week (%)",
    "car_miles": "Gasoline car (miles)",
    "tv_hours": "32-inch LCD TV (hours)",
}


def equivalents_frame(run: RunFolder) -> tuple[pd.DataFrame, str]:
    """Per method: mean emissions per complete run and total over every seed that reported
    emissions, with the three everyday equivalents of each."""
    eq = _bench_module("equivalents")
    funcs: dict[str, Callable[[float], float]] = {}
    if eq is not None:
        for name in EQUIV_COLUMNS:
            f = getattr(eq, name, None)
            if callable(f):
                funcs[name] = f
    seeds = run.seeds
    rows = []
    for m in run.methods:
        all_m = seeds[(seeds["method"] == m) & seeds["emissions_kg"].notna()]
        done = all_m[all_m["status"] == "complete"]
        row: dict[str, Any] = {
            "method": m,
            "n_complete": int(len(done)),
            "n_reported": int(len(all_m)),
            "kg_per_run": done["emissions_kg"].mean() if len(done) else np.nan,
            "kg_total": all_m["emissions_kg"].sum() if len(all_m) else np.nan,
            "estimated": bool(all_m["estimated"].fillna(False).astype(bool).any()) if len(all_m) else False,
        }
        for name in EQUIV_COLUMNS:
            if name in funcs:
                row[name] = _call(funcs[name], row["kg_per_run"])
                row[name + "_total"] = _call(funcs[name], row["kg_total"])
            else:
                col = seeds.loc[done.index, name] if name in seeds else pd.Series(dtype=float)
                row[name] = col.mean() if len(col.dropna()) else np.nan
                colt = seeds.loc[all_m.index, name] if name in seeds else pd.Series(dtype=float)
                row[name + "_total"] = colt.sum() if len(colt.dropna()) else np.nan
        rows.append(row)
    if len(funcs) == len(EQUIV_COLUMNS):
        note = "converted by bench.metrics.equivalents (US EPA figures via CodeCarbon)"
    elif funcs:
        note = "partly converted by bench.metrics.equivalents; the rest from summary.csv columns"
    else:
        note = "bench.metrics.equivalents not available; equivalents from summary.csv columns"
    return pd.DataFrame(rows), note


def _call(f: Callable[[float], float], kg: Any) -> float:
    if not _finite(kg):
        return float("nan")
    try:
        return float(f(float(kg)))
    except Exception:  # noqa: BLE001 - a failing converter leaves the cell empty
        return float("nan")


# ----------------------------------------------------------------------------- tables


def _status_cell(statuses: list[str]) -> Cell:
    counts = {s: statuses.count(s) for s in STATUS_ORDER if s in statuses}
    done = counts.get("complete", 0)
    text = f"{done}/{len(statuses)}"
    others = [f"{n} {s}" for s, n in counts.items() if s != "complete"]
    if others:
        text += " · " + ", ".join(others)
    worst = next((s for s in ("failed", "interrupted", "running", "missing") if s in counts), "complete")
    return Cell(text, f"status-{worst}")


def _target_note(run: RunFolder, env: str) -> str | None:
    """The target return(s) behind 'energy to target' on `env`, from summary.csv or result.json."""
    col = run.seeds[run.seeds["env"] == env]["target_return"].dropna()
    if col.empty:
        return None
    lo, hi = col.min(), col.max()
    if lo == hi:
        return f"Target return for 'energy to target': {fmt_num(lo, 5)}."
    return (f"Target return for 'energy to target' differs by seed ({fmt_num(lo, 5)} to "
            f"{fmt_num(hi, 5)}): each seed's target comes from the baseline run of the same seed.")


def _est_of(rows: pd.DataFrame) -> list[bool]:
    return [bool(x) for x in rows["estimated"].fillna(False)]


def results_tables(run: RunFolder, env: str, baseline: str, points: pd.DataFrame) -> tuple[Table, Table]:
    seeds = run.seeds[run.seeds["env"] == env]
    done = seeds[seeds["status"] == "complete"]
    methods = [m for m in run.methods if (seeds["method"] == m).any()]
    t_unit = time_unit(done["wall_s"])
    e_unit = pick_unit(done["energy_j"], ENERGY_UNITS)
    p_unit = pick_unit(done["avg_power_w"], POWER_UNITS)
    c_unit = pick_unit(done["emissions_kg"], MASS_UNITS)
    et_unit = pick_unit(done["energy_to_target_j"], ENERGY_UNITS)
    est_rows = [bool(done[done["method"] == m]["estimated"].fillna(False).any()) for m in methods]
    h_energy, mark = est_header(f"Energy ({e_unit.label})", est_rows)
    h_power, _ = est_header(f"Avg power ({p_unit.label})", est_rows)
    h_co2, _ = est_header(f"Emissions ({c_unit.label})", est_rows)
    h_pu, _ = est_header("Powerup", est_rows)
    h_gu, _ = est_header("Greenup", est_rows)
    h_cat, _ = est_header("Category", est_rows)
    h_ett, _ = est_header(f"Energy to target ({et_unit.label})", est_rows)
    target = _target_note(run, env)
    headers = ["Method", "Complete seeds", "Return mean ± std", "Return IQM [95 % CI]",
               f"Wall time ({t_unit.label})", h_energy, h_power, h_co2, "Speedup", h_pu, h_gu,
               h_cat, h_ett]
    rows = []
    few: set[int] = set()
    for m, est in zip(methods, est_rows):
        ms = seeds[seeds["method"] == m]
        md = done[done["method"] == m]
        st = stats.describe(md["final_return_mean"])
        tag = mark if est else ""
        if st.n == 0:
            ret, iqm = DASH, DASH
        elif st.n == 1:
            ret = fmt_num(st.mean, 4) + " (1 seed)"
            iqm = fmt_num(st.iqm, 4) + " (no CI)"
            few.add(1)
        else:
            ret = f"{fmt_num(st.mean, 4)} ± {fmt_num(st.std, 3)}"
            iqm = f"{fmt_num(st.iqm, 4)} [{fmt_num(st.ci_low, 4)}, {fmt_num(st.ci_high, 4)}]"
            if st.n < 3:
                iqm += "*"
                few.add(st.n)
        pt = points[(points["method"] == m) & (points["env"] == env)]
        pr = pt.iloc[0] if len(pt) else None
        cat = pr["gpsup_category"] if pr is not None else np.nan
        cat_cell = Cell(DASH)
        if m == baseline:
            cat_cell = Cell("baseline")
        elif _finite(cat):
            c = int(cat)
            cat_cell = Cell(f"{c} {'▼' if c <= 4 else '▲'}{tag}", "green" if c <= 4 else "red")
        reached = md["energy_to_target_j"].notna().sum()
        ett = DASH
        if len(md) and target is not None or reached:
            ett = (fmt_in(md["energy_to_target_j"].mean(), et_unit) + tag if reached else "not reached")
            ett += f" ({reached}/{len(md)} reached)"
        name = m + (" (baseline)" if m == baseline else "")
        rows.append([
            Cell(name), _status_cell(list(ms["status"])), Cell(ret, "num"), Cell(iqm, "num"),
            Cell(fmt_in(md["wall_s"].mean(), t_unit), "num"),
            Cell(_tagged(fmt_in(md["energy_j"].mean(), e_unit), tag), "num"),
            Cell(_tagged(fmt_in(md["avg_power_w"].mean(), p_unit), tag), "num"),
            Cell(_tagged(fmt_in(md["emissions_kg"].mean(), c_unit), tag), "num"),
            Cell(fmt_ratio(pr["speedup"]) if pr is not None else DASH, "num"),
            Cell(_tagged(fmt_ratio(pr["powerup"]) if pr is not None else DASH, tag), "num"),
            Cell(_tagged(fmt_ratio(pr["greenup"]) if pr is not None else DASH, tag), "num"),
            cat_cell, Cell(ett, "num"),
        ])
    notes = ["Means over complete seeds only; running, interrupted and failed seeds are listed below "
             "with their status and are not averaged.",
             "IQM = interquartile mean (scipy.stats.trim_mean, 25 %); CI = 95 % percentile bootstrap "
             "of the IQM over seeds (scipy.stats.bootstrap); with fewer than 4 seeds IQM = mean.",
             f"Speedup = T_{baseline} / T, powerup = P / P_{baseline}, greenup = speedup / powerup "
             f"= E_{baseline} / E (GPS-UP); categories 1–4 (▼) save energy, 5–8 (▲) cost energy."]
    if 1 in few:
        notes.append("(1 seed): one complete seed, so no std and no confidence interval.")
    if 2 in few:
        notes.append("* Two complete seeds: the bootstrap CI is crude (it can only take a few values).")
    if target is not None:
        notes.append(target)
    agg = Table(
        key=f"results-{env}", title=f"Results on {env}", headers=headers, rows=rows,
        source=(f"Source: {SEED_FILES}result.json (status, steps, final_return_mean, wall_s, energy_j, "
                "avg_power_w, emissions_kg, energy_to_target_j); GPS-UP: see the quadrant's note."),
        notes=notes)
    return agg, _seed_table(run, env, t_unit, e_unit, p_unit, c_unit)


def _tagged(text: str, tag: str) -> str:
    return text if text == DASH or not tag else text + tag


def _seed_table(run: RunFolder, env: str, t_unit: Unit, e_unit: Unit, p_unit: Unit,
                c_unit: Unit) -> Table:
    seeds = run.seeds[run.seeds["env"] == env]
    total = (run.plan or {}).get("total_steps")
    h_energy, mark = est_header(f"Energy ({e_unit.label})", _est_of(seeds))
    h_power, _ = est_header(f"Avg power ({p_unit.label})", _est_of(seeds))
    h_co2, _ = est_header(f"Emissions ({c_unit.label})", _est_of(seeds))
    headers = ["Method", "Seed", "Status", "Steps", "Final return", "Best return",
               f"Wall time ({t_unit.label})", h_energy, h_power, h_co2, "Energy source",
               "Time to target (s)", "Note"]
    rows = []
    order = {m: i for i, m in enumerate(run.methods)}
    seeds = seeds.assign(_o=seeds["method"].map(order)).sort_values(["_o", "seed"], kind="stable")
    for rec in seeds.to_dict("records"):
        status = str(rec["status"])
        tag = mark if rec.get("estimated") else ""
        note = ""
        steps, wall, energy = rec.get("steps"), rec.get("wall_s"), rec.get("energy_j")
        final = rec.get("final_return_mean")
        best = rec.get("best_return_mean")
        r = run.run(rec["method"], env, int(rec["seed"]))
        if status == "running":
            steps, wall, energy = rec.get("progress_step"), rec.get("progress_wall_s"), rec.get("progress_energy_j")
            if r is not None and r.evals is not None and len(r.evals):
                final = r.evals["return_mean"].iloc[-1]
                best = r.evals["return_mean"].max()
            note = "still running: numbers so far (progress.csv, evals.csv)"
            if r is not None and all(f is None or f.empty for f in (r.progress, r.evals)):
                note = "no result.json, progress.csv or evals.csv yet"
        elif status == "missing":
            note = "seed folder missing and no status in summary.csv"
        elif status in ("interrupted", "failed"):
            bits = []
            if _finite(steps) and _finite(total):
                bits.append(f"stopped at {fmt_num(steps, 7)} of {fmt_num(total, 7)} steps")
            if rec.get("error") and str(rec.get("error")) != "nan":
                bits.append(str(rec["error"]))
            note = "; ".join(bits)
        if rec.get("folder_missing") and status != "missing":
            note = "; ".join(x for x in ("seed folder missing: values from summary.csv", note) if x)
        rows.append([
            Cell(str(rec["method"])), Cell(str(rec["seed"]), "num"), Cell(status, f"status-{status}"),
            Cell(fmt_num(steps, 7), "num"), Cell(fmt_num(final, 4), "num"), Cell(fmt_num(best, 4), "num"),
            Cell(fmt_in(wall, t_unit), "num"), Cell(_tagged(fmt_in(energy, e_unit), tag), "num"),
            Cell(_tagged(fmt_in(rec.get("avg_power_w"), p_unit), tag), "num"),
            Cell(_tagged(fmt_in(rec.get("emissions_kg"), c_unit), tag), "num"),
            Cell(str(rec.get("energy_source") or DASH)),
            Cell(fmt_num(rec.get("time_to_target_s"), 4), "num"), Cell(note),
        ])
    return Table(
        key=f"seeds-{env}", title=f"Every seed on {env}", headers=headers, rows=rows,
        source=(f"Source: {SEED_FILES}result.json; for running seeds the last row of progress.csv "
                "(steps, wall time, energy) and evals.csv (returns); summary.csv for seeds whose "
                "folder is missing."))


def _equivalence_text() -> str:
    eq = _bench_module("equivalents")
    table = getattr(eq, "DEFAULT_TABLE", None) if eq is not None else None
    if table is None:
        return ("Equivalents: miles = kg / 0.409 (average gasoline car), TV hours = kg / 0.097 "
                "(32-inch LCD), household-week % = kg / 160.58 × 100 (US EPA figures as used by "
                "CodeCarbon's dashboard).")
    return (f"Equivalents: miles = kg / {table.car_kg_per_mile:g} (average gasoline car), TV hours = "
            f"kg / {table.tv_kg_per_hour:g} (32-inch LCD), household-week % = kg / "
            f"{table.household_kg_per_week:g} × 100; constants: {table.source}.")


def equivalents_table(eq: pd.DataFrame, note: str) -> Table:
    est = [bool(x) for x in eq["estimated"]] if len(eq) else []
    c_unit = pick_unit(list(eq.get("kg_per_run", [])) + list(eq.get("kg_total", [])), MASS_UNITS)
    h_run, mark = est_header(f"Emissions per complete run ({c_unit.label})", est)
    h_tot, _ = est_header(f"Emissions, all seeds ({c_unit.label})", est)
    headers = ["Method", h_run]
    headers += [est_header(EQUIV_LABELS[c] + " per run", est)[0] for c in EQUIV_COLUMNS]
    headers += [h_tot, est_header("Car miles, all seeds", est)[0]]
    rows = []
    for rec in eq.to_dict("records"):
        tag = mark if rec["estimated"] else ""
        rows.append(
            [Cell(rec["method"]), Cell(_tagged(fmt_in(rec["kg_per_run"], c_unit), tag), "num")]
            + [Cell(_tagged(fmt_num(rec[c]), tag), "num") for c in EQUIV_COLUMNS]
            + [Cell(_tagged(fmt_in(rec["kg_total"], c_unit), tag) + f" ({rec['n_reported']} seed{'s' if rec['n_reported'] != 1 else ''})", "num"),
               Cell(_tagged(fmt_num(rec["car_miles_total"]), tag), "num")])
    return Table(
        key="equivalents", title="Carbon equivalents per method", headers=headers, rows=rows,
        source=(f"Source: {SEED_FILES}result.json emissions_kg (CodeCarbon, country from plan.json); "
                + note + "."),
        notes=["Per run = mean over complete seeds; all seeds = every seed that reported emissions, "
               "including interrupted and failed ones (what the benchmark actually emitted).",
               _equivalence_text()])


def _which(g: pd.DataFrame, n_all: int) -> str:
    """'all 24 seeds', or 'spikerl/HalfCheetah-v4 seeds 0, 1; popsan/Hopper-v4 seed 2'."""
    if len(g) == n_all:
        return f"all {n_all} seeds"
    parts = []
    for (m, e), sub in g.groupby(["method", "env"], sort=False):
        seeds = sorted(int(x) for x in sub["seed"])
        parts.append(f"{m}/{e} seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}")
    return "; ".join(parts)


def power_sources_table(run: RunFolder) -> Table:
    seeds = run.seeds
    n_all = len(seeds)
    rows = []
    known = seeds[seeds["energy_source"].notna()]
    for (src, est), g in known.groupby([known["energy_source"].astype(str),
                                         known["estimated"].fillna(False).astype(bool)], sort=True):
        rows.append([Cell(src), Cell("estimated" if est else "measured", "est" if est else "green"),
                     Cell(str(len(g)), "num"), Cell(_which(g, n_all))])
    unknown = seeds[seeds["energy_source"].isna()]
    if len(unknown):
        rows.append([Cell("not recorded (no energy_source in result.json, no power.csv)"), Cell(DASH),
                     Cell(str(len(unknown)), "num"), Cell(_which(unknown, n_all))])
    return Table(key="power-sources", title="Where the energy numbers come from",
                 headers=["Energy source", "Kind", "Seeds", "Which"], rows=rows,
                 source=f"Source: {SEED_FILES}result.json energy_source and estimated; "
                        "power.csv source and estimated where result.json is absent.")


def environment_table(run: RunFolder) -> Table:
    env = run.environment or {}
    rows = [[Cell(str(k)), Cell(_plain(v))] for k, v in env.items()]
    if not rows:
        rows = [[Cell("environment.json"), Cell("missing")]]
    return Table(key="environment", title="Software and hardware", headers=["Field", "Value"],
                 rows=rows, source="Source: environment.json.")


def _plain(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ", ".join(_plain(x) for x in v) if v else "none"
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True)
    if v is None:
        return DASH
    return str(v)


# ----------------------------------------------------------------------------- facts and headline


def _facts(run: RunFolder, baseline: str) -> list[tuple[str, str]]:
    plan = run.plan or {}
    env = run.environment or {}
    configs = [r.config for r in run.runs if r.config]
    world = sorted({str(c.get("world_size")) for c in configs if c.get("world_size") is not None}
                   | {str(int(x)) for x in run.seeds["world_size"].dropna()})
    precision = sorted({str(c.get("precision")) for c in configs if c.get("precision")}
                       | {str(x) for x in run.seeds["precision"].dropna()})
    per_method: dict[str, set[str]] = {}
    for r in run.runs:
        if r.config:
            per_method.setdefault(r.method, set()).add(
                f"{r.config.get('precision', '?')} × {r.config.get('world_size', '?')}")
    gpus = env.get("gpus")
    hardware = [str(env.get("cpu_model") or "CPU model unknown")]
    if env.get("cpu_count"):
        hardware.append(f"{env['cpu_count']} CPU threads")
    hardware.append(f"GPUs: {_plain(gpus)}" if gpus else "no GPU")
    facts = [
        ("Methods", ", ".join(run.methods) or DASH),
        ("Baseline (GPS-UP)", baseline),
        ("Environments", ", ".join(run.envs) or DASH),
        ("Seeds", ", ".join(str(s) for s in plan.get("seeds", [])) or
         ", ".join(str(s) for s in sorted(set(run.seeds["seed"])))),
        ("Env-step budget per seed", fmt_num(plan.get("total_steps"), 9)
         + (f" (profile {plan['profile']})" if plan.get("profile") else "")),
        ("Device", _plain(plan.get("device"))),
        ("Hardware", "; ".join(hardware)),
        ("World size", ", ".join(world) or _plain(plan.get("nproc"))),
        ("Precision", ", ".join(precision) or DASH),
        ("Precision × world size per method",
         "; ".join(f"{m}: {', '.join(sorted(v))}" for m, v in per_method.items()) or DASH),
        ("Carbon intensity country", _plain(plan.get("country"))),
        ("Started (UTC)", _plain(plan.get("created_utc"))),
        ("Git commit", _plain(env.get("git_commit")) + (" (dirty tree)" if env.get("git_dirty") else "")),
    ]
    return facts


def _headline(run: RunFolder, counts: dict[str, int]) -> tuple[bool, list[str]]:
    seeds = run.seeds
    known = seeds[seeds["estimated"].notna()]
    n_est = int(known["estimated"].astype(bool).sum())
    estimated = n_est > 0
    lines = []
    if estimated:
        srcs = sorted({str(s) for s in known[known["estimated"].astype(bool)]["energy_source"].dropna()})
        lines.append(
            f"Energy is ESTIMATED (no NVML/RAPL) for {n_est} of {len(seeds)} seeds"
            f" (source: {', '.join(srcs) or 'estimate'}): energy, power, emissions, powerup, greenup "
            "and the carbon equivalents of those seeds come from CodeCarbon's power model, not a "
            "measurement, and are labelled estimated wherever they appear.")
    elif len(known):
        srcs = sorted({str(s) for s in known["energy_source"].dropna()})
        lines.append(f"Energy measured ({', '.join(srcs) or 'NVML/RAPL'}) for every seed that reported it.")
    else:
        lines.append("No seed has reported its energy yet.")
    partial = {s: n for s, n in counts.items() if s != "complete" and n}
    if partial:
        lines.append("Partial run: " + ", ".join(f"{n} {s}" for s, n in partial.items())
                     + f" of {sum(counts.values())} seeds; aggregates use the "
                       f"{counts.get('complete', 0)} complete seed(s) only.")
    return estimated, lines


def _findings(points: pd.DataFrame, baseline: str) -> list[str]:
    out = []
    for rec in points.to_dict("records"):
        if rec["method"] == baseline or not _finite(rec["speedup"]):
            continue
        g = rec["greenup"]
        verdict = ("uses less energy" if _finite(g) and g > 1 else
                   "uses more energy" if _finite(g) and g < 1 else "uses the same energy")
        est = " (energy estimated)" if rec["estimated"] else ""
        cat = f", category {int(rec['gpsup_category'])}" if _finite(rec["gpsup_category"]) else ""
        out.append(f"{rec['method']} vs {baseline} on {rec['env']}: speedup {fmt_ratio(rec['speedup'])}, "
                   f"powerup {fmt_ratio(rec['powerup'])}, greenup {fmt_ratio(rec['greenup'])}{cat} — "
                   f"{verdict}{est} ({rec['n_seeds']} complete seed(s)).")
    return out


def _configs(run: RunFolder) -> list[tuple[str, str]]:
    out = []
    for m in run.methods:
        for e in run.envs:
            rs = [r for r in run.runs_of(m, e) if r.config]
            if not rs:
                continue
            first = rs[0].config or {}
            diffs = set()
            for r in rs[1:]:
                for k in set(first) | set(r.config or {}):
                    if k != "seed" and first.get(k) != (r.config or {}).get(k):
                        diffs.add(k)
            title = f"{m} / {e} — config.json of seed {rs[0].seed}"
            if len(rs) > 1:
                others = ", ".join(str(r.seed) for r in rs[1:])
                title += (f" (seeds {others} differ in: {', '.join(sorted(diffs))})" if diffs
                          else f" (seeds {others}: identical apart from the seed)")
            out.append((title, json.dumps(first, indent=2, sort_keys=True, default=str)))
    return out


def build_content(run: RunFolder, baseline: str | None = None) -> Report:
    base = resolve_baseline(run, baseline)
    counts = {s: int((run.seeds["status"] == s).sum()) for s in STATUS_ORDER}
    estimated, headline = _headline(run, counts)
    reported = bool(run.seeds["estimated"].notna().any() or run.seeds["energy_source"].notna().any())
    energy_kind = "estimated" if estimated else ("measured" if reported else "none")
    points, gnote = gpsup_points(run, base)
    eq, eq_note = equivalents_frame(run)
    plan = run.plan or {}
    results = []
    for env in run.envs:
        if (run.seeds["env"] == env).any():
            agg, per_seed = results_tables(run, env, base, points)
            results.append((env, agg, per_seed))
    argv = plan.get("argv") if isinstance(plan.get("argv"), list) else []
    return Report(
        title="spikerl-bench report",
        run_name=run.path.resolve().name,
        generated_utc=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        baseline=base,
        estimated=estimated,
        energy_kind=energy_kind,
        headline=headline,
        findings=_findings(points, base),
        facts=_facts(run, base),
        facts_source="Source: plan.json, environment.json, <method>/<env>/seed<k>/config.json.",
        power_sources=power_sources_table(run),
        status_counts=counts,
        problems=list(run.problems),
        results=results,
        gpsup_points=points,
        gpsup_note=gnote,
        equivalents=equivalents_table(eq, eq_note),
        equivalents_data=eq,
        command=str(plan.get("command") or DASH),
        argv=[str(a) for a in argv],
        environment=environment_table(run),
        configs=_configs(run),
        plan_json=json.dumps(plan, indent=2, sort_keys=True, default=str) if plan else "plan.json missing",
    )
