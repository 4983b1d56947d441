"""Seeds that cannot continue: logs on disk but no usable checkpoint.

Retraining such a seed from step 0 would overwrite its rows, so `run --resume` refuses it in
one line that names the seed and the two ways on: restore its checkpoint, or `--restart-seed`,
which moves the seed's old files to `seed<k>.lost-<UTC time>` beside it (kept, never deleted;
the report reads only `seed<k>` folders) and retrains it from step 0.
"""
from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import Sequence

from bench import schema
from bench.run import store
from bench.run.summary import is_complete
from spikerl.checkpoint import CheckpointError, resume_step

LOST_SUFFIX = ".lost-"

_LOGS = (schema.PROGRESS, schema.EVALS, schema.POWER)


def logged_rows(folder: Path) -> int:
    """Lines past the header in the seed's logs: what a restart from step 0 would overwrite."""
    n = 0
    for name in _LOGS:
        try:
            with open(Path(folder) / name, "rb") as f:
                n += max(0, sum(1 for line in f if line.strip()) - 1)
        except OSError:
            continue
    return n


def has_checkpoint_files(folder: Path) -> bool:
    """Any checkpoint file at all, finished or mid-rename (a seed batch's save renames in steps)."""
    return any(p.name.startswith("checkpoint") for p in Path(folder).iterdir())


def lost_seed_message(folder: Path, method: str, env_id: str, seed: int, why: str) -> str:
    return (f"{folder}: seed {seed} of {method} on {env_id} has {logged_rows(folder)} logged rows but {why}; "
            f"restore its checkpoint, or add --restart-seed to retrain it from step 0 (its files are moved "
            f"to {folder.name}{LOST_SUFFIX}<UTC time>)")


def lost_seed_error(folder: Path, method: str, env_id: str, seed: int,
                    exc: CheckpointError | None) -> store.RunFolderError:
    """The one-line refusal of a seed with logs whose checkpoint is missing (`exc` None) or unusable."""
    why = "no checkpoint" if exc is None else f"no usable checkpoint ({' '.join(str(exc).split())[:160]})"
    return store.RunFolderError(lost_seed_message(folder, method, env_id, seed, why))


def unusable(folder: Path, method: str, env_id: str, world_size: int) -> str | None:
    """Why the seed in `folder` cannot continue although it logged rows, or None if it can (or
    logged nothing: a fresh start then overwrites nothing)."""
    if not folder.is_dir() or folder.is_symlink() or logged_rows(folder) == 0:
        return None
    try:
        step = resume_step(folder, world_size, method=method, env_id=env_id, load=True)
    except CheckpointError as exc:
        return f"no usable checkpoint ({' '.join(str(exc).split())[:160]})"
    if step is None and not has_checkpoint_files(folder):
        return "no checkpoint"
    return None


LostSeed = tuple[Path, str, str, int]
"""(seed folder, method, env id, seed) of a seed `--restart-seed` moves aside."""


def find_lost_seeds(run_dir: Path, runs_by_world_size: dict[int, Sequence[tuple[str, str, int]]]
                    ) -> list[LostSeed]:
    """Every unfinished seed with logs but no usable checkpoint. Reads only: the resume checks run
    on the other seeds before `move_lost_seeds` writes anything."""
    lost = []
    for world_size, runs in runs_by_world_size.items():
        for method, env_id, seed in runs:
            folder = store.seed_dir(run_dir, method, env_id, seed)
            if not is_complete(folder) and unusable(folder, method, env_id, world_size) is not None:
                lost.append((folder, method, env_id, seed))
    return lost


def move_lost_seeds(lost: Sequence[LostSeed]) -> list[Path]:
    """Move each lost seed's folder to seed<k>.lost-<UTC time> beside it; returns where each went."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    moved = []
    for folder, method, env_id, seed in lost:
        lock = store.RunLock(folder)
        if not lock.acquire():  # another process trains it (before its first checkpoint): its own
            continue
        try:
            target = folder.with_name(f"{folder.name}{LOST_SUFFIX}{stamp}")
            n = 1
            while os.path.lexists(target):
                n += 1
                target = folder.with_name(f"{folder.name}{LOST_SUFFIX}{stamp}-{n}")
            os.rename(folder, target)  # one rename: the seed is either whole here or whole there
        finally:
            lock.release()
        print(f"spikerl-bench: {method} on {env_id} seed {seed}: no usable checkpoint; its files moved to "
              f"{target}, retraining from step 0", file=sys.stderr)
        moved.append(target)
    return moved


def restart_lost_seeds(run_dir: Path, runs_by_world_size: dict[int, Sequence[tuple[str, str, int]]]) -> list[Path]:
    """Move aside every unfinished seed with logs but no usable checkpoint; returns where each went."""
    return move_lost_seeds(find_lost_seeds(run_dir, runs_by_world_size))
