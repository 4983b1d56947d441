"""The `spikerl-bench` command line."""
from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Sequence

from bench.run import store
from bench.run.profiles import PROFILES
from bench.run.launch import launch_local
from bench.run.runner import Plan, UsageError, create_run_folder, default_run_dir, execute, parse_set_options, \
    resolve_device, validate_names

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def csv_list(text: str) -> tuple[str, ...]:
    items = tuple(x.strip() for x in text.split(",") if x.strip())
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def seed_list(text: str) -> tuple[int, ...]:
    """'0,1,2' or '0-4' (inclusive) or a mix: '0-2,7'."""
    seeds: list[int] = []
    try:
        for part in csv_list(text):
            lo, sep, hi = part.partition("-")
            if sep and lo:
                a, b = int(lo), int(hi)
                if b < a:
                    raise ValueError
                seeds.extend(range(a, b + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(f"malformed seeds {text!r}: use e.g. 0,1,2 or 0-4") from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"seeds must be distinct non-negative integers, got {text!r}")
    return tuple(seeds)


def step_count(text: str) -> int:
    """A positive step count: 50000, 50_000, 5e4, 50k or 1M."""
    t = text.strip().lower().replace("_", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    try:
        value = float(t[:-1] if scale > 1 else t) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"malformed step count {text!r}: use e.g. 50000, 5e4 or 50k") from None
    if not value.is_integer() or value <= 0:
        raise argparse.ArgumentTypeError(f"step count must be a positive integer, got {text!r}")
    return int(value)


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


RUN_EXAMPLES = """examples:
  spikerl-bench run                                    # quick profile: every method on HalfCheetah-v4
  spikerl-bench run --methods spikerl,popsan,dsrl --envs HalfCheetah-v4 --seeds 0,1
  spikerl-bench run --profile smoke --out runs/ci      # the CI pipeline check (< 2 min)
  spikerl-bench run --profile paper --device cuda      # 1M steps, 4 tasks, 10 seeds
  spikerl-bench run --methods mlp --total-steps 50k --set lr_actor=3e-4 --set actor.hidden=400,300
  spikerl-bench run --resume runs/20261128T021500Z-quick-spikerl-popsan-dsrl-mlp
"""


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="spikerl-bench", description="Energy and carbon benchmarks of spiking deep RL.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)

    run = sub.add_parser("run", help="train, measure and report", description=(
        "Train every method x env x seed with the shared TD3 harness, measure time, power, energy and "
        "emissions, and write a run folder with the report."), epilog=RUN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--methods", type=csv_list, help="comma-separated methods (see `spikerl-bench methods`)")
    run.add_argument("--envs", type=csv_list, help="comma-separated gymnasium ids, e.g. HalfCheetah-v4,Hopper-v5")
    run.add_argument("--seeds", type=seed_list, help="e.g. 0,1,2 or 0-9")
    run.add_argument("--total-steps", type=step_count, help="global env steps per run, e.g. 50000 or 50k")
    run.add_argument("--profile", choices=sorted(PROFILES), default="quick",
                     help="budget preset (default: quick); explicit flags override it")
    run.add_argument("--out", type=Path, help="new run folder (default: runs/<UTC time>-<profile>-<methods>)")
    run.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    run.add_argument("--precision", choices=("fp32", "bf16"), help="override every method's precision")
    run.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                     help="override a TD3 setting (e.g. batch_size=256) or an actor one (actor.timesteps=4)")
    run.add_argument("--baseline", default="popsan", help="method the GPS-UP metrics compare against")
    run.add_argument("--country", default="USA", help="ISO-3 country code of the grid for CodeCarbon")
    run.add_argument("--power-interval", type=positive_float, default=0.1, help="power sampling period in s")
    run.add_argument("--target-return", type=float, help="return for energy/time-to-target (default: 90%% "
                     "of the baseline's final return on the same env and seed)")
    run.add_argument("--threads", type=int, help="torch intra-op threads (default: 1)")
    run.add_argument("--plain", action="store_true", help="plain progress lines even on a terminal")
    run.add_argument("--nproc", type=int, help="start N local data-parallel ranks (default 1; under torchrun, "
                     "mpirun or srun the launcher's world size is used)")
    run.add_argument("--backend", choices=("auto", "nccl", "gloo", "mpi"), default=None,
                     help="torch.distributed backend (default auto: NCCL with CUDA, else Gloo)")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR", help="finish every unfinished run of RUN_DIR")
    run.set_defaults(func=cmd_run)

    methods = sub.add_parser("methods", help="list the methods and their recipes",
                             description="List every registered method with its recipe and defaults.")
    methods.add_argument("--env", default="HalfCheetah-v4", help="env whose defaults to show")
    methods.set_defaults(func=cmd_methods)

    perf = sub.add_parser("perf", help="throughput benchmark (env steps/s, update and action ms)",
                          description="Measure raw env speed, TD3 update and action time, and training-loop "
                                      "throughput of every method in one process.")
    from bench.perf import add_perf_arguments

    add_perf_arguments(perf)
    perf.set_defaults(func=cmd_perf)

    for register in _optional_registrars():
        register(sub)
    return parser


def _optional_registrars():
    from importlib.metadata import entry_points

    from bench.cli.calculators import add_carbon_parser, add_gpsup_parser

    regs = [add_gpsup_parser, add_carbon_parser]
    # Presenting layers (reports/) register their subcommands here; bench never imports them.
    for ep in entry_points(group="spikerl_bench.commands"):
        regs.append(ep.load())
    return regs


def cmd_run(args: argparse.Namespace) -> int:
    from spikerl.distributed import detect_launch

    launch = detect_launch()
    if launch is not None:
        exit_rank(run_as_rank(args, launch))
    if args.resume is not None:
        plan = resume_plan(args)
        if plan.nproc > 1:
            return launch_local(args.resume, plan.nproc, args.plain)
        return execute(args.resume, plan, resume=True, plain=args.plain)
    plan = new_plan(args)
    run_dir = args.out or default_run_dir(plan)
    create_run_folder(run_dir, plan)
    print(f"run folder: {run_dir}", file=sys.stderr)
    if plan.baseline not in plan.methods:
        print(f"note: baseline {plan.baseline!r} is not among the methods; GPS-UP columns stay empty",
              file=sys.stderr)
    if plan.nproc > 1:
        return launch_local(run_dir, plan.nproc, args.plain)
    return execute(run_dir, plan, resume=False, plain=args.plain)


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
    conflicting = [f for f in ("methods", "envs", "seeds", "total_steps", "out", "precision", "nproc")
                   if getattr(args, f) is not None] + (["set"] if args.settings else [])
    if conflicting:
        raise UsageError(f"--resume takes the plan from the run folder; drop --{conflicting[0].replace('_', '-')}")
    plan = Plan.from_json(store.load_plan(args.resume))
    validate_names(plan.methods, plan.envs)
    return plan


def run_as_rank(args: argparse.Namespace, launch) -> int:  # noqa: ANN001
    """One rank of a torchrun / mpirun / srun / --nproc job: rank 0 makes the folder, all train."""
    from spikerl.distributed import DistributedSetupError, init_distributed, shutdown_distributed

    if args.resume is not None:
        plan = resume_plan(args)
    else:
        plan = new_plan(args)
    device = resolve_device(plan.device)
    backend = args.backend or plan.backend
    try:
        ctx = init_distributed(launch, backend, device)
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
        return execute(run_dir, plan, resume=args.resume is not None, plain=args.plain, ctx=ctx)
    finally:
        shutdown_distributed()


def new_plan(args: argparse.Namespace) -> Plan:
    profile = PROFILES[args.profile]
    td3_overrides, actor_overrides = parse_set_options(args.settings)
    if args.threads is not None and args.threads <= 0:
        raise UsageError(f"--threads must be positive, got {args.threads}")
    if args.nproc is not None and args.nproc <= 0:
        raise UsageError(f"--nproc must be positive, got {args.nproc}")
    if len(args.country) != 3 or not args.country.isalpha():
        raise UsageError(f"--country must be an ISO-3 code such as USA, FRA or DEU, got {args.country!r}")
    methods = args.methods or profile.methods
    envs = args.envs or profile.envs
    validate_names(methods, envs)
    resolve_device(args.device)
    return Plan(
        methods=tuple(methods), envs=tuple(envs), seeds=args.seeds or profile.seeds, profile=profile.name,
        total_steps=args.total_steps or int(profile.td3.get("total_steps", 1_000_000)), device=args.device,
        td3_overrides=td3_overrides, actor_overrides=actor_overrides, precision=args.precision,
        baseline=args.baseline, country=args.country.upper(), power_interval_s=args.power_interval,
        target_return=args.target_return, nproc=args.nproc or 1, backend=args.backend or "auto",
        threads=args.threads, argv=tuple(sys.argv[1:]),
        created_utc=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )


def cmd_methods(args: argparse.Namespace) -> int:
    from baselines.registry import METHODS
    from spikerl.config import TD3Config

    from bench.run.runner import validate_names

    validate_names([], [args.env])
    base = TD3Config().to_dict()
    for name, spec in METHODS.items():
        td3 = {**base, **spec.td3_params(args.env)}
        changed = {k: v for k, v in td3.items() if k in spec.td3_params(args.env)}
        print(f"{name}: {spec.summary}")
        print(f"  actor ({args.env}): " + ", ".join(f"{k}={v}" for k, v in spec.actor_params(args.env).items()))
        print("  td3 recipe: " + ", ".join(f"{k}={v}" for k, v in changed.items()))
    return 0


def cmd_perf(args: argparse.Namespace) -> int:
    from bench.perf import run_perf

    return run_perf(args)


def main(argv: Sequence[str] | None = None) -> int:
    from spikerl.checkpoint import CheckpointError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except (UsageError, store.RunFolderError, CheckpointError) as exc:
        print(f"spikerl-bench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("spikerl-bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
