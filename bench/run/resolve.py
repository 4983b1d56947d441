"""From a plan to what one run uses: the device, and the config after every layer of defaults."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from baselines.registry import get_method
from bench.run.plan import Plan, UsageError
from bench.run.profiles import PROFILES
from spikerl.config import TD3Config, check_number, coerce_value
from spikerl.method import MethodSpec
from spikerl.native_lib import native_unusable_reason, resolve_engine
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
    engine: str = "torch"
    """How the actor's spiking layers run: 'native' or 'torch' (always 'torch' for non-spiking actors)."""
    engine_reason: str = ""


def resolve_config(spec: MethodSpec, env_id: str, plan: Plan, device: torch.device) -> RunConfig:
    """Harness defaults ← method recipe ← profile budget (and caps) ← the user's explicit settings
    (bench.run.profiles explains the layering), those for every method before those for this one
    (`--set METHOD:KEY=VALUE`); the engine is the plan's (`plan_engine`)."""
    td3, reason = _resolve_td3(spec, env_id, plan, device)
    actor = _actor_params(spec, env_id, plan)
    requested, why = plan_engine(plan, device)
    engine = run_engine(spec, requested, device, td3.precision)
    if not spec.spiking:
        why = "no spiking layers"
    return RunConfig(td3, actor, reason, engine, why)


def check_settings(spec: MethodSpec, env_id: str, plan: Plan) -> None:
    """The plan's settings for `spec` on `env_id` (budgets, --set, actor settings), resolved as on
    a CPU: UsageError for any that is unknown or out of range, wherever the runs will execute."""
    _resolve_td3(spec, env_id, plan, torch.device("cpu"))
    _actor_params(spec, env_id, plan)


def _resolve_td3(spec: MethodSpec, env_id: str, plan: Plan, device: torch.device) -> tuple[TD3Config, str]:
    d = TD3Config().to_dict()
    d.update(spec.td3_params(env_id))
    profile = PROFILES.get(plan.profile)
    if profile is not None:
        d.update(profile.td3)
        for key, cap in profile.caps.items():
            d[key] = min(d[key], cap)
    d["total_steps"] = plan.total_steps
    d.update(plan.td3_overrides)
    if plan.precision is not None:
        d["precision"] = plan.precision
    own = method_overrides(plan, spec.name, "td3")
    d.update(own)  # after --precision too: a setting for one method is the more specific
    explicit = plan.precision is not None or "precision" in plan.td3_overrides or "precision" in own
    d["precision"], reason = resolve_precision(d["precision"], device, explicit)
    try:
        return TD3Config.from_dict(d), reason
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{spec.name} on {env_id}: {exc}") from None


def plan_engine(plan: Plan, device: torch.device) -> tuple[str, str]:
    """The one engine every spiking method of the plan runs on. 'auto' is 'native' only where all
    of them can run natively (none can on CUDA or without a C compiler), else 'torch' for all:
    a comparison must not partly measure which method got the faster engine. Returns (engine, why)."""
    if plan.engine != "auto":
        return plan.engine, f"--engine {plan.engine}"
    for m in plan.methods:
        spec = get_method(m)
        if not spec.spiking:
            continue
        for env_id in plan.envs:
            td3, _ = _resolve_td3(spec, env_id, plan, device)
            reason = native_unusable_reason(device.type, td3.precision)
            if reason is not None:
                return "torch", f"auto: torch for every spiking method, since {m} on {env_id} cannot run native " \
                                f"({reason})"
    return "native", "auto: native kernels for every spiking method"


def world_size_for(spec: MethodSpec, plan: Plan, device: torch.device) -> int:
    """Ranks `spec`'s runs train on: --nproc if given, else the method's default on GPUs
    (SpikeRL: every local GPU), else one."""
    if plan.nproc is not None:
        return plan.nproc
    if plan.launcher == "slurm":
        # a method's "every local GPU" would be counted on the submitting host, not the compute
        # nodes: under SLURM the ranks of a run are what --nproc says (default 1), wherever submitted
        return 1
    return spec.world_size.resolve() if device.type == "cuda" else 1


def world_size_groups(plan: Plan, device: torch.device) -> dict[int, tuple[str, ...]]:
    """The plan's methods grouped by world size, in plan order."""
    groups: dict[int, list[str]] = {}
    for m in plan.methods:
        groups.setdefault(world_size_for(get_method(m), plan, device), []).append(m)
    return {w: tuple(ms) for w, ms in groups.items()}


def run_engine(spec: MethodSpec, requested: str, device: torch.device, precision: str) -> str:
    """The engine `spec`'s runs use; UsageError when --engine native cannot run here."""
    if not spec.spiking:
        return "torch"  # nothing to run natively: dense layers are BLAS calls on either engine
    try:
        return resolve_engine(requested, device.type, precision)
    except ValueError as exc:
        raise UsageError(f"{spec.name}: {exc}") from None


def method_overrides(plan: Plan, method: str, kind: str) -> dict[str, Any]:
    """The `--set METHOD:KEY=VALUE` overrides of one method: kind 'td3' or 'actor'."""
    return plan.method_overrides.get(method, {}).get(kind, {})


def _actor_params(spec: MethodSpec, env_id: str, plan: Plan) -> dict[str, Any]:
    actor = dict(spec.actor_params(env_id))
    own = method_overrides(plan, spec.name, "actor")
    for scope, overrides in (("", plan.actor_overrides), (f"{spec.name}:", own)):
        for key, raw in overrides.items():
            if key not in actor:
                raise UsageError(f"--set {scope}actor.{key}: {spec.name} has no actor setting {key!r}; "
                                 f"it has {', '.join(actor)}")
            try:
                actor[key] = coerce_value(actor[key], str(raw)) if isinstance(raw, str) else raw
            except ValueError as exc:
                raise UsageError(f"--set {scope}actor.{key}: {exc}") from None
    try:
        check_actor_params(spec, env_id, actor)
    except ValueError as exc:
        raise UsageError(f"--set {exc}" if plan.actor_overrides or own else f"{spec.name} on {env_id}: {exc}") \
            from None
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
