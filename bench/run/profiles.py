"""Named budgets. A profile sets budgets and schedules, never a method's recipe.

How a run's settings are layered (bench.run.resolve.resolve_config):
    harness defaults  <-  method recipe  <-  profile  <-  the user's explicit flags and --set
A profile *sets* budget and schedule fields (total_steps, eval/log/checkpoint cadence), which say
how long and how often, not how a method learns. Its warm-up and memory fields (start_steps,
update_after, replay_size) are *caps*: a method keeps its own value when it is smaller (DSRL's
1,000-step warm-up survives the quick profile's 2,000 cap), and a short budget lowers a long
warm-up so that learning still happens (PopSAN's 10,000 becomes 2,000 there). A replay buffer
larger than the run's step count never fills, so capping it saves memory without changing
learning. Explicit flags override every field of a profile.
"""
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
    """TD3Config budget and schedule fields the profile sets (BUDGET_FIELDS only)."""
    caps: dict[str, Any] = field(default_factory=dict)
    """TD3Config fields the profile lowers to at most this value (CAP_FIELDS only)."""
    idle_window_s: float = 10.0
    """The idle baseline before training (bench.run.idle) unless --idle-window-s says otherwise: 10 s
    (bench.energy.baseline.DEFAULT_IDLE_WINDOW_S); smoke takes none, being a check of the pipeline
    whose numbers nobody quotes, short enough for CI."""

    def __post_init__(self) -> None:
        if set(self.td3) - BUDGET_FIELDS or set(self.caps) - CAP_FIELDS:
            raise ValueError(f"profile {self.name}: sets {sorted(set(self.td3) - BUDGET_FIELDS)} or caps "
                             f"{sorted(set(self.caps) - CAP_FIELDS)} outside its budget fields")


BUDGET_FIELDS = frozenset({"total_steps", "eval_every", "eval_episodes", "log_every", "checkpoint_every",
                           "max_ep_len"})
CAP_FIELDS = frozenset({"start_steps", "update_after", "replay_size"})


ALL_METHODS = ("spikerl", "popsan", "dsrl", "mlp")
DEFAULT_BASELINE = "popsan"  # the published method SpikeRL is measured against

PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        "smoke", "CI check of the whole pipeline: every method, tiny budget (< 2 min on 2 cores)",
        ALL_METHODS, ("HalfCheetah-v4",), (0,),
        {"total_steps": 1_500, "eval_every": 750, "eval_episodes": 1, "log_every": 250, "checkpoint_every": 750},
        caps={"start_steps": 500, "update_after": 500, "replay_size": 10_000}, idle_window_s=0.0,
    ),
    "ci": Profile(
        "ci", "CI regression gate (`spikerl-bench compare`): every method, two seeds as a repeat, ten "
        "training-phase progress windows per run (about 3 min on 2 cores)",
        ALL_METHODS, ("HalfCheetah-v4",), (0, 1),
        {"total_steps": 3_000, "eval_every": 1_500, "eval_episodes": 1, "log_every": 250, "checkpoint_every": 3_000},
        caps={"start_steps": 500, "update_after": 500, "replay_size": 10_000},
    ),
    "quick": Profile(
        "quick", "default: every method on HalfCheetah-v4, long enough that learning shows (< 15 min on 2 cores)",
        ALL_METHODS, ("HalfCheetah-v4",), (0,),
        {"total_steps": 20_000, "eval_every": 2_500, "eval_episodes": 5, "log_every": 1_000,
         "checkpoint_every": 5_000},
        caps={"start_steps": 2_000, "update_after": 1_000, "replay_size": 100_000},
    ),
    "paper": Profile(
        "paper", "the published protocol: 1M steps, four tasks, 10 seeds (for GPUs and clusters)",
        ALL_METHODS, ("HalfCheetah-v4", "Hopper-v4", "Walker2d-v4", "Ant-v4"), tuple(range(10)),
        {"total_steps": 1_000_000},
    ),
}
