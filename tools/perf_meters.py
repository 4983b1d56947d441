"""How much do the meters slow training down? Goal: ≤ 1 % of wall time at the 0.1 s interval.

    python -m tools.perf_meters --method mlp --env HalfCheetah-v4 --steps 2000 --repeats 3

Runs the real training loop in ONE process, meters off and on interleaved (the order
alternates every repeat so that drift in machine load cancels), and compares steady-state
env steps/s and process CPU time per step (all threads, so the sampler's own CPU counts),
both measured between progress events after the update phase has begun. On a shared
machine wall-clock noise can far exceed 1 %, so it also measures the meter directly: CPU
time of the sampler thread per wall second, and the cost of one sampler tick.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import torch

from baselines.registry import get_method
from bench.energy import PowerMeter
from bench.energy.callback import EnergyCallback
from spikerl.callbacks import Callback, ProgressEvent, RunInfo
from spikerl.config import TD3Config
from spikerl.loop import train


class _SpsProbe(Callback):
    """Steady-state steps/s between the first and last progress event past `from_step`."""

    key = "perf_probe"

    def __init__(self, from_step: int, energy: EnergyCallback | None):
        self.from_step = from_step
        self.energy = energy
        self.marks: list[tuple[int, float, float]] = []  # (step, wall s, process CPU s)
        self._proc = psutil.Process()
        self.sampler_cpu_s: float | None = None
        self.sampler_wall_s: float | None = None
        self._t0 = 0.0

    def on_train_start(self, info: RunInfo) -> None:
        self._t0 = time.perf_counter()

    def on_progress(self, event: ProgressEvent) -> None:
        if event.step >= self.from_step:
            cpu = self._proc.cpu_times()
            self.marks.append((event.step, time.perf_counter(), cpu.user + cpu.system))
        meter = self.energy.meter if self.energy is not None else None
        if meter is not None:
            self.sampler_cpu_s = meter.sampler_cpu_s()
            self.sampler_wall_s = time.perf_counter() - self._t0

    def sps(self) -> float | None:
        if len(self.marks) < 2:
            return None
        (s0, t0, _), (s1, t1, _) = self.marks[0], self.marks[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 else None

    def cpu_ms_per_step(self) -> float | None:
        if len(self.marks) < 2:
            return None
        (s0, _, c0), (s1, _, c1) = self.marks[0], self.marks[-1]
        return 1000.0 * (c1 - c0) / (s1 - s0) if s1 > s0 else None


class _TimedStart(EnergyCallback):
    """EnergyCallback that also records what its start-up (meter, TDP lookup, CodeCarbon) cost."""

    start_s = 0.0

    def on_train_start(self, info: RunInfo) -> None:
        t = time.perf_counter()
        super().on_train_start(info)
        self.start_s = time.perf_counter() - t


def _trial(args: argparse.Namespace, metered: bool, run_dir: Path) -> dict[str, Any]:
    spec = get_method(args.method)
    cfg = TD3Config(**spec.td3_params(args.env)).replace(
        total_steps=args.steps, start_steps=args.warmup_steps, update_after=args.warmup_steps,
        eval_every=10 * args.steps, eval_episodes=1, max_ep_len=args.max_ep_len, checkpoint_every=0)
    # Updates come in bursts every update_every steps: marks on that grid hold whole bursts.
    cfg = cfg.replace(log_every=cfg.update_every)
    first_mark = (args.warmup_steps // cfg.update_every + 1) * cfg.update_every
    energy = _TimedStart(interval_s=args.interval, codecarbon=args.codecarbon) if metered else None
    probe = _SpsProbe(from_step=first_mark, energy=energy)
    callbacks: list[Callback] = [probe] + ([energy] if energy is not None else [])
    t = time.perf_counter()
    train(spec, args.env, args.seed, cfg, run_dir=run_dir, callbacks=callbacks)
    out: dict[str, Any] = {"metered": metered, "sps": probe.sps(), "cpu_ms_per_step": probe.cpu_ms_per_step(),
                           "wall_s": time.perf_counter() - t}
    if energy is not None:
        out["start_s"] = energy.start_s
        if probe.sampler_cpu_s is not None and probe.sampler_wall_s:
            out["sampler_cpu_pct"] = 100.0 * probe.sampler_cpu_s / probe.sampler_wall_s
        fields = energy.result_fields()
        out["energy_j"], out["energy_source"] = fields["energy_j"], fields["energy_source"]
    return out


def _tick_cost_us(n: int = 500) -> float:
    """Wall time of one sampler tick (poll every source, queue the power rows) on this machine."""
    with tempfile.TemporaryDirectory() as tmp:
        meter = PowerMeter.create(interval_s=None, csv_path=Path(tmp) / "power.csv")
        meter.sample()
        t = time.perf_counter()
        for _ in range(n):
            meter.sample()
        cost = (time.perf_counter() - t) / n
        meter.stop()
    return cost * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="mlp", help="method to train (mlp has the cheapest steps: worst case)")
    p.add_argument("--env", default="HalfCheetah-v4")
    p.add_argument("--steps", type=int, default=2000, help="env steps per trial")
    p.add_argument("--warmup-steps", type=int, default=200, help="random steps before updates start")
    p.add_argument("--max-ep-len", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3, help="off/on pairs")
    p.add_argument("--interval", type=float, default=0.1, help="power sampling interval, s")
    p.add_argument("--no-codecarbon", dest="codecarbon", action="store_false",
                   help="meter without the CodeCarbon tracker")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = p.parse_args(argv)

    header = {
        "torch_threads": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
        "method": args.method, "env": args.env, "steps": args.steps, "interval_s": args.interval,
        "codecarbon": args.codecarbon, "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    print(" ".join(f"{k}={v}" for k, v in header.items()), file=sys.stderr)
    trials: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        _trial(args, False, Path(tmp) / "warmup")  # first-run costs (imports, MuJoCo, allocator)
        for r in range(args.repeats):
            order = (False, True) if r % 2 == 0 else (True, False)
            for metered in order:
                res = _trial(args, metered, Path(tmp) / f"r{r}-{'on' if metered else 'off'}")
                res["repeat"] = r
                trials.append(res)
                print(json.dumps(res), file=sys.stderr)
    pairs, cpu_pairs = [], []
    for r in range(args.repeats):
        off = next(t for t in trials if t["repeat"] == r and not t["metered"])
        on = next(t for t in trials if t["repeat"] == r and t["metered"])
        if off["sps"] and on["sps"]:
            pairs.append(100.0 * (off["sps"] - on["sps"]) / off["sps"])
        if off["cpu_ms_per_step"] and on["cpu_ms_per_step"]:
            cpu_pairs.append(100.0 * (on["cpu_ms_per_step"] - off["cpu_ms_per_step"]) / off["cpu_ms_per_step"])
    on_trials = [t for t in trials if t["metered"]]
    cpu = [t["sampler_cpu_pct"] for t in on_trials if "sampler_cpu_pct" in t]
    tick_us = _tick_cost_us()
    summary = {
        **header,
        "sps_off_mean": statistics.mean(t["sps"] for t in trials if not t["metered"] and t["sps"]),
        "sps_on_mean": statistics.mean(t["sps"] for t in on_trials if t["sps"]),
        "overhead_pct_per_pair": pairs,
        "overhead_pct_mean": statistics.mean(pairs) if pairs else None,
        "overhead_pct_stdev": statistics.stdev(pairs) if len(pairs) > 1 else None,
        "cpu_overhead_pct_per_pair": cpu_pairs,
        "cpu_overhead_pct_mean": statistics.mean(cpu_pairs) if cpu_pairs else None,
        "cpu_overhead_pct_stdev": statistics.stdev(cpu_pairs) if len(cpu_pairs) > 1 else None,
        "sampler_cpu_pct_of_one_core": statistics.mean(cpu) if cpu else None,
        "tick_us": tick_us,
        "tick_pct_at_interval": 100.0 * tick_us * 1e-6 / args.interval,
        "start_s_mean": statistics.mean(t["start_s"] for t in on_trials),
        "energy_source": on_trials[0].get("energy_source") if on_trials else None,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        for k, v in summary.items():
            print(f"{k:30s} {v}")
        for label, mean, sd in (("wall-clock A/B", summary["overhead_pct_mean"], summary["overhead_pct_stdev"]),
                                ("CPU-time A/B", summary["cpu_overhead_pct_mean"],
                                 summary["cpu_overhead_pct_stdev"])):
            if mean is None or sd is None or sd > 1.0:
                print(f"{label}: too noisy to resolve 1 % here (mean {mean}, stdev {sd})")
            else:
                print(f"{label}: {mean:.2f} % ± {sd:.2f} -> goal ≤ 1 % {'met' if mean <= 1.0 else 'NOT met'}")
        direct = summary["tick_pct_at_interval"]
        print(f"direct: one tick {summary['tick_us']:.0f} us = {direct:.3f} % of each {args.interval} s interval; "
              f"sampler thread {summary['sampler_cpu_pct_of_one_core']} % of one core -> goal ≤ 1 % "
              f"{'met' if direct <= 1.0 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
