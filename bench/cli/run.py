"""`spikerl-bench run`: a new plan, a resume, or one rank of a data-parallel job."""
from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
from pathlib import Path

from bench import schema
from bench.cli.args import EXIT_USAGE
from bench.energy.grid import grid_inputs
from bench.run import store
from bench.run.launch import launch_local
from bench.run.plan import (
    MAX_WORKERS,
    Plan,
    UsageError,
    default_run_dir,
    parse_method_set_options,
    parse_set_options,
    validate_names,
)
from bench.run.profiles import PROFILES
from bench.run.resolve import resolve_device, world_size_groups
from bench.run.restart import LostSeed, find_lost_seeds, move_lost_seeds
from bench.run.resume import check_resumable
from bench.run.runner import create_run_folder, execute, finish_run_folder
from bench.run.summary import write_summary
from bench.run.sweep import SubmissionError, check_fits, check_folder_name, run_sweep, unfinished_runs
from bench.run.sweep_options import check_launcher, slurm_options
from bench.run.validate import check_plan

_SLURM_FLAGS = ("slurm_partition", "slurm_time", "slurm_gpus_per_task", "slurm_cpus_per_task", "slurm_mem",
                "slurm_account", "slurm_qos")


def meter_header() -> str:
    """The doctor's verdict, one line (`spikerl-bench doctor` says why)."""
    try:
        from bench.energy.inventory import inventory

        inv = inventory()
    except Exception as exc:  # noqa: BLE001 - a probe must never stop a run
        return f"meters: unknown ({type(exc).__name__}: {exc})"
    return (f"meters: {inv.verdict} (gpu {inv.gpu.verdict}, cpu {inv.cpu.verdict}, ram {inv.ram.verdict}; "
            f"`spikerl-bench doctor` says why)")


def cmd_run(args: argparse.Namespace) -> int:
    from spikerl.distributed import detect_launch

    launch = detect_launch()
    if launch is not None:
        exit_rank(run_as_rank(args, launch))
    if args.only_methods is not None or args.only_runs is not None:
        raise UsageError("--only-methods and --only-runs are set by the local launcher for its ranks; use --methods")
    if getattr(args, "restart_seed", False) and args.resume is None:
        raise UsageError("--restart-seed goes with --resume RUN_DIR")
    if args.resume is not None:
        plan = resume_plan(args)
        if plan.launcher != "inline":
            return resume_sweep(args.resume, plan, plain=args.plain, restart=args.restart_seed)
        return run_groups(args.resume, plan, resume=True, plain=args.plain, restart=args.restart_seed)
    plan = new_plan(args)
    check_fits(plan)
    run_dir = args.out or default_run_dir(plan)
    check_folder_name(plan, run_dir)
    create_run_folder(run_dir, plan)
    print(f"run folder: {run_dir}", file=sys.stderr)
    print(meter_header(), file=sys.stderr)
    if plan.baseline not in plan.methods:
        print(f"note: baseline {plan.baseline!r} is not among the methods; GPS-UP columns stay empty",
              file=sys.stderr)
    if plan.launcher != "inline":
        try:
            return run_sweep(run_dir, plan, plain=args.plain)
        except SubmissionError:
            if not any(run_dir.glob("*/*/seed*")):  # nothing ran: leave no folder behind a refusal
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
    return run_groups(run_dir, plan, resume=False, plain=args.plain)


def resume_sweep(run_dir: Path, plan: Plan, *, plain: bool, restart: bool = False) -> int:
    """Resubmit a sweep's unfinished runs through its launcher, once each can be continued exactly."""
    import torch

    device = resolve_device(plan.device) if plan.launcher == "local" else \
        torch.device("cuda" if plan.device == "cuda" else "cpu")
    groups = world_size_groups(plan, device)
    lost = _lost_seeds(run_dir, plan, groups) if restart else []
    restarting = [(m, e, s) for _, m, e, s in lost]
    for world_size, methods in groups.items():
        check_resumable(run_dir, plan, world_size, device, methods, restarting=restarting)
    check_folder_name(plan, run_dir)
    check_fits(plan, unfinished_runs(run_dir, plan))
    _move_lost_seeds(run_dir, lost)
    print(f"resuming {run_dir} through the {plan.launcher} launcher", file=sys.stderr)
    return run_sweep(run_dir, plan, plain=plain)


def run_groups(run_dir: Path, plan: Plan, *, resume: bool, plain: bool, restart: bool = False) -> int:
    """Train the plan: each group of methods that share a world size in turn (one group unless
    methods default to different sizes, as SpikeRL on several GPUs), then finish the folder."""
    device = resolve_device(plan.device)
    groups = world_size_groups(plan, device)
    lost = _lost_seeds(run_dir, plan, groups) if restart else []
    restarting = [(m, e, s) for _, m, e, s in lost]
    if resume:  # refused here in one line, not once by every rank (and, with lost seeds, before they move)
        for world_size, methods in groups.items():
            if world_size > 1 or lost:
                check_resumable(run_dir, plan, world_size, device, methods, restarting=restarting)
    _move_lost_seeds(run_dir, lost)
    if len(groups) == 1:
        (world_size, _), = groups.items()
        if world_size > 1:
            return launch_local(run_dir, world_size, plain)
        return execute(run_dir, plan, resume=resume, plain=plain)
    code = 0
    for world_size, methods in groups.items():
        print(f"{', '.join(methods)}: {world_size} rank(s)", file=sys.stderr)
        if world_size > 1:
            group_code = launch_local(run_dir, world_size, plain, methods=methods)
        else:
            group_code = execute(run_dir, plan, resume=True, plain=plain, methods=methods)
        if group_code == 130:
            return 130
        code = code or group_code
    write_summary(run_dir, plan)
    finish_run_folder(run_dir, plan)
    return code


def _lost_seeds(run_dir: Path, plan: Plan, groups: dict[int, tuple[str, ...]]) -> list[LostSeed]:
    """--restart-seed: the seeds without a usable checkpoint (found, not yet moved: every other check
    runs first, so a refusal leaves the folder as it was)."""
    return find_lost_seeds(run_dir, {ws: plan.runs(methods) for ws, methods in groups.items()})


def _move_lost_seeds(run_dir: Path, lost: list[LostSeed]) -> None:
    if lost:
        with store.folder_lock(run_dir):
            move_lost_seeds(lost)


def exit_rank(code: int) -> None:
    """End a finished rank without interpreter finalisation. Its process group is already
    destroyed and every file written; Gloo's worker threads can still hold tensors whose
    destruction during finalisation aborts the process (SIGABRT, 'terminate called without an
    active exception'), which would turn a finished job into a failed one."""
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def resume_plan(args: argparse.Namespace) -> Plan:
    conflicting = [f for f in ("methods", "envs", "seeds", "total_steps", "out", "precision", "nproc", "engine",
                               "seed_batch", "launcher", "jobs", "idle_window_s", *_SLURM_FLAGS)
                   if getattr(args, f) is not None] + (["set"] if args.settings else []) \
        + (["slurm_opt"] if args.slurm_opt else [])
    if conflicting:
        raise UsageError(f"--resume takes the plan from the run folder; drop --{conflicting[0].replace('_', '-')}")
    plan = Plan.from_json(store.load_plan(args.resume), args.resume / schema.PLAN)
    check_plan(plan)
    return plan


def run_as_rank(args: argparse.Namespace, launch) -> int:  # noqa: ANN001
    """One rank of a torchrun / mpirun / srun / --nproc job: rank 0 makes the folder, all train."""
    from spikerl.distributed import DistributedSetupError, init_distributed, shutdown_distributed

    if args.restart_seed:
        raise UsageError("--restart-seed is not for one rank of a launched job; run it without the launcher")
    if args.resume is not None:
        plan = resume_plan(args)
    else:
        plan = new_plan(args)
    if args.only_methods is not None and not set(args.only_methods) <= set(plan.methods):
        raise UsageError(f"--only-methods {','.join(args.only_methods)}: not all in the plan "
                         f"({','.join(plan.methods)})")
    if args.only_runs is not None and not set(args.only_runs) <= set(plan.runs()):
        raise UsageError("--only-runs: not all in the plan")
    device = resolve_device(plan.device)
    backend = args.backend or plan.backend
    try:
        ctx = init_distributed(launch, backend, device.type)
    except DistributedSetupError as exc:
        raise UsageError(str(exc)) from None
    try:
        run_dir = args.resume
        if run_dir is None:
            outcome: object = None
            if ctx.is_main:
                try:
                    run_dir = args.out or default_run_dir(plan)
                    create_run_folder(run_dir, plan)
                    outcome = str(run_dir)
                    print(f"run folder: {run_dir} ({ctx.world_size} ranks, {ctx.backend})", file=sys.stderr)
                except (UsageError, OSError) as exc:
                    outcome = exc
            outcome = ctx.broadcast_object(outcome)
            if isinstance(outcome, BaseException):
                raise UsageError(str(outcome)) if ctx.is_main else SystemExit(EXIT_USAGE)
            run_dir = Path(str(outcome))
        return execute(run_dir, plan, resume=args.resume is not None, plain=args.plain, ctx=ctx,
                       methods=args.only_methods, only_runs=args.only_runs)
    finally:
        shutdown_distributed()


def new_plan(args: argparse.Namespace) -> Plan:
    profile = PROFILES[args.profile]
    td3_overrides, actor_overrides = parse_set_options(args.settings)
    method_overrides = parse_method_set_options(args.settings)
    for flag in ("threads", "nproc", "seed_batch"):
        value = getattr(args, flag)
        if value is not None and not 0 < value <= MAX_WORKERS:
            raise UsageError(f"--{flag.replace('_', '-')} must be 1 to {MAX_WORKERS}, got {value}")
    if len(args.country) != 3 or not args.country.isalpha():
        raise UsageError(f"--country must be an ISO-3 code such as USA, FRA or DEU, got {args.country!r}")
    try:
        grid_inputs(args.country, region=args.region, intensity_g_per_kwh=args.carbon_intensity, pue=args.pue)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    launcher, jobs = args.launcher or "inline", args.jobs if args.jobs is not None else 1
    slurm = slurm_options(**{f[len("slurm_"):]: getattr(args, f) for f in _SLURM_FLAGS}, extra=args.slurm_opt)
    check_launcher(launcher, jobs, slurm)
    methods = args.methods or profile.methods
    envs = args.envs or profile.envs
    validate_names(methods, envs)
    if not (launcher == "slurm" and args.device == "cuda"):  # the compute nodes have the GPUs
        resolve_device(args.device)
    return Plan(
        methods=tuple(methods), envs=tuple(envs), seeds=args.seeds or profile.seeds, profile=profile.name,
        total_steps=args.total_steps or int(profile.td3.get("total_steps", 1_000_000)), device=args.device,
        td3_overrides=td3_overrides, actor_overrides=actor_overrides, method_overrides=method_overrides,
        precision=args.precision,
        baseline=args.baseline, country=args.country.upper(), power_interval_s=args.power_interval,
        idle_window_s=profile.idle_window_s if args.idle_window_s is None else args.idle_window_s,
        region=args.region, carbon_intensity_g_per_kwh=args.carbon_intensity, pue=args.pue,
        target_return=args.target_return, nproc=args.nproc, backend=args.backend or "auto",
        threads=args.threads, engine=args.engine or "auto", launcher=launcher, jobs=jobs, slurm=slurm,
        seed_batch=args.seed_batch or 1,
        config_file=None if getattr(args, "config", None) is None else str(args.config),
        config_sha256=getattr(args, "config_sha256", None),
        argv=tuple(sys.argv[1:]),
        created_utc=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
