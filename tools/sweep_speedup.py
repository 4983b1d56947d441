"""The same sweep executed one run at a time and through the local launcher, side by side.

    python -m tools.sweep_speedup [--jobs 2] [--methods popsan] [--seeds 0-3] [--total-steps 3000]
                                  [--out DIR] [-- EXTRA RUN FLAGS]

Runs `spikerl-bench run` on the same plan: the reference (inline, --jobs 1: every run alone on
the machine, in one process) and `--launcher local --jobs N` (N runs at once, each a submitit job
pinned to its own cores); with --local-jobs1 also `--launcher local --jobs 1` (one job at a
time: the same launcher, so its process start per run is in both). Prints the wall time of each sweep and the
speedup, each run's param_sha256 in both
(parallel execution must not change what is trained), and each run's energy account: the
reference's measured energy against the parallel run's attributed energy, with the share.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch


def _sweep(out: Path, argv: list[str]) -> float:
    cmd = [sys.executable, "-m", "bench.cli", "run", "--out", str(out), "--plain", *argv]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall_s = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall_s


def _rows(run: Path) -> dict[tuple[str, str, str], dict]:
    rows = {}
    for r in csv.DictReader((run / "summary.csv").open()):
        result = json.loads((run / r["method"] / r["env"] / f"seed{r['seed']}" / "result.json").read_text())
        rows[(r["method"], r["env"], r["seed"])] = {**r, "sha": ",".join(result["param_sha256_by_rank"])}
    return rows


def _f(x: str) -> float:
    return float(x) if x not in ("", None) else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--methods", default="popsan")
    p.add_argument("--envs", default="HalfCheetah-v4")
    p.add_argument("--seeds", default="0-3")
    p.add_argument("--total-steps", default="3000")
    p.add_argument("--profile", default="smoke")
    p.add_argument("--out", type=Path, default=Path("runs") / time.strftime("sweep-speedup-%Y%m%dT%H%M%S"))
    p.add_argument("--local-jobs1", action="store_true", help="also time --launcher local --jobs 1")
    p.add_argument("extra", nargs="*", help="more `spikerl-bench run` flags (after --)")
    a = p.parse_args(argv)
    plan = ["--profile", a.profile, "--methods", a.methods, "--envs", a.envs, "--seeds", a.seeds,
            "--total-steps", a.total_steps, *a.extra]
    print(f"machine: {os.cpu_count()} CPU(s) ({len(os.sched_getaffinity(0))} usable), torch {torch.__version__}, "
          f"torch threads per run 1 (the default), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print(f"sweep: {' '.join(plan)}")
    seq_s = _sweep(a.out / "jobs1", plan)
    local1_s = _sweep(a.out / "local-jobs1", [*plan, "--launcher", "local", "--jobs", "1"]) if a.local_jobs1 else None
    par_s = _sweep(a.out / f"jobs{a.jobs}", [*plan, "--launcher", "local", "--jobs", str(a.jobs)])
    seq, par = _rows(a.out / "jobs1"), _rows(a.out / f"jobs{a.jobs}")
    print(f"\nwall time: inline (--jobs 1) {seq_s:,.1f} s, --launcher local --jobs {a.jobs} {par_s:,.1f} s: "
          f"{par_s / seq_s:.2f}x the time, speedup {seq_s / par_s:.2f}x")
    if local1_s is not None:
        same1 = all(r["sha"] == seq[k]["sha"] for k, r in _rows(a.out / "local-jobs1").items())
        print(f"           --launcher local --jobs 1 {local1_s:,.1f} s: --jobs {a.jobs} takes {par_s / local1_s:.2f}x "
              f"its time, speedup {local1_s / par_s:.2f}x (its parameters identical too: {same1})")
    walls = {name: [_f(r["wall_s"]) for r in rows.values()] for name, rows in (("inline", seq), ("parallel", par))}
    print("per-run training wall s: " + "; ".join(f"{n} " + ", ".join(f"{w:.1f}" for w in ws)
                                                  for n, ws in walls.items()))
    print(f"\n{'run':<28} {'same params':>11} {'E jobs1 J':>10} {'E jobs' + str(a.jobs) + ' J':>10} "
          f"{'share':>6} {'fgn CPU':>7}  sources (jobs {a.jobs})")
    same = True
    for key in seq:
        s, q = seq[key], par.get(key)
        if q is None:
            print(f"{'/'.join(key):<28} missing in the parallel sweep")
            same = False
            continue
        same &= s["sha"] == q["sha"]
        print(f"{'/'.join(key):<28} {str(s['sha'] == q['sha']):>11} {_f(s['energy_j']):>10.1f} "
              f"{_f(q['energy_j']):>10.1f} {_f(q['attributed_share']):>6.2f} {_f(q['foreign_cpu_share']):>7.1%}  "
              f"cpu {q['cpu_source']}, ram {q['ram_source']}")
    tot_seq = sum(_f(r["energy_j"]) for r in seq.values())
    tot_par = sum(_f(r["energy_j"]) for r in par.values())
    print(f"\nsweep energy: --jobs 1 {tot_seq:,.1f} J, --jobs {a.jobs} {tot_par:,.1f} J (attributed, summed over runs)")
    print(f"every run's parameters identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
