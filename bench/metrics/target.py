"""Energy and time to a target return, measured on the whole run (training and evaluation: what it
cost to get there), from evals.csv's cumulative energy_j and wall_s."""
from __future__ import annotations

import math
from typing import Mapping

import pandas as pd


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
