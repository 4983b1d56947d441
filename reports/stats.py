"""Statistics over seeds: mean ± std, IQM with a 95 % bootstrap CI, and curves over seeds.

IQM (interquartile mean) is `scipy.stats.trim_mean(x, 0.25)`: the mean of the middle 50 %.
With fewer than 4 seeds it trims nothing and equals the mean. The confidence interval is a
percentile bootstrap of the IQM (`scipy.stats.bootstrap(..., method='percentile')`, as rliable
does): BCa needs more samples than a seed sweep usually has. One seed gives no interval.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

IQM_PROPORTION = 0.25
CONFIDENCE = 0.95
N_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class SeedStats:
    """Summary of one metric over seeds. NaN where a value does not exist."""

    n: int
    mean: float
    std: float
    """Sample standard deviation (ddof=1); NaN with one seed."""
    iqm: float
    ci_low: float
    ci_high: float
    note: str
    """Why there is no interval ('1 seed: no CI'), or '' when there is one."""

    @property
    def has_ci(self) -> bool:
        return not (math.isnan(self.ci_low) or math.isnan(self.ci_high))


def _iqm(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return sps.trim_mean(x, IQM_PROPORTION, axis=axis)


def describe(values: Iterable[float], *, confidence: float = CONFIDENCE,
             n_resamples: int = N_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> SeedStats:
    """Mean, std, IQM and a bootstrap CI of the IQM over finite `values` (NaNs dropped)."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    nan = float("nan")
    if n == 0:
        return SeedStats(0, nan, nan, nan, nan, nan, "no finished seed")
    mean = float(np.mean(x))
    iqm = float(_iqm(x))
    if n == 1:
        return SeedStats(1, mean, nan, iqm, nan, nan, "1 seed: no CI")
    std = float(np.std(x, ddof=1))
    if float(np.ptp(x)) == 0.0:
        return SeedStats(n, mean, std, iqm, float(x[0]), float(x[0]), "all seeds equal")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sps.bootstrap((x,), _iqm, n_resamples=n_resamples, confidence_level=confidence,
                            method="percentile", vectorized=True,
                            rng=np.random.default_rng(seed))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    note = "" if n >= 3 else f"{n} seeds: CI is crude"
    return SeedStats(n, mean, std, iqm, lo, hi, note)


def curve_over_seeds(frames: Sequence[pd.DataFrame], x: str, y: str = "return_mean",
                     step: str = "step") -> pd.DataFrame:
    """Mean and spread of `y` (and mean of `x`) over seeds, at each logged `step`.

    Seeds are aligned on the step column (evaluations happen at the same env steps in every
    seed); each row averages the seeds that reached that step, and `n` says how many did.
    Columns: step, x_mean, y_mean, y_std (0 where n == 1), y_min, y_max, n.
    """
    parts = []
    for i, f in enumerate(frames):
        if f is None or f.empty or x not in f.columns or y not in f.columns:
            continue
        part = f[[step, x, y]].copy() if x != step else f[[step, y]].copy()
        part = part.dropna()
        part["_seed"] = i
        parts.append(part)
    cols = ["step", "x_mean", "y_mean", "y_std", "y_min", "y_max", "n"]
    if not parts:
        return pd.DataFrame(columns=cols)
    df = pd.concat(parts, ignore_index=True)
    g = df.groupby(step, sort=True)
    out = pd.DataFrame({
        "step": g[y].mean().index.to_numpy(dtype=float),
        "x_mean": (g[x].mean() if x != step else g[y].mean().index.to_series()).to_numpy(dtype=float),
        "y_mean": g[y].mean().to_numpy(dtype=float),
        "y_std": g[y].std(ddof=1).fillna(0.0).to_numpy(dtype=float),
        "y_min": g[y].min().to_numpy(dtype=float),
        "y_max": g[y].max().to_numpy(dtype=float),
        "n": g["_seed"].nunique().to_numpy(dtype=int),
    })
    return out[cols]


def bin_mean(t: np.ndarray, v: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Average a long trace into at most `max_points` equal-count bins (keeps the shape honest)."""
    t = np.asarray(t, dtype=float)
    v = np.asarray(v, dtype=float)
    if t.size <= max_points:
        return t, v
    edges = np.linspace(0, t.size, max_points + 1).astype(int)
    tb = np.add.reduceat(t, edges[:-1]) / np.diff(edges)
    vb = np.add.reduceat(v, edges[:-1]) / np.diff(edges)
    return tb, vb


def spread(values: Iterable[float]) -> tuple[float, float, int]:
    """(min, max, n) of the finite values; NaNs when there are none."""
    x = np.asarray(list(values), dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan"), 0
    return float(x.min()), float(x.max()), int(x.size)
