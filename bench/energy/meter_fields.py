"""result.json's meter columns (bench.schema.METER_FIELDS) from a run's account: coverage, the
idle baseline and dynamic energy, the NVML counter check, the verdict, the unattributed part."""
from __future__ import annotations

from typing import Any, Mapping

from bench.energy.baseline import COUNTER_CHECK_TOLERANCE, counter_power_ratio, dynamic_j
from bench.energy.coverage import coverage_fields, verdict
from bench.energy.ranks import gpu_sums
from bench.schema import METER_COLUMNS


def meter_fields(totals: Any, energy: Mapping[str, Any], allocated_share: float = 1.0) -> dict[str, Any]:
    """`totals`: an EnergyTotals (after attribution); `energy`: its ENERGY_FIELDS. Returns the
    METER_COLUMNS in order, plus '_problems' (lines for meter_errors)."""
    comps = totals.components
    gpu = gpu_sums(totals.gpus)
    idle = totals.idle_window_s > 0
    out: dict[str, Any] = dict(coverage_fields(comps, totals.coverage_s, totals.gpus))
    out["idle_window_s"] = totals.idle_window_s if idle else None
    out["idle_baseline"] = totals.idle_baseline or None if idle else None
    idle_w = {"gpu": gpu["idle_w"], **totals.idle_power_w}
    # runs side by side share the machine's CPU and RAM idle power by allocated CPUs, as they are charged
    idle_j = {"gpu": gpu["idle_j"], **{c: j * allocated_share for c, j in totals.idle_j.items()}}
    # a GPU without an idle figure (a sweep's baseline that lacked it: noted then) has no baseline, not
    # 0 W, so the GPUs' idle power and dynamic energy stay empty rather than count its gross as dynamic
    known = {"gpu": all(a.get("idle_w", 0.0) > 0 for a in totals.gpus.values()), "cpu": True, "ram": True}
    for c in ("gpu", "cpu", "ram"):
        out[f"{c}_idle_power_w"] = idle_w.get(c) if idle and c in comps and known[c] else None
    for c in ("gpu", "cpu", "ram"):
        out[f"{c}_dynamic_energy_j"] = (dynamic_j(energy.get(f"{c}_energy_j"), idle_j.get(c))
                                        if idle and c in comps and known[c] else None)
    checks = {k: (a["check_counter_j"], a["check_power_j"]) for k, a in totals.gpus.items()
              if a.get("check_power_j", 0.0) > 0}
    ratio = counter_power_ratio(checks)
    out["gpu_counter_power_ratio"] = ratio
    problems = []
    if ratio is not None and abs(ratio - 1.0) > COUNTER_CHECK_TOLERANCE:
        problems.append(f"GPU energy counter and integrated power disagree: counter / power = {ratio:.3f} "
                        f"(beyond {COUNTER_CHECK_TOLERANCE:.0%})")
    out["meter_verdict"] = verdict({c: energy.get(f"{c}_estimated") for c in ("gpu", "cpu", "ram")})
    out["unattributed_j"] = totals.unattributed_j if totals.attributed else None
    assert tuple(out) == METER_COLUMNS, (tuple(out), METER_COLUMNS)
    out["_problems"] = problems
    return out
