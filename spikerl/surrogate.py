"""Surrogate gradients and thresholds of the spike functions (a Heaviside step forward).

A spike o = H(x) has zero derivative almost everywhere, so training an SNN by backpropagation
replaces dH/dx by a surrogate in the backward pass only (DESIGN §3):

- PopSAN (rectangular window, not normalised):  o = H(v − 0.5),   do/dv = 1 if |v − 0.5| < 0.5 else 0.
- DSRL (fast sigmoid, slope 100):               S = H(U − θ),     dS/dU = 1 / (100·|U − θ| + 1)².
- Encoders (straight-through):                   d spike / d input = 1.

H(0) = 0 everywhere (a spike needs the input strictly above threshold), as in both originals.
The `*_grad` helpers are the single definition of each surrogate: the fused LIF recurrences in
`spikerl.lif` call them, and so do the step-by-step test references (tests/snn_reference.py),
so the fast path and its reference cannot drift apart.
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


def fast_sigmoid_grad_(x: torch.Tensor, slope: float = DSRL_SLOPE) -> torch.Tensor:
    """DSRL surrogate derivative at x = U − θ: 1 / (slope·|x| + 1)² (snntorch's fast_sigmoid),
    computed in place in x: the backward pass owns a fresh U − θ buffer, so no copy is needed."""
    return x.abs_().mul_(slope).add_(1.0).square_().reciprocal_()
