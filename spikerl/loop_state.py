"""What the training loop carries from one env step to the next, in one object the checkpoint
saves and restores whole. The nets, optimisers, replay buffer, envs and global RNGs have their
own state dicts; everything else a resumed run needs to continue exactly is here."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .phases import PhaseClock, split_wall_s
from .replay import rng_from_tensor, rng_state_to_tensor


@dataclass
class LoopState:
    obs: np.ndarray
    """The observation the next action is chosen from."""
    explore_rng: np.random.Generator
    """This rank's exploration noise (separate from the global RNGs, which the updates draw from)."""
    t: int = 0
    """Env steps this rank has taken."""
    episodes: int = 0
    """Training episodes this rank has finished."""
    ep_ret: float = 0.0
    """Return of the unfinished training episode so far."""
    last_train_return: float | None = None
    best_eval: float | None = None
    final_eval: float | None = None
    last_eval_step: int = -1
    """Global step of the latest evaluation (-1: none yet)."""
    pending_obs: list[np.ndarray] = field(default_factory=list)
    """Observations not yet merged into the normaliser's statistics."""
    wall_before_s: float = 0.0
    """Wall seconds the run spent before this process took over (non-zero after a resume)."""
    clock: PhaseClock = field(default_factory=PhaseClock, compare=False)
    """Seconds in evaluation and other phases (spikerl.phases); train is the rest of wall_s."""
    _segment_start: float = field(default_factory=time.perf_counter, init=False, repr=False, compare=False)

    def wall_s(self, now: float | None = None) -> float:
        """Wall seconds of the whole run so far, earlier segments included."""
        return self.wall_before_s + (time.perf_counter() if now is None else now) - self._segment_start

    def phase_s(self) -> dict[str, float]:
        """{train, eval, other} seconds of the run so far, read at one instant: they sum to wall_s."""
        now = time.perf_counter()
        return split_wall_s(self.wall_s(now), self.clock.timed_s(now))

    def restart_clock(self) -> None:
        """Start this segment's clock now, in the other phase: called once the meters have started,
        so that the time counted covers no span the energy does not."""
        self._segment_start = time.perf_counter()
        self.clock.restart("other", self._segment_start)

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain numbers only, so the checkpoint loads with weights_only=True."""
        obs_dim = np.asarray(self.obs).size
        now = time.perf_counter()
        return {
            "t": self.t, "episodes": self.episodes, "ep_ret": self.ep_ret,
            "last_train_return": self.last_train_return, "best_eval": self.best_eval,
            "final_eval": self.final_eval, "last_eval_step": self.last_eval_step, "wall_s": self.wall_s(now),
            "phases": self.clock.state_dict(now),
            "obs": torch.from_numpy(np.asarray(self.obs, dtype=np.float64)),
            "pending_obs": torch.from_numpy(np.asarray(self.pending_obs, dtype=np.float64).reshape(-1, obs_dim)),
            "explore_rng": rng_state_to_tensor(self.explore_rng),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t, self.episodes, self.ep_ret = state["t"], state["episodes"], state["ep_ret"]
        self.last_train_return, self.best_eval = state["last_train_return"], state["best_eval"]
        self.final_eval, self.last_eval_step = state["final_eval"], state["last_eval_step"]
        self.obs = state["obs"].numpy().copy()
        self.pending_obs = list(state["pending_obs"].numpy())
        self.explore_rng = rng_from_tensor(state["explore_rng"])
        self.wall_before_s, self._segment_start = state["wall_s"], time.perf_counter()
        self.clock.load_state_dict(state.get("phases"))
