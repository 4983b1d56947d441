"""EnergyTotals: one node's (or, after the reduce, all nodes') energy account, how two segments
of a resumed run add up, and how a run side by side with others takes its part of the machine's
CPU and RAM energy (bench.energy.callback says when)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from dataclasses import fields as dc_fields
from typing import Any

from bench.energy.base import COMPONENTS
from bench.energy.coverage import add_coverage
from bench.energy.ranks import add_segments


@dataclass
class EnergyTotals:
    """One node's (or, after the reduce, all nodes') account. CodeCarbon figures None =
    missing, not zero; a component absent from `components` was not metered."""

    train_energy_j: float = 0.0
    eval_energy_j: float = 0.0
    other_energy_j: float = 0.0
    """Start-up, checkpoints and the end of the run (spikerl.phases); checkpoints before phases: 0."""
    gpu_energy_j: float = 0.0
    cpu_energy_j: float = 0.0
    ram_energy_j: float = 0.0
    components: list[str] = field(default_factory=list)
    component_sources: dict[str, str] = field(default_factory=dict)
    component_estimated: dict[str, bool] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    """Per estimated component, the model behind its figure."""
    codecarbon_emissions_kg: float | None = 0.0
    codecarbon_energy_kwh: float | None = 0.0
    foreign_cpu_s: float = 0.0
    observed_cpu_s: float = 0.0
    foreign_gpu_processes: int = 0
    unattributed_j: float = 0.0
    """Attributed runs: this run's part of the machine energy no run was charged (bench.energy.attribution)."""
    cpu_attributed_j: float = 0.0
    """The run's part of cpu_energy_j / ram_energy_j (all of it in segments it ran alone)."""
    ram_attributed_j: float = 0.0
    attributed: bool = False
    """Some segment ran beside other runs of its sweep: cpu/ram are the machine's, shared."""
    concurrent_runs: int = 1
    sources: list[str] = field(default_factory=list)
    estimated: bool = False
    meter_errors: list[str] = field(default_factory=list)
    emissions_errors: list[str] = field(default_factory=list)
    """CodeCarbon's problems (its figures are the cross-check)."""
    energy_j_by_device: dict[str, float] = field(default_factory=dict)
    """This node's devices only: continues power.csv's cumulative column after a resume."""
    gpus: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per GPU identity (bench.energy.ranks), its train/eval energy and metered/window seconds."""
    coverage_s: dict[str, list[float]] = field(default_factory=dict)
    """CPU and RAM: [metered, window] device-seconds (GPUs': from `gpus`)."""
    idle_window_s: float = 0.0
    idle_baseline: str = ""
    """Where the idle power came from: 'run' (its own window) or 'sweep' (bench.run.idle); '' none."""
    idle_power_w: dict[str, float] = field(default_factory=dict)
    """CPU and RAM: the latest idle baseline's power (GPUs': in `gpus`)."""
    idle_j: dict[str, float] = field(default_factory=dict)
    """CPU and RAM: idle power x metered time, summed over segments (bench.energy.baseline)."""

    @property
    def energy_j(self) -> float:
        return self.train_energy_j + self.eval_energy_j + self.other_energy_j

    def plus(self, other: "EnergyTotals") -> "EnergyTotals":
        comps = [c for c in COMPONENTS if c in self.components or c in other.components]
        return EnergyTotals(
            train_energy_j=self.train_energy_j + other.train_energy_j,
            eval_energy_j=self.eval_energy_j + other.eval_energy_j,
            other_energy_j=self.other_energy_j + other.other_energy_j,
            gpu_energy_j=self.gpu_energy_j + other.gpu_energy_j,
            cpu_energy_j=self.cpu_energy_j + other.cpu_energy_j,
            ram_energy_j=self.ram_energy_j + other.ram_energy_j,
            components=comps,
            component_sources={c: _join(self.component_sources.get(c, ""), other.component_sources.get(c, ""))
                               for c in comps},
            component_estimated={c: self.component_estimated.get(c, False) or other.component_estimated.get(c, False)
                                 for c in comps},
            models={c: "; ".join(dict.fromkeys(m for m in (self.models.get(c), other.models.get(c)) if m))
                    for c in {**self.models, **other.models}},
            codecarbon_emissions_kg=_add_or_none(self.codecarbon_emissions_kg, other.codecarbon_emissions_kg),
            codecarbon_energy_kwh=_add_or_none(self.codecarbon_energy_kwh, other.codecarbon_energy_kwh),
            foreign_cpu_s=self.foreign_cpu_s + other.foreign_cpu_s,
            observed_cpu_s=self.observed_cpu_s + other.observed_cpu_s,
            foreign_gpu_processes=max(self.foreign_gpu_processes, other.foreign_gpu_processes),
            cpu_attributed_j=self.cpu_attributed_j + other.cpu_attributed_j,
            unattributed_j=self.unattributed_j + other.unattributed_j,
            ram_attributed_j=self.ram_attributed_j + other.ram_attributed_j,
            attributed=self.attributed or other.attributed,
            concurrent_runs=max(self.concurrent_runs, other.concurrent_runs),
            sources=list(dict.fromkeys(self.sources + other.sources)),
            estimated=self.estimated or other.estimated,
            meter_errors=list(dict.fromkeys(self.meter_errors + other.meter_errors)),
            emissions_errors=list(dict.fromkeys(self.emissions_errors + other.emissions_errors)),
            energy_j_by_device={d: self.energy_j_by_device.get(d, 0.0) + other.energy_j_by_device.get(d, 0.0)
                                for d in {**self.energy_j_by_device, **other.energy_j_by_device}},
            gpus=add_segments(self.gpus, other.gpus),
            coverage_s=add_coverage(self.coverage_s, other.coverage_s),
            idle_window_s=self.idle_window_s + other.idle_window_s,
            idle_baseline=other.idle_baseline or self.idle_baseline,
            idle_power_w=dict(other.idle_power_w or self.idle_power_w),
            idle_j={c: self.idle_j.get(c, 0.0) + other.idle_j.get(c, 0.0) for c in {**self.idle_j, **other.idle_j}},
        )

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "EnergyTotals":
        state = dict(state)
        if "emissions_kg" in state and "codecarbon_emissions_kg" not in state:
            state["codecarbon_emissions_kg"] = state["emissions_kg"]  # checkpoints before one account
        if "components" not in state:
            state["components"] = [c for c in COMPONENTS if state.get(f"{c}_energy_j")]
        for c in ("cpu", "ram"):  # checkpoints before attribution: the run had it all
            state.setdefault(f"{c}_attributed_j", state.get(f"{c}_energy_j", 0.0))
        known = {f.name for f in dc_fields(cls)}
        return cls(**{k: v for k, v in state.items() if k in known})


def _join(a: str, b: str) -> str:
    return "+".join(dict.fromkeys(x for x in (*a.split("+"), *b.split("+")) if x))


def _add_or_none(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


def share(totals: EnergyTotals) -> float | None:
    """Attributed CPU and RAM energy over the machine's (None for a run that was never attributed)."""
    if not totals.attributed:
        return None
    shared_j = totals.cpu_energy_j + totals.ram_energy_j
    return (totals.cpu_attributed_j + totals.ram_attributed_j) / shared_j if shared_j > 0 else None


def attribute(totals: EnergyTotals) -> EnergyTotals:
    """The run's part of the machine's CPU and RAM energy (bench.energy.callback); GPUs are its own."""
    if not totals.attributed:
        return totals
    whole_j = totals.energy_j
    cut_j = (totals.cpu_energy_j - totals.cpu_attributed_j) + (totals.ram_energy_j - totals.ram_attributed_j)
    scale = (whole_j - cut_j) / whole_j if whole_j > 0 else 1.0
    out = EnergyTotals(**asdict(totals))
    out.cpu_energy_j, out.ram_energy_j = totals.cpu_attributed_j, totals.ram_attributed_j
    # train and eval each keep their part of the run's total
    out.train_energy_j, out.eval_energy_j = totals.train_energy_j * scale, totals.eval_energy_j * scale
    out.other_energy_j = totals.other_energy_j * scale
    out.component_sources = {c: f"{src}+attributed" if c in ("cpu", "ram") else src
                             for c, src in totals.component_sources.items()}
    # CodeCarbon measured the whole machine as well: the same factor keeps it comparable
    if out.codecarbon_energy_kwh is not None:
        out.codecarbon_energy_kwh *= scale
    if out.codecarbon_emissions_kg is not None:
        out.codecarbon_emissions_kg *= scale
    return out
