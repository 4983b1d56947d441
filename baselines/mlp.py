"""MLP reference: the ordinary (non-spiking) TD3 actor that anchors every spiking number (DESIGN §3.4)."""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn

from spikerl.config import check_layer_sizes
from spikerl.method import ActorContext, MethodSpec
from spikerl.normalizers import IdentityNormalizer, ObsNormalizer
from spikerl.precision import state_precision


class MLPActor(nn.Module):
    """obs [B, obs_dim] → ReLU hidden layers → act_limit · tanh(·) [B, act_dim]."""

    def __init__(self, obs_dim: int, act_dim: int, act_limit: float, hidden: Sequence[int] = (256, 256)):
        super().__init__()
        self.act_limit = float(act_limit)
        layers: list[nn.Module] = []
        sizes = [obs_dim, *(int(h) for h in hidden)]
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], act_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.act_limit * torch.tanh(state_precision(self.net(obs)))


def actor_params(env_id: str) -> dict[str, Any]:
    return {"hidden": (256, 256)}


def td3_params(env_id: str) -> dict[str, Any]:
    return {"lr_actor": 3e-4, "lr_critic": 3e-4, "critic_hidden": (256, 256), "precision": "fp32"}


def check_actor_params(p: dict[str, Any]) -> None:
    check_layer_sizes("actor.hidden", p["hidden"])


def build_actor(ctx: ActorContext) -> nn.Module:
    return MLPActor(ctx.obs_dim, ctx.act_dim, ctx.act_limit, **ctx.params)


def build_normalizer(ctx: ActorContext) -> ObsNormalizer:
    return IdentityNormalizer(ctx.obs_dim)


MLP = MethodSpec(
    name="mlp",
    summary="MLP reference TD3 (non-spiking): actor and critics 256-256 ReLU, lr 3e-4, raw obs, fp32",
    build_actor=build_actor,
    build_normalizer=build_normalizer,
    actor_params=actor_params,
    td3_params=td3_params,
    spiking=False,
    check_actor=check_actor_params,
)
