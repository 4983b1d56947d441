"""Worker functions for the 2-rank Gloo tests (importable by torch.multiprocessing spawn)."""
from __future__ import annotations

import os
import sys

import numpy as np
import torch
import torch.distributed as dist

from baselines.registry import get_method
from spikerl.config import TD3Config
from spikerl.distributed import DistContext
from spikerl.loop import build_agent
from spikerl.replay import ReplayBatch
from spikerl.td3 import TD3

OBS, ACT = 17, 6


def batches(n_ranks: int, per_rank: int, seed: int = 0) -> list[ReplayBatch]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_ranks):
        out.append(ReplayBatch(torch.randn(per_rank, OBS, generator=g), torch.rand(per_rank, ACT, generator=g) * 2 - 1,
                               torch.randn(per_rank, generator=g), torch.randn(per_rank, OBS, generator=g),
                               (torch.rand(per_rank, generator=g) < 0.1).float()))
    return out


def make_td3(method: str, grad_sync=None) -> TD3:
    spec = get_method(method)
    params = {**spec.actor_params("HalfCheetah-v4"), "hidden": (24, 16)}
    cfg = TD3Config(batch_size=8, replay_size=64, target_noise=0.0, policy_delay=1, critic_hidden=(16, 16),
                    lr_actor=1e-3, lr_critic=1e-3)
    torch.manual_seed(123)
    agent = build_agent(spec, "HalfCheetah-v4", cfg, params, OBS, ACT, 1.0, torch.device("cpu"))
    # spread the inputs so spiking neurons fire and the normaliser is not the identity
    agent.normalizer.update(np.random.default_rng(5).normal(0.5, 2.0, size=(64, OBS)))
    return TD3(agent.actor, agent.critic, agent.normalizer, cfg, 1.0, torch.device("cpu"), grad_sync=grad_sync)


def captured_update(td3: TD3, batch: ReplayBatch) -> list[torch.Tensor]:
    """One update; returns every gradient as the optimiser saw it (after any averaging)."""
    seen: list[torch.Tensor] = []
    inner = td3.grad_sync

    def spy(grads):
        if inner is not None:
            inner(grads)
        seen.extend(g.detach().clone() for g in grads)

    td3.grad_sync = spy
    td3.update(batch)
    return seen


def _init(rank: int, world: int, port: int) -> DistContext:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    return DistContext(rank=rank, world_size=world, backend="gloo")


def end_worker() -> None:
    """End a spawned worker whose results are saved, without interpreter finalisation: Gloo's
    threads can still hold tensors whose destruction then aborts the process (SIGABRT,
    'terminate called without an active exception'), failing a test that passed. The CLI's
    ranks end the same way (bench.cli.run.exit_rank)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def grad_worker(rank: int, world: int, port: int, method: str, dtype: str, out_dir: str) -> None:
    ctx = _init(rank, world, port)
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        td3 = make_td3(method, grad_sync=ctx.average_grads_)
        grads = captured_update(td3, batches(world, 8)[rank])
        params = [p.detach().clone() for p in list(td3.actor.parameters()) + list(td3.critic.parameters())]
        torch.save({"grads": grads, "params": params}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()
    end_worker()


def normalizer_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    ctx = _init(rank, world, port)
    try:
        results = {}
        for method in ("popsan", "dsrl"):
            spec = get_method(method)
            norm = spec.build_normalizer(_ctx(spec))
            chunks = np.array_split(np.random.default_rng(9).normal(1.0, 3.0, size=(300, OBS)), world * 3)
            for k in range(3):  # three merge rounds, as the loop does every obs_norm_every steps
                local = norm.batch_stats(chunks[k * world + rank])
                for stats in ctx.all_gather_1d(local):
                    norm.merge_stats(stats)
            results[method] = {k: v.clone() for k, v in norm.state_dict().items()}
        torch.save(results, os.path.join(out_dir, f"norm{rank}.pt"))
    finally:
        dist.destroy_process_group()
    end_worker()


def _ctx(spec):
    from spikerl.method import ActorContext

    return ActorContext(OBS, ACT, 1.0, "HalfCheetah-v4", spec.actor_params("HalfCheetah-v4"))
