#!/usr/bin/env bash
# GPU check of the distributed issue, one prepared script (about 3-4 minutes on one H100):
#   1. SpikeRL with NCCL at world size 1 (torchrun) and bf16 autocast on CUDA;
#   2. the same budget with 2 Gloo ranks sharing the one GPU (spikerl-bench run --nproc 2);
#   3. fp32 vs bf16 TD3 update time on CUDA for every method.
# Prints env steps/s and whether the ranks stayed in sync. Usage: bash tools/gpu_check_distributed.sh [OUT_DIR]
set -euo pipefail
out="${1:-$(mktemp -d)}"
steps="${STEPS:-6000}"
common=(--methods spikerl --envs HalfCheetah-v4 --total-steps "$steps" --device cuda --precision bf16 --plain
        --set eval_every=3000 --set eval_episodes=2 --set start_steps=1000 --set update_after=1000)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'bf16', torch.cuda.is_bf16_supported(), 'nccl', torch.distributed.is_nccl_available())"

echo "== 1. NCCL, world size 1, bf16 on CUDA"
python3 -m torch.distributed.run --standalone --nproc_per_node=1 -m bench.train "${common[@]}" --backend nccl --out "$out/nccl1"

echo "== 2. Gloo, 2 ranks sharing one GPU"
python3 -m bench.cli run "${common[@]}" --nproc 2 --backend gloo --out "$out/gloo2"

python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
for name in ("nccl1", "gloo2"):
    r = json.loads((Path(sys.argv[1]) / name / "spikerl/HalfCheetah-v4/seed0/result.json").read_text())
    sha = r.get("param_sha256_by_rank", [])
    print(f"{name}: backend={r['backend']} world={r['world_size']} precision={r['precision']} device={r['device']} "
          f"steps={r['steps']} wall_s={r['wall_s']:.1f} env_steps_per_s={r['steps'] / r['wall_s']:.1f} "
          f"final_return={r['final_return_mean']:.1f} ranks_in_sync={len(set(sha)) == 1}")
PY

echo "== 3. TD3 update ms at batch 100 on CUDA, fp32 vs bf16"
python3 - <<'PY'
import torch
from bench.perf import update_and_action_ms
import bench.perf as perf
for m in ("spikerl", "popsan", "dsrl", "mlp"):
    fp32, act32 = perf.update_and_action_ms(m, "HalfCheetah-v4", "fp32", repeats=50, device="cuda")
    bf16, act16 = perf.update_and_action_ms(m, "HalfCheetah-v4", "bf16", repeats=50, device="cuda")
    print(f"{m:8s} update fp32 {fp32:7.2f} ms  bf16 {bf16:7.2f} ms  action fp32 {act32:6.3f} ms  bf16 {act16:6.3f} ms")
PY
