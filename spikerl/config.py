"""TD3 hyperparameters shared by every method.

Defaults are PopSAN's published recipe (DESIGN §4); methods override what their papers change
(`MethodSpec.td3_params`), and users override anything with `--set key=value`.
"""
from __future__ import annotations

import dataclasses
import math
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
        for name, rule in _RANGES.items():
            _check_range(name, getattr(self, name), *rule)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.start_actions not in START_ACTIONS:
            raise ValueError(f"start_actions must be one of {START_ACTIONS}, got {self.start_actions!r}")
        if self.batch_size > self.replay_size:
            raise ValueError(f"batch_size ({self.batch_size}) exceeds replay_size ({self.replay_size})")

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
        if isinstance(data.get("critic_hidden"), list):  # JSON has no tuples; the widths are checked as given
            data["critic_hidden"] = tuple(data["critic_hidden"])
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
        # elements parse as the current elements do: (256, 256) takes ints, (-3.0, 3.0) floats
        element: Any = float if any(isinstance(x, float) for x in current) else int
        parts = [x for x in text.replace("x", ",").split(",") if x.strip()] if element is int else \
            [x for x in text.split(",") if x.strip()]
        return tuple(coerce_value(element(0), x.strip()) for x in parts)
    return text


_MAX_STEPS = 10**12
"""Bound of every step count: beyond any budget this harness can run, and below float precision."""

_RANGES: dict[str, tuple[Any, float, float, bool]] = {
    # field: (type, lowest, highest, lowest excluded). Bounds reject what cannot be meant (a
    # 1e12-transition buffer, zero-width critics, NaN or negative rates), not unusual settings.
    "total_steps": (int, 1, _MAX_STEPS, False),
    "gamma": (float, 0.0, 1.0, False),
    "tau": (float, 0.0, 1.0, True),
    "batch_size": (int, 1, 1 << 20, False),
    "replay_size": (int, 1, 10**8, False),
    "start_steps": (int, 0, _MAX_STEPS, False),
    "start_actions": (str, 0, 0, False),
    # a Gaussian warm-up action is clipped to the action bounds: only NaN/inf/non-positive are refused
    "start_noise": (float, 0.0, 1e6, True),
    "update_after": (int, 0, _MAX_STEPS, False),
    "update_every": (int, 1, 10**6, False),
    "updates_per_step": (float, 0.0, 1_000.0, True),
    "lr_actor": (float, 0.0, 1.0, True),
    "lr_critic": (float, 0.0, 1.0, True),
    "critic_hidden": ("layers", 1, 1 << 16, False),
    # noise is clipped (noise_clip, the action bounds): a huge std is harmless, only NaN/inf/negative are not
    "expl_noise": (float, 0.0, 1e6, False),
    "target_noise": (float, 0.0, 1e6, False),
    "noise_clip": (float, 0.0, 10.0, False),
    "policy_delay": (int, 1, 10_000, False),
    "eval_every": (int, 1, _MAX_STEPS, False),
    "eval_episodes": (int, 1, 10_000, False),
    "max_ep_len": (int, 1, 10**8, False),
    "log_every": (int, 1, _MAX_STEPS, False),
    "checkpoint_every": (int, 0, _MAX_STEPS, False),
    "precision": (str, 0, 0, False),
    "obs_norm_every": (int, 1, 10**9, False),
}
"""Every TD3Config field's type and range (tests check that no field is missing)."""


def _check_range(name: str, value: Any, kind: Any, lo: float, hi: float, open_lo: bool) -> None:
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {value!r}")
    elif kind == "layers":
        check_layer_sizes(name, value, hi=int(hi))
    else:
        check_number(name, value, lo, hi, integer=kind is int, open_lo=open_lo)


def check_layer_sizes(name: str, value: Any, *, layers: int | None = None, hi: int = 1 << 16) -> None:
    """ValueError unless value is a sequence of 1..16 (or exactly `layers`) widths in 1..hi."""
    if not isinstance(value, (tuple, list)) or not all(type(h) is int for h in value):
        raise ValueError(f"{name} must be layer widths such as 256,256, got {value!r}")
    if layers is not None and len(value) != layers:
        raise ValueError(f"{name} must have exactly {layers} layers, got {len(value)}")
    if not 1 <= len(value) <= 16 or not all(1 <= h <= hi for h in value):
        raise ValueError(f"{name} must be 1 to 16 layer widths of 1 to {hi}, got {value!r}")


def check_number(name: str, value: Any, lo: float, hi: float, *, integer: bool = False,
                 open_lo: bool = False) -> None:
    """ValueError unless value is a finite number (an int where `integer`) in [lo, hi] ((lo, hi] with open_lo)."""
    ok = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok):
        raise ValueError(f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value > hi or value < lo or (open_lo and value == lo):
        raise ValueError(f"{name} must be {'above' if open_lo else 'at least'} {_fmt(lo)} and at most {_fmt(hi)}, "
                         f"got {value!r}")


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"
