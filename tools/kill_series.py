"""The kill series: a run killed with SIGKILL at random moments and resumed each time must end
bit-exactly like an uninterrupted one, with a continuous power trace.

    python -m tools.kill_series --out /tmp/kills --method popsan --total-steps 3000 --kills 16

Trains an uninterrupted reference, then the same run killed `--kills` times (a fifth of the kills
at a moment of an attempt's start-up, the others at a moment of its training drawn uniformly
from its expected remaining time, the whole process group killed, as a scheduler would) and resumed
with `--resume --restart-seed` each time, to the end. Prints one JSON object: kills landed, steps at
each kill, seeds restarted, whether param_sha256 and the final return match, and the power trace's
continuity (time and energy never step back, segments in order, the largest gap between rows inside
a segment, unmetered_s).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

SEED = Path("{method}") / "HalfCheetah-v4" / "seed0"


def run_args(method: str, total_steps: int, checkpoint_every: int) -> list[str]:
    return ["run", "--methods", method, "--envs", "HalfCheetah-v4", "--seeds", "0", "--total-steps",
            str(total_steps), "--plain", "--set", "start_steps=500", "--set", "update_after=500",
            "--set", "eval_every=1000", "--set", "eval_episodes=1", "--set", f"checkpoint_every={checkpoint_every}",
            "--set", "log_every=100", "--set", "max_ep_len=250"]


def last_step(progress: Path) -> int:
    try:
        with open(progress, newline="") as f:
            rows = list(csv.DictReader(f))
        return int(rows[-1]["step"]) if rows else 0
    except (OSError, KeyError, ValueError, IndexError):
        return 0


def start(argv: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench.cli", *argv], stdout=subprocess.DEVNULL,
                            stderr=open(log, "a"), start_new_session=True)


def trace_report(path: Path) -> dict:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out: dict = {"rows": len(rows), "first_t_s": float(rows[0]["t_s"]) if rows else None}
    t_back = e_back = seg_back = 0
    max_gap: dict[str, float] = {}
    last: dict[str, tuple[float, float, int]] = {}
    segments = set()
    for r in rows:
        t, e, dev = float(r["t_s"]), float(r["energy_j"]), r["device"]
        seg = int(r["segment"]) if r.get("segment") not in (None, "") else -1
        segments.add(seg)
        if dev in last:
            lt, le, ls = last[dev]
            t_back += t < lt
            e_back += e < le - 1e-6
            seg_back += seg < ls
            if seg == ls:
                max_gap[dev] = max(max_gap.get(dev, 0.0), t - lt)
        last[dev] = (t, e, seg)
    out.update(t_steps_back=t_back, energy_steps_back=e_back, segment_steps_back=seg_back,
               segments=len(segments), max_gap_in_segment_s=max(max_gap.values()) if max_gap else None)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--method", default="popsan")
    ap.add_argument("--total-steps", type=int, default=3000)
    ap.add_argument("--checkpoint-every", type=int, default=200)
    ap.add_argument("--kills", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0, help="of the kill moments")
    ap.add_argument("--reference", type=Path, help="an uninterrupted run folder of the same arguments to reuse")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    a.out.mkdir(parents=True, exist_ok=False)
    argv = run_args(a.method, a.total_steps, a.checkpoint_every)
    log = a.out / "stderr.log"
    t0 = time.monotonic()
    if a.reference is not None:  # an uninterrupted run of the same arguments, made before
        shutil.copytree(a.reference, a.out / "full")
        full_s = float(json.loads((a.out / "full" / str(SEED).format(method=a.method) / "result.json")
                                  .read_text())["wall_s"]) + 15.0
    else:
        full = start([*argv, "--out", str(a.out / "full")], log)
        if full.wait() != 0:
            print(json.dumps({"error": "the reference run failed; see " + str(log)}))
            return 1
        full_s = time.monotonic() - t0
    cut = a.out / "cut"
    seed = cut / str(SEED).format(method=a.method)
    kills, resumes, fresh_starts, refusals = [], 0, 0, []
    proc = start([*argv, "--out", str(cut)], log)
    while len(kills) < a.kills:
        if rng.random() < 0.2:  # a moment of its start-up (imports, checks, the folder's set-up)
            delay = rng.uniform(0.0, 5.0)
        else:  # a moment of its training: from its first new progress row on
            begun = last_step(seed / "progress.csv")
            waited = time.monotonic()
            while proc.poll() is None and last_step(seed / "progress.csv") <= begun \
                    and time.monotonic() - waited < 120:
                time.sleep(0.05)
            left = full_s * (1 - last_step(seed / "progress.csv") / a.total_steps)
            delay = rng.uniform(0.0, 2 * max(left, 1.0) / (a.kills - len(kills) + 1))
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kills.append(last_step(seed / "progress.csv"))
        else:
            if proc.returncode == 0:
                break  # finished before this kill: the series ends with fewer kills
            refusals.append(proc.returncode)  # a resume that did not run: said in stderr.log
            if len(refusals) > 5:
                break
        if not (cut / "plan.json").exists():  # killed before its folder was made: start it again
            shutil.rmtree(cut, ignore_errors=True)
            proc = start([*argv, "--out", str(cut)], log)
            fresh_starts += 1
            continue
        proc = start(["run", "--resume", str(cut), "--plain", "--restart-seed"], log)
        resumes += 1
    code = proc.wait()
    if code != 0:  # the last attempt was killed or refused: one more resume to the end
        code = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--resume", str(cut), "--plain",
                               "--restart-seed"], stdout=subprocess.DEVNULL, stderr=open(log, "a")).returncode
    restarts = len(list(seed.parent.glob("seed0.lost-*")))
    ref = json.loads((a.out / "full" / str(SEED).format(method=a.method) / "result.json").read_text())
    got = json.loads((seed / "result.json").read_text()) if (seed / "result.json").exists() else {}
    print(json.dumps({
        "method": a.method, "total_steps": a.total_steps, "checkpoint_every": a.checkpoint_every,
        "reference_s": round(full_s, 1), "kills": len(kills), "steps_at_kills": kills, "resumes": resumes,
        "fresh_starts": fresh_starts, "seeds_restarted": restarts, "attempts_that_exited_non_zero": refusals,
        "final_exit_code": code, "status": got.get("status"),
        "param_sha256_equal": got.get("param_sha256_by_rank") == ref.get("param_sha256_by_rank"),
        "final_return_equal": got.get("final_return_mean") == ref.get("final_return_mean"),
        "unmetered_s": got.get("unmetered_s"), "log_rows_dropped": got.get("log_rows_dropped"),
        "stale_tmp_files": sorted(p.name for p in cut.rglob(".*.tmp")),
        "trace_reference": trace_report(a.out / "full" / str(SEED).format(method=a.method) / "power.csv"),
        "trace_killed": trace_report(seed / "power.csv"),
    }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
