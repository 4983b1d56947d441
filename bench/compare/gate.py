"""Pair BASE's and NEW's runs, estimate every metric's change with its noise, apply the rules.

Rows: one per method × env × seed present in both sides, and, where a method × env has several
seeds, one pooled row over them (seeds are repeats: hierarchical bootstrap). The gate decides on
the pooled row (or the only seed's row); per-seed rows are shown for information. A run that is
complete in BASE but not in NEW fails the gate too (the new code did not finish it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from bench import schema
from bench.compare import noise
from bench.compare.load import AVG_POWER_W, FINAL_RETURN, STEPS, RunData, RunKey, Side, column
from bench.compare.rules import METRICS, Metric, Rule, Verdict, judge
from bench.metrics.gpsup import PHASE_COLUMNS, REL_TOL, GpsUp, check_phase, gpsup
from bench.metrics.work import work_mismatch
from bench.run.plan import UsageError
from bench.schema import SEED_DIR_PREFIX, Status

WALL_S, ENERGY_J = (column(schema.RESULT_COLUMNS, c) for c in ("wall_s", "energy_j"))


FOREIGN_CPU_SHARE = "foreign_cpu_share"
"""bench.schema's field (0..1): the share of the run's CPU time other processes used. Read only
where present (run folders from before it was recorded lack it)."""
MAX_FOREIGN_SHARE_DIFF = 0.10
"""Runs whose foreign CPU shares differ by more than this ran on differently busy machines: a
timing or energy change beyond the threshold is then too noisy to decide, not a regression."""


@dataclass(frozen=True)
class Check:
    metric: Metric
    estimate: noise.Estimate | None
    rule: Rule | None
    verdict: Verdict
    reason: str = ""
    """Why a verdict was held back (e.g. the machine was busier on one side)."""

    @property
    def relative(self) -> bool:
        return self.rule.relative if self.rule is not None else self.metric.name != "return"

    @property
    def change(self) -> float:
        return self.estimate.change(self.relative) if self.estimate is not None else math.nan

    @property
    def change_ci(self) -> tuple[float, float] | None:
        return self.estimate.change_ci(self.relative) if self.estimate is not None else None

    @property
    def mark(self) -> str:
        """▲ better or ▼ worse beyond the noise (and beyond GPS-UP's 1 % "= 1" band); else ''."""
        c, ci = self.change, self.change_ci
        if not math.isfinite(c) or c == 0 or (self.relative and abs(c) <= REL_TOL):
            return ""
        if ci is not None and (ci[0] <= 0 <= ci[1]):
            return ""
        return "▼" if self.metric.worse_by(c) > 0 else "▲"


@dataclass(frozen=True)
class Row:
    method: str
    env: str
    seeds: tuple[int, ...]
    gated: bool
    checks: tuple[Check, ...]

    @property
    def label(self) -> str:
        if len(self.seeds) == 1:
            return f"{self.method} {self.env} {SEED_DIR_PREFIX}{self.seeds[0]}"
        return f"{self.method} {self.env} {len(self.seeds)} seeds"


@dataclass(frozen=True)
class GpsRow:
    method: str
    env: str
    n_seeds: int
    value: GpsUp | None


@dataclass(frozen=True)
class Report:
    base: Side
    new: Side
    rules: tuple[Rule, ...]
    confidence: float
    rows: tuple[Row, ...]
    gpsup: tuple[GpsRow, ...]
    failed_runs: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    config_diffs: tuple[str, ...] = ()
    gpsup_phase: str = "train"

    def gated_checks(self, verdict: Verdict) -> list[tuple[Row, Check]]:
        return [(r, c) for r in self.rows if r.gated for c in r.checks if c.verdict is verdict]

    @property
    def regressions(self) -> list[tuple[Row, Check]]:
        return self.gated_checks(Verdict.REGRESSION)

    @property
    def too_noisy(self) -> list[tuple[Row, Check]]:
        return self.gated_checks(Verdict.TOO_NOISY)

    @property
    def regressed_metrics(self) -> list[str]:
        return list(dict.fromkeys(c.metric.name for _, c in self.regressions))

    @property
    def exit_code(self) -> int:
        return 1 if self.regressions or self.failed_runs else 0


# ----------------------------------------------------------------------------- per-run values

def whole_run(run: RunData, metric: str) -> float:
    """A metric from a run's totals (used where a side has no progress windows)."""
    steps, wall, energy = run.number(STEPS), run.number(WALL_S), run.number(ENERGY_J)
    if metric == "sps":
        return steps / wall if wall > 0 else math.nan
    if metric == "energy_per_step":
        return energy / steps if steps > 0 else math.nan
    if metric == "avg_power":
        power = run.number(AVG_POWER_W)
        return power if math.isfinite(power) else (energy / wall if wall > 0 else math.nan)
    return run.number(FINAL_RETURN)


def _windows(runs: list[RunData], name: str) -> list[noise.Unit] | None:
    """Each run's per-window values of the metric `name`; None unless every run has some."""
    out = []
    for r in runs:
        values = r.windows.of(name) if r.windows is not None else None
        if not values:
            return None
        out.append(values)
    return out


def _estimate(metric: Metric, base: list[RunData], new: list[RunData], confidence: float) -> noise.Estimate | None:
    ids_b = [r.key[2] for r in base]
    ids_n = [r.key[2] for r in new]
    if metric.windowed:
        windows_b, windows_n = _windows(base, metric.name), _windows(new, metric.name)
        if windows_b is not None and windows_n is not None:
            return noise.estimate_windowed(windows_b, windows_n, ids_b, ids_n, confidence=confidence)
    spread = None
    if metric.name == "return" and len(base) == 1 and len(new) == 1 \
            and base[0].last_eval_spread and new[0].last_eval_spread:
        spread = (base[0].last_eval_spread, new[0].last_eval_spread)
    return noise.estimate_totals([whole_run(r, metric.name) for r in base], [whole_run(r, metric.name) for r in new],
                                 ids_b, ids_n, use_mean=metric.name == "return", spread=spread,
                                 confidence=confidence)


def _foreign_share(runs: list[RunData]) -> float:
    shares = [r.number(FOREIGN_CPU_SHARE) for r in runs]
    shares = [x for x in shares if 0 <= x <= 1]
    return max(shares) if shares else math.nan


def _busier_machine(base: list[RunData], new: list[RunData]) -> str:
    """Why timings of these runs cannot be compared ('' when they can, or nobody measured)."""
    b, n = _foreign_share(base), _foreign_share(new)
    if math.isnan(b) or math.isnan(n) or abs(n - b) <= MAX_FOREIGN_SHARE_DIFF:
        return ""
    return f"other processes used {b:.0%} of the CPU during BASE and {n:.0%} during NEW"


def _row(method: str, env: str, base: list[RunData], new: list[RunData], rules: dict[str, Rule], gated: bool,
         confidence: float) -> Row:
    checks = []
    busy = _busier_machine(base, new)
    for metric in METRICS.values():
        est = _estimate(metric, base, new, confidence)
        rule = rules.get(metric.name)
        reason = ""
        if rule is None or est is None:
            verdict = Verdict.NOT_GATED
        else:
            verdict = judge(rule, est.change(rule.relative), est.change_ci(rule.relative))
            if verdict is Verdict.REGRESSION and metric.windowed and busy:
                verdict, reason = Verdict.TOO_NOISY, busy
        checks.append(Check(metric, est, rule, verdict, reason))
    seeds = tuple(dict.fromkeys(r.key[2] for r in base))
    return Row(method, env, seeds, gated, tuple(checks))


def _gps_row(method: str, env: str, base: list[RunData], new: list[RunData], phase: str = "train") -> GpsRow:
    """NEW against BASE: GPS-UP of the phase's seed means (ratio of means, as the report)."""
    time_col, energy_col, _ = PHASE_COLUMNS[phase]

    def mean(runs: list[RunData], name: str) -> float:
        vals = [r.number(name) for r in runs]
        return sum(vals) / len(vals) if vals else math.nan
    try:
        value = gpsup(mean(base, time_col), mean(base, energy_col), mean(new, time_col), mean(new, energy_col))
    except ValueError:  # also a side recorded before phases (no train_wall_s): --gpsup-phase run compares it
        value = None
    return GpsRow(method, env, len({r.key[2] for r in base}), value)


def _check_equal_work(paired: dict[tuple[str, str], dict[int, tuple[list[RunData], list[RunData]]]]) -> None:
    """GPS-UP compares the same training work: refuse NEW runs that trained differently from BASE's."""
    for (method, env), seeds in paired.items():
        for seed, (b, n) in seeds.items():
            for rb in b:
                for rn in n:
                    why = work_mismatch(rn.record, rb.record, "NEW", "BASE", base_word="")
                    if why is not None:
                        raise UsageError(f"{_where((method, env, seed))}: {why}")


def _where(key: RunKey) -> str:
    return f"{key[0]}/{key[1]}/{SEED_DIR_PREFIX}{key[2]}"


def compare(base: Side, new: Side, rules: tuple[Rule, ...], *, confidence: float = noise.CONFIDENCE,
            config_diffs: tuple[str, ...] = (), gpsup_phase: str = "train") -> Report:
    """The comparison of NEW against BASE. UsageError when no run is complete on both sides, or a
    pair did unequal training work (bench.metrics.work). GPS-UP of `gpsup_phase` (train or run)."""
    check_phase(gpsup_phase)
    by_metric = {r.metric.name: r for r in rules}
    notes: list[str] = []
    failed: list[str] = []
    paired: dict[tuple[str, str], dict[int, tuple[list[RunData], list[RunData]]]] = {}
    for key in sorted(set(base.runs) | set(new.runs)):
        b_runs, n_runs = base.runs.get(key, []), new.runs.get(key, [])
        if not b_runs or not n_runs:
            notes.append(f"{_where(key)} is only in {'BASE' if b_runs else 'NEW'}: not compared")
            continue
        b_ok, n_ok = [r for r in b_runs if r.complete], [r for r in n_runs if r.complete]
        if not b_ok:
            notes.append(f"{_where(key)} is {b_runs[0].status} in BASE: not compared")
            continue
        if len(n_ok) < len(n_runs):
            bad = next(r for r in n_runs if not r.complete)
            err = bad.record.get("error")
            failed.append(f"{_where(key)} is {bad.status} in NEW" + (f" ({str(err)[:120]})" if err else "")
                          + f" but {Status.COMPLETE.value} in BASE")
            if not n_ok:
                continue
        paired.setdefault((key[0], key[1]), {})[key[2]] = (b_ok, n_ok)
    if not paired and not failed:
        raise UsageError(f"nothing to compare: no method x env x seed is {Status.COMPLETE.value} in both "
                         f"{base.path} and {new.path}")
    _check_equal_work(paired)
    rows: list[Row] = []
    gps: list[GpsRow] = []
    for (method, env), seeds in paired.items():
        several = len(seeds) > 1
        for b, n in seeds.values():
            rows.append(_row(method, env, b, n, by_metric, not several, confidence))
        all_b = [r for b, _ in seeds.values() for r in b]
        all_n = [r for _, n in seeds.values() for r in n]
        if several:
            rows.append(_row(method, env, all_b, all_n, by_metric, True, confidence))
        gps.append(_gps_row(method, env, all_b, all_n, gpsup_phase))
    return Report(base, new, rules, confidence, tuple(rows), tuple(gps), tuple(failed),
                  tuple(notes) + base.warnings + new.warnings, config_diffs, gpsup_phase)
