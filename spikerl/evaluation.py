"""Deterministic evaluation on a separate env with fixed episode seeds.

The same seeds are used at every evaluation, so successive evaluations differ only by the
policy. Under data parallelism each rank plays its share of the episodes (episode i on rank
i mod world_size) and the returns are gathered.
"""
from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np
import torch

EVAL_SEED_BASE = 1_000_003


def eval_episode_seeds(seed: int, episodes: int) -> list[int]:
    return [EVAL_SEED_BASE + 10_007 * seed + i for i in range(episodes)]


@torch.no_grad()
def run_episodes(env: gym.Env, policy: Callable[[np.ndarray], np.ndarray], seeds: list[int]) -> list[float]:
    returns = []
    for s in seeds:
        obs, _ = env.reset(seed=s)
        done, ep_ret = False, 0.0
        while not done:
            obs, rew, terminated, truncated, _ = env.step(policy(obs))
            ep_ret += float(rew)
            done = terminated or truncated
        returns.append(ep_ret)
    return returns
