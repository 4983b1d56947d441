"""How much of a change is noise: bootstrap confidence intervals for NEW against BASE.

Rates (env steps/s, energy per step, average power) are measured once per progress window, so
one run already holds many samples of them. A side's value is the median over its windows
(pooled over repeats); the change is the ratio of NEW's median to BASE's; its confidence
interval is a percentile bootstrap of that ratio of medians.

The bootstrap is hierarchical when a side has repeats (several seeds of one method and env, or
the same run more than once): each replicate first draws repeats with replacement, then windows
within each drawn repeat, so the interval covers both run-to-run and window-to-window spread.
It is paired where the data allow: repeats with the same seed are drawn together, and windows
with the same step range are drawn together (same config, so the same work: evaluation, warm-up
and learning-phase effects cancel). Otherwise the two sides are drawn independently.

Final return has one value per run: the change is the difference of the means over repeats,
with a paired bootstrap over repeats when there are at least two, else a normal interval from
the last evaluation's episode spread, else none.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Hashable, Sequence

import numpy as np

MIN_WINDOWS = 3
"""Fewer training-phase windows than this in any repeat: no per-window noise estimate."""
N_BOOT = 2000
CONFIDENCE = 0.95
SEED = 20_241_130  # fixed: the same inputs give the same intervals, so a gate never flips on a rerun


@dataclass(frozen=True)
class Estimate:
    """BASE and NEW values of one metric and the change between them."""

    base: float
    new: float
    ratio: float
    """NEW / BASE (NaN when BASE is not positive)."""
    diff: float
    """NEW − BASE."""
    ratio_ci: tuple[float, float] | None = None
    diff_ci: tuple[float, float] | None = None
    new_ci: tuple[float, float] | None = None
    """NEW's own interval, for the benchmark charts' range."""
    noise: str = "none"
    """Where the interval comes from: windows, windows+repeats, repeats, episodes or none."""
    samples: str = ""
    """How many windows / repeats each side had, for the table."""

    def change(self, relative: bool) -> float:
        """Relative change (ratio − 1, or diff / |BASE| where ratios are meaningless) or absolute."""
        if not relative:
            return self.diff
        return self.ratio - 1 if self.ratio == self.ratio else _rel(self.diff, self.base)

    def change_ci(self, relative: bool) -> tuple[float, float] | None:
        if not relative:
            return self.diff_ci
        if self.ratio_ci is not None:
            return self.ratio_ci[0] - 1, self.ratio_ci[1] - 1
        if self.diff_ci is not None and self.base != 0 and math.isfinite(self.base):
            return self.diff_ci[0] / abs(self.base), self.diff_ci[1] / abs(self.base)
        return None


def _rel(diff: float, base: float) -> float:
    return diff / abs(base) if base != 0 and math.isfinite(base) else math.nan


def _ratio(new: float, base: float) -> float:
    return new / base if base > 0 else math.nan


def _percentile_ci(values: np.ndarray, confidence: float) -> tuple[float, float] | None:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    a = (1 - confidence) / 2
    lo, hi = np.quantile(values, [a, 1 - a])
    return float(lo), float(hi)


Unit = dict  # window key -> value, for one repeat


def _padded(units: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Repeats as rows of one matrix, padded with NaN, and each row's length."""
    lengths = np.array([u.size for u in units])
    m = np.full((len(units), int(lengths.max())), np.nan)
    for i, u in enumerate(units):
        m[i, :u.size] = u
    return m, lengths


class _Resampler:
    """Bootstrap replicates of the pooled median of each side, all replicates at once
    (see the module docstring for what is drawn together)."""

    CHUNK = 2_000_000  # values drawn per block of replicates, to bound memory

    def __init__(self, base: Sequence[Unit], new: Sequence[Unit], paired: bool):
        self.paired = paired
        if paired:  # rows aligned window by window
            keys = [sorted(set(ub) & set(un)) for ub, un in zip(base, new, strict=True)]
            self.base = _padded([np.array([ub[k] for k in ks]) for ub, ks in zip(base, keys, strict=True)])
            self.new = _padded([np.array([un[k] for k in ks]) for un, ks in zip(new, keys, strict=True)])
        else:
            self.base = _padded([np.fromiter(u.values(), float) for u in base])
            self.new = _padded([np.fromiter(u.values(), float) for u in new])

    @classmethod
    def _draw(cls, side: tuple[np.ndarray, np.ndarray], n: int, rng: np.random.Generator,
              others: tuple[np.ndarray, ...] = ()) -> list[np.ndarray]:
        """Medians of n replicates of `side` (and of `others`, drawn with the same indices)."""
        m, lengths = side
        reps, width = m.shape
        out: list[list[np.ndarray]] = [[] for _ in range(1 + len(others))]
        step = max(1, cls.CHUNK // (reps * width))
        for start in range(0, n, step):
            b = min(step, n - start)
            pick = rng.integers(0, reps, (b, reps))                      # repeats, with replacement
            k = lengths[pick][..., None]
            idx = (rng.random((b, reps, width)) * k).astype(int)         # windows within each
            idx = np.minimum(idx, k - 1)
            valid = np.arange(width) < k
            for j, mat in enumerate((m, *others)):
                vals = np.where(valid, mat[pick[..., None], idx], np.nan).reshape(b, -1)
                out[j].append(np.nanmedian(vals, axis=1))
        return [np.concatenate(o) for o in out]

    def medians(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if self.paired:
            mb, mn = self._draw(self.base, n, rng, others=(self.new[0],))
            return mb, mn
        return self._draw(self.base, n, rng)[0], self._draw(self.new, n, rng)[0]

    def new_medians(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self._draw(self.new, n, rng)[0]


def estimate_windowed(base: Sequence[Unit], new: Sequence[Unit], base_ids: Sequence[Hashable] | None = None,
                      new_ids: Sequence[Hashable] | None = None, *, n_boot: int = N_BOOT,
                      confidence: float = CONFIDENCE, seed: int = SEED) -> Estimate | None:
    """Ratio of medians of per-window rates with its bootstrap interval. `base` and `new` hold
    one dict (window -> rate) per repeat; repeats are paired when their ids match one to one.
    None when a side has no windows at all."""
    base = [u for u in base if u]
    new = [u for u in new if u]
    if not base or not new:
        return None
    pooled_b = np.concatenate([np.fromiter(u.values(), float) for u in base])
    pooled_n = np.concatenate([np.fromiter(u.values(), float) for u in new])
    mb, mn = float(np.median(pooled_b)), float(np.median(pooled_n))
    enough = all(len(u) >= MIN_WINDOWS for u in (*base, *new))
    samples = f"{pooled_b.size}/{pooled_n.size} windows" + (f", {len(base)}/{len(new)} repeats"
                                                             if max(len(base), len(new)) > 1 else "")
    if not enough:
        return Estimate(mb, mn, _ratio(mn, mb), mn - mb, noise="none", samples=samples)
    # paired only while the ids still name the units one to one (an empty unit dropped above breaks that)
    paired = base_ids is not None and new_ids is not None and list(base_ids) == list(new_ids) \
        and len(set(base_ids)) == len(base_ids) and len(base) == len(base_ids) and len(new) == len(new_ids) \
        and all(len(set(ub) & set(un)) >= MIN_WINDOWS for ub, un in zip(base, new, strict=True))
    rng = np.random.default_rng(seed)
    draws = _Resampler(base, new, paired)
    med_b, med_n = draws.medians(n_boot, rng)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(med_b > 0, med_n / med_b, np.nan)
    diffs = med_n - med_b
    news = draws.new_medians(n_boot, rng)
    repeats = len(base) > 1 or len(new) > 1
    return Estimate(mb, mn, _ratio(mn, mb), mn - mb, _percentile_ci(ratios, confidence),
                    _percentile_ci(diffs, confidence), _percentile_ci(news, confidence),
                    "windows+repeats" if repeats else "windows", samples)


def estimate_totals(base: Sequence[float], new: Sequence[float], base_ids: Sequence[Hashable] | None = None,
                    new_ids: Sequence[Hashable] | None = None, *, use_mean: bool = False,
                    spread: tuple[tuple[float, int], tuple[float, int]] | None = None, n_boot: int = N_BOOT,
                    confidence: float = CONFIDENCE, seed: int = SEED) -> Estimate | None:
    """One value per repeat (a whole run's rate, or its final return): median (or mean) over
    repeats, with a bootstrap over repeats when each side has at least two. With a single run
    per side, `spread` ((std, n) of BASE's and NEW's last evaluation) gives a normal interval
    of the difference when both have two or more episodes."""
    b = np.array([x for x in base if math.isfinite(x)], float)
    n = np.array([x for x in new if math.isfinite(x)], float)
    if b.size == 0 or n.size == 0:
        return None
    stat = np.mean if use_mean else np.median
    vb, vn = float(stat(b)), float(stat(n))
    samples = f"{b.size}/{n.size} runs"
    if b.size >= 2 and n.size >= 2:
        paired = base_ids is not None and new_ids is not None and list(base_ids) == list(new_ids) \
            and b.size == len(base_ids) and n.size == len(new_ids)
        rng = np.random.default_rng(seed)
        ib = rng.integers(0, b.size, (n_boot, b.size))
        in_ = ib if paired else rng.integers(0, n.size, (n_boot, n.size))
        sb, sn = stat(b[ib], axis=1), stat(n[in_], axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = np.where(sb > 0, sn / sb, np.nan)
        own = stat(n[rng.integers(0, n.size, (n_boot, n.size))], axis=1)
        return Estimate(vb, vn, _ratio(vn, vb), vn - vb, None if use_mean else _percentile_ci(ratios, confidence),
                        _percentile_ci(sn - sb, confidence), _percentile_ci(own, confidence), "repeats", samples)
    if spread is not None and b.size == 1 and n.size == 1:
        (sd_b, k_b), (sd_n, k_n) = spread
        if k_b >= 2 and k_n >= 2:
            z = NormalDist().inv_cdf(0.5 + confidence / 2)
            se = math.sqrt(sd_b ** 2 / k_b + sd_n ** 2 / k_n)
            d = vn - vb
            own = z * sd_n / math.sqrt(k_n)
            return Estimate(vb, vn, _ratio(vn, vb), d, None, (d - z * se, d + z * se), (vn - own, vn + own),
                            "episodes", f"{k_b}/{k_n} episodes")
    return Estimate(vb, vn, _ratio(vn, vb), vn - vb, samples=samples)
