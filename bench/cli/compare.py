"""`spikerl-bench compare BASE NEW`: the CI regression gate (exit 0 no regression, 1 regression, 2 bad input)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from bench.cli.args import EXIT_USAGE

COMPARE_EXAMPLES = """examples:
  spikerl-bench compare runs/base runs/new                  # run folders (the noise comes from progress windows)
  spikerl-bench compare base/summary.csv new/summary.csv    # summary.csv or exported JSON: whole-run numbers
  spikerl-bench compare runs/base runs/new --fail-on sps:-5% --fail-on energy_per_step:+8%,return:-20%
  spikerl-bench compare runs/base runs/new --markdown compare.md --json compare.json   # CI outputs
  spikerl-bench compare runs/base runs/new --fail-on none   # report only, never fail

rules (--fail-on, comma-separated or repeated; default {defaults}):
  sps:-10%              env steps/s in the training phase drop by more than 10 %
  energy_per_step:+10%  energy per env step grows by more than 10 %
  avg_power:+10%        average power grows by more than 10 %
  return:-20%           final return drops by more than 20 % of |BASE| (return:-100: by more than 100)
A metric fails only when its whole confidence interval is beyond the threshold; when only the
point estimate is, it is reported as too noisy to decide. exit codes: 0 no regression,
1 regression (or a run NEW did not complete), 2 bad input or configurations that differ.
"""


def add_compare_parser(sub: argparse._SubParsersAction) -> None:
    from bench.compare.rules import DEFAULT_RULES_TEXT

    p = sub.add_parser("compare", help="compare two runs; exit 1 on a regression beyond the noise (CI gate)",
                       description=(
                           "Compare NEW against BASE for every method x env x seed in both: env steps/s, energy "
                           "per env step, average power and final return, with bootstrap confidence intervals "
                           "from the runs' progress windows and repeats, plus GPS-UP of NEW against BASE."),
                       epilog=COMPARE_EXAMPLES.replace("{defaults}", DEFAULT_RULES_TEXT),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("base", type=Path, metavar="BASE", help="baseline: a run folder, a summary.csv or a JSON export")
    p.add_argument("new", type=Path, metavar="NEW", help="the run to check, in any of the same forms")
    p.add_argument("--fail-on", action="append", default=[], metavar="RULES",
                   help=f"regression rules, e.g. sps:-10%%,energy_per_step:+10%% (default: "
                        f"{DEFAULT_RULES_TEXT.replace('%', '%%')}; 'none': report only)")
    p.add_argument("--allow-config-diff", action="store_true",
                   help="compare even when the configurations differ (the differences are listed)")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="write a markdown summary (▲/▼ marks)")
    p.add_argument("--no-step-summary", action="store_true",
                   help="do not append the markdown summary to $GITHUB_STEP_SUMMARY (appended when it is set)")
    p.add_argument("--json", type=Path, metavar="FILE",
                   help="write NEW's values in github-action-benchmark's custom format: an object whose "
                        "customBiggerIsBetter and customSmallerIsBetter lists each feed that tool")
    p.add_argument("--gpsup-phase", default="train", choices=("train", "run"),
                   help="GPS-UP of NEW against BASE on the training phase (default) or the whole run")
    p.add_argument("--confidence", type=_confidence, default=0.95, help="confidence of the intervals (default 0.95)")
    p.set_defaults(func=cmd_compare)


def _confidence(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0.5 and 0.999, got {text!r}") from None
    if not 0.5 <= v <= 0.999:
        raise argparse.ArgumentTypeError(f"expected a number between 0.5 and 0.999, got {text!r}")
    return v


def _write(path: Path, text: str, mode: str = "w") -> None:
    from bench.run.plan import UsageError

    try:
        with open(path, mode, encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def cmd_compare(args: argparse.Namespace) -> int:
    from bench.compare import config_diff, gate, load, render, rules
    from bench.run.plan import UsageError

    try:
        fail_on = rules.parse_rules(args.fail_on) if args.fail_on else rules.DEFAULT_RULES
    except rules.RuleError as exc:
        print(f"spikerl-bench compare: error: --fail-on: {exc}", file=sys.stderr)
        return EXIT_USAGE
    base, new = load.load_side(args.base), load.load_side(args.new)
    diffs = config_diff.config_differences(base, new)
    if diffs and not args.allow_config_diff:
        more = f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else ""
        raise UsageError(f"configurations differ, so the comparison would not isolate the code: {diffs[0]}{more}; "
                         "compare runs of one configuration, or pass --allow-config-diff")
    report = gate.compare(base, new, fail_on, confidence=args.confidence, config_diffs=tuple(diffs),
                          gpsup_phase=args.gpsup_phase)
    sys.stdout.write(render.terminal(report))
    md = render.markdown(report)
    if args.markdown is not None:
        _write(args.markdown, md)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary and not args.no_step_summary:
        _write(Path(summary), md + "\n", "a")
    if args.json is not None:
        _write(args.json, json.dumps(render.benchmark_json(report), indent=2, ensure_ascii=False) + "\n")
    return report.exit_code
