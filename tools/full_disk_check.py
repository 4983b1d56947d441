"""A run on a really full disk (issue 26, item 6): a small tmpfs fills mid-run; the run must stop
with one line naming the file, keep its previous checkpoint and every whole row, and after the
tmpfs is grown ("space freed") `--resume` must finish bit-exactly like a run on a roomy disk.

    python -m tools.full_disk_check --work /tmp/fulldisk     # needs root: it mounts a tmpfs

Prints one JSON object: the tmpfs size, the failing command's exit code and error line, whether
the checkpoint loaded after the failure, broken rows found (none expected), and whether
param_sha256 and the final return equal the reference's.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

ARGS = ["run", "--methods", "mlp", "--total-steps", "2000", "--plain", "--profile", "smoke",
        "--set", "start_steps=200", "--set", "update_after=200", "--set", "eval_every=500",
        "--set", "eval_episodes=1", "--set", "checkpoint_every=250", "--set", "log_every=100",
        "--set", "max_ep_len=200", "--set", "critic_hidden=32,32", "--set", "actor.hidden=32,32"]
SEED = Path("mlp") / "HalfCheetah-v4" / "seed0"


def cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.cli", *argv], capture_output=True, text=True, timeout=900)


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def broken_rows(seed: Path) -> list[str]:
    bad = []
    for name in ("progress.csv", "evals.csv", "power.csv"):
        try:
            text = (seed / name).read_text()
        except OSError:
            continue
        lines = text.split("\n")
        width = len(lines[0].split(","))
        bad += [f"{name}:{i + 2}" for i, ln in enumerate(lines[1:-1]) if len(next(csv.reader([ln]))) != width]
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--fill", type=float, default=0.6, help="tmpfs size as a share of the reference folder's")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=False)
    ref = cli(*ARGS, "--out", str(a.work / "reference"))
    assert ref.returncode == 0, ref.stderr
    need = folder_bytes(a.work / "reference")
    size_kib = max(64, int(need * a.fill / 1024))
    mnt = a.work / "tmpfs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(mnt)], check=True)
    try:
        run = mnt / "run"
        full = cli(*ARGS, "--out", str(run))
        errors = [ln for ln in full.stderr.splitlines() if ln.startswith("spikerl-bench: error:")]
        import torch

        try:
            step = torch.load(run / SEED / "checkpoint.pt", weights_only=True)["loop"]["t"]
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            step = f"unreadable: {type(exc).__name__}"
        broken = broken_rows(run / SEED)
        subprocess.run(["mount", "-o", f"remount,size={4 * need // 1024 + 1024}k", str(mnt)], check=True)
        resumed = cli("run", "--resume", str(run), "--plain")
        a_res = json.loads((a.work / "reference" / SEED / "result.json").read_text())
        b_res = json.loads((run / SEED / "result.json").read_text()) if (run / SEED / "result.json").exists() else {}
        print(json.dumps({
            "reference_folder_bytes": need, "tmpfs_kib": size_kib, "full_exit_code": full.returncode,
            "error_lines": errors, "traceback": "Traceback" in full.stderr, "checkpoint_step_after_failure": step,
            "broken_rows": broken, "resume_exit_code": resumed.returncode, "status": b_res.get("status"),
            "param_sha256_equal": b_res.get("param_sha256_by_rank") == a_res.get("param_sha256_by_rank"),
            "final_return_equal": b_res.get("final_return_mean") == a_res.get("final_return_mean"),
            "log_rows_dropped": b_res.get("log_rows_dropped"), "unmetered_s": b_res.get("unmetered_s"),
            "tmp_files_left": sorted(str(p.relative_to(run)) for p in run.rglob(".*.tmp")),
        }, indent=1))
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
