"""The report's energy tables: where each component's energy came from (measured, estimated, the
estimate's model), our account by component against CodeCarbon's, and the carbon equivalents.
Split from reports.tables (which re-exports them) because they describe the meters, not the results.

Every number derived from an estimated energy is labelled estimated, and attributed shares of a
machine's energy (runs side by side) are marked "attr." with how they were split.
"""
from __future__ import annotations

import pandas as pd

from bench.metrics.equivalents import DEFAULT_TABLE
from reports.aggregates import EQUIVALENT_LABELS, complete_seeds
from reports.format import (
    DASH,
    EQUIVALENT_UNITS,
    MASS_UNITS,
    SEED_FILES,
    decimals_for,
    est_header,
    fmt_fixed,
    fmt_ratio,
    pick_unit,
    tagged,
)
from reports.model import Cell, Table
from reports.units import Units, column, report_units


def _equivalence_text() -> str:
    t = DEFAULT_TABLE
    return (f"Equivalents: miles = kg / {t.car_kg_per_mile:g} (average gasoline car), TV hours = "
            f"kg / {t.tv_kg_per_hour:g} (a 39 W 32-inch LCD on the US grid), household-week % = kg / "
            f"{t.household_kg_per_week:g} × 100; constants: {t.source}. Emissions = IT energy × PUE × grid "
            "intensity (result.json pue, carbon_intensity_g_per_kwh and its source).")


def equivalents_table(eq: pd.DataFrame, units: Units | None = None) -> Table:
    est = [bool(x) for x in eq["estimated"]] if len(eq) else []
    c_unit = units.mass if units is not None else pick_unit(
        list(eq.get("kg_per_run", [])) + list(eq.get("kg_total", [])), MASS_UNITS)
    h_run, mark = est_header(f"Emissions per complete run ({c_unit.label})", est)
    h_tot, _ = est_header(f"Emissions, all seeds ({c_unit.label})", est)
    eq_units = {c: pick_unit(eq[c] if len(eq) else [], EQUIVALENT_UNITS[c]) for c in EQUIVALENT_LABELS}
    car_total = pick_unit(eq["car_miles_total"] if len(eq) else [], EQUIVALENT_UNITS["car_miles"])
    headers = ["Method", h_run]
    headers += [est_header(f"{label} per run ({eq_units[c].label})", est)[0]
                for c, label in EQUIVALENT_LABELS.items()]
    headers += [h_tot, est_header(f"Car, all seeds ({car_total.label})", est)[0]]
    recs = eq.to_dict("records")
    cols = {c: column([r[c] for r in recs], eq_units[c]) for c in EQUIVALENT_LABELS}
    per_run = column([r["kg_per_run"] for r in recs], c_unit)
    total = column([r["kg_total"] for r in recs], c_unit)
    car = column([r["car_miles_total"] for r in recs], car_total)
    rows = []
    for k, rec in enumerate(recs):
        tag = mark if rec["estimated"] else ""
        n = rec["n_reported"]
        rows.append(
            [Cell(rec["method"]), Cell(tagged(per_run[k], tag), "num")]
            + [Cell(tagged(cols[c][k], tag), "num") for c in EQUIVALENT_LABELS]
            + [Cell(tagged(total[k], tag) + f" ({n} seed{'s' if n != 1 else ''})", "num"),
               Cell(tagged(car[k], tag), "num")])
    return Table(
        key="equivalents", title="Carbon equivalents per method", headers=headers, rows=rows,
        source=(f"Source: {SEED_FILES}result.json emissions_kg (our account, country from plan.json); "
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
                [known[src_col].astype(str), known[est_col].eq(True),
                 known[model_col].fillna("").astype(str) if model_col in known.columns
                 else pd.Series("", index=known.index)], sort=True):
            kind = Cell("estimated", "est") if est else Cell("measured", "green")
            rows.append([Cell(comp.upper()), Cell(src), kind, Cell(model or DASH), Cell(str(len(g)), "num"),
                         Cell(_which(g, n_all))])
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


def account_table(seeds: pd.DataFrame, methods: list[str], units: Units | None = None) -> Table:
    """Per method (mean over complete seeds): our account by component next to CodeCarbon's
    independent figures, and the emissions identity emissions = energy × intensity."""
    done = complete_seeds(seeds)
    units = units or report_units(seeds)
    e_unit, m_unit = units.energy, units.mass
    headers = ["Method", f"GPU ({e_unit.label})", f"CPU ({e_unit.label})", f"RAM ({e_unit.label})",
               f"Total, ours ({e_unit.label})", f"CodeCarbon ({e_unit.label})", "CodeCarbon / ours",
               "Intensity (g/kWh)", f"Emissions, ours ({m_unit.label})", f"CodeCarbon ({m_unit.label})"]
    groups = [(m, done[done["method"] == m]) for m in methods if (done["method"] == m).any()]

    def mean(md: pd.DataFrame, col: str, scale: float = 1.0) -> float:
        return md[col].mean() * scale if col in md and md[col].notna().any() else float("nan")

    energy_cols = [[mean(md, c) for _, md in groups] for c in ("gpu_energy_j", "cpu_energy_j", "ram_energy_j",
                                                                  "energy_j")]
    energy_cols.append([mean(md, "codecarbon_energy_kwh", 3.6e6) for _, md in groups])
    d_e = decimals_for([v for col in energy_cols for v in col], e_unit.scale)
    mass_cols = [[mean(md, c) for _, md in groups] for c in ("emissions_kg", "codecarbon_emissions_kg")]
    d_m = decimals_for([v for col in mass_cols for v in col], m_unit.scale)
    rows = []
    for k, (m, md) in enumerate(groups):
        est = {c: bool(md[f"{c}_estimated"].eq(True).any()) for c in ("gpu", "cpu", "ram")}
        attr = {c: _attributed(md, c) for c in ("gpu", "cpu", "ram")}
        rows.append([Cell(m)]
                    + [Cell(tagged(fmt_fixed(energy_cols[j][k], d_e, e_unit.scale), _marks(est[c], attr[c])),
                            "num") for j, c in enumerate(("gpu", "cpu", "ram"))]
                    + [Cell(fmt_fixed(energy_cols[3][k], d_e, e_unit.scale), "num"),
                       Cell(fmt_fixed(energy_cols[4][k], d_e, e_unit.scale), "num"),
                       Cell(fmt_ratio(mean(md, "codecarbon_energy_ratio")), "num"),
                       Cell(fmt_fixed(mean(md, "carbon_intensity_g_per_kwh"), 1), "num"),
                       Cell(fmt_fixed(mass_cols[0][k], d_m, m_unit.scale), "num"),
                       Cell(fmt_fixed(mass_cols[1][k], d_m, m_unit.scale), "num")])
    return Table(
        key="energy-account", title="Energy account: ours against CodeCarbon's", headers=headers, rows=rows,
        source=(f"Source: {SEED_FILES}result.json gpu/cpu/ram_energy_j, energy_j, codecarbon_energy_kwh, "
                "codecarbon_energy_ratio, carbon_intensity_g_per_kwh, emissions_kg, codecarbon_emissions_kg "
                "(means over complete seeds)."),
        notes=["Every reported energy, power, GPS-UP and emission comes from our account: emissions = "
               "energy_j / 3.6e6 × intensity / 1000, with CodeCarbon's intensity for the plan's country.",
               "CodeCarbon tracks the same runs independently (its own CPU and RAM models, sampled every "
               "15 s); its figures are shown only as a cross-check."] + _attribution_note(done))


def _attributed(rows: pd.DataFrame, comp: str) -> bool:
    col = f"{comp}_source"
    return col in rows and rows[col].astype(str).str.contains("attributed", regex=False).any()


def _marks(estimated: bool, attributed: bool) -> str:
    marks = [m for m, on in (("est.", estimated), ("attr.", attributed)) if on]
    return f" ({', '.join(marks)})" if marks else ""


def _attribution_note(done: pd.DataFrame) -> list[str]:
    """Say how the energy of runs that executed side by side was split (bench.energy.callback)."""
    if not any(_attributed(done, c) for c in ("cpu", "ram")):
        return []
    runs = pd.to_numeric(done.get("concurrent_runs", pd.Series(dtype=float)), errors="coerce").dropna()
    share = pd.to_numeric(done.get("attributed_share", pd.Series(dtype=float)), errors="coerce").dropna()
    at_once = f"up to {int(runs.max())} runs at once" if len(runs) else "several runs at once"
    spread = f" (shares {share.min():.2f}–{share.max():.2f})" if len(share) else ""
    return [f"attr.: attributed, not owned. These runs executed side by side ({at_once}, --jobs); the machine's "
            f"CPU and RAM energy was split by each run's share of the machine's busy CPU time{spread}, "
            "result.json attributed_share. GPUs were each run's own. For clean measurements run the sweep with "
            "--jobs 1."]
