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

As a reviewer reads it (DESIGN §5.7): the ratios use the training phase's time and energy by
default (`phase='train'`: train_wall_s, train_energy_j; `'run'`: wall_s, energy_j); a pair is
compared only when both did the same training work (bench.metrics.work); a run whose measured
meter did not cover it is left out (bench.metrics.basis); each pair has a basis (measured, model,
mixed); and per method × env the ratio of means carries a bootstrap interval
(bench.metrics.bootstrap). Everywhere greenup = speedup / powerup.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from bench.metrics import bootstrap
from bench.metrics.basis import basis, measured_energy_share, partial_reason
from bench.metrics.target import add_target_columns, default_target, energy_to_target  # noqa: F401 - their old home
from bench.metrics.work import eval_differs, group_mismatch, work_mismatch
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
    greenup = speedup / powerup  # = E_φ / E_o; one formula everywhere, so the identity holds exactly
    return GpsUp(speedup, powerup, greenup, category(speedup, powerup, rel_tol))


GPSUP_COLUMNS = tuple(f.name for f in GPSUP_FIELDS)
PHASES = ("train", "run")
PHASE_COLUMNS = {"train": ("train_wall_s", "train_energy_j", "measured_energy_share"),
                 "run": ("wall_s", "energy_j", "run_measured_energy_share")}
CI_COLUMNS = tuple(f"{r}_ci_{end}" for r in bootstrap.RATIOS for end in ("low", "high"))
PHASE_LABELS = {"train": "training phase", "run": "whole run (training, evaluation and the rest)"}


def check_phase(phase: str) -> str:
    if phase not in PHASES:
        raise ValueError(f"GPS-UP phase must be one of {', '.join(PHASES)}, got {phase!r}")
    return phase


def _num(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _fill(out: pd.DataFrame, idx: object, g: GpsUp | None, is_baseline: bool) -> None:
    if g is None:
        return
    out.at[idx, "speedup"], out.at[idx, "powerup"], out.at[idx, "greenup"] = g.speedup, g.powerup, g.greenup
    if not is_baseline:
        out.at[idx, "gpsup_category"] = g.category


def _empty_columns(df: pd.DataFrame, phase: str) -> pd.DataFrame:
    out = df.copy()
    for col in ("speedup", "powerup", "greenup"):
        out[col] = float("nan")
    out["gpsup_category"] = pd.array([pd.NA] * len(out), dtype="Int64")
    out["gpsup_phase"] = phase
    out["gpsup_basis"] = None
    out["gpsup_note"] = None
    return out


def add_gpsup_columns(summary: pd.DataFrame, baseline: str, *, phase: str = "train", rel_tol: float = REL_TOL,
                      method_col: str = "method", env_col: str = "env", seed_col: str = "seed") -> pd.DataFrame:
    """Per run: GPS-UP of `phase` against the baseline method's run with the same env and seed.

    Empty (NaN / <NA>) where that baseline run is missing, either side has no positive time or
    energy, the pair did unequal training work or either run's meter coverage was partial (the
    last two say so in gpsup_note). gpsup_basis: measured, model or mixed (bench.metrics.basis)."""
    time_col, energy_col, share_col = PHASE_COLUMNS[check_phase(phase)]
    out = _empty_columns(summary, phase)
    if out.empty:
        return out
    base_rows = {(r[env_col], r[seed_col]): r for r in summary[summary[method_col] == baseline].to_dict("records")}
    for idx, row in summary.iterrows():
        b = base_rows.get((row[env_col], row[seed_col]))
        if b is None:
            continue
        why = partial_reason(row) or partial_reason(b) or work_mismatch(row, b, row[method_col], baseline)
        if why is not None:
            out.at[idx, "gpsup_note"] = why
            continue
        g = _gpsup_or_none(b.get(time_col), b.get(energy_col), row.get(time_col), row.get(energy_col), rel_tol)
        _fill(out, idx, g, row[method_col] == baseline)
        if g is not None:
            out.at[idx, "gpsup_basis"] = basis(_share(b, share_col), _share(row, share_col))
    return out


def _gpsup_or_none(base_time_s: Any, base_energy_j: Any, time_s: Any, energy_j: Any, rel_tol: float) -> GpsUp | None:
    try:
        return gpsup(float(base_time_s), float(base_energy_j), float(time_s), float(energy_j), rel_tol)
    except (TypeError, ValueError):
        return None


def batch_unit(row: Mapping[str, Any]) -> str:
    """What one measurement covered: the run's seed, or its seed batch ('0+1+2')."""
    unit = row.get("seed_batch_unit")
    if isinstance(unit, str) and unit.strip():
        return unit.strip()
    return str(row.get("seed"))


def _side(rows: list[dict[str, Any]], time_col: str, energy_col: str) -> bootstrap.Side:
    """Per unit (seed or seed batch) the mean of its rows: a batch's seeds share one measurement."""
    units: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        units.setdefault(batch_unit(r), []).append(r)
    keys = tuple(sorted(units))
    t = np.array([np.mean([float(r[time_col]) for r in units[k]]) for k in keys])
    e = np.array([np.mean([float(r[energy_col]) for r in units[k]]) for k in keys])
    return bootstrap.Side(keys, t, e)


def _share(row: Mapping[str, Any], share_col: str) -> float | None:
    """The row's recorded share, else one from its components' flags (folders from before it was recorded)."""
    recorded = _num(row.get(share_col))
    return recorded if recorded is not None else measured_energy_share(row)


def _side_share(rows: list[dict[str, Any]], share_col: str, energy_col: str) -> float | None:
    """The measured share of a side's mean energy (energy-weighted); None when any is unknown."""
    shares = [x for x in (_share(r, share_col) for r in rows) if x is not None]
    if not rows or len(shares) != len(rows):
        return None
    energy = [float(r[energy_col]) for r in rows]
    return float(np.dot(shares, energy) / sum(energy)) if sum(energy) > 0 else None


def _usable(rows: list[dict[str, Any]], time_col: str, energy_col: str) -> tuple[list[dict[str, Any]], list[str]]:
    """(rows with positive finite phase time and energy and full coverage, notes on the rest)."""
    ok, notes = [], []
    for r in rows:
        why = partial_reason(r)
        if why is not None:
            notes.append(f"{r.get('method')} seed {r.get('seed')} left out: {why}")
            continue
        t, e = _num(r.get(time_col)), _num(r.get(energy_col))
        if t is not None and e is not None and t > 0 and e > 0:
            ok.append(r)
    return ok, notes


def aggregate_gpsup(summary: pd.DataFrame, baseline: str, *, phase: str = "train", rel_tol: float = REL_TOL,
                    method_col: str = "method", env_col: str = "env", seed_col: str = "seed") -> pd.DataFrame:
    """One row per method × env: the phase's mean time and energy over seeds, GPS-UP of those means
    against the baseline's (ratio of means, not mean of ratios; greenup = speedup / powerup), its
    95 % bootstrap interval (bench.metrics.bootstrap), basis and note. The baseline row is exactly
    1, 1, 1 with no category. gpsup_time_s / gpsup_energy_j: the phase's means the ratios use;
    wall_s / energy_j: the whole run's means."""
    time_col, energy_col, share_col = PHASE_COLUMNS[check_phase(phase)]
    cols = [method_col, env_col, "n_seeds", "n_units", "wall_s", "energy_j", "gpsup_time_s", "gpsup_energy_j",
            "avg_power_w", "measured_energy_share", *GPSUP_COLUMNS, *CI_COLUMNS]
    if summary.empty:
        return pd.DataFrame(columns=cols)
    records = summary.to_dict("records")
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r[method_col], r[env_col]), []).append(r)
    rows = []
    for (method, env), runs in groups.items():
        usable, notes = _usable(runs, time_col, energy_col)
        bases, base_notes = _usable(groups.get((baseline, env), []), time_col, energy_col)
        rec: dict[str, Any] = {method_col: method, env_col: env, "n_seeds": len({r[seed_col] for r in runs}),
                               "n_units": len({batch_unit(r) for r in usable}),
                               "wall_s": _mean(runs, "wall_s"), "energy_j": _mean(runs, "energy_j"),
                               "gpsup_time_s": _mean(usable, time_col), "gpsup_energy_j": _mean(usable, energy_col),
                               "measured_energy_share": _side_share(usable, share_col, energy_col),
                               "speedup": float("nan"), "powerup": float("nan"), "greenup": float("nan"),
                               "gpsup_category": pd.NA, "gpsup_phase": phase, "gpsup_basis": None,
                               **{c: float("nan") for c in CI_COLUMNS}}
        if runs and not usable and not notes:
            notes.append(f"no positive {time_col} and {energy_col} recorded (a run folder from before phases were "
                         "kept: --gpsup-phase run compares the whole runs)")
        t, e = rec["gpsup_time_s"], rec["gpsup_energy_j"]
        rec["avg_power_w"] = e / t if t == t and t > 0 and e == e else float("nan")
        why = None if method == baseline else group_mismatch(usable, bases, method, baseline)
        if why is None and usable and bases:
            b_side, c_side = _side(bases, time_col, energy_col), _side(usable, time_col, energy_col)
            g = gpsup(float(b_side.time_s.mean()), float(b_side.energy_j.mean()), float(c_side.time_s.mean()),
                      float(c_side.energy_j.mean()), rel_tol) if method != baseline else GpsUp(1.0, 1.0, 1.0, 0)
            rec.update(speedup=g.speedup, powerup=g.powerup, greenup=g.greenup,
                       gpsup_category=g.category if method != baseline else pd.NA,
                       gpsup_basis=basis(_side_share(bases, share_col, energy_col), rec["measured_energy_share"]))
            ci = None if method == baseline else bootstrap.intervals(b_side, c_side)
            if ci is not None:
                rec.update({f"{r}_ci_{end}": v for r, (lo, hi) in ci.items() for end, v in (("low", lo), ("high", hi))})
            elif method != baseline:
                notes.append(f"one {'batch' if any('+' in k for k in c_side.keys + b_side.keys) else 'seed'} on a "
                             "side: no interval")
        elif why is not None:
            notes.append(why)
        if phase == "run" and method != baseline and eval_differs(runs, groups.get((baseline, env), [])):
            notes.append("evaluation settings differ from the baseline's: run-phase ratios include unequal evaluation")
        notes += [n for n in base_notes if method != baseline]
        rec["gpsup_note"] = "; ".join(dict.fromkeys(notes)) or None
        rows.append(rec)
    out = pd.DataFrame(rows, columns=cols)
    out["gpsup_category"] = out["gpsup_category"].astype("Int64")
    return out


def _mean(rows: list[dict[str, Any]], col: str) -> float:
    vals = [x for x in (_num(r.get(col)) for r in rows) if x is not None]
    return float(np.mean(vals)) if vals else float("nan")
