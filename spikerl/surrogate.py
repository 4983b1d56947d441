"""Surrogate spike functions: a Heaviside step forward, a smooth stand-in derivative backward.

A spike o = H(x) has zero derivative almost everywhere, so training an SNN by backpropagation
replaces dH/dx by a surrogate in the backward pass only (DESIGN §3):

- PopSAN (rectangular window, not normalised):  o = H(v − 0.5),   do/dv = 1 if |v − 0.5| < 0.5 else 0.
- DSRL (fast sigmoid, slope 100):               S = H(U − θ),     dS/dU = 1 / (100·|U − θ| + 1)².
- Encoders (straight-through):                   d spike / d input = 1.

H(0) = 0 everywhere (a spike needs the input strictly above threshold), as in both originals.
The `*_grad` helpers are the single definition of each surrogate; the fused LIF kernels in
`spikerl.lif` call them so that the fast path and these reference Functions cannot drift apart.
"""
from __future__ import annotations

import torch

POPSAN_V_TH = 0.5
"""PopSAN membrane threshold."""
POPSAN_WINDOW = 0.5
"""Half-width of PopSAN's rectangular surrogate window around the threshold."""
DSRL_SLOPE = 100.0
"""Slope k of DSRL's fast-sigmoid surrogate 1 / (k·|x| + 1)²."""
ENCODER_V_TH = 0.999
"""Threshold of PopSAN's deterministic (regular-spike) encoder accumulator."""


def rect_grad(v: torch.Tensor) -> torch.Tensor:
    """PopSAN surrogate derivative: 1 where |v − 0.5| < 0.5, else 0 (same dtype as v)."""
    return (v - POPSAN_V_TH).abs_().lt_(POPSAN_WINDOW)  # in place: a float 0/1 mask, no bool round trip


def fast_sigmoid_grad(x: torch.Tensor, slope: float = DSRL_SLOPE) -> torch.Tensor:
    """DSRL surrogate derivative at x = U − θ: 1 / (slope·|x| + 1)² (snntorch's fast_sigmoid)."""
    return fast_sigmoid_grad_(x.clone(), slope)


def fast_sigmoid_grad_(x: torch.Tensor, slope: float = DSRL_SLOPE) -> torch.Tensor:
    """fast_sigmoid_grad computed in place in x (the same operations, so the same rounding)."""
    return x.abs_().mul_(slope).add_(1.0).square_().reciprocal_()


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
        return grad_s * fast_sigmoid_grad(x)


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
