"""The `gpsup` and `carbon` calculators of `spikerl-bench`.

Numbers are parsed in the handlers, not by argparse, so that a bad value costs one line on
stderr and exit code 2 rather than argparse's usage block.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from bench.metrics.equivalents import DEFAULT_TABLE
from bench.metrics.gpsup import REL_TOL, gpsup

EXIT_USAGE = 2

GPSUP_EXAMPLES = """\
examples:
  spikerl-bench gpsup 100 20000 25 10000
      speedup 4, powerup 2, greenup 2, category 3 (faster, more power, less energy)
  spikerl-bench gpsup 100 20000 50 5000 --json

Categories 1-4 save energy (green), 5-8 cost energy (red). "= 1" means within 1 %;
a speedup within 1 % of 1 counts as faster, a greenup within 1 % of 1 as greener.
"""

CARBON_EXAMPLES = """\
examples:
  spikerl-bench carbon 1.5
  spikerl-bench carbon 1.5 --car-kg-per-mile 0.393 --json

Constants: car 0.409 kg/mile, US household 160.58 kg/week (US EPA Greenhouse Gas
Equivalencies Calculator, c. 2019); TV 0.0144 kg/hour (a 39 W 32-inch LCD, ENERGY STAR 2015
via doi:10.1007/s12053-016-9500-5, on the US grid at 369.473 g/kWh).
"""


class _BadNumber(ValueError):
    pass


def _number(name: str, text: str, *, allow_zero: bool) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise _BadNumber(f"{name} must be a number, got {text!r}") from None
    # -0 is refused like any negative (it would print as -0); subnormals like zero, since
    # dividing by them overflows
    if not math.isfinite(value) or math.copysign(1.0, value) < 0 or (value == 0 and not allow_zero):
        need = "zero or more" if allow_zero else "greater than zero"
        raise _BadNumber(f"{name} must be {need}, got {text!r}")
    if 0 < value < sys.float_info.min:
        raise _BadNumber(f"{name} is too small to compute with (below {sys.float_info.min:.3g}), got {text!r}")
    return value


def _check_results(values: dict[str, float]) -> None:
    """Inputs far apart can overflow or underflow a ratio: refuse rather than print inf or 0."""
    for name, v in values.items():
        if not math.isfinite(v) or (v != 0 and abs(v) < sys.float_info.min):
            raise _BadNumber(f"the {name.replace('_', ' ')} is out of the range of floating point "
                             f"numbers ({v!r}); the inputs are too far apart")


def _fail(message: str) -> int:
    print(f"spikerl-bench: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def add_gpsup_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "gpsup", help="speedup, powerup, greenup and GPS-UP category of one run against a baseline",
        description="GPS-UP (Abdulsalam et al., IGSC 2015): S = T_base/T, P = P/P_base, G = E_base/E = S/P.",
        epilog=GPSUP_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("base_time_s", metavar="BASE_TIME_S", help="baseline wall time, seconds")
    p.add_argument("base_energy_j", metavar="BASE_ENERGY_J", help="baseline energy, joules")
    p.add_argument("time_s", metavar="TIME_S", help="candidate wall time, seconds")
    p.add_argument("energy_j", metavar="ENERGY_J", help="candidate energy, joules")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_gpsup)
    return p


def run_gpsup(args: argparse.Namespace) -> int:
    try:
        values = {name: _number(name.upper(), getattr(args, name), allow_zero=False)
                  for name in ("base_time_s", "base_energy_j", "time_s", "energy_j")}
    except _BadNumber as exc:
        return _fail(str(exc))
    try:
        g = gpsup(**values)
        _check_results({"speedup": g.speedup, "powerup": g.powerup, "greenup": g.greenup})
    except (_BadNumber, ZeroDivisionError, OverflowError) as exc:
        return _fail(str(exc) if isinstance(exc, _BadNumber) else f"the inputs are too far apart to divide ({exc})")
    out = {"speedup": g.speedup, "powerup": g.powerup, "greenup": g.greenup, "category": g.category,
           "green": g.green, "rel_tol": REL_TOL}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"speedup   {g.speedup:.4g}\npowerup   {g.powerup:.4g}\ngreenup   {g.greenup:.4g}\n"
              f"category  {g.category} ({'green: saves energy' if g.green else 'red: costs energy'})")
    return 0


def add_carbon_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "carbon", help="everyday equivalents of an amount of CO2eq",
        description="Miles driven by an average gasoline car, hours of a 32-inch LCD TV, and the share "
                    "of an average US household's weekly emissions.",
        epilog=CARBON_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kg", metavar="KG", help="emissions, kg CO2eq")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--car-kg-per-mile", metavar="X", default=None,
                   help=f"override the car figure (default {DEFAULT_TABLE.car_kg_per_mile}; EPA now ~0.393)")
    p.add_argument("--tv-kg-per-hour", metavar="X", default=None,
                   help=f"override the TV figure (default {DEFAULT_TABLE.tv_kg_per_hour})")
    p.add_argument("--household-kg-per-week", metavar="X", default=None,
                   help=f"override the household figure (default {DEFAULT_TABLE.household_kg_per_week})")
    p.set_defaults(func=run_carbon)
    return p


def run_carbon(args: argparse.Namespace) -> int:
    from bench.metrics.equivalents import equivalents

    try:
        kg = _number("KG", args.kg, allow_zero=True)
        overrides = {name: _number(f"--{name.replace('_', '-')}", getattr(args, name), allow_zero=False)
                     for name in ("car_kg_per_mile", "tv_kg_per_hour", "household_kg_per_week")
                     if getattr(args, name) is not None}
    except _BadNumber as exc:
        return _fail(str(exc))
    table = DEFAULT_TABLE.with_overrides(**overrides)
    try:
        eq = equivalents(kg, table)
        _check_results(eq)
    except (_BadNumber, ZeroDivisionError, OverflowError) as exc:
        return _fail(str(exc) if isinstance(exc, _BadNumber) else f"the inputs are too far apart to divide ({exc})")
    if args.json:
        print(json.dumps({"emissions_kg": kg, **eq, "car_kg_per_mile": table.car_kg_per_mile,
                          "tv_kg_per_hour": table.tv_kg_per_hour,
                          "household_kg_per_week": table.household_kg_per_week, "source": table.source}))
    else:
        print(f"{kg:g} kg CO2eq is about\n"
              f"  {eq['car_miles']:.4g} miles driven by an average gasoline car\n"
              f"  {eq['tv_hours']:.4g} hours of a 32-inch LCD TV\n"
              f"  {eq['household_week_pct']:.4g} % of an average US household's weekly emissions\n"
              f"source: {table.source}")
    return 0
