"""GPS-UP as a reviewer reads it (DESIGN §5.7): training-phase ratios by default, equal work,
measured or modelled basis, partial coverage left out, bootstrap intervals, one aggregation."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.metrics import bootstrap
from bench.metrics.basis import basis, measured_energy_share, partial_reason
from bench.metrics.format import ratio_text
from bench.metrics.gpsup import add_gpsup_columns, aggregate_gpsup, category
from bench.metrics.work import work_mismatch

MEASURED = {"cpu_energy_j": None, "gpu_estimated": False, "measured_energy_share": 1.0,
            "run_measured_energy_share": 1.0}


def _run(method: str, seed: int, train: tuple[float, float], evaluation: tuple[float, float],
         other: tuple[float, float] = (1.0, 10.0), **extra) -> dict:
    """A result row with phase splits: (seconds, joules) of train, eval and other."""
    (tt, te), (et, ee), (ot, oe) = train, evaluation, other
    return {"method": method, "env": "E", "seed": seed, "status": "complete", "steps": 1000, "updates": 500,
            "batch_size": 256, "train_wall_s": tt, "eval_wall_s": et, "other_wall_s": ot, "wall_s": tt + et + ot,
            "train_energy_j": te, "eval_energy_j": ee, "other_energy_j": oe, "energy_j": te + ee + oe,
            **MEASURED, **extra}


def _pair() -> pd.DataFrame:
    """Baseline popsan trains in 100 s / 20 kJ and evaluates 40 s / 4 kJ; spikerl trains in 25 s /
    10 kJ and evaluates 75 s / 6 kJ. Training: S = 4, P = 2, G = 2 (category 3). Whole run (other
    1 s / 10 J each): T 141 vs 101 s, E 24,010 vs 16,010 J."""
    return pd.DataFrame([_run("popsan", 0, (100.0, 20_000.0), (40.0, 4_000.0)),
                         _run("spikerl", 0, (25.0, 10_000.0), (75.0, 6_000.0))])


def test_training_phase_is_the_default_and_run_phase_is_the_whole_run():
    train = aggregate_gpsup(_pair(), "popsan").set_index("method").loc["spikerl"]
    assert (train.speedup, train.powerup, train.greenup, train.gpsup_category) == (4.0, 2.0, 2.0, 3)
    assert train.gpsup_phase == "train" and train.gpsup_basis == "measured"
    run = aggregate_gpsup(_pair(), "popsan", phase="run").set_index("method").loc["spikerl"]
    s, g = 141.0 / 101.0, 24_010.0 / 16_010.0
    assert run.speedup == pytest.approx(s, rel=1e-12) and run.greenup == pytest.approx(g, rel=1e-12)
    assert run.powerup == pytest.approx(s / g, rel=1e-12) and run.gpsup_phase == "run"
    assert run.gpsup_category == category(s, s / g)
    per_run = add_gpsup_columns(_pair(), "popsan").set_index("method").loc["spikerl"]
    assert (per_run.speedup, per_run.powerup, per_run.greenup) == (4.0, 2.0, 2.0)
    with pytest.raises(ValueError, match="phase"):
        aggregate_gpsup(_pair(), "popsan", phase="eval")


def test_unequal_training_work_gets_no_ratio_and_one_line():
    rows = _pair()
    rows.loc[rows.method == "spikerl", "steps"] = 900
    rows.loc[rows.method == "popsan", "steps"] = 600
    agg = aggregate_gpsup(rows.replace({"spikerl": "mlp"}), "popsan").set_index("method").loc["mlp"]
    assert math.isnan(agg.speedup) and pd.isna(agg.gpsup_category)
    assert agg.gpsup_note == "not comparable: mlp trained 900 steps, baseline popsan 600"
    per_run = add_gpsup_columns(rows, "popsan").set_index("method").loc["spikerl"]
    assert math.isnan(per_run.speedup) and per_run.gpsup_note.startswith("not comparable: spikerl trained 900")
    assert work_mismatch({"updates": 10}, {"updates": 12}, "a", "b") == \
        "not comparable: a made 10 updates, baseline b 12"
    assert work_mismatch({"batch_size": 64}, {"batch_size": 256}, "a", "b") == \
        "not comparable: a used batch size 64, baseline b 256"
    assert work_mismatch({"steps": 5}, {}, "a", "b") is None  # not recorded on one side: not compared


def test_different_evaluation_changes_only_the_run_phase_and_is_noted():
    rows = _pair().assign(eval_every=[5000, 1000])
    train = aggregate_gpsup(rows, "popsan").set_index("method").loc["spikerl"]
    assert train.speedup == 4.0 and "evaluation" not in train.gpsup_note
    run = aggregate_gpsup(rows, "popsan", phase="run").set_index("method").loc["spikerl"]
    assert "evaluation settings differ" in run.gpsup_note and math.isfinite(run.speedup)


def test_measured_share_and_basis():
    nvml_rapl = {"gpu_energy_j": 300.0, "gpu_estimated": False, "cpu_energy_j": 100.0, "cpu_estimated": False,
                 "ram_energy_j": None, "ram_estimated": None}
    estimate = {"cpu_energy_j": 80.0, "cpu_estimated": True, "ram_energy_j": 20.0, "ram_estimated": True}
    mixed = {"gpu_energy_j": 300.0, "gpu_estimated": "False", "cpu_energy_j": 80.0, "cpu_estimated": "True",
             "ram_energy_j": 20.0, "ram_estimated": "True"}  # summary.csv spells flags as text
    assert measured_energy_share(nvml_rapl) == 1.0
    assert measured_energy_share(estimate) == 0.0
    assert measured_energy_share(mixed) == pytest.approx(0.75)
    assert measured_energy_share({"cpu_energy_j": 5.0}) is None  # flag unreadable: unknown, not measured
    assert basis(1.0, 0.95) == "measured" and basis(0.0, 0.05) == "model" and basis(1.0, 0.0) == "mixed"
    assert basis(0.75, 0.95) == "mixed" and basis(None, 1.0) is None


def test_basis_of_a_pair_in_the_aggregate():
    rows = _pair()
    rows.loc[rows.method == "spikerl", ["measured_energy_share"]] = 0.0
    agg = aggregate_gpsup(rows, "popsan").set_index("method")
    assert agg.loc["spikerl", "gpsup_basis"] == "mixed"
    rows["measured_energy_share"] = 0.0
    assert aggregate_gpsup(rows, "popsan").set_index("method").loc["spikerl", "gpsup_basis"] == "model"
    assert add_gpsup_columns(rows, "popsan").set_index("method").loc["spikerl", "gpsup_basis"] == "model"


def test_a_measured_component_below_99_percent_coverage_leaves_the_run_out():
    assert partial_reason({"gpu_coverage": 0.95, "gpu_estimated": False}) == "partial meter coverage (gpu 95% < 99%)"
    assert partial_reason({"cpu_coverage": 0.5, "cpu_estimated": True}) is None  # an estimate has no gaps
    assert partial_reason({"gpu_coverage": "", "gpu_estimated": False}) is None  # not recorded: not known
    assert partial_reason({"gpu_coverage": 0.995, "gpu_estimated": False}) is None
    rows = pd.concat([_pair(), pd.DataFrame([_run("spikerl", 1, (10.0, 1.0), (1.0, 1.0), gpu_coverage=0.9)])])
    agg = aggregate_gpsup(rows, "popsan").set_index("method").loc["spikerl"]
    assert agg.speedup == 4.0 and agg.n_units == 1  # seed 1 is left out, seed 0 stands
    assert "spikerl seed 1 left out: partial meter coverage (gpu 90% < 99%)" in agg.gpsup_note


def _seeds(method: str, times: list[float], energies: list[float]) -> list[dict]:
    return [_run(method, k, (t, e), (1.0, 1.0)) for k, (t, e) in enumerate(zip(times, energies, strict=True))]


BASE_T, BASE_E = [100.0, 110.0, 95.0, 105.0], [20_000.0, 23_000.0, 19_000.0, 21_500.0]
CAND_T, CAND_E = [50.0, 60.0, 45.0, 52.0], [9_000.0, 11_500.0, 8_000.0, 10_000.0]


def test_bootstrap_interval_is_seeded_paired_and_pinned():
    rows = pd.DataFrame(_seeds("popsan", BASE_T, BASE_E) + _seeds("spikerl", CAND_T, CAND_E))
    a = aggregate_gpsup(rows, "popsan").set_index("method").loc["spikerl"]
    b = aggregate_gpsup(rows, "popsan").set_index("method").loc["spikerl"]
    assert a.speedup == pytest.approx(np.mean(BASE_T) / np.mean(CAND_T), rel=1e-12)
    for r in bootstrap.RATIOS:
        assert a[f"{r}_ci_low"] == b[f"{r}_ci_low"] and a[f"{r}_ci_low"] <= a[r] <= a[f"{r}_ci_high"]
    # pinned: scipy.stats.bootstrap, percentile, 2,000 paired resamples of the 4 seeds, seed 0
    assert (a.speedup_ci_low, a.speedup_ci_high) == pytest.approx(PINNED_SPEEDUP, abs=1e-9)
    assert (a.greenup_ci_low, a.greenup_ci_high) == pytest.approx(PINNED_GREENUP, abs=1e-9)
    # paired: a seed's two runs are resampled together, so a shared slow seed does not widen it
    base = bootstrap.Side(("0", "1", "2", "3"), np.array(BASE_T), np.array(BASE_E))
    same_order = bootstrap.Side(("0", "1", "2", "3"), np.array(BASE_T) / 2, np.array(BASE_E) / 4)
    ci = bootstrap.intervals(base, same_order)
    assert ci["speedup"] == pytest.approx((2.0, 2.0), rel=1e-12) and ci["greenup"] == pytest.approx((4.0, 4.0))
    unpaired = bootstrap.Side(("4", "5", "6", "7"), np.array(BASE_T) / 2, np.array(BASE_E) / 4)
    lo, hi = bootstrap.intervals(base, unpaired)["speedup"]
    assert lo < 2.0 < hi  # different seeds: each side resampled on its own


def test_one_seed_or_one_batch_has_no_interval_and_says_so():
    agg = aggregate_gpsup(_pair(), "popsan").set_index("method").loc["spikerl"]
    assert math.isnan(agg.speedup_ci_low) and agg.gpsup_note == "one seed on a side: no interval"
    # a seed batch of 3 is one measurement divided by 3: one unit, not three
    batch = [_run(m, k, (t, e), (1.0, 1.0), seed_batch=3, seed_batch_unit="0+1+2")
             for m, t, e in (("popsan", 100.0, 20_000.0), ("spikerl", 50.0, 9_000.0)) for k in range(3)]
    agg = aggregate_gpsup(pd.DataFrame(batch), "popsan").set_index("method").loc["spikerl"]
    assert agg.n_seeds == 3 and agg.n_units == 1 and math.isnan(agg.speedup_ci_low)
    assert agg.gpsup_note == "one batch on a side: no interval"


def test_greenup_is_speedup_over_powerup_everywhere():
    rows = pd.DataFrame(_seeds("popsan", BASE_T, BASE_E) + _seeds("spikerl", CAND_T, CAND_E))
    for phase in ("train", "run"):
        for out in (aggregate_gpsup(rows, "popsan", phase=phase), add_gpsup_columns(rows, "popsan", phase=phase)):
            ok = out.dropna(subset=["greenup"])
            assert len(ok) and np.all(np.abs(ok.greenup / (ok.speedup / ok.powerup) - 1) <= 1e-12)


def test_ratio_text():
    assert ratio_text(1.4231, 1.312, 1.549) == "1.42× (1.31–1.55)"
    assert ratio_text(1.4231) == "1.42×" and ratio_text(float("nan")) == "—"
    assert ratio_text(0.99, 0.95, 1.02, "model") == "0.99× (0.95–1.02) model"
    assert ratio_text(0.99, basis="measured") == "0.99×"


PINNED_SPEEDUP = (1.875, 2.081081081081081)
PINNED_GREENUP = (2.0459770114942533, 2.3088235294117645)


def test_compare_refuses_unequal_training_work_with_exit_2(tmp_path, capsys):
    from compare_fixtures import make_run

    from bench.cli.main import main

    rates = {(m, s): ([1000.0, 1000.0], [0.01, 0.01]) for m in ("popsan",) for s in (0, 1)}
    a = make_run(tmp_path / "a", rates, result_extra={"batch_size": 256})
    b = make_run(tmp_path / "b", rates, result_extra={"batch_size": 64})
    assert main(["compare", str(a), str(b)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["spikerl-bench: error: popsan/HalfCheetah-v4/seed0: not comparable: NEW used batch size 64, "
                   "BASE 256"]
    assert main(["compare", str(a), str(a), "--gpsup-phase", "run"]) == 0
    assert "GPS-UP of NEW against BASE (whole runs" in capsys.readouterr().out
    assert main(["compare", str(a), str(a)]) == 0
    assert "GPS-UP of NEW against BASE (training phase" in capsys.readouterr().out


def test_the_terminal_table_is_the_reports_ratio_of_means(tmp_path):
    from bench import schema
    from bench.run.plan import Plan
    from bench.run.summary import results_table

    rows = pd.DataFrame(_seeds("popsan", [100.0, 300.0], [1e4, 1.5e4]) + _seeds("mlp", [50.0, 50.0], [1e4, 1e4]))
    rows.to_csv(tmp_path / schema.SUMMARY, index=False)
    plan = Plan(methods=("popsan", "mlp"), envs=("E",), seeds=(0, 1), profile="smoke", total_steps=1000,
                device="cpu")
    text = results_table(tmp_path, plan)
    # speedup of the means 200 / 50 = 4.00×; powerup tells the aggregations apart: of the means
    # (1e4/50) / (1.25e4/200) = 3.20×, the mean of the per-seed ratios (2× and 4×) 3.00×
    mlp = next(line for line in text.splitlines() if line.strip().startswith("mlp"))
    assert "4.00× (" in mlp and "3.20× (" in mlp and "3.00×" not in mlp and mlp.rstrip().endswith("measured")


def test_a_plan_with_unequal_budgets_warns_once_before_training(tmp_path, capsys):
    from bench.run.plan import Plan, parse_method_set_options
    from bench.run.runner import create_run_folder
    from bench.run.work_check import unequal_work_warning

    equal = Plan(methods=("popsan", "mlp"), envs=("HalfCheetah-v4",), seeds=(0,), profile="smoke", total_steps=600,
                 device="cpu")
    assert unequal_work_warning(equal) is None
    unequal = Plan(methods=("popsan", "mlp"), envs=("HalfCheetah-v4",), seeds=(0,), profile="smoke",
                   total_steps=600, device="cpu", method_overrides=parse_method_set_options(["mlp:total_steps=900"]))
    create_run_folder(tmp_path / "run", unequal)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["spikerl-bench: warning: mlp on HalfCheetah-v4 has total_steps=900, the baseline popsan "
                   "total_steps=600: unequal training work, so GPS-UP will not compare them (set it alike: "
                   "--set mlp:total_steps=600)"]


@pytest.mark.parametrize("estimated, basis", [(True, "model"), (False, "measured")])
def test_the_report_writes_intervals_labels_a_model_basis_and_draws_it_hollow(tmp_path, estimated, basis):
    import json

    from report_fixtures import make_fixture_run

    from reports.build import build_report

    run = make_fixture_run(tmp_path / "run", estimated=estimated)
    paths = build_report(run, formats="html,json")
    html = paths[0].read_text(encoding="utf-8")
    rows = json.loads((run / "report.json").read_text())["gpsup_points"]["rows"]
    cand = [r for r in rows if r["method"] != "popsan" and r["speedup"] is not None]
    assert cand and all(r["gpsup_basis"] == basis and r["gpsup_phase"] == "train" for r in cand)
    assert all(r["greenup"] == pytest.approx(r["speedup"] / r["powerup"], rel=1e-12) for r in cand)
    with_ci = [r for r in cand if r["speedup_ci_low"] is not None]
    assert with_ci and all(r["speedup_ci_low"] <= r["speedup"] <= r["speedup_ci_high"] for r in with_ci)
    assert "GPS-UP of the training phase against popsan" in html and "Speedup (train)" in html
    svg = (run / "figures" / "gpsup.svg").read_text()
    if basis == "model":
        assert "× (" in html and " model" in html and "Hollow points" in html and 'id="hollow' in svg
        assert "no energy finding" in html and "uses less energy on" not in html
    else:
        assert "Hollow points" not in html and 'id="hollow' not in svg and 'id="filled' in svg


def test_a_folder_from_before_phases_says_so_and_reads_its_basis_from_the_components():
    old = pd.DataFrame([{"method": m, "env": "E", "seed": 0, "wall_s": t, "energy_j": e, "cpu_energy_j": e,
                         "cpu_estimated": False} for m, t, e in (("popsan", 100.0, 2e4), ("mlp", 50.0, 1e4))])
    train = aggregate_gpsup(old, "popsan").set_index("method").loc["mlp"]
    assert math.isnan(train.speedup) and "--gpsup-phase run" in train.gpsup_note
    run = aggregate_gpsup(old, "popsan", phase="run").set_index("method").loc["mlp"]
    assert run.speedup == 2.0 and run.gpsup_basis == "measured"  # RAPL, not estimated: a counter


def test_the_method_summary_names_the_phase_and_the_modelled_envs_in_its_ranges():
    from reports.facts import method_summaries
    from reports.format import Unit
    from reports.units import Units

    seeds = pd.DataFrame([{"method": m, "env": e, "seed": 0, "status": "complete", "final_return_mean": 1.0,
                           "energy_j": 100.0, "emissions_kg": 1e-5} for m in ("popsan", "mlp") for e in ("A", "B")])
    points = pd.DataFrame([{"method": "mlp", "env": "A", "speedup": 2.0, "greenup": 3.0, "gpsup_basis": "measured",
                            "gpsup_phase": "train"},
                           {"method": "mlp", "env": "B", "speedup": 1.5, "greenup": 1.5, "gpsup_basis": "model",
                            "gpsup_phase": "train"}])
    units = Units(Unit("s", 1.0), Unit("J", 1.0), Unit("W", 1.0), Unit("kg CO₂e", 1.0))
    line = method_summaries(seeds, points, ["popsan", "mlp"], ["A", "B"], "popsan", units)[1]
    assert "against popsan (train phase): speedup" in line
    assert "uses less energy on 1 of 1 env with measured energy" in line
    assert "the range includes 1 env(s) whose energy is partly or wholly from a power model" in line
