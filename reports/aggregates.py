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
from bench.metrics.gpsup import add_gpsup_columns, aggregate_gpsup
from bench.schema import Status
from reports import stats
from reports.fairness import contended

POINT_COLUMNS = ["method", "env", "wall_s", "energy_j", "speedup", "powerup", "greenup", "gpsup_category",
                 "s_lo", "s_hi", "p_lo", "p_hi", "n_seeds", "estimated", "is_baseline", "contended", "engine"]
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


def gpsup_points(seeds: pd.DataFrame, baseline: str) -> tuple[pd.DataFrame, str]:
    """One row per method × env with complete seeds: GPS-UP of the seed means against the
    baseline's (ratio of means), the seed spread (min/max of per-seed speedup and powerup),
    the number of seeds and whether any energy was estimated; and a note naming the source."""
    done = complete_seeds(seeds)
    per_seed = add_gpsup_columns(done, baseline)
    rows = []
    for rec in aggregate_gpsup(done, baseline).to_dict("records"):
        m, e = rec["method"], rec["env"]
        ps = per_seed[(per_seed["method"] == m) & (per_seed["env"] == e)]
        s_lo, s_hi, _ = stats.spread(ps["speedup"])
        p_lo, p_hi, _ = stats.spread(ps["powerup"])
        base = done[(done["method"] == baseline) & (done["env"] == e)]
        rows.append({**rec, "s_lo": s_lo, "s_hi": s_hi, "p_lo": p_lo, "p_hi": p_hi,
                     "n_seeds": int(len(ps)), "estimated": _any_estimated(ps), "is_baseline": m == baseline,
                     # a ratio is as contended as either of its two sides
                     "contended": any(contended(r) for r in [*ps.to_dict("records"), *base.to_dict("records")]),
                     "engine": "+".join(sorted({str(x) for x in ps.get("engine", pd.Series(dtype=object)).dropna()}))})
    note = (f"computed by bench.metrics.gpsup from result.json wall_s and energy_j (complete seeds), "
            f"baseline {baseline}")
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
