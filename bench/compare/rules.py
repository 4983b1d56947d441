"""The metrics `compare` checks and the parsed `--fail-on` rules that gate them.

A rule is METRIC:THRESHOLD, the threshold signed towards "worse" (or unsigned), in percent of
BASE or in the metric's own unit:

    sps:-10%               fail when env steps/s drop by more than 10 %
    energy_per_step:+10%   fail when energy per env step grows by more than 10 %
    avg_power:+15%         fail when average power grows by more than 15 %
    return:-20%            fail when the final return drops by more than 20 % of |BASE|
    return:-100            fail when the final return drops by more than 100

A metric fails only when the whole confidence interval of its change lies beyond the threshold
(the regression is larger than the threshold *and* than the noise); when the point estimate is
beyond the threshold but the interval reaches back inside, the comparison is "too noisy to
decide" and does not fail. With no noise estimate at all, the threshold alone decides
(as in pytest-benchmark's --benchmark-compare-fail).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum

from bench.schema import UNITS


class Better(str, Enum):
    HIGHER = "higher"
    LOWER = "lower"


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    unit: str
    better: Better
    windowed: bool
    """Estimated per progress window (a rate) rather than once per run."""

    def worse_by(self, change: float) -> float:
        """How much worse a signed change (NEW − BASE, relative or absolute) is: > 0 is worse."""
        return -change if self.better is Better.HIGHER else change


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("sps", "env steps/s", f"{UNITS['steps']}/{UNITS['wall_s']}", Better.HIGHER, True),
    Metric("energy_per_step", "energy per env step", f"{UNITS['energy_j']}/env step", Better.LOWER, True),
    Metric("avg_power", "average power", UNITS["avg_power_w"], Better.LOWER, True),
    Metric("return", "final return", "return", Better.HIGHER, False),  # unit: the env's reward
)}

DEFAULT_RULES_TEXT = "sps:-10%,energy_per_step:+10%"
"""Throughput and energy per step are what code changes move; 10 % catches `.ci/run`'s doctored
copy (-23 % steps/s, +30 % energy per step) with room and stays above timer and meter jitter
(docs/guides/ci-gate.md, for what a busy shared runner does to it). Final return
is compared and shown but not gated by default: at CI budgets it is close to an untrained
policy's (near zero for some methods, where a percentage means nothing), and for fixed code on
one machine training is deterministic."""


class RuleError(ValueError):
    """A --fail-on rule that does not parse."""


@dataclass(frozen=True)
class Rule:
    metric: Metric
    threshold: float
    """How much worse than BASE is allowed, > 0: a fraction (relative) or the metric's unit."""
    relative: bool

    def __str__(self) -> str:
        sign = "-" if self.metric.better is Better.HIGHER else "+"
        amount = f"{self.threshold * 100:g}%" if self.relative else f"{self.threshold:g}"
        return f"{self.metric.name}:{sign}{amount}"


_RULE = re.compile(r"^\s*([a-z_]+)\s*:\s*([+-]?)\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*(%?)\s*$", re.I)


def parse_rule(text: str) -> Rule:
    m = _RULE.match(text)
    if not m:
        raise RuleError(f"malformed rule {text!r}: use METRIC:-10% or METRIC:+10% (metrics: {', '.join(METRICS)})")
    name, sign, number, percent = m.groups()
    metric = METRICS.get(name.lower())
    if metric is None:
        raise RuleError(f"unknown metric {name!r} in {text!r}; metrics: {', '.join(METRICS)}")
    worse_sign = "-" if metric.better is Better.HIGHER else "+"
    if sign and sign != worse_sign:
        direction = "drop" if worse_sign == "-" else "rise"
        raise RuleError(f"{text!r}: {metric.name} is {metric.better.value}-is-better, so a regression is a "
                        f"{direction}: write {metric.name}:{worse_sign}{number}{percent}")
    value = float(number)
    if not (math.isfinite(value) and value > 0):
        raise RuleError(f"{text!r}: the threshold must be a positive number")
    return Rule(metric, value / 100 if percent else value, bool(percent))


def parse_rules(items: list[str] | tuple[str, ...]) -> tuple[Rule, ...]:
    """Rules from one or more comma-separated lists; "none" gates nothing (report only)."""
    texts = [t.strip() for item in items for t in item.split(",") if t.strip()]
    if [t.lower() for t in texts] == ["none"]:
        return ()
    rules: dict[str, Rule] = {}
    for text in texts:
        rule = parse_rule(text)
        if rule.metric.name in rules:
            raise RuleError(f"two rules for {rule.metric.name}: {rules[rule.metric.name]} and {text.strip()}")
        rules[rule.metric.name] = rule
    if not rules:
        raise RuleError("no rule given: use e.g. --fail-on sps:-10%, or --fail-on none")
    return tuple(rules.values())


DEFAULT_RULES = parse_rules([DEFAULT_RULES_TEXT])


class Verdict(str, Enum):
    OK = "ok"
    REGRESSION = "regression"
    TOO_NOISY = "too noisy to decide"
    NOT_GATED = "not gated"

    def __str__(self) -> str:
        return self.value


def judge(rule: Rule, change: float, ci: tuple[float, float] | None) -> Verdict:
    """The verdict of one rule on a change (relative or absolute, as the rule is) and its
    confidence interval (None: no noise estimate)."""
    if not math.isfinite(change):
        return Verdict.NOT_GATED  # nothing to compare with (e.g. BASE measured zero energy)
    if rule.metric.worse_by(change) <= rule.threshold:
        return Verdict.OK
    if ci is None:
        return Verdict.REGRESSION
    least_worse = min(rule.metric.worse_by(ci[0]), rule.metric.worse_by(ci[1]))
    return Verdict.REGRESSION if least_worse > rule.threshold else Verdict.TOO_NOISY
