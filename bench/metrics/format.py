"""How a GPS-UP ratio is written wherever it is shown: '1.42× (1.31–1.55)', the 95 % interval in
brackets; no interval where there is none (one seed or one batch a side)."""
from __future__ import annotations

import math
from typing import Any

DASH = "—"


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def ratio_text(value: Any, low: Any = None, high: Any = None, basis: Any = None) -> str:
    """'1.42× (1.31–1.55)'; with a basis other than measured, ' model' or ' mixed' after it."""
    if not _finite(value):
        return DASH
    text = f"{float(value):.2f}×"
    if _finite(low) and _finite(high):
        text += f" ({float(low):.2f}–{float(high):.2f})"
    if isinstance(basis, str) and basis in ("model", "mixed"):
        text += f" {basis}"
    return text
