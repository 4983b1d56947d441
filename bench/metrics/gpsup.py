"""GPS-UP (Abdulsalam, Zong, Gu, Qiu, IGSC 2015): speedup, powerup, greenup and the 8 categories.

Baseline φ, candidate o, wall time T, energy E, average power P = E / T:
    speedup S = T_φ / T_o,  powerup P = P_o / P_φ,  greenup G = E_φ / E_o = S / P.

Rules for the boundaries the paper's table leaves open (DESIGN §5.3):
- "= 1" means within a factor of (1 + REL_TOL) of 1, REL_TOL = 1 %: |ln x| ≤ ln 1.01, which
  treats 1.01× and 1/1.01× alike (run-to-run timing noise is about this size).
- S ≈ 1 counts as S > 1 ("no slower than the baseline"): categories 1, 2 or 5.
- P ≈ S (G ≈ 1) counts as greener, category 3 or 4; only a greenup below 1/1.01 is red.
- P ≈ 1 is category 2 (S ≥ ~1) or 7 (S < 1), whatever G.
So every valid input gets exactly one category. A baseline compared with itself is the
reference, not a comparison: its rows carry S = P = G = 1 and no category.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import pandas as pd

from bench.schema import GPSUP_FIELDS

REL_TOL = 0.01
GREEN_CATEGORIES = (1, 2, 3, 4)
RED_CATEGORIES = (5, 6, 7, 8)


def approx_one(x: float, rel_tol: float = REL_TOL) -> bool:
    # The 1e-12 keeps typed-in edges such as 1.01 (not exact in binary) inside the band.
    return abs(math.log(x)) <= math.log1p(rel_tol) + 1e-12


def category(speedup: float, powerup: float, rel_tol: float = REL_TOL) -> int:
    """GPS-UP category 1–8 of (S, P), with the boundary rules in the module docstring."""
    if speedup <= 0 or powerup <= 0:
        raise ValueError(f"speedup and powerup must be positive, got {speedup}, {powerup}")
    greenup = speedup / powerup
    greener = greenup > 1 or approx_one(greenup, rel_tol)
    if speedup > 1 or approx_one(speedup, rel_tol):
        if approx_one(powerup, rel_tol):
            return 2
        if powerup < 1:
            return 1
        return 3 if greener else 5
    if approx_one(powerup, rel_tol):
        return 7
    if powerup > 1:
        return 8
    return 4 if greener else 6


@dataclass(frozen=True)
class GpsUp:
    speedup: float
    powerup: float
    greenup: float
    category: int

    @property
    def green(self) -> bool:
        """Saves energy (categories 1–4)."""
        return self.category in GREEN_CATEGORIES


def _check_positive(**values: float) -> None:
    for name, v in values.items():
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a positive finite number, got {v!r}")


def gpsup(base_time_s: float, base_energy_j: float, time_s: float, energy_j: float,
          rel_tol: float = REL_TOL) -> GpsUp:
    """GPS-UP of a candidate against a baseline; ValueError on zero, negative or non-finite input."""
    _check_positive(base_time_s=base_time_s, base_energy_j=base_energy_j, time_s=time_s, energy_j=energy_j)
    speedup = base_time_s / time_s
    powerup = (energy_j / time_s) / (base_energy_j / base_time_s)
    greenup = base_energy_j / energy_j
    return GpsUp(speedup, powerup, greenup, category(speedup, powerup, rel_tol))


def _gpsup_or_none(base_time_s: float, base_energy_j: float, time_s: float, energy_j: float,
                   rel_tol: float) -> GpsUp | None:
    try:
        return gpsup(float(base_time_s), float(base_energy_j), float(time_s), float(energy_j), rel_tol)
    except (TypeError, ValueError):
        return None


GPSUP_COLUMNS = tuple(f.name for f in GPSUP_FIELDS)


def _fill(out: pd.DataFrame, idx: object, g: GpsUp | None, is_baseline: bool) -> None:
    if g is None:
        return
    out.at[idx, "speedup"], out.at[idx, "powerup"], out.at[idx, "greenup"] = g.speedup, g.powerup, g.greenup
    if not is_baseline:
        out.at[idx, "gpsup_category"] = g.category


def _empty_columns(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for col in ("speedup", "powerup", "greenup"):
        out[col] = float("nan")
    out["gpsup_category"] = pd.array([pd.NA] * len(out), dtype="Int64")
    return out


def add_gpsup_columns(summary: pd.DataFrame, baseline: str, *, rel_tol: float = REL_TOL,
                      method_col: str = "method", env_col: str = "env", seed_col: str = "seed",
                      time_col: str = "wall_s", energy_col: str = "energy_j") -> pd.DataFrame:
    """Per run: GPS-UP against the baseline method's run with the same env and seed.

    Empty (NaN / <NA>) where that baseline run is missing or either side has no positive
    time or energy. Several baseline rows for one env and seed are averaged.
    """
    out = _empty_columns(summary)
    if out.empty:
        return out
    base = summary[summary[method_col] == baseline]
    base_means = base.groupby([env_col, seed_col])[[time_col, energy_col]].mean(numeric_only=True)
    for idx, row in summary.iterrows():
        key = (row[env_col], row[seed_col])
        if key not in base_means.index:
            continue
        b = base_means.loc[key]
        g = _gpsup_or_none(b[time_col], b[energy_col], row[time_col], row[energy_col], rel_tol)
        _fill(out, idx, g, row[method_col] == baseline)
    return out


def aggregate_gpsup(summary: pd.DataFrame, baseline: str, *, rel_tol: float = REL_TOL,
                    method_col: str = "method", env_col: str = "env", seed_col: str = "seed",
                    time_col: str = "wall_s", energy_col: str = "energy_j") -> pd.DataFrame:
    """One row per method × env: mean time and energy over seeds, then GPS-UP of the means
    against the baseline's means (ratio of means, not mean of ratios). The baseline row is
    exactly 1, 1, 1 with no category."""
    cols = [method_col, env_col, "n_seeds", time_col, energy_col, "avg_power_w", *GPSUP_COLUMNS]
    if summary.empty:
        return pd.DataFrame(columns=cols)
    valid = summary.assign(**{time_col: pd.to_numeric(summary[time_col], errors="coerce"),
                              energy_col: pd.to_numeric(summary[energy_col], errors="coerce")})
    agg = (valid.groupby([method_col, env_col], sort=False)
           .agg(n_seeds=(seed_col, "nunique"), **{time_col: (time_col, "mean"), energy_col: (energy_col, "mean")})
           .reset_index())
    agg["avg_power_w"] = agg[energy_col] / agg[time_col].where(agg[time_col] > 0)
    out = _empty_columns(agg)
    base = agg[agg[method_col] == baseline].set_index(env_col)
    for idx, row in agg.iterrows():
        if row[env_col] not in base.index:
            continue
        b = base.loc[row[env_col]]
        g = _gpsup_or_none(b[time_col], b[energy_col], row[time_col], row[energy_col], rel_tol)
        _fill(out, idx, g, row[method_col] == baseline)
    return out[cols]


# ----------------------------------------------------------------------------- energy to target

def default_target(baseline_final_return: float) -> float:
    """90 % of the baseline's final return, read as "within 10 % of |final| below it":
    final − 0.1·|final|. For a positive final that is 0.9·final; for a negative one
    (e.g. −200) it is 1.1·final (−220), which is still the easier side, as 90 % should be."""
    return baseline_final_return - 0.1 * abs(baseline_final_return)


def energy_to_target(evals: pd.DataFrame, target_return: float) -> tuple[float | None, float | None]:
    """(energy_j, wall_s) at the first evaluation (by step) whose return_mean ≥ target;
    (None, None) when never reached. energy is None if that row has no energy_j."""
    if evals is None or evals.empty or target_return is None or not math.isfinite(target_return):
        return None, None
    ev = evals.copy()
    ev["return_mean"] = pd.to_numeric(ev["return_mean"], errors="coerce")
    ev = ev.sort_values("step", kind="stable") if "step" in ev.columns else ev
    hit = ev[ev["return_mean"] >= target_return]
    if hit.empty:
        return None, None
    row = hit.iloc[0]
    energy = pd.to_numeric(pd.Series([row.get("energy_j")]), errors="coerce").iloc[0]
    wall = pd.to_numeric(pd.Series([row.get("wall_s")]), errors="coerce").iloc[0]
    return (None if pd.isna(energy) else float(energy)), (None if pd.isna(wall) else float(wall))


RunKey = tuple  # (method, env, seed)


def add_target_columns(summary: pd.DataFrame, evals_by_run: Mapping[RunKey, pd.DataFrame], baseline: str,
                       target_return: float | None = None, *, method_col: str = "method",
                       env_col: str = "env", seed_col: str = "seed",
                       final_col: str = "final_return_mean") -> pd.DataFrame:
    """Adds target_return, energy_to_target_j and time_to_target_s.

    `evals_by_run` maps (method, env, seed) to that run's evals.csv frame. With no explicit
    `target_return`, each env and seed uses `default_target` of the baseline run's
    final_return_mean there; no baseline run (or no final return) leaves the row empty.
    """
    out = summary.copy()
    out["target_return"] = float("nan")
    out["energy_to_target_j"] = float("nan")
    out["time_to_target_s"] = float("nan")
    if out.empty:
        return out
    base_final: dict[tuple, float] = {}
    if target_return is None:
        base = summary[summary[method_col] == baseline]
        for _, row in base.iterrows():
            final = pd.to_numeric(pd.Series([row.get(final_col)]), errors="coerce").iloc[0]
            if not pd.isna(final):
                base_final[(row[env_col], row[seed_col])] = float(final)
    for idx, row in summary.iterrows():
        if target_return is not None:
            target: float | None = float(target_return)
        else:
            final = base_final.get((row[env_col], row[seed_col]))
            target = None if final is None else default_target(final)
        if target is None:
            continue
        out.at[idx, "target_return"] = target
        evals = evals_by_run.get((row[method_col], row[env_col], row[seed_col]))
        if evals is None:
            continue
        energy_j, time_s = energy_to_target(evals, target)
        if energy_j is not None:
            out.at[idx, "energy_to_target_j"] = energy_j
        if time_s is not None:
            out.at[idx, "time_to_target_s"] = time_s
    return out
