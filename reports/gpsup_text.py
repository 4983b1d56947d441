"""GPS-UP in the report's tables: a ratio with its interval and basis word, and the notes saying
which phase the ratios compare and why a method has none."""
from __future__ import annotations

from typing import Any

import pandas as pd

from bench.metrics.format import ratio_text
from bench.metrics.gpsup import PHASE_LABELS
from reports.format import fmt_ratio


def ratio_cell(pr: dict[str, Any], col: str) -> str:
    """'1.42× (1.31–1.55)'; after powerup and greenup not measured, the basis word (model, mixed)."""
    if pr.get("is_baseline"):
        return fmt_ratio(pr.get(col))
    basis = pr.get("gpsup_basis")
    word = None if col == "speedup" or basis == "measured" else (basis or "model")
    return ratio_text(pr.get(col), pr.get(f"{col}_ci_low"), pr.get(f"{col}_ci_high"), word)


def gpsup_notes(points: pd.DataFrame, env: str, phase: str) -> list[str]:
    """Which phase the ratios compare, what 'model' means, and each method's reason for no ratio."""
    notes = [f"Speedup, powerup, greenup and category compare the {PHASE_LABELS[phase]} (time and energy of "
             f"that phase; --gpsup-phase {'run' if phase == 'train' else 'train'} for the other), as the ratio of "
             "the seed means with its 95 % bootstrap interval in brackets. Energy to target is the whole run's: "
             "what it cost to get there.",
             "'model' / 'mixed' after powerup and greenup: one or both sides' energy comes (partly) from a power "
             "model (CodeCarbon's TDP curve, its RAM model), which makes powerup ≈ 1 and greenup ≈ speedup by "
             "construction: shown, never a finding."]
    rows = points[points["env"] == env] if len(points) else points
    for rec in rows.to_dict("records") if len(rows) else []:
        if isinstance(rec.get("gpsup_note"), str) and rec["gpsup_note"]:
            notes.append(f"{rec['method']}: {rec['gpsup_note']}.")
    return notes
