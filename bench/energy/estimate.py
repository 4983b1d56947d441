"""CPU and RAM power where no meter exists: CodeCarbon's models, always labelled estimated.

    CPU: power_w = TDP_w × (0.1 + 0.9 · load³)
    RAM: power_w = CodeCarbon's DIMM model of the machine's memory size (constant)

`load` is the busy fraction of the CPUs this process may run on (its affinity set),
measured from /proc/stat deltas between reads rather than psutil.cpu_percent, whose single
process-wide baseline CodeCarbon's own tracker would keep resetting. TDP comes from
CodeCarbon's table (codecarbon/data/hardware/cpu_power.csv, matched on the CPU brand
string) times the socket count, or 4 W per logical CPU when the model is unknown, exactly
CodeCarbon's fallback. RAM power is CodeCarbon's own model (codecarbon/external/ram.py: DIMMs
guessed from the memory size, about 5 W each on x86), so our RAM figure and CodeCarbon's agree.
Each source states its model in `model`, which result.json and the report show.
"""
from __future__ import annotations

import functools
import logging
import os
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import psutil

from bench.energy.base import Clock, EnergySource, PowerIntegrator, TraceAverage

log = logging.getLogger(__name__)

DEFAULT_W_PER_THREAD = 4.0
"""CodeCarbon's DEFAULT_POWER_PER_CORE (codecarbon/core/cpu.py), applied per logical CPU."""


def load_power_w(tdp_w: float, load: float) -> float:
    load = min(max(load, 0.0), 1.0)
    return tdp_w * (0.1 + 0.9 * load ** 3)


@dataclass(frozen=True)
class TdpInfo:
    tdp_w: float
    cpu_model: str
    origin: str
    """'codecarbon cpu_power.csv' or '4 W per thread (unknown CPU)'."""

    def describe(self) -> str:
        return (f"CodeCarbon load model: TDP x (0.1 + 0.9 load^3), TDP {self.tdp_w:g} W from {self.origin} "
                f"for CPU {self.cpu_model!r}")


@functools.lru_cache(maxsize=1)
def lookup_tdp() -> TdpInfo:
    """The CPU's TDP as CodeCarbon would pick it (takes about a second: cpuinfo)."""
    threads = psutil.cpu_count(logical=True) or 1
    fallback_w = DEFAULT_W_PER_THREAD * threads
    cc_log = logging.getLogger("codecarbon")
    old_level = cc_log.level
    try:
        from codecarbon.core.cpu import TDP  # importing codecarbon sets its logger's level
        from codecarbon.core.util import count_physical_cpus

        old_level = cc_log.level
        cc_log.setLevel(logging.ERROR)  # it warns loudly about unknown models; we log once below
        tdp = TDP()
        # TDP() silently returns 4 W x threads for unknown models; ask the table directly
        # (a private method, hence the broad except) to know which one we got.
        table_w = tdp._get_cpu_power_from_registry(tdp.model) if tdp.model else None
        if table_w:
            sockets = max(1, int(count_physical_cpus()))
            return TdpInfo(float(table_w) * sockets, str(tdp.model), "codecarbon cpu_power.csv")
        model = str(tdp.model or "unknown")
    except Exception as exc:
        log.debug("CodeCarbon TDP lookup failed: %s", exc)
        model = "unknown"
    finally:
        cc_log.setLevel(old_level)
    log.info("CPU model %r not in CodeCarbon's TDP table: assuming %.0f W per thread x %d = %.0f W",
             model, DEFAULT_W_PER_THREAD, threads, fallback_w)
    return TdpInfo(fallback_w, model, f"{DEFAULT_W_PER_THREAD:g} W per thread (unknown CPU)")


def affinity_cpus() -> list[int]:
    """The CPUs this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return list(range(psutil.cpu_count(logical=True) or 1))


def machine_cpus() -> list[int]:
    """Every CPU of the machine, whatever this process's affinity."""
    return list(range(psutil.cpu_count(logical=True) or 1))


def cpu_time_totals(cpus: Sequence[int]) -> tuple[float, float]:
    """(all CPU seconds, busy CPU seconds) of these CPUs since boot (/proc/stat through psutil)."""
    per_cpu = psutil.cpu_times(percpu=True)
    total_s = busy_s = 0.0
    for i in cpus:
        if i >= len(per_cpu):
            continue
        t = per_cpu[i]
        # Linux counts guest time inside user time already.
        all_s = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
        total_s += all_s
        busy_s += all_s - t.idle - getattr(t, "iowait", 0.0)
    return total_s, busy_s


class CpuLoad:
    """Busy fraction of the given CPUs since the previous call (None on the first call)."""

    def __init__(self, cpus: Sequence[int] | None = None):
        self.cpus = list(cpus) if cpus is not None else affinity_cpus()
        self._last: tuple[float, float] | None = None
        self.last_load: float | None = None

    def __call__(self) -> float | None:
        total_s, busy_s = cpu_time_totals(self.cpus)
        last, self._last = self._last, (total_s, busy_s)
        if last is None or total_s - last[0] <= 0:
            return self.last_load  # /proc/stat ticks are 10 ms: a tiny interval says nothing new
        self.last_load = min(max((busy_s - last[1]) / (total_s - last[0]), 0.0), 1.0)
        return self.last_load


class EstimateSource(EnergySource):
    """Integrates the load model over time; device key 'cpu'."""

    name = "estimate"
    source = "estimate"
    estimated = True

    def __init__(self, tdp_w: float | None = None, load_fn: Callable[[], float | None] | None = None,
                 clock: Clock = time.monotonic, cpus: Sequence[int] | None = None):
        """`cpus`: the CPUs the estimate covers (default: this process's affinity). A looked-up TDP
        is the whole machine's (per socket x sockets), so it is scaled by len(cpus) / the machine's
        logical CPUs: a run pinned to 4 of 64 is charged 4/64 of the sockets' TDP. A given
        `tdp_w` is taken as that of the covered CPUs already."""
        self.cpus = list(cpus) if cpus is not None else getattr(load_fn, "cpus", None) or affinity_cpus()
        if tdp_w is None:
            machine = lookup_tdp()
            n_machine = max(1, len(machine_cpus()))
            frac = min(1.0, len(self.cpus) / n_machine)
            info = TdpInfo(machine.tdp_w * frac, machine.cpu_model, machine.origin if frac == 1.0 else
                           f"{machine.origin}, {machine.tdp_w:g} W scaled by {len(self.cpus)}/{n_machine} "
                           f"allocated CPUs")
        else:
            info = TdpInfo(float(tdp_w), "given", "given")
        if info.tdp_w <= 0:
            raise ValueError(f"tdp_w must be positive, got {info.tdp_w}")
        self.tdp = info
        self.model = info.describe()
        self.devices = ["cpu"]
        self.static_w = load_power_w(info.tdp_w, 0.0)
        """The model's idle floor (0.1 x TDP): static power, split between runs by allocated cores."""
        self._load_fn = load_fn if load_fn is not None else CpuLoad(self.cpus)
        self._last_load = 0.0
        # 'hold': the load read at t_k is the average over (t_{k-1}, t_k], so its power covers that span.
        self._integrator = PowerIntegrator(self.devices, mode="hold", clock=clock)
        self._integrator.add({"cpu": self._power_now_w()})
        self._trace = TraceAverage()
        self._trace.update(*self._integrator.snapshot())

    def _power_now_w(self) -> float:
        load = self._load_fn()
        if load is not None:
            self._last_load = load
        return load_power_w(self.tdp.tdp_w, self._last_load)

    def read_energy_j(self) -> dict[str, float]:
        return self._integrator.add({"cpu": self._power_now_w()})

    def read_power_w(self) -> dict[str, float]:
        return self._trace.update(*self._integrator.snapshot())


RAM_W_PER_8_GB = 3.0
"""CodeCarbon 2's RAM model (3 W per 8 GB), used only when CodeCarbon 3's cannot be loaded."""


@dataclass(frozen=True)
class RamModel:
    power_w: float
    memory_gb: float
    origin: str

    def describe(self) -> str:
        return f"{self.origin}: {self.power_w:g} W for {self.memory_gb:.1f} GB (constant)"


@functools.lru_cache(maxsize=1)
def lookup_ram_power() -> RamModel:
    """The machine's RAM power as CodeCarbon would estimate it."""
    memory_gb = psutil.virtual_memory().total / 2**30  # CodeCarbon's B_TO_GB is 1024**3 too
    cc_log = logging.getLogger("codecarbon")
    old_level = cc_log.level
    try:
        from codecarbon.external.ram import RAM

        ram = RAM(tracking_mode="machine")
        memory_gb = float(ram.machine_memory_GB)  # the SLURM allocation where there is one
        power_w = float(ram._calculate_ram_power(memory_gb))  # private: hence the broad except
        dimms = int(ram._estimate_dimm_count(memory_gb))
        return RamModel(power_w, memory_gb, f"CodeCarbon DIMM model ({dimms} DIMMs guessed)")
    except Exception as exc:
        log.debug("CodeCarbon RAM model unavailable: %s", exc)
    finally:
        cc_log.setLevel(old_level)
    return RamModel(RAM_W_PER_8_GB * memory_gb / 8.0, memory_gb, f"{RAM_W_PER_8_GB:g} W per 8 GB")


class RamEstimateSource(EnergySource):
    """RAM energy at a constant modelled power; device key 'ram-estimate'."""

    name = "ram-estimate"
    source = "estimate"
    estimated = True

    def __init__(self, power_w: float | None = None, clock: Clock = time.monotonic):
        info = lookup_ram_power() if power_w is None else RamModel(float(power_w), 0.0, "given")
        if not info.power_w > 0:
            raise ValueError(f"RAM power must be positive, got {info.power_w}")
        self.ram = info
        self.model = info.describe() if power_w is None else f"given: {info.power_w:g} W (constant)"
        self.devices = ["ram-estimate"]
        self.static_w = info.power_w  # a constant model: all of it static
        self._integrator = PowerIntegrator(self.devices, mode="hold", clock=clock)
        self._integrator.add({"ram-estimate": info.power_w})

    def read_energy_j(self) -> dict[str, float]:
        return self._integrator.add({"ram-estimate": self.ram.power_w})

    def read_power_w(self) -> dict[str, float]:
        return {"ram-estimate": self.ram.power_w}
