"""Carbon equivalents (DESIGN §5.4) and the `carbon` calculator."""
from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest

from bench.cli.calculators import add_carbon_parser
from bench.metrics.equivalents import (
    DEFAULT_TABLE,
    EquivalenceTable,
    add_equivalent_columns,
    car_miles,
    equivalents,
    household_week_pct,
    tv_hours,
)


def test_design_constants_and_source():
    assert (DEFAULT_TABLE.car_kg_per_mile, DEFAULT_TABLE.tv_kg_per_hour, DEFAULT_TABLE.household_kg_per_week) == (
        0.409, 0.014409, 160.58)  # the TV: 39 W x 0.369473 kg/kWh, sourced (the module's docstring)
    assert "EPA" in DEFAULT_TABLE.source and "s12053-016-9500-5" in DEFAULT_TABLE.source


def test_equivalents_of_one_tonne():
    assert car_miles(409.0) == pytest.approx(1000.0)
    assert tv_hours(1.4409) == pytest.approx(100.0)
    assert household_week_pct(160.58) == pytest.approx(100.0)
    assert equivalents(0.0) == {"car_miles": 0.0, "tv_hours": 0.0, "household_week_pct": 0.0}
    with pytest.raises(ValueError):
        equivalents(-1.0)


def test_override_changes_only_that_figure_and_says_so():
    epa = DEFAULT_TABLE.with_overrides(car_kg_per_mile=0.393)
    assert car_miles(3.93, epa) == pytest.approx(10.0)
    assert epa.tv_kg_per_hour == 0.014409 and "car_kg_per_mile=0.393" in epa.source
    assert DEFAULT_TABLE.with_overrides() is DEFAULT_TABLE
    for bad in (0.0, -0.4, float("nan")):
        with pytest.raises(ValueError, match="car_kg_per_mile"):
            EquivalenceTable(car_kg_per_mile=bad)


def test_add_equivalent_columns_leaves_missing_emissions_empty():
    df = pd.DataFrame({"method": ["a", "b", "c"], "emissions_kg": [0.409, None, -1.0]})
    out = add_equivalent_columns(df)
    assert out.loc[0, "car_miles"] == pytest.approx(1.0)
    assert out.loc[0, "household_week_pct"] == pytest.approx(0.409 / 160.58 * 100)
    assert out.loc[1:, ["car_miles", "tv_hours", "household_week_pct"]].isna().all().all()
    assert "emissions_kg" in out and len(out) == 3


@pytest.fixture
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spikerl-bench")
    add_carbon_parser(p.add_subparsers(dest="command"))
    return p


def _run(parser, argv):
    args = parser.parse_args(argv)
    return args.func(args)


def test_carbon_cli_text_and_json(parser, capsys):
    assert _run(parser, ["carbon", "1.5"]) == 0
    text = capsys.readouterr().out
    assert "3.667 miles" in text and "104.1 hours" in text and "0.9341 %" in text
    assert _run(parser, ["carbon", "0.786", "--json", "--car-kg-per-mile", "0.393"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["car_miles"] == pytest.approx(2.0) and out["car_kg_per_mile"] == 0.393
    assert out["tv_hours"] == pytest.approx(0.786 / 0.014409)
    assert "overridden" in out["source"]


@pytest.mark.parametrize("argv, word", [
    (["carbon", "lots"], "KG must be a number"),
    (["carbon", "-2"], "KG must be zero or more"),
    (["carbon", "1", "--car-kg-per-mile", "0"], "--car-kg-per-mile must be greater than zero"),
    (["carbon", "1", "--tv-kg-per-hour", "x"], "--tv-kg-per-hour must be a number"),
])
def test_carbon_cli_bad_numbers(parser, capsys, argv, word):
    assert _run(parser, argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and word in lines[0] and captured.out == ""
