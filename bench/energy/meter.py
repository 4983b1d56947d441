"""PowerMeter: named energy windows over GPU and CPU sources, and a background power trace.

    meter = PowerMeter.create(gpu_ids=[0], csv_path=run_dir / "power.csv")
    meter.begin_window("train")
    ...
    m = meter.end_window("train")   # Measurement(duration_s, energy_j_by_device, source, estimated)
    meter.stop()

The meter keeps its own cumulative energy per device, advanced by the difference of
successive source reads. That makes windows cheap (two polls), lets windows overlap, and
lets a source fail and recover (a counter's energy across the gap is still counted) or be
replaced by the estimate without disturbing windows already open. A failing source never
raises into training: its failure and the time gap are recorded in `errors` and `gaps`.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

from bench.energy.base import Clock, EnergySource, Gap, Measurement, component_of
from bench.energy.errors import ErrorLog
from bench.energy.meter_devices import DeviceQueries
from bench.energy.nvml import DeviceId
from bench.energy.power_csv import PowerCsv, PowerRow
from bench.energy.rapl import POWERCAP_ROOT
from bench.energy.sampler import run_sampler, thread_cpu_s
from bench.energy.sources import CPU_CHOICES, RAM_CHOICES, open_sources

__all__ = ["CPU_CHOICES", "RAM_CHOICES", "PowerMeter"]  # the choices lived here; importers keep working

log = logging.getLogger(__name__)

MAX_FALLBACKS = 3
"""Replacement estimates per meter: an estimate that itself keeps failing is not restarted forever."""
MAX_BACKOFF_S = 30.0
"""Longest wait between retries of a failing source: a GPU back after a driver hiccup is read again
within half a minute, and a dead one costs one failed call per 30 s."""


@dataclass
class _Window:
    start_t: float
    energy_j: dict[str, float]


@dataclass
class _SourceState:
    last_j: dict[str, float]
    failures: int = 0
    gap_start_t: float | None = None
    gap_error: str = ""
    next_try_t: float | None = None
    """While backing off: the clock time of the next retry."""
    last_ok_t: float | None = None


def _label(src: EnergySource) -> str:
    """A source named with its devices, so a log line says which GPU failed."""
    return f"{src.source} {','.join(src.devices)}" if src.devices else src.source


class PowerMeter(DeviceQueries):
    def __init__(self, sources: Sequence[EnergySource], *, interval_s: float | None = 0.1,
                 csv_path: str | os.PathLike[str] | None = None, t_offset_s: float = 0.0,
                 clock: Clock = time.monotonic,
                 fallback: Callable[[], EnergySource] | None = None, max_failures: int = 5,
                 flush_every_s: float = 5.0, sync_fn: Callable[[], None] | None = None,
                 notes: Sequence[str] = (), energy_offset_j: Mapping[str, float] | None = None):
        """`interval_s=None` runs no sampler thread (call `sample()` yourself).

        `fallback` builds the source that replaces a CPU source after `max_failures`
        consecutive failed reads; every other source is never dropped: after `max_failures` it is
        retried with exponential backoff (up to MAX_BACKOFF_S), so a GPU that comes back is metered
        again, and the time it was missing is unmetered in `coverage()`. `notes` are set-up problems (e.g. NVML
        missing) to report.
        `energy_offset_j` (per device, e.g. from before a resume) is added to power.csv's
        cumulative energy_j column only, so the trace continues across segments.
        """
        if interval_s is not None and interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.interval_s = interval_s
        self._clock = clock
        self._t0 = clock()
        self._t_offset_s = t_offset_s
        self._energy_offset_j = dict(energy_offset_j or {})
        self._fallback = fallback
        self._max_failures = max_failures
        self._flush_every_s = flush_every_s
        self._sync_fn = sync_fn
        self._lock = threading.RLock()
        self._flush_lock = threading.Lock()
        self._sources: list[EnergySource] = []
        self._state: dict[int, _SourceState] = {}
        self._energy_j: dict[str, float] = {}
        self._static_j: dict[str, float] = {}  # per component: static power x time (bench.energy.attribution)
        self._last_poll_t: float | None = None
        self._device_source: dict[str, tuple[str, bool]] = {}
        self._models: dict[str, list[str]] = {}
        self._windows: dict[str, _Window] = {}
        self.errors = ErrorLog(notes)
        self._fallbacks_used = 0
        self._component_devices: dict[str, set[str]] = {}  # at construction: coverage's denominator
        self._stop_t: float | None = None
        self.gaps: list[Gap] = []
        self._rows: list[PowerRow] = []
        self._csv = PowerCsv(csv_path, self.errors, t_offset_s) if csv_path is not None else None
        self._last_flush_t = self._t0
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._warned_short = False
        for src in sources:
            self._add_source(src)
        for src in self._sources:
            for dev in src.devices:
                if component_of(dev):
                    self._component_devices.setdefault(str(component_of(dev)), set()).add(dev)

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(cls, *, gpu_ids: Sequence[DeviceId] = (), cpu: str = "auto",
               rapl_root: str | os.PathLike[str] = POWERCAP_ROOT, interval_s: float | None = 0.1,
               csv_path: str | os.PathLike[str] | None = None, t_offset_s: float = 0.0,
               sync_fn: Callable[[], None] | None = None, clock: Clock = time.monotonic,
               tdp_w: float | None = None, energy_offset_j: Mapping[str, float] | None = None,
               ram: str = "none", ram_w: float | None = None,
               estimate_cpus: Sequence[int] | None = None) -> "PowerMeter":
        """A started meter over the sources bench.energy.sources.open_sources picks (its arguments
        say which); the CPU estimate stands in for a CPU source that keeps failing."""
        sources, notes, fallback = open_sources(gpu_ids=gpu_ids, cpu=cpu, rapl_root=rapl_root, clock=clock,
                                                tdp_w=tdp_w, ram=ram, ram_w=ram_w, estimate_cpus=estimate_cpus)
        meter = cls(sources, interval_s=interval_s, csv_path=csv_path, t_offset_s=t_offset_s,
                    clock=clock, fallback=fallback, sync_fn=sync_fn, notes=notes,
                    energy_offset_j=energy_offset_j)
        meter.start()
        return meter

    def _add_source(self, src: EnergySource) -> None:
        self._sources.append(src)
        try:
            first_j = src.read_energy_j()
        except Exception as exc:  # counted as its first failure, not a crash
            self._state[id(src)] = _SourceState(last_j={})
            self._on_failure(src, self._clock(), exc)
        else:
            self._state[id(src)] = _SourceState(last_j=dict(first_j), last_ok_t=self._clock())
        for dev in src.devices:
            self._energy_j.setdefault(dev, 0.0)
            self._device_source[dev] = (src.source, src.estimated)
            if src.model and component_of(dev):
                self._models.setdefault(str(component_of(dev)), []).append(src.model)

    # ------------------------------------------------------------------ reading
    def _t_s(self, t: float) -> float:
        return self._t_offset_s + (t - self._t0)

    def _read_t(self) -> float:
        """A fresh poll's time, or the stop time once the meter stopped (its energy is final)."""
        if self._stopped and self._stop_t is not None:
            return self._stop_t
        return self._poll()

    def _poll(self) -> float:
        """Advance cumulative energy from every source; returns the clock time."""
        t = self._clock()
        dt = max(0.0, t - self._last_poll_t) if self._last_poll_t is not None else 0.0
        self._last_poll_t = t
        for src in self._sources:
            static_w = getattr(src, "static_w", None)
            if static_w and dt > 0:
                comp = next((component_of(d) for d in src.devices if component_of(d)), None)
                if comp is not None:
                    self._static_j[comp] = self._static_j.get(comp, 0.0) + float(static_w) * dt
        for src in list(self._sources):
            st = self._state[id(src)]
            if st.next_try_t is not None:
                if t < st.next_try_t:
                    continue
                recover = getattr(src, "recover", None)
                try:
                    if recover is not None:
                        recover()
                except Exception as exc:
                    self._on_failure(src, t, exc)
                    continue
            try:
                now_j = src.read_energy_j()
            except Exception as exc:
                self._on_failure(src, t, exc)
                continue
            self._on_success(src, t)
            for dev, e_j in now_j.items():
                prev_j = st.last_j.get(dev)
                if prev_j is not None:
                    # A counter never runs backwards unless the driver reset it: count nothing then.
                    self._energy_j[dev] = self._energy_j.get(dev, 0.0) + max(0.0, e_j - prev_j)
                st.last_j[dev] = e_j
        return t

    def _on_failure(self, src: EnergySource, t: float, exc: BaseException) -> None:
        st = self._state[id(src)]
        st.failures += 1
        error = f"{type(exc).__name__}: {exc}"
        if st.gap_start_t is None:
            st.gap_start_t, st.gap_error = t, error
        # every failed read counts, with its first and last time (ErrorLog), under the device's name
        if self.errors.add(f"{_label(src)}: {error}", self._t_s(t)):
            log.warning("power source %s failed: %s", _label(src), error)
        if st.failures < self._max_failures:
            return
        if self._replaceable(src):
            self._drop(src, t)
            return
        backoff_s = min(MAX_BACKOFF_S, (self.interval_s or 0.1) * 2.0 ** (st.failures - self._max_failures + 1))
        st.next_try_t = t + backoff_s

    def _replaceable(self, src: EnergySource) -> bool:
        """Only the CPU has a stand-in (the estimate): other sources are retried, never dropped."""
        return (self._fallback is not None and any(component_of(d) == "cpu" for d in src.devices)
                and self._fallbacks_used < MAX_FALLBACKS)

    def _on_success(self, src: EnergySource, t: float) -> None:
        st = self._state[id(src)]
        if st.gap_start_t is not None:
            self.gaps.append(Gap(src.source, self._t_s(st.gap_start_t), self._t_s(t), st.gap_error, True,
                                 tuple(src.devices), bool(src.counter), self._ok_s(st)))
            if st.next_try_t is not None:
                self.errors.add(f"{_label(src)}: recovered", self._t_s(t))
            st.gap_start_t = None
        st.failures = 0
        st.next_try_t = None
        st.last_ok_t = t

    def _ok_s(self, st: _SourceState) -> float | None:
        return None if st.last_ok_t is None else self._t_s(st.last_ok_t)

    def _drop(self, src: EnergySource, t: float) -> None:
        st = self._state.pop(id(src))
        self._sources.remove(src)
        self.gaps.append(Gap(src.source, self._t_s(st.gap_start_t if st.gap_start_t is not None else t),
                             self._t_s(t), st.gap_error, False, tuple(src.devices), False, self._ok_s(st)))
        try:
            src.close()
        except Exception:
            pass
        msg = f"{_label(src)}: dropped after {st.failures} failed reads"
        is_cpu = any(d.startswith("cpu") for d in src.devices)
        has_other_cpu = any(d.startswith("cpu") for s in self._sources for d in s.devices)
        if is_cpu and not has_other_cpu and self._fallback is not None:
            self._fallbacks_used += 1
            try:
                self._add_source(self._fallback())
                msg += "; CPU energy from here on is estimated"
            except Exception as exc:
                msg += f"; the estimate could not start either ({exc})"
        if self.errors.add(msg, self._t_s(t)):
            log.warning(msg)

    def sample(self) -> None:
        """One sampler tick: poll and queue one power.csv row per device."""
        with self._lock:
            if self._stopped:
                return
            t = self._poll()
            if self._csv is None:
                return  # no trace wanted: polling keeps counters from wrapping unseen
            t_s = self._t_s(t)
            for src in self._sources:
                try:
                    power_w = src.read_power_w()
                except Exception:
                    power_w = {}  # energy is what counts; a missing power value is left blank
                for dev in src.devices:
                    p_w = power_w.get(dev)
                    self._rows.append((f"{t_s:.3f}", dev, "" if p_w is None else f"{p_w:.3f}",
                                       f"{self._energy_j.get(dev, 0.0) + self._energy_offset_j.get(dev, 0.0):.4f}",
                                       src.source, src.estimated))
            due = t - self._last_flush_t >= self._flush_every_s
        if due:
            self.flush()

    # ------------------------------------------------------------------ windows
    def _sync(self) -> None:
        if self._sync_fn is not None:
            try:
                self._sync_fn()  # queued GPU work must land inside the window
            except Exception as exc:
                log.debug("device sync failed: %s", exc)

    def begin_window(self, name: str) -> None:
        self._sync()
        with self._lock:
            if name in self._windows:
                raise ValueError(f"measurement window {name!r} is already open")
            t = self._clock() if self._stopped else self._poll()
            self._windows[name] = _Window(t, dict(self._energy_j))

    def end_window(self, name: str) -> Measurement:
        self._sync()
        with self._lock:
            if name not in self._windows:
                raise ValueError(f"measurement window {name!r} is not open")
            win = self._windows.pop(name)
            t = self._read_t()
            m = self._measure(win, t)
        if (not self._warned_short and self.interval_s and m.duration_s < self.interval_s
                and "nvml-sampled" in m.source):
            self._warned_short = True
            log.warning("window %r lasted %.3f s, shorter than the power sampling interval: "
                        "its sampled GPU energy is rough", name, m.duration_s)
        return m

    def _measure(self, win: _Window, t: float) -> Measurement:
        by_dev = {d: e - win.energy_j.get(d, 0.0) for d, e in self._energy_j.items()}
        return Measurement(duration_s=max(0.0, t - win.start_t), energy_j_by_device=by_dev,
                           source=self.source_label(by_dev), estimated=self.is_estimated(by_dev))

    def read_window(self, name: str) -> Measurement:
        """What an open window has measured so far, leaving it open."""
        with self._lock:
            if name not in self._windows:
                raise ValueError(f"measurement window {name!r} is not open")
            t = self._read_t()
            return self._measure(self._windows[name], t)

    def switch_window(self, old: str, new: str) -> Measurement:
        """End `old` and begin `new` on one reading, so back-to-back windows (train, eval,
        train...) add up to the whole span with nothing falling between them."""
        self._sync()
        with self._lock:
            if old not in self._windows:
                raise ValueError(f"measurement window {old!r} is not open")
            if new in self._windows and new != old:
                raise ValueError(f"measurement window {new!r} is already open")
            t = self._read_t()
            m = self._measure(self._windows.pop(old), t)
            self._windows[new] = _Window(t, dict(self._energy_j))
            return m

    def cancel_window(self, name: str) -> None:
        with self._lock:
            if self._windows.pop(name, None) is None:
                raise ValueError(f"measurement window {name!r} is not open")

    def open_windows(self) -> list[str]:
        with self._lock:
            return list(self._windows)

    def energy_j_by_device(self) -> dict[str, float]:
        """Cumulative energy per device since the meter started (fresh poll)."""
        with self._lock:
            if not self._stopped:
                self._poll()
            return dict(self._energy_j)

    def total_energy_j(self) -> float:
        return float(sum(self.energy_j_by_device().values()))

    def source_label(self, devices: Iterable[str]) -> str:
        """Source labels of these devices joined with '+', GPUs first (e.g. one component's)."""
        labels = [self._device_source[d][0] for d in sorted(devices, key=lambda d: (not d.startswith("gpu"), d))
                  if d in self._device_source]
        return "+".join(dict.fromkeys(labels)) or "none"

    def is_estimated(self, devices: Iterable[str]) -> bool:
        return any(self._device_source[d][1] for d in devices if d in self._device_source)

    def models(self) -> dict[str, str]:
        """Per component ('cpu', 'ram'), the model of each estimate that has fed it."""
        with self._lock:
            return {c: "; ".join(dict.fromkeys(m)) for c, m in self._models.items()}

    def static_energy_j(self) -> dict[str, float]:
        """Per component, the static power of its sources integrated since the meter started (as of
        the last poll)."""
        with self._lock:
            return dict(self._static_j)

    @property
    def source(self) -> str:
        return self.source_label(self._energy_j)

    @property
    def estimated(self) -> bool:
        return self.is_estimated(self._energy_j)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._csv is not None:
            self._csv.open()
        if self.interval_s is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="power-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self.interval_s is not None
        run_sampler(self.sample, self.interval_s, self._stop_event, self._clock, self.errors)

    def t_s_now(self) -> float:
        """The trace's time now (power.csv's t_s of a row sampled at this moment)."""
        return self._t_s(self._clock())

    @property
    def csv_failure(self) -> OSError | None:
        """The write of power.csv that failed (a full disk), if one did: the run must stop."""
        return self._csv.failure if self._csv is not None else None

    def flush(self) -> None:
        """Write the queued power rows (done in batches, every `flush_every_s`, and at each
        checkpoint). Flushes from two threads write their batches in the order they took them."""
        with self._flush_lock:
            with self._lock:
                rows, self._rows = self._rows, []
                self._last_flush_t = self._clock()
            if self._csv is not None:
                self._csv.write(rows)  # outside the lock: a slow disk must not hold up window reads

    def stop(self) -> None:
        """Stop the sampler, write the last rows, release the sources. Idempotent."""
        if self._stopped:
            return
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        self.sample()
        with self._lock:
            self._stopped = True
            self._stop_t = self._clock()
            for src in self._sources:
                st = self._state[id(src)]
                if st.gap_start_t is not None:
                    self.gaps.append(Gap(src.source, self._t_s(st.gap_start_t), self._t_s(self._stop_t),
                                         st.gap_error, False, tuple(src.devices), False, self._ok_s(st)))
        self.flush()
        if self._csv is not None:
            self._csv.close()
        for src in self._sources:
            try:
                src.close()
            except Exception:
                pass

    def sampler_cpu_s(self) -> float | None:
        """CPU seconds the sampler thread has used (Linux; None when unknown or stopped)."""
        return thread_cpu_s(self._thread)

    def __enter__(self) -> "PowerMeter":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

