"""A seed batch's groups on threads (spikerl.seed_groups): each group is the batch of its seeds
alone, the draws keep every seed's own stream, a failing group fails the call without leaving a
thread running, and torch's thread count comes back. (That each seed still matches its single
run with groups, and resumes bit-exactly, is in tests/test_seed_batch.py.)"""
from __future__ import annotations

import threading
import time

import pytest
import torch
from harness_helpers import tiny_config, tiny_popsan_nets

from baselines.registry import get_method
from spikerl import native_lib
from spikerl.batch_loop import train_seed_batch
from spikerl.callbacks import Callback
from spikerl.seed_batch import BatchedTD3, BurstInputs, SeedGenerators
from spikerl.seed_groups import SeedGroups, group_bounds

SEEDS = (0, 1, 2, 3, 4)
OBS, ACT = 5, 2
CPU = torch.device("cpu")


def _nets(seeds, encoding="poisson"):
    return tiny_popsan_nets(seeds, encoding, OBS, ACT)


def _inputs(td3, n: int, batch_size: int, gen: torch.Generator) -> BurstInputs:
    rows, K = n * batch_size, len(SEEDS)
    return BurstInputs(torch.randn(K, rows, OBS, generator=gen).clamp(-3, 3),
                       torch.rand(K, rows, ACT, generator=gen) * 2 - 1, torch.randn(K, rows, generator=gen),
                       torch.randn(K, rows, OBS, generator=gen).clamp(-3, 3),
                       (torch.rand(K, rows, generator=gen) < 0.1).float(), td3.draw_burst(n, batch_size, ACT))


@pytest.mark.parametrize("seeds,groups,expected", [
    (8, 2, [(0, 4), (4, 8)]), (5, 2, [(0, 3), (3, 5)]), (3, 8, [(0, 1), (1, 2), (2, 3)]), (4, 1, [(0, 4)]),
    (7, 3, [(0, 3), (3, 5), (5, 7)]), (2, 0, [(0, 2)]),
])
def test_group_bounds_cut_the_seeds_into_contiguous_near_equal_groups(seeds, groups, expected):
    assert group_bounds(seeds, groups) == expected


@pytest.mark.slow
def test_each_group_trains_as_the_batch_of_its_seeds_alone():
    """Groups [0, 1, 2] and [3, 4] on two threads against two plain batches of the same seeds:
    the same draws, the same actions and, after bursts spanning actor steps, the same bits."""
    actors, critics, cfg = _nets(SEEDS)
    groups = SeedGroups(actors, critics, cfg, 1.0, CPU, SeedGenerators.seeded(SEEDS, CPU), workers=2,
                        per_seed_actor=True)
    alone = [BatchedTD3(actors[a:b], critics[a:b], cfg, 1.0, CPU, SeedGenerators.seeded(SEEDS[a:b], CPU),
                        per_seed_actor=True) for a, b in group_bounds(len(SEEDS), 2)]
    assert groups.workers == 2 and groups.bounds == [(0, 3), (3, 5)]
    gen = torch.Generator().manual_seed(7)
    try:
        with native_lib.engine("native"):
            for n in (3, 1, 2):
                inputs = _inputs(groups, n, cfg.batch_size, gen)
                for (a, b), td3 in zip(groups.bounds, alone, strict=True):
                    own = td3.draw_burst(n, cfg.batch_size, ACT)  # each seed's stream, drawn alone
                    assert torch.equal(own.eps, inputs.draws.eps[a:b])
                    assert all(torch.equal(x, y[a:b]) for x, y in zip(own.target_u, inputs.draws.target_u, strict=True))
                    td3.update_burst(BurstInputs(inputs.obs[a:b], inputs.act[a:b], inputs.rew[a:b],
                                                 inputs.next_obs[a:b], inputs.terminated[a:b], own))
                groups.update_burst(inputs)
            assert groups.updates == 6
            obs = torch.randn(len(SEEDS), 1, OBS, generator=gen)
            acted = groups.act(obs)
        for k in range(len(SEEDS)):
            g, j = (alone[0], k) if k < 3 else (alone[1], k - 3)
            mine, theirs = groups.seed_state_dict(k), g.seed_state_dict(j)
            for net in ("actor", "critic", "actor_target", "critic_target"):
                assert all(torch.equal(mine[net][n], theirs[net][n]) for n in theirs[net])
            assert groups.losses(k) == g.losses(j)
        with native_lib.engine("native"):
            expected = torch.cat([td3.act(obs[a:b]) for (a, b), td3 in zip(groups.bounds, alone, strict=True)])
        assert torch.equal(acted, expected)
    finally:
        groups.close()


def test_a_failing_group_fails_the_call_only_once_the_other_groups_are_done():
    """Group 0 (the caller's thread) fails at once while group 1 (a pool thread) is still
    updating: the error surfaces only after group 1 has finished, so nothing trains on behind it."""
    actors, critics, cfg = _nets(SEEDS[:4], encoding="deterministic")
    groups = SeedGroups(actors, critics, cfg, 1.0, CPU, SeedGenerators.seeded(SEEDS[:4], CPU), workers=2)
    finished = threading.Event()

    def fails(inputs):
        raise ValueError("group 0 broke")

    def slow(inputs, original=groups.groups[1].update_burst):
        time.sleep(0.5)
        original(inputs)
        finished.set()

    groups.groups[0].update_burst = fails
    groups.groups[1].update_burst = slow
    try:
        with pytest.raises(ValueError, match="group 0 broke"), native_lib.engine("torch"):
            groups.update_burst(_four(groups, cfg))
        assert finished.is_set()
        assert groups.groups[1].updates == 1
    finally:
        groups.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("seed-group")]


def _four(groups, cfg) -> BurstInputs:
    gen = torch.Generator().manual_seed(1)
    rows, K = cfg.batch_size, 4
    return BurstInputs(torch.randn(K, rows, OBS, generator=gen), torch.rand(K, rows, ACT, generator=gen),
                       torch.randn(K, rows, generator=gen), torch.randn(K, rows, OBS, generator=gen),
                       torch.zeros(K, rows), groups.draw_burst(1, rows, ACT))


def test_a_batch_in_groups_gives_torch_its_thread_count_back(tmp_path):
    spec = get_method("mlp")
    cfg = tiny_config(total_steps=60, start_steps=30, update_after=30, eval_every=60, max_ep_len=30,
                      checkpoint_every=0)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = []

        class Probe(Callback):
            key = "probe"

            def on_train_start(self, info):
                seen.append(torch.get_num_threads())

        results = train_seed_batch(spec, "HalfCheetah-v4", [0, 1, 2], cfg, {"hidden": (16, 16)},
                                   callbacks=[[Probe()], [], []])
        assert seen == [1]  # the groups ran their ops on one torch thread each
        assert torch.get_num_threads() == 2
        assert len({r.param_sha256 for r in results}) == 3
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_perf_times_a_seed_batch_in_groups_against_a_single_seed_on_as_many_threads(capsys):
    import json

    from bench.cli.main import main

    before = torch.get_num_threads()
    try:
        assert main(["perf", "--methods", "mlp", "--seed-batch", "3", "--threads", "2", "--loop-steps", "8",
                     "--json"]) == 0
    finally:
        torch.set_num_threads(before)
    out = capsys.readouterr().out
    line = json.loads(out.strip().splitlines()[-1])
    assert line["torch_threads"] == 2
    single, batch = line["methods"]
    assert batch["seed_batch"] == 3 and batch["seed_groups"] == 2
    assert batch["update_ms"] > 0 and batch["action_ms"] > 0
    assert batch["loop_sps_aggregate"] == pytest.approx(3 * batch["loop_sps_per_seed"])
    assert batch["aggregate_vs_single"] == pytest.approx(batch["loop_sps_aggregate"] / single["loop_sps"])
    assert "seed batch K=3 in 2 group(s), one thread each" in out
