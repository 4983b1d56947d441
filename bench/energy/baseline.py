"""The idle baseline: a short window before training in which the run does nothing, so that each
component's energy can be given both gross and dynamic (idle-subtracted):

    <component>_dynamic_energy_j = <component>_energy_j - <component>_idle_power_w x metered time

The idle power is measured on the same meters, per device, over `idle_window_s` (10 s by
default where the run asks for one; 0 skips it). For runs side by side (attributed), the CPU and
RAM idle power is the machine's, and the run's part of it is its allocated share. The baseline
is as good as the machine was idle: other users' work during it raises it (foreign_cpu_share
says how busy the machine was)."""
from __future__ import annotations

import time
from typing import Callable, Mapping

from bench.energy.base import component_of

DEFAULT_IDLE_WINDOW_S = 10.0


def measure_idle_power_w(meter, idle_window_s: float,  # noqa: ANN001 - a PowerMeter
                         sleep: Callable[[float], None] = time.sleep) -> dict[str, float]:
    """Per device, its mean power over an idle window of `idle_window_s` on `meter`."""
    meter.begin_window("idle")
    sleep(idle_window_s)
    m = meter.end_window("idle")
    if m.duration_s <= 0:
        return {}
    return {d: e / m.duration_s for d, e in m.energy_j_by_device.items()}


def by_component(by_device: Mapping[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for d, v in by_device.items():
        c = component_of(d)
        if c is not None:
            out[c] = out.get(c, 0.0) + v
    return out


def dynamic_j(gross_j: float | None, idle_j: float | None) -> float | None:
    if gross_j is None or idle_j is None:
        return None
    return gross_j - idle_j


def counter_power_ratio(checks: Mapping[str, tuple[float, float]]) -> float | None:
    """The worst GPU's NVML counter energy / integrated power energy (farthest from 1)."""
    ratios = [c / p for c, p in checks.values() if p > 0]
    return max(ratios, key=lambda r: abs(r - 1.0)) if ratios else None


COUNTER_CHECK_TOLERANCE = 0.05
"""Beyond this the counter and the integrated power disagree enough to say so (Zeus: within 1 %)."""
