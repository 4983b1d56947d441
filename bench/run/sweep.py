"""Sweeps through submitit: the runs of a plan as jobs on this machine or a SLURM job array.

`--launcher local --jobs N` keeps up to N runs executing at once on this machine, each a
submitit LocalExecutor job that owns its slot: a disjoint set of cores (one torch thread each by
default) and, with --device cuda, its own GPUs (CUDA_VISIBLE_DEVICES, so its meter reads only
those). `--launcher slurm` submits one job array per world size (one task per run, the array's
parallelism --jobs); SLURM places and isolates the tasks, and a task preempted or out of time is
requeued by submitit and resumes from its last checkpoint. Runs that execute side by side share
the CPU package and RAM: their energy is attributed by CPU-time share (bench.energy.callback); a
local sweep of such runs takes one idle baseline before any starts (bench.run.idle), and records
the machine's metered energy, the runs' charges and the remainder in RUN/machine_energy.json.

Every task writes its own seed folder; summary.csv is rebuilt under the folder's lock after each
run, so runs may finish in any order, in any process, on any node sharing the folder. The local
launcher finishes the folder (results table, report) when its jobs are done; under SLURM the task
that completes the plan's last run does. `--resume RUN` resubmits the unfinished runs through the
plan's launcher. submitit's own files (pickled tasks, logs) live in RUN/submitit/.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import submitit

from baselines.registry import get_method
from bench import schema
from bench.run import store
from bench.run.idle import IDLE_ENV, measure_sweep_idle
from bench.run.machine_energy import SweepMeter, append_window, run_charges, window_account
from bench.run.placement import TASK_ENV, TaskContext
from bench.run.plan import Plan, RunKey, UsageError
from bench.run.resolve import world_size_for
from bench.run.summary import is_complete, write_summary
from bench.run.sweep_options import normalised_slurm

SUBMITIT_DIR = "submitit"
LOCAL_TIMEOUT_MIN = 60 * 24 * 365  # submitit's local jobs default to 2 min; runs take what they take
CANCEL_WAIT_S = 60.0  # for cancelled jobs to write their results and checkpoints before we summarise
POLL_S = 0.25  # how often the local launcher looks for a finished job (a free slot)


class SubmissionError(UsageError):
    """The scheduler refused a submission (one line, exit code 2)."""


@dataclass(frozen=True)
class Slot:
    """What one concurrently executing local run owns."""

    index: int
    cpus: tuple[int, ...]
    gpus: tuple[int, ...] = ()


@dataclass(frozen=True)
class Task:
    """One unit of the sweep (a run, or a seed batch of --seed-batch K runs), as submitit pickles it."""

    run_dir: str
    runs: tuple[RunKey, ...]
    context: TaskContext
    cpus: tuple[int, ...] = ()
    finish_folder: bool = False
    """Whether the task that completes the plan's last run finishes the folder (SLURM: nobody waits)."""
    idle: dict[str, Any] | None = None
    """The sweep's idle baseline (bench.run.idle) for runs side by side on this machine."""


def local_slots(jobs: int, world_size: int, device_type: str, cpus: Sequence[int] | None = None,
                gpu_count: int | None = None, visible: str | None = None) -> list[Slot]:
    """Disjoint cores (and GPUs) for `jobs` runs of `world_size` ranks each; UsageError when the
    machine has too few to give every run its own. GPUs are named as the machine numbers them:
    inside an allocation (CUDA_VISIBLE_DEVICES=2,3, `visible`) slot 0 gets GPU 2, not GPU 0."""
    cpus = sorted(os.sched_getaffinity(0)) if cpus is None else list(cpus)
    per_run = len(cpus) // jobs
    if per_run < world_size:
        raise UsageError(f"--jobs {jobs}: {len(cpus)} CPU(s) here cannot give each of {jobs} runs its own "
                         f"{world_size} core(s); use --jobs {max(1, len(cpus) // world_size)} or fewer")
    gpus: list[tuple[int, ...]] = [()] * jobs
    if device_type == "cuda":
        count = _cuda_count() if gpu_count is None else gpu_count
        if count < jobs * world_size:
            raise UsageError(f"--jobs {jobs}: {count} GPU(s) here cannot give each of {jobs} runs its own "
                             f"{world_size} GPU(s); use --jobs {max(1, count // world_size)} or fewer")
        visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
        entries = [v.strip() for v in visible.split(",") if v.strip()] if visible is not None else None
        if entries is not None and not all(v.isdigit() for v in entries):
            raise UsageError(f"--jobs {jobs}: CUDA_VISIBLE_DEVICES={visible!r} names GPUs by UUID or MIG slice; "
                             "the local launcher hands GPUs out by index: use --jobs 1 or indices")
        physical = [int(v) for v in entries] if entries is not None else list(range(count))
        gpus = [tuple(physical[k * world_size:(k + 1) * world_size]) for k in range(jobs)]
    return [Slot(k, tuple(cpus[k * per_run:(k + 1) * per_run]), gpus[k]) for k in range(jobs)]


def private_submitit_dir(run_dir: Path) -> Path:
    """RUN/submitit, where submitit keeps the pickled tasks its jobs unpickle: code, in effect. So
    it is this user's own folder, writable by nobody else, and not a link to somewhere else."""
    path = run_dir / SUBMITIT_DIR
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError as exc:
        raise UsageError(f"{path}: cannot make submitit's folder ({exc.strerror or exc})") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{path} is not a plain folder; submitit's task files must not live behind a link")
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise UsageError(f"{path} is writable by others or owned by someone else: its pickled tasks run as code "
                         "(chmod go-w, or start a new run folder)")
    return path


def check_folder_name(plan: Plan, run_dir: Path) -> None:
    """A SLURM sweep's folder is written into #SBATCH lines (--output, --error): a control
    character in its path would end the line and start another."""
    if plan.launcher == "slurm" and any(ord(c) < 32 or ord(c) == 127 for c in str(Path(run_dir).absolute())):
        raise UsageError(f"--launcher slurm: the run folder's path {str(run_dir)!r} holds a control character")


def check_fits(plan: Plan, runs: Sequence[RunKey] | None = None) -> None:
    """Refuse, before anything is written, a local sweep whose runs cannot each own their cores
    and GPUs here (SLURM places its tasks itself), or a SLURM sweep where SLURM is not."""
    if plan.launcher == "slurm":
        missing = [tool for tool in ("sbatch", "srun", "sacct") if shutil.which(tool) is None]
        if missing:
            raise UsageError(f"--launcher slurm: no {', '.join(missing)} on PATH here; submit from a SLURM "
                             "login node, or use --launcher local")
    if plan.launcher != "local":
        return
    from bench.run.resolve import resolve_device

    units = plan.batches(runs)
    if not units:
        return
    device = resolve_device(plan.device)
    world_size = max(world_size_for(get_method(m), plan, device) for m in {u[0][0] for u in units})
    local_slots(min(plan.jobs, len(units)), world_size, device.type)


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def unfinished_runs(run_dir: Path, plan: Plan) -> list[RunKey]:
    return [r for r in plan.runs() if not is_complete(store.seed_dir(run_dir, *r))]


def unfinished_units(run_dir: Path, plan: Plan) -> list[tuple[RunKey, ...]]:
    """What the sweep still has to execute, one job each: runs, or whole seed batches."""
    todo = set(unfinished_runs(run_dir, plan))
    return [unit for unit in plan.batches() if todo & set(unit)]


def label(unit: Sequence[RunKey]) -> str:
    method, env_id = unit[0][:2]
    return f"{method}/{env_id}/{','.join(str(r[2]) for r in unit)}"


# ---------------------------------------------------------------------------------- the task


def run_task(task: Task) -> int:
    """The body of one job: train one run (or seed batch) into its seed folders, resuming what had
    started. Pickled by reference, so a task runs the code installed where it executes."""
    from spikerl.distributed import detect_launch

    if task.cpus:
        os.sched_setaffinity(0, task.cpus)  # before any torch thread exists; ranks inherit it
    os.environ[TASK_ENV] = task.context.to_env()
    if task.idle is not None:
        os.environ[IDLE_ENV] = json.dumps(task.idle)
    else:
        os.environ.pop(IDLE_ENV, None)
    run_dir = Path(task.run_dir)
    plan = _load_plan(run_dir)
    launch = detect_launch()
    if launch is not None:  # one rank of a multi-task SLURM job
        code = _run_as_rank(run_dir, plan, task.runs, launch)
    else:
        code = _run_alone(run_dir, plan, task.runs)
    if task.finish_folder and (launch is None or launch.rank == 0):
        finish_if_done(run_dir, plan)
    if code not in (0, None):
        raise RuntimeError(f"{label(task.runs)} ended with exit code {code} "
                           f"(see {store.seed_dir(run_dir, *task.runs[0]) / schema.RESULT})")
    return 0


class ResumableTask(submitit.helpers.Checkpointable):
    """submitit requeues a task SLURM preempts or times out: the new attempt resumes the run from
    its last checkpoint in the run folder, so nothing but the task itself needs saving."""

    def __call__(self, task: Task) -> int:
        return run_task(task)


def _load_plan(run_dir: Path) -> Plan:
    from bench.run.validate import check_plan

    plan = Plan.from_json(store.load_plan(run_dir), run_dir / schema.PLAN)
    check_plan(plan)
    return plan


def _run_alone(run_dir: Path, plan: Plan, runs: tuple[RunKey, ...]) -> int:
    from bench.run.launch import launch_local
    from bench.run.resolve import resolve_device
    from bench.run.runner import execute

    device = resolve_device(plan.device)
    world_size = world_size_for(get_method(runs[0][0]), plan, device)
    if world_size > 1:  # local launcher: the job starts the ranks on its own cores
        return launch_local(run_dir, world_size, plain=True, runs=runs)
    # a requeued attempt (preempted before its first checkpoint) has logs but nothing to resume:
    # its files are kept in seed<k>.lost-<time>, said on stderr, and the run starts again
    from bench.run.restart import restart_lost_seeds

    with store.folder_lock(run_dir):
        restart_lost_seeds(run_dir, {1: list(runs)})
    return execute(run_dir, plan, resume=True, plain=True, only_runs=runs)


def _run_as_rank(run_dir: Path, plan: Plan, runs: tuple[RunKey, ...], launch: Any) -> int:
    from bench.run.resolve import resolve_device
    from bench.run.runner import execute
    from spikerl.distributed import init_distributed, shutdown_distributed

    ctx = init_distributed(launch, plan.backend, resolve_device(plan.device).type)
    try:
        return execute(run_dir, plan, resume=True, plain=True, ctx=ctx, only_runs=runs)
    finally:
        shutdown_distributed()


def finish_if_done(run_dir: Path, plan: Plan) -> bool:
    """Finish the folder (results table, report) if every run of the plan is complete and no other
    task has; under the folder's lock, so of tasks completing together exactly one does it."""
    from bench.run.runner import finish_run_folder

    marker = run_dir / SUBMITIT_DIR / "finished"
    with store.folder_lock(run_dir):
        if marker.exists() or unfinished_runs(run_dir, plan):
            return False
        finish_run_folder(run_dir, plan)
        store.atomic_write_text(marker, time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
    return True


# ---------------------------------------------------------------------------------- launchers


def run_sweep(run_dir: Path, plan: Plan, *, plain: bool) -> int:
    """Execute the plan's unfinished runs through its launcher; the exit code of `spikerl-bench run`."""
    from bench.run.runner import finish_run_folder

    todo = unfinished_units(run_dir, plan)
    if not todo:
        write_summary(run_dir, plan)
        finish_run_folder(run_dir, plan)
        return 0
    private_submitit_dir(run_dir)
    (run_dir / SUBMITIT_DIR / "finished").unlink(missing_ok=True)
    if plan.launcher == "local":
        return run_local(run_dir, plan, todo, plain=plain)
    if plan.launcher == "slurm":
        return submit_slurm(run_dir, plan, todo)
    raise UsageError(f"not a sweep launcher: {plan.launcher!r}")


def run_local(run_dir: Path, plan: Plan, todo: Sequence[tuple[RunKey, ...]], *, plain: bool) -> int:
    """Up to plan.jobs runs at once, each a submitit local job on its own slot; waits for all."""
    from bench.run.resolve import resolve_device
    from bench.run.runner import finish_run_folder

    device = resolve_device(plan.device)
    world_size = max(world_size_for(get_method(m), plan, device) for m in {u[0][0] for u in todo})
    jobs = min(plan.jobs, len(todo))
    free = local_slots(jobs, world_size, device.type)
    executor = submitit.LocalExecutor(folder=run_dir / SUBMITIT_DIR)
    executor.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN)
    queue = list(todo)
    running: dict[Any, tuple[tuple[RunKey, ...], Slot]] = {}
    failed: list[str] = []
    # runs side by side: one idle window for all, before any starts (bench.run.idle)
    idle = measure_sweep_idle(run_dir, plan, device.type) if jobs > 1 else None
    machine = SweepMeter(plan) if jobs > 1 else None  # what the runs share, and what none was charged
    if machine is not None:
        machine.start()
    started_s = time.monotonic()
    units = 'seed batch(es)' if plan.seed_batch > 1 else 'run(s)'
    print(f"sweep: {len(todo)} {units}, {jobs} at once on this machine (submitit local; logs in "
          f"{run_dir / SUBMITIT_DIR})", file=sys.stderr)
    try:
        while queue or running:
            while queue and free:
                unit, slot = queue.pop(0), free.pop(0)
                if device.type == "cuda":
                    executor.update_parameters(visible_gpus=list(slot.gpus), gpus_per_node=len(slot.gpus))
                context = TaskContext(launcher="local", slot=slot.index, concurrent_runs=jobs)
                job = executor.submit(run_task, Task(str(run_dir), unit, context, cpus=slot.cpus,
                                                     idle=idle.to_json() if idle is not None else None))
                running[job] = (unit, slot)
                where = f"cpus {_ranges(slot.cpus)}" + (f", GPUs {','.join(map(str, slot.gpus))}" if slot.gpus else "")
                print(f"  started {label(unit)} as job {job.job_id} on {where}", file=sys.stderr)
            time.sleep(POLL_S)
            for job in [j for j in running if j.done()]:
                unit, slot = running.pop(job)
                free.append(slot)
                # the runs' own result.json decide, not submitit's pickle of the job's return value
                if all(is_complete(store.seed_dir(run_dir, *r)) for r in unit):
                    print(f"  done {label(unit)} ({_elapsed(started_s)})", file=sys.stderr)
                    continue
                failed.append(label(unit))
                try:
                    job.result()
                    why = "ended without completing"
                except Exception as exc:  # noqa: BLE001 - the run's result.json says more
                    why = _last_line(exc)
                print(f"spikerl-bench: {label(unit)} failed: {why} (log: {job.paths.stderr})", file=sys.stderr)
    except KeyboardInterrupt:
        for job in running:
            job.cancel(check=False)  # SIGINT: each run records itself as interrupted
        deadline = time.monotonic() + CANCEL_WAIT_S
        while any(not j.done() for j in running) and time.monotonic() < deadline:
            time.sleep(POLL_S)
        _machine_window(run_dir, machine, todo)
        write_summary(run_dir, plan)
        print(f"spikerl-bench: interrupted; finish with: spikerl-bench run --resume {run_dir}", file=sys.stderr)
        return 130
    _machine_window(run_dir, machine, todo)
    write_summary(run_dir, plan)
    if failed:
        print(f"spikerl-bench: {len(failed)} run(s) did not complete; finish with: "
              f"spikerl-bench run --resume {run_dir}", file=sys.stderr)
    finish_run_folder(run_dir, plan)
    return 1 if failed else 0


def _machine_window(run_dir: Path, machine: SweepMeter | None, todo: Sequence[tuple[RunKey, ...]]) -> None:
    """RUN/machine_energy.json: the machine's metered energy over this launch against its runs' charges."""
    window = machine.stop() if machine is not None else None
    if window is not None:
        append_window(run_dir, window_account(window, run_charges(run_dir, [r for unit in todo for r in unit])))


def slurm_executor(run_dir: Path, plan: Plan, world_size: int, n_tasks: int) -> submitit.SlurmExecutor:
    """A SlurmExecutor for one array of `n_tasks` runs of `world_size` ranks (one rank per task)."""
    opts = normalised_slurm(plan.slurm)  # never the raw values of plan.json
    executor = submitit.SlurmExecutor(folder=run_dir / SUBMITIT_DIR / "%A")
    name = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in run_dir.name)
    params: dict[str, Any] = {
        "job_name": f"spikerl-bench-{name}"[:64], "time": opts.get("time_min", 24 * 60),
        "ntasks_per_node": world_size, "nodes": 1, "array_parallelism": min(plan.jobs, n_tasks),
        "cpus_per_task": opts.get("cpus_per_task", plan.threads or 1),
        "additional_parameters": dict(opts.get("extra", {})),
    }
    for key in ("partition", "mem", "account", "qos", "gpus_per_task"):
        if key in opts:
            params[key] = opts[key]
    if plan.device == "cuda" and "gpus_per_task" not in opts:
        params["gpus_per_task"] = 1  # each rank its own GPU, which its meter reads
    executor.update_parameters(**params)
    return executor


def submit_slurm(run_dir: Path, plan: Plan, todo: Sequence[tuple[RunKey, ...]]) -> int:
    """One job array per world size; returns at once (`spikerl-bench status` follows the sweep)."""
    import torch

    device = torch.device("cuda" if plan.device == "cuda" else "cpu")  # the compute nodes', not this host's
    groups: dict[int, list[tuple[RunKey, ...]]] = {}
    for unit in todo:
        groups.setdefault(world_size_for(get_method(unit[0][0]), plan, device), []).append(unit)
    ids: list[str] = []
    for world_size, runs in groups.items():
        executor = slurm_executor(run_dir, plan, world_size, len(runs))
        context = TaskContext(launcher="slurm", concurrent_runs=min(plan.jobs, len(runs)))
        try:
            with executor.batch():
                jobs = [executor.submit(ResumableTask(), Task(str(run_dir), unit, context, finish_folder=True))
                        for unit in runs]
        except (submitit.core.utils.FailedJobError, submitit.core.utils.FailedSubmissionError, OSError) as exc:
            raise SubmissionError(f"sbatch refused the job array: {_last_line(exc)}"
                                  + (f" (arrays {', '.join(ids)} were submitted)" if ids else "")) from None
        array_id = jobs[0].job_id.split("_")[0] if jobs else "?"
        ids.append(array_id)
        print(f"sweep: submitted job array {array_id}: {len(runs)} task(s) of {world_size} rank(s), "
              f"{min(plan.jobs, len(runs))} at once", file=sys.stderr)
    print(f"follow it with: spikerl-bench status {run_dir} --watch", file=sys.stderr)
    return 0


def _ranges(xs: Sequence[int]) -> str:
    return ",".join(map(str, xs)) if len(xs) < 3 or xs[-1] - xs[0] != len(xs) - 1 else f"{xs[0]}-{xs[-1]}"


def _elapsed(t0: float) -> str:
    return f"{time.monotonic() - t0:,.0f} s into the sweep"


def _last_line(exc: BaseException) -> str:
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else type(exc).__name__
