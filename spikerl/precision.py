"""Precision policy: fp32, or bf16 autocast over forward passes with fp32 master weights.

bf16 has fp32's exponent range, so no loss scaling is needed; float16 is never used.
Parameters and optimiser state stay fp32 because autocast casts only inside the forward; actors
bring bf16 matmul outputs back to fp32 with `state_precision` before any state or squashing.
"""
from __future__ import annotations

import contextlib
from typing import ContextManager

import torch


def autocast(precision: str, device: torch.device) -> ContextManager:
    """The precision's autocast on `device`. On CUDA its weight cache is off: a CUDA graph captured
    inside an outer autocast would otherwise replay the bf16 copies of the weights made at capture
    time, stale after the first optimiser step (the cache only saves a cast per weight per region)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=device.type != "cuda")
    raise ValueError(f"unknown precision {precision!r} (expected 'fp32' or 'bf16')")


def state_precision(i: torch.Tensor) -> torch.Tensor:
    """Casts a matmul output from autocast's bf16/fp16 to fp32 for the recurrence (fp64 stays fp64)."""
    return i.float() if i.dtype in (torch.bfloat16, torch.float16) else i


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 matmuls run in hardware here. On CPUs without AVX512-BF16 or AMX, PyTorch
    emulates them (measured ~85x slower than fp32 for a 500x256x256 matmul on an AVX2 EPYC)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool({"avx512_bf16", "amx_bf16"} & flags)
    except OSError:
        pass
    return False


def resolve_precision(requested: str, device: torch.device, explicit: bool) -> tuple[str, str]:
    """(precision to use, why). A recipe's bf16 falls back to fp32 where bf16 is only emulated;
    a user's explicit --precision bf16 is always honoured."""
    if requested == "bf16" and not explicit and not native_bf16(device):
        return "fp32", f"recipe asks bf16 but {device.type} has no native bf16 (emulated bf16 is ~85x slower): fp32"
    return requested, "explicit --precision" if explicit else "method recipe"
