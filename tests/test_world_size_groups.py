"""A plan whose methods default to different world sizes (SpikeRL on every GPU, the others on one)
trains each group at its own size, in one run folder, and finishes it once."""
from __future__ import annotations

import json

import pytest

import bench.cli.run as cli_run
from bench.cli.main import main

ARGS = ["--total-steps", "600", "--plain", "--set", "start_steps=200", "--set", "update_after=200",
        "--set", "eval_every=600", "--set", "eval_episodes=1", "--set", "checkpoint_every=0",
        "--set", "log_every=100", "--set", "max_ep_len=200", "--set", "critic_hidden=16,16",
        "--set", "actor.hidden=16,16", "--idle-window-s", "0"]


@pytest.mark.slow
def test_methods_with_different_world_sizes_share_one_run_folder(tmp_path, monkeypatch, capsys):
    # what `world_size_groups` gives for spikerl on a 2-GPU node, played on the CPU with Gloo ranks
    monkeypatch.setattr(cli_run, "world_size_groups", lambda plan, device: {2: ("popsan",), 1: ("mlp",)})
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    code = main(["run", "--methods", "popsan,mlp", "--device", "cpu", "--out", str(run), *ARGS])
    err = capsys.readouterr().err
    assert code == 0, err[-2000:]
    results = {m: json.loads((run / m / "HalfCheetah-v4" / "seed0" / "result.json").read_text())
               for m in ("popsan", "mlp")}
    assert results["popsan"]["world_size"] == 2 and results["mlp"]["world_size"] == 1
    assert all(r["status"] == "complete" and r["steps"] == 600 for r in results.values())
    a, b = results["popsan"]["param_sha256_by_rank"]
    assert a == b
    rows = (run / "summary.csv").read_text().splitlines()
    assert len(rows) == 3  # header + both runs, written once both groups were done
    assert (run / "report.html").is_file()
    assert "popsan: 2 rank(s)" in err and "mlp: 1 rank(s)" in err
    # the ranks of a group train only that group's methods
    assert not (run / "mlp" / "HalfCheetah-v4" / "seed0" / "checkpoint.step600.rank1.pt").exists()


def test_only_methods_is_for_launched_ranks_only(tmp_path, capsys):
    code = main(["run", "--methods", "mlp", "--only-methods", "mlp", "--out", str(tmp_path / "x"), *ARGS])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--only-methods" in err[0]
    assert not (tmp_path / "x").exists()
