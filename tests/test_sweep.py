"""Sweeps through submitit (bench.run.sweep): local jobs pinned to their own cores give the same
runs as one process, summary.csv loses no row when runs finish together, a resume resubmits only
the unfinished runs, and the launcher's options are checked before anything is written."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path

import pytest

from bench import schema
from bench.cli.main import main
from bench.run import store
from bench.run.placement import TASK_ENV, TaskContext, current_task, job_id
from bench.run.plan import Plan, UsageError
from bench.run.summary import write_summary
from bench.run.sweep import local_slots
from bench.run.sweep_options import check_launcher, parse_time_min, slurm_options

TINY = ["--profile", "smoke", "--methods", "mlp", "--total-steps", "300", "--plain",
        "--set", "start_steps=100", "--set", "update_after=100", "--set", "eval_every=300",
        "--set", "eval_episodes=1", "--set", "checkpoint_every=150", "--set", "max_ep_len=100",
        "--set", "critic_hidden=16,16", "--set", "actor.hidden=16,16"]
JOBS = min(2, len(os.sched_getaffinity(0)))


def _results(run: Path) -> dict[tuple[str, int], dict]:
    out = {}
    for path in sorted(run.glob("*/*/seed*/result.json")):
        r = json.loads(path.read_text())
        out[(r["method"], r["seed"])] = r
    return out


@pytest.fixture(scope="module")
def inline_and_local(tmp_path_factory):
    """The same two-run sweep executed inline and through submitit's local executor."""
    root = tmp_path_factory.mktemp("sweep")
    inline, local = root / "inline", root / "local"
    assert main(["run", *TINY, "--seeds", "0,1", "--out", str(inline)]) == 0
    assert main(["run", *TINY, "--seeds", "0,1", "--out", str(local), "--launcher", "local",
                 "--jobs", str(JOBS)]) == 0
    return inline, local


@pytest.mark.slow
def test_parallel_runs_train_exactly_what_sequential_runs_train(inline_and_local):
    inline, local = inline_and_local
    a, b = _results(inline), _results(local)
    assert set(a) == set(b) == {("mlp", 0), ("mlp", 1)}
    for key in a:
        assert b[key]["status"] == "complete"
        assert b[key]["param_sha256_by_rank"] == a[key]["param_sha256_by_rank"], key
        assert b[key]["final_return_mean"] == a[key]["final_return_mean"]


@pytest.mark.slow
def test_each_local_job_owns_its_cores_and_says_where_it_ran(inline_and_local):
    inline, local = inline_and_local
    placements = [json.loads(p.read_text())["placement"] for p in sorted(local.glob("*/*/seed*/config.json"))]
    assert {p["launcher"] for p in placements} == {"local"}
    assert all(p["job_id"] and p["host"] for p in placements)
    assert all(len(p["cpus"]) == len(os.sched_getaffinity(0)) // JOBS for p in placements)
    if JOBS == 2:  # side by side on disjoint cores, and their machine energy attributed
        assert placements[0]["cpus"] != placements[1]["cpus"]
        for r in _results(local).values():
            assert r["concurrent_runs"] == 2 and 0 < r["attributed_share"] <= 1
            assert r["cpu_source"].endswith("+attributed") and r["ram_source"].endswith("+attributed")
            assert r["energy_j"] == pytest.approx(r["cpu_energy_j"] + r["ram_energy_j"])
    for r in _results(inline).values():  # the reference: one run at a time, nothing attributed
        assert r["concurrent_runs"] == 1 and r["attributed_share"] is None
        assert "attributed" not in r["energy_source"]
    inline_place = json.loads(next(inline.glob("*/*/seed0/config.json")).read_text())["placement"]
    assert inline_place["launcher"] == "inline" and inline_place["slot"] is None
    plan = json.loads((local / schema.PLAN).read_text())
    assert (plan["launcher"], plan["jobs"], plan["slurm"]) == ("local", JOBS, {})
    rows = (local / schema.SUMMARY).read_text().splitlines()
    assert len(rows) == 3 and (local / "report.html").exists()
    from bench.run.status import read_status  # what `spikerl-bench status` shows of the same runs

    seen = read_status(local)
    assert [r.placement.launcher for r in seen.runs] == ["local", "local"]
    assert sorted(r.placement.job_id for r in seen.runs) == sorted(p["job_id"] for p in placements)


@pytest.mark.slow
def test_resume_resubmits_only_the_unfinished_run(inline_and_local, tmp_path, capsys):
    import shutil

    _, local = inline_and_local
    run = tmp_path / "run"
    shutil.copytree(local, run)
    for p in (run / "report.html", run / "report.pdf"):
        p.unlink(missing_ok=True)
    before = {p.name for p in (run / "submitit").glob("*_submitted.pkl")}
    killed = run / "mlp" / "HalfCheetah-v4" / "seed1"
    sha = json.loads((killed / schema.RESULT).read_text())["param_sha256_by_rank"]
    (killed / schema.RESULT).unlink()  # as if killed after its last checkpoint
    capsys.readouterr()
    assert main(["run", "--resume", str(run)]) == 0
    err = capsys.readouterr().err
    assert "through the local launcher" in err and "sweep: 1 run(s)" in err
    after = {p.name for p in (run / "submitit").glob("*_submitted.pkl")}
    assert len(after - before) == 1
    assert json.loads((killed / schema.RESULT).read_text())["param_sha256_by_rank"] == sha
    assert (run / "report.html").exists()


# ----------------------------------------------------------------------------- summary under concurrency


def _finish_one(run_dir: str, plan_json: dict, seed: int, barrier) -> None:  # noqa: ANN001
    plan = Plan.from_json(plan_json)
    folder = store.seed_dir(Path(run_dir), "mlp", "HalfCheetah-v4", seed)
    folder.mkdir(parents=True, exist_ok=True)
    barrier.wait()  # every run completes at the same moment
    store.write_json(folder / schema.RESULT, {"method": "mlp", "env": "HalfCheetah-v4", "seed": seed,
                                              "status": "complete", "steps": 10, "wall_s": 1.0 + seed})
    write_summary(Path(run_dir), plan)


@pytest.mark.slow
def test_runs_finishing_together_lose_no_summary_row(tmp_path):
    n = 16
    plan = Plan(methods=("mlp",), envs=("HalfCheetah-v4",), seeds=tuple(range(n)), profile="smoke",
                total_steps=10, device="cpu")
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(n)
    procs = [ctx.Process(target=_finish_one, args=(str(tmp_path), plan.to_json(), s, barrier)) for s in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    import csv

    rows = list(csv.DictReader((tmp_path / schema.SUMMARY).open()))
    assert sorted(int(r["seed"]) for r in rows) == list(range(n))
    assert {r["status"] for r in rows} == {"complete"}  # the last writer saw every result


# ----------------------------------------------------------------------------- slots and options


def test_local_slots_are_disjoint_and_refuse_what_the_machine_lacks():
    slots = local_slots(3, 1, "cpu", cpus=range(8))
    assert [s.cpus for s in slots] == [(0, 1), (2, 3), (4, 5)]
    assert [s.gpus for s in slots] == [(), (), ()]
    gpu = local_slots(2, 2, "cuda", cpus=range(16), gpu_count=4, visible=None)
    assert [s.gpus for s in gpu] == [(0, 1), (2, 3)]
    inside = local_slots(2, 1, "cuda", cpus=range(16), gpu_count=2, visible="5,7")  # an allocation's GPUs
    assert [s.gpus for s in inside] == [(5,), (7,)]
    with pytest.raises(UsageError, match="UUID"):
        local_slots(2, 1, "cuda", cpus=range(16), gpu_count=2, visible="GPU-aaaa,GPU-bbbb")
    with pytest.raises(UsageError, match="2 CPU"):
        local_slots(3, 1, "cpu", cpus=[0, 1])
    with pytest.raises(UsageError, match="1 GPU"):
        local_slots(2, 1, "cuda", cpus=range(8), gpu_count=1)


def test_task_context_round_trips_and_malformed_is_an_inline_run():
    ctx = TaskContext(launcher="slurm", slot=None, concurrent_runs=8)
    assert current_task({TASK_ENV: ctx.to_env()}) == ctx
    for bad in ("{", '{"launcher": "x"}', '{"launcher": "local", "concurrent_runs": 0}', "[]",
                '{"launcher": "local", "slot": -1}'):
        assert current_task({TASK_ENV: bad}) == TaskContext()
    assert job_id({"SLURM_ARRAY_JOB_ID": "77", "SLURM_ARRAY_TASK_ID": "3", "SLURM_JOB_ID": "80"}) == "77_3"
    assert job_id({"SLURM_JOB_ID": "80"}) == "80" and job_id({}) is None


def test_slurm_options_become_single_tokens():
    opts = slurm_options(partition="gpu", time="1-02:30:00", gpus_per_task=1, mem="16g", account="proj",
                         extra=["constraint=a100", "--mail-type=END"])
    assert opts == {"partition": "gpu", "time_min": 1590, "gpus_per_task": 1, "mem": "16G", "account": "proj",
                    "extra": {"constraint": "a100", "mail-type": "END"}}
    check_launcher("slurm", 4, opts)
    assert parse_time_min("90") == 90 and parse_time_min("1:00:01") == 61
    for bad in (dict(extra=["constraint=a\nrm -rf /"]), dict(extra=["array=0-3"]), dict(extra=["novalue"]),
                dict(partition="a b"), dict(time="soon"), dict(time="0"), dict(mem="lots"),
                dict(qos="x;y"), dict(cpus_per_task=0)):
        with pytest.raises(UsageError):
            slurm_options(**bad)
    for launcher, jobs, slurm in (("inline", 2, {}), ("local", 1, {"partition": "gpu"}), ("nope", 1, {}),
                                  ("slurm", 0, {}), ("slurm", 1, {"extra": {"x": "a b"}}),
                                  ("slurm", 1, {"time_min": "1"}), ("slurm", 1, {"bogus": 1})):
        with pytest.raises(UsageError):
            check_launcher(launcher, jobs, slurm)


@pytest.mark.parametrize("argv, needle", [
    (["--jobs", "2"], "choose --launcher local or slurm"),
    (["--launcher", "local", "--jobs", "0"], "--jobs must be 1 to"),
    (["--launcher", "local", "--slurm-partition", "gpu"], "need --launcher slurm"),
    (["--launcher", "slurm", "--slurm-opt", "output=/etc/x"], "set by spikerl-bench itself"),
    (["--launcher", "local", "--jobs", "1024", "--seeds", "0-1023"], "cannot give each of 1024 runs"),
])
def test_bad_sweep_flags_are_one_line_and_write_nothing(capsys, tmp_path, argv, needle):
    out = tmp_path / "run"
    code = main(["run", *TINY, "--out", str(out), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and len(err.splitlines()) == 1
    assert not out.exists()


@pytest.mark.slow
def test_resume_refuses_launcher_flags(capsys, inline_and_local):
    inline, _ = inline_and_local
    assert main(["run", "--resume", str(inline), "--launcher", "local"]) == 2
    assert "drop --launcher" in capsys.readouterr().err


def test_the_report_marks_attributed_energy_and_says_how_it_was_split():
    import pandas as pd

    from reports.tables import account_table

    def row(method: str, seed: int, attributed: bool) -> dict:
        tag = "+attributed" if attributed else ""
        return {**dict.fromkeys(schema.SUMMARY_COLUMNS, float("nan")), "method": method, "env": "HalfCheetah-v4",
                "seed": seed, "status": "complete", "wall_s": 10.0,
                "gpu_energy_j": None, "cpu_energy_j": 10.0, "ram_energy_j": 20.0, "energy_j": 30.0,
                "gpu_source": None, "cpu_source": "estimate" + tag, "ram_source": "estimate" + tag,
                "gpu_estimated": None, "cpu_estimated": True, "ram_estimated": True,
                "codecarbon_energy_kwh": 30.0 / 3.6e6, "codecarbon_energy_ratio": 1.0,
                "carbon_intensity_g_per_kwh": 400.0, "emissions_kg": 30.0 / 3.6e6 * 0.4,
                "codecarbon_emissions_kg": 30.0 / 3.6e6 * 0.4, "estimated": True, "energy_source": "estimate" + tag,
                "concurrent_runs": 2 if attributed else 1, "attributed_share": 0.4 + 0.1 * seed if attributed else None}

    parallel = account_table(pd.DataFrame([row("popsan", 0, True), row("popsan", 1, True)]), ["popsan"])
    cells = [c.text for c in parallel.rows[0]]
    assert any(t.endswith("(est., attr.)") for t in cells[1:4])
    note = next(n for n in parallel.notes if n.startswith("attr.:"))
    assert "up to 2 runs at once" in note and "shares 0.40–0.50" in note
    alone = account_table(pd.DataFrame([row("popsan", 0, False)]), ["popsan"])
    assert not any("attr." in c.text for c in alone.rows[0]) and not any(n.startswith("attr.") for n in alone.notes)


# ----------------------------------------------------------------------------- SLURM (fake cluster on PATH)


def _wait_for(predicate, timeout_s: float = 90.0, what: str = "") -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


@pytest.mark.slow
def test_slurm_job_array_kill_and_resume_through_the_real_launcher(tmp_path, inline_and_local, capsys):
    """submitit's generated array script runs on the fake cluster: one task per run, at most
    --jobs at once; a task killed mid-run fails, `--resume` resubmits only it, and it finishes
    from its checkpoint with the parameters an uninterrupted run reaches; the task completing the
    last run builds the report."""
    from tests.fake_slurm import FakeSlurm

    inline, _ = inline_and_local
    run = tmp_path / "run"
    with FakeSlurm(tmp_path / "slurm", kill_wait_s=1) as slurm:
        assert main(["run", *TINY, "--seeds", "0,1", "--total-steps", "600", "--out", str(run),
                     "--launcher", "slurm", "--jobs", "2", "--slurm-partition", "debug", "--slurm-time", "30",
                     "--slurm-opt", "comment=spikerl-test"]) == 0
        assert "follow it with: spikerl-bench status" in capsys.readouterr().err
        (array,) = slurm.job_ids()
        script = next((run / "submitit").rglob("*_submission.sh")).read_text()
        assert "#SBATCH --array=0-1%2" in script and "#SBATCH --partition=debug" in script
        assert "#SBATCH --comment=spikerl-test" in script and "#SBATCH --time=30" in script
        victim = run / "mlp" / "HalfCheetah-v4" / "seed1"
        _wait_for(lambda: (victim / "checkpoint.pt").exists() or any(victim.glob("checkpoint*")),
                  what="seed 1 never checkpointed")
        slurm.kill(f"{array}_1")
        slurm.wait(timeout_s=120)
        states = {t.job_id: t.state for t in slurm.tasks(array)}
        assert states == {f"{array}_0": "COMPLETED", f"{array}_1": "FAILED"}, states
        assert not (victim / schema.RESULT).exists() and not (run / "report.html").exists()

        assert main(["run", "--resume", str(run)]) == 0
        resubmitted = [j for j in slurm.job_ids() if j != array]
        assert len(resubmitted) == 1 and len(slurm.tasks(resubmitted[0])) == 1
        slurm.wait(timeout_s=120)
    results = _results(run)
    assert {k: r["status"] for k, r in results.items()} == {("mlp", 0): "complete", ("mlp", 1): "complete"}
    placement = json.loads((victim / "config.json").read_text())["placement"]
    assert placement["launcher"] == "slurm" and placement["job_id"].split("_")[0] == resubmitted[0]
    assert (run / "report.html").exists() and (run / "submitit" / "finished").exists()
    # the killed run, finished from its checkpoint, against the same run trained without a break
    uninterrupted = tmp_path / "uninterrupted"
    assert main(["run", *TINY, "--seeds", "1", "--total-steps", "600", "--out", str(uninterrupted)]) == 0
    assert results[("mlp", 1)]["param_sha256_by_rank"] == _results(uninterrupted)[("mlp", 1)]["param_sha256_by_rank"]


@pytest.mark.slow
def test_a_preempted_slurm_task_is_requeued_and_resumes(tmp_path):
    """SLURM's warning signal (USR2) before preemption: submitit checkpoints the task and requeues
    it (`scontrol requeue`); the new attempt continues the run from its last checkpoint."""
    from tests.fake_slurm import FakeSlurm

    run = tmp_path / "run"
    with FakeSlurm(tmp_path / "slurm", kill_wait_s=1) as slurm:
        assert main(["run", *TINY, "--seeds", "0", "--total-steps", "900", "--out", str(run),
                     "--launcher", "slurm"]) == 0
        (job,) = slurm.job_ids()  # one run: submitit submits a plain job, not an array of one
        folder = run / "mlp" / "HalfCheetah-v4" / "seed0"
        _wait_for(lambda: any(folder.glob("checkpoint*")), what="never checkpointed")
        slurm.signal(job, "USR2")
        _wait_for(lambda: len(slurm.task(job).attempts) >= 1, what="never requeued")
        slurm.wait(timeout_s=120)
        task = slurm.task(job)
    assert task.state == "COMPLETED" and task.attempts[0]["state"] == "REQUEUED"
    assert _results(run)[("mlp", 0)]["status"] == "complete"
    progress = (folder / schema.PROGRESS).read_text().splitlines()
    steps = [int(float(line.split(",")[0])) for line in progress[1:]]
    assert steps == [250, 500, 750]  # resumed: no row lost or repeated
    assert _results(run)[("mlp", 0)]["steps"] == 900
    uninterrupted = tmp_path / "uninterrupted"
    assert main(["run", *TINY, "--seeds", "0", "--total-steps", "900", "--out", str(uninterrupted)]) == 0
    assert _results(run)[("mlp", 0)]["param_sha256_by_rank"] == \
        _results(uninterrupted)[("mlp", 0)]["param_sha256_by_rank"]


@pytest.mark.slow
def test_a_run_another_process_is_training_is_left_to_it(inline_and_local, tmp_path, capsys):
    """`status` calls a silent run stalled; a --resume while its task still trains must not train it
    a second time in the same folder."""
    import shutil
    import subprocess
    import sys

    inline, _ = inline_and_local
    run = tmp_path / "run"
    shutil.copytree(inline, run)
    folder = run / "mlp" / "HalfCheetah-v4" / "seed1"
    (folder / schema.RESULT).unlink()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom bench.run.store import RunLock\n"
        f"assert RunLock({str(folder)!r}).acquire()\nprint('held', flush=True)\ntime.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = sorted(p.name for p in folder.iterdir())
        capsys.readouterr()
        assert main(["run", "--resume", str(run)]) == 1
        assert "being trained by another process" in capsys.readouterr().err
        assert sorted(p.name for p in folder.iterdir()) == before and not (folder / schema.RESULT).exists()
    finally:
        holder.kill()
        holder.wait()
    assert main(["run", "--resume", str(run)]) == 0  # the lock died with its process
    assert json.loads((folder / schema.RESULT).read_text())["status"] == "complete"


def test_plan_json_slurm_options_are_rebuilt_not_trusted(tmp_path):
    """Values read back from plan.json reach the sbatch script only through the flags' own checks."""
    from bench.run.sweep_options import normalised_slurm

    for bad in ({"extra": {"\nreboot\n": "x"}}, {"mem": "16G\n"}, {"partition": 5}, {"gpus_per_task": "2"},
                {"account": ["a"]}, {"extra": {"comment": "\n/tmp/evil"}}, {"time_min": True}, {"extra": []},
                {"qos": "High"} | {"qos": " high"}, "gpu"):
        with pytest.raises(UsageError):
            normalised_slurm(bad)
    good = slurm_options(partition="gpu", time="30:00", mem="16g", extra=["constraint=a100"])
    assert good["time_min"] == 30 and normalised_slurm(good) == good  # sbatch reads 30:00 as M:S


def test_a_slurm_folder_path_with_a_control_character_is_refused(tmp_path, capsys):
    from tests.fake_slurm import FakeSlurm

    with FakeSlurm(tmp_path / "slurm"):
        out = tmp_path / "run\nreboot"
        assert main(["run", *TINY, "--out", str(out), "--launcher", "slurm"]) == 2
        assert "control character" in capsys.readouterr().err and not out.exists()
        bad_opt = tmp_path / "run2"  # an option sbatch refuses: one line, and no folder left behind
        assert main(["run", *TINY, "--out", str(bad_opt), "--launcher", "slurm", "--slurm-opt", "frobnicate=1"]) == 2
        err = capsys.readouterr().err
        assert "sbatch refused the job array" in err and "Traceback" not in err and not bad_opt.exists()


@pytest.mark.slow
def test_the_submitit_folder_must_be_private(inline_and_local, tmp_path):
    import shutil

    from bench.run.sweep import private_submitit_dir

    _, local = inline_and_local
    run = tmp_path / "run"
    shutil.copytree(local, run)
    assert private_submitit_dir(run).stat().st_mode & 0o022 == 0
    (run / "submitit").chmod(0o777)
    with pytest.raises(UsageError, match="writable by others"):
        private_submitit_dir(run)
    shutil.rmtree(run / "submitit")
    (run / "submitit").symlink_to(tmp_path)
    with pytest.raises(UsageError, match="link"):
        private_submitit_dir(run)
