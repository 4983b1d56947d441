#!/usr/bin/env bash
# Every GPU check of the suite in one script (about 4 minutes on one H100/H200):
#   1. energy: NVML counter vs integrated sampled power vs CodeCarbon on a ~30 s load;
#   2. distributed: NCCL world size 1 + bf16 autocast on CUDA, 2 Gloo ranks sharing the GPU, update ms;
#   3. meters in a real run: `spikerl-bench run --device cuda` records NVML energy in result.json.
# Usage: bash tools/gpu_check_all.sh OUT_DIR   (each part is independent; a failing part is reported)
set -uo pipefail
out="${1:?usage: gpu_check_all.sh OUT_DIR}"
mkdir -p "$out"
echo "== 1. energy counters" | tee "$out/energy.txt"
timeout 150 python3 -m tools.gpu_check_energy --seconds 30 2>&1 | tee -a "$out/energy.txt" || echo "energy check failed: $?"
echo "== 2. distributed + bf16" | tee "$out/distributed.txt"
STEPS=4000 timeout 240 bash tools/gpu_check_distributed.sh "$out/dist" 2>&1 | grep -v '^\[' | tee -a "$out/distributed.txt" \
  || echo "distributed check failed: $?"
echo "== 3. meters in a real CUDA run" | tee "$out/meter.txt"
timeout 150 python3 -m bench.cli run --methods spikerl,popsan --total-steps 3000 --device cuda --profile smoke \
  --set eval_every=1500 --out "$out/run" --plain 2>&1 | grep -v '^\[' | tee -a "$out/meter.txt" || echo "meter run failed: $?"
python3 - "$out/run" <<'PY' 2>&1 | tee -a "$out/meter.txt"
import csv, sys
from pathlib import Path
rows = list(csv.DictReader(open(Path(sys.argv[1]) / "summary.csv")))
for r in rows:
    print({k: r.get(k) for k in ("method", "status", "precision", "wall_s", "energy_j", "energy_source", "estimated",
                                 "gpu_energy_j", "cpu_energy_j", "avg_power_w", "emissions_kg",
                                 "codecarbon_energy_kwh", "speedup", "powerup", "greenup", "gpsup_category")})
PY
