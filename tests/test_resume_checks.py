"""Resume (issue 12, points 3 and 4): power.csv is cut back to the checkpoint like the other
logs, and a run folder whose config, plan and checkpoint disagree is refused untouched."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.cli.main import main
from bench.run.resume import ResumePoint, cut_power_csv
from bench.schema import POWER_COLUMNS

REPO = Path(__file__).resolve().parents[1]
SEED = Path("mlp") / "HalfCheetah-v4" / "seed0"
ARGS = ["run", "--methods", "mlp", "--total-steps", "20000", "--plain", "--power-interval", "0.02",
        "--idle-window-s", "0",
        "--set", "start_steps=300", "--set", "update_after=300", "--set", "eval_every=5000",
        "--set", "eval_episodes=1", "--set", "checkpoint_every=5000", "--set", "log_every=100",
        "--set", "max_ep_len=250", "--set", "critic_hidden=64,64", "--set", "actor.hidden=32,32"]
"""Checkpoints several seconds apart: the power trace is flushed every few seconds, and the kill
must come after a flush of rows past the latest checkpoint."""


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _last_step(progress):
    try:
        r = _rows(progress)
        return int(r[-1]["step"]) if r else 0
    except (OSError, KeyError, ValueError):
        return 0


def _assert_monotonic_trace(path):
    rows = _rows(path)
    assert rows
    t = [float(r["t_s"]) for r in rows]
    assert all(a <= b for a, b in pairwise(t)), "t_s steps back"
    by_device = {}
    for r in rows:
        by_device.setdefault(r["device"], []).append(float(r["energy_j"]))
    for dev, e in by_device.items():
        assert all(a <= b for a, b in pairwise(e)), f"cumulative energy of {dev} drops"


def _rows_past_checkpoint(seed):
    try:
        wall = torch.load(seed / "checkpoint.pt", weights_only=True)["loop"]["wall_s"]
        return max(float(r["t_s"]) for r in _rows(seed / "power.csv")) > wall
    except (OSError, RuntimeError, KeyError, ValueError, EOFError):
        return False


@pytest.mark.slow
def test_power_csv_is_cut_back_to_the_checkpoint_on_resume(tmp_path):
    run = tmp_path / "run"
    seed = run / SEED
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", *ARGS, "--out", str(run)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 300
    # kill once power rows past the checkpoint were written (the trace is flushed every few seconds)
    while time.time() < deadline and proc.poll() is None and not _rows_past_checkpoint(seed):
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (seed / "result.json").exists()
    assert _rows_past_checkpoint(seed), "no power row after the checkpoint to cut"

    res = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--resume", str(run), "--plain"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr
    assert json.loads((seed / "result.json").read_text())["status"] == "complete"
    _assert_monotonic_trace(seed / "power.csv")


def test_cut_power_csv_keeps_the_prefix_up_to_the_checkpoint(tmp_path):
    path = tmp_path / "power.csv"
    header = ",".join(POWER_COLUMNS) + "\n"
    rows = ["0.100,cpu,10.000,1.0000,estimate,True,0,0.000\n",
            "0.200,cpu,10.000,2.0000,estimate,True,0,0.000\n",
            "0.300,cpu,10.000,3.0000,estimate,True,0,0.000\n",  # energy beyond the checkpoint's
            "0.250,cpu,10.000,2.5000,estimate,True,0,0.000\n",
            "0.400,cpu,10.0"]  # cut short by a kill
    path.write_text(header + "".join(rows))
    cut_power_csv(path, ResumePoint(step=600, wall_s=0.35, energy_j_by_device={"cpu": 2.6}))
    assert path.read_text() == header + "".join(rows[:2])
    cut_power_csv(path, ResumePoint(step=600, wall_s=0.15, energy_j_by_device={"cpu": 9.0}))
    assert path.read_text() == header + rows[0]
    cut_power_csv(path, ResumePoint(step=600, wall_s=9.0, energy_j_by_device={}))  # device unknown: from 0
    assert path.read_text() == header
    other = "time,watts\n1,2\n"  # another schema is left for PowerCsv to move aside
    path.write_text(other)
    cut_power_csv(path, ResumePoint(step=600, wall_s=0.0, energy_j_by_device={}))
    assert path.read_text() == other


@pytest.fixture
def killed_run(tmp_path):
    """A finished tiny run with its result removed, as if killed after its last checkpoint."""
    run = tmp_path / "run"
    code = main(["run", "--methods", "mlp", "--total-steps", "400", "--plain", "--profile", "smoke",
                 "--set", "start_steps=100", "--set", "update_after=100", "--set", "eval_every=200",
                 "--set", "eval_episodes=1", "--set", "checkpoint_every=200", "--set", "max_ep_len=100",
                 "--set", "critic_hidden=16,16", "--set", "actor.hidden=16,16", "--out", str(run)])
    assert code == 0
    (run / SEED / "result.json").unlink()
    return run


def _files(root):
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _refused(capsys, run, needle):
    before = _files(run)
    capsys.readouterr()
    assert main(["run", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert _files(run) == before


@pytest.mark.slow
def test_resume_refuses_an_edited_learning_rate(killed_run, capsys):
    path = killed_run / SEED / "config.json"
    config = json.loads(path.read_text())
    config["td3"]["lr_actor"] = 0.5
    path.write_text(json.dumps(config))
    _refused(capsys, killed_run, "lr_actor")


@pytest.mark.slow
def test_resume_refuses_a_budget_below_the_checkpoint(killed_run, capsys):
    for rel in ("plan.json", SEED / "config.json"):
        data = json.loads((killed_run / rel).read_text())
        (data["td3"] if "td3" in data else data)["total_steps"] = 200
        (killed_run / rel).write_text(json.dumps(data))
    _refused(capsys, killed_run, "beyond the run's total_steps 200")


@pytest.mark.slow
def test_resume_refuses_a_checkpoint_of_another_network(killed_run, capsys):
    path = killed_run / SEED / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    w = state["td3"]["critic"]
    key = sorted(w)[0]
    w[key] = torch.zeros(*w[key].shape[:-1], w[key].shape[-1] * 2)  # wider layers, labels unchanged
    torch.save(state, path)
    _refused(capsys, killed_run, "critic does not have the configured network's shape")


@pytest.mark.slow
def test_resume_refuses_a_checkpoint_of_another_method(killed_run, capsys):
    path = killed_run / SEED / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    state["method"] = "popsan"
    torch.save(state, path)
    _refused(capsys, killed_run, "popsan")


@pytest.mark.slow
def test_resume_refuses_a_checkpoint_with_numpys_replay_sampler(killed_run, capsys):
    # a checkpoint written before replay indices moved to torch generators holds numpy's state as
    # JSON bytes; resuming it could not continue the same index stream, so it is refused up front
    from spikerl.replay import rng_state_to_tensor

    path = killed_run / SEED / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    state["replay"]["rng"] = rng_state_to_tensor(np.random.default_rng(0))
    torch.save(state, path)
    _refused(capsys, killed_run, "replay sampler")


@pytest.mark.slow
def test_an_untouched_killed_run_still_resumes(killed_run, capsys):
    assert main(["run", "--resume", str(killed_run)]) == 0
    assert json.loads((killed_run / SEED / "result.json").read_text())["status"] == "complete"
    _assert_monotonic_trace(killed_run / SEED / "power.csv")
