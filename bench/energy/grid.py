"""The carbon inputs a user can correct: the grid's intensity and the facility's PUE.

    emissions_kg = energy_j / 3.6e6 × pue × intensity_g_per_kwh / 1000

energy_j stays the IT energy (what the meters read); PUE (power usage effectiveness, facility
energy / IT energy, 1.0-3.0, default 1.0) scales it to the facility's. The intensity is, in order:
the user's own figure (--carbon-intensity, e.g. their utility's or grid operator's; source
`user`), a region's from CodeCarbon's offline data (--region: US states from EPA eGRID 2023, lbs/MWh;
Canadian provinces from their energy mix, weighted by CodeCarbon's coal, petroleum and natural-gas
factors; source `codecarbon-region`), or the country's (source `codecarbon-country`).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from bench.energy.carbon import carbon_intensity_g_per_kwh, validate_country

J_PER_KWH = 3.6e6
G_PER_LB = 453.59237
PUE_RANGE = (1.0, 3.0)
INTENSITY_RANGE = (0.0, 2000.0)  # g CO2e/kWh: above coal's ~1,000 is a typing error
# kg CO2e per kWh of each fossil source, as CodeCarbon weighs a Canadian province's energy mix
# (from github.com/responsibleproblemsolving/energy-usage#conversion-to-co2); other sources count 0
_MIX_KG_PER_KWH = {"coal": 0.995725971, "petroleum": 0.8166885263, "naturalGas": 0.7438415916}
REGIONAL = {"USA": "a US state (e.g. california, texas)", "CAN": "a Canadian province (e.g. ontario, quebec)"}


@dataclass(frozen=True)
class GridInputs:
    intensity_g_per_kwh: float | None
    source: str
    """codecarbon-country, codecarbon-region or user."""
    region: str | None = None
    pue: float = 1.0

    def emissions_kg(self, energy_j: float | None) -> float | None:
        if energy_j is None or self.intensity_g_per_kwh is None:
            return None
        return energy_j / J_PER_KWH * self.pue * self.intensity_g_per_kwh / 1000.0

    def result_fields(self) -> dict[str, Any]:
        return {"carbon_intensity_g_per_kwh": self.intensity_g_per_kwh, "carbon_intensity_source": self.source,
                "region": self.region, "pue": self.pue}


def check_pue(pue: Any) -> float:
    lo, hi = PUE_RANGE
    if isinstance(pue, bool) or not isinstance(pue, (int, float)) or not lo <= pue <= hi:
        raise ValueError(f"--pue must be {lo} to {hi} (facility energy / IT energy), got {pue!r}")
    return float(pue)


def check_intensity(value: Any) -> float:
    lo, hi = INTENSITY_RANGE
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo < value <= hi:
        raise ValueError(f"--carbon-intensity must be a number of g CO2e/kWh above {lo:g} and at most {hi:g}, "
                         f"got {value!r}")
    return float(value)


@functools.lru_cache(maxsize=4)
def _regional_data(country: str) -> dict[str, Any] | None:
    try:
        from codecarbon.input import DataSource

        if country == "USA":
            return DataSource().get_country_emissions_data("usa")
        return DataSource().get_country_energy_mix_data("can")
    except Exception:
        return None


def region_intensity_g_per_kwh(country: str, region: str) -> float:
    """A US state's or Canadian province's intensity from CodeCarbon's offline data; ValueError
    naming what is accepted otherwise."""
    country = validate_country(country)
    if country not in REGIONAL:
        raise ValueError(f"--region needs --country USA or CAN (CodeCarbon has regional data for those only), "
                         f"got --country {country}")
    data = _regional_data(country)
    if data is None:
        raise ValueError(f"CodeCarbon's regional data for {country} could not be read")
    key = region.strip().lower()
    names = sorted(k for k in data if not k.startswith("_"))
    if key not in data or key.startswith("_"):
        raise ValueError(f"--region {region!r}: not {REGIONAL[country]} in CodeCarbon's data; one of "
                         f"{', '.join(names[:6])}, ...")
    row = data[key]
    if country == "USA":
        return float(row["emissions"]) * G_PER_LB / 1000.0  # lbs/MWh -> g/kWh
    total = float(row["total"])
    return sum(float(row.get(src, 0.0)) / total * kg * 1000.0 for src, kg in _MIX_KG_PER_KWH.items())


def grid_inputs(country: str, *, region: str | None = None, intensity_g_per_kwh: float | None = None,
                pue: float = 1.0) -> GridInputs:
    """The run's carbon inputs; ValueError (one line) on a bad or conflicting one."""
    pue = check_pue(pue)
    if intensity_g_per_kwh is not None and region is not None:
        raise ValueError("--carbon-intensity and --region both give the grid's intensity: pass one")
    if intensity_g_per_kwh is not None:
        return GridInputs(check_intensity(intensity_g_per_kwh), "user", None, pue)
    if region is not None:
        return GridInputs(region_intensity_g_per_kwh(country, region), "codecarbon-region", region.strip().lower(),
                          pue)
    return GridInputs(carbon_intensity_g_per_kwh(country), "codecarbon-country", None, pue)
