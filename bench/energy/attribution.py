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
