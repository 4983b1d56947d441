"""SpikeRL (Tahmid, Gates, Luszczek, Schuman; ICONS 2024/2025): PopSAN's model, trained SpikeRL's way.

The model is PopSAN's, unchanged (baselines/popsan.py, DESIGN §3.2). What defines SpikeRL is its
recipe, and each part of it is one override below:
- deterministic encoding on every env (PopSAN switches to Poisson on Hopper and Walker2d);
- bfloat16 mixed precision: real bf16, not the public code's fp16 (where bf16 is only emulated,
  `spikerl.precision.resolve_precision` falls back to fp32 unless the user asks for bf16);
- data-parallel training over all local GPUs by default, with real gradient averaging (the
  public code bypasses DistributedDataParallel, so its ranks never average).
"""
from __future__ import annotations

from baselines.popsan import POPSAN
from spikerl.method import WorldSize

SPIKERL = POPSAN.with_recipe(
    name="spikerl",
    summary="SpikeRL (Tahmid et al., ICONS 2024/2025): PopSAN actor with deterministic encoding, "
            "trained data-parallel on all local GPUs in bf16; TD3 lr 1e-4/1e-3, critics 256-256",
    actor={"encoding": "deterministic"},
    td3={"precision": "bf16"},
    world_size=WorldSize.LOCAL_GPUS,
)
