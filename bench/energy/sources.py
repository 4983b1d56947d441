"""Which energy sources a meter reads: the GPUs through NVML (else amdsmi, an AMD machine), the CPU
through RAPL where readable (else the load-based estimate), the RAM through RAPL's DRAM zones
(else CodeCarbon's RAM model), as asked."""
from __future__ import annotations

import logging
import os
import time
from typing import Callable, Sequence

from bench.energy.amdsmi import open_amdsmi
from bench.energy.base import Clock, EnergySource, EnergySourceError, component_of
from bench.energy.estimate import CpuLoad, EstimateSource, RamEstimateSource
from bench.energy.nvml import DeviceId, open_nvml
from bench.energy.rapl import POWERCAP_ROOT, RaplSource, find_dram_zones, open_rapl

log = logging.getLogger(__name__)

CPU_CHOICES = ("auto", "rapl", "estimate", "none")
RAM_CHOICES = CPU_CHOICES


def open_sources(*, gpu_ids: Sequence[DeviceId] = (), cpu: str = "auto",
                 rapl_root: str | os.PathLike[str] = POWERCAP_ROOT, clock: Clock = time.monotonic,
                 tdp_w: float | None = None, ram: str = "none", ram_w: float | None = None,
                 estimate_cpus: Sequence[int] | None = None,
                 ) -> tuple[list[EnergySource], list[str], Callable[[], EnergySource] | None]:
    """Pick sources: NVML for `gpu_ids` (NVML indices or UUIDs), and for the CPU
    RAPL if readable, else the estimate (`cpu='auto'`); `cpu='rapl'` raises if RAPL is
    unusable, `'estimate'` forces the estimate, `'none'` measures no CPU.

    `ram` likewise: 'auto' meters RAPL's DRAM zones (devices `ram-dram-N`) where RAPL is
    used and has them, else adds the RAM estimate (`ram-estimate`, CodeCarbon's model or
    `ram_w` watts); 'rapl' raises without DRAM zones; 'none' (the default) meters no RAM.
    `estimate_cpus`: the CPUs whose load drives the CPU estimate (default: this process's
    affinity); every CPU of the machine when runs side by side share its estimate.

    Returns (sources, set-up problems to report, the CPU estimate's factory: the stand-in for a
    failing CPU source, None with `cpu='none'`)."""
    if cpu not in CPU_CHOICES:
        raise ValueError(f"cpu must be one of {CPU_CHOICES}, got {cpu!r}")
    if ram not in RAM_CHOICES:
        raise ValueError(f"ram must be one of {RAM_CHOICES}, got {ram!r}")
    sources: list[EnergySource] = []
    notes: list[str] = []
    if gpu_ids:
        gpu_sources, problems = open_nvml(gpu_ids, clock=clock)
        if not gpu_sources:  # no NVIDIA GPU answered: an AMD machine, through amdsmi
            amd_sources, amd_problems = open_amdsmi(gpu_ids, clock=clock)
            if amd_sources:
                gpu_sources, problems = amd_sources, amd_problems
            else:
                problems += amd_problems
        sources += gpu_sources
        notes += problems
    if cpu in ("auto", "rapl"):
        rapl, reason = open_rapl(rapl_root, clock=clock, dram=ram in ("auto", "rapl"))
        if rapl is not None:
            sources.append(rapl)
        elif cpu == "rapl":
            raise EnergySourceError(f"RAPL requested but unusable: {reason}")
        else:
            log.info("CPU energy will be estimated: %s", reason)
    elif ram == "rapl":  # the CPU estimated, RAM read from RAPL's DRAM zones alone
        dram_zones = find_dram_zones(rapl_root)
        if dram_zones:
            sources.append(RaplSource(dram_zones, clock=clock))

    def estimate() -> EstimateSource:
        load = CpuLoad(estimate_cpus) if estimate_cpus is not None else None
        return EstimateSource(tdp_w=tdp_w, load_fn=load, clock=clock, cpus=estimate_cpus)

    if cpu == "estimate" or (cpu == "auto" and not any(s.source == "rapl" for s in sources)):
        sources.append(estimate())
    has_dram = any(component_of(d) == "ram" for s in sources for d in s.devices)
    if ram == "rapl" and not has_dram:
        raise EnergySourceError("RAPL DRAM energy requested but this machine exposes no readable dram zone")
    if ram == "estimate" or (ram == "auto" and not has_dram):
        sources.append(RamEstimateSource(power_w=ram_w, clock=clock))
    return sources, notes, (None if cpu == "none" else estimate)
