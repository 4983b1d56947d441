"""Named budgets. Explicit command-line flags override every field of a profile."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    methods: tuple[str, ...]
    envs: tuple[str, ...]
    seeds: tuple[int, ...]
    td3: dict[str, Any] = field(default_factory=dict)
    """TD3Config fields the profile sets (budget and schedule only; never learning rates)."""


ALL_METHODS = ("spikerl", "popsan", "dsrl", "mlp")
DEFAULT_BASELINE = "popsan"  # the published method SpikeRL is measured against

PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        "smoke", "CI check of the whole pipeline: every method, tiny budget (< 2 min on 2 cores)",
        ALL_METHODS, ("HalfCheetah-v4",), (0,),
        {"total_steps": 1_500, "start_steps": 500, "update_after": 500, "eval_every": 750, "eval_episodes": 1,
         "log_every": 250, "checkpoint_every": 750, "replay_size": 10_000},
    ),
    "ci": Profile(
        "ci", "CI regression gate (`spikerl-bench compare`): every method, two seeds as a repeat, ten "
        "training-phase progress windows per run (about 3 min on 2 cores)",
        ALL_METHODS, ("HalfCheetah-v4",), (0, 1),
        {"total_steps": 3_000, "start_steps": 500, "update_after": 500, "eval_every": 1_500, "eval_episodes": 1,
         "log_every": 250, "checkpoint_every": 3_000, "replay_size": 10_000},
    ),
    "quick": Profile(
        "quick", "default: every method on HalfCheetah-v4, long enough that learning shows (< 15 min on 2 cores)",
        ALL_METHODS, ("HalfCheetah-v4",), (0,),
        {"total_steps": 20_000, "start_steps": 2_000, "update_after": 1_000, "eval_every": 2_500,
         "eval_episodes": 5, "log_every": 1_000, "checkpoint_every": 5_000, "replay_size": 100_000},
    ),
    "paper": Profile(
        "paper", "the published protocol: 1M steps, four tasks, 10 seeds (for GPUs and clusters)",
        ALL_METHODS, ("HalfCheetah-v4", "Hopper-v4", "Walker2d-v4", "Ant-v4"), tuple(range(10)),
        {"total_steps": 1_000_000},
    ),
}
