"""Throughput of a seed batch (`spikerl-bench perf --seed-batch K`): K seeds of one method in one
process (`spikerl.batch_loop`), timed like `bench.perf` times a single seed.

update ms: one TD3 update of all K seeds (a burst of 2, so the delayed actor step counts once,
with the loop's sampling from the device-resident replay, normalising and random draws; on CUDA
the graphed burst), per update.
action ms: the K seeds' actions for one env step each (normalisers, one vmapped actor call, on
CUDA graphed, host copy). loop steps/s: env steps per second of ONE seed of the batch in the learning phase, and
the aggregate (K times that), to set against a single seed's loop steps/s.

Threads: on a CPU the batch trains its K seeds in `torch.get_num_threads()` groups, one thread
each (`spikerl.seed_groups`), where the single seed it is set against uses that many torch
threads: both get the same cores.
"""
from __future__ import annotations

import statistics
from typing import Any

import numpy as np
import torch

from baselines.registry import get_method
from spikerl import native_lib
from spikerl.batch_loop import BatchRun, train_seed_batch
from spikerl.config import TD3Config
from spikerl.seed_groups import seed_batch_workers


def seed_batch_update_and_action_ms(method: str, env_id: str, k: int, precision: str | None, repeats: int = 50,
                                    device: str = "cpu", engine: str = "torch") -> tuple[float, float]:
    """(update ms, action ms) of a freshly built K-seed batch on random replay data."""
    from bench.perf import median_ms

    spec = get_method(method)
    cfg_d = {**TD3Config().to_dict(), **spec.td3_params(env_id), "replay_size": 10_000}
    if precision is not None:
        cfg_d["precision"] = precision
    cfg = TD3Config.from_dict(cfg_d)
    dev = torch.device(device)
    with native_lib.engine(engine):
        run = BatchRun(spec, env_id, list(range(k)), cfg, None, run_dirs=None, callbacks=None, device=dev,
                        per_seed_actor=engine == "native")
        try:
            rng = np.random.default_rng(0)
            lim, d, a, n = run.lim, run.obs_dim, run.act_dim, 5_000
            replay = run.replay  # every seed's buffer on the device: 5,000 random transitions each
            for k, x in enumerate(run.seeds):
                obs = rng.normal(size=(n, d))
                rows = np.concatenate([obs, rng.uniform(-lim, lim, (n, a)), rng.normal(size=(n, 1)),
                                       rng.normal(size=(n, d)), np.zeros((n, 1))], axis=1)
                replay.data[k, :n] = torch.as_tensor(rows, dtype=torch.float32, device=dev)
                x.agent.normalizer.update(obs)
                x.s.obs = rng.normal(size=d)
            replay.size = replay.ptr = n

            def two_updates() -> None:
                run.update(2)
                if dev.type == "cuda":
                    torch.cuda.synchronize()

            update_ms = median_ms(two_updates, repeats, max(1, repeats // 10)) / 2
            action_ms = median_ms(run.act_all, 5 * repeats, max(1, repeats // 2))
        finally:
            run.close()
    return update_ms, action_ms


def seed_batch_loop_sps(method: str, env_id: str, k: int, loop_steps: int, precision: str | None,
                        device: str = "cpu", engine: str = "torch") -> float:
    """Env steps/s of one seed of a K-seed batch in its learning phase (multiply by K for the aggregate)."""
    from bench.perf import loop_benchmark_config

    cfg, probe = loop_benchmark_config(method, env_id, loop_steps, precision)
    callbacks: list[list[Any]] = [[probe]] + [[] for _ in range(k - 1)]
    train_seed_batch(get_method(method), env_id, list(range(k)), cfg, callbacks=callbacks, device=device,
                     engine=engine)
    return statistics.mean(probe.rows)


def seed_batch_row(method: str, env_id: str, k: int, loop_steps: int, precision: str | None,
                   device: str = "cpu", engine: str = "torch") -> dict[str, Any]:
    upd, act = seed_batch_update_and_action_ms(method, env_id, k, precision, device=device, engine=engine)
    sps = seed_batch_loop_sps(method, env_id, k, loop_steps, precision, device=device, engine=engine)
    groups = seed_batch_workers(torch.device(device), k, torch.get_num_threads())
    return {"method": method, "engine": engine, "seed_batch": k, "seed_groups": groups, "update_ms": upd,
            "action_ms": act,
            "loop_sps_per_seed": sps, "loop_sps_aggregate": k * sps}
