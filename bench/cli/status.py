"""`spikerl-bench status RUN`: one line per run of a sweep and the sweep's ETA, read from the run folder
only (bench.run.status), so it works while the runs execute on other nodes."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

from bench.run.recorder import _fmt_duration, _fmt_energy
from bench.run.status import STALLED, RunStatus, SweepStatus, read_status
from bench.schema import Status

DEFAULT_WATCH_S = 5.0
STATUS_EXAMPLES = """examples:
  spikerl-bench status runs/20261128T021500Z-quick-spikerl-popsan-dsrl-mlp
  spikerl-bench status RUN --watch          # redraw every 5 s until no run is running or pending (Ctrl-C stops)
  spikerl-bench status RUN --watch 30       # every 30 s
  spikerl-bench status RUN --json           # machine-readable: the sweep and one object per run

states: complete, failed, interrupted (result.json); running (no result yet, progress written recently);
stalled (nothing written for max(5 min, 10 progress intervals): a killed run, finish it with
`spikerl-bench run --resume RUN`); pending (not started); corrupt (unreadable result.json).
steps/s is measured over the last 5 progress intervals; the sweep ETA divides the steps left in running
and pending runs by the running runs' combined steps/s. exit codes: 0, or 2 for a path that is not a
run folder.
"""


def _watch_seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds between redraws, got {text!r} "
                                         "(write RUN before --watch)") from None
    if not 0.1 <= v <= 3600:
        raise argparse.ArgumentTypeError(f"--watch must be 0.1 to 3600 s, got {text!r}")
    return v


def add_status_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="where a sweep stands: state, steps/s, ETA, node and energy per run",
                       description=("Show one line per run of RUN (state, steps done, recent steps/s, ETA, "
                                    "node/device, energy so far) and the ETA of the whole sweep, from the run "
                                    "folder's files only."),
                       epilog=STATUS_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, metavar="RUN", help="a run folder (the one `spikerl-bench run` writes)")
    p.add_argument("--watch", nargs="?", type=_watch_seconds, const=DEFAULT_WATCH_S, metavar="SECONDS",
                   help=f"redraw every SECONDS (default {DEFAULT_WATCH_S:g}) until no run is running or pending")
    p.add_argument("--json", action="store_true",
                   help="print JSON instead of the table (with --watch: one compact object per line per redraw)")
    p.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    if args.watch is None:
        status = read_status(args.run)
        print(json.dumps(status.to_json(), indent=2) if args.json else render(status))
        return 0
    redraw = sys.stdout.isatty() and not args.json
    first = True
    try:
        while True:
            status = read_status(args.run)
            if args.json:
                text = json.dumps(status.to_json(), separators=(",", ":"))
            else:
                text = render(status)
                if not status.finished:
                    text += f"\n(every {args.watch:g} s; Ctrl-C stops)"
                if redraw:
                    text = "\x1b[H\x1b[2J" + text
                elif not first:
                    text = "\n" + text
            print(text, flush=True)
            if status.finished:
                return 0
            first = False
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0


# ---- rendering

HEAD = ("method", "env", "seed", "state", "steps", "steps/s", "ETA", "where", "energy", "note")
LEFT = {"method", "env", "state", "where", "note"}


def render(status: SweepStatus) -> str:
    """The table (aligned as the results table of `spikerl-bench run`) and the summary lines."""
    when = dt.datetime.fromtimestamp(status.checked_at).strftime("%Y-%m-%d %H:%M:%S")
    rows = [_cells(r) for r in status.runs]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEAD)]

    def line(cells) -> str:  # noqa: ANN001
        return "  " + "  ".join(c.ljust(w) if h in LEFT else c.rjust(w)
                                for h, c, w in zip(HEAD, cells, widths, strict=True)).rstrip()

    out = [f"status of {status.run_dir} at {when}:", line(HEAD), *(line(r) for r in rows)]
    out.append(summary_line(status))
    if status.count(STALLED):
        out.append(f"stalled runs do not finish by themselves: spikerl-bench run --resume {status.run_dir}")
    return "\n".join(out)


def summary_line(status: SweepStatus) -> str:
    counts = ", ".join(f"{n} {state}" for state, n in status.counts.items())
    running = status.count(Status.RUNNING.value)
    pending = status.count(Status.PENDING.value)
    if status.finished:
        eta = "sweep finished" if not status.count(STALLED) else "nothing is running"
    elif not running:
        eta = f"no sweep ETA: nothing is running ({pending} pending wait for a launcher or a free slot)"
    elif status.remaining_steps is None:
        eta = "no sweep ETA: a running run's progress cannot be read"
    elif status.eta_s is None:
        eta = "no sweep ETA yet: no running run has two progress rows"
    else:
        eta = (f"sweep ETA {_fmt_duration(status.eta_s)} ({status.remaining_steps:,} steps left at "
               f"{status.throughput_sps:,.1f} steps/s over {running} running run{'s' if running > 1 else ''})")
    return f"{counts}; {eta}"


def _cells(r: RunStatus) -> list[str]:
    unknown_progress = r.steps is None
    steps = f"{'?' if unknown_progress else f'{r.steps:,}'}/{r.total_steps:,}" if r.total_steps else "?"
    if r.state == Status.PENDING.value:
        steps = f"0/{r.total_steps:,}" if r.total_steps else "—"
    running = r.state == Status.RUNNING.value
    sps = f"{r.sps:,.1f}" if r.sps is not None else ("?" if running and unknown_progress else "—")
    eta = _fmt_duration(r.eta_s) if r.eta_s is not None else ("?" if running and unknown_progress else "—")
    if r.energy_j is not None:
        marks = [m for m, on in (("est.", r.energy_estimated), ("attr.", r.energy_attributed),
                                 (f"1/{r.seed_batch}", r.seed_batch > 1)) if on]
        energy = _fmt_energy(r.energy_j) + (f" {' '.join(marks)}" if marks else "")
    else:
        energy = "?" if unknown_progress and r.state != Status.PENDING.value else "—"
    return [r.method, r.env, str(r.seed), r.state, steps, sps, eta, where(r), energy, "; ".join(r.notes)]


def where(r: RunStatus) -> str:
    """host, device (GPUs or pinned CPUs) and SLURM job: 'node3 cuda:0,1 job 1234_5', 'vm cpu 0-3'."""
    p = r.placement
    device = r.device or ""
    if p is None:
        return device
    if device == "cuda" and p.cuda_visible_devices:
        device = f"cuda:{p.cuda_visible_devices}"
    elif p.cpus:
        device = f"{device or 'cpu'} {_ranges(p.cpus)}"
    parts = [p.host, device] + ([f"job {p.job_id}"] if p.job_id else [])
    return " ".join(x for x in parts if x)


def _ranges(cpus: tuple[int, ...]) -> str:
    """(0, 1, 2, 3, 8) -> '0-3,8'"""
    out: list[str] = []
    values = sorted(set(cpus))
    start = prev = values[0]
    for c in values[1:] + [None]:
        if c is not None and c == prev + 1:
            prev = c
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if c is not None:
            start = prev = c
    return ",".join(out)
