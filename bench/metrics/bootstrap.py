"""95 % intervals of GPS-UP's ratios of means by a seeded bootstrap over seeds (scipy.stats.bootstrap,
percentile method, 2,000 resamples, seed 0): percentile rather than BCa because BCa's jackknife
is undefined or unstable with the 2-10 seeds a benchmark has.

The unit resampled is what was measured once: a seed, or a seed batch (K seeds trained in one
process share one energy measurement divided by K, so a batch is one unit, never K). Where both
sides have the same units (the same seeds, or batches of the same seeds) they are resampled as
pairs; otherwise each side on its own. Fewer than 2 units on either side: no interval.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

N_RESAMPLES = 2000
SEED = 0
CONFIDENCE = 0.95
RATIOS = ("speedup", "powerup", "greenup")


@dataclass(frozen=True)
class Side:
    """One method's units: their keys (seed or batch) and phase time and energy, aligned."""

    keys: tuple[str, ...]
    time_s: np.ndarray
    energy_j: np.ndarray


def ratios_of_means(base_t: np.ndarray, base_e: np.ndarray, t: np.ndarray, e: np.ndarray) -> tuple[float, float, float]:
    """(speedup, powerup, greenup) of the means; greenup = speedup / powerup."""
    speedup = base_t.mean() / t.mean()
    powerup = (e.mean() / t.mean()) / (base_e.mean() / base_t.mean())
    return speedup, powerup, speedup / powerup


def intervals(base: Side, cand: Side, n_resamples: int = N_RESAMPLES, seed: int = SEED
              ) -> dict[str, tuple[float, float]] | None:
    """{ratio: (low, high)} of the 95 % percentile bootstrap, or None with fewer than 2 units a side."""
    if len(base.keys) < 2 or len(cand.keys) < 2:
        return None
    paired = sorted(base.keys) == sorted(cand.keys)
    out = {}
    order_b = np.argsort(base.keys)  # paired: the i-th unit of each side is the same seed or batch
    order_c = np.argsort(cand.keys)
    for k, name in enumerate(RATIOS):
        if paired:
            def stat(idx: np.ndarray, k: int = k) -> float:
                i = idx.astype(int)
                b, c = order_b[i], order_c[i]
                return ratios_of_means(base.time_s[b], base.energy_j[b], cand.time_s[c], cand.energy_j[c])[k]

            data: Sequence[np.ndarray] = (np.arange(len(base.keys), dtype=float),)
        else:
            def stat(ib: np.ndarray, ic: np.ndarray, k: int = k) -> float:  # type: ignore[misc]
                b, c = ib.astype(int), ic.astype(int)
                return ratios_of_means(base.time_s[b], base.energy_j[b], cand.time_s[c], cand.energy_j[c])[k]

            data = (np.arange(len(base.keys), dtype=float), np.arange(len(cand.keys), dtype=float))
        res = stats.bootstrap(data, stat, n_resamples=n_resamples, confidence_level=CONFIDENCE, method="percentile",
                              vectorized=False, paired=paired, random_state=np.random.default_rng(seed))
        out[name] = (float(res.confidence_interval.low), float(res.confidence_interval.high))
    return out
