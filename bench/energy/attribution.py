"""How runs executing side by side share the machine's CPU and RAM energy.

Per interval between probe samples, each component's energy is split into

    static  = the sources' static power x the interval   (the estimate's idle floor 0.1 x TDP,
              the RAM model's constant power, RAPL's idle power where an idle baseline measured it)
    dynamic = the rest,

and a run is charged

    static x allocated_share  +  dynamic x cpu_time_share

with allocated_share = the run's allocated CPUs / the machine's and cpu_time_share = its CPU s /
the machine's busy CPU s. Splitting the static power by CPU time made a CPU-light method look
greener beside a CPU-heavy one, and charged the idle floor of unallocated cores to whoever ran.

What no run is charged (unallocated cores' static power, other processes' dynamic power) is the
remainder. Each run records its part as

    unattributed_j = the machine's energy over the interval / concurrent_runs - what it was charged

so that over runs that ran side by side for the same window, Σ (charged + unattributed_j) is the
machine's metered energy exactly. One run's unattributed_j alone may be negative (it took more than
1/n); only the sum over the runs is the remainder.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Interval:
    """One component's machine energy over an interval and its static part."""

    energy_j: float
    static_j: float = 0.0

    @property
    def static_part_j(self) -> float:
        return min(max(self.static_j, 0.0), max(self.energy_j, 0.0))

    @property
    def dynamic_part_j(self) -> float:
        return self.energy_j - self.static_part_j


def charge_j(interval: Interval, allocated_share: float, cpu_time_share: float) -> float:
    """The run's part of one component's machine energy over one interval."""
    a = min(max(allocated_share, 0.0), 1.0)
    c = min(max(cpu_time_share, 0.0), 1.0)
    return interval.static_part_j * a + interval.dynamic_part_j * c


def unattributed_j(machine_j: float, charged_j: float, concurrent_runs: int) -> float:
    """This run's part of the remainder (module docstring)."""
    return machine_j / max(1, concurrent_runs) - charged_j


class RunCharges:
    """One run's charges so far in one segment, advanced at each probe sample: per interval its
    CPU-time share of the machine's busy CPU time (the share of the last interval that had one;
    1/concurrent_runs before any), and the static / dynamic split above."""

    def __init__(self, concurrent_runs: int, allocated_share: Callable[[], float]) -> None:
        self.concurrent_runs = max(1, concurrent_runs)
        self._allocated_share = allocated_share
        self.cpu_j = 0.0
        self.ram_j = 0.0
        self.unattributed_j = 0.0
        self.share: float | None = None
        """The CPU-time share of the last interval (None: never measured)."""
        self._last: tuple[float, ...] = (0.0,) * 6
        """(machine cpu J, ram J, own CPU s, machine busy CPU s, static cpu J, static ram J) at the last sample."""

    def sample(self, cpu_j: float, ram_j: float, own_s: float, busy_s: float,
               static_cpu_j: float, static_ram_j: float) -> None:
        d_busy = busy_s - self._last[3]
        if d_busy > 0:
            self.share = min(max((own_s - self._last[2]) / d_busy, 0.0), 1.0)
        now = (cpu_j, ram_j, own_s, busy_s, static_cpu_j, static_ram_j)
        d_cpu, d_ram, d_un = self._charge(now)
        self.cpu_j += d_cpu
        self.ram_j += d_ram
        self.unattributed_j += d_un
        self._last = now

    def totals(self, cpu_j: float, ram_j: float, static_cpu_j: float,
               static_ram_j: float) -> tuple[float, float, float]:
        """(CPU J, RAM J, unattributed J) with the energy read after the last sample charged at the
        last interval's shares (not recorded: the next sample charges it again from the last one)."""
        d_cpu, d_ram, d_un = self._charge((cpu_j, ram_j, 0.0, 0.0, static_cpu_j, static_ram_j))
        return self.cpu_j + d_cpu, self.ram_j + d_ram, self.unattributed_j + d_un

    def _charge(self, now: tuple[float, ...]) -> tuple[float, float, float]:
        last = self._last
        share = self.share if self.share is not None else 1.0 / self.concurrent_runs
        alloc = self._allocated_share()
        cpu = Interval(now[0] - last[0], now[4] - last[4])
        ram = Interval(now[1] - last[1], now[5] - last[5])
        d_cpu, d_ram = charge_j(cpu, alloc, share), charge_j(ram, alloc, share)
        return d_cpu, d_ram, unattributed_j(cpu.energy_j + ram.energy_j, d_cpu + d_ram, self.concurrent_runs)
