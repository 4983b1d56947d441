"""A seed batch's evaluation: every seed's deterministic episodes played side by side, one batched
actor forward for all K seeds per evaluation step.

Seed k plays exactly the episodes its single run plays (`spikerl.evaluation.eval_episode_seeds`,
one after another on its own eval env), so its returns are those of `run_episodes` with its own
policy (tests/test_batch_eval.py). Episodes end at different steps (Hopper falls, HalfCheetah
runs to the time limit): a seed whose episodes are all done sits out the remaining steps, and
the policy is told which seeds are playing, so a seed that sits out draws nothing from its
generator (its Poisson stream stays the single run's).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

BatchPolicy = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(obs [K, obs_dim], playing [K] bool) -> actions [K, act_dim]; rows of seeds not playing are
ignored (their obs rows are a finished episode's last observation)."""


def run_episodes_batched(envs: Sequence[Any], policy: BatchPolicy, episode_seeds: Sequence[Sequence[int]]
                         ) -> list[list[float]]:
    """Seed k's returns on envs[k], one per seed of episode_seeds[k], in order: `run_episodes` for
    every seed at once, each env stepped once per batched policy call while its seed plays."""
    K = len(envs)
    if len(episode_seeds) != K:
        raise ValueError(f"{len(episode_seeds)} episode seed lists for {K} envs")
    returns: list[list[float]] = [[] for _ in range(K)]
    ep_ret = [0.0] * K
    playing = np.zeros(K, dtype=bool)
    first = [np.asarray(envs[k].reset(seed=int(episode_seeds[k][0]))[0]) if episode_seeds[k] else None
             for k in range(K)]
    shape = next((o.shape for o in first if o is not None), None)
    if shape is None:
        return returns
    obs = np.zeros((K, *shape), dtype=np.float64)
    for k, o in enumerate(first):
        if o is not None:
            obs[k], playing[k] = o, True
    while playing.any():
        actions = policy(obs, playing.copy())
        for k in map(int, np.flatnonzero(playing)):
            o, rew, terminated, truncated, _ = envs[k].step(actions[k])
            ep_ret[k] += float(rew)
            obs[k] = o
            if terminated or truncated:
                returns[k].append(ep_ret[k])
                ep_ret[k] = 0.0
                done = len(returns[k])
                if done < len(episode_seeds[k]):
                    obs[k] = envs[k].reset(seed=int(episode_seeds[k][done]))[0]
                else:
                    playing[k] = False
    return returns
