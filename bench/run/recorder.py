"""Callbacks that write the per-seed CSV logs and show progress."""
from __future__ import annotations

import sys
from typing import Callable, TextIO

from spikerl.callbacks import Callback, EndEvent, EvalEvent, ProgressEvent, RunInfo

from bench.run.store import CsvLog
from bench.schema import EVAL_COLUMNS, EVALS, PROGRESS, PROGRESS_COLUMNS, REQUIRED_COLUMNS

EnergyProbe = Callable[[], "float | None"]
"""Returns cumulative energy in joules so far (including before a resume), or None if unmeasured."""


class CsvRecorder(Callback):
    """progress.csv and evals.csv of one seed folder; only rank 0 writes."""

    key = "recorder"

    def __init__(self, energy_probe: EnergyProbe | None = None):
        self.energy_probe = energy_probe
        self.progress: CsvLog | None = None
        self.evals: CsvLog | None = None

    def _energy(self) -> float | None:
        return self.energy_probe() if self.energy_probe is not None else None

    def on_train_start(self, info: RunInfo) -> None:
        if info.rank != 0 or info.run_dir is None:
            return
        resume_step = info.start_step if info.resumed else None
        self.progress = CsvLog(info.run_dir / PROGRESS, PROGRESS_COLUMNS, REQUIRED_COLUMNS[PROGRESS])
        self.evals = CsvLog(info.run_dir / EVALS, EVAL_COLUMNS, REQUIRED_COLUMNS[EVALS])
        self.progress.open(resume_step)
        self.evals.open(resume_step)

    def on_progress(self, event: ProgressEvent) -> None:
        if self.progress is not None:
            self.progress.append({
                "step": event.step, "wall_s": round(event.wall_s, 4), "episodes": event.episodes,
                "train_return": event.train_return, "sps": round(event.sps, 2), "updates": event.updates,
                "loss_q": event.losses.get("loss_q"), "loss_pi": event.losses.get("loss_pi"),
                "energy_j": self._energy(),
            })

    def on_eval_end(self, event: EvalEvent) -> None:
        if self.evals is not None:
            self.evals.append({
                "step": event.step, "wall_s": round(event.wall_s, 4), "return_mean": event.return_mean,
                "return_std": event.return_std, "episodes": event.episodes, "energy_j": self._energy(),
            })

    def on_train_end(self, event: EndEvent) -> None:
        for log in (self.progress, self.evals):
            if log is not None:
                log.close()


class ProgressDisplay(Callback):
    """A tqdm bar per run on a terminal (live env steps/s and last return); plain lines otherwise."""

    key = "progress_display"

    def __init__(self, label: str, stream: TextIO | None = None, force_plain: bool = False):
        self.label = label
        self.stream = stream or sys.stderr
        self.plain = force_plain or not self.stream.isatty()
        self.bar = None
        self.total = 0
        self.last_return: float | None = None

    def on_train_start(self, info: RunInfo) -> None:
        if info.rank != 0:
            self.stream = None  # type: ignore[assignment]
            return
        self.total = info.total_steps
        if not self.plain:
            from tqdm import tqdm

            self.bar = tqdm(total=info.total_steps, initial=info.start_step, desc=self.label, unit="step",
                            file=self.stream, dynamic_ncols=True, leave=True)
        elif info.resumed:
            self._line(f"resumed at step {info.start_step}")

    def _line(self, text: str) -> None:
        if self.stream is not None:
            print(f"[{self.label}] {text}", file=self.stream, flush=True)

    def on_progress(self, event: ProgressEvent) -> None:
        if self.stream is None:
            return
        if self.bar is not None:
            self.bar.n = event.step
            self.bar.set_postfix(sps=f"{event.sps:.0f}", ret=_fmt(event.train_return), eval=_fmt(self.last_return))
        else:
            self._line(f"step {event.step}/{self.total}  {event.sps:.0f} steps/s  train return "
                       f"{_fmt(event.train_return)}  wall {event.wall_s:.0f}s")

    def on_eval_end(self, event: EvalEvent) -> None:
        self.last_return = event.return_mean
        if self.stream is not None and self.bar is None:
            self._line(f"eval at step {event.step}: return {event.return_mean:.1f} ± {event.return_std:.1f} "
                       f"({event.episodes} episodes)")

    def on_train_end(self, event: EndEvent) -> None:
        if self.bar is not None:
            self.bar.n = event.step
            self.bar.refresh()
            self.bar.close()
        if self.stream is not None:
            self._line(f"{event.status} at step {event.step} after {event.wall_s:.1f}s"
                       + (f": {event.error}" if event.error and event.status == "failed" else ""))


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f}"
