"""Callbacks that write the per-seed CSV logs and show progress."""
from __future__ import annotations

import sys
from typing import Callable, TextIO

from bench.run.store import CsvLog
from bench.schema import EVAL_COLUMNS, EVALS, PROGRESS, PROGRESS_COLUMNS, REQUIRED_COLUMNS
from spikerl.callbacks import Callback, EndEvent, EvalEvent, ProgressEvent, RunInfo

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


class SweepClock:
    """Where a sweep of n runs stands, for "run k of n" and an ETA of the whole sweep: the seconds
    per env step observed so far in this sweep (every run trained so far, the current one
    included), times the env steps left."""

    def __init__(self, n_runs: int, steps_per_run: int):
        self.n_runs, self.steps_per_run = int(n_runs), int(steps_per_run)
        self.k = 0
        self._done_s = 0.0    # wall seconds of finished runs of this sweep
        self._done_steps = 0  # and their env steps (resumed runs count only what this sweep did)

    def next_run(self) -> None:
        self.k += 1

    def skip(self) -> None:
        """The current run was already complete."""

    def finish_run(self, steps: int, wall_s: float) -> None:
        self._done_steps += max(0, steps)
        self._done_s += max(0.0, wall_s)

    def eta_s(self, steps_now: int, wall_now_s: float) -> float | None:
        """Seconds left in the whole sweep, or None before any step was timed."""
        steps = self._done_steps + steps_now
        if steps <= 0 or wall_now_s + self._done_s <= 0:
            return None
        left = (self.steps_per_run - steps_now) + (self.n_runs - self.k) * self.steps_per_run
        return max(0.0, left) * (self._done_s + wall_now_s) / steps

    @property
    def label(self) -> str:
        return f"run {self.k} of {self.n_runs}"


def _fmt_duration(s: float | None) -> str:
    if s is None:
        return "—"
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _fmt_energy(j: float | None) -> str:
    if j is None:
        return "—"
    return f"{j / 1e3:.1f} kJ" if j >= 1e4 else f"{j:.0f} J"


class ProgressDisplay(Callback):
    """A tqdm bar per run on a terminal, plain lines otherwise: env steps/s (one figure: that of
    the last interval), the last return, watts and joules so far ('est.' where estimated), and
    "run k of n" with an ETA of the whole sweep."""

    key = "progress_display"

    def __init__(self, label: str, stream: TextIO | None = None, force_plain: bool = False,
                 energy_probe: EnergyProbe | None = None, estimated_probe: Callable[[], bool] | None = None,
                 sweep: SweepClock | None = None):
        self.label = label
        self.stream = stream or sys.stderr
        self.plain = force_plain or not self.stream.isatty()
        self.bar = None
        self.total = 0
        self.last_return: float | None = None
        self.energy_probe, self.estimated_probe, self.sweep = energy_probe, estimated_probe, sweep
        self._last: tuple[float, float] | None = None  # (wall_s, energy_j) of the previous row
        self._start = (0, 0.0)

    def on_train_start(self, info: RunInfo) -> None:
        if info.rank != 0:
            self.stream = None
            return
        self.total = info.total_steps
        self._start = (info.start_step, info.start_wall_s)
        if self.sweep is not None:
            self.label = f"{self.sweep.label}: {self.label}"
        if not self.plain:
            from tqdm import tqdm

            # one throughput figure (ours, in the postfix): tqdm's own rate is switched off
            self.bar = tqdm(total=info.total_steps, initial=info.start_step, desc=self.label, unit="step",
                            file=self.stream, dynamic_ncols=True, leave=True,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
        elif info.resumed:
            self._line(f"resumed at step {info.start_step}")

    def _line(self, text: str) -> None:
        if self.stream is not None:
            print(f"[{self.label}] {text}", file=self.stream, flush=True)

    def _power(self, wall_s: float) -> tuple[str, str]:
        """('12.3 W', '4.5 kJ'), with ' est.' where the energy is estimated; dashes unmetered."""
        energy = self.energy_probe() if self.energy_probe is not None else None
        if energy is None:
            return "—", "—"
        watts = None
        if self._last is not None and wall_s > self._last[0]:
            watts = (energy - self._last[1]) / (wall_s - self._last[0])
        self._last = (wall_s, energy)
        est = " est." if self.estimated_probe is not None and self.estimated_probe() else ""
        return ("—" if watts is None else f"{watts:.1f} W{est}"), f"{_fmt_energy(energy)}{est}"

    def _eta(self, step: int, wall_s: float) -> str:
        if self.sweep is None:
            return ""
        done_steps, done_s = step - self._start[0], wall_s - self._start[1]
        return _fmt_duration(self.sweep.eta_s(done_steps, done_s)) if done_steps > 0 else "—"

    def on_progress(self, event: ProgressEvent) -> None:
        if self.stream is None:
            return
        watts, joules = self._power(event.wall_s)
        eta = self._eta(event.step, event.wall_s)
        if self.bar is not None:
            self.bar.n = event.step
            post = {"steps/s": f"{event.sps:.0f}", "ret": _fmt(event.train_return), "eval": _fmt(self.last_return),
                    "power": watts, "energy": joules}
            if eta:
                post["sweep ETA"] = eta
            self.bar.set_postfix(post)
        else:
            self._line(f"step {event.step}/{self.total}  {event.sps:.0f} steps/s  train return "
                       f"{_fmt(event.train_return)}  wall {event.wall_s:.0f}s  {watts}  {joules} so far"
                       + (f"  sweep ETA {eta}" if eta else ""))

    def on_eval_end(self, event: EvalEvent) -> None:
        self.last_return = event.return_mean
        if self.stream is not None and self.bar is None:
            self._line(f"eval at step {event.step}: return {event.return_mean:.1f} ± {event.return_std:.1f} "
                       f"({event.episodes} episodes)")

    def on_train_end(self, event: EndEvent) -> None:
        if self.sweep is not None and self.stream is not None:
            self.sweep.finish_run(event.step - self._start[0], event.wall_s - self._start[1])
        if self.bar is not None:
            self.bar.n = event.step
            self.bar.refresh()
            self.bar.close()
        if self.stream is not None:
            self._line(f"{event.status} at step {event.step} after {event.wall_s:.1f}s"
                       + (f": {event.error}" if event.error and event.status == "failed" else ""))


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f}"
