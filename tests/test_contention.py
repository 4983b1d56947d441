"""The contention probe: CPU time of processes outside the run's tree, and other processes on its GPUs."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench.energy.contention import ContentionProbe, run_root_pid


class Totals:
    """System CPU counters (all s, busy s) that the test moves by hand."""

    def __init__(self) -> None:
        self.all_s, self.busy_s = 1000.0, 400.0

    def __call__(self, cpus):
        return self.all_s, self.busy_s


def _own_cpu_s(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def _spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_foreign_share_is_busy_time_minus_the_runs_own_over_busy_time():
    totals = Totals()
    probe = ContentionProbe(root_pid=os.getpid(), totals=totals)
    probe.sample()
    before = _own_cpu_s(os.getpid())
    _spin(0.3)
    own_s = _own_cpu_s(os.getpid()) - before
    # over the same span the machine's CPUs (2 of them, 4 s of wall) were busy for own + 1.0 s
    totals.all_s += 8.0
    totals.busy_s += own_s + 1.0
    probe.sample()
    assert probe.observed_cpu_s == pytest.approx(own_s + 1.0)  # the busy time, not all 8 s
    assert probe.foreign_cpu_s == pytest.approx(1.0, abs=0.05)  # /proc ticks are 10 ms
    assert probe.foreign_cpu_share == pytest.approx(1.0 / (own_s + 1.0), abs=0.05)


def test_a_child_of_the_run_is_its_own_work_not_foreign():
    totals = Totals()
    probe = ContentionProbe(root_pid=os.getpid(), totals=totals)
    probe.sample()
    child = subprocess.Popen([sys.executable, "-c",
                              "import time\nend=time.process_time()+0.5\nwhile time.process_time()<end: pass\n"
                              "time.sleep(5)"])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _own_cpu_s(child.pid) < 0.5:
            time.sleep(0.05)
        child_s = _own_cpu_s(child.pid)
        totals.all_s += 10.0
        totals.busy_s += child_s  # the machine was busy with the child only
        probe.sample()
    finally:
        child.kill()
        child.wait()
    assert child_s >= 0.4
    assert probe.observed_cpu_s == pytest.approx(child_s)
    assert probe.foreign_cpu_s <= 0.05  # the child started after the first sample: all of it is ours


def test_other_processes_on_the_runs_gpus_are_counted():
    pids = {os.getpid(), 999_999}
    probe = ContentionProbe(root_pid=os.getpid(), totals=Totals(), gpu_pids=lambda: pids)
    probe.sample()
    assert probe.foreign_gpu_processes == 1
    # in a container NVML lists host PIDs, none of them ours: everything beyond our ranks is foreign
    host = ContentionProbe(root_pid=os.getpid(), totals=Totals(), gpu_pids=lambda: {11, 12, 13}, local_ranks=2)
    host.sample()
    assert host.foreign_gpu_processes == 1


def test_a_failing_probe_records_why_and_never_raises():
    def broken(cpus):
        raise OSError("no /proc")

    probe = ContentionProbe(root_pid=os.getpid(), totals=broken)
    probe.sample()
    assert probe.foreign_cpu_share is None and "no /proc" in probe.error


def test_a_distributed_rank_counts_its_launchers_whole_tree(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert run_root_pid() == os.getppid()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert run_root_pid() == os.getpid()


class PinnedTotals:
    """Counters of a machine of 4 CPUs where the run is pinned to CPU 0: per-CPU busy seconds."""

    def __init__(self) -> None:
        self.busy_s = {0: 10.0, 1: 10.0, 2: 10.0, 3: 10.0}
        self.all_s = 100.0

    def __call__(self, cpus):
        cpus = list(cpus)
        return self.all_s * len(cpus), sum(self.busy_s[c] for c in cpus)


def test_cpu_time_share_is_own_time_over_the_whole_machines_busy_time(monkeypatch):
    """A pinned run of a parallel sweep: its foreign share is measured on its own core, its
    share of the machine (by which shared energy is attributed) over every core."""
    import bench.energy.contention as contention

    monkeypatch.setattr(contention, "machine_cpus", lambda: [0, 1, 2, 3])
    totals = PinnedTotals()
    probe = ContentionProbe(root_pid=os.getpid(), cpus=[0], totals=totals)
    probe.sample()
    before = _own_cpu_s(os.getpid())
    _spin(0.3)
    own_s = _own_cpu_s(os.getpid()) - before
    totals.all_s += 1.0
    totals.busy_s[0] += own_s          # our core: only us
    totals.busy_s[1] += 3 * own_s      # the other runs of the sweep, on their own cores
    probe.sample()
    assert probe.foreign_cpu_share == pytest.approx(0.0, abs=0.02)
    assert probe.cpu_time_share == pytest.approx(0.25, abs=0.02)
    assert probe.machine_busy_cpu_s == pytest.approx(4 * own_s)


def test_a_run_busy_on_1_of_16_cores_beside_a_job_taking_40_percent_of_the_busy_time_is_contended():
    """Over all CPU time the other job's 0.4 s/s is 2.5 % of 16 cores' 16 s/s: below the 5 % flag
    before contention was taken relative to busy time."""
    from bench.energy.contention import is_contended

    class Own:
        own_s = 0.0

    totals = Totals()
    probe = ContentionProbe(root_pid=os.getpid(), totals=totals)
    probe._own_cpu_s = lambda: (Own.own_s, {os.getpid()})  # the run's tree: 0.6 s of CPU per s
    probe.sample()
    for _ in range(10):  # 10 s on 16 CPUs: 160 s in all; the run 0.6 s/s, the other job 0.4 s/s
        totals.all_s += 16.0
        totals.busy_s += 1.0
        Own.own_s += 0.6
        probe.sample()
    assert probe.foreign_cpu_share == pytest.approx(0.4)
    assert is_contended(probe.foreign_cpu_share, 0)
