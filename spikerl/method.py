"""What a method is to the harness: an actor, an observation normaliser and default hyperparameters.

A method file (spikerl/spikerl_method.py, baselines/popsan.py, ...) defines one `MethodSpec`;
the registry (`baselines.registry`) maps names to specs. Everything else (critics, TD3,
replay, loop) is the shared harness.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

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


@dataclass(frozen=True)
class MethodSpec:
    name: str
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
    spiking: bool = True
