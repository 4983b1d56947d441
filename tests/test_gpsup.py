"""GPS-UP metrics, categories, tolerance rules, per-run and aggregated columns, energy to target."""
from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest

from bench.cli.calculators import add_gpsup_parser
from bench.metrics.gpsup import (
    GpsUp,
    add_gpsup_columns,
    add_target_columns,
    aggregate_gpsup,
    approx_one,
    category,
    default_target,
    energy_to_target,
    gpsup,
)

# ----------------------------------------------------------------------------- DESIGN §5.3 worked examples


def test_worked_example_a():
    assert gpsup(100, 20_000, 25, 10_000) == GpsUp(speedup=4.0, powerup=2.0, greenup=2.0, category=3)


def test_worked_example_b():
    assert gpsup(100, 20_000, 50, 5_000) == GpsUp(speedup=2.0, powerup=0.5, greenup=4.0, category=1)


def test_greenup_is_speedup_over_powerup_and_energy_is_power_times_time():
    g = gpsup(73.0, 9_100.0, 41.0, 12_345.0)
    assert g.greenup == pytest.approx(g.speedup / g.powerup)
    assert g.greenup == pytest.approx(9_100.0 / 12_345.0)
    assert g.powerup == pytest.approx((12_345.0 / 41.0) / (9_100.0 / 73.0))


# ----------------------------------------------------------------------------- one case per category
# baseline 100 s at 200 W (20,000 J); candidate (time, power)

@pytest.mark.parametrize("time_s, power_w, expected, green", [
    (50, 100, 1, True),     # S 2, P 0.5
    (50, 200, 2, True),     # S 2, P 1, G 2
    (25, 400, 3, True),     # S 4, P 2 < S
    (200, 50, 4, True),     # S 0.5, P 0.25 < S
    (50, 600, 5, False),    # S 2, P 3 > S
    (200, 150, 6, False),   # S 0.5 < P 0.75 < 1
    (200, 200, 7, False),   # S 0.5, P 1
    (200, 300, 8, False),   # S 0.5, P 1.5
])
def test_each_category(time_s, power_w, expected, green):
    g = gpsup(100, 20_000, time_s, power_w * time_s)
    assert g.category == expected
    assert g.green is green
    assert (g.greenup > 1) is green


# ----------------------------------------------------------------------------- tolerance and tie rules


def test_tolerance_is_one_percent_symmetric_in_log():
    assert approx_one(1.0) and approx_one(1.01) and approx_one(1 / 1.01)
    assert not approx_one(1.0101) and not approx_one(1 / 1.0101)


def test_powerup_tolerance_edges():
    assert category(2.0, 1.009) == 2
    assert category(2.0, 0.991) == 2
    assert category(2.0, 1.011) == 3
    assert category(2.0, 0.989) == 1
    assert category(0.5, 1.009) == 7
    assert category(0.5, 1.011) == 8
    assert category(0.5, 0.989) == 6


def test_speedup_of_one_counts_as_faster():
    assert category(1.0, 0.5) == 1
    assert category(1.0, 1.0) == 2
    assert category(1.0, 1.5) == 5
    assert category(0.995, 0.5) == 1    # within 1 %: still "not slower"
    assert category(0.989, 0.5) == 4    # beyond it: slower


def test_greenup_of_one_counts_as_greener():
    assert category(2.0, 2.0) == 3 and category(2.0, 2.015) == 3   # P ≈ S
    assert category(2.0, 2.03) == 5
    assert category(0.5, 0.5) == 4 and category(0.5, 0.504) == 4
    assert category(0.5, 0.51) == 6


@pytest.mark.parametrize("args", [(0, 1, 1, 1), (1, 0, 1, 1), (1, 1, 0, 1), (1, 1, 1, 0), (-1, 1, 1, 1),
                                  (1, 1, float("nan"), 1), (1, float("inf"), 1, 1)])
def test_invalid_inputs_raise_value_error(args):
    with pytest.raises(ValueError):
        gpsup(*args)


# ----------------------------------------------------------------------------- summary columns


def _summary() -> pd.DataFrame:
    return pd.DataFrame([
        dict(method="popsan", env="HalfCheetah-v4", seed=0, wall_s=100.0, energy_j=20_000.0, final_return_mean=1000.0),
        dict(method="popsan", env="HalfCheetah-v4", seed=1, wall_s=120.0, energy_j=26_000.0, final_return_mean=800.0),
        dict(method="spikerl", env="HalfCheetah-v4", seed=0, wall_s=25.0, energy_j=10_000.0, final_return_mean=1100.0),
        dict(method="spikerl", env="HalfCheetah-v4", seed=1, wall_s=60.0, energy_j=6_500.0, final_return_mean=900.0),
        dict(method="spikerl", env="HalfCheetah-v4", seed=2, wall_s=50.0, energy_j=5_000.0, final_return_mean=700.0),
        dict(method="popsan", env="Hopper-v4", seed=0, wall_s=100.0, energy_j=0.0, final_return_mean=-50.0),
        dict(method="dsrl", env="Hopper-v4", seed=0, wall_s=50.0, energy_j=5_000.0, final_return_mean=-40.0),
    ])


def test_add_gpsup_columns_per_run():
    out = add_gpsup_columns(_summary(), "popsan", phase="run")
    row = out[(out.method == "spikerl") & (out.seed == 0)].iloc[0]
    assert (row.speedup, row.powerup, row.greenup, row.gpsup_category) == (4.0, 2.0, 2.0, 3)
    row = out[(out.method == "spikerl") & (out.seed == 1)].iloc[0]
    assert row.speedup == pytest.approx(2.0) and row.greenup == pytest.approx(4.0)
    assert row.gpsup_category == 1
    base = out[(out.method == "popsan") & (out.env == "HalfCheetah-v4")]
    assert (base.speedup == 1.0).all() and (base.powerup == 1.0).all() and (base.greenup == 1.0).all()
    assert base.gpsup_category.isna().all()  # the reference is not compared with itself
    # seed 2 has no baseline run; Hopper's baseline has zero energy: empty, never a crash
    for sel in [(out.method == "spikerl") & (out.seed == 2), out.env == "Hopper-v4"]:
        assert out.loc[sel, ["speedup", "powerup", "greenup"]].isna().all().all()
        assert out.loc[sel, "gpsup_category"].isna().all()
    ok = out.dropna(subset=["greenup"])
    assert ok.greenup.to_numpy() == pytest.approx((ok.speedup / ok.powerup).to_numpy())
    assert len(out) == len(_summary()) and "final_return_mean" in out


def test_add_gpsup_columns_without_any_baseline():
    out = add_gpsup_columns(_summary(), "mlp", phase="run")
    assert out[["speedup", "powerup", "greenup"]].isna().all().all()
    assert str(out.gpsup_category.dtype) == "Int64"


def test_aggregate_gpsup_ratio_of_means():
    agg = aggregate_gpsup(_summary(), "popsan", phase="run")
    cheetah = agg[agg.env == "HalfCheetah-v4"].set_index("method")
    base = cheetah.loc["popsan"]
    assert (base.speedup, base.powerup, base.greenup) == (1.0, 1.0, 1.0)
    assert pd.isna(base.gpsup_category) and base.n_seeds == 2
    cand = cheetah.loc["spikerl"]
    t_b, e_b = 110.0, 23_000.0
    t_c, e_c = (25 + 60 + 50) / 3, (10_000 + 6_500 + 5_000) / 3
    assert cand.wall_s == pytest.approx(t_c) and cand.energy_j == pytest.approx(e_c)
    assert cand.gpsup_time_s == pytest.approx(t_c) and cand.gpsup_phase == "run"
    assert cand.speedup == pytest.approx(t_b / t_c)
    assert cand.greenup == pytest.approx(e_b / e_c)
    assert cand.powerup == pytest.approx((e_c / t_c) / (e_b / t_b))
    assert cand.gpsup_category == category(t_b / t_c, (e_c / t_c) / (e_b / t_b))
    hopper = agg[agg.env == "Hopper-v4"].set_index("method")
    assert pd.isna(hopper.loc["dsrl", "greenup"])  # zero-energy baseline


def test_empty_summary():
    empty = pd.DataFrame(columns=["method", "env", "seed", "wall_s", "energy_j"])
    assert add_gpsup_columns(empty, "popsan").empty
    assert aggregate_gpsup(empty, "popsan").empty


# ----------------------------------------------------------------------------- energy to target


def _evals(returns, energy=None) -> pd.DataFrame:
    n = len(returns)
    return pd.DataFrame(dict(step=[1000 * (i + 1) for i in range(n)], wall_s=[10.0 * (i + 1) for i in range(n)],
                             return_mean=returns,
                             energy_j=energy if energy is not None else [500.0 * (i + 1) for i in range(n)]))


def test_energy_to_target_first_row_reaching_it():
    ev = _evals([100, 850, 700, 950])
    assert energy_to_target(ev, 850) == (1000.0, 20.0)   # ≥, the first one
    assert energy_to_target(ev.iloc[::-1], 900) == (2000.0, 40.0)  # order by step, not by file
    assert energy_to_target(ev, 2000) == (None, None)
    assert energy_to_target(ev.iloc[0:0], 0) == (None, None)


def test_default_target_for_positive_and_negative_returns():
    assert default_target(1000.0) == pytest.approx(900.0)
    assert default_target(-200.0) == pytest.approx(-220.0)
    assert default_target(0.0) == 0.0


def test_add_target_columns_default_and_explicit():
    summary = _summary()
    evals = {
        ("popsan", "HalfCheetah-v4", 0): _evals([500, 950, 1000]),
        ("spikerl", "HalfCheetah-v4", 0): _evals([880, 920, 1100]),
        ("spikerl", "HalfCheetah-v4", 1): _evals([100, 200, 300]),
        ("dsrl", "Hopper-v4", 0): _evals([-300, -230, -215]),
    }
    out = add_target_columns(summary, evals, "popsan").set_index(["method", "env", "seed"])
    assert out.loc[("popsan", "HalfCheetah-v4", 0), "target_return"] == pytest.approx(900.0)
    assert out.loc[("popsan", "HalfCheetah-v4", 0), "energy_to_target_j"] == 1000.0
    assert out.loc[("spikerl", "HalfCheetah-v4", 0), "energy_to_target_j"] == 1000.0
    assert out.loc[("spikerl", "HalfCheetah-v4", 0), "time_to_target_s"] == 20.0
    assert pd.isna(out.loc[("spikerl", "HalfCheetah-v4", 1), "energy_to_target_j"])   # never reached 720
    assert pd.isna(out.loc[("spikerl", "HalfCheetah-v4", 2), "target_return"])       # no baseline seed 2
    # Hopper baseline final −50 → target −55; dsrl never gets above −215
    assert out.loc[("dsrl", "Hopper-v4", 0), "target_return"] == pytest.approx(-55.0)
    assert pd.isna(out.loc[("dsrl", "Hopper-v4", 0), "energy_to_target_j"])
    explicit = add_target_columns(summary, evals, "popsan", target_return=-230.0).set_index(
        ["method", "env", "seed"])
    assert explicit.loc[("dsrl", "Hopper-v4", 0), "energy_to_target_j"] == 1000.0
    assert explicit.loc[("spikerl", "HalfCheetah-v4", 2), "target_return"] == -230.0


# ----------------------------------------------------------------------------- calculator


@pytest.fixture
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spikerl-bench")
    add_gpsup_parser(p.add_subparsers(dest="command"))
    return p


def _run(parser, argv):
    args = parser.parse_args(argv)
    return args.func(args)


def test_gpsup_cli_worked_examples(parser, capsys):
    assert _run(parser, ["gpsup", "100", "20000", "25", "10000"]) == 0
    text = capsys.readouterr().out
    assert "speedup   4" in text and "powerup   2" in text and "greenup   2" in text and "category  3" in text
    assert _run(parser, ["gpsup", "100", "20000", "50", "5000", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["speedup"], out["powerup"], out["greenup"], out["category"]) == (2.0, 0.5, 4.0, 1)


@pytest.mark.parametrize("argv, word", [
    (["gpsup", "abc", "20000", "25", "10000"], "BASE_TIME_S must be a number"),
    (["gpsup", "100", "-20000", "25", "10000"], "BASE_ENERGY_J must be greater than zero"),
    (["gpsup", "100", "20000", "0", "10000"], "TIME_S must be greater than zero"),
    (["gpsup", "100", "20000", "25", "nan"], "ENERGY_J must be greater than zero"),
])
def test_gpsup_cli_bad_numbers(parser, capsys, argv, word):
    assert _run(parser, argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and word in lines[0] and "Traceback" not in captured.err
