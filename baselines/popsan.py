"""PopSAN (Tang, Kumar, Yoo, Michmizos, CoRL 2020): population-coded spiking actor, TD3, fp32.

Same actor as SpikeRL (`spikerl.popspike_actor.PopSpikingActor`, DESIGN §3.1), with the paper's
per-env encoding: Poisson spikes on Hopper and Walker2d, deterministic spikes elsewhere.
"""
from __future__ import annotations

from typing import Any

from spikerl import spikerl_method
from spikerl.method import MethodSpec

POISSON_FAMILIES = ("Hopper", "Walker2d")


def encoding_for(env_id: str) -> str:
    return "poisson" if env_id.split("-")[0] in POISSON_FAMILIES else "deterministic"


def actor_params(env_id: str) -> dict[str, Any]:
    # the same population-coded architecture as SpikeRL; only the encoding differs by env
    return {**spikerl_method.actor_params(env_id), "encoding": encoding_for(env_id)}


def td3_params(env_id: str) -> dict[str, Any]:
    return {**spikerl_method.td3_params(env_id), "precision": "fp32"}


POPSAN = MethodSpec(
    name="popsan",
    summary="PopSAN (Tang et al., CoRL 2020): population-coded spiking actor (Poisson encoding on "
            "Hopper/Walker2d), z-score obs; TD3 lr 1e-4/1e-3, critics 256-256, fp32",
    build_actor=spikerl_method.build_actor,
    build_normalizer=spikerl_method.build_normalizer,
    actor_params=actor_params,
    td3_params=td3_params,
)
