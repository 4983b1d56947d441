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

    def any_true(self, flag: bool) -> bool:
        """True on every rank if the flag is true on any rank (e.g. a stop request)."""
        if not self.active:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def broadcast_object(self, obj: object) -> object:
        """Rank 0's object on every rank."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def split_budget(total: int, world_size: int, rank: int) -> int:
    """Env steps for one rank: the global budget split as evenly as possible, exactly summing to total."""
    return total // world_size + (1 if rank < total % world_size else 0)


def global_steps(local_steps: int, total: int, world_size: int) -> int:
    """Global env steps done when every rank has done `local_steps` (ranks step in lock-step)."""
    return sum(min(local_steps, split_budget(total, world_size, r)) for r in range(world_size))


# ---------------------------------------------------------------- launch detection and set-up

@dataclass(frozen=True)
class LaunchInfo:
    """Where this process sits in a job, read from its launcher's environment."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    launcher: str
    """'torchrun', 'openmpi', 'mpich', 'slurm' or 'spikerl-bench'."""


_LAUNCHERS = (
    # (name, rank, world size, local rank): the first whose rank and size are both set wins
    ("torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK"),
    ("openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),
    ("mpich", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"),
    ("slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"),
)


def first_slurm_host(nodelist: str) -> str:
    """First host of a SLURM node list: 'gpu[07-09,12],cpu3' -> 'gpu07'."""
    head = nodelist.strip()
    depth = 0
    for i, ch in enumerate(head):  # cut at the first top-level comma
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            head = head[:i]
            break
    if "[" not in head:
        return head
    prefix, rest = head.split("[", 1)
    first = rest.rstrip("]").split(",")[0].split("-")[0]
    return prefix + first


def detect_launch(environ: dict[str, str] | None = None) -> LaunchInfo | None:
    """None for a plain single process; otherwise rank, world and rendezvous from the launcher."""
    import os

    env = dict(os.environ if environ is None else environ)
    for launcher in _LAUNCHERS:
        name, r, w, lr = launcher
        if r in env and w in env:
            rank, world = int(env[r]), int(env[w])
            local = int(env.get(lr, rank))
            break
    else:
        return None
    if world <= 1 and name != "torchrun":
        return None
    if name == "torchrun" and env.get("SPIKERL_BENCH_LAUNCHER") == "spikerl-bench":
        name = "spikerl-bench"
    addr = env.get("MASTER_ADDR")
    if not addr:
        nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
        addr = first_slurm_host(nodelist) if nodelist else "127.0.0.1"
    port = env.get("MASTER_PORT")
    if not port:
        job = env.get("SLURM_JOB_ID")
        port = str(20_000 + int(job) % 20_000) if job and job.isdigit() else "29500"
    return LaunchInfo(rank, world, local, addr, int(port), name)


class DistributedSetupError(RuntimeError):
    """A backend or launch that cannot work here; the message says what to do instead."""


def resolve_backend(backend: str, device: torch.device) -> str:
    if backend == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise DistributedSetupError("--backend nccl needs CUDA devices; use --backend gloo on CPUs")
    if backend == "mpi" and not dist.is_mpi_available():
        raise DistributedSetupError(
            "--backend mpi needs a PyTorch built with MPI support (this one is not: "
            "torch.distributed.is_mpi_available() is False); launching with mpirun and --backend nccl "
            "or gloo works without it")
    if backend not in ("nccl", "gloo", "mpi"):
        raise DistributedSetupError(f"unknown backend {backend!r} (auto, nccl, gloo or mpi)")
    return backend


def check_local_gpus(nproc: int | None, backend: str, device: torch.device) -> None:
    """Refuse `nproc` local NCCL ranks on fewer visible GPUs: NCCL cannot run two ranks of one
    communicator on one GPU, so they would hang or fail at the first all-reduce, after the run
    folder is written (Gloo ranks may share a GPU: tools/gpu_check_all.sh runs two on one)."""
    if nproc is None or nproc < 2 or device.type != "cuda":
        return
    if resolve_backend(backend, device) != "nccl":
        return
    visible = torch.cuda.device_count()
    if visible < nproc:
        raise DistributedSetupError(f"--nproc {nproc} with NCCL needs {nproc} visible GPUs, this machine has {visible} "
                                    f"(NCCL puts one rank on each GPU; use --backend gloo to share them, or --nproc "
                                    f"{max(1, visible)})")


def init_distributed(launch: LaunchInfo, backend: str, device_type: str, timeout_s: float = 1800) -> DistContext:
    """Join the process group and pick this rank's device (cuda:local_rank on GPUs)."""
    import datetime

    if device_type == "cuda":
        # (modulo: under SLURM each task may see only its own GPU, as cuda:0, whatever its local rank)
        device = torch.device("cuda", launch.local_rank % max(1, torch.cuda.device_count()))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    backend = resolve_backend(backend, device)
    timeout = datetime.timedelta(seconds=timeout_s)
    if not dist.is_initialized():
        if backend == "mpi":
            dist.init_process_group("mpi", timeout=timeout)
        else:
            dist.init_process_group(backend, init_method=f"tcp://{launch.master_addr}:{launch.master_port}",
                                    rank=launch.rank, world_size=launch.world_size, timeout=timeout)
    rank, world = dist.get_rank(), dist.get_world_size()
    return DistContext(rank=rank, world_size=world, local_rank=launch.local_rank, backend=backend, device=device)


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
