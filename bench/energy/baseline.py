"""The idle baseline: a short window before training in which the run does nothing, so that each
component's energy can be given both gross and dynamic (idle-subtracted):

    <component>_dynamic_energy_j = <component>_energy_j - <component>_idle_power_w x metered time

The idle power is measured on the same meters, per device, over `idle_window_s` (10 s by
default where the run asks for one; 0 skips it). For runs side by side (attributed), the CPU and
RAM idle power is the machine's, and the run's part of it is its allocated share. The baseline
is as good as the machine was idle: other users' work during it raises it (foreign_cpu_share
says how busy the machine was)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from bench.energy.base import component_of

DEFAULT_IDLE_WINDOW_S = 10.0


@dataclass(frozen=True)
class SweepIdle:
    """An idle baseline measured once for runs that train side by side: on `host`, before any of
    them started (bench.run.idle). A run on another host never uses it."""

    host: str
    idle_window_s: float
    power_w: dict[str, float] = field(default_factory=dict)
    """Per device key (gpu<NVML index>, cpu-package-<n>, ram-dram-<n>, cpu, ram-estimate): its idle power."""
    measured_utc: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "idle_window_s": self.idle_window_s, "power_w": dict(self.power_w),
                "measured_utc": self.measured_utc}

    @classmethod
    def from_json(cls, d: Any) -> "SweepIdle | None":
        """None for anything malformed: a run without a sweep baseline says so, it never fails."""
        if not isinstance(d, dict) or not isinstance(d.get("host"), str) or not isinstance(d.get("power_w"), dict):
            return None
        window_s, power = d.get("idle_window_s"), d["power_w"]
        if not isinstance(window_s, (int, float)) or isinstance(window_s, bool) \
                or not (math.isfinite(window_s) and window_s > 0):
            return None
        if not all(isinstance(k, str) and type(v) in (int, float) and math.isfinite(v) for k, v in power.items()):
            return None
        return cls(d["host"], float(window_s), {k: float(v) for k, v in power.items()},
                   str(d.get("measured_utc", "")))


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
