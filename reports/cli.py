"""`spikerl-bench report RUN [--format html,pdf,json,latex] [--baseline M] [--out DIR]`.

`add_report_parser(subparsers)` registers the subcommand on the main parser (bench.cli);
the parsed namespace's `func` (also `handler`) is `report_command`, which returns the exit
code: 0 written, 2 bad input (one line on stderr, nothing overwritten).
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from reports.build import DEFAULT_FORMATS, FORMATS, build_report, parse_formats
from reports.load import NotARunFolder
from reports.model import ReportError

PROG = "spikerl-bench report"
EXAMPLES = """\
examples:
  spikerl-bench report runs/2025-01-01T12-00-00
      rewrite RUN/report.html, RUN/report.pdf and RUN/figures/ from the run folder's files
  spikerl-bench report RUN --format html
      HTML only (one self-contained file: inline SVG and CSS, no JavaScript, no external URL)
  spikerl-bench report RUN --format html,pdf,json,latex
      also report.json (the report model: every table and aggregate, with units) and report.tex
      (booktabs tables); figures/ holds every figure as .svg and .pdf either way
  spikerl-bench report RUN --gpsup-phase run
      GPS-UP of the whole run (evaluation, start-up and checkpoints included) instead of training
  spikerl-bench report RUN --baseline mlp --out /tmp/report
      GPS-UP against the MLP reference instead of the run's baseline, written elsewhere

A partial run (seeds running, interrupted or failed) is reported as it stands: those seeds
appear with their status, missing files are named, and nothing missing is shown as zero.
"""


def add_report_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "report", help="write the HTML/PDF report of a run folder",
        description="Regenerate the report of a run folder from its files only: what was run,\n"
                    "aggregates across envs (rliable), results per env with IQM and bootstrap CIs,\n"
                    "the GPS-UP quadrant, learning curves, power traces, spike activity, carbon\n"
                    "equivalents and a reproducibility appendix.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", metavar="RUN", help="run folder written by `spikerl-bench run`")
    parser.add_argument("--format", default=",".join(DEFAULT_FORMATS), metavar="LIST",
                        help=f"comma-separated formats out of: {', '.join(FORMATS)} (default: html,pdf)")
    parser.add_argument("--baseline", default=None, metavar="M",
                        help="method that GPS-UP compares against (default: the run's baseline)")
    parser.add_argument("--gpsup-phase", default="train", choices=("train", "run"),
                        help="GPS-UP of the training phase (default: the seed paper's comparison) or of the "
                             "whole run (training, evaluation, start-up and checkpoints)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="write the report here instead of into RUN")
    parser.set_defaults(func=report_command, handler=report_command)
    return parser


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def report_command(args: argparse.Namespace) -> int:
    try:
        formats = parse_formats(args.format)
        paths = build_report(args.run_dir, formats=formats, baseline=args.baseline, out_dir=args.out,
                             gpsup_phase=args.gpsup_phase)
    except (NotARunFolder, ReportError) as exc:
        return _fail(str(exc).replace("\n", " "))
    except OSError as exc:
        return _fail(f"cannot write the report: {exc}")
    for p in paths:
        if p.name.startswith("report."):
            print(p)
    n_fig = sum(1 for p in paths if p.parent.name == "figures" and p.suffix == ".svg")
    print(f"{n_fig} figures (.svg and .pdf) in {paths[0].parent / 'figures' if paths else '-'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry (`python -m reports.cli report RUN ...`), same as the bench subcommand."""
    parser = argparse.ArgumentParser(prog="spikerl-bench")
    sub = parser.add_subparsers(dest="command", required=True)
    add_report_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
