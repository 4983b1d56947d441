#!/usr/bin/env bash
# Every GPU check of the suite in one prepared script, one table (tools/gpu_check.py), <= 8 minutes on
# one H100 with no network:
#   capture ok/fallback per method x fp32/bf16 and graphed vs eager max |d| after 250 updates;
#   a whole K = 2 seed-batch run graphed vs eager (max |d| after 250 updates, eval returns equal);
#   update ms, action ms, loop env steps/s at K = 1, 4, 16 (popsan, spikerl) on the seed batch's path
#   (a single seed on CUDA is a batch of 1); env stepping serial vs Sync/AsyncVectorEnv at K = 16;
#   NVML energy per seed of a 4-seed batch against the counter; a 2-rank Gloo run on the one GPU;
#   the --nproc 2 NCCL refusal on one GPU.
#
# Usage: bash tools/gpu_check_all.sh OUT_DIR [--device cpu]
#   --device cpu: the dry mode, which runs every part that can run without a GPU (capture through the
#   eager stand-in, tiny nets; speed at K = 1, 2; Gloo on the CPU; the refusal with a faked GPU count).
#
# On the device machine the image's CUDA torch is used; the packages it lacks travel as wheels in
# .whl/ (see /work/.library/device/README.md; tools/gpu_wheels.txt names them) and are installed into
# /tmp/site first. The whole check is killed at 470 s; each row is printed as its part finishes.
set -uo pipefail
out="${1:?usage: gpu_check_all.sh OUT_DIR [--device cpu]}"
device=cuda
[ "${2:-}" = "--device" ] && device="${3:-cuda}"
mkdir -p "$out"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" || { echo "wheel install failed"; exit 1; }
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ "$device" = cuda ]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  timeout 470 python3 -m tools.gpu_check --out "$out" --device cuda --updates 250 --ks 1,4,16 \
    --speed-methods popsan,spikerl --loop-steps 1000 --run-steps 1500 2>&1 | grep -v '^\[' | tee "$out/table.txt"
else
  timeout 900 python3 -m tools.gpu_check --out "$out" --device cpu --tiny --updates 6 --ks 1,2 \
    --speed-methods popsan --loop-steps 300 --run-steps 600 2>&1 | grep -v '^\[' | tee "$out/table.txt"
fi
