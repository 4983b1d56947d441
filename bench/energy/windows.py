"""One segment's phase windows on a meter: start-up and the rest ('other'), training and
evaluation, switched on one reading so that train + eval + other is the whole metered span, with
per phase and per device the energy of the windows closed so far and of the open one."""
from __future__ import annotations

from bench.energy.meter import PowerMeter
from spikerl.phases import PHASES


class PhaseWindows:
    def __init__(self) -> None:
        self.meter: PowerMeter | None = None
        self.phase: str | None = None
        self._seconds = 0.0  # closed windows
        self._done_j: dict[str, float] = {}  # per device, closed windows
        self._phase_dev_j: dict[str, dict[str, float]] = {p: {} for p in PHASES}
        self._phase_j = {p: 0.0 for p in PHASES}

    def open(self, meter: PowerMeter, phase: str) -> None:
        meter.begin_window(phase)
        self.meter, self.phase = meter, phase

    def switch(self, phase: str) -> None:
        if self.meter is None or self.phase is None or self.phase == phase:
            return
        m = self.meter.switch_window(self.phase, phase)
        self._close(m.energy_j_by_device, m.duration_s)
        self.phase = phase

    def end(self) -> None:
        """Close the open window (the meter still running); the phase is None afterwards, even on failure."""
        try:
            if self.meter is not None and self.phase is not None:
                m = self.meter.end_window(self.phase)
                self._close(m.energy_j_by_device, m.duration_s)
        finally:
            self.phase = None

    def _close(self, by_dev: dict[str, float], duration_s: float) -> None:
        assert self.phase is not None
        self._seconds += duration_s
        per_dev = self._phase_dev_j.setdefault(self.phase, {})
        for d, e in by_dev.items():
            self._done_j[d] = self._done_j.get(d, 0.0) + e
            per_dev[d] = per_dev.get(d, 0.0) + e
        self._phase_j[self.phase] += sum(by_dev.values())

    def so_far(self) -> tuple[dict[str, float], dict[str, float], dict[str, dict[str, float]], float]:
        """(per device, per phase, per phase and device) energy of the closed windows and the open
        one, and the metered seconds."""
        seconds = self._seconds
        done = dict(self._done_j)
        phase_j = dict(self._phase_j)
        phase_dev = {p: dict(by_dev) for p, by_dev in self._phase_dev_j.items()}
        if self.meter is not None and self.phase is not None:
            m = self.meter.read_window(self.phase)
            open_dev = phase_dev.setdefault(self.phase, {})
            for d, e in m.energy_j_by_device.items():
                done[d] = done.get(d, 0.0) + e
                open_dev[d] = open_dev.get(d, 0.0) + e
            phase_j[self.phase] += m.total_energy_j
            seconds += m.duration_s
        return done, phase_j, phase_dev, seconds
