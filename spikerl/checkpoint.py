"""Atomic checkpoints that load with `torch.load(weights_only=True)`, their file names, and the
one check of whether a run folder can be resumed.

One process writes RUN/.../checkpoint.pt, replaced atomically. Data parallel: one file per rank
and step, `checkpoint.step<S>.rank<r>.pt`; older steps are deleted only after every rank has
written the new one (`prune_checkpoints`), so a rank that dies mid-save never leaves the job
without a full set.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from .atomic import WriteError, atomic_open

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT_VERSION = 2
"""2: the loop's state under "loop" (`LoopState.state_dict`) instead of loose counters."""

_RANK_FILE = re.compile(r"checkpoint\.step(\d+)\.rank(\d+)\.pt")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated, corrupt, from another format, or from another run."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over the old one, so a
    crash at any moment leaves either the previous or the new checkpoint, never half of one."""
    try:
        with atomic_open(Path(path), "wb") as f:
            torch.save({"format_version": FORMAT_VERSION, **state}, f)
    except WriteError:
        raise
    except RuntimeError as exc:  # torch's zip writer reports a full disk as "unexpected pos ..."
        if "inline_container" not in str(exc) and "write" not in str(exc).lower():
            raise
        raise WriteError(Path(path), exc) from None


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated/corrupt files
        detail = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
        raise CheckpointError(f"corrupt checkpoint {path} ({type(exc).__name__}: {detail})") from None
    if not isinstance(state, dict) or "format_version" not in state:
        raise CheckpointError(f"{path} is not a spikerl-bench checkpoint")
    if state["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"{path} is in checkpoint format {state['format_version']}; this version resumes "
                              f"only format {FORMAT_VERSION}: finish the run with the version that started it")
    return state


def checkpoint_path(run_dir: Path, rank: int = 0, world_size: int = 1, step: int = 0) -> Path:
    """Where `rank` of a `world_size`-process run writes its checkpoint of global step `step`
    (one process: always checkpoint.pt, whatever the step)."""
    if world_size == 1:
        return run_dir / CHECKPOINT_NAME
    return run_dir / f"checkpoint.step{step}.rank{rank}.pt"


def _rank_files(run_dir: Path) -> set[tuple[int, int]]:
    """(step, rank) of every data-parallel checkpoint file in run_dir."""
    found = set()
    for p in run_dir.glob("checkpoint.step*.rank*.pt"):
        m = _RANK_FILE.fullmatch(p.name)
        if m:
            found.add((int(m.group(1)), int(m.group(2))))
    return found


def checkpoint_steps(run_dir: Path, rank: int, world_size: int) -> set[int]:
    """The steps for which `rank` has a checkpoint ({0} for a one-process checkpoint.pt)."""
    if world_size == 1:
        return {0} if (run_dir / CHECKPOINT_NAME).exists() else set()
    return {step for step, r in _rank_files(run_dir) if r == rank}


def complete_checkpoint_step(run_dir: Path, world_size: int) -> int | None:
    """The latest step for which every rank's checkpoint exists (None if there is none)."""
    common = set.intersection(*(checkpoint_steps(run_dir, r, world_size) for r in range(world_size)))
    return max(common) if common else None


def prune_checkpoints(run_dir: Path, rank: int, world_size: int, keep_step: int) -> None:
    """Delete `rank`'s checkpoints of other steps; call only once every rank has written `keep_step`."""
    for step in checkpoint_steps(run_dir, rank, world_size) - {keep_step}:
        checkpoint_path(run_dir, rank, world_size, step).unlink(missing_ok=True)


def load_run_checkpoint(run_dir: Path, rank: int, world_size: int, step: int, *, method: str, env_id: str,
                        map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """`rank`'s checkpoint of `step`, refused (CheckpointError) unless this method, env and world size wrote it."""
    path = checkpoint_path(run_dir, rank, world_size, step)
    state = load_checkpoint(path, map_location=map_location)
    origin = (state.get("method"), state.get("env_id"), state.get("world_size"))
    if origin != (method, env_id, world_size):
        raise CheckpointError(f"{path} was written by {origin[0]}/{origin[1]} at world size {origin[2]}, "
                              f"not {method}/{env_id} at {world_size}")
    return state


def resume_step(run_dir: Path, world_size: int, *, method: str, env_id: str, load: bool = True) -> int | None:
    """The global step a run in `run_dir` resumes from: that of its latest complete checkpoint set,
    or None when there is no checkpoint (a fresh start).

    Raises CheckpointError when the folder holds checkpoints that cannot be resumed at
    `world_size`: only an incomplete set, or files of another world size. With `load`, every
    rank's file of that step is also loaded (one at a time) and must be readable and written by
    `method` on `env_id` at `world_size`; without it only the file names are checked (the
    training loop loads and checks each rank's own file as it restores it).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return None
    step = complete_checkpoint_step(run_dir, world_size)
    larger = sorted({r for _, r in _rank_files(run_dir) if r >= world_size}) if world_size > 1 else []
    if step is None or larger:
        stray = sorted(p.name for p in run_dir.glob("checkpoint*.pt"))
        if not stray:
            return None
        raise CheckpointError(f"{run_dir} holds checkpoints ({stray[0]}) of another world size than {world_size}, "
                              "or an incomplete set; resume with the world size that wrote them")
    if load:
        for rank in range(world_size):
            load_run_checkpoint(run_dir, rank, world_size, step, method=method, env_id=env_id)
    return step
