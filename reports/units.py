"""The report's display units: one unit per quantity (time, energy, power, emissions) for the whole
report, chosen once from every complete seed, and columns of numbers written in them with the same
decimals. Shared by the results tables (reports.tables) and the energy tables (reports.energy_tables).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from reports.aggregates import complete_seeds
from reports.format import ENERGY_UNITS, MASS_UNITS, POWER_UNITS, Unit, decimals_for, fmt_fixed, pick_unit, time_unit


@dataclass(frozen=True)
class Units:
    """The report's display units, one per quantity for the whole report (every env's tables,
    the account and the equivalents), chosen from every complete seed."""

    time: Unit
    energy: Unit
    power: Unit
    mass: Unit


def report_units(seeds: pd.DataFrame) -> Units:
    done = complete_seeds(seeds)
    return Units(time_unit(done["wall_s"]),
                 pick_unit(list(done["energy_j"]) + list(done["energy_to_target_j"]), ENERGY_UNITS),
                 pick_unit(done["avg_power_w"], POWER_UNITS), pick_unit(done["emissions_kg"], MASS_UNITS))


def column(values: list[Any], unit: Unit | None = None, sig: int = 3) -> list[str]:
    """One column's numbers in `unit`, all with the same decimals."""
    scale = unit.scale if unit is not None else 1.0
    d = decimals_for(values, scale, sig)
    return [fmt_fixed(v, d, scale) for v in values]
