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

from spikerl.config import check_layer_sizes, check_number
from spikerl.method import ActorContext, MethodSpec
from spikerl.normalizers import ObsNormalizer, ZScoreNormalizer
from spikerl.popspike_actor import PopSpikingActor
from spikerl.population import Encoding

POISSON_FAMILIES = ("Hopper", "Walker2d")


def encoding_for(env_id: str) -> str:
    return "poisson" if env_id.split("-")[0] in POISSON_FAMILIES else "deterministic"


def actor_params(env_id: str) -> dict[str, Any]:
    return {"pop_dim": 10, "hidden": (256, 256), "timesteps": 5, "encoding": encoding_for(env_id),
            "mean_range": (-3.0, 3.0), "std": math.sqrt(0.15)}


def td3_params(env_id: str) -> dict[str, Any]:
    return {"lr_actor": 1e-4, "lr_critic": 1e-3, "critic_hidden": (256, 256), "precision": "fp32"}


def check_actor_params(p: dict[str, Any]) -> None:
    check_number("actor.pop_dim", p["pop_dim"], 2, 1_000, integer=True)
    check_layer_sizes("actor.hidden", p["hidden"])
    check_number("actor.timesteps", p["timesteps"], 1, 1_000, integer=True)
    if p["encoding"] not in [e.value for e in Encoding]:
        raise ValueError(f"actor.encoding must be one of {', '.join(e.value for e in Encoding)}, "
                         f"got {p['encoding']!r}")
    lo_hi = p["mean_range"]
    if not isinstance(lo_hi, (tuple, list)) or len(lo_hi) != 2:
        raise ValueError(f"actor.mean_range must be two numbers LO,HI, got {lo_hi!r}")
    for x in lo_hi:
        check_number("actor.mean_range", x, -1e3, 1e3)
    if not lo_hi[0] < lo_hi[1]:
        raise ValueError(f"actor.mean_range must have LO < HI, got {lo_hi!r}")
    check_number("actor.std", p["std"], 0.0, 1e3, open_lo=True)


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
    check_actor=check_actor_params,
)
