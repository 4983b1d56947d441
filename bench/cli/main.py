"""The `spikerl-bench` command line."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from bench.cli.args import (
    EXIT_USAGE,
    OneLineParser,
    finite_float,
    idle_window,
    power_interval,
    run_keys,
    seed_list,
    step_count,
    unique_csv_list,
)
from bench.cli.compare import add_compare_parser
from bench.cli.config_file import with_config_file
from bench.cli.run import cmd_run
from bench.run import store
from bench.run.plan import UsageError, validate_names
from bench.run.profiles import DEFAULT_BASELINE, PROFILES

RUN_EXAMPLES = """examples:
  spikerl-bench run                                    # quick profile: every method on HalfCheetah-v4
  spikerl-bench run --methods spikerl,popsan,dsrl --envs HalfCheetah-v4 --seeds 0,1
  spikerl-bench run --profile smoke --out runs/ci      # the CI pipeline check (< 2 min)
  spikerl-bench run --profile paper --device cuda      # 1M steps, 4 tasks, 10 seeds
  spikerl-bench run --methods mlp --total-steps 50k --set lr_actor=3e-4 --set actor.hidden=400,300
  spikerl-bench run --methods popsan,dsrl --set popsan:lr_actor=1e-4 --set dsrl:actor.timesteps=5
  spikerl-bench run --config examples/sweeps/paper.toml --seeds 0-2   # a sweep file; flags override it
  spikerl-bench run --resume runs/20261128T021500Z-quick-spikerl-popsan-dsrl-mlp
"""


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="spikerl-bench", description="Energy and carbon benchmarks of spiking deep RL.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)

    run = sub.add_parser("run", help="train, measure and report", description=(
        "Train every method x env x seed with the shared TD3 harness, measure time, power, energy and "
        "emissions, and write a run folder with the report."), epilog=RUN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--methods", type=unique_csv_list, help="comma-separated methods (see `spikerl-bench methods`)")
    run.add_argument("--envs", type=unique_csv_list,
                     help="comma-separated gymnasium ids, e.g. HalfCheetah-v4,Hopper-v5")
    run.add_argument("--seeds", type=seed_list, help="e.g. 0,1,2 or 0-9")
    run.add_argument("--total-steps", type=step_count, help="global env steps per run, e.g. 50000 or 50k")
    run.add_argument("--profile", choices=sorted(PROFILES), default="quick",
                     help="budget preset (default: quick); explicit flags override it")
    run.add_argument("--out", type=Path, help="new run folder (default: runs/<UTC time>-<profile>-<methods>)")
    run.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    run.add_argument("--precision", choices=("fp32", "bf16"), help="override every method's precision")
    run.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                     help="override a TD3 setting (e.g. batch_size=256) or an actor one (actor.timesteps=4); "
                          "METHOD:KEY=VALUE for one method only (popsan:lr_actor=1e-4)")
    run.add_argument("--baseline", default=DEFAULT_BASELINE, help="method the GPS-UP metrics compare against")
    run.add_argument("--country", default="USA", help="ISO-3 country code of the grid for CodeCarbon")
    run.add_argument("--region", default=None, help="a US state or Canadian province (with --country USA or CAN) "
                     "whose grid intensity CodeCarbon's offline data holds, e.g. california, ontario")
    run.add_argument("--carbon-intensity", type=finite_float, default=None, metavar="G_PER_KWH",
                     help="your grid's intensity in g CO2e/kWh (your utility's or grid operator's figure); "
                          "recorded with source 'user'")
    run.add_argument("--pue", type=finite_float, default=1.0, metavar="X",
                     help="facility overhead, power usage effectiveness 1.0-3.0 (default 1.0): emissions use "
                          "energy x PUE; energy_j stays the IT energy")
    run.add_argument("--power-interval", type=power_interval, default=0.1, help="power sampling period in s")
    run.add_argument("--idle-window-s", type=idle_window, default=None, metavar="S",
                     help="idle baseline before training, in s, for gross and idle-subtracted (dynamic) energy; "
                          "0 skips it (default: the profile's, 10 s; smoke 0)")
    run.add_argument("--target-return", type=finite_float, help="return for energy/time-to-target (default: 90%% "
                     "of the baseline's final return on the same env and seed)")
    run.add_argument("--threads", type=int, help="torch intra-op threads (default: 1); with --seed-batch K on a CPU, "
                     "the K seeds train in this many groups, one thread each")
    run.add_argument("--engine", choices=("auto", "native", "torch"), default=None,
                     help="how spiking layers execute: native CPU kernels (fp32) or pure torch; auto (default) "
                          "picks native wherever it runs, so every spiking method gets the same engine")
    run.add_argument("--seed-batch", type=int, metavar="K",
                     help="train K seeds of each method x env together in one process (batched weights through "
                          "torch.func.vmap; each seed keeps its own folder and is charged 1/K of the process's "
                          "energy); default 1")
    run.add_argument("--plain", action="store_true", help="plain progress lines even on a terminal")
    run.add_argument("--nproc", type=int, help="start N local data-parallel ranks for every method (default: each "
                     "method's own: SpikeRL uses every local GPU with --device cuda, the others 1; under torchrun, "
                     "mpirun or srun the launcher's world size is used)")
    run.add_argument("--backend", choices=("auto", "nccl", "gloo", "mpi"), default=None,
                     help="torch.distributed backend (default auto: NCCL with CUDA, else Gloo)")
    run.add_argument("--config", type=Path, metavar="FILE", help="a sweep file (TOML) whose keys are these flags' "
                     "names, e.g. examples/sweeps/paper.toml; flags given beside it override it")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR", help="finish every unfinished run of RUN_DIR "
                     "(through the launcher it started with)")
    run.add_argument("--restart-seed", action="store_true", help="with --resume: retrain from step 0 every "
                     "unfinished seed that has logs but no usable checkpoint, after moving its old files to "
                     "seed<k>.lost-<UTC time> beside it (without it, such a seed is refused)")
    sweep = run.add_argument_group("sweep execution", "where the runs of the plan execute (bench.run.sweep)")
    sweep.add_argument("--launcher", choices=("inline", "local", "slurm"), default=None,
                       help="inline (default): one run after another in this process, the reference for clean "
                            "measurements; local: submitit jobs on this machine, --jobs at once, each pinned to its "
                            "own cores or GPU; slurm: one submitit job array, one task per run")
    sweep.add_argument("--jobs", type=int, help="runs at once (local: processes here; slurm: the array's "
                       "parallelism); default 1")
    sweep.add_argument("--slurm-partition", metavar="NAME")
    sweep.add_argument("--slurm-time", metavar="TIME", help="time limit per task: minutes, H:MM:SS or D-HH:MM:SS")
    sweep.add_argument("--slurm-gpus-per-task", type=int, metavar="N")
    sweep.add_argument("--slurm-cpus-per-task", type=int, metavar="N")
    sweep.add_argument("--slurm-mem", metavar="SIZE", help="memory per task, e.g. 16G")
    sweep.add_argument("--slurm-account", metavar="NAME")
    sweep.add_argument("--slurm-qos", metavar="NAME")
    sweep.add_argument("--slurm-opt", action="append", default=[], metavar="KEY=VALUE",
                       help="another #SBATCH option, e.g. constraint=a100 or mail-type=END (repeatable)")
    run.add_argument("--only-methods", type=unique_csv_list, help=argparse.SUPPRESS)  # one world-size group's ranks
    run.add_argument("--only-runs", type=run_keys, help=argparse.SUPPRESS)  # one sweep task's ranks
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

    add_compare_parser(sub)
    from bench.cli.status import add_status_parser

    add_status_parser(sub)
    from bench.cli.doctor import add_doctor_parser

    add_doctor_parser(sub)
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


def _commands(parser: argparse.ArgumentParser) -> list[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


def cmd_methods(args: argparse.Namespace) -> int:
    from baselines.registry import METHODS
    from spikerl.config import TD3Config

    validate_names([], [args.env])
    base = TD3Config().to_dict()
    for name, spec in METHODS.items():
        td3 = {**base, **spec.td3_params(args.env)}
        changed = {k: v for k, v in td3.items() if k in spec.td3_params(args.env)}
        print(f"{name}: {spec.summary}")
        print(f"  actor ({args.env}): " + ", ".join(f"{k}={v}" for k, v in spec.actor_params(args.env).items()))
        print("  td3 recipe: " + ", ".join(f"{k}={v}" for k, v in changed.items()))
        actions = ("uniform random" if td3["start_actions"] == "uniform"
                   else f"Gaussian N(0, {td3['start_noise']:g}·act_limit)")
        print(f"  warm-up: {td3['start_steps']:,} steps of {actions} actions; "
              f"gradient steps from step {td3['update_after']:,}")
        print(f"  world size: {spec.world_size.value} ({spec.world_size.resolve()} here)")
    return 0


def cmd_perf(args: argparse.Namespace) -> int:
    from bench.perf import run_perf

    return run_perf(args)


def main(argv: Sequence[str] | None = None) -> int:
    from spikerl.atomic import WriteError
    from spikerl.checkpoint import CheckpointError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # a usage error like any other: usage and one error line on stderr
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: a command is required, one of: {', '.join(_commands(parser))} "
              "(see --help)", file=sys.stderr)
        return EXIT_USAGE
    try:
        args = with_config_file(parser, argv, args)
        return int(args.func(args) or 0)
    except (UsageError, store.RunFolderError, CheckpointError) as exc:
        print("spikerl-bench: error: " + " ".join(str(exc).split()), file=sys.stderr)  # one line, always
        return EXIT_USAGE
    except WriteError as exc:  # a full disk: what was written before stays whole
        print("spikerl-bench: error: " + " ".join(f"{exc}; {_after_write_error(exc.path)}".split()), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("spikerl-bench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a reader that stopped early (e.g. `| head`)
        sys.stdout = open(os.devnull, "w")
        return 0


def _after_write_error(path: Path) -> str:
    """What to do next: the run folder above the file, if it is one, resumes once space is free."""
    run = next((p for p in path.parents if store.is_run_folder(p)), None)
    if run is None:
        return "nothing was half-written"
    return (f"the last checkpoint and every complete row are intact; free space, then finish with: "
            f"spikerl-bench run --resume {run}")


if __name__ == "__main__":
    sys.exit(main())
