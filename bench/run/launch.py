"""`spikerl-bench run --nproc N`: start N local ranks of the same command, like torchrun.

Each rank runs `python -m bench.cli run --resume RUN_DIR` with the torchrun environment
variables set (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); the run folder and
plan were written beforehand, so a fresh start and a resume are the same command. If any rank
exits non-zero the others are stopped and the job exits non-zero; the last complete set of
checkpoints lets `--resume` finish it.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_local(run_dir: Path, nproc: int, plain: bool, grace_s: float = 10.0,
                 methods: Sequence[str] | None = None, runs: Sequence[tuple[str, str, int]] | None = None) -> int:
    """Start `nproc` ranks on the plan's runs (only those of `methods`, or `runs`, if given); their
    exit code."""
    port = free_port()
    procs: list[subprocess.Popen] = []
    for rank in range(nproc):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(nproc), "LOCAL_RANK": str(rank),
               "LOCAL_WORLD_SIZE": str(nproc), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "SPIKERL_BENCH_LAUNCHER": "spikerl-bench"}
        cmd = [sys.executable, "-m", "bench.cli", "run", "--resume", str(run_dir)] + (["--plain"] if plain else []) \
            + (["--only-methods", ",".join(methods)] if methods is not None else []) \
            + (["--only-runs", ",".join(f"{m}:{e}:{s}" for m, e, s in runs)] if runs is not None else [])
        procs.append(subprocess.Popen(cmd, env=env))
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                rank, code = failed[0]
                print(f"spikerl-bench: rank {rank} exited with code {code}; stopping the other ranks "
                      f"(finish with: spikerl-bench run --resume {run_dir})", file=sys.stderr)
                _stop(procs, grace_s)
                return code if code > 0 else 1
            if all(c == 0 for c in codes):
                return 0
            time.sleep(0.2)
    except KeyboardInterrupt:
        _stop(procs, grace_s)
        return 130


def _stop(procs: list[subprocess.Popen], grace_s: float) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.time() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()  # a rank blocked inside a collective never sees SIGTERM
            p.wait()
