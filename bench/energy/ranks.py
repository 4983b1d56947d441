"""Every rank's GPUs, each counted once.

Each rank meters the GPUs it trains on (or the `gpu_ids` it is given) and keeps, per GPU, an
account keyed by the GPU's identity: its NVML UUID, else `<host>:<device key>` (NVML indices are
unique within a host). At the end of a run every rank's accounts are gathered and de-duplicated
by identity, the first rank holding one keeping it: 8 ranks that each see all 8 GPUs and meter
them count each once; 8 ranks that each see one count all 8; two ranks sharing one GPU count it
once. Accounts of one identity from successive segments of a resumed run add up.
"""
from __future__ import annotations

import socket
from typing import Iterable, Mapping

GPU_ACCOUNT_KEYS = ("train_j", "eval_j", "other_j", "metered_s", "window_s", "idle_j", "check_counter_j",
                    "check_power_j")
"""Summed over segments. 'idle_w' (the latest segment's idle power) is carried beside them."""
GpuAccounts = dict[str, dict[str, float]]
"""identity -> {train_j, eval_j, other_j, metered_s, window_s, idle_j, idle_w, check_counter_j, check_power_j}."""


def gpu_identity(device: str, uuids: Mapping[str, str], host: str | None = None) -> str:
    return uuids.get(device) or f"{host or socket.gethostname()}:{device}"


def gpu_accounts(phase_j: Mapping[str, Mapping[str, float]], coverage: Mapping[str, tuple[float, float]],
                 uuids: Mapping[str, str], host: str | None = None, *, idle_w: Mapping[str, float] | None = None,
                 idle_j: Mapping[str, float] | None = None,
                 checks: Mapping[str, tuple[float, float]] | None = None) -> GpuAccounts:
    """This rank's per-GPU accounts from per-device energy per phase ({'train': {dev: J}, ...}),
    per-device (metered s, window s), idle power and energy, and counter checks (counter J,
    integrated power J)."""
    idle_w, idle_j, checks = idle_w or {}, idle_j or {}, checks or {}
    devices = {d for by_dev in phase_j.values() for d in by_dev} | set(coverage)
    out: GpuAccounts = {}
    for dev in sorted(d for d in devices if d.startswith("gpu")):
        metered_s, window_s = coverage.get(dev, (0.0, 0.0))
        out[gpu_identity(dev, uuids, host)] = {
            "train_j": float(phase_j.get("train", {}).get(dev, 0.0)),
            "eval_j": float(phase_j.get("eval", {}).get(dev, 0.0)),
            "other_j": float(phase_j.get("other", {}).get(dev, 0.0)),
            "metered_s": float(metered_s), "window_s": float(window_s),
            "idle_j": float(idle_j.get(dev, 0.0)), "idle_w": float(idle_w.get(dev, 0.0)),
            "check_counter_j": float(checks.get(dev, (0.0, 0.0))[0]),
            "check_power_j": float(checks.get(dev, (0.0, 0.0))[1])}
    return out


def add_segments(a: GpuAccounts, b: GpuAccounts) -> GpuAccounts:
    """Two successive segments of one rank (a resume): the same GPU's figures add."""
    out = {k: dict(v) for k, v in a.items()}
    for ident, acc in b.items():
        cur = out.setdefault(ident, {k: 0.0 for k in GPU_ACCOUNT_KEYS})
        for k in GPU_ACCOUNT_KEYS:
            cur[k] = cur.get(k, 0.0) + float(acc.get(k, 0.0))
        if acc.get("idle_w"):
            cur["idle_w"] = float(acc["idle_w"])
    return out


def dedup_ranks(per_rank: Iterable[GpuAccounts]) -> GpuAccounts:
    """Every rank's accounts (in rank order), each GPU once: the first rank holding it keeps it."""
    out: GpuAccounts = {}
    for accounts in per_rank:
        for ident, acc in (accounts or {}).items():
            out.setdefault(ident, dict(acc))
    return out


def gpu_sums(accounts: GpuAccounts) -> dict[str, float]:
    """Each account key summed over the GPUs (idle_w included: the GPUs' idle power together)."""
    return {k: float(sum(a.get(k, 0.0) for a in accounts.values())) for k in (*GPU_ACCOUNT_KEYS, "idle_w")}
