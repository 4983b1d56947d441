"""Measure a uniform-random policy's return per env and version: the R_random of the cross-task
normalisation (DESIGN §6; `reports.normalization`).

    python -m tools.random_returns --episodes 100 --envs HalfCheetah-v4,Hopper-v4,Walker2d-v4,Ant-v4

Each episode uses `spikerl.envs.make_env` (the harness's env, max 1,000 steps), reset seed
`SEED_BASE + i` and actions drawn by the env's action space seeded with the same number, so the
numbers are reproducible. Prints one JSON object per env: mean, std, sem, episodes, mean length.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from spikerl.envs import make_env

SEED_BASE = 20_000


def random_returns(env_id: str, episodes: int) -> dict:
    env = make_env(env_id, 1000)
    returns, lengths = [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=SEED_BASE + i)
        env.action_space.seed(SEED_BASE + i)
        done, ret, n = False, 0.0, 0
        while not done:
            obs, r, terminated, truncated, _ = env.step(env.action_space.sample())
            ret += float(r)
            n += 1
            done = terminated or truncated
        returns.append(ret)
        lengths.append(n)
    env.close()
    x = np.asarray(returns)
    return {"env": env_id, "episodes": episodes, "mean": round(float(x.mean()), 2),
            "std": round(float(x.std(ddof=1)), 2), "sem": round(float(x.std(ddof=1) / np.sqrt(x.size)), 2),
            "mean_length": round(float(np.mean(lengths)), 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--envs", default="HalfCheetah-v4,Hopper-v4,Walker2d-v4,Ant-v4,"
                                     "HalfCheetah-v5,Hopper-v5,Walker2d-v5,Ant-v5")
    args = p.parse_args()
    for env_id in args.envs.split(","):
        t0 = time.time()
        out = random_returns(env_id, args.episodes)
        out["seconds"] = round(time.time() - t0, 1)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
