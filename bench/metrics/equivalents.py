"""Everyday equivalents of emissions (DESIGN §5.4), from one sourced table.

    car:       8.89e-3 t CO2/gallon × 1/22.0 mile per gallon × 1/0.988 (CO2 → CO2e) = 0.409 kg/mile
               (US EPA Greenhouse Gas Equivalencies Calculator, c. 2019, as CodeCarbon's dashboard uses it:
               https://www.epa.gov/energy/greenhouse-gas-equivalencies-calculator-calculations-and-references)
    household: (5.734 electricity + 2.06 natural gas + 0.26 LPG + 0.30 fuel oil) t/year / 52 = 160.58 kg/week
               (the same EPA calculator's home energy use, c. 2019)
    TV:        a 32-inch LCD (LED-backlit) TV drawing 39 W, on the US grid (CodeCarbon's 369.473 g/kWh):
               0.039 kW × 0.369473 kg/kWh = 0.01441 kg/hour. 39 W is the middle of 26-52 W: ENERGY STAR
               32-inch TVs of 2015 drew 0.06-0.12 W per square inch of screen (Table 2 of "Energy savings
               opportunities in the global digital television transition", Energy Efficiency, 2016,
               https://doi.org/10.1007/s12053-016-9500-5) and a 32-inch 16:9 screen is 437 in².
               CodeCarbon's dashboard figure, 0.097 kg/hour, has no primary source we could find and
               implies ~260 W at that grid, several times a 32-inch LCD's draw: it is not used.
EPA's newer car figure is about 0.393 kg/mile (22.8 mpg); pass it as an override to use it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from bench.schema import EQUIVALENT_FIELDS

TV_POWER_W = 39.0
US_GRID_KG_PER_KWH = 0.369473


@dataclass(frozen=True)
class EquivalenceTable:
    car_kg_per_mile: float = 0.409
    tv_kg_per_hour: float = round(TV_POWER_W / 1000 * US_GRID_KG_PER_KWH, 6)
    household_kg_per_week: float = 160.58
    source: str = ("car and household: US EPA Greenhouse Gas Equivalencies Calculator, c. 2019 (the figures "
                   "CodeCarbon's dashboard uses); TV: a 39 W 32-inch LCD (ENERGY STAR 2015, 0.06-0.12 W/in², "
                   "doi:10.1007/s12053-016-9500-5) on the US grid at CodeCarbon's 369.473 g/kWh")

    def __post_init__(self) -> None:
        for name in ("car_kg_per_mile", "tv_kg_per_hour", "household_kg_per_week"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0 and value == value and value != float("inf")):
                raise ValueError(f"{name} must be a positive number, got {value!r}")

    def with_overrides(self, *, car_kg_per_mile: float | None = None, tv_kg_per_hour: float | None = None,
                       household_kg_per_week: float | None = None) -> "EquivalenceTable":
        """A copy with the given constants replaced; the source then says so."""
        changes = {k: v for k, v in dict(car_kg_per_mile=car_kg_per_mile, tv_kg_per_hour=tv_kg_per_hour,
                                          household_kg_per_week=household_kg_per_week).items() if v is not None}
        if not changes:
            return self
        note = ", ".join(f"{k}={v:g}" for k, v in changes.items())
        return replace(self, **changes, source=f"{self.source}; overridden: {note}")


DEFAULT_TABLE = EquivalenceTable()
EQUIVALENT_COLUMNS = tuple(f.name for f in EQUIVALENT_FIELDS)


def car_miles(emissions_kg: float, table: EquivalenceTable = DEFAULT_TABLE) -> float:
    return emissions_kg / table.car_kg_per_mile


def tv_hours(emissions_kg: float, table: EquivalenceTable = DEFAULT_TABLE) -> float:
    return emissions_kg / table.tv_kg_per_hour


def household_week_pct(emissions_kg: float, table: EquivalenceTable = DEFAULT_TABLE) -> float:
    return emissions_kg / table.household_kg_per_week * 100.0


def equivalents(emissions_kg: float, table: EquivalenceTable = DEFAULT_TABLE) -> dict[str, float]:
    if not emissions_kg >= 0:
        raise ValueError(f"emissions_kg must be a non-negative number, got {emissions_kg!r}")
    return {"car_miles": car_miles(emissions_kg, table), "tv_hours": tv_hours(emissions_kg, table),
            "household_week_pct": household_week_pct(emissions_kg, table)}


def add_equivalent_columns(df: pd.DataFrame, table: EquivalenceTable = DEFAULT_TABLE,
                           emissions_col: str = "emissions_kg") -> pd.DataFrame:
    """car_miles, tv_hours, household_week_pct from the emissions column (NaN where it is empty)."""
    out = df.copy()
    kg = pd.to_numeric(out[emissions_col], errors="coerce") if emissions_col in out else pd.Series(
        float("nan"), index=out.index)
    kg = kg.where(kg >= 0)
    out["car_miles"] = kg / table.car_kg_per_mile
    out["tv_hours"] = kg / table.tv_kg_per_hour
    out["household_week_pct"] = kg / table.household_kg_per_week * 100.0
    return out
