"""Who else used the run's hardware: CPU time of processes outside the run's process tree, and
other processes on its GPUs.

    foreign_cpu_share = (busy CPU s of the covered CPUs − CPU s of the run's own processes)
                        / busy CPU s of those CPUs            (over the run, 0..1)

The covered CPUs are those the CPU energy source covers: every CPU of the metered RAPL packages,
or the cores the estimate's TDP covers (the run's allocation), so the share qualifies exactly the
energy it sits beside. It is relative to busy time, not all time: a run busy on 1 of 16 cores
beside a job taking 40 % of the busy time reads 0.4, not 0.4 x 1/16 diluted by idle cores. A few
per cent is background noise; more means its numbers partly measure contention (CONTENDED_ABOVE).

The run's process tree is this process and its descendants, or, for one rank of a
distributed job (WORLD_SIZE > 1), its launcher's tree, which holds every local rank.

The same readings give the run's share of the whole machine's busy CPU time,

    cpu_time_share = CPU s of the run's own processes / busy CPU s of every CPU of the machine,

by which runs executing side by side (a sweep's --jobs > 1) split the energy none of them owns
alone: a RAPL package, the CPU estimate, the RAM.
"""
from __future__ import annotations

import os
from typing import Callable, Sequence

import psutil

from bench.energy.estimate import affinity_cpus, cpu_time_totals, machine_cpus

CONTENDED_ABOVE = 0.05
"""A run whose foreign_cpu_share exceeds this is reported as contended."""


def is_contended(foreign_cpu_share: float | None, foreign_gpu_processes: float | None) -> bool:
    """Whether other processes took more than CONTENDED_ABOVE of a run's CPU time or used its GPUs
    (None or NaN: not measured)."""
    share_over = foreign_cpu_share is not None and foreign_cpu_share == foreign_cpu_share \
        and foreign_cpu_share > CONTENDED_ABOVE
    gpus_used = foreign_gpu_processes is not None and foreign_gpu_processes == foreign_gpu_processes \
        and foreign_gpu_processes > 0
    return bool(share_over or gpus_used)


def run_root_pid() -> int:
    """The root of the run's process tree (see the module docstring)."""
    try:
        distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        distributed = False
    return os.getppid() if distributed else os.getpid()


class ContentionProbe:
    """Accumulates foreign CPU time between `sample()` calls; reads /proc, never raises."""

    def __init__(self, root_pid: int | None = None, cpus: Sequence[int] | None = None,
                 gpu_pids: Callable[[], set[int]] | None = None, local_ranks: int = 1,
                 totals: Callable[[Sequence[int]], tuple[float, float]] = cpu_time_totals):
        self._root_pid = root_pid if root_pid is not None else run_root_pid()
        self._cpus = list(cpus) if cpus is not None else affinity_cpus()
        self._gpu_pids = gpu_pids
        self._local_ranks = max(1, local_ranks)
        self._totals = totals
        self._machine_cpus = machine_cpus()
        self._proc_cpu_s: dict[int, float] = {}  # last CPU seconds of each process of the tree seen
        self._reaped_cpu_s = 0.0
        self._last: tuple[float, float, float, float] | None = None  # (all s, busy s, own s, machine busy s)
        self.foreign_cpu_s = 0.0
        self.observed_cpu_s = 0.0
        """Busy CPU s of the covered CPUs: foreign_cpu_share's denominator."""
        self.own_cpu_s = 0.0
        self.machine_busy_cpu_s = 0.0
        self.foreign_gpu_processes = 0
        self.error: str | None = None

    def _own_cpu_s(self) -> tuple[float, set[int]]:
        root = psutil.Process(self._root_pid)
        procs = [root, *root.children(recursive=True)]
        pids: set[int] = set()
        for p in procs:
            try:
                t = p.cpu_times()
            except psutil.Error:  # ended between listing and reading: its last value stays counted
                continue
            pids.add(p.pid)
            self._proc_cpu_s[p.pid] = t.user + t.system
            if p.pid == self._root_pid:
                self._reaped_cpu_s = getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0)
        return sum(self._proc_cpu_s.values()) + self._reaped_cpu_s, pids

    def sample(self) -> None:
        try:
            own_s, pids = self._own_cpu_s()
            all_s, busy_s = self._totals(self._cpus)
            machine_busy_s = busy_s if self._machine_cpus == self._cpus else self._totals(self._machine_cpus)[1]
        except Exception as exc:  # contention is context for the numbers, never a reason to stop
            self.error = f"contention probe: {type(exc).__name__}: {exc}"
            return
        if self._last is not None:
            d_all, d_busy, d_own = all_s - self._last[0], busy_s - self._last[1], own_s - self._last[2]
            if d_all > 0 and d_busy > 0:
                self.observed_cpu_s += d_busy
                self.foreign_cpu_s += min(max(d_busy - d_own, 0.0), d_busy)
                d_machine = max(machine_busy_s - self._last[3], 0.0)
                self.machine_busy_cpu_s += d_machine
                # /proc/stat ticks and per-process times round differently: own never exceeds busy
                self.own_cpu_s += min(max(d_own, 0.0), d_machine)
        self._last = (all_s, busy_s, own_s, machine_busy_s)
        if self._gpu_pids is not None:
            self._sample_gpus(pids)

    def _sample_gpus(self, own: set[int]) -> None:
        try:
            on_gpu = self._gpu_pids()  # type: ignore[misc]
        except Exception as exc:
            self.error = f"GPU process list: {type(exc).__name__}: {exc}"
            return
        if on_gpu & own:
            foreign = len(on_gpu - own)
        else:
            # In a container NVML reports host PIDs, which never match ours: count everything
            # beyond this node's own ranks as foreign instead.
            foreign = max(0, len(on_gpu) - self._local_ranks)
        self.foreign_gpu_processes = max(self.foreign_gpu_processes, foreign)

    @property
    def cpu_time_share(self) -> float | None:
        return self.own_cpu_s / self.machine_busy_cpu_s if self.machine_busy_cpu_s > 0 else None

    @property
    def foreign_cpu_share(self) -> float | None:
        return self.foreign_cpu_s / self.observed_cpu_s if self.observed_cpu_s > 0 else None
