"""What a method is to the harness: an actor, an observation normaliser and default hyperparameters.

Each method is one file in baselines/ defining one `MethodSpec`; the registry
(`baselines.registry`) maps names to specs, built-ins first, then third-party plugins.
Everything else (critics, TD3, replay, loop) is the shared harness.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Mapping

import torch
import torch.nn as nn


@dataclass(frozen=True)
class ActorContext:
    """Shapes and settings an actor or normaliser is built from."""

    obs_dim: int
    act_dim: int
    act_limit: float
    """Symmetric action bound: actions lie in [-act_limit, act_limit] per dimension."""
    env_id: str
    params: dict[str, Any]
    """The method's actor parameters after overrides (e.g. timesteps, hidden sizes, threshold)."""


class WorldSize(str, Enum):
    """How many data-parallel ranks a method trains on when the user gives no --nproc."""

    ONE = "one"
    LOCAL_GPUS = "local-gpus"
    """Every local GPU; 1 on a machine without CUDA."""

    def resolve(self) -> int:
        if self is WorldSize.LOCAL_GPUS and torch.cuda.is_available():
            return max(1, torch.cuda.device_count())
        return 1


@dataclass(frozen=True)
class ParamsOverlay:
    """Per-env parameters of a base method with fixed values laid over them.

    A module-level callable rather than a closure, so that a derived spec still pickles."""

    base: Callable[[str], dict[str, Any]]
    overrides: tuple[tuple[str, Any], ...]
    """(key, value) pairs: a tuple, so the spec stays immutable and hashable."""

    def __call__(self, env_id: str) -> dict[str, Any]:
        # overridden keys keep the base's position, so listings read the same for both methods
        return {**self.base(env_id), **dict(self.overrides)}


@dataclass(frozen=True)
class MethodSpec:
    name: str
    """The name users type (`run --methods NAME`) and run folders are named after."""
    summary: str
    """One line: the paper and what defines the recipe."""
    build_actor: Callable[[ActorContext], nn.Module]
    """Returns a module mapping normalised obs [B, obs_dim] to actions [B, act_dim] in bounds."""
    build_normalizer: Callable[[ActorContext], nn.Module]
    """Returns an ObsNormalizer (spikerl.normalizers) whose statistics live in buffers."""
    actor_params: Callable[[str], dict[str, Any]]
    """Default actor parameters for an env id."""
    td3_params: Callable[[str], dict[str, Any]]
    """Overrides of TD3Config defaults for an env id (learning rates, critic sizes, precision...)."""
    world_size: WorldSize = WorldSize.ONE
    """Data-parallel ranks when the user does not choose (a launcher setting, not a TD3 one)."""
    spiking: bool = True
    """Whether the actor has spiking layers (which run on the chosen engine; see spikerl.native_lib)."""
    check_actor: Callable[[dict[str, Any]], None] | None = None
    """Raises ValueError (one line, naming the setting) for actor parameters the actor cannot be
    built from or would train nonsense with (zero widths, NaN, an unknown encoding). Called on
    every user override before a run folder is written, and on a run folder's own config."""

    def with_recipe(self, name: str, summary: str, *, actor: Mapping[str, Any] | None = None,
                    td3: Mapping[str, Any] | None = None, world_size: WorldSize | None = None) -> MethodSpec:
        """This method's model, trained another way: the same actor and normaliser builders,
        with `actor` and `td3` laid over this method's per-env defaults on every env."""
        return dataclasses.replace(
            self, name=name, summary=summary,
            actor_params=ParamsOverlay(self.actor_params, tuple((actor or {}).items())),
            td3_params=ParamsOverlay(self.td3_params, tuple((td3 or {}).items())),
            world_size=self.world_size if world_size is None else world_size,
        )
