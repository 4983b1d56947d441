"""Where a run's wall time goes: training, evaluation and everything else.

GPS-UP compares training (DESIGN §5.7), so a run's wall time is split into three phases that add
up to it exactly:
    train  env steps, acting, updates, replay (the loop between its other phases)
    eval   evaluation episodes
    other  start-up after the meters started, checkpoint writes, the end of the run
The clock keeps the closed eval and other seconds and the open span; train is the rest of the
run's wall time read at the same instant, so train + eval + other = wall_s to rounding.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

PHASES = ("train", "eval", "other")
TIMED = ("eval", "other")  # kept; train is the remainder


@dataclass
class PhaseClock:
    """Seconds spent in eval and other, earlier segments of a resumed run included."""

    phase: str = "other"
    closed_s: dict[str, float] = field(default_factory=lambda: {p: 0.0 for p in TIMED})
    _since: float = field(default_factory=time.perf_counter, repr=False, compare=False)

    def switch(self, phase: str, now: float | None = None) -> str:
        """Enter `phase`; returns the phase it left."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}: one of {', '.join(PHASES)}")
        now = time.perf_counter() if now is None else now
        if self.phase in TIMED:
            self.closed_s[self.phase] += now - self._since
        left, self.phase, self._since = self.phase, phase, now
        return left

    def restart(self, phase: str = "other", now: float | None = None) -> None:
        """Start the open span afresh (the run's clock restarted), keeping the closed seconds."""
        self.phase, self._since = phase, time.perf_counter() if now is None else now

    def timed_s(self, now: float) -> dict[str, float]:
        out = dict(self.closed_s)
        if self.phase in TIMED:
            out[self.phase] += now - self._since
        return out

    def state_dict(self, now: float) -> dict[str, float]:
        return {f"{p}_s": v for p, v in self.timed_s(now).items()}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Checkpoints from before phases were kept carry none: their earlier seconds stay in train."""
        state = state or {}
        self.closed_s = {p: float(state.get(f"{p}_s", 0.0)) for p in TIMED}
        self.restart()


def split_wall_s(wall_s: float, timed_s: dict[str, float]) -> dict[str, float]:
    """{train, eval, other} seconds of a run whose wall time is `wall_s`."""
    return {"train": wall_s - timed_s["eval"] - timed_s["other"], "eval": timed_s["eval"], "other": timed_s["other"]}
