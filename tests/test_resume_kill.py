"""A run killed with SIGKILL and resumed ends exactly like an uninterrupted one."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow  # kills and resumes real runs in subprocesses

ARGS = ["run", "--methods", "mlp", "--total-steps", "2000", "--plain", "--idle-window-s", "0",
        "--set", "start_steps=300", "--set", "update_after=300", "--set", "eval_every=500",
        "--set", "eval_episodes=1", "--set", "checkpoint_every=600", "--set", "log_every=100",
        "--set", "max_ep_len=250", "--set", "critic_hidden=32,32", "--set", "actor.hidden=32,32"]


def cli(*argv, **kw):
    return subprocess.run([sys.executable, "-m", "bench.cli", *argv], capture_output=True, text=True,
                          timeout=600, **kw)


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def last_step(progress):
    try:
        r = rows(progress)
        return int(r[-1]["step"]) if r else 0
    except (OSError, KeyError, ValueError):
        return 0


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    full = tmp_path / "full"
    assert cli(*ARGS, "--out", str(full), cwd=tmp_path).returncode == 0

    cut = tmp_path / "cut"
    seed = cut / "mlp" / "HalfCheetah-v4" / "seed0"
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", *ARGS, "--out", str(cut)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    # kill after the first checkpoint (600) but well before the end, mid-way between checkpoints
    while last_step(seed / "progress.csv") < 900 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (seed / "result.json").exists()
    killed_at = last_step(seed / "progress.csv")
    assert 900 <= killed_at < 2000

    res = cli("run", "--resume", str(cut), "--plain", cwd=tmp_path)
    assert res.returncode == 0, res.stderr

    a = json.loads((full / "mlp/HalfCheetah-v4/seed0/result.json").read_text())
    b = json.loads((seed / "result.json").read_text())
    assert b["status"] == "complete"
    assert b["param_sha256_by_rank"] == a["param_sha256_by_rank"]
    assert b["final_return_mean"] == a["final_return_mean"] and b["steps"] == a["steps"] == 2000

    for name, cols in (("progress.csv", ["step", "episodes", "train_return", "updates"]),
                       ("evals.csv", ["step", "return_mean", "return_std"])):
        ra, rb = rows(full / "mlp/HalfCheetah-v4/seed0" / name), rows(seed / name)
        steps = [int(r["step"]) for r in rb]
        assert steps == sorted(set(steps)), f"{name}: a row is repeated or out of order"
        assert [[r[c] for c in cols] for r in rb] == [[r[c] for c in cols] for r in ra], name
