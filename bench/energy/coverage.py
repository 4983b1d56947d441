"""How much of a run its meters covered, and what kind of figure each component is.

    <component>_coverage = metered device-seconds / window device-seconds

over every segment of the run (a resumed run adds each segment's window and what its meters
covered; the time between segments, `unmetered_s`, is the resume account's). A gap in a
hardware counter's reads that ended in recovery is metered: the counter counted through it. A
run whose measured component covers less than PARTIAL_BELOW of its window is partial.
"""
from __future__ import annotations

from typing import Any, Mapping

from bench.energy.ranks import GpuAccounts, gpu_sums

PARTIAL_BELOW = 0.99
VERDICTS = ("measured", "partly estimated", "estimated")


def add_coverage(a: Mapping[str, list[float]], b: Mapping[str, list[float]]) -> dict[str, list[float]]:
    out = {c: [float(v[0]), float(v[1])] for c, v in a.items()}
    for c, (metered_s, window_s) in b.items():
        cur = out.setdefault(c, [0.0, 0.0])
        cur[0] += float(metered_s)
        cur[1] += float(window_s)
    return out


def ratio(metered_s: float, window_s: float) -> float | None:
    return min(1.0, max(0.0, metered_s / window_s)) if window_s > 0 else None


def coverage_fields(components: list[str], coverage_s: Mapping[str, list[float]],
                    gpus: GpuAccounts) -> dict[str, Any]:
    """gpu_coverage, cpu_coverage, ram_coverage (empty where not metered) and gpu_devices_metered."""
    out: dict[str, Any] = {}
    gpu = gpu_sums(gpus)
    for c in ("gpu", "cpu", "ram"):
        metered_s, window_s = (gpu["metered_s"], gpu["window_s"]) if c == "gpu" else coverage_s.get(c, (0.0, 0.0))
        out[f"{c}_coverage"] = ratio(metered_s, window_s) if c in components else None
    out["gpu_devices_metered"] = len(gpus) if "gpu" in components else None
    return out


def verdict(estimated: Mapping[str, bool | None]) -> str | None:
    """'measured' when every metered component is, 'estimated' when every one is estimated, else
    'partly estimated'; None when nothing is metered."""
    flags = [bool(v) for v in estimated.values() if v is not None]
    if not flags:
        return None
    return "estimated" if all(flags) else "partly estimated" if any(flags) else "measured"


def is_partial(fields: Mapping[str, Any]) -> list[str]:
    """The measured components of a result row covering < PARTIAL_BELOW of their window."""
    out = []
    for c in ("gpu", "cpu", "ram"):
        cov = fields.get(f"{c}_coverage")
        if isinstance(cov, (int, float)) and not isinstance(cov, bool) and cov < PARTIAL_BELOW \
                and fields.get(f"{c}_estimated") is not True:
            out.append(c)
    return out
