"""The GPU path of a seed batch, run on the CPU through the eager stand-in for CUDA graphs.

- A whole training run whose bursts and acting go through `GraphedBurst`/`GraphedAct` with
  `EagerReplay` (capture, static buffers, replays: what a CUDA device runs) gives the same
  numbers as the plain eager run, for K = 1 (the single seed on CUDA) and K = 3, with the
  per-update draws (CPU default) and the fused per-burst draws (CUDA default).
- Fused draws: one call per seed per burst, shaped as the per-update draws, and seed k's draws
  come from its own generator only (the same in a batch of 1 and of 3).
- A single seed on a CUDA rank trains as a K = 1 batch (`single_seed_as_batch`), and such a run's
  folder has a single run's schema (forced here on the CPU).
"""
from __future__ import annotations

import csv
import json

import pytest
import torch
from harness_helpers import tiny_config, tiny_popsan_nets

from baselines.registry import get_method
from bench.run import seed_batch_runner, store
from spikerl.batch_loop import train_seed_batch
from spikerl.cuda_graphs import EagerReplay
from spikerl.seed_batch import BatchedTD3, SeedGenerators


def _cfg():
    # bursts of 20 updates at steps 160, 180, ..., 240 (two warm-ups, then captured at 200 and replayed);
    # acting graphed from its third step; evaluations at 200 and 250
    return tiny_config(total_steps=250, start_steps=150, update_after=150, update_every=20, eval_every=200,
                       eval_episodes=2, max_ep_len=60, checkpoint_every=0, batch_size=16, critic_hidden=(16, 16))


POISSON = ("popsan", "Hopper-v4", {"encoding": "poisson"})
MLP = ("mlp", "HalfCheetah-v4", {})
GRAPHED_CASES = [  # (method, env, actor settings, seeds, fused draws); the first is the CUDA single seed's path
    pytest.param(*POISSON, (4,), True),
    *(pytest.param(*case, seeds, fused, marks=pytest.mark.slow)
      for case in (POISSON, MLP) for seeds in ((4,), (0, 1, 2)) for fused in (False, True)
      if (case, seeds, fused) != (POISSON, (4,), True)),
]


@pytest.mark.parametrize("method,env_id,extra,seeds,fused", GRAPHED_CASES)
def test_a_graphed_run_gives_the_eager_runs_numbers(method, env_id, extra, seeds, fused):
    spec = get_method(method)
    params = {**spec.actor_params(env_id), "hidden": (16, 16), **extra}
    runs = [train_seed_batch(spec, env_id, seeds, _cfg(), params, workers=1, fused_draws=fused, graph_capture=capture)
            for capture in (None, EagerReplay)]
    for eager, graphed in zip(*runs, strict=True):
        assert eager.updates == graphed.updates == 5 * 20
        assert eager.param_sha256 == graphed.param_sha256
        assert [e.returns for e in eager.evals] == [e.returns for e in graphed.evals]


def _draws(seeds, fused: bool, n: int, updates: int = 0):
    actors, critics, cfg = tiny_popsan_nets(seeds, "poisson", 5, 2)
    td3 = BatchedTD3(actors, critics, cfg, 1.0, torch.device("cpu"), SeedGenerators.seeded(seeds, torch.device("cpu")),
                     fused_draws=fused)
    td3.updates = updates
    return td3.draw_burst(n, cfg.batch_size, 2)


@pytest.mark.parametrize("n,updates", [(50, 0), (7, 1), (1, 1)])
def test_fused_draws_are_shaped_as_the_per_update_draws_and_each_seeds_own(n, updates):
    fused, per_update = _draws((0, 1, 2), True, n, updates), _draws((0, 1, 2), False, n, updates)
    assert fused.eps.shape == per_update.eps.shape
    assert [u.shape for u in fused.target_u] == [u.shape for u in per_update.target_u]
    assert [u.shape for u in fused.actor_u] == [u.shape for u in per_update.actor_u]
    assert not torch.equal(fused.eps, per_update.eps)  # a different stream (documented)
    alone = _draws((1,), True, n, updates)  # seed 1 alone draws what it draws in the batch
    assert torch.equal(alone.eps[0], fused.eps[1])
    assert all(torch.equal(a[0], b[1]) for a, b in zip(alone.target_u + alone.actor_u,
                                                         fused.target_u + fused.actor_u, strict=True))


def test_single_seeds_train_as_batches_of_one_on_one_cuda_rank_only():
    assert seed_batch_runner.single_seed_as_batch(torch.device("cuda"), 1)
    assert not seed_batch_runner.single_seed_as_batch(torch.device("cuda"), 2)
    assert not seed_batch_runner.single_seed_as_batch(torch.device("cpu"), 1)



def test_a_plan_with_a_multi_rank_method_batches_no_single_seed(monkeypatch):
    # SpikeRL's data-parallel recipe on 2 GPUs stays on the eager loop, so the one-rank methods of
    # the same plan must too: a graphed loop is never compared with an eager one
    cuda = torch.device("cuda")
    monkeypatch.setattr(seed_batch_runner, "world_size_groups", lambda plan, device: {1: ("mlp", "popsan"),
                                                                                        2: ("spikerl",)})
    assert not seed_batch_runner.plan_batches_single_seeds(None, cuda)  # type: ignore[arg-type]
    monkeypatch.setattr(seed_batch_runner, "world_size_groups", lambda plan, device: {1: ("mlp", "popsan")})
    assert seed_batch_runner.plan_batches_single_seeds(None, cuda)  # type: ignore[arg-type]


TINY = ["--profile", "smoke", "--methods", "mlp", "--seeds", "0", "--total-steps", "200", "--plain",
        "--set", "start_steps=100", "--set", "update_after=100", "--set", "eval_every=200",
        "--set", "eval_episodes=1", "--set", "checkpoint_every=100", "--set", "max_ep_len=50",
        "--set", "critic_hidden=16,16", "--set", "actor.hidden=16,16"]


def _folder_schema(run) -> dict:
    folder = store.seed_dir(run, "mlp", "HalfCheetah-v4", 0)
    out: dict = {"files": sorted(p.name for p in folder.iterdir())}
    for name in ("config.json", "result.json"):
        out[name] = sorted(json.loads((folder / name).read_text()))
    for name in ("progress.csv", "evals.csv"):
        with (folder / name).open() as f:
            out[name] = next(csv.reader(f))
    out["checkpoint"] = sorted(torch.load(folder / "checkpoint.pt", weights_only=True))
    return out


@pytest.mark.slow
def test_a_batch_of_one_writes_a_single_runs_folder(tmp_path, monkeypatch):
    from bench.cli.main import main

    assert main(["run", *TINY, "--out", str(tmp_path / "single")]) == 0
    monkeypatch.setattr(seed_batch_runner, "single_seed_as_batch", lambda device, world_size: True)
    assert main(["run", *TINY, "--out", str(tmp_path / "k1")]) == 0
    single, k1 = _folder_schema(tmp_path / "single"), _folder_schema(tmp_path / "k1")
    result = json.loads((store.seed_dir(tmp_path / "k1", "mlp", "HalfCheetah-v4", 0) / "result.json").read_text())
    assert result["status"] == "complete" and result["seed_batch"] == 1 and result["steps"] == 200
    # the batch adds only what says it was one (its seeds; the checkpoint's batch index)
    assert k1["result.json"] == sorted(single["result.json"] + ["seed_batch_seeds", "seed_batch_unit"])
    assert k1["config.json"] == sorted(single["config.json"] + ["seed_batch_seeds", "seed_batch_unit"])
    assert k1["checkpoint"] == sorted(single["checkpoint"] + ["seed_batch"])
    for key in ("files", "progress.csv", "evals.csv"):
        assert k1[key] == single[key], key
