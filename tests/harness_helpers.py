"""Small configurations shared by the harness tests."""
from __future__ import annotations

from typing import Sequence

import torch

from spikerl.config import TD3Config


def tiny_config(**changes) -> TD3Config:
    base = dict(total_steps=1_200, start_steps=300, update_after=300, update_every=50, eval_every=600,
                eval_episodes=1, max_ep_len=200, log_every=100, checkpoint_every=400, replay_size=5_000,
                batch_size=32, lr_actor=3e-4, lr_critic=3e-4, critic_hidden=(32, 32))
    base.update(changes)
    return TD3Config(**base)


def tiny_popsan_nets(seeds: Sequence[int], encoding: str, obs_dim: int, act_dim: int):
    """(actors, critics, config): small PopSAN nets for each seed, built as a seed batch's single
    runs build them (torch seeded with the seed first), for tests of the batched update."""
    from baselines.registry import get_method
    from spikerl.loop import build_agent

    spec = get_method("popsan")
    params = {**spec.actor_params("HalfCheetah-v4"), "hidden": (16, 16), "encoding": encoding}
    cfg = tiny_config(batch_size=8, critic_hidden=(16, 16))
    agents = []
    for s in seeds:
        torch.manual_seed(s)
        agents.append(build_agent(spec, "HalfCheetah-v4", cfg, params, obs_dim, act_dim, 1.0, torch.device("cpu")))
    return [a.actor for a in agents], [a.critic for a in agents], cfg
