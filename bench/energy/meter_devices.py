"""What a meter's sources know of their devices besides energy: the GPUs' processes, state, UUIDs
and counter checks, the CPUs a CPU source covers, and static power from an idle baseline, and how much of
the meter's life each device was metered (coverage). A mixin
of PowerMeter (bench.energy.meter), reading its sources under its lock."""
from __future__ import annotations

import threading
from typing import Any, Mapping

from bench.energy.base import Clock, EnergySource, Gap, component_of
from bench.energy.errors import ErrorLog


class DeviceQueries:
    _sources: list[EnergySource]
    _lock: threading.RLock
    errors: ErrorLog
    gaps: list[Gap]
    _clock: Clock
    _t0: float
    _stopped: bool
    _stop_t: float | None
    _component_devices: dict[str, set[str]]
    _state: dict[int, Any]

    def _t_s(self, t: float) -> float:
        raise NotImplementedError

    def _ok_s(self, st: Any) -> float | None:
        raise NotImplementedError

    def gpu_process_ids(self) -> set[int]:
        """PIDs of the compute processes on the metered GPUs (empty without NVML)."""
        with self._lock:
            sources = [s for s in self._sources if hasattr(s, "process_ids")]
        return set().union(*(s.process_ids() for s in sources)) if sources else set()

    def gpu_state(self) -> dict[str, dict[str, float | None]]:
        """Per GPU (UUID where known): temperature, SM clock and power limit now (NVML sources)."""
        with self._lock:
            sources = [s for s in self._sources if hasattr(s, "state")]
        out: dict[str, dict[str, float | None]] = {}
        for src in sources:
            try:
                for dev, st in src.state().items():
                    out[src.uuids.get(dev, dev)] = st
            except Exception as exc:  # context only: never a reason to fail
                self.errors.add(f"GPU state: {type(exc).__name__}: {exc}")
        return out

    def counter_checks(self) -> dict[str, tuple[float, float]]:
        """Per GPU device with an energy counter: (counter J, integrated power J) over the same reads."""
        with self._lock:
            sources = [s for s in self._sources if hasattr(s, "counter_check")]
        out: dict[str, tuple[float, float]] = {}
        for src in sources:
            out.update(src.counter_check())
        return out

    def set_static_power_w(self, by_device: Mapping[str, float]) -> None:
        """Give metered CPU and RAM sources (RAPL) their idle power as static power, from an idle
        baseline; models (the estimates) keep their own."""
        with self._lock:
            for src in self._sources:
                if src.estimated or not any(component_of(d) in ("cpu", "ram") for d in src.devices):
                    continue
                src.static_w = float(sum(by_device.get(d, 0.0) for d in src.devices))  # type: ignore[attr-defined]

    def cpu_scope(self) -> list[int] | None:
        """The CPUs the current CPU energy source covers (RAPL: its packages' CPUs; the estimate:
        its allocation), over which contention is measured; None when unknown."""
        with self._lock:
            for src in self._sources:
                cpus = getattr(src, "cpus", None)
                if any(component_of(d) == "cpu" for d in src.devices) and cpus:
                    return list(cpus)
        return None

    def device_uuids(self) -> dict[str, str]:
        """Per GPU device key, its UUID where the source knows it (ranks de-duplicate by it)."""
        with self._lock:
            return {d: u for s in self._sources for d, u in s.uuids.items()}

    def device_coverage(self) -> dict[str, tuple[float, float]]:
        """Per device present at construction, (metered s, window s) since the meter started. A gap
        is unmetered unless a counter recovered from it (its energy over the gap was counted)."""
        with self._lock:
            end_t = self._stop_t if self._stopped and self._stop_t is not None else self._clock()
            life_s = max(0.0, end_t - self._t0)
            gaps = list(self.gaps)
            for src in self._sources:  # gaps still open now
                st = self._state[id(src)]
                if st.gap_start_t is not None and not self._stopped:
                    gaps.append(Gap(src.source, self._t_s(st.gap_start_t), self._t_s(end_t), st.gap_error,
                                    False, tuple(src.devices), False, self._ok_s(st)))
            out: dict[str, tuple[float, float]] = {}
            for dev in sorted(set().union(*self._component_devices.values())):
                lost_s = sum(g.unmetered_s for g in gaps if dev in g.devices)
                out[dev] = (max(0.0, life_s - lost_s), life_s)
            return out

    def coverage(self) -> dict[str, tuple[float, float]]:
        """Per metered component, (metered, window) device-seconds summed over its devices at
        construction: one of eight GPUs missing half the run reads 15/16. A CPU source replaced by
        the estimate is unmetered from its first failure to the replacement."""
        out: dict[str, tuple[float, float]] = {}
        for dev, (metered_s, window_s) in self.device_coverage().items():
            comp = str(component_of(dev))
            m0, w0 = out.get(comp, (0.0, 0.0))
            out[comp] = (m0 + metered_s, w0 + window_s)
        return out
