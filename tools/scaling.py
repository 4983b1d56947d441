"""Scaling and precision benchmark, everything side by side in one invocation.

1. The same global env-step budget at 1 and at N ranks (Gloo on CPU, NCCL on GPU), through the real
   `spikerl-bench run --nproc` path: wall time, env steps/s, speedup and scaling efficiency
   (speedup / N). Each rank gets `--threads` torch threads.
2. TD3 update time at batch 100 in fp32 and in bf16 for every method, in this process.

    python -m tools.scaling --methods spikerl,popsan --steps 6000 --nproc 2
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.perf import update_and_action_ms


def run_once(method: str, env_id: str, steps: int, nproc: int, threads: int, device: str, out: Path) -> dict:
    cmd = [sys.executable, "-m", "bench.cli", "run", "--methods", method, "--envs", env_id, "--total-steps",
           str(steps), "--nproc", str(nproc), "--threads", str(threads), "--device", device, "--out", str(out),
           "--plain", "--set", "eval_every=1000000000", "--set", "eval_episodes=1", "--set", "checkpoint_every=0",
           "--set", f"start_steps={min(1000, steps // 4)}", "--set", f"update_after={min(1000, steps // 4)}"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    result = json.loads((out / method / env_id / "seed0" / "result.json").read_text())
    return {"wall_s": result["wall_s"], "process_s": elapsed, "sps": steps / result["wall_s"],
            "sha_equal": len(set(result.get("param_sha256_by_rank", []))) == 1}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default="spikerl,popsan,dsrl,mlp")
    p.add_argument("--env", default="HalfCheetah-v4")
    p.add_argument("--steps", type=int, default=6_000, help="global env-step budget of each scaling run")
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--skip-scaling", action="store_true")
    p.add_argument("--skip-precision", action="store_true")
    args = p.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    torch.set_num_threads(args.threads)
    print(f"spikerl-bench scaling: env={args.env} device={args.device} threads/rank={args.threads} "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')} cpus={os.cpu_count()} torch={torch.__version__}",
          flush=True)
    if not args.skip_scaling:
        print(f"\n== same global budget ({args.steps} env steps, 1 update/step) at 1 and {args.nproc} ranks")
        print(f"{'method':8s} {'1 rank s':>9s} {'1 rank sps':>11s} {args.nproc:>2d} ranks s {'sps':>8s} "
              f"{'speedup':>8s} {'efficiency':>10s} {'in sync':>8s}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            for m in methods:
                one = run_once(m, args.env, args.steps, 1, args.threads, args.device, Path(tmp) / f"{m}-1")
                many = run_once(m, args.env, args.steps, args.nproc, args.threads, args.device,
                                Path(tmp) / f"{m}-{args.nproc}")
                speedup = one["wall_s"] / many["wall_s"]
                print(f"{m:8s} {one['wall_s']:9.1f} {one['sps']:11.1f} {many['wall_s']:10.1f} {many['sps']:8.1f} "
                      f"{speedup:8.2f} {speedup / args.nproc:10.2f} {str(many['sha_equal']):>8s}", flush=True)
    if not args.skip_precision:
        print("\n== TD3 update at batch 100, fp32 vs bf16 (same process)")
        print(f"{'method':8s} {'fp32 ms':>8s} {'bf16 ms':>8s} {'bf16/fp32':>9s}", flush=True)
        for m in methods:
            fp32, _ = update_and_action_ms(m, args.env, "fp32", repeats=30)
            bf16, _ = update_and_action_ms(m, args.env, "bf16", repeats=5)  # emulated bf16 is slow on AVX2
            print(f"{m:8s} {fp32:8.2f} {bf16:8.2f} {bf16 / fp32:9.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
