"""The `spikerl-bench` command line."""
from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Sequence

from . import store
from .profiles import PROFILES
from .runner import Plan, UsageError, create_run_folder, default_run_dir, execute, parse_set_options, \
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
    run.add_argument("--resume", type=Path, metavar="RUN_DIR", help="finish every unfinished run of RUN_DIR")
    run.set_defaults(func=cmd_run)

    methods = sub.add_parser("methods", help="list the methods and their recipes",
                             description="List every registered method with its recipe and defaults.")
    methods.add_argument("--env", default="HalfCheetah-v4", help="env whose defaults to show")
    methods.set_defaults(func=cmd_methods)

    perf = sub.add_parser("perf", help="throughput benchmark (env steps/s, update and action ms)",
                          description="Measure raw env speed, TD3 update and action time, and training-loop "
                                      "throughput of every method in one process.")
    from .perf import add_perf_arguments

    add_perf_arguments(perf)
    perf.set_defaults(func=cmd_perf)

    for register in _optional_registrars():
        register(sub)
    return parser


def _optional_registrars():
    regs = []
    try:
        from .cli_energy import add_carbon_parser, add_gpsup_parser

        regs += [add_gpsup_parser, add_carbon_parser]
    except ImportError:
        pass
    try:
        from reports.cli import add_report_parser

        regs.append(add_report_parser)
    except ImportError:
        pass
    return regs


def cmd_run(args: argparse.Namespace) -> int:
    if args.resume is not None:
        conflicting = [f for f in ("methods", "envs", "seeds", "total_steps", "out", "precision")
                       if getattr(args, f) is not None] + (["set"] if args.settings else [])
        if conflicting:
            raise UsageError(f"--resume takes the plan from the run folder; drop --{conflicting[0].replace('_', '-')}")
        plan = Plan.from_json(store.load_plan(args.resume))
        validate_names(plan.methods, plan.envs)
        return execute(args.resume, plan, resume=True, plain=args.plain)

    profile = PROFILES[args.profile]
    td3_overrides, actor_overrides = parse_set_options(args.settings)
    if args.threads is not None and args.threads <= 0:
        raise UsageError(f"--threads must be positive, got {args.threads}")
    if len(args.country) != 3 or not args.country.isalpha():
        raise UsageError(f"--country must be an ISO-3 code such as USA, FRA or DEU, got {args.country!r}")
    methods = args.methods or profile.methods
    envs = args.envs or profile.envs
    validate_names(methods, envs)
    resolve_device(args.device)
    plan = Plan(
        methods=tuple(methods), envs=tuple(envs), seeds=args.seeds or profile.seeds, profile=profile.name,
        total_steps=args.total_steps or int(profile.td3.get("total_steps", 1_000_000)), device=args.device,
        td3_overrides=td3_overrides, actor_overrides=actor_overrides, precision=args.precision,
        baseline=args.baseline, country=args.country.upper(), power_interval_s=args.power_interval,
        target_return=args.target_return, threads=args.threads, argv=tuple(sys.argv[1:]),
        created_utc=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    run_dir = args.out or default_run_dir(plan)
    create_run_folder(run_dir, plan)
    print(f"run folder: {run_dir}", file=sys.stderr)
    if plan.baseline not in plan.methods:
        print(f"note: baseline {plan.baseline!r} is not among the methods; GPS-UP columns stay empty",
              file=sys.stderr)
    return execute(run_dir, plan, resume=False, plain=args.plain)


def cmd_methods(args: argparse.Namespace) -> int:
    from baselines.registry import METHODS
    from spikerl.config import TD3Config

    from .runner import validate_names

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
    from .perf import run_perf

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
