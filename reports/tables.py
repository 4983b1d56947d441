"""The report's tables, as display strings: results per env (aggregate and per seed), carbon
equivalents, where the energy numbers come from, and the software and hardware.

Every number derived from an estimated energy (energy, power, emissions, powerup, greenup,
category, equivalents) is labelled estimated, and every table names the files it comes from.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.metrics.equivalents import DEFAULT_TABLE
from bench.schema import Status
from reports import stats
from bench.energy.contention import CONTENDED_ABOVE
from reports.aggregates import EQUIVALENT_LABELS, complete_seeds
from reports.fairness import CONTENDED_MARK
from reports.format import (DASH, ENERGY_UNITS, MASS_UNITS, POWER_UNITS, SEED_FILES, Unit, est_header,
                            finite, fmt_in, fmt_num, fmt_ratio, pick_unit, plain, tagged, time_unit)
from reports.load import RunFolder, SeedRun
from reports.model import STATUS_ORDER, Cell, Table

_WORST_FIRST = (Status.FAILED, Status.CORRUPT, Status.INTERRUPTED, Status.RUNNING, Status.PENDING)
_CUT_SHORT = (Status.INTERRUPTED, Status.FAILED, Status.CORRUPT)


@dataclass(frozen=True)
class _Units:
    """One env's display units, shared by its aggregate and per-seed tables."""

    time: Unit
    energy: Unit
    power: Unit
    mass: Unit


def _status_cell(statuses: list[str]) -> Cell:
    counts = {s: statuses.count(s) for s in STATUS_ORDER if s in statuses}
    text = f"{counts.get(Status.COMPLETE, 0)}/{len(statuses)}"
    others = [f"{n} {s.value}" for s, n in counts.items() if s != Status.COMPLETE]
    if others:
        text += " · " + ", ".join(others)
    worst = next((s for s in _WORST_FIRST if s in counts), Status.COMPLETE)
    return Cell(text, f"status-{worst.value}")


def _target_note(seeds: pd.DataFrame) -> str | None:
    """The target return(s) behind 'energy to target' on one env."""
    col = seeds["target_return"].dropna()
    if col.empty:
        return None
    lo, hi = col.min(), col.max()
    if lo == hi:
        return f"Target return for 'energy to target': {fmt_num(lo, 5)}."
    return (f"Target return for 'energy to target' differs by seed ({fmt_num(lo, 5)} to "
            f"{fmt_num(hi, 5)}): each seed's target comes from the baseline run of the same seed.")


def _return_texts(st: stats.SeedStats) -> tuple[str, str]:
    """'mean ± std' and 'IQM [CI]' of the final returns ('*' marks a crude two-seed CI)."""
    if st.n == 0:
        return DASH, DASH
    if st.n == 1:
        return fmt_num(st.mean, 4) + " (1 seed)", fmt_num(st.iqm, 4) + " (no CI)"
    iqm = f"{fmt_num(st.iqm, 4)} [{fmt_num(st.ci_low, 4)}, {fmt_num(st.ci_high, 4)}]"
    return f"{fmt_num(st.mean, 4)} ± {fmt_num(st.std, 3)}", iqm + ("*" if st.n < 3 else "")


def _category_cell(method: str, baseline: str, category: Any, tag: str) -> Cell:
    if method == baseline:
        return Cell("baseline")
    if not finite(category):
        return Cell(DASH)
    c = int(category)
    return Cell(f"{c} {'▼' if c <= 4 else '▲'}{tag}", "green" if c <= 4 else "red")


def _to_target_text(done: pd.DataFrame, unit: Unit, tag: str, has_target: bool) -> str:
    reached = done["energy_to_target_j"].notna().sum()
    if not (len(done) and has_target or reached):
        return DASH
    text = fmt_in(done["energy_to_target_j"].mean(), unit) + tag if reached else "not reached"
    return text + f" ({reached}/{len(done)} reached)"


def _aggregate_notes(baseline: str, seed_counts: set[int], target: str | None) -> list[str]:
    notes = ["Means over complete seeds only; running, interrupted and failed seeds are listed below "
             "with their status and are not averaged.",
             "IQM = interquartile mean (scipy.stats.trim_mean, 25 %); CI = 95 % percentile bootstrap "
             "of the IQM over seeds (scipy.stats.bootstrap); with fewer than 4 seeds IQM = mean.",
             f"Speedup = T_{baseline} / T, powerup = P / P_{baseline}, greenup = speedup / powerup "
             f"= E_{baseline} / E (GPS-UP); categories 1–4 (▼) save energy, 5–8 (▲) cost energy."]
    if 1 in seed_counts:
        notes.append("(1 seed): one complete seed, so no std and no confidence interval.")
    if 2 in seed_counts:
        notes.append("* Two complete seeds: the bootstrap CI is crude (it can only take a few values).")
    if target is not None:
        notes.append(target)
    notes.append(f"{CONTENDED_MARK.strip()} contended: other processes used more than "
                 f"{CONTENDED_ABOVE:.0%} of the CPU time of this method's or the baseline's seeds "
                 "(result.json foreign_cpu_share), or its GPUs.")
    return notes


def results_tables(run: RunFolder, env: str, baseline: str, points: pd.DataFrame) -> tuple[Table, Table]:
    """(aggregate table, per-seed table) of one env."""
    seeds = run.seeds[run.seeds["env"] == env]
    done = complete_seeds(seeds)
    units = _Units(time_unit(done["wall_s"]), pick_unit(done["energy_j"], ENERGY_UNITS),
                   pick_unit(done["avg_power_w"], POWER_UNITS), pick_unit(done["emissions_kg"], MASS_UNITS))
    methods = [m for m in run.methods if (seeds["method"] == m).any()]
    return (_aggregate_table(env, methods, seeds, baseline, points, units),
            _seed_table(run, env, seeds, units))


def _aggregate_table(env: str, methods: list[str], seeds: pd.DataFrame, baseline: str,
                     points: pd.DataFrame, u: _Units) -> Table:
    done = complete_seeds(seeds)
    et_unit = pick_unit(done["energy_to_target_j"], ENERGY_UNITS)
    est_rows = [bool(done[done["method"] == m]["estimated"].fillna(False).any()) for m in methods]
    h_energy, mark = est_header(f"Energy ({u.energy.label})", est_rows)
    h_power, h_co2, h_pu, h_gu, h_cat, h_ett = (est_header(h, est_rows)[0] for h in (
        f"Avg power ({u.power.label})", f"Emissions ({u.mass.label})", "Powerup", "Greenup", "Category",
        f"Energy to target ({et_unit.label})"))
    target = _target_note(seeds)
    headers = ["Method", "Complete seeds", "Return mean ± std", "Return IQM [95 % CI]",
               f"Wall time ({u.time.label})", h_energy, h_power, h_co2, "Speedup", h_pu, h_gu, h_cat, h_ett]
    rows, seed_counts = [], set()
    for m, est in zip(methods, est_rows):
        md = done[done["method"] == m]
        st = stats.describe(md["final_return_mean"])
        seed_counts.add(st.n)
        ret, iqm = _return_texts(st)
        tag = mark if est else ""
        pt = points[(points["method"] == m) & (points["env"] == env)]
        pr = pt.iloc[0].to_dict() if len(pt) else {}
        rows.append([
            Cell(m + (" (baseline)" if m == baseline else "") + (CONTENDED_MARK if pr.get("contended") else "")),
            _status_cell(list(seeds[seeds["method"] == m]["status"])), Cell(ret, "num"), Cell(iqm, "num"),
            Cell(fmt_in(md["wall_s"].mean(), u.time), "num"),
            Cell(tagged(fmt_in(md["energy_j"].mean(), u.energy), tag), "num"),
            Cell(tagged(fmt_in(md["avg_power_w"].mean(), u.power), tag), "num"),
            Cell(tagged(fmt_in(md["emissions_kg"].mean(), u.mass), tag), "num"),
            Cell(fmt_ratio(pr.get("speedup")), "num"),
            Cell(tagged(fmt_ratio(pr.get("powerup")), tag), "num"),
            Cell(tagged(fmt_ratio(pr.get("greenup")), tag), "num"),
            _category_cell(m, baseline, pr.get("gpsup_category"), tag),
            Cell(_to_target_text(md, et_unit, tag, target is not None), "num"),
        ])
    return Table(
        key=f"results-{env}", title=f"Results on {env}", headers=headers, rows=rows,
        source=(f"Source: {SEED_FILES}result.json (status, steps, final_return_mean, wall_s, energy_j, "
                "avg_power_w, emissions_kg, energy_to_target_j); GPS-UP: see the quadrant's note."),
        notes=_aggregate_notes(baseline, seed_counts, target))


def _so_far(rec: dict[str, Any], r: SeedRun | None) -> tuple[Any, Any, Any, Any, Any]:
    """(steps, wall_s, energy_j, final return, best return) of a running seed, from its logs."""
    final, best = rec.get("final_return_mean"), rec.get("best_return_mean")
    if r is not None and r.evals is not None and len(r.evals):
        final, best = r.evals["return_mean"].iloc[-1], r.evals["return_mean"].max()
    return rec.get("progress_step"), rec.get("progress_wall_s"), rec.get("progress_energy_j"), final, best


def _seed_note(rec: dict[str, Any], r: SeedRun | None, total_steps: Any) -> str:
    status = rec["status"]
    note = ""
    if status == Status.RUNNING:
        note = "still running: numbers so far (progress.csv, evals.csv)"
        if r is not None and all(f is None or f.empty for f in (r.progress, r.evals)):
            note = "no result.json, progress.csv or evals.csv yet"
    elif status == Status.PENDING:
        return "not started yet"
    elif status in _CUT_SHORT:
        bits = []
        if status != Status.CORRUPT and finite(rec.get("steps")) and finite(total_steps):
            bits.append(f"stopped at {fmt_num(rec.get('steps'), 7)} of {fmt_num(total_steps, 7)} steps")
        if rec.get("error") and str(rec.get("error")) != "nan":
            bits.append(str(rec["error"]))
        elif status == Status.CORRUPT:
            bits.append("result unreadable (see the missing or unreadable files)")
        note = "; ".join(bits)
    if rec.get("folder_missing"):
        note = "; ".join(x for x in ("seed folder missing: values from summary.csv", note) if x)
    return note


def _seed_row(run: RunFolder, rec: dict[str, Any], env: str, u: _Units, mark: str) -> list[Cell]:
    status = str(rec["status"])
    tag = mark if rec.get("estimated") else ""
    r = run.run(rec["method"], env, int(rec["seed"]))
    steps, wall, energy = rec.get("steps"), rec.get("wall_s"), rec.get("energy_j")
    final, best = rec.get("final_return_mean"), rec.get("best_return_mean")
    if status == Status.RUNNING:
        steps, wall, energy, final, best = _so_far(rec, r)
    return [
        Cell(str(rec["method"])), Cell(str(rec["seed"]), "num"), Cell(status, f"status-{status}"),
        Cell(fmt_num(steps, 7), "num"), Cell(fmt_num(final, 4), "num"), Cell(fmt_num(best, 4), "num"),
        Cell(fmt_in(wall, u.time), "num"), Cell(tagged(fmt_in(energy, u.energy), tag), "num"),
        Cell(tagged(fmt_in(rec.get("avg_power_w"), u.power), tag), "num"),
        Cell(tagged(fmt_in(rec.get("emissions_kg"), u.mass), tag), "num"),
        Cell(str(rec.get("energy_source") or DASH)),
        Cell(fmt_num(rec.get("time_to_target_s"), 4), "num"),
        Cell(_seed_note(rec, r, (run.plan or {}).get("total_steps"))),
    ]


def _seed_table(run: RunFolder, env: str, seeds: pd.DataFrame, u: _Units) -> Table:
    est = [bool(x) for x in seeds["estimated"].fillna(False)]
    h_energy, mark = est_header(f"Energy ({u.energy.label})", est)
    h_power, _ = est_header(f"Avg power ({u.power.label})", est)
    h_co2, _ = est_header(f"Emissions ({u.mass.label})", est)
    headers = ["Method", "Seed", "Status", "Steps", "Final return", "Best return",
               f"Wall time ({u.time.label})", h_energy, h_power, h_co2, "Energy source",
               "Time to target (s)", "Note"]
    order = {m: i for i, m in enumerate(run.methods)}
    seeds = seeds.assign(_o=seeds["method"].map(order)).sort_values(["_o", "seed"], kind="stable")
    return Table(
        key=f"seeds-{env}", title=f"Every seed on {env}", headers=headers,
        rows=[_seed_row(run, rec, env, u, mark) for rec in seeds.to_dict("records")],
        source=(f"Source: {SEED_FILES}result.json; for running seeds the last row of progress.csv "
                "(steps, wall time, energy) and evals.csv (returns); summary.csv for seeds whose "
                "folder is missing."))


def _equivalence_text() -> str:
    t = DEFAULT_TABLE
    return (f"Equivalents: miles = kg / {t.car_kg_per_mile:g} (average gasoline car), TV hours = "
            f"kg / {t.tv_kg_per_hour:g} (32-inch LCD), household-week % = kg / "
            f"{t.household_kg_per_week:g} × 100; constants: {t.source}.")


def equivalents_table(eq: pd.DataFrame) -> Table:
    est = [bool(x) for x in eq["estimated"]] if len(eq) else []
    c_unit = pick_unit(list(eq.get("kg_per_run", [])) + list(eq.get("kg_total", [])), MASS_UNITS)
    h_run, mark = est_header(f"Emissions per complete run ({c_unit.label})", est)
    h_tot, _ = est_header(f"Emissions, all seeds ({c_unit.label})", est)
    headers = ["Method", h_run]
    headers += [est_header(label + " per run", est)[0] for label in EQUIVALENT_LABELS.values()]
    headers += [h_tot, est_header("Car miles, all seeds", est)[0]]
    rows = []
    for rec in eq.to_dict("records"):
        tag = mark if rec["estimated"] else ""
        n = rec["n_reported"]
        rows.append(
            [Cell(rec["method"]), Cell(tagged(fmt_in(rec["kg_per_run"], c_unit), tag), "num")]
            + [Cell(tagged(fmt_num(rec[c]), tag), "num") for c in EQUIVALENT_LABELS]
            + [Cell(tagged(fmt_in(rec["kg_total"], c_unit), tag) + f" ({n} seed{'s' if n != 1 else ''})", "num"),
               Cell(tagged(fmt_num(rec["car_miles_total"]), tag), "num")])
    return Table(
        key="equivalents", title="Carbon equivalents per method", headers=headers, rows=rows,
        source=(f"Source: {SEED_FILES}result.json emissions_kg (CodeCarbon, country from plan.json); "
                "converted by bench.metrics.equivalents (US EPA figures via CodeCarbon)."),
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


def _flag(value: Any) -> bool | None:
    """A bool column as read back from summary.csv or result.json ('True', True, 1.0, ...)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, str):
        return {"true": True, "false": False}.get(value.strip().lower())
    return bool(value)


def power_sources_table(seeds: pd.DataFrame) -> Table:
    """Per component (GPU, CPU, RAM): where its energy came from, measured or estimated, and the
    estimate's model (its TDP and where the TDP came from)."""
    n_all = len(seeds)
    rows = []
    for comp in ("gpu", "cpu", "ram"):
        src_col, est_col = f"{comp}_source", f"{comp}_estimated"
        if src_col not in seeds.columns:
            continue
        known = seeds[seeds[src_col].notna()]
        model_col = f"{comp}_power_model"
        for (src, est, model), g in known.groupby(
                [known[src_col].astype(str), known[est_col].map(_flag).fillna(False).astype(bool),
                 known[model_col].fillna("").astype(str) if model_col in known.columns
                 else pd.Series("", index=known.index)], sort=True):
            rows.append([Cell(comp.upper()), Cell(src), Cell("estimated" if est else "measured", "est" if est else "green"),
                         Cell(model or DASH), Cell(str(len(g)), "num"), Cell(_which(g, n_all))])
        missing = seeds[seeds[src_col].isna() & seeds["energy_source"].notna()]
        if len(missing):
            rows.append([Cell(comp.upper()), Cell("not metered"), Cell(DASH), Cell(DASH),
                         Cell(str(len(missing)), "num"), Cell(_which(missing, n_all))])
    unknown = seeds[seeds["energy_source"].isna()]
    if len(unknown):
        rows.append([Cell(DASH), Cell("not recorded (no energy_source in result.json, no power.csv)"), Cell(DASH),
                     Cell(DASH), Cell(str(len(unknown)), "num"), Cell(_which(unknown, n_all))])
    return Table(key="power-sources", title="Where the energy numbers come from",
                 headers=["Component", "Source", "Kind", "Estimate's model", "Seeds", "Which"], rows=rows,
                 source=f"Source: {SEED_FILES}result.json gpu/cpu/ram_source, _estimated and _power_model.",
                 notes=["energy_j = GPU + CPU + RAM for every seed. A component that was not metered is "
                        "left empty, never counted as 0."])


def account_table(seeds: pd.DataFrame, methods: list[str]) -> Table:
    """Per method (mean over complete seeds): our account by component next to CodeCarbon's
    independent figures, and the emissions identity emissions = energy × intensity."""
    done = complete_seeds(seeds)
    e_unit = pick_unit(list(done["energy_j"]) + list(done["codecarbon_energy_kwh"] * 3.6e6), ENERGY_UNITS)
    m_unit = pick_unit(list(done["emissions_kg"]) + list(done["codecarbon_emissions_kg"]), MASS_UNITS)
    headers = ["Method", f"GPU ({e_unit.label})", f"CPU ({e_unit.label})", f"RAM ({e_unit.label})",
               f"Total, ours ({e_unit.label})", f"CodeCarbon ({e_unit.label})", "CodeCarbon / ours",
               "Intensity (g/kWh)", f"Emissions, ours ({m_unit.label})", f"CodeCarbon ({m_unit.label})"]
    rows = []
    for m in methods:
        md = done[done["method"] == m]
        if md.empty:
            continue

        def mean(col: str, scale: float = 1.0) -> float:
            return md[col].mean() * scale if md[col].notna().any() else float("nan")

        est = {c: any(_flag(x) for x in md.get(f"{c}_estimated", [])) for c in ("gpu", "cpu", "ram")}
        rows.append([Cell(m)]
                    + [Cell(tagged(fmt_in(mean(f"{c}_energy_j"), e_unit), " (est.)" if est[c] else ""), "num")
                       for c in ("gpu", "cpu", "ram")]
                    + [Cell(fmt_in(mean("energy_j"), e_unit), "num"),
                       Cell(fmt_in(mean("codecarbon_energy_kwh", 3.6e6), e_unit), "num"),
                       Cell(fmt_ratio(mean("codecarbon_energy_ratio")), "num"),
                       Cell(fmt_num(mean("carbon_intensity_g_per_kwh"), 4), "num"),
                       Cell(fmt_in(mean("emissions_kg"), m_unit), "num"),
                       Cell(fmt_in(mean("codecarbon_emissions_kg"), m_unit), "num")])
    return Table(
        key="energy-account", title="Energy account: ours against CodeCarbon's", headers=headers, rows=rows,
        source=(f"Source: {SEED_FILES}result.json gpu/cpu/ram_energy_j, energy_j, codecarbon_energy_kwh, "
                "codecarbon_energy_ratio, carbon_intensity_g_per_kwh, emissions_kg, codecarbon_emissions_kg "
                "(means over complete seeds)."),
        notes=["Every reported energy, power, GPS-UP and emission comes from our account: emissions = "
               "energy_j / 3.6e6 × intensity / 1000, with CodeCarbon's intensity for the plan's country.",
               "CodeCarbon tracks the same runs independently (its own CPU and RAM models, sampled every "
               "15 s); its figures are shown only as a cross-check."])


def environment_table(environment: dict[str, Any] | None) -> Table:
    rows = [[Cell(str(k)), Cell(plain(v))] for k, v in (environment or {}).items()]
    if not rows:
        rows = [[Cell("environment.json"), Cell("missing")]]
    return Table(key="environment", title="Software and hardware", headers=["Field", "Value"],
                 rows=rows, source="Source: environment.json.")
