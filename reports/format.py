"""Numbers and units for display: values are stored in base units (J, s, W, kg) and scaled only
here, with the unit in the column header or axis label. A missing number is '—', never 0."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Iterable

from bench.schema import SEED_DIR_PREFIX

DASH = "—"
EST_MARK = "†"
SEED_FILES = f"<method>/<env>/{SEED_DIR_PREFIX}<k>/"
"""How source lines name a seed folder's files."""


def finite(v: Any) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def fmt_num(v: Any, sig: int = 3) -> str:
    """A number for display: thousands separators, `sig` significant digits, '—' if missing."""
    if not finite(v):
        return DASH
    x = float(v)
    if x == 0:
        return "0"
    ax = abs(x)
    if ax >= 10 ** (sig - 1) or (x.is_integer() and ax < 1e15):
        return f"{x:,.0f}"
    if ax < 1e-3:
        return f"{x:.{sig - 1}e}"
    decimals = max(0, sig - 1 - int(math.floor(math.log10(ax))))
    return f"{x:,.{decimals}f}"


def fmt_ratio(v: Any) -> str:
    return DASH if not finite(v) else f"{float(v):.2f}×"


@dataclass(frozen=True)
class Unit:
    label: str
    scale: float
    """Divide base-unit values by this to display them."""


ENERGY_UNITS = [("J", 1.0), ("kJ", 1e3), ("MJ", 1e6), ("GJ", 1e9)]
MASS_UNITS = [("mg CO₂e", 1e-6), ("g CO₂e", 1e-3), ("kg CO₂e", 1.0), ("t CO₂e", 1e3)]
POWER_UNITS = [("W", 1.0), ("kW", 1e3)]
INFERENCE_ENERGY_UNITS = [("pJ", 1e-12), ("nJ", 1e-9), ("µJ", 1e-6), ("mJ", 1e-3), ("J", 1.0)]
EQUIVALENT_UNITS = {
    # bench's equivalent columns are in miles, hours and percent; each is shown in the largest
    # unit in which the largest value is >= 1, so no column needs scientific notation.
    "car_miles": [("m", 1 / 1609.344), ("km", 1 / 1.609344), ("miles", 1.0)],
    "tv_hours": [("s", 1 / 3600), ("min", 1 / 60), ("h", 1.0)],
    "household_week_pct": [("ppm", 1e-4), ("‰", 0.1), ("%", 1.0)],
}
STEPS = Unit("steps", 1.0)


def pick_unit(values: Iterable[Any], units: list[tuple[str, float]]) -> Unit:
    """The largest unit in which the largest |value| is still >= 1 (the first unit otherwise)."""
    xs = [abs(float(v)) for v in values if finite(v)]
    top = max(xs) if xs else 0.0
    chosen = units[0]
    for label, scale in units:
        if top >= scale:
            chosen = (label, scale)
    return Unit(*chosen)


def time_unit(values: Iterable[Any]) -> Unit:
    # Minutes and hours only once they read better than seconds: 600 s, not 10 min, is still clear.
    xs = [abs(float(v)) for v in values if finite(v)]
    top = max(xs) if xs else 0.0
    if top >= 2 * 3600:
        return Unit("h", 3600.0)
    if top >= 10 * 60:
        return Unit("min", 60.0)
    return Unit("s", 1.0)


def decimals_for(values: Iterable[Any], scale: float = 1.0, sig: int = 3, most: int = 6) -> int:
    """Decimals that give the largest |value| (divided by `scale`) `sig` significant digits; one
    number of decimals for a whole column, so its figures line up."""
    xs = [abs(float(v) / scale) for v in values if finite(v) and float(v) != 0]
    if not xs:
        return 0
    return int(min(most, max(0, sig - 1 - math.floor(math.log10(max(xs))))))


def fmt_fixed(v: Any, decimals: int, scale: float = 1.0) -> str:
    """`v / scale` with thousands separators and exactly `decimals` decimals; '—' if missing."""
    if not finite(v):
        return DASH
    x = float(v) / scale
    text = f"{x:,.{decimals}f}"
    return "0" if text.strip("-0.,") == "" and decimals == 0 else text


def fmt_range(lo: Any, hi: Any, decimals: int, scale: float = 1.0) -> str:
    """A confidence interval as '4,509–5,178' (an en dash, never a comma, between the bounds);
    '-218.0 to -32.6' when a bound is negative, where a dash would read as a minus."""
    if not (finite(lo) and finite(hi)):
        return DASH
    sep = " to " if float(lo) < 0 or float(hi) < 0 else "–"
    return f"{fmt_fixed(lo, decimals, scale)}{sep}{fmt_fixed(hi, decimals, scale)}"


def fmt_in(v: Any, unit: Unit) -> str:
    return DASH if not finite(v) else fmt_num(float(v) / unit.scale)


def est_header(name: str, est_flags: Iterable[bool | None]) -> tuple[str, str]:
    """Header text and the per-cell mark: all estimated -> '(estimated)' in the header and no
    mark; some estimated -> '† = estimated' in the header and '†' on those cells."""
    flags = [bool(f) for f in est_flags]
    if flags and all(flags):
        label = "estimated"
    elif any(flags):
        label = f"{EST_MARK} = estimated"
    else:
        return name, ""
    if name.endswith(")"):
        return f"{name[:-1]}, {label})", "" if label == "estimated" else EST_MARK
    return f"{name} ({label})", "" if label == "estimated" else EST_MARK


def tagged(text: str, tag: str) -> str:
    """`text` with the estimate mark, unless it is a dash (a missing number is not estimated)."""
    return text if text == DASH or not tag else text + tag


def plain(v: Any) -> str:
    """A JSON value from the run folder as one line of text."""
    if isinstance(v, (list, tuple)):
        return ", ".join(plain(x) for x in v) if v else "none"
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True)
    if v is None:
        return DASH
    return str(v)
