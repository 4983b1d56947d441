"""A run's account as result.json / summary.csv fields (bench.schema.ENERGY_COLUMNS + METER_COLUMNS)."""
from __future__ import annotations

from typing import Any, Callable

from bench.energy.base import COMPONENTS
from bench.energy.meter_fields import meter_fields
from bench.energy.totals import EnergyTotals, attribute, share

J_PER_KWH = 3.6e6


def result_fields(raw: EnergyTotals | None, *, wall_s: float | None, country: str, intensity: float | None,
                  concurrent_runs: int, allocated_share: Callable[[], float],
                  gpu_state: dict[str, Any]) -> dict[str, Any]:
    """`raw`: the run's account with the machine's CPU and RAM energy whole (None: nothing metered)."""
    cur = (attribute(raw) if raw is not None else None) or \
        EnergyTotals(codecarbon_emissions_kg=None, codecarbon_energy_kwh=None)
    energy_j = cur.energy_j if cur.components else None
    emissions_kg = energy_j / J_PER_KWH * intensity / 1000.0 if energy_j is not None and intensity else None
    cc_kwh = cur.codecarbon_energy_kwh
    out: dict[str, Any] = {
        "energy_j": energy_j,
        "energy_source": "+".join(dict.fromkeys([*(s for src in cur.sources for s in src.split("+")),
                                                 *(["attributed"] if cur.attributed else [])])) or "none",
        "estimated": bool(cur.estimated),
        "avg_power_w": energy_j / wall_s if energy_j is not None and wall_s and wall_s > 0 else None,
    }
    for c in COMPONENTS:
        metered = c in cur.components
        out[f"{c}_energy_j"] = getattr(cur, f"{c}_energy_j") if metered else None
        out[f"{c}_source"] = cur.component_sources.get(c) if metered else None
        out[f"{c}_estimated"] = bool(cur.component_estimated.get(c)) if metered else None
    out.update({
        "cpu_power_model": cur.models.get("cpu"),
        "ram_power_model": cur.models.get("ram"),
        "train_energy_j": cur.train_energy_j,
        "eval_energy_j": cur.eval_energy_j,
        "country": country,
        "carbon_intensity_g_per_kwh": intensity,
        "emissions_kg": emissions_kg,
        "codecarbon_energy_kwh": cc_kwh,
        "codecarbon_emissions_kg": cur.codecarbon_emissions_kg,
        "codecarbon_energy_ratio": cc_kwh * J_PER_KWH / energy_j if cc_kwh is not None and energy_j else None,
        "foreign_cpu_share": cur.foreign_cpu_s / cur.observed_cpu_s if cur.observed_cpu_s > 0 else None,
        "foreign_gpu_processes": cur.foreign_gpu_processes if "gpu" in cur.components else None,
        "concurrent_runs": max(cur.concurrent_runs, concurrent_runs),
        "attributed_share": share(raw) if raw is not None else None,
        "emissions_error": None if emissions_kg is not None or energy_j is None
        else f"no carbon intensity for {country} (CodeCarbon's data unavailable)",
        "codecarbon_error": "; ".join(cur.emissions_errors) or None,
        "meter_errors": "; ".join(cur.meter_errors) or None,
    })
    meter = meter_fields(cur, out, allocated_share() if cur.attributed else 1.0)
    out["meter_errors"] = "; ".join([*cur.meter_errors, *meter.pop("_problems")]) or None
    out.update(meter)
    if gpu_state.get("start") or gpu_state.get("end"):
        out["gpu_state"] = dict(gpu_state)  # result.json only: per GPU, at start and end
    return out
