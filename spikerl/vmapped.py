"""Whether a tensor is inside `torch.func.vmap` (a seed batch, `spikerl.seed_batch`).

Under vmap a tensor is a wrapper whose `requires_grad` is always False, even when the stacked
tensor underneath is tracked by autograd outside vmap; the spiking Functions therefore ask this
instead, and route batched inputs to their vmap-capable twins.
"""
from __future__ import annotations

import torch

try:
    _is_batched = torch._C._functorch.is_batchedtensor
except AttributeError:  # a torch without functorch cannot vmap at all: nothing is ever batched
    def _is_batched(t: torch.Tensor) -> bool:
        return False


def is_vmapped(t: torch.Tensor) -> bool:
    """True for a tensor that vmap is batching over (seeds of a seed batch)."""
    return bool(_is_batched(t))
