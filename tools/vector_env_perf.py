"""Env stepping for a seed batch: K envs one after another vs gymnasium's SyncVectorEnv and
AsyncVectorEnv (one process per env), aggregate env steps/s with random actions.

    python -m tools.vector_env_perf --env HalfCheetah-v4 --k 4,16 --steps 500 --repeats 3

Prints one row per (K, way): the median and every repeat's aggregate env steps/s (K·steps / s,
start-up excluded), with this machine's cores and torch's thread count. A seed batch steps its
envs one after another (`spikerl.batch_loop`) unless a vector env is faster here.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch

from spikerl.envs import make_env


def _serial(env_id: str, k: int) -> tuple[Callable[[np.ndarray], Any], Callable[[], None]]:
    envs = [make_env(env_id) for _ in range(k)]
    for i, e in enumerate(envs):
        e.reset(seed=i)

    def step(actions: np.ndarray) -> None:
        for e, a in zip(envs, actions, strict=True):
            _, _, terminated, truncated, _ = e.step(a)
            if terminated or truncated:
                e.reset()

    return step, lambda: [e.close() for e in envs] and None


def _vector(env_id: str, k: int, cls: type) -> tuple[Callable[[np.ndarray], Any], Callable[[], None]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        venv = cls([lambda: make_env(env_id) for _ in range(k)])
    venv.reset(seed=list(range(k)))
    return venv.step, venv.close


WAYS = {"serial": _serial,
        "sync": lambda env_id, k: _vector(env_id, k, gym.vector.SyncVectorEnv),
        "async": lambda env_id, k: _vector(env_id, k, gym.vector.AsyncVectorEnv)}


def measure(env_id: str, k: int, way: str, steps: int) -> float:
    """Aggregate env steps/s of `way` for K envs over `steps` steps each (after 20 untimed)."""
    step, close = WAYS[way](env_id, k)
    act_dim = int(np.prod(make_env(env_id).action_space.shape))
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(steps + 20, k, act_dim))
    try:
        for t in range(20):
            step(actions[t])
        t0 = time.perf_counter()
        for t in range(20, steps + 20):
            step(actions[t])
        return k * steps / (time.perf_counter() - t0)
    finally:
        close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="HalfCheetah-v4")
    ap.add_argument("--k", default="4,16", help="comma-separated batch sizes")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ways", default="serial,sync,async")
    args = ap.parse_args(argv)
    ks = [int(x) for x in args.k.split(",")]
    ways = args.ways.split(",")
    if any(w not in WAYS for w in ways) or args.steps < 1 or args.repeats < 1 or any(k < 1 for k in ks):
        print(f"vector_env_perf: ways are {', '.join(WAYS)}; steps, repeats and K must be >= 1")
        return 2
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{args.env}: {cores} usable cores, torch threads {torch.get_num_threads()}, {args.steps} steps x "
          f"{args.repeats} repeats (interleaved), random actions")
    for k in ks:
        got: dict[str, list[float]] = {w: [] for w in ways}
        for _ in range(args.repeats):  # interleaved, so a load change on a shared machine hits every way alike
            for w in ways:
                got[w].append(measure(args.env, k, w, args.steps))
        base = statistics.median(got["serial"]) if "serial" in got else None
        for w in ways:
            med = statistics.median(got[w])
            ratio = f"  x{med / base:.2f} vs serial" if base else ""
            print(f"K={k:3d} {w:7s} {med:9.0f} env steps/s  (repeats: {', '.join(f'{v:.0f}' for v in got[w])}){ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
