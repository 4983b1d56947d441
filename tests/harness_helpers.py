"""Small configurations shared by the harness tests."""
from __future__ import annotations

from spikerl.config import TD3Config


def tiny_config(**changes) -> TD3Config:
    base = dict(total_steps=1_200, start_steps=300, update_after=300, update_every=50, eval_every=600,
                eval_episodes=1, max_ep_len=200, log_every=100, checkpoint_every=400, replay_size=5_000,
                batch_size=32, lr_actor=3e-4, lr_critic=3e-4, critic_hidden=(32, 32))
    base.update(changes)
    return TD3Config(**base)
