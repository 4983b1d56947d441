"""Whether a run's energy was measured or modelled, and whether its meters covered it.

measured share = energy of the components read from counters / the energy. A component counts as
measured when its `<c>_estimated` flag is false: NVML (its energy counter, or sampled power
integrated where the counter is unsupported: a measurement of the device, if a coarser one),
RAPL and amdsmi. Estimated components (CodeCarbon's TDP curve, its RAM model) are the model.

A pair's basis (DESIGN §5.7): both shares ≥ 0.9 → measured; both < 0.1 → model; else mixed.

Coverage (the meters' `<c>_coverage`, metered seconds / window seconds): a MEASURED component
below 0.99 makes the run partial, and a partial run is left out of GPS-UP. Where the columns are
absent or empty, coverage is not known and nothing is excluded.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from bench.energy.base import COMPONENTS
from bench.energy.coverage import PARTIAL_BELOW, is_partial

MEASURED_AT_LEAST = 0.9
MODEL_BELOW = 0.1


def finite_number(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _flag(v: Any) -> bool | None:
    """A bool read from result.json (true/false) or summary.csv ('True'/'False'); None when unreadable."""
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        return v.strip().lower() == "true"
    return None


def measured_energy_share(row: Mapping[str, Any]) -> float | None:
    """Counter energy / energy over the components (0-1); None when there is no energy, or a
    component's measured/estimated flag cannot be read."""
    total_j = counter_j = 0.0
    for c in COMPONENTS:
        e = finite_number(row.get(f"{c}_energy_j"))
        if e is None:
            continue
        if e < 0:
            return None
        est = _flag(row.get(f"{c}_estimated"))
        if est is None:
            return None
        total_j += e
        counter_j += 0.0 if est else e
    return counter_j / total_j if total_j > 0 else None


def basis(share_a: float | None, share_b: float | None) -> str | None:
    """'measured', 'model' or 'mixed' for a pair of shares; None when either is unknown."""
    if share_a is None or share_b is None:
        return None
    if share_a >= MEASURED_AT_LEAST and share_b >= MEASURED_AT_LEAST:
        return "measured"
    if share_a < MODEL_BELOW and share_b < MODEL_BELOW:
        return "model"
    return "mixed"


def partial_reason(row: Mapping[str, Any]) -> str | None:
    """Why a run's meters did not cover it (bench.energy.coverage's rule, on a row read from
    result.json or summary.csv), or None."""
    parsed = {k: f(row.get(k)) for c in COMPONENTS
              for k, f in ((f"{c}_coverage", finite_number), (f"{c}_estimated", _flag))}
    gaps = [f"{c} {parsed[f'{c}_coverage']:.0%}" for c in is_partial(parsed)]
    return f"partial meter coverage ({', '.join(gaps)} < {PARTIAL_BELOW:.0%})" if gaps else None

