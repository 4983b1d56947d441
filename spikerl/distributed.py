"""Data-parallel plumbing over torch.distributed.

`DistContext` is what the training loop sees: rank, world size and four collectives (broadcast
start weights, average gradients, gather normaliser statistics, gather evaluation returns).
With world_size 1 every collective is the identity, so the loop has a single code path.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.distributed as dist
import torch.nn as nn


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = "none"
    device: torch.device = torch.device("cpu")

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def comm_device(self) -> torch.device:
        # NCCL moves CUDA tensors only; Gloo and MPI handle CPU tensors.
        return self.device if self.backend == "nccl" else torch.device("cpu")

    def broadcast_module_(self, module: nn.Module) -> None:
        """Make every rank start from rank 0's parameters and buffers."""
        if not self.active:
            return
        for t in list(module.parameters()) + list(module.buffers()):
            buf = t.data.to(self.comm_device())
            dist.broadcast(buf, src=0)
            t.data.copy_(buf)

    def average_grads_(self, grads: Sequence[torch.Tensor]) -> None:
        """All-reduce the gradients as one flat buffer and divide by the world size."""
        if not self.active or not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads]).to(self.comm_device())
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(self.world_size)
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset:offset + n].view_as(g))
            offset += n

    def all_gather_1d(self, t: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's copy of a same-shaped 1-D tensor, in rank order."""
        if not self.active:
            return [t]
        src = t.to(self.comm_device())
        out = [torch.empty_like(src) for _ in range(self.world_size)]
        dist.all_gather(out, src)
        return [o.to(t.device) for o in out]

    def all_gather_object(self, obj: object) -> list[object]:
        if not self.active:
            return [obj]
        out: list[object] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def split_budget(total: int, world_size: int, rank: int) -> int:
    """Env steps for one rank: the global budget split as evenly as possible, exactly summing to total."""
    return total // world_size + (1 if rank < total % world_size else 0)


def global_steps(local_steps: int, total: int, world_size: int) -> int:
    """Global env steps done when every rank has done `local_steps` (ranks step in lock-step)."""
    return sum(min(local_steps, split_budget(total, world_size, r)) for r in range(world_size))
