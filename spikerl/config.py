"""TD3 hyperparameters shared by every method.

Defaults are PopSAN's published recipe (DESIGN §4); methods override what their papers change
(`MethodSpec.td3_params`), and users override anything with `--set key=value`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

PRECISIONS = ("fp32", "bf16")
START_ACTIONS = ("uniform", "gaussian")


@dataclass(frozen=True)
class TD3Config:
    total_steps: int = 1_000_000
    """Global env-step budget (all ranks together)."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak coefficient of the target networks."""
    batch_size: int = 100
    """Minibatch size of every gradient step (per rank)."""
    replay_size: int = 1_000_000
    """Replay buffer capacity in transitions (per rank)."""
    start_steps: int = 10_000
    """Env steps of warm-up actions (`start_actions`) before the actor acts."""
    start_actions: str = "uniform"
    """Warm-up actions: 'uniform' over the action box, or 'gaussian': N(0, start_noise), clipped."""
    start_noise: float = 0.1
    """Std of 'gaussian' warm-up actions, in units of act_limit."""
    update_after: int = 1_000
    """Env steps before the first gradient step."""
    update_every: int = 50
    """Env steps between update phases; each phase does update_every * updates_per_step steps."""
    updates_per_step: float = 1.0
    """Gradient steps per env step (on average)."""
    lr_actor: float = 1e-4
    """Adam learning rate of the actor (encoder, SNN and decoder together)."""
    lr_critic: float = 1e-3
    """Adam learning rate of both critics."""
    critic_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer sizes of each critic MLP."""
    expl_noise: float = 0.1
    """Std of the Gaussian exploration noise, in units of act_limit."""
    target_noise: float = 0.2
    """Std of the target-policy smoothing noise, in units of act_limit."""
    noise_clip: float = 0.5
    """Clip of the target-policy noise, per element, in units of act_limit."""
    policy_delay: int = 2
    """Critic updates per actor (and target) update."""
    eval_every: int = 10_000
    """Global env steps between evaluations."""
    eval_episodes: int = 10
    """Deterministic episodes per evaluation."""
    max_ep_len: int = 1_000
    """Episode length cap (a time-limit truncation, which bootstraps)."""
    log_every: int = 1_000
    """Global env steps between progress rows."""
    checkpoint_every: int = 10_000
    """Global env steps between checkpoints (0 disables them)."""
    precision: str = "fp32"
    """'fp32' or 'bf16' (autocast forward passes, fp32 master weights and optimiser state)."""
    obs_norm_every: int = 50
    """Env steps between merges of new observations into the normaliser statistics."""

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.start_actions not in START_ACTIONS:
            raise ValueError(f"start_actions must be one of {START_ACTIONS}, got {self.start_actions!r}")
        if not 0.0 < self.start_noise < float("inf"):
            raise ValueError(f"start_noise must be positive and finite, got {self.start_noise!r}")
        for name in ("total_steps", "batch_size", "replay_size", "update_every", "policy_delay",
                     "eval_every", "eval_episodes", "max_ep_len", "log_every", "obs_norm_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.start_steps < 0 or self.update_after < 0 or self.checkpoint_every < 0:
            raise ValueError("start_steps, update_after and checkpoint_every must be >= 0")
        if self.batch_size > self.replay_size:
            raise ValueError(f"batch_size ({self.batch_size}) exceeds replay_size ({self.replay_size})")
        if not 0.0 < self.tau <= 1.0 or not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"need 0 < tau <= 1 and 0 <= gamma <= 1, got tau={self.tau}, gamma={self.gamma}")

    def replace(self, **changes: Any) -> "TD3Config":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TD3Config":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown TD3 setting(s): {', '.join(sorted(unknown))}")
        data = dict(data)
        if "critic_hidden" in data:
            data["critic_hidden"] = tuple(int(h) for h in data["critic_hidden"])
        return cls(**data)


def coerce_value(current: Any, text: str) -> Any:
    """Parse a `--set key=value` string into the type of the field's current value."""
    if isinstance(current, bool):
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean, got {text!r}")
    if isinstance(current, int):
        value = float(text)
        if not value.is_integer():
            raise ValueError(f"expected an integer, got {text!r}")
        return int(value)
    if isinstance(current, float):
        return float(text)
    if isinstance(current, (tuple, list)):
        return tuple(int(x) for x in text.replace("x", ",").split(",") if x.strip())
    return text

