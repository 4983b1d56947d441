"""Aggregates across tasks with rliable (Agarwal et al., NeurIPS 2021): normalised scores
(`reports.normalization`), then IQM, median, mean and optimality gap with stratified bootstrap
95 % CIs over all runs, performance profiles, and the probability of improvement of each method
over the baseline.

rliable wants one [runs × tasks] matrix per method: a method's runs on each env are its complete
seeds there, and when envs have different numbers of complete seeds the first n seeds of each env
are used (n = the smallest count), which is said in the note. With fewer than MIN_SEEDS seeds or
fewer than MIN_ENVS envs an aggregate across tasks is not meaningful: `CrossTask.meaningful` is
False, `reason` says why, and nothing is computed or drawn.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from reports.normalization import RANDOM_SOURCE, REFERENCE_SOURCE, normalizer

MIN_SEEDS = 3
MIN_ENVS = 2
REPS = 2000
"""Bootstrap replications (rliable's default is 50,000; 2,000 keeps a report build in seconds)."""
BOOTSTRAP_SEED = 0
TAUS = np.linspace(0.0, 1.25, 51)
"""Thresholds of the performance profiles, in normalised score."""
METRICS = ("IQM", "Median", "Mean", "Optimality gap")


@dataclass
class CrossTask:
    meaningful: bool
    reason: str
    """Why it is not meaningful ('' when it is)."""
    envs: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    runs: dict[str, int] = field(default_factory=dict)
    """Runs per env and method that enter the matrix."""
    constants: list[tuple[str, float, float]] = field(default_factory=list)
    """(env, R_random, R_reference) of every env of the run that has constants."""
    estimates: dict[str, dict[str, tuple[float, float, float]]] = field(default_factory=dict)
    """method -> metric -> (point, ci_low, ci_high), in normalised score."""
    profiles: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    """method -> (fraction of runs above tau, ci_low, ci_high) at TAUS."""
    improvement: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    """method -> P(method > baseline) with its CI (baseline left out)."""
    baseline: str = ""
    notes: list[str] = field(default_factory=list)
    taus: np.ndarray = field(default_factory=lambda: TAUS.copy())


def score_matrices(done: pd.DataFrame, envs: list[str], methods: list[str]) -> tuple[dict[str, np.ndarray], int]:
    """method -> [n × envs] normalised final returns of complete seeds (first n seeds per env)."""
    counts = {(m, e): int(((done["method"] == m) & (done["env"] == e)).sum()) for m in methods for e in envs}
    n = min(counts.values()) if counts else 0
    out = {}
    for m in methods:
        cols = []
        for e in envs:
            norm = normalizer(e)
            assert norm is not None, f"{e} has no normalisation constants: the caller passes usable envs only"
            rows = done[(done["method"] == m) & (done["env"] == e)].sort_values("seed")
            cols.append(np.array([norm(float(r)) for r in rows["final_return_mean"].to_numpy()[:n]]))
        out[m] = np.stack(cols, axis=1) if n else np.zeros((0, len(envs)))
    return out, n


def compute(seeds: pd.DataFrame, methods: list[str], envs: list[str], baseline: str,
            reps: int = REPS) -> CrossTask:
    """The cross-task aggregates of the complete seeds in `seeds`."""
    done = seeds[(seeds["status"] == "complete") & seeds["final_return_mean"].notna()]
    constants = [(e, c.random_return, c.reference_return) for e in envs if (c := normalizer(e)) is not None]
    without = [e for e in envs if normalizer(e) is None]
    ct = CrossTask(False, "", constants=constants, baseline=baseline)
    if without:
        ct.notes.append(f"No normalisation constants for {', '.join(without)}: left out of the aggregates.")
    usable = [e for e in envs if normalizer(e) is not None and (done["env"] == e).any()]
    present = [m for m in methods if all(((done["method"] == m) & (done["env"] == e)).any() for e in usable)]
    ct.envs, ct.methods = usable, present
    if len(usable) < MIN_ENVS:
        ct.reason = (f"{len(usable)} env{'s' if len(usable) != 1 else ''} with complete seeds: an aggregate "
                     f"across tasks needs at least {MIN_ENVS}, so it is not meaningful here (the per-env "
                     "tables hold each env's IQM).")
        return ct
    mats, n = score_matrices(done, usable, present)
    ct.runs = {m: n for m in present}
    if n < MIN_SEEDS:
        ct.reason = (f"{n} complete seed{'s' if n != 1 else ''} per method and env: an aggregate with "
                     f"bootstrap CIs needs at least {MIN_SEEDS}, so it is not meaningful here.")
        return ct
    try:
        from rliable import metrics
    except ImportError as exc:  # a declared dependency; say so rather than fail the whole report
        ct.reason = (f"rliable could not be imported ({exc}): install the project's dependencies "
                     "(pip install -e .).")
        return ct

    def all_metrics(x: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(x), metrics.aggregate_median(x), metrics.aggregate_mean(x),
                         metrics.aggregate_optimality_gap(x)])

    points, cis = interval_estimates(mats, all_metrics, reps)
    ct.estimates = {m: {name: (float(points[m][k]), float(cis[m][0][k]), float(cis[m][1][k]))
                        for k, name in enumerate(METRICS)} for m in present}

    def profile(x: np.ndarray) -> np.ndarray:  # rliable's score distribution: share of runs above tau
        return (x.reshape(-1, 1) > TAUS).mean(0)

    prof, prof_ci = interval_estimates(mats, profile, reps)
    ct.profiles = {m: (prof[m], prof_ci[m][0], prof_ci[m][1]) for m in present}
    if baseline in present:
        pairs = {m: [mats[m], mats[baseline]] for m in present if m != baseline}
        if pairs:
            p, p_ci = interval_estimates(pairs, probability_of_improvement, reps)
            p = {m: metrics.probability_of_improvement(*pair) for m, pair in pairs.items()}  # rliable's own
            ct.improvement = {m: (float(p[m]), *_low_high(p_ci[m])) for m in pairs}
    counts = sorted({int(((done["method"] == m) & (done["env"] == e)).sum()) for m in present for e in usable})
    if len(counts) > 1:
        ct.notes.append(f"Complete seeds per method and env range from {counts[0]} to {counts[-1]}: the first "
                        f"{n} seeds of each are used (rliable needs one runs × tasks matrix per method).")
    ct.meaningful = True
    return ct


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """rliable.metrics.probability_of_improvement, vectorised for the bootstrap (the same number:
    the Mann-Whitney U of 'x > y', ties counting one half, over n_x·n_y, averaged over tasks;
    a test checks equality). rliable calls scipy once per task and replicate, which made one
    report take a minute."""
    gt = (x[:, None, :] > y[None, :, :]).mean((0, 1))
    eq = (x[:, None, :] == y[None, :, :]).mean((0, 1))
    same = np.array([np.array_equal(x[:, k], y[:, k]) for k in range(x.shape[1])])
    return float(np.where(same, 0.5, gt + 0.5 * eq).mean())


def _bootstraps():  # noqa: ANN202
    """rliable's stratified bootstraps, constructed with a fixed seed.

    rliable 1.2 (its latest release) passes `random_state=` to arch's bootstrap, a keyword arch
    deprecated for `seed` (and removed in arch 8). These
    subclasses only construct the arch base with `seed=` and set the attributes rliable's own
    `__init__` sets; the resampling (`update_indices`: runs resampled within each task) and the
    metrics are rliable's."""
    from arch.bootstrap import IIDBootstrap, IndependentSamplesBootstrap
    from rliable import library as rly

    class Stratified(rly.StratifiedBootstrap):
        def __init__(self, *args: np.ndarray) -> None:
            IIDBootstrap.__init__(self, *args, seed=BOOTSTRAP_SEED)
            self._args_shape = args[0].shape
            self._num_tasks = self._args_shape[1]
            self._parameters = [self._num_tasks, False]
            self._task_bootstrap = False
            self._strata_indices = self._get_strata_indices()

    class StratifiedIndependent(rly.StratifiedIndependentBootstrap):
        def __init__(self, *args: np.ndarray) -> None:
            IndependentSamplesBootstrap.__init__(self, *args, seed=BOOTSTRAP_SEED)
            self._args_shapes = [arg.shape for arg in args]
            self._kwargs_shapes: dict[str, Any] = {}
            self._args_strata_indices = [self._get_strata_indices(shape) for shape in self._args_shapes]
            self._kwargs_strata_indices: dict[str, Any] = {}

    return Stratified, StratifiedIndependent


def _low_high(ci: np.ndarray) -> tuple[float, float]:
    """A scalar statistic's interval as rliable returns it ([2] or [2, 1])."""
    low, high = np.ravel(ci)
    return float(low), float(high)


def interval_estimates(score_dict: dict, func, reps: int):  # noqa: ANN001, ANN201
    """rliable.library.get_interval_estimates (percentile, 95 %), reproducibly: rliable resamples
    with NumPy's global RNG, which is seeded here and restored afterwards."""
    stratified, independent = _bootstraps()
    state = np.random.get_state()
    np.random.seed(BOOTSTRAP_SEED)
    try:
        points, intervals = {}, {}
        for key, scores in score_dict.items():
            if isinstance(scores, np.ndarray):
                bs, points[key] = stratified(scores), func(scores)
            else:
                bs, points[key] = independent(*scores), func(*scores)
            intervals[key] = bs.conf_int(func, reps=reps, size=0.95, method="percentile")
        return points, intervals
    finally:
        np.random.set_state(state)


def sources() -> str:
    return f"R_reference: {REFERENCE_SOURCE}. R_random: {RANDOM_SOURCE}."
