"""`spikerl-bench compare`: the statistics on worked examples, the rules, exact exit codes, the
markdown and github-action-benchmark JSON outputs, configuration refusal, bad input, and the
example CI workflows' shell steps run end to end on real runs."""
from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from bench import schema
from bench.cli import main
from bench.compare import noise
from bench.compare.load import progress_windows
from bench.compare.rules import DEFAULT_RULES, METRICS, RuleError, Verdict, judge, parse_rule, parse_rules
from tests.compare_fixtures import edit_json, make_run
from tools.doctor_run import doctor

REPO = Path(__file__).resolve().parents[1]
SPS = [100.0, 104.0, 96.0, 102.0, 98.0, 101.0]
EPS = [0.050, 0.052, 0.048, 0.051, 0.049, 0.050]


def _run(tmp_path: Path, name: str, factor_sps: float = 1.0, factor_eps: float = 1.0, **kw) -> Path:
    rates = {(m, s): ([x * factor_sps for x in SPS], [x * factor_eps for x in EPS])
             for m in ("popsan", "mlp") for s in (0, 1)}
    return make_run(tmp_path / name, rates, **kw)


def _compare(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["compare", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------- rules

def test_rules_parse_with_their_direction():
    r = parse_rule("sps:-10%")
    assert (r.metric.name, r.threshold, r.relative) == ("sps", pytest.approx(0.10), True)
    r = parse_rule("energy_per_step:+7.5%")
    assert (r.metric.name, r.threshold, r.relative) == ("energy_per_step", pytest.approx(0.075), True)
    r = parse_rule("return:-100")
    assert (r.threshold, r.relative) == (100.0, False)
    assert str(parse_rule("avg_power:15%")) == "avg_power:+15%"
    assert parse_rules(["none"]) == ()
    assert [str(r) for r in DEFAULT_RULES] == ["sps:-10%", "energy_per_step:+10%"]


@pytest.mark.parametrize("text, needle", [
    ("sps:+10%", "write sps:-10%"),            # sps is higher-is-better: a regression is a drop
    ("energy_per_step:-10%", "write energy_per_step:+10%"),
    ("speed:-10%", "unknown metric"),
    ("sps", "malformed"),
    ("sps:-0%", "positive"),
])
def test_bad_rules_say_how_to_fix_them(text, needle):
    with pytest.raises(RuleError, match=re.escape(needle)):
        parse_rule(text)


def test_two_rules_for_one_metric_are_refused():
    with pytest.raises(RuleError, match="two rules for sps"):
        parse_rules(["sps:-10%,sps:-5%"])


def test_verdicts_worked_examples():
    sps = parse_rule("sps:-10%")
    assert judge(sps, -0.05, (-0.08, -0.02)) is Verdict.OK                 # within the threshold
    assert judge(sps, -0.20, (-0.25, -0.15)) is Verdict.REGRESSION          # all of the interval beyond
    assert judge(sps, -0.20, (-0.30, -0.05)) is Verdict.TOO_NOISY           # reaches back inside
    assert judge(sps, -0.20, None) is Verdict.REGRESSION                    # no noise estimate: threshold only
    assert judge(sps, +0.50, (0.4, 0.6)) is Verdict.OK                      # faster is never a regression
    energy = parse_rule("energy_per_step:+10%")
    assert judge(energy, 0.12, (0.105, 0.14)) is Verdict.REGRESSION
    assert judge(energy, 0.12, (0.09, 0.14)) is Verdict.TOO_NOISY
    assert judge(energy, math.nan, None) is Verdict.NOT_GATED               # e.g. a zero baseline


# ----------------------------------------------------------------------------- statistics

def test_progress_windows_skip_warmup_and_evaluations():
    rows = [{"step": "250", "wall_s": "0.05", "updates": "0", "energy_j": "1.0"},
            {"step": "500", "wall_s": "0.30", "updates": "0", "energy_j": "2.0"},
            {"step": "750", "wall_s": "2.80", "updates": "250", "energy_j": "27.0"},   # after warm-up: skipped
            {"step": "1000", "wall_s": "5.30", "updates": "500", "energy_j": "52.0"},  # 100 sps, 0.1 J/step, 10 W
            {"step": "1250", "wall_s": "9.30", "updates": "750", "energy_j": "72.0"},  # contains the eval: skipped
            {"step": "x", "wall_s": "9.5", "updates": "", "energy_j": ""},              # garbage row: dropped
            {"step": "1500", "wall_s": "11.80", "updates": "1000", "energy_j": "97.0"}]
    w = progress_windows(rows, eval_walls=[7.0])
    assert list(w.sps) == [(750, 1000), (1250, 1500)]
    assert w.sps[(750, 1000)] == pytest.approx(100.0)
    assert w.energy_per_step[(750, 1000)] == pytest.approx(0.1)
    assert w.avg_power[(750, 1000)] == pytest.approx(10.0)


def test_paired_windows_scaled_exactly_give_an_exact_interval():
    base = {(i, i + 1): v for i, v in enumerate([90.0, 100.0, 110.0, 95.0])}
    new = {k: 0.8 * v for k, v in base.items()}
    e = noise.estimate_windowed([base], [new], [0], [0])
    assert e.ratio == pytest.approx(0.8)
    assert e.ratio_ci == pytest.approx((0.8, 0.8))  # the same windows drawn on both sides
    assert e.noise == "windows"


def test_unpaired_ratio_of_medians_matches_the_exact_bootstrap():
    """Three windows a side, different step ranges (so drawn independently). The median of a
    resample of three is the smallest value with probability 7/27 (two or three draws of it),
    so the 2.5 % and 97.5 % points of the ratio are min(new)/max(base) and max(new)/min(base),
    each with probability (7/27)^2 = 6.7 % > 2.5 %."""
    base = {(0, 1): 90.0, (1, 2): 100.0, (2, 3): 110.0}
    new = {(10, 11): 72.0, (11, 12): 80.0, (12, 13): 88.0}
    e = noise.estimate_windowed([base], [new], [0], [0], n_boot=4000)
    assert (e.base, e.new, e.ratio) == (100.0, 80.0, pytest.approx(0.8))
    assert e.ratio_ci == pytest.approx((72 / 110, 88 / 90))
    # the rule sees -20 % but an interval reaching -2.2 %: too noisy to decide
    rule = parse_rule("sps:-10%")
    assert judge(rule, e.change(True), e.change_ci(True)) is Verdict.TOO_NOISY


def test_repeats_widen_the_interval():
    """Two seeds that disagree: the hierarchical bootstrap draws whole seeds, so the interval
    covers the seed-to-seed shift that the windows alone do not show."""
    s0 = {(i, i + 1): 100.0 + i for i in range(5)}
    s1 = {(i, i + 1): 130.0 + i for i in range(5)}
    windows_only = noise.estimate_windowed([s0], [s1], [0], [1])
    repeats = noise.estimate_windowed([s0, s1], [s1, s0], [0, 1], [1, 0])
    assert repeats.noise == "windows+repeats"
    width = lambda e: e.ratio_ci[1] - e.ratio_ci[0]  # noqa: E731
    assert width(repeats) > width(windows_only)


def test_a_dropped_empty_repeat_unpairs_the_sides_rather_than_pairing_different_seeds():
    """BASE's seed 1 and NEW's seed 0 have no windows: left are BASE seed 0 and NEW seed 1, which
    must be drawn independently, not as a pair (the ids no longer name the units one to one)."""
    s0 = {(i, i + 1): v for i, v in enumerate([90.0, 100.0, 110.0, 95.0, 105.0])}
    s1 = {k: 0.8 * v for k, v in s0.items()}
    e = noise.estimate_windowed([s0, {}], [{}, s1], [0, 1], [0, 1])
    assert e == noise.estimate_windowed([s0], [s1])  # unpaired
    assert e.ratio_ci != pytest.approx((0.8, 0.8))  # what pairing seed 0 with seed 1 window by window gives


def test_too_few_windows_give_no_interval():
    few = {(0, 1): 100.0, (1, 2): 90.0}
    e = noise.estimate_windowed([few], [few], [0], [0])
    assert e.ratio_ci is None and e.noise == "none"


def test_return_interval_from_paired_repeats_and_from_episodes():
    e = noise.estimate_totals([100.0, 200.0], [90.0, 180.0], [0, 1], [0, 1], use_mean=True)
    # paired resamples of two seeds: both seed 0 (-10), one each (-15), both seed 1 (-20)
    assert e.diff == pytest.approx(-15.0) and e.diff_ci == pytest.approx((-20.0, -10.0))
    e = noise.estimate_totals([-100.0], [-150.0], use_mean=True, spread=((20.0, 4), (20.0, 4)))
    half = 1.959964 * math.sqrt(20 ** 2 / 4 + 20 ** 2 / 4)
    assert e.diff_ci == pytest.approx((-50 - half, -50 + half), rel=1e-5) and e.noise == "episodes"
    assert e.change_ci(True) == pytest.approx(((-50 - half) / 100, (-50 + half) / 100), rel=1e-5)


def test_intervals_are_reproducible():
    a = {(i, i + 1): float(v) for i, v in enumerate(np.random.default_rng(1).normal(100, 10, 12))}
    b = {(i, i + 1): float(v) for i, v in enumerate(np.random.default_rng(2).normal(95, 10, 12))}
    assert noise.estimate_windowed([a], [b], [0], [0]) == noise.estimate_windowed([a], [b], [0], [0])


# ----------------------------------------------------------------------------- the command

def test_same_run_passes(tmp_path, capsys):
    a = _run(tmp_path, "a")
    code, out, err = _compare(capsys, a, a)
    assert code == 0, out + err
    assert "no regression (rules: sps:-10%, energy_per_step:+10%; 95% intervals)" in out


def test_a_run_30_percent_slower_and_hungrier_fails_naming_both(tmp_path, capsys):
    a = _run(tmp_path, "a")
    slow = doctor(a, tmp_path / "slow", time_f=1.3, energy_f=1.3)
    code, out, err = _compare(capsys, a, slow)
    assert code == 1, out + err
    assert "REGRESSION in sps, energy_per_step" in out
    assert "popsan HalfCheetah-v4 2 seeds: sps -23.1% [-23.1%, -23.1%] beyond sps:-10%" in out
    assert "energy_per_step +30.0% [+30.0%, +30.0%] beyond energy_per_step:+10%" in out
    assert "7 (red)" in out  # GPS-UP: slower at equal power


def test_a_change_within_the_threshold_passes_and_one_beyond_fails(tmp_path, capsys):
    a = _run(tmp_path, "a")
    code, out, _ = _compare(capsys, a, _run(tmp_path, "b", factor_sps=0.95))
    assert code == 0 and "-5.0% ▼" in out  # beyond the noise, within the threshold
    code, out, _ = _compare(capsys, a, _run(tmp_path, "c", factor_sps=0.85))
    assert code == 1 and "REGRESSION in sps (rules" in out and "beyond energy_per_step" not in out


def test_noisy_windows_are_reported_as_too_noisy_not_failed(tmp_path, capsys):
    a = _run(tmp_path, "a")
    rng = np.random.default_rng(0)
    noisy = {(m, s): ([x * 0.85 * float(rng.uniform(0.5, 1.6)) for x in SPS], EPS)
             for m in ("popsan", "mlp") for s in (0, 1)}
    b = make_run(tmp_path / "b", noisy)
    code, out, _ = _compare(capsys, a, b)
    assert code == 0, out
    assert "too noisy to decide" in out.split("GPS-UP")[-1]


def test_a_busier_machine_holds_a_timing_verdict_back(tmp_path, capsys):
    a = _run(tmp_path, "a", result_extra={"foreign_cpu_share": 0.02})
    busy = doctor(_run(tmp_path, "b", result_extra={"foreign_cpu_share": 0.45}), tmp_path / "busy", 1.5, 1.5)
    code, out, _ = _compare(capsys, a, busy)
    assert code == 0, out
    assert ("popsan HalfCheetah-v4 2 seeds: sps -33.3% [-33.3%, -33.3%] (sps:-10%): other processes used 2% "
            "of the CPU during BASE and 45% during NEW") in out
    quiet = doctor(_run(tmp_path, "c", result_extra={"foreign_cpu_share": 0.05}), tmp_path / "quiet", 1.5, 1.5)
    assert _compare(capsys, a, quiet)[0] == 1


def test_the_gate_decides_on_pooled_seeds(tmp_path, capsys):
    a = _run(tmp_path, "a")
    code, out, _ = _compare(capsys, a, a)
    assert "popsan HalfCheetah-v4 seed0" in out and "(per seed)" in out
    assert "popsan HalfCheetah-v4 2 seeds" in out


def test_a_run_new_did_not_complete_fails(tmp_path, capsys):
    a = _run(tmp_path, "a")
    b = _run(tmp_path, "b", status={("mlp", 1): "failed"})
    code, out, _ = _compare(capsys, a, b)
    assert code == 1
    assert "mlp/HalfCheetah-v4/seed1 is failed in NEW (RuntimeError: fixture) but complete in BASE" in out


def test_fail_on_none_only_reports(tmp_path, capsys):
    a = _run(tmp_path, "a")
    slow = doctor(a, tmp_path / "slow", time_f=2.0, energy_f=2.0)
    code, out, _ = _compare(capsys, a, slow, "--fail-on", "none")
    assert code == 0 and "none (report only)" in out


def test_zero_baseline_energy_is_not_a_regression(tmp_path, capsys):
    a = make_run(tmp_path / "a", {("mlp", 0): (SPS, [0.0] * len(SPS))})
    b = make_run(tmp_path / "b", {("mlp", 0): (SPS, EPS)})
    code, out, _ = _compare(capsys, a, b)
    assert code == 0, out
    line = next(ln for ln in out.splitlines() if "energy_per_step (" in ln)
    assert "—" in line and "not gated" in line


# ----------------------------------------------------------------------------- configurations

def test_a_config_difference_is_refused_in_one_line(tmp_path, capsys):
    a = _run(tmp_path, "a")
    b = _run(tmp_path, "b", td3={"batch_size": 256})
    code, out, err = _compare(capsys, a, b)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "td3.batch_size: 100 in BASE, 256 in NEW" in err
    assert "--allow-config-diff" in err
    code, out, err = _compare(capsys, a, b, "--allow-config-diff")
    assert code == 0 and "configurations differ (compared anyway, --allow-config-diff):" in out
    assert "td3.batch_size: 100 in BASE, 256 in NEW (mlp/HalfCheetah-v4/seed0 and 3 more)" in out


@pytest.mark.parametrize("extra, needle", [
    ({"energy_source": "estimate", "estimated": True}, "energy_source"),
    ({"engine": "torch-compile"}, "engine"),       # a newer writer's column that says how the run ran
    ({"world_size": 2}, "world_size"),
    ({"seed_batch": 2}, "seed_batch"),  # against a folder from before the field: one seed per process
])
def test_result_fields_that_say_how_a_run_ran_must_match(tmp_path, capsys, extra, needle):
    base_extra = {"engine": "eager"} if "engine" in extra else {}
    a = _run(tmp_path, "a", result_extra=base_extra)
    b = _run(tmp_path, "b", result_extra=extra)
    code, _, err = _compare(capsys, a, b)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_a_different_machine_is_a_config_difference(tmp_path, capsys):
    code, _, err = _compare(capsys, _run(tmp_path, "a"), _run(tmp_path, "b", cpu_model="Other CPU"))
    assert code == 2 and "machine.cpu_model: Fixture CPU in BASE, Other CPU in NEW" in err


def test_where_a_run_executed_is_no_difference_but_runs_beside_it_are(tmp_path, capsys):
    here = {"host": "a", "pid": 1, "launcher": "local", "job_id": "7", "slot": 0, "cpus": [0],
            "cuda_visible_devices": None, "concurrent_runs": 2}
    there = {**here, "host": "b", "pid": 99, "job_id": "123_4", "slot": 1, "cpus": [1]}
    a = _run(tmp_path, "a", placement=here)
    assert _compare(capsys, a, _run(tmp_path, "b", placement=there))[0] == 0
    code, _, err = _compare(capsys, a, _run(tmp_path, "c", placement={**here, "concurrent_runs": 1}))
    assert code == 2 and "placement.concurrent_runs: 2 in BASE, 1 in NEW" in err


def test_a_column_only_one_side_has_is_no_difference(tmp_path, capsys):
    a = _run(tmp_path, "a")
    b = _run(tmp_path, "b", result_extra={"engine": "eager", "foreign_cpu_share": 0.1})
    code, out, _ = _compare(capsys, a, b)
    assert code == 0, out


# ----------------------------------------------------------------------------- summary.csv and JSON inputs

def _summary_rows(run: Path) -> list[dict]:
    return [json.loads((run / m / "HalfCheetah-v4" / f"seed{s}" / schema.RESULT).read_text())
            for m in ("popsan", "mlp") for s in (0, 1)]


def _write_summary(path: Path, rows: list[dict], **extra: object) -> Path:
    cols = list(schema.SUMMARY_COLUMNS) + list(extra)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**{k: ("" if v is None else v) for k, v in r.items()}, **extra})
    return path


def test_summary_csv_and_json_exports_compare_whole_runs(tmp_path, capsys):
    a = _run(tmp_path, "a")
    slow = doctor(a, tmp_path / "slow", time_f=1.3, energy_f=1.3)
    sa = _write_summary(tmp_path / "a.csv", _summary_rows(a), engine="eager", carbon_intensity_g_per_kwh=369.5)
    ss = _write_summary(tmp_path / "slow.csv", _summary_rows(slow), engine="eager", carbon_intensity_g_per_kwh=400)
    code, out, err = _compare(capsys, sa, sa)
    assert code == 0, out + err
    assert "repeats (2/2 runs)" in out  # the two seeds are the only noise estimate
    code, out, _ = _compare(capsys, sa, ss)
    assert code == 1 and "REGRESSION in sps, energy_per_step" in out
    (tmp_path / "slow.json").write_text(json.dumps({"runs": _summary_rows(slow)}))
    code, out, _ = _compare(capsys, sa, tmp_path / "slow.json")
    assert code == 1 and "REGRESSION in sps, energy_per_step" in out
    other = _write_summary(tmp_path / "other.csv", _summary_rows(a), engine="compiled")
    code, _, err = _compare(capsys, sa, other)
    assert code == 2 and "engine: eager in BASE, compiled in NEW" in err


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("make_new, needle", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: (p / "x.txt").write_text("hi") and p / "x.txt", "expected a run folder"),
    (lambda p: (p / "x.json").write_text("{not json") and p / "x.json", "corrupt"),
    (lambda p: (p / "x.json").write_text("[1, 2]") and p / "x.json", "expected a list of run records"),
    (lambda p: (p / "s.csv").write_text("method,env\nmlp,Hopper-v4\n") and p / "s.csv", "no column 'seed'"),
    (lambda p: (p / "s.json").write_text(json.dumps([{"method": "../x", "env": "e", "seed": 0}])) and p / "s.json",
     "valid method"),
    (lambda p: p / "empty_dir", "not a spikerl-bench run folder"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, make_new, needle):
    a = _run(tmp_path, "a")
    (tmp_path / "empty_dir").mkdir()
    code, out, err = _compare(capsys, a, make_new(tmp_path))
    assert code == 2, out + err
    assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err


def test_bad_rules_and_no_common_runs_exit_2(tmp_path, capsys):
    a = _run(tmp_path, "a")
    code, _, err = _compare(capsys, a, a, "--fail-on", "sps:+10%")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "write sps:-10%" in err
    other = make_run(tmp_path / "other", {("dsrl", 5): (SPS, EPS)})
    code, _, err = _compare(capsys, a, other)
    assert code == 2 and "nothing to compare" in err


def test_a_traversing_plan_is_refused(tmp_path, capsys):
    a = _run(tmp_path, "a")
    b = _run(tmp_path, "b")
    edit_json(b / schema.PLAN, seeds=["0/../../x"])
    code, _, err = _compare(capsys, a, b)
    assert code == 2 and "seeds" in err


# ----------------------------------------------------------------------------- CI outputs

def test_markdown_file_and_step_summary(tmp_path, capsys, monkeypatch):
    a = _run(tmp_path, "a")
    slow = doctor(a, tmp_path / "slow", time_f=1.3, energy_f=1.3)
    summary = tmp_path / "step_summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code, _, _ = _compare(capsys, a, slow, "--markdown", tmp_path / "c.md")
    assert code == 1
    md = (tmp_path / "c.md").read_text()
    assert md.startswith("### spikerl-bench compare: ❌ regression")
    assert "| run | metric | BASE | NEW | change | 95% CI | noise from | verdict |" in md
    assert "| popsan HalfCheetah-v4 2 seeds | sps (env steps/s) | 100.5 | 77.31 | -23.1% ▼ |" in md
    assert "| method | env | seeds | speedup | powerup | greenup | category |" in md
    assert summary.read_text() == "earlier step\n" + md + "\n"  # appended, not overwritten
    summary.write_text("")
    _compare(capsys, a, a, "--no-step-summary")
    assert summary.read_text() == ""


def _check_custom_format(entries: list) -> None:
    """github-action-benchmark's custom tools: a list of {name, unit, value[, range][, extra]}."""
    assert isinstance(entries, list) and entries
    names = [e["name"] for e in entries]
    assert len(set(names)) == len(names)
    for e in entries:
        assert set(e) <= {"name", "unit", "value", "range", "extra"}
        assert isinstance(e["name"], str) and isinstance(e["unit"], str) and e["unit"]
        assert isinstance(e["value"], (int, float)) and not isinstance(e["value"], bool) and math.isfinite(e["value"])
        assert isinstance(e.get("range", "± 0"), str) and e.get("range", "± 0").startswith("± ")
        assert isinstance(e.get("extra", ""), str)


def test_json_is_github_action_benchmark_custom_format(tmp_path, capsys):
    a = _run(tmp_path, "a")
    slow = doctor(a, tmp_path / "slow", time_f=1.3, energy_f=1.3)
    code, _, _ = _compare(capsys, a, slow, "--json", tmp_path / "c.json")
    assert code == 1
    data = json.loads((tmp_path / "c.json").read_text())
    assert set(data) == {"customBiggerIsBetter", "customSmallerIsBetter"}
    for entries in data.values():
        _check_custom_format(entries)
    bigger = {e["name"]: e for e in data["customBiggerIsBetter"]}
    smaller = {e["name"]: e for e in data["customSmallerIsBetter"]}
    assert set(bigger) == {f"{m} HalfCheetah-v4 {METRICS[k].label}" for m in ("popsan", "mlp")
                           for k in ("sps", "return")}
    assert set(smaller) == {f"{m} HalfCheetah-v4 {METRICS[k].label}" for m in ("popsan", "mlp")
                            for k in ("energy_per_step", "avg_power")}
    sps = bigger["popsan HalfCheetah-v4 env steps/s"]
    assert sps["unit"] == "env steps/s" and sps["value"] == pytest.approx(float(np.median(SPS)) / 1.3)
    assert "regression (sps:-10%)" in sps["extra"]
    assert smaller["mlp HalfCheetah-v4 energy per env step"]["value"] == pytest.approx(float(np.median(EPS)) * 1.3)


def test_help_has_worked_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "spikerl-bench compare runs/base runs/new" in out and "sps:-10%" in out


# ----------------------------------------------------------------------------- real runs and the CI workflows

class _LoadWatch:
    """The highest 1-minute load average seen while it runs: above the CPU count, other processes
    competed with the runs, and two honest runs need not be comparable (docs/guides/ci-gate.md, "How good the
    gate is on a shared runner")."""

    def __init__(self) -> None:
        self.peak = os.getloadavg()[0]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, os.getloadavg()[0])

    def __enter__(self) -> "_LoadWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, os.getloadavg()[0])

    @property
    def busy(self) -> bool:
        return self.peak > (os.cpu_count() or 1)


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory):
    """Two honest runs of this code (mlp, smoke budget: 1500 steps, 250-step windows), a doctored
    copy of the first, and how busy the machine was meanwhile."""
    root = tmp_path_factory.mktemp("real")
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    runs = []
    with _LoadWatch() as load:
        for name in ("a", "b"):
            subprocess.run([sys.executable, "-m", "bench.cli", "run", "--profile", "smoke", "--methods", "mlp",
                            "--out", str(root / name), "--plain"], cwd=root, env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
            runs.append(root / name)
    runs.append(doctor(runs[0], root / "slow", time_f=1.3, energy_f=1.3))
    return (*runs, load)


@pytest.mark.slow
@pytest.mark.serial
def test_real_runs_same_honest_and_doctored(real_runs, capsys):
    a, b, slow, load = real_runs
    assert _compare(capsys, a, a)[0] == 0
    code, out, _ = _compare(capsys, a, slow)
    assert code == 1 and "REGRESSION in sps, energy_per_step" in out, out
    # Two honest 5-second runs on a VM differ by up to ~22 % in steps/s even when nothing else runs
    # (measured in this project's CI: 277 vs 216 steps/s, foreign CPU 1 % and 0.5 %): a whole run can
    # land in a slower stretch of the host, which no statistic of the run itself can tell from slower
    # code. The honest pair must therefore pass rules set above that spread; the default 10 % rules
    # are held to the doctored copy above, and their false-alarm rate is measured with the ci profile
    # (docs/guides/ci-gate.md, "How good the gate is on a shared runner").
    code, out, _ = _compare(capsys, a, b, "--fail-on", "sps:-35%,energy_per_step:+35%")
    if code == 1 and load.busy:
        pytest.skip(f"other processes shared the machine (load average up to {load.peak:.1f} on "
                    f"{os.cpu_count()} CPUs): two honest runs were not comparable here")
    assert code == 0, out  # noise is not a regression


def _workflow_steps(path: Path) -> dict[str, str]:
    """The `run:` script of every named step of a GitHub Actions workflow (block scalars dedented)."""
    steps: dict[str, str] = {}
    lines = path.read_text().splitlines()
    name = None
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("- name:"):
            name = stripped.split(":", 1)[1].strip()
        elif stripped.startswith("run:") and name and not stripped.startswith("#"):
            value = stripped.split(":", 1)[1].strip()
            if value != "|":
                steps[name] = value
            else:
                indent = len(line) - len(line.lstrip())
                block = []
                i += 1
                while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                    block.append(lines[i])
                    i += 1
                steps[name] = textwrap.dedent("\n".join(block)) + "\n"
                continue
        i += 1
    return steps


def _gitlab_script(path: Path) -> list[str]:
    """The items of the benchmark job's `script:` list (block scalars dedented)."""
    lines = path.read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.strip() == "script:") + 1
    items: list[str] = []
    i = start
    while i < len(lines) and (not lines[i].strip() or lines[i].startswith("    ")):
        s = lines[i].strip()
        if s == "- |":
            block = []
            i += 1
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith("      ")):
                block.append(lines[i])
                i += 1
            items.append(textwrap.dedent("\n".join(block)) + "\n")
            continue
        if s.startswith("- "):
            items.append(s[2:])
        i += 1
    return items


def _ci_env(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "spikerl-bench"  # the console script, pointing at this checkout
    shim.write_text(f'#!/bin/sh\nPYTHONPATH="{REPO}" exec "{sys.executable}" -m bench.cli "$@"\n')
    shim.chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", BASELINE_DIR="spikerl-baseline", NEW_DIR="spikerl-new",
               GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"), GITHUB_OUTPUT=str(tmp_path / "output.txt"),
               CI_DEFAULT_BRANCH="main")
    return env


def _sh(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-e", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.serial
def test_github_workflow_shell_steps_end_to_end(real_runs, tmp_path):
    a, _, slow, _ = real_runs  # the rerun that must pass is a copy: the steps, not the machine, are tested
    steps = _workflow_steps(REPO / "examples" / "ci" / "github-actions.yml")
    assert {"Install", "Machine key", "Benchmark (ci profile)", "Compare with the baseline",
            "Split the benchmark JSON for github-action-benchmark", "Make this run the baseline"} <= set(steps)
    assert "--profile ci" in steps["Benchmark (ci profile)"]
    env = _ci_env(tmp_path)
    work = tmp_path / "checkout"
    work.mkdir()

    r = _sh(steps["Machine key"], work, env)
    assert r.returncode == 0 and Path(env["GITHUB_OUTPUT"]).read_text().startswith("key=")

    # first run on main: no baseline yet; the run becomes the baseline
    shutil.copytree(a, work / "spikerl-new")
    r = _sh(steps["Compare with the baseline"], work, env)
    assert r.returncode == 0 and "No baseline run" in Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert _sh(steps["Make this run the baseline"], work, env).returncode == 0
    assert (work / "spikerl-baseline" / schema.PLAN).is_file()

    # a pull request that changes nothing: passes, posts the summary, and feeds the charts
    shutil.rmtree(work / "spikerl-new")
    shutil.copytree(a, work / "spikerl-new")
    r = _sh(steps["Compare with the baseline"], work, env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "### spikerl-bench compare: ✅ no regression" in Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert _sh(steps["Split the benchmark JSON for github-action-benchmark"], work, env).returncode == 0
    for name in ("bench-bigger.json", "bench-smaller.json"):
        _check_custom_format(json.loads((work / name).read_text()))

    # a pull request that is 30 % slower and hungrier: the step fails
    shutil.rmtree(work / "spikerl-new")
    shutil.copytree(slow, work / "spikerl-new")
    r = _sh(steps["Compare with the baseline"], work, env)
    assert r.returncode == 1 and "REGRESSION in sps, energy_per_step" in r.stdout


@pytest.mark.slow
@pytest.mark.serial
def test_gitlab_script_end_to_end(real_runs, tmp_path):
    a, _, slow, _ = real_runs
    script = _gitlab_script(REPO / "examples" / "ci" / "gitlab-ci.yml")
    hosted = [s for s in script if "pip install" in s or "curl" in s or "spikerl-bench run" in s]
    assert len(hosted) == 3  # install, fetch the baseline artifact (GitLab's API), benchmark
    compare_step = next(s for s in script if "spikerl-bench compare" in s)
    env = _ci_env(tmp_path)
    for new, expected in ((a, 0), (slow, 1)):
        work = tmp_path / f"job-{new.name}"
        work.mkdir()
        shutil.copytree(a, work / "spikerl-baseline")  # what the artifact download leaves
        shutil.copytree(new, work / "spikerl-new")
        r = _sh(compare_step, work, env)
        assert r.returncode == expected, r.stdout + r.stderr
        assert (work / "compare.md").is_file() and (work / "compare.json").is_file()
