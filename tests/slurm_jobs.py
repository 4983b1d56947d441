"""Functions the fake-SLURM tests submit through submitit. submitit pickles a function by reference, so the
job imports this module: the tests put the repository root on PYTHONPATH before submitting."""
from __future__ import annotations

import os
import time
from pathlib import Path

from submitit.helpers import Checkpointable, JobEnvironment


def square_slowly(x: int, delay_s: float) -> int:
    time.sleep(delay_s)
    return x * x


def announce_then_sleep(marker: str, seconds: float) -> str:
    """Writes `marker` once the function runs (the test kills the task only then), then sleeps."""
    Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds)
    return "slept"


def _report(self: "Checkpointable", value: int) -> dict:
    env = JobEnvironment()
    return {"value": value, "attempts": self.attempts, "job_id": env.job_id,
            "restart_count": os.environ.get("SLURM_RESTART_COUNT")}


class PreemptsItselfOnce(Checkpointable):
    """On its first attempt it sends itself the signal submitit listens for (USR2 unless
    SUBMITIT_PREEMPT_SIGNAL says otherwise), as SLURM does before preempting a job or at
    --signal=USR2@N before its time limit. submitit's handler then checkpoints this object
    (attempts=1), runs `scontrol requeue <job id>` and exits; the requeued attempt finishes."""

    def __init__(self) -> None:
        self.attempts = 0

    def __call__(self, value: int) -> dict:
        self.attempts += 1
        if self.attempts == 1:
            os.kill(os.getpid(), JobEnvironment._usr_sig())
            time.sleep(60)  # the handler exits before this ends
        return _report(self, value)


class SleepsPastTheSignal(Checkpointable):
    """Its first attempt outlasts the time until the scheduler's --signal; the next one returns."""

    def __init__(self) -> None:
        self.attempts = 0

    def __call__(self, value: int) -> dict:
        self.attempts += 1
        if self.attempts == 1:
            time.sleep(60)
        return _report(self, value)
