"""From a plan to what one run uses: the device, and the config after every layer of defaults."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from bench.run.plan import Plan, UsageError
from bench.run.profiles import PROFILES
from spikerl.config import TD3Config, check_number, coerce_value
from spikerl.method import MethodSpec
from spikerl.precision import resolve_precision


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    if device not in ("cpu", "cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda, got {device!r}")
    return torch.device(device)


@dataclass(frozen=True)
class RunConfig:
    """One method × env's settings as trained, and why its precision is what it is."""

    td3: TD3Config
    actor: dict[str, Any]
    precision_reason: str


def resolve_config(spec: MethodSpec, env_id: str, plan: Plan, device: torch.device) -> RunConfig:
    """Harness defaults ← method recipe ← profile budget ← the user's explicit settings."""
    recipe = spec.td3_params(env_id)
    d = TD3Config().to_dict()
    d.update(recipe)
    d.update(PROFILES[plan.profile].td3 if plan.profile in PROFILES else {})
    d["total_steps"] = plan.total_steps
    d.update(plan.td3_overrides)
    if plan.precision is not None:
        d["precision"] = plan.precision
    explicit = plan.precision is not None or "precision" in plan.td3_overrides
    d["precision"], reason = resolve_precision(d["precision"], device, explicit)
    actor = _actor_params(spec, env_id, plan)
    try:
        return RunConfig(TD3Config.from_dict(d), actor, reason)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{spec.name} on {env_id}: {exc}") from None


def _actor_params(spec: MethodSpec, env_id: str, plan: Plan) -> dict[str, Any]:
    actor = dict(spec.actor_params(env_id))
    for key, raw in plan.actor_overrides.items():
        if key not in actor:
            raise UsageError(f"--set actor.{key}: {spec.name} has no actor setting {key!r}; "
                             f"it has {', '.join(actor)}")
        try:
            actor[key] = coerce_value(actor[key], str(raw)) if isinstance(raw, str) else raw
        except ValueError as exc:
            raise UsageError(f"--set actor.{key}: {exc}") from None
    try:
        check_actor_params(spec, env_id, actor)
    except ValueError as exc:
        raise UsageError(f"--set {exc}" if plan.actor_overrides else f"{spec.name} on {env_id}: {exc}") from None
    return actor


def check_actor_params(spec: MethodSpec, env_id: str, actor: dict[str, Any]) -> None:
    """ValueError unless `actor` has the method's settings, each of its default's kind (finite
    where a number), and passes the method's own check (`MethodSpec.check_actor`)."""
    defaults = spec.actor_params(env_id)
    if set(actor) != set(defaults):
        raise ValueError(f"{spec.name}'s actor settings are {', '.join(defaults)}, got {', '.join(actor)}")
    for key, default in defaults.items():
        value = actor[key]
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            check_number(f"actor.{key}", value, -math.inf, math.inf, integer=isinstance(default, int))
        elif isinstance(default, (tuple, list)) != isinstance(value, (tuple, list)) or \
                isinstance(default, str) != isinstance(value, str):
            raise ValueError(f"actor.{key} must be like {default!r}, got {value!r}")
    if spec.check_actor is not None:
        spec.check_actor(actor)
