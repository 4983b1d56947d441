"""Whether a tensor is inside `torch.func.vmap` (a seed batch, `spikerl.seed_batch`).

Under vmap a tensor is a wrapper whose `requires_grad` is always False, even when the stacked
tensor underneath is tracked by autograd outside vmap; the spiking Functions therefore ask this
instead, and route batched inputs to their vmap-capable twins.
"""
from __future__ import annotations

from typing import Callable

import torch


def _never_batched(t: torch.Tensor) -> bool:
    return False


# a torch without functorch cannot vmap at all: nothing is ever batched
_is_batched: Callable[[torch.Tensor], bool] = getattr(getattr(torch._C, "_functorch", None),
                                                          "is_batchedtensor", _never_batched)


def is_vmapped(t: torch.Tensor) -> bool:
    """True for a tensor that vmap is batching over (seeds of a seed batch)."""
    return bool(_is_batched(t))
