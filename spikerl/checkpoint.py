"""Atomic checkpoints that load with `torch.load(weights_only=True)`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_open

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated, corrupt or from another format."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over the old one, so a
    crash at any moment leaves either the previous or the new checkpoint, never half of one."""
    with atomic_open(Path(path), "wb") as f:
        torch.save({"format_version": FORMAT_VERSION, **state}, f)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated/corrupt files
        detail = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
        raise CheckpointError(f"corrupt checkpoint {path} ({type(exc).__name__}: {detail})") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not a spikerl-bench checkpoint (format {FORMAT_VERSION})")
    return state


def resume_step(run_dir, world_size, *, method, env_id, load=True):  # TEMP until the harness branch lands
    from .loop import checkpoint_path, complete_checkpoint_step
    step = complete_checkpoint_step(run_dir, world_size)
    if step is None:
        if any(run_dir.glob("checkpoint*.pt")):
            raise CheckpointError(f"{run_dir} holds checkpoints of another world size than {world_size} "
                                  "(or an incomplete set); resume with the world size that wrote them")
        return None
    if load:
        for rank in range(world_size):
            load_checkpoint(checkpoint_path(run_dir, rank, world_size, step))
    return step
