"""The one small interface every energy source implements, and the measurement it feeds.

Device keys are strings that start with ``gpu`` (NVML, ``gpu0``), ``cpu`` (RAPL
``cpu-package-0``, the estimate ``cpu``) or ``ram`` (RAPL ``ram-dram-0``), so a measurement
can split energy by component without knowing which vendor produced it.
"""
from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Mapping

Clock = Callable[[], float]

SOURCE_LABELS = ("nvml-counter", "nvml-sampled", "amdsmi-counter", "amdsmi-power", "rapl", "estimate")
COMPONENTS = ("gpu", "cpu", "ram")


def component_of(device: str) -> str | None:
    """'gpu', 'cpu' or 'ram' for a device key (see the module docstring), None if foreign."""
    return next((c for c in COMPONENTS if device.startswith(c)), None)


class EnergySourceError(RuntimeError):
    """A vendor call failed. Vendor exceptions are translated into this in one place per module."""


class NotSupportedError(EnergySourceError):
    """The device does not support this query (e.g. an energy counter before Volta)."""


class EnergySource(ABC):
    """One vendor's view of some devices.

    ``read_energy_j`` is cumulative per device since the source was opened. Sources
    without a hardware counter integrate their own power samples (see `PowerIntegrator`),
    so the meter treats every source the same way.
    """

    name: str = "source"
    source: str = "estimate"
    """One of SOURCE_LABELS: where the energy figures come from."""
    estimated: bool = False
    model: str = ""
    """For an estimate, the model behind its figures (shown next to them); '' for a meter."""
    counter: bool = False
    """True for a hardware energy counter: after a failed read recovers, the energy over the gap
    is still counted, so the gap's time counts as metered (coverage)."""
    devices: list[str]
    uuids: dict[str, str] = {}
    """Per device key, a stable identity (an NVML UUID) so ranks can count a shared device once."""

    @abstractmethod
    def read_energy_j(self) -> dict[str, float]:
        """Cumulative energy per device key, in joules. Raises EnergySourceError."""

    @abstractmethod
    def read_power_w(self) -> dict[str, float]:
        """Most recent power per device key, in watts (for the trace). Raises EnergySourceError."""

    def close(self) -> None:  # noqa: B027 - optional for subclasses: most sources hold nothing to release
        return None


class NullSource(EnergySource):
    """Hardware that is missing: zero devices, and the reason it is missing."""

    name = "null"
    source = "none"

    def __init__(self, reason: str = ""):
        self.devices = []
        self.unavailable_reason = reason

    def read_energy_j(self) -> dict[str, float]:
        return {}

    def read_power_w(self) -> dict[str, float]:
        return {}


class PowerIntegrator:
    """Cumulative energy from power samples, thread-safe.

    ``trapezoid`` suits instantaneous samples (NVML power); ``hold`` suits a power that
    already averages the interval ending at the sample (load-based estimate).
    """

    def __init__(self, devices: list[str], *, mode: str = "trapezoid", clock: Clock = time.monotonic):
        if mode not in ("trapezoid", "hold"):
            raise ValueError(f"mode must be 'trapezoid' or 'hold', got {mode!r}")
        self.mode = mode
        self._clock = clock
        self._lock = threading.Lock()
        self._energy_j = {d: 0.0 for d in devices}
        self._last_t_s: float | None = None
        self._last_power_w: dict[str, float] = {}

    def add(self, power_w: Mapping[str, float]) -> dict[str, float]:
        """Record a sample taken now; returns the cumulative energy per device."""
        with self._lock:
            t_s = self._clock()
            if self._last_t_s is not None:
                dt_s = max(0.0, t_s - self._last_t_s)
                for dev, p_w in power_w.items():
                    prev_w = self._last_power_w.get(dev, p_w)
                    mean_w = 0.5 * (prev_w + p_w) if self.mode == "trapezoid" else p_w
                    self._energy_j[dev] = self._energy_j.get(dev, 0.0) + mean_w * dt_s
            self._last_t_s = t_s
            self._last_power_w = dict(power_w)
            return dict(self._energy_j)

    def restart(self) -> None:
        """Forget the last sample: after a failed read the next sample starts a new span rather than
        interpolating over the gap (energy there is unmetered, and coverage says so)."""
        with self._lock:
            self._last_t_s = None
            self._last_power_w = {}

    @property
    def last_power_w(self) -> dict[str, float]:
        with self._lock:
            return dict(self._last_power_w)

    def snapshot(self) -> tuple[float | None, dict[str, float]]:
        """(time of the last sample, cumulative energy then)."""
        with self._lock:
            return self._last_t_s, dict(self._energy_j)


class TraceAverage:
    """Average power between successive trace reads, from cumulative energy.

    Window boundaries read energy at arbitrary moments; averaging between trace reads
    instead of between energy reads keeps the power trace from spiking on tiny intervals.
    """

    def __init__(self) -> None:
        self._mark: tuple[float, dict[str, float]] | None = None

    def update(self, t_s: float | None, energy_j: Mapping[str, float]) -> dict[str, float]:
        if t_s is None:
            return {}
        if self._mark is None:
            self._mark = (t_s, dict(energy_j))
            return {}
        t0_s, e0_j = self._mark
        dt_s = t_s - t0_s
        if dt_s <= 0:
            return {}
        self._mark = (t_s, dict(energy_j))
        return {d: (e - e0_j.get(d, 0.0)) / dt_s for d, e in energy_j.items()}


@dataclass(frozen=True)
class Gap:
    """A span in which a source could not be read (t_s on the power.csv clock)."""

    source: str
    start_s: float
    end_s: float
    error: str
    recovered: bool
    """True if reads resumed (a counter's energy over the gap is still counted)."""
    devices: tuple[str, ...] = ()
    counted: bool = False
    """The energy over the gap was still counted (a counter that recovered): metered time."""
    last_ok_s: float | None = None
    """The last successful read before the gap: a source without a counter lost its energy from here."""

    @property
    def unmetered_s(self) -> float:
        if self.counted:
            return 0.0
        start_s = self.start_s if self.last_ok_s is None else min(self.start_s, self.last_ok_s)
        return max(0.0, self.end_s - start_s)


@dataclass(frozen=True)
class Measurement:
    """What one window measured."""

    duration_s: float
    energy_j_by_device: dict[str, float] = field(default_factory=dict)
    source: str = "none"
    """Source labels joined with '+', e.g. 'nvml-counter+rapl'."""
    estimated: bool = False

    @property
    def total_energy_j(self) -> float:
        return float(sum(self.energy_j_by_device.values()))

    @property
    def gpu_energy_j(self) -> float:
        return float(sum(e for d, e in self.energy_j_by_device.items() if d.startswith("gpu")))

    @property
    def cpu_energy_j(self) -> float:
        return float(sum(e for d, e in self.energy_j_by_device.items() if d.startswith("cpu")))

    @property
    def ram_energy_j(self) -> float:
        return float(sum(e for d, e in self.energy_j_by_device.items() if d.startswith("ram")))

    @property
    def avg_power_w(self) -> float:
        return self.total_energy_j / self.duration_s if self.duration_s > 0 else 0.0
