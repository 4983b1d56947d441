"""Equal work: GPS-UP compares two implementations doing the same training work (Abdulsalam et
al. 2015), so a run is paired with its baseline only when both trained the same env for the same
global env steps (`steps`, the global budget of a multi-rank run too), the same TD3 updates and
the same batch size. Evaluation settings change only run-phase GPS-UP.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from bench.metrics.basis import finite_number

TRAINING_WORK = (("steps", "trained {} steps"), ("updates", "made {} updates"), ("batch_size", "used batch size {}"))
EVAL_SETTINGS = ("eval_every", "eval_episodes")


def _int(v: Any) -> int | None:
    x = finite_number(v)
    return int(x) if x is not None and x == int(x) else None


def work_mismatch(run: Mapping[str, Any], base: Mapping[str, Any], method: str, baseline: str,
                  base_word: str = "baseline ") -> str | None:
    """'not comparable: mlp trained 900 steps, baseline popsan 600', or None when the two did the
    same training work (a quantity one side does not record is not compared)."""
    for col, what in TRAINING_WORK:
        a, b = _int(run.get(col)), _int(base.get(col))
        if a is not None and b is not None and a != b:
            return f"not comparable: {method} {what.format(a)}, {base_word}{baseline} {b}"
    return None


def group_mismatch(runs: Iterable[Mapping[str, Any]], bases: Iterable[Mapping[str, Any]], method: str,
                   baseline: str) -> str | None:
    """The first unequal pair between a method's runs and the baseline's (every pair must match)."""
    bases = list(bases)
    for r in runs:
        for b in bases:
            why = work_mismatch(r, b, method, baseline)
            if why is not None:
                return why
    return None


def eval_differs(runs: Iterable[Mapping[str, Any]], bases: Iterable[Mapping[str, Any]]) -> bool:
    """Whether the two sides evaluated differently (eval_every or eval_episodes)."""
    seen = {col: {_int(r.get(col)) for r in [*runs, *bases]} - {None} for col in EVAL_SETTINGS}
    return any(len(v) > 1 for v in seen.values())
