"""A seed batch written into K ordinary seed folders (bench.run.seed_batch_runner)."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from bench import schema
from bench.energy.callback import EnergyCallback
from bench.run import seed_batch_runner, store
from bench.run.plan import Plan
from spikerl.checkpoint import CHECKPOINT_NAME, load_checkpoint

SEEDS = (0, 1, 2)


class FakeMeter(EnergyCallback):
    """A process meter that reads 300 J, counts what reaches it, and changes nothing."""

    def __init__(self):
        super().__init__(codecarbon=False)
        self.calls: list[str] = []

    def on_train_start(self, info):
        self.calls.append(f"start {info.seed}")

    def on_progress(self, event):
        self.calls.append("progress")

    def on_eval_start(self, step, wall_s):
        self.calls.append("eval")

    def on_eval_end(self, event):
        self.calls.append("eval end")

    def on_train_end(self, event):
        self.calls.append(f"end {event.status}")

    def total_energy_j(self):
        return 300.0

    def result_fields(self):
        return {"energy_j": 300.0, "avg_power_w": 30.0, "cpu_energy_j": 300.0, "cpu_source": "estimate",
                "estimated": True, "emissions_kg": 3e-5, "foreign_cpu_share": 0.25, "train_energy_j": 240.0,
                "eval_energy_j": 60.0}


@pytest.mark.slow
def test_a_batch_fills_k_seed_folders_and_charges_each_a_kth_of_the_energy(tmp_path, monkeypatch):
    meter = FakeMeter()
    monkeypatch.setattr(seed_batch_runner, "extra_callbacks", lambda plan: ([meter], meter.total_energy_j))
    plan = Plan(methods=("mlp",), envs=("HalfCheetah-v4",), seeds=SEEDS, profile="smoke", total_steps=600,
                device="cpu", td3_overrides={"start_steps": 200, "update_after": 200, "eval_every": 300,
                                             "log_every": 150, "checkpoint_every": 300, "batch_size": 32,
                                             "critic_hidden": (32, 32), "max_ep_len": 100},
                actor_overrides={"hidden": (32, 32)})
    results = seed_batch_runner.run_seed_batch(tmp_path, plan, "mlp", "HalfCheetah-v4", SEEDS, plain=True)
    assert [r["status"] for r in results] == ["complete"] * 3
    assert len({r["param_sha256_by_rank"][0] for r in results}) == 3
    for seed, r in zip(SEEDS, results, strict=True):
        folder = store.seed_dir(tmp_path, "mlp", "HalfCheetah-v4", seed)
        saved = store.read_json(folder / schema.RESULT)
        assert saved["seed"] == seed and saved["seed_batch"] == 3 and saved["engine"] == "torch"  # mlp: no spikes
        assert saved["energy_j"] == pytest.approx(100.0) and saved["avg_power_w"] == pytest.approx(10.0)
        assert saved["train_energy_j"] == pytest.approx(80.0)
        # emissions from the seed's share of the energy, the plan's PUE (1.0) and its country's intensity
        assert saved["emissions_kg"] == pytest.approx(100.0 / 3.6e6 * saved["carbon_intensity_g_per_kwh"] / 1000)
        assert (saved["pue"], saved["carbon_intensity_source"]) == (1.0, "codecarbon-country")
        assert saved["foreign_cpu_share"] == 0.25 and saved["estimated"] is True  # shares are not split
        assert store.read_json(folder / schema.CONFIG)["seed_batch"] == 3
        assert saved["macs_per_action"] > 0  # the final actor's activity, read from its own checkpoint
        with open(folder / schema.PROGRESS) as f:
            rows = list(csv.DictReader(f))
        assert [int(r["step"]) for r in rows] == [150, 300, 450, 600]
        assert {float(r["energy_j"]) for r in rows} == {100.0}
        with open(folder / schema.EVALS) as f:
            assert [int(r["step"]) for r in csv.DictReader(f)] == [300, 600]
        assert load_checkpoint(folder / CHECKPOINT_NAME)["seed"] == seed
    # one meter for the process: started and stopped once, in eval time during every seed's evaluation
    assert meter.calls.count("start 0") == 1 and sum(c.startswith("start") for c in meter.calls) == 1
    assert meter.calls.count("end complete") == 1
    assert meter.calls.count("eval") == 2 * len(SEEDS) and meter.calls.count("progress") == 4


# ----------------------------------------------------------------------------- `spikerl-bench run --seed-batch K`

TINY = ["--profile", "smoke", "--methods", "mlp", "--total-steps", "300", "--plain",
        "--set", "start_steps=100", "--set", "update_after=100", "--set", "eval_every=300",
        "--set", "eval_episodes=5", "--set", "checkpoint_every=150", "--set", "max_ep_len=100",
        "--set", "critic_hidden=16,16", "--set", "actor.hidden=16,16"]


def _results(run):
    import json

    return {int(p.parent.name[len("seed"):]): json.loads(p.read_text())
            for p in sorted(run.glob("mlp/HalfCheetah-v4/seed*/result.json"))}


@pytest.fixture(scope="module")
def batched_run(tmp_path_factory):
    from bench.cli.main import main

    run = tmp_path_factory.mktemp("batched") / "run"
    assert main(["run", *TINY, "--seeds", "0,1", "--seed-batch", "2", "--out", str(run)]) == 0
    return run


@pytest.mark.slow
def test_the_cli_trains_seeds_in_batches_of_k(batched_run):
    r = _results(batched_run)
    assert sorted(r) == [0, 1] and {x["status"] for x in r.values()} == {"complete"}
    assert [r[s]["seed_batch"] for s in (0, 1)] == [2, 2] and r[1]["seed_batch_seeds"] == [0, 1]
    assert r[0]["energy_j"] == pytest.approx(r[1]["energy_j"])  # one process's energy, halved
    rows = list(csv.DictReader((batched_run / schema.SUMMARY).open()))
    assert [int(x["seed_batch"]) for x in rows] == [2, 2]
    cuts = Plan(methods=("mlp", "popsan"), envs=("HalfCheetah-v4",), seeds=(0, 1, 2, 3), profile="smoke",
                total_steps=10, device="cpu", seed_batch=2).batches()
    assert [[(m, s) for m, _, s in unit] for unit in cuts] == [
        [("mlp", 0), ("mlp", 1)], [("popsan", 0), ("popsan", 1)], [("mlp", 2), ("mlp", 3)],
        [("popsan", 2), ("popsan", 3)]]


@pytest.mark.slow
def test_every_seed_of_a_batch_is_charged_the_same_share_of_an_evaluation_round(batched_run):
    """The seeds evaluate one after another under one meter; each row is written once all have. (Rows
    written one by one differ by a seed's whole evaluation, 5 episodes here: several % of the run.)"""
    rows = {s: list(csv.DictReader((store.seed_dir(batched_run, "mlp", "HalfCheetah-v4", s) / schema.EVALS).open()))
            for s in (0, 1)}
    assert [r["step"] for r in rows[0]] == [r["step"] for r in rows[1]] and rows[0]
    for a, b in zip(rows[0], rows[1], strict=True):
        assert float(a["energy_j"]) > 0
        assert float(a["energy_j"]) == pytest.approx(float(b["energy_j"]), rel=1e-2)


@pytest.mark.slow
def test_the_report_finds_the_batch_meter_in_its_first_seed_folder_only(batched_run, tmp_path):
    """One meter per process: power.csv is in seed 0's folder. Seed 1 lacking one is no problem;
    seed 0 lacking it is, and so is a seed of no batch lacking it."""
    import json
    import shutil

    from reports.load import load_run

    def power_problems(run) -> list[str]:
        return sorted(p.path for p in load_run(run).problems if p.path.endswith(schema.POWER))

    first = store.seed_dir(batched_run, "mlp", "HalfCheetah-v4", 0)
    assert (first / schema.POWER).is_file()
    assert not (store.seed_dir(batched_run, "mlp", "HalfCheetah-v4", 1) / schema.POWER).exists()
    assert power_problems(batched_run) == []
    run = tmp_path / "run"
    shutil.copytree(batched_run, run)
    (store.seed_dir(run, "mlp", "HalfCheetah-v4", 0) / schema.POWER).unlink()
    assert power_problems(run) == ["mlp/HalfCheetah-v4/seed0/power.csv"]
    config = store.seed_dir(run, "mlp", "HalfCheetah-v4", 1) / schema.CONFIG
    cfg = json.loads(config.read_text())
    both = ["mlp/HalfCheetah-v4/seed0/power.csv", "mlp/HalfCheetah-v4/seed1/power.csv"]
    for bad in (["0", 1], [1, 1], [0, 1, 2], 0):  # not the writer's: trusted for nothing
        config.write_text(json.dumps({**cfg, "seed_batch_seeds": bad}))
        assert power_problems(run) == both
    config.write_text(json.dumps(cfg))
    shutil.rmtree(store.seed_dir(run, "mlp", "HalfCheetah-v4", 0))  # the meter's folder is gone
    assert power_problems(run) == ["mlp/HalfCheetah-v4/seed1/power.csv"]


@pytest.mark.slow
def test_the_power_chart_says_a_batch_trace_is_the_whole_process(batched_run):
    from reports import series
    from reports.load import load_run

    traces = series.power_traces(load_run(batched_run), "HalfCheetah-v4")
    assert [(s.seed, s.seed_batch) for s in traces.by_method["mlp"]] == [(0, 2)]
    html = (batched_run / "report.html").read_text()
    assert "is its whole process" in html and "all K = 2 seeds" in html


@pytest.mark.slow
def test_a_killed_batch_resumes_from_its_checkpoints(batched_run, tmp_path, capsys):
    import shutil

    from bench.cli.main import main

    run = tmp_path / "run"
    shutil.copytree(batched_run, run)
    before = _results(run)
    for s in (0, 1):
        (store.seed_dir(run, "mlp", "HalfCheetah-v4", s) / schema.RESULT).unlink()
    assert main(["run", "--resume", str(run)]) == 0
    after = _results(run)
    for s in (0, 1):
        assert after[s]["param_sha256_by_rank"] == before[s]["param_sha256_by_rank"]
    assert main(["run", "--resume", str(run), "--seed-batch", "3"]) == 2
    assert "drop --seed-batch" in capsys.readouterr().err


@pytest.mark.slow
def test_a_sweep_of_seed_batches_trains_what_the_inline_batches_train(batched_run, tmp_path):
    """--launcher local --jobs 2 with --seed-batch 2: one job per batch, the same parameters."""
    import os

    from bench.cli.main import main

    jobs = min(2, len(os.sched_getaffinity(0)))
    run = tmp_path / "run"
    assert main(["run", *TINY, "--seeds", "0-3", "--seed-batch", "2", "--out", str(run),
                 "--launcher", "local", "--jobs", str(jobs)]) == 0
    inline, swept = _results(batched_run), _results(run)
    assert {s: r["status"] for s, r in swept.items()} == dict.fromkeys(range(4), "complete")
    for s in (0, 1):  # the same batch [0, 1] as inline
        assert swept[s]["param_sha256_by_rank"] == inline[s]["param_sha256_by_rank"]
    assert len(list((run / "submitit").glob("*_submitted.pkl"))) == 2  # two batches, two jobs


@pytest.mark.parametrize("argv, needle", [
    (["--seed-batch", "0"], "--seed-batch must be 1 to"),
    (["--seed-batch", "2", "--nproc", "2"], "a seed batch is one process"),
    (["--seed-batch", "2", "--seeds", "0-2"], "do not split into batches of 2"),
])
def test_bad_seed_batches_are_refused_before_anything_is_written(argv, needle, tmp_path, capsys):
    from bench.cli.main import main

    out = tmp_path / "run"
    assert main(["run", *TINY, "--seeds", "0,1", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and not out.exists()


def _killed_batch_with_seed1_lost(batched_run: Path, tmp_path: Path) -> tuple[Path, dict[Path, bytes]]:
    """A copy of the batch as a kill leaves it (no results), seed 1's checkpoint gone; and its bytes."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(batched_run, run)
    for s in (0, 1):
        (store.seed_dir(run, "mlp", "HalfCheetah-v4", s) / schema.RESULT).unlink()
    (store.seed_dir(run, "mlp", "HalfCheetah-v4", 1) / CHECKPOINT_NAME).unlink()
    return run, {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_a_batch_whose_seeds_disagree_is_refused_before_anything_is_written(batched_run, tmp_path, capsys):
    from bench.cli.main import main

    run, before = _killed_batch_with_seed1_lost(batched_run, tmp_path)
    capsys.readouterr()
    assert main(["run", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "common step" in err and len(err.splitlines()) == 1
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_restart_seed_in_a_batch_whose_other_seed_resumes_moves_nothing(batched_run, tmp_path, capsys):
    """--restart-seed on one seed of a started batch: the batch cannot resume one seed from step 0 beside
    another from its checkpoint, so it is refused in one line, before the lost seed's folder is moved."""
    from bench.cli.main import main

    run, before = _killed_batch_with_seed1_lost(batched_run, tmp_path)
    capsys.readouterr()
    assert main(["run", "--resume", str(run), "--restart-seed"]) == 2
    err = capsys.readouterr().err.strip()
    assert "common step" in err and len(err.splitlines()) == 1
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert not list(store.seed_dir(run, "mlp", "HalfCheetah-v4", 1).parent.glob("seed1.lost-*"))
