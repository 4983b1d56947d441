"""Hooks through which `bench` (meters, recorders, progress bars) plugs into the harness.

The harness never imports `bench`. It passes typed events to a list of callbacks; each
callback keeps its own state and may ask to stop training by returning False from
`on_progress`. Callbacks that must survive a resume (cumulative energy, open CSV files)
expose `state_dict` / `load_state_dict`; the harness stores them in the checkpoint under
the callback's `key`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch


@dataclass(frozen=True)
class RunInfo:
    """What a callback needs to know about the run it is attached to."""

    run_dir: Path | None
    method: str
    env_id: str
    seed: int
    total_steps: int
    """Global env-step budget, all ranks together."""
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    start_step: int = 0
    """Global env steps already done (non-zero after a resume)."""
    start_wall_s: float = 0.0
    """Wall seconds already spent before this segment (non-zero after a resume)."""
    resumed: bool = False


@dataclass(frozen=True)
class ProgressEvent:
    """Emitted at least every `log_every` global env steps."""

    step: int
    wall_s: float
    episodes: int
    train_return: float | None
    sps: float
    updates: int = 0
    losses: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalEvent:
    step: int
    wall_s: float
    return_mean: float
    return_std: float
    episodes: int
    returns: tuple[float, ...] = ()


@dataclass(frozen=True)
class EndEvent:
    step: int
    wall_s: float
    status: str
    """'complete', 'interrupted' or 'failed'."""
    error: str | None = None


class Callback:
    """Base class: every hook does nothing by default."""

    key: str = "callback"

    def on_train_start(self, info: RunInfo) -> None:
        pass

    def on_progress(self, event: ProgressEvent) -> bool | None:
        """Return False to stop training after this step."""
        return None

    def on_eval_start(self, step: int, wall_s: float) -> None:
        pass

    def on_eval_end(self, event: EvalEvent) -> None:
        pass

    def on_checkpoint(self, step: int, wall_s: float, path: Path) -> None:
        pass

    def on_phase(self, phase: str, wall_s: float) -> None:
        """The loop entered phase 'train' or 'other' (spikerl.phases); evaluation has its own hooks."""
        pass

    def on_train_end(self, event: EndEvent) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class CallbackList(Callback):
    """Fans every hook out to its members, in order."""

    def __init__(self, callbacks: Sequence[Callback] = ()):
        self.callbacks = list(callbacks)
        keys = [c.key for c in self.callbacks]
        if len(keys) != len(set(keys)):
            raise ValueError(f"callback keys must be unique, got {keys}")

    def on_train_start(self, info: RunInfo) -> None:
        for c in self.callbacks:
            c.on_train_start(info)

    def on_progress(self, event: ProgressEvent) -> bool:
        keep_going = True
        for c in self.callbacks:
            if c.on_progress(event) is False:
                keep_going = False
        return keep_going

    def on_eval_start(self, step: int, wall_s: float) -> None:
        for c in self.callbacks:
            c.on_eval_start(step, wall_s)

    def on_eval_end(self, event: EvalEvent) -> None:
        for c in self.callbacks:
            c.on_eval_end(event)

    def on_checkpoint(self, step: int, wall_s: float, path: Path) -> None:
        for c in self.callbacks:
            c.on_checkpoint(step, wall_s, path)

    def on_phase(self, phase: str, wall_s: float) -> None:
        for c in self.callbacks:
            c.on_phase(phase, wall_s)

    def on_train_end(self, event: EndEvent) -> None:
        for c in self.callbacks:
            c.on_train_end(event)

    def state_dict(self) -> dict[str, Any]:
        return {c.key: c.state_dict() for c in self.callbacks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for c in self.callbacks:
            if c.key in state:
                c.load_state_dict(state[c.key])
