"""Where a run executes: the sweep task it belongs to, its host, cores and GPUs.

A sweep's launcher (bench.run.sweep) hands each task its place through one environment
variable, so the task's runner, its energy account (how many runs share the machine) and
`spikerl-bench status` (RUN/<method>/<env>/seed<k>/config.json "placement") agree on it.
"""
from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass
from typing import Any

TASK_ENV = "SPIKERL_BENCH_TASK"


@dataclass(frozen=True)
class TaskContext:
    """What the launcher told this process about its task; the defaults are a plain inline run."""

    launcher: str = "inline"
    slot: int | None = None
    """Index of the local slot (its cores and GPUs) among --jobs; None under SLURM."""
    concurrent_runs: int = 1
    """Runs of the sweep executing at once on a machine, this one included."""

    def to_env(self) -> str:
        return json.dumps(asdict(self))


def current_task(environ: dict[str, str] | None = None) -> TaskContext:
    """This process's task, or an inline run when it is none (or the variable is malformed: the
    run must still execute, and unattributed is the conservative reading)."""
    raw = (os.environ if environ is None else environ).get(TASK_ENV)
    if not raw:
        return TaskContext()
    try:
        d = json.loads(raw)
        launcher, slot, runs = d["launcher"], d.get("slot"), d.get("concurrent_runs", 1)
        if launcher not in ("inline", "local", "slurm") or not (slot is None or (type(slot) is int and slot >= 0)) \
                or type(runs) is not int or not 0 < runs <= 1_024:
            raise ValueError
    except (ValueError, KeyError, TypeError, AttributeError):
        return TaskContext()
    return TaskContext(launcher=launcher, slot=slot, concurrent_runs=runs)


def job_id(environ: dict[str, str] | None = None) -> str | None:
    """The scheduler's id of this task: SLURM's array task (123_4) or job, else submitit's local job."""
    env = os.environ if environ is None else environ
    if env.get("SUBMITIT_LOCAL_JOB_ID"):  # a local job, even inside a SLURM allocation
        return env["SUBMITIT_LOCAL_JOB_ID"]
    array, index = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    if array and index:
        return f"{array}_{index}"
    return env.get("SLURM_JOB_ID") or None


def placement(task: TaskContext | None = None) -> dict[str, Any]:
    """The run's place, for its config.json (read back by `spikerl-bench status`)."""
    task = task or current_task()
    try:
        cpus: list[int] | None = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = None
    return {"host": socket.gethostname(), "pid": os.getpid(), "launcher": task.launcher, "job_id": job_id(),
            "slot": task.slot, "cpus": cpus, "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "concurrent_runs": task.concurrent_runs}
