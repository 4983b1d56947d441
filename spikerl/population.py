"""PopSAN's population coding: a learnable Gaussian-field spike encoder and a rate decoder.

Encoder (DESIGN §3.1). Each observation dimension i drives `pop_dim` neurons j with stimulation
    A_ij = exp(−(s_i − μ_ij)² / (2·σ_ij²)),
μ evenly spaced over `mean_range` (the same for every dimension), σ = sqrt(0.15); μ and σ are
learned with the actor. Over T timesteps A becomes spikes o_t [T, B, obs_dim·pop_dim]:
- deterministic (regular) spikes: accumulator v ← v + A; o_t = H(v − 0.999); v ← v − 0.999·o_t.
  The original's pseudo-spike passes the gradient straight through (d o_t / d v_t = 1) and the
  accumulator chain is differentiable, so d v_{t+1} / d v_t = 1 − 0.999 = 0.001 and
  dL/dA = Σ_t g_t · dL/do_t  with  g_t = Σ_{k<t} 0.001^k  (1, 1.001, 1.001001, ...).
  The fast path uses this closed form: one weighted sum over T instead of a T-step graph.
- Poisson spikes: o_t ~ Bernoulli(A) independently per step, sampled as U[0, 1) < A from
  torch's global RNG in [T, B, N] order (so seeding reproduces it, and a step-by-step loop
  drawing [B, N] per step gets the same spikes), straight-through: dL/dA = Σ_t dL/do_t.

Decoder: rate r = (1/T)·Σ_t o_t of each output neuron; per action dimension k,
    a_k = act_limit · tanh(Σ_j w_kj·r_kj + b_k)
(10 weights and 1 bias per dimension: the original's grouped Conv1d, initialised like it).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from contextvars import ContextVar
from enum import Enum
from typing import Iterator

import torch
import torch.nn as nn

from spikerl import native
from spikerl.lif import scalar
from spikerl.surrogate import ENCODER_V_TH
from spikerl.vmapped import is_vmapped

_POISSON_UNIFORMS: ContextVar[torch.Tensor | None] = ContextVar("poisson_uniforms", default=None)


class Encoding(str, Enum):
    DETERMINISTIC = "deterministic"
    POISSON = "poisson"


def _regular_spikes(a: torch.Tensor, timesteps: int) -> torch.Tensor:
    """Deterministic spike trains [T, B, N] from stimulation a [B, N]."""
    v_th = scalar(ENCODER_V_TH, a.dtype)
    o = a.new_empty((timesteps, *a.shape))
    o_t = o.unbind(0)
    v = a  # zero initial accumulator, so v_1 = A; from t = 1 on v is our own copy, updated in place
    for t in range(timesteps):
        if t:
            v.add_(a)
        torch.gt(v, v_th, out=o_t[t])
        if t + 1 < timesteps:
            v = torch.sub(v, o_t[t], alpha=ENCODER_V_TH) if t == 0 else v.sub_(o_t[t], alpha=ENCODER_V_TH)
    return o


_GAINS: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}


def _accumulator_gains(timesteps: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """g_t = Σ_{k<t} (1 − 0.999)^k for t = 1..T: d o_t / d A through the differentiable accumulator.

    Made on the device by T fills with Python scalars (kernel arguments), never by copying a host
    list: a host->device copy is illegal inside a CUDA-graph capture, where this may first be reached."""
    key = (timesteps, dtype, device)
    if key not in _GAINS:
        gains = torch.empty(timesteps, dtype=dtype, device=device)
        for t in range(timesteps):
            gains[t].fill_(sum((1.0 - ENCODER_V_TH) ** k for k in range(t + 1)))
        _GAINS[key] = gains
    return _GAINS[key]


class _RegularSpikes(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: torch.Tensor, timesteps: int) -> torch.Tensor:
        ctx.timesteps = timesteps
        return _regular_spikes(a, timesteps)

    @staticmethod
    def backward(ctx, grad_o: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _regular_spikes_backward(grad_o, ctx.timesteps), None


def _regular_spikes_backward(grad_o: torch.Tensor, timesteps: int) -> torch.Tensor:
    """dL/dA = Σ_t g_t · dL/do_t through the differentiable accumulator."""
    g = _accumulator_gains(timesteps, grad_o.dtype, grad_o.device)
    return (g @ grad_o.reshape(timesteps, -1)).view(grad_o.shape[1:])


class _RegularSpikesVmap(torch.autograd.Function):
    """`_RegularSpikes` for torch.func.vmap (seed batches, `spikerl.seed_batch`): elementwise
    over the stimulation, so its vmap rule encodes all seeds in one call, spikes [T, K, B, N]."""

    generate_vmap_rule = False

    @staticmethod
    def forward(a: torch.Tensor, timesteps: int) -> torch.Tensor:
        return _regular_spikes(a, timesteps)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.timesteps = inputs[1]

    @staticmethod
    def backward(ctx, grad_o: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _regular_spikes_backward(grad_o, ctx.timesteps), None

    @staticmethod
    def vmap(info, in_dims, a: torch.Tensor, timesteps: int):
        d = in_dims[0]
        if d is None:
            return _RegularSpikesVmap.apply(a, timesteps), None
        return _RegularSpikesVmap.apply(a.movedim(d, 0), timesteps), 1


@contextmanager
def poisson_uniforms(u: torch.Tensor) -> Iterator[None]:
    """The U[0, 1) draws [T, B, N] the Poisson encoding in this block compares with A, instead of
    drawing them from torch's global RNG.

    A seed batch has no global RNG stream per seed: it draws each seed's uniforms from that seed's
    own generator, in the order its single run would, and hands them in here (inside vmap, or
    to one seed's actor)."""
    token = _POISSON_UNIFORMS.set(u)
    try:
        yield
    finally:
        _POISSON_UNIFORMS.reset(token)


def _drawn_poisson_spikes(a: torch.Tensor) -> torch.Tensor:
    """Poisson spikes of a from the uniforms handed in by `poisson_uniforms`, straight-through.

    a − a.detach() is exactly 0, so the spikes are exact; its gradient is dL/dA = Σ_t dL/do_t."""
    u = _POISSON_UNIFORMS.get()
    if u is None:
        raise RuntimeError("Poisson encoding inside vmap needs each seed's uniforms: wrap the call in "
                           "spikerl.population.poisson_uniforms(u)")
    return torch.lt(u, a.detach()).to(a.dtype) + (a - a.detach())


def _poisson_spikes(a: torch.Tensor, timesteps: int) -> torch.Tensor:
    """o_t ~ Bernoulli(A) [T, B, N]: uniform draws below A (3x faster than torch.bernoulli on CPU),
    from torch's global RNG, or those handed in by `poisson_uniforms` (a seed batch's per-seed draws)."""
    u = _POISSON_UNIFORMS.get()
    if u is not None:
        return torch.lt(u, a).to(a.dtype)
    return torch.rand((timesteps, *a.shape), dtype=a.dtype, device=a.device).lt_(a)


class _PoissonSpikes(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: torch.Tensor, timesteps: int) -> torch.Tensor:
        return _poisson_spikes(a, timesteps)

    @staticmethod
    def backward(ctx, grad_o: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad_o.sum(0), None


class PopulationEncoder(nn.Module):
    """obs [B, obs_dim] → spikes o [T, B, obs_dim·pop_dim] (neuron index = i·pop_dim + j)."""

    def __init__(self, obs_dim: int, pop_dim: int = 10, timesteps: int = 5,
                 encoding: Encoding | str = Encoding.DETERMINISTIC,
                 mean_range: tuple[float, float] = (-3.0, 3.0), std: float = math.sqrt(0.15)):
        super().__init__()
        if pop_dim < 2:
            raise ValueError(f"pop_dim must be >= 2 to span mean_range, got {pop_dim}")
        if timesteps < 1:
            raise ValueError(f"timesteps must be >= 1, got {timesteps}")
        self.obs_dim, self.pop_dim, self.timesteps = obs_dim, pop_dim, timesteps
        self.encoding = Encoding(encoding)
        lo, hi = float(mean_range[0]), float(mean_range[1])
        delta = (hi - lo) / (pop_dim - 1)
        means = torch.tensor([lo + delta * j for j in range(pop_dim)])  # the original's spacing, exactly
        self.mean = nn.Parameter(means.repeat(obs_dim, 1))
        self.std = nn.Parameter(torch.full((obs_dim, pop_dim), float(std)))

    def stimulation(self, obs: torch.Tensor) -> torch.Tensor:
        """A [B, obs_dim·pop_dim] in (0, 1]: each neuron's Gaussian receptive field at obs."""
        diff = obs.unsqueeze(-1) - self.mean
        a = torch.exp(scalar(-0.5, diff.dtype) * diff.square() / self.std.square())
        return a.flatten(1)

    def spike_trains(self, a: torch.Tensor) -> torch.Tensor:
        """Spikes [T, B, N] from stimulation a, without a graph (the same draws as `forward`)."""
        if self.encoding is Encoding.POISSON:
            return _poisson_spikes(a.detach(), self.timesteps)
        if native.usable(a):
            return native.regular_spikes(a, self.timesteps)
        return _regular_spikes(a.detach(), self.timesteps)

    def spike_gains(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """d o_t / d A for t = 1..T [T]: the straight-through gradient of `forward`'s spikes."""
        if self.encoding is Encoding.POISSON:
            return torch.ones(self.timesteps, dtype=dtype, device=device)
        return _accumulator_gains(self.timesteps, dtype, device)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        a = self.stimulation(obs)
        if self.encoding is Encoding.POISSON:
            if torch.is_grad_enabled() and a.requires_grad:
                return _PoissonSpikes.apply(a, self.timesteps)
            if is_vmapped(a):  # a seed batch: requires_grad is not visible through vmap's wrapper
                return _drawn_poisson_spikes(a)
            return _poisson_spikes(a, self.timesteps)
        if torch.is_grad_enabled() and a.requires_grad:
            return _RegularSpikes.apply(a, self.timesteps)
        if is_vmapped(a):
            return _RegularSpikesVmap.apply(a, self.timesteps)
        return _regular_spikes(a, self.timesteps)

    def extra_repr(self) -> str:
        return f"obs_dim={self.obs_dim}, pop_dim={self.pop_dim}, timesteps={self.timesteps}, " \
               f"encoding={self.encoding.value}"


class PopulationDecoder(nn.Module):
    """Spikes o [T, B, act_dim·pop_dim] → action [B, act_dim] in [−act_limit, act_limit]."""

    def __init__(self, act_dim: int, act_limit: float, pop_dim: int = 10):
        super().__init__()
        self.act_dim, self.pop_dim, self.act_limit = act_dim, pop_dim, float(act_limit)
        bound = 1.0 / math.sqrt(pop_dim)  # nn.Conv1d(act_dim, act_dim, pop_dim, groups=act_dim) default init
        self.weight = nn.Parameter(torch.empty(act_dim, pop_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(act_dim).uniform_(-bound, bound))

    def forward(self, o: torch.Tensor) -> torch.Tensor:
        r = (o.sum(0) / scalar(float(o.shape[0]), o.dtype)).view(-1, self.act_dim, self.pop_dim)
        return scalar(self.act_limit, o.dtype) * torch.tanh((r * self.weight).sum(-1) + self.bias)

    def extra_repr(self) -> str:
        return f"act_dim={self.act_dim}, pop_dim={self.pop_dim}, act_limit={self.act_limit}"
