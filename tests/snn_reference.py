"""Naive step-by-step reference implementations, for tests only.

Each one is a direct transcription of the equations in DESIGN §3 (and of the original PopSAN /
snntorch-style code): a Python loop over timesteps, one small op per equation term, per-step
matmuls, and plain autograd through the spike Functions below, whose backward passes use the
surrogate derivatives of `spikerl.surrogate`. They read the parameters of the fast modules, so a
fast model and its reference compute the same function.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from spikerl.surrogate import ENCODER_V_TH, POPSAN_V_TH, fast_sigmoid_grad_, rect_grad


class RectSpike(torch.autograd.Function):
    """o = H(v − 0.5) with PopSAN's rectangular surrogate gradient."""

    @staticmethod
    def forward(ctx, v: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(v)
        return (v > POPSAN_V_TH).to(v.dtype)

    @staticmethod
    def backward(ctx, grad_o: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (v,) = ctx.saved_tensors
        return grad_o * rect_grad(v)


class FastSigmoidSpike(torch.autograd.Function):
    """S = H(x) for x = U − θ, with DSRL's fast-sigmoid surrogate gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_s: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_s * fast_sigmoid_grad_(x.clone())  # a copy: the helper works in place, x is saved state


class StraightThroughThreshold(torch.autograd.Function):
    """spike = H(v − threshold) forward, identity backward (PopSAN's regular-spike encoder)."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, threshold: float = ENCODER_V_TH) -> torch.Tensor:  # type: ignore[override]
        return (v > threshold).to(v.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad, None


class StraightThroughBernoulli(torch.autograd.Function):
    """spike ~ Bernoulli(p) forward, identity backward (PopSAN's Poisson encoder).

    Sampled as U[0, 1) < p from torch's global RNG, like the fast encoder, so both draw the same
    spikes from the same seed.
    """

    @staticmethod
    def forward(ctx, p: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.rand_like(p).lt_(p)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad


rect_spike = RectSpike.apply
fast_sigmoid_spike = FastSigmoidSpike.apply
straight_through_threshold = StraightThroughThreshold.apply
straight_through_bernoulli = StraightThroughBernoulli.apply


@dataclass
class SpikeRecord:
    rates: list[float] = field(default_factory=list)
    """Mean spike rate of each spiking layer (encoder first)."""


def popsan_encoder_naive(encoder, obs: torch.Tensor) -> list[torch.Tensor]:
    """PopSAN encoder as in the original code: list of T spike tensors [B, obs_dim·pop_dim]."""
    B = obs.shape[0]
    obs = obs.view(-1, encoder.obs_dim, 1)
    pop_act = torch.exp(-(1.0 / 2.0) * (obs - encoder.mean).pow(2) / encoder.std.pow(2)).view(B, -1)
    spikes = []
    if encoder.encoding.value == "poisson":
        for _ in range(encoder.timesteps):
            spikes.append(straight_through_bernoulli(pop_act))
        return spikes
    volt = torch.zeros_like(pop_act)
    for _ in range(encoder.timesteps):
        volt = volt + pop_act
        spike = straight_through_threshold(volt, 0.999)
        spikes.append(spike)
        volt = volt - spike * 0.999
    return spikes


def popsan_lif_naive(currents: list[torch.Tensor]) -> list[torch.Tensor]:
    """PopSAN LIF on per-step input currents I_t: c, v, o loop with the delayed, differentiable reset."""
    c = torch.zeros_like(currents[0])
    v = torch.zeros_like(currents[0])
    o = torch.zeros_like(currents[0])
    out = []
    for i_t in currents:
        c = c * 0.5 + i_t
        v = v * 0.75 * (1.0 - o) + c
        o = rect_spike(v)
        out.append(o)
    return out


def popsan_actor_naive(actor, obs: torch.Tensor, record: SpikeRecord | None = None) -> torch.Tensor:
    """PopSpikingActor, step by step: every layer computes W·x_t + b per timestep."""
    spikes = popsan_encoder_naive(actor.encoder, obs)
    if record is not None:
        record.rates.append(torch.stack(spikes).mean().item())
    for layer in actor.layers:
        spikes = popsan_lif_naive([F.linear(x_t, layer.fc.weight, layer.fc.bias) for x_t in spikes])
        if record is not None:
            record.rates.append(torch.stack(spikes).mean().item())
    dec = actor.decoder
    total = spikes[0]
    for o_t in spikes[1:]:
        total = total + o_t
    rates = total / len(spikes)
    # the original's decoder: a grouped Conv1d, one 10-weight kernel per action dimension
    x = F.conv1d(rates.view(-1, dec.act_dim, dec.pop_dim), dec.weight.unsqueeze(1), dec.bias, groups=dec.act_dim)
    return dec.act_limit * torch.tanh(x.view(-1, dec.act_dim))


def dsrl_lif_naive(currents: list[torch.Tensor], theta: float, decaying_current: bool) -> list[torch.Tensor]:
    """DSRL LIF: U = β·U + I (I = α·I + J if decaying), S = H(U − θ), U ← 0 where S (detached)."""
    mem = torch.zeros_like(currents[0])
    cur = torch.zeros_like(currents[0])
    out = []
    for j_t in currents:
        cur = 0.5 * cur + j_t if decaying_current else j_t
        mem = 0.5 * mem + cur
        spk = fast_sigmoid_spike(mem - theta)
        mem = mem * (1.0 - spk.detach())
        out.append(spk)
    return out


def dsrl_actor_naive(actor, obs_norm: torch.Tensor, record: SpikeRecord | None = None) -> torch.Tensor:
    """DSRLActor, step by step, with the output integrator U_t = U_{t−1} + W₂·S¹_t."""
    zero = torch.zeros_like(obs_norm)
    x = torch.cat([torch.maximum(obs_norm, zero), torch.maximum(-obs_norm, zero)], dim=-1)
    T = actor.timesteps
    s0 = dsrl_lif_naive([F.linear(x, actor.fc0.weight) for _ in range(T)], actor.threshold, False)
    s1 = dsrl_lif_naive([F.linear(s, actor.fc1.weight) for s in s0], actor.threshold, True)
    if record is not None:
        record.rates += [torch.stack(s0).mean().item(), torch.stack(s1).mean().item()]
    u = torch.zeros(obs_norm.shape[0], actor.fc2.out_features, dtype=obs_norm.dtype, device=obs_norm.device)
    for s in s1:
        u = u + F.linear(s, actor.fc2.weight)
    return actor.act_limit * torch.tanh(u)
