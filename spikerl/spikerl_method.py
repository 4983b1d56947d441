"""SpikeRL (Tahmid, Gates, Luszczek, Schuman; ICONS 2024/2025): the PopSAN actor, trained its way.

Model: `PopSpikingActor` with deterministic encoding on every environment and the z-score
observation normaliser (DESIGN §3.2). What defines SpikeRL is its recipe: data-parallel training
over all local GPUs (a launcher concern: world size is not an actor or TD3 setting) and bfloat16
mixed precision, which our harness does with real gradient averaging and bf16 (not the public
code's fp16).
"""
from __future__ import annotations

import math
from typing import Any

import torch.nn as nn

from spikerl.method import ActorContext, MethodSpec
from spikerl.normalizers import ObsNormalizer, ZScoreNormalizer
from spikerl.popspike_actor import PopSpikingActor


def actor_params(env_id: str) -> dict[str, Any]:
    return {"pop_dim": 10, "hidden": (256, 256), "timesteps": 5, "encoding": "deterministic",
            "mean_range": (-3.0, 3.0), "std": math.sqrt(0.15)}


def td3_params(env_id: str) -> dict[str, Any]:
    return {"lr_actor": 1e-4, "lr_critic": 1e-3, "critic_hidden": (256, 256), "precision": "bf16"}


def build_actor(ctx: ActorContext) -> nn.Module:
    return PopSpikingActor(ctx.obs_dim, ctx.act_dim, ctx.act_limit, **ctx.params)


def build_normalizer(ctx: ActorContext) -> ObsNormalizer:
    return ZScoreNormalizer(ctx.obs_dim)


SPIKERL = MethodSpec(
    name="spikerl",
    summary="SpikeRL (Tahmid et al., ICONS 2024/2025): PopSAN actor with deterministic encoding, "
            "trained data-parallel on all local GPUs in bf16; TD3 lr 1e-4/1e-3, critics 256-256",
    build_actor=build_actor,
    build_normalizer=build_normalizer,
    actor_params=actor_params,
    td3_params=td3_params,
)
