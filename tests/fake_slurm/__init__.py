"""A fake SLURM cluster for tests: this folder's `sbatch`, `srun`, `sacct`, `squeue`, `scontrol` and `scancel`
run every job on this machine (what they emulate: `_fakeslurm.py`). Put them first on PATH with `FakeSlurm`:

    from tests.fake_slurm import FakeSlurm

    def test_array(tmp_path):
        with FakeSlurm(tmp_path / "slurm") as slurm:      # os.environ: PATH and FAKE_SLURM_STATE
            ex = submitit.AutoExecutor(tmp_path / "jobs", cluster="slurm")
            ex.update_parameters(slurm_array_parallelism=2)
            jobs = ex.map_array(fn, [1, 2, 3, 4])
            slurm.wait_state(jobs[1].job_id, "RUNNING")
            slurm.kill(jobs[1].job_id)                  # SIGKILL its process group: sacct says FAILED
            slurm.wait()                                 # every task finished (or TimeoutError)
            assert slurm.max_concurrent(jobs[0].job_id.split("_")[0]) <= 2

or take the `fake_slurm` fixture (`from tests.fake_slurm import fake_slurm  # noqa: F401`). Leaving the
context cancels what still runs and waits for the fake's supervisors to exit. Subprocesses started inside
it (a CLI under test) inherit the environment; `slurm.environ()` gives it explicitly.

Jobs inherit the caller's environment (sbatch --export=ALL): set PYTHONPATH before submitting when the job
must import test modules. Job ids start at a random number per state folder, so submitit's process-wide
status cache (`SlurmJob.watcher`) never confuses two tests' jobs.
"""
from __future__ import annotations

import os
import signal as _signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from . import _fakeslurm as core

BIN = Path(__file__).resolve().parent
FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL")


@dataclass(frozen=True)
class Task:
    """One task as the fake scheduler sees it (one array element, or a whole non-array job)."""

    job_id: str
    """As submitit and sacct name it: `N_i` in an array, else `N`."""
    array_job_id: str
    index: int | None
    raw_job_id: str
    """Its own SLURM_JOB_ID."""
    state: str
    exit_code: str | None
    """`code:signal`, as sacct's ExitCode."""
    pid: int | None
    """Of the batch shell; also its process group id."""
    restarts: int
    start: float | None
    end: float | None
    attempts: tuple[dict, ...]
    """Every ended attempt: start, end, state (REQUEUED for one that was requeued), exit_code."""
    reason: str | None

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES


class FakeSlurm:
    """The fake commands on PATH, with their state in `state_dir`, for the duration of a `with` block.

    minute_s: seconds of one SLURM minute for --time and --signal (e.g. 1: `--time=5` lasts 5 s).
    kill_wait_s: seconds between SIGTERM and SIGKILL when a task is cancelled, timed out or requeued."""

    def __init__(self, state_dir: Path | str, *, minute_s: float | None = None, kill_wait_s: float | None = None):
        self.state_dir = Path(state_dir).resolve()
        self._extra = {"FAKE_SLURM_STATE": str(self.state_dir)}
        if minute_s is not None:
            self._extra["FAKE_SLURM_MINUTE_S"] = repr(float(minute_s))
        if kill_wait_s is not None:
            self._extra["FAKE_SLURM_KILL_WAIT_S"] = repr(float(kill_wait_s))
        self._saved: dict[str, str | None] = {}

    # ---- environment
    def environ(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        path = env.get("PATH", "")
        if not path.startswith(str(BIN) + os.pathsep):
            env["PATH"] = str(BIN) + os.pathsep + path
        env.update(self._extra)
        return env

    def __enter__(self) -> "FakeSlurm":
        (self.state_dir / "jobs").mkdir(parents=True, exist_ok=True)
        env = self.environ()
        for key in ("PATH", *self._extra):
            self._saved[key] = os.environ.get(key)
            os.environ[key] = env[key]
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.close()
        finally:
            for key, value in self._saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def close(self, timeout_s: float = 15.0) -> None:
        """Cancel every unfinished task and wait for the supervisors; SIGKILL whatever is left."""
        if any(not t.finished for t in self.tasks()):
            self.run("scancel", "--me", check=False)
        deadline = time.time() + timeout_s
        while time.time() < deadline and any(core.pid_alive(j.get("supervisor_pid")) for j in self._jobs()):
            time.sleep(0.05)
        for job in self._jobs():
            for t in job["tasks"]:
                if t["pgid"] and t["state"] not in FINAL_STATES:
                    core._killpg(t["pgid"], _signal.SIGKILL)
            if core.pid_alive(job.get("supervisor_pid")):
                core._kill(job["supervisor_pid"], _signal.SIGKILL)

    # ---- reading the state
    def _jobs(self) -> list[dict]:
        if not (self.state_dir / "jobs").is_dir():
            return []
        with core.locked(self.state_dir):
            return core.all_jobs(self.state_dir)

    def job_ids(self) -> list[str]:
        """Every submitted job (array) id, oldest first."""
        return [str(j["job_id"]) for j in self._jobs()]

    def tasks(self, job_id: str | int | None = None) -> list[Task]:
        """Tasks of one id (N, N_i, N_[spec] or a task's own job id), or of every job."""
        if job_id is None:
            found = [(j, pos) for j in self._jobs() for pos in range(len(j["tasks"]))]
        else:
            with core.locked(self.state_dir):
                found = core.find_tasks(self.state_dir, str(job_id))
        return [_task(job, job["tasks"][pos]) for job, pos in found]

    def task(self, job_id: str | int) -> Task:
        found = self.tasks(job_id)
        if len(found) != 1:
            raise KeyError(f"{job_id} names {len(found)} tasks")
        return found[0]

    def max_concurrent(self, job_id: str | int | None = None) -> int:
        """Most tasks (of one job, or of all) that were running at the same moment."""
        events = []
        for t in self.tasks(job_id):
            spans = [(a["start"], a["end"]) for a in t.attempts if a["start"] is not None]
            if t.state in ("RUNNING", "COMPLETING", "REQUEUED") and t.start is not None:
                spans.append((t.start, time.time()))
            for start, end in spans:
                events += [(start, 1), (end, -1)]
        running = peak = 0
        for _, delta in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at the same instant
            running += delta
            peak = max(peak, running)
        return peak

    # ---- waiting
    def wait(self, job_ids: Iterable[str | int] | None = None, timeout_s: float = 60.0) -> list[Task]:
        """Until every task (of the given ids) has finished; TimeoutError with sacct's view otherwise."""
        ids = None if job_ids is None else list(job_ids)
        deadline = time.time() + timeout_s
        while True:
            tasks = self.tasks() if ids is None else [t for i in ids for t in self.tasks(i)]
            if tasks and all(t.finished for t in tasks):
                return tasks
            if time.time() > deadline:
                raise TimeoutError(f"tasks still unfinished after {timeout_s:.0f} s:\n{self.sacct()}")
            time.sleep(0.05)

    def wait_state(self, job_id: str | int, states: str | Iterable[str], timeout_s: float = 30.0) -> Task:
        """Until one task is in one of `states` (e.g. "RUNNING"); its Task."""
        wanted = {states} if isinstance(states, str) else set(states)
        deadline = time.time() + timeout_s
        while True:
            t = self.task(job_id)
            if t.state in wanted:
                return t
            if time.time() > deadline:
                raise TimeoutError(f"{job_id} is {t.state}, not {'/'.join(sorted(wanted))}, after "
                                   f"{timeout_s:.0f} s:\n{self.sacct()}")
            time.sleep(0.05)

    # ---- acting on tasks
    def kill(self, job_id: str | int, sig: int = _signal.SIGKILL) -> Task:
        """Send `sig` (default SIGKILL) to a running task's whole process group, as a node crash or the OOM
        killer would: its batch shell dies by the signal, so sacct reports it FAILED."""
        t = self.task(job_id)
        if t.state != "RUNNING" or not t.pid:
            raise RuntimeError(f"{job_id} is {t.state}, not RUNNING")
        os.killpg(t.pid, sig)
        return t

    def signal(self, job_id: str | int, sig: str = "USR2") -> None:
        """`scancel --signal SIG ID`: to the task's srun steps, as SLURM signals a job before its time limit."""
        self.run("scancel", "--signal", sig, str(job_id))

    def run(self, command: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run one of the fake commands with this state folder; its CompletedProcess (text)."""
        res = subprocess.run([str(BIN / command), *args], env=self.environ(), capture_output=True, text=True,
                             timeout=60)
        if check and res.returncode != 0:
            raise RuntimeError(f"{command} {' '.join(args)}: exit {res.returncode}: {res.stderr.strip()}")
        return res

    def sacct(self) -> str:
        return self.run("sacct", "-o", "JobID,State,ExitCode,Restarts,Reason", "--parsable2", check=False).stdout


def _task(job: dict, t: dict) -> Task:
    return Task(job_id=core.task_name(job, t), array_job_id=str(job["job_id"]), index=t["index"],
                raw_job_id=str(t["raw_id"]), state=t["state"], exit_code=t["exit_code"], pid=t["pid"],
                restarts=t["restarts"], start=t["start"], end=t["end"], attempts=tuple(t["attempts"]),
                reason=t["reason"])


try:
    import pytest
except ImportError:  # pragma: no cover - the commands themselves need only the standard library
    pass
else:
    @pytest.fixture
    def fake_slurm(tmp_path: Path) -> Iterator[FakeSlurm]:
        """The fake SLURM on PATH, state in tmp_path/fake-slurm; cleaned up after the test."""
        with FakeSlurm(tmp_path / "fake-slurm") as slurm:
            yield slurm
