"""EnergyMonitor: the energy, power and carbon of any block of your own code.

    from bench.energy import EnergyMonitor

    with EnergyMonitor(country="FRA", power_csv="power.csv") as m:
        train_my_model()
    print(m.energy_j, m.gpu_energy_j, m.cpu_energy_j, m.emissions_kg, m.source, m.estimated)

It is the suite's PowerMeter (NVML for the GPUs, RAPL or the load estimate for the CPU,
RAPL's DRAM zones or CodeCarbon's RAM model for RAM: the same account as a benchmark run)
around one window, and the carbon intensity the suite's reports use. After the block `m.result` is a frozen
EnergyReport, and its fields and
properties also read straight off the monitor. A component the machine could not meter
is None, never 0.
"""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from bench.energy.base import COMPONENTS, EnergySourceError, Gap, Measurement, component_of
from bench.energy.carbon import DEFAULT_COUNTRY, carbon_intensity_g_per_kwh, validate_country
from bench.energy.meter import CPU_CHOICES, RAM_CHOICES, PowerMeter
from bench.energy.nvml import DeviceId, visible_gpu_ids
from bench.energy.rapl import POWERCAP_ROOT

log = logging.getLogger(__name__)

_WINDOW = "monitor"
J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class ComponentEnergy:
    """One component's energy over the block and where it came from."""

    energy_j: float
    source: str
    """'nvml-counter', 'nvml-sampled', 'rapl' or 'estimate'; several joined with '+' when the
    component's devices differ (GPUs with and without a counter) or a failing source was
    replaced by the estimate during the block."""
    estimated: bool


@dataclass(frozen=True)
class EnergyReport:
    """What one EnergyMonitor measured. Components are None where not metered, never 0."""

    duration_s: float
    gpu: ComponentEnergy | None
    cpu: ComponentEnergy | None
    ram: ComponentEnergy | None
    country: str
    """ISO 3166-1 alpha-3 code of the grid the emissions are computed for."""
    carbon_intensity_g_per_kwh: float | None
    """CodeCarbon's bundled figure for `country`; None if CodeCarbon's data is unavailable."""
    energy_j_by_device: dict[str, float] = field(default_factory=dict)
    gaps: tuple[Gap, ...] = ()
    """Spans in which a source could not be read."""
    errors: tuple[str, ...] = ()
    """Set-up and read problems, in the order they happened."""

    @property
    def gpu_energy_j(self) -> float | None:
        return self.gpu.energy_j if self.gpu is not None else None

    @property
    def cpu_energy_j(self) -> float | None:
        return self.cpu.energy_j if self.cpu is not None else None

    @property
    def ram_energy_j(self) -> float | None:
        return self.ram.energy_j if self.ram is not None else None

    def _present(self) -> list[ComponentEnergy]:
        return [c for c in (self.gpu, self.cpu, self.ram) if c is not None]

    @property
    def energy_j(self) -> float | None:
        """GPU + CPU + RAM over the components that were metered; None if none was."""
        present = self._present()
        return float(sum(c.energy_j for c in present)) if present else None

    @property
    def source(self) -> str:
        """Every component's source joined with '+', GPU first, e.g. 'nvml-counter+rapl'."""
        labels = [label for c in self._present() for label in c.source.split("+")]
        return "+".join(dict.fromkeys(labels)) or "none"

    @property
    def estimated(self) -> bool:
        """True if any part of energy_j is an estimate rather than a measurement."""
        return any(c.estimated for c in self._present())

    @property
    def avg_power_w(self) -> float | None:
        energy_j = self.energy_j
        return energy_j / self.duration_s if energy_j is not None and self.duration_s > 0 else None

    @property
    def emissions_kg(self) -> float | None:
        """energy_j / 3.6e6 × carbon_intensity_g_per_kwh / 1000, the formula of DESIGN.md §5.5."""
        energy_j, intensity = self.energy_j, self.carbon_intensity_g_per_kwh
        if energy_j is None or intensity is None:
            return None
        return energy_j / J_PER_KWH * intensity / 1000.0

    def to_dict(self) -> dict[str, Any]:
        """Flat, JSON-ready summary: one value per name, None where unknown."""
        out: dict[str, Any] = {name: getattr(self, name) for name in _SUMMARY_NAMES}
        for comp in COMPONENTS:
            part: ComponentEnergy | None = getattr(self, comp)
            out[f"{comp}_source"] = part.source if part is not None else None
            out[f"{comp}_estimated"] = part.estimated if part is not None else None
        out["errors"] = list(self.errors)
        out["gaps"] = [asdict(g) for g in self.gaps]
        return out


_SUMMARY_NAMES = ("duration_s", "energy_j", "gpu_energy_j", "cpu_energy_j", "ram_energy_j", "avg_power_w",
                  "emissions_kg", "carbon_intensity_g_per_kwh", "country", "source", "estimated")
# Names that read through the monitor after its block (m.energy_j is m.result.energy_j).
_REPORT_NAMES = frozenset(_SUMMARY_NAMES) | {"gpu", "cpu", "ram", "energy_j_by_device", "gaps", "errors",
                                              "to_dict"}


class EnergyMonitor:
    """Meters a block of code: `with EnergyMonitor(...) as m:`, or `start()` and `stop()`.

    One monitor measures one block. The meters are stopped even when the block raises, and
    a source that fails mid-block is recorded in `gaps`/`errors` instead of raising.
    """

    def __init__(self, *, country: str = DEFAULT_COUNTRY, power_csv: str | os.PathLike[str] | None = None,
                 gpu_ids: Sequence[DeviceId] | None = None, cpu: str = "auto", interval_s: float = 0.1,
                 sync_fn: Callable[[], None] | None = None, tdp_w: float | None = None,
                 rapl_root: str | os.PathLike[str] = POWERCAP_ROOT, ram: str = "auto"):
        """
        country: ISO-3 code of the grid for emissions_kg (ValueError if unknown).
        power_csv: where to write the power trace (bench.schema.POWER_COLUMNS); None writes none.
        gpu_ids: NVML indices or UUIDs; None meters every GPU this process can see, [] none.
            GPUs asked for by id that cannot be metered raise EnergySourceError at start.
        cpu: 'auto' (RAPL, else the estimate), 'rapl' (raise if unusable), 'estimate', 'none'.
        interval_s: sampling period of the power trace and of counter polling.
        sync_fn: waits for queued device work, called at both ends so it lands inside the
            block; by default torch.cuda is synchronised when torch has initialised CUDA.
        tdp_w: CPU TDP for the estimate, instead of CodeCarbon's table.
        ram: 'auto' (RAPL's DRAM zones, else CodeCarbon's RAM model, labelled estimated),
            'rapl' (raise without DRAM zones), 'estimate', 'none'.
        """
        self.country = validate_country(country)
        if cpu not in CPU_CHOICES:
            raise ValueError(f"cpu must be one of {CPU_CHOICES}, got {cpu!r}")
        if ram not in RAM_CHOICES:
            raise ValueError(f"ram must be one of {RAM_CHOICES}, got {ram!r}")
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.carbon_intensity_g_per_kwh = carbon_intensity_g_per_kwh(self.country)
        if self.carbon_intensity_g_per_kwh is None:
            log.warning("no carbon intensity for %s (CodeCarbon's data unavailable): emissions_kg "
                        "will be None", self.country)
        self.power_csv = Path(power_csv) if power_csv is not None else None
        self._gpu_ids = list(gpu_ids) if gpu_ids is not None else None
        self._cpu = cpu
        self._ram = ram
        self._interval_s = interval_s
        self._sync_fn = sync_fn if sync_fn is not None else _sync_torch_cuda
        self._tdp_w = tdp_w
        self._rapl_root = Path(rapl_root)
        self._meter: PowerMeter | None = None
        self._result: EnergyReport | None = None

    def start(self) -> "EnergyMonitor":
        if self._meter is not None:
            raise RuntimeError("this EnergyMonitor has already been started; use a new one per block")
        gpu_ids = self._gpu_ids if self._gpu_ids is not None else visible_gpu_ids()
        meter = PowerMeter.create(gpu_ids=gpu_ids, cpu=self._cpu, rapl_root=self._rapl_root,
                                  interval_s=self._interval_s, csv_path=self.power_csv,
                                  sync_fn=self._sync_fn, tdp_w=self._tdp_w, ram=self._ram)
        if self._gpu_ids:
            # The user named these GPUs: metering fewer of them quietly would misreport the block.
            n_gpus = sum(component_of(d) == "gpu" for d in meter.energy_j_by_device())
            if n_gpus < len(set(self._gpu_ids)):
                meter.stop()
                raise EnergySourceError(f"metering {n_gpus} of the GPUs asked for ({self._gpu_ids}): "
                                        + ("; ".join(meter.errors) or "some ids name the same GPU"))
        meter.begin_window(_WINDOW)
        self._meter = meter
        return self

    def stop(self) -> EnergyReport:
        """End the block and return its report (the same one on every later call)."""
        if self._result is not None:
            return self._result
        if self._meter is None:
            raise RuntimeError("this EnergyMonitor was never started")
        meter = self._meter
        try:
            window = meter.end_window(_WINDOW)
        finally:
            meter.stop()  # the sampler thread must not outlive the block, whatever happened
        self._result = self._report(meter, window)
        return self._result

    def _report(self, meter: PowerMeter, window: Measurement) -> EnergyReport:
        parts: dict[str, ComponentEnergy] = {}
        for comp in COMPONENTS:
            devices = [d for d in window.energy_j_by_device if component_of(d) == comp]
            if devices:
                parts[comp] = ComponentEnergy(
                    energy_j=float(sum(window.energy_j_by_device[d] for d in devices)),
                    source=meter.source_label(devices), estimated=meter.is_estimated(devices))
        return EnergyReport(
            duration_s=window.duration_s, gpu=parts.get("gpu"), cpu=parts.get("cpu"), ram=parts.get("ram"),
            country=self.country, carbon_intensity_g_per_kwh=self.carbon_intensity_g_per_kwh,
            energy_j_by_device=dict(window.energy_j_by_device), gaps=tuple(meter.gaps),
            errors=tuple(meter.errors))

    @property
    def result(self) -> EnergyReport:
        if self._result is None:
            raise RuntimeError("the EnergyMonitor's result exists once its block has ended (or stop() ran)")
        return self._result

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the monitor itself lacks: m.energy_j reads m.result.energy_j.
        if name in _REPORT_NAMES:
            return getattr(self.result, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __enter__(self) -> "EnergyMonitor":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _sync_torch_cuda() -> None:
    """Wait for every GPU's queued kernels, but only if this process has put any there:
    importing torch or initialising CUDA just to sync would cost seconds for nothing."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return
    for index in range(torch.cuda.device_count()):
        torch.cuda.synchronize(index)
