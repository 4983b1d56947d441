"""PopSAN (Tang, Kumar, Yoo, Michmizos, CoRL 2020): population-coded spiking actor, TD3, fp32.

Model (DESIGN §3.1): `spikerl.popspike_actor.PopSpikingActor` (Gaussian population encoder,
current-based LIF MLP, population decoder) on z-score-normalised observations, with the paper's
per-env encoding: Poisson spikes on Hopper and Walker2d, deterministic spikes elsewhere.
SpikeRL (baselines/spikerl.py) is this model trained with another recipe.
"""
from __future__ import annotations

import math
from typing import Any

import torch.nn as nn

from spikerl.method import ActorContext, MethodSpec
from spikerl.normalizers import ObsNormalizer, ZScoreNormalizer
from spikerl.popspike_actor import PopSpikingActor

POISSON_FAMILIES = ("Hopper", "Walker2d")


def encoding_for(env_id: str) -> str:
    return "poisson" if env_id.split("-")[0] in POISSON_FAMILIES else "deterministic"


def actor_params(env_id: str) -> dict[str, Any]:
    return {"pop_dim": 10, "hidden": (256, 256), "timesteps": 5, "encoding": encoding_for(env_id),
            "mean_range": (-3.0, 3.0), "std": math.sqrt(0.15)}


def td3_params(env_id: str) -> dict[str, Any]:
    return {"lr_actor": 1e-4, "lr_critic": 1e-3, "critic_hidden": (256, 256), "precision": "fp32"}


def build_actor(ctx: ActorContext) -> nn.Module:
    return PopSpikingActor(ctx.obs_dim, ctx.act_dim, ctx.act_limit, **ctx.params)


def build_normalizer(ctx: ActorContext) -> ObsNormalizer:
    return ZScoreNormalizer(ctx.obs_dim)


POPSAN = MethodSpec(
    name="popsan",
    summary="PopSAN (Tang et al., CoRL 2020): population-coded spiking actor (Poisson encoding on "
            "Hopper/Walker2d), z-score obs; TD3 lr 1e-4/1e-3, critics 256-256, fp32",
    build_actor=build_actor,
    build_normalizer=build_normalizer,
    actor_params=actor_params,
    td3_params=td3_params,
)
