"""Copy a run folder with its time and energy scaled: a known, synthetic regression for testing
`spikerl-bench compare` (`.ci/run` and tests/test_compare.py use it).

    python -m tools.doctor_run RUN SLOW --time 1.3 --energy 1.3

`--time F` stretches every wall_s (progress.csv, evals.csv, result.json, summary.csv) by F, so
env steps/s fall to 1/F; `--energy F` scales every energy and emissions figure by F, so energy per
env step grows by F. Average power becomes energy/time. The copy says what was done to it in
plan.json ("doctored").
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import sys
from pathlib import Path

from bench import schema

ENERGY_KEYS = ("energy_j", "gpu_energy_j", "cpu_energy_j", "ram_energy_j", "train_energy_j", "eval_energy_j",
               "other_energy_j", "emissions_kg", "codecarbon_energy_kwh", "codecarbon_emissions_kg",
               "energy_to_target_j")
TIME_KEYS = ("wall_s", "time_to_target_s", "train_wall_s", "eval_wall_s", "other_wall_s")


def _scale(row: dict, time_f: float, energy_f: float) -> dict:
    out = dict(row)
    for keys, f in ((TIME_KEYS, time_f), (ENERGY_KEYS, energy_f)):
        for k in keys:
            try:
                out[k] = float(out[k]) * f
            except (KeyError, TypeError, ValueError):
                pass
    for k, f in (("avg_power_w", energy_f / time_f), ("sps", 1 / time_f)):
        try:
            out[k] = float(out[k]) * f
        except (KeyError, TypeError, ValueError):
            pass
    return out


def _csv(path: Path, time_f: float, energy_f: float) -> None:
    if not path.is_file():
        return
    reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")))
    rows = [_scale(r, time_f, energy_f) for r in reader]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=reader.fieldnames or [], lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")


def doctor(src: Path, dst: Path, time_f: float = 1.0, energy_f: float = 1.0) -> Path:
    shutil.copytree(src, dst)
    for seed_dir in dst.glob(f"*/*/{schema.SEED_DIR_PREFIX}*"):
        _csv(seed_dir / schema.PROGRESS, time_f, energy_f)
        _csv(seed_dir / schema.EVALS, time_f, energy_f)
        result = seed_dir / schema.RESULT
        if result.is_file():
            result.write_text(json.dumps(_scale(json.loads(result.read_text()), time_f, energy_f), indent=2))
    _csv(dst / schema.SUMMARY, time_f, energy_f)
    plan = json.loads((dst / schema.PLAN).read_text())
    plan["doctored"] = {"from": str(src), "time_factor": time_f, "energy_factor": energy_f}
    (dst / schema.PLAN).write_text(json.dumps(plan, indent=2))
    return dst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--time", type=float, default=1.0, help="factor on every wall time")
    p.add_argument("--energy", type=float, default=1.0, help="factor on every energy figure")
    a = p.parse_args(argv)
    if a.dst.exists():
        p.error(f"{a.dst} exists")
    doctor(a.src, a.dst, a.time, a.energy)
    print(f"{a.dst}: wall time x{a.time}, energy x{a.energy}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
