"""Numbers across seeds for the report, computed by bench's metrics: GPS-UP per method × env
(bench.metrics.gpsup) and carbon equivalents per method (bench.metrics.equivalents).

Only 'complete' seeds enter an aggregate: an interrupted seed ran fewer steps, so its time and
energy are not comparable. The one exception is the carbon total, which counts every seed that
reported emissions, because that is what the benchmark actually emitted.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from bench.metrics.equivalents import EQUIVALENT_COLUMNS, add_equivalent_columns
from bench.metrics.gpsup import CI_COLUMNS, PHASE_COLUMNS, PHASE_LABELS, aggregate_gpsup
from bench.schema import Status
from reports.fairness import contended

POINT_COLUMNS = ["method", "env", "wall_s", "energy_j", "gpsup_time_s", "gpsup_energy_j", "speedup", "powerup",
                 "greenup", "gpsup_category", "gpsup_phase", "gpsup_basis", "gpsup_note", "measured_energy_share",
                 *CI_COLUMNS, "s_lo", "s_hi", "p_lo", "p_hi", "n_seeds", "n_units", "estimated", "is_baseline",
                 "contended", "engine"]
EQUIVALENT_LABELS = {
    "household_week_pct": "US household-week",
    "car_miles": "Gasoline car",
    "tv_hours": "32-inch LCD TV",
}
"""bench's equivalent columns, in display order, with their labels."""


def complete_seeds(seeds: pd.DataFrame) -> pd.DataFrame:
    return seeds[seeds["status"] == Status.COMPLETE]


def _any_estimated(rows: pd.DataFrame) -> bool:
    return bool(rows["estimated"].fillna(False).astype(bool).any())


def gpsup_points(seeds: pd.DataFrame, baseline: str, phase: str = "train") -> tuple[pd.DataFrame, str]:
    """One row per method × env with complete seeds: GPS-UP of the phase's seed means against the
    baseline's (ratio of means) with its 95 % bootstrap interval (s_lo..s_hi, p_lo..p_hi: the
    error bars), basis and note, the number of seeds and whether any energy was estimated; and a
    note naming the source."""
    done = complete_seeds(seeds)
    rows = []
    for rec in aggregate_gpsup(done, baseline, phase=phase).to_dict("records"):
        m, e = rec["method"], rec["env"]
        ps = done[(done["method"] == m) & (done["env"] == e)]
        base = done[(done["method"] == baseline) & (done["env"] == e)]
        rows.append({**rec, "s_lo": rec["speedup_ci_low"], "s_hi": rec["speedup_ci_high"],
                     "p_lo": rec["powerup_ci_low"], "p_hi": rec["powerup_ci_high"],
                     "n_seeds": int(len(ps)), "estimated": _any_estimated(ps), "is_baseline": m == baseline,
                     # a ratio is as contended as either of its two sides
                     "contended": any(contended(r) for r in [*ps.to_dict("records"), *base.to_dict("records")]),
                     "engine": "+".join(sorted({str(x) for x in ps.get("engine", pd.Series(dtype=object)).dropna()}))})
    time_col, energy_col, _ = PHASE_COLUMNS[phase]
    note = (f"{PHASE_LABELS[phase]}: computed by bench.metrics.gpsup from result.json {time_col} and {energy_col} "
            f"(complete seeds, equal training work), baseline {baseline}; ratio of means with a 95 % percentile "
            "bootstrap interval over seeds (scipy.stats.bootstrap, 2,000 resamples, seed 0; paired by seed, "
            "a seed batch resampled as one unit)")
    return pd.DataFrame(rows, columns=POINT_COLUMNS), note


def equivalents_frame(seeds: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Per method: mean emissions per complete run (kg_per_run) and the total over every seed
    that reported emissions (kg_total), each with bench's everyday equivalents (the totals'
    columns end in '_total')."""
    rows: list[dict[str, Any]] = []
    for m in methods:
        reported = seeds[(seeds["method"] == m) & seeds["emissions_kg"].notna()]
        done = complete_seeds(reported)
        rows.append({
            "method": m,
            "n_complete": int(len(done)),
            "n_reported": int(len(reported)),
            "kg_per_run": done["emissions_kg"].mean() if len(done) else float("nan"),
            "kg_total": reported["emissions_kg"].sum() if len(reported) else float("nan"),
            "estimated": _any_estimated(reported),
        })
    frame = pd.DataFrame(rows)
    per_run = add_equivalent_columns(frame, emissions_col="kg_per_run")
    totals = add_equivalent_columns(frame, emissions_col="kg_total")[list(EQUIVALENT_COLUMNS)]
    return pd.concat([per_run, totals.add_suffix("_total")], axis=1)
