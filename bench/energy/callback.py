"""EnergyCallback: the run's time, energy and carbon account, plugged into the harness.

One account per run:
    energy_j     = gpu_energy_j + cpu_energy_j + ram_energy_j   (each with its own source)
    emissions_kg = energy_j / 3.6e6 × carbon_intensity_g_per_kwh / 1000
with the intensity CodeCarbon's bundled data gives for the run's country. CodeCarbon also
tracks the run independently; its energy and emissions are kept beside ours as a cross-check
(`codecarbon_energy_kwh`, `codecarbon_emissions_kg`, `codecarbon_energy_ratio`), never mixed in.

One power meter and one CodeCarbon tracker per node, owned by local rank 0 and covering
that node's GPUs, its CPU and its RAM. Training and evaluation are separate meter windows,
switched on one reading so that train + eval is the whole measured energy. A contention probe
records how much of the node's CPU time went to processes outside the run. Totals before a
resume come back through `state_dict` / `load_state_dict` (each rank checkpoints its own
node's totals). At the end of a completed distributed run the node's CPU and RAM totals are summed over
nodes with one all_reduce in which only local-rank-0 processes contribute; every rank meters its
own GPUs and those are gathered and counted once per GPU (bench.energy.ranks).

Runs executing side by side on one machine (`concurrent_runs` > 1, a sweep's --jobs) own their
GPU but share the CPU package and the RAM: those two components are the machine's, so each run
is charged, interval by interval between probe samples, its measured share of the machine's busy
CPU time (bench.energy.contention),

    Δcpu_energy_j = Δ machine CPU energy × Δ own CPU s / Δ machine busy CPU s,  RAM likewise,

so the cumulative figure never falls and a resume carries it on. The components are labelled
`+attributed` (for the whole run, once any segment was), with `attributed_share` (attributed CPU
and RAM energy over the machine's) and `concurrent_runs` (the most at once) recorded. The CPU
estimate then reads the whole machine's load, not the run's pinned cores.

Call `total_energy_j()` for the cumulative energy column of progress.csv / evals.csv
(node-local until the run ends), and `result_fields()` after training for result.json.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from dataclasses import fields as dc_fields
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist

from bench.energy.attribution import Interval, charge_j, unattributed_j
from bench.energy.base import COMPONENTS, EnergySourceError, component_of
from bench.energy.baseline import by_component, measure_idle_power_w
from bench.energy.carbon import (
    DEFAULT_COUNTRY,
    CarbonResult,
    CarbonTracker,
    carbon_intensity_g_per_kwh,
    validate_country,
)
from bench.energy.contention import ContentionProbe
from bench.energy.coverage import add_coverage
from bench.energy.estimate import affinity_cpus, machine_cpus
from bench.energy.meter import PowerMeter
from bench.energy.meter_fields import meter_fields
from bench.energy.nvml import DeviceId, nvml_ids_for_cuda
from bench.energy.ranks import add_segments, dedup_ranks, gpu_accounts, gpu_sums
from spikerl.callbacks import Callback, EndEvent, EvalEvent, ProgressEvent, RunInfo

log = logging.getLogger(__name__)

_LOCAL_SIZE_VARS = ("LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE")
J_PER_KWH = 3.6e6


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


def _local_world_size(world_size: int) -> int | None:
    for var in _LOCAL_SIZE_VARS:
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1 if world_size == 1 else None


class EnergyCallback(Callback):
    key = "energy"

    def __init__(self, *, interval_s: float = 0.1, country_iso_code: str = DEFAULT_COUNTRY,
                 measure_power_secs: float = 15.0, codecarbon: bool = True, cpu: str = "auto", ram: str = "auto",
                 gpu_ids: Sequence[DeviceId] | None = None, write_power_csv: bool = True,
                 meter_factory: Callable[..., PowerMeter] = PowerMeter.create,
                 tracker_factory: Callable[..., CarbonTracker] = CarbonTracker,
                 probe_factory: Callable[..., ContentionProbe] = ContentionProbe, concurrent_runs: int = 1,
                 allocated_cpu_share: float | None = None, idle_window_s: float = 0.0,
                 sleep_fn: Callable[[float], None] = time.sleep):
        """`gpu_ids`: NVML indices or UUIDs of this node's GPUs; by default local ranks
        0..LOCAL_WORLD_SIZE-1 are taken to use cuda:0..N-1. `cpu`, `ram`: 'auto' | 'rapl' |
        'estimate' | 'none'. `concurrent_runs`: runs executing at once on this machine, this one
        included (module docstring). Bad country codes fail here, before training starts."""
        self.interval_s = interval_s
        self.country_iso_code = validate_country(country_iso_code)
        self.carbon_intensity_g_per_kwh = carbon_intensity_g_per_kwh(self.country_iso_code)
        self.measure_power_secs = measure_power_secs
        self.codecarbon = codecarbon
        self.cpu = cpu
        self.ram = ram
        self.gpu_ids = list(gpu_ids) if gpu_ids is not None else None
        self.write_power_csv = write_power_csv
        self.concurrent_runs = max(1, int(concurrent_runs))
        self.allocated_cpu_share = allocated_cpu_share
        self.idle_window_s = max(0.0, float(idle_window_s))
        self._sleep = sleep_fn
        self._idle_w: dict[str, float] = {}  # per device, this segment's idle baseline
        self._phase_s = 0.0  # this segment's closed windows
        self._gpu_state: dict[str, dict[str, Any]] = {}  # "start"/"end": per GPU temperature, clock, limit
        """The run's allocated CPUs / the machine's (default: this process's affinity), by which
        static power is shared between runs side by side."""
        self._meter_factory = meter_factory
        self._tracker_factory = tracker_factory
        self._probe_factory = probe_factory
        self._prior = EnergyTotals()
        self._power_t_s: float | None = None  # the trace's t_s at the checkpoint resumed from
        self._node: EnergyTotals | None = None   # this node, final
        self._final: EnergyTotals | None = None  # all nodes, final
        self._wall_s: float | None = None
        self._meter: PowerMeter | None = None
        self._tracker: CarbonTracker | None = None
        self._probe: ContentionProbe | None = None
        self._phase: str | None = None
        self._done_j: dict[str, float] = {}  # per device, closed windows of this segment
        self._phase_dev_j: dict[str, dict[str, float]] = {"train": {}, "eval": {}, "other": {}}
        self._owner = False  # local rank 0: meters the node's CPU and RAM, runs CodeCarbon and the probe
        self._phase_j = {"train": 0.0, "eval": 0.0, "other": 0.0}
        self._before_eval = "train"  # the phase an evaluation returns to
        self._attr_j = {"cpu": 0.0, "ram": 0.0}  # this segment's attributed CPU and RAM energy
        # (cpu J, ram J, own s, busy s, static cpu J, static ram J) at the last sample
        self._attr_last: tuple[float, float, float, float, float, float] | None = None
        self._unattr_j = 0.0  # this segment's part of the remainder (bench.energy.attribution)
        self._attr_share: float | None = None  # of the last interval
        self._notes: list[str] = []
        self._carbon_setup_error: str | None = None
        self._active = False
        self._resumed = False

    @property
    def attributed(self) -> bool:
        """Whether the machine's CPU and RAM energy is split between runs executing side by side."""
        return self.concurrent_runs > 1

    @property
    def meter(self) -> PowerMeter | None:
        """This node's meter (local rank 0 only), e.g. to open extra windows."""
        return self._meter

    # ------------------------------------------------------------------ hooks
    def on_train_start(self, info: RunInfo) -> None:
        self._owner = info.local_rank == 0
        self._resumed = info.resumed
        gpu_ids, sync_fn, n_local = self._gpus(info)
        # every rank meters its own GPUs (bench.energy.ranks); local rank 0 also the node's CPU and RAM
        self._active = self._owner or bool(gpu_ids)
        if not self._active:
            return
        csv_path = (info.run_dir / "power.csv" if info.run_dir is not None and self.write_power_csv
                    and self._owner else None)
        shared = {"estimate_cpus": machine_cpus()} if self.attributed and self._owner else {}
        try:
            self._meter = self._meter_factory(gpu_ids=gpu_ids, cpu=self.cpu if self._owner else "none",
                                              ram=self.ram if self._owner else "none",
                                              interval_s=self.interval_s, csv_path=csv_path,
                                              t_offset_s=info.start_wall_s if self._power_t_s is None
                                              else self._power_t_s, sync_fn=sync_fn,
                                              energy_offset_j=self._prior.energy_j_by_device, **shared)
        except EnergySourceError:
            raise  # only when the user asked for a source this machine cannot give
        except Exception as exc:
            self._notes.append(f"power meter failed to start: {type(exc).__name__}: {exc}")
            log.warning("%s; training continues unmetered", self._notes[-1])
        else:
            self._meter.start()  # idempotent; factories may hand back an unstarted meter
            self._baseline()
            self._meter.begin_window("other")  # start-up until the loop enters training
            self._phase = "other"
        if not self._owner:
            return
        gpu_pids = self._meter.gpu_process_ids if self._meter is not None and gpu_ids else None
        try:
            scope = self._meter.cpu_scope() if self._meter is not None else None
            # contention over the CPUs the CPU energy covers (bench.energy.scope)
            self._probe = self._probe_factory(gpu_pids=gpu_pids, local_ranks=n_local,
                                              **({"cpus": scope} if scope else {}))
            self._probe.sample()
        except Exception as exc:
            self._probe = None
            self._notes.append(f"contention probe failed to start: {type(exc).__name__}: {exc}")
        if self.codecarbon:
            try:
                self._tracker = self._tracker_factory(
                    info.run_dir, country_iso_code=self.country_iso_code,
                    measure_power_secs=self.measure_power_secs, gpu_ids=gpu_ids or None)
                self._tracker.start()
            except Exception as exc:
                self._tracker = None
                self._carbon_setup_error = f"CodeCarbon could not be set up: {type(exc).__name__}: {exc}"

    def _baseline(self) -> None:
        """Before training: the idle window (bench.energy.baseline) and the GPUs' state."""
        assert self._meter is not None
        if self.idle_window_s > 0:
            try:
                self._idle_w = measure_idle_power_w(self._meter, self.idle_window_s, self._sleep)
                self._meter.set_static_power_w(self._idle_w)
            except Exception as exc:  # noqa: BLE001 - a baseline is context, never a reason to stop
                self._notes.append(f"idle baseline failed: {type(exc).__name__}: {exc}")
        self._gpu_state["start"] = self._meter.gpu_state()

    def _gpus(self, info: RunInfo) -> tuple[list[DeviceId], Callable[[], None] | None, int]:
        """(this node's GPUs to meter, a device sync, the node's rank count)."""
        n_local = _local_world_size(info.world_size)
        if info.device.type != "cuda":
            return list(self.gpu_ids or []), None, n_local or 1
        device = info.device

        def sync() -> None:
            torch.cuda.synchronize(device)

        if self.gpu_ids is not None:
            return list(self.gpu_ids), sync, n_local or 1
        # each rank meters the GPU it trains on; ranks sharing one count it once (bench.energy.ranks)
        index = device.index if device.index is not None else torch.cuda.current_device()
        return nvml_ids_for_cuda([index]), sync, n_local or 1

    def _switch(self, phase: str) -> None:
        self._sample_probe()
        if self._meter is None or self._phase is None or self._phase == phase:
            return
        m = self._meter.switch_window(self._phase, phase)
        self._close_phase(m.energy_j_by_device, m.duration_s)
        self._phase = phase

    def _close_phase(self, by_dev: dict[str, float], duration_s: float = 0.0) -> None:
        assert self._phase is not None
        self._phase_s += duration_s
        for d, e in by_dev.items():
            self._done_j[d] = self._done_j.get(d, 0.0) + e
            per_dev = self._phase_dev_j.setdefault(self._phase, {})
            per_dev[d] = per_dev.get(d, 0.0) + e
        self._phase_j[self._phase] += sum(by_dev.values())

    def _sample_probe(self) -> None:
        if self._probe is not None:
            self._probe.sample()
        if self.attributed and self._owner:
            self._attribute_interval()

    def _energy_so_far(self) -> tuple[dict[str, float], dict[str, float], dict[str, dict[str, float]], float]:
        """This segment's energy so far: per device, per phase, and per phase and device (closed
        windows + the open one), and its metered seconds."""
        seconds = self._phase_s
        done = dict(self._done_j)
        phase_j = dict(self._phase_j)
        phase_dev = {p: dict(by_dev) for p, by_dev in self._phase_dev_j.items()}
        if self._meter is not None and self._phase is not None:
            m = self._meter.read_window(self._phase)
            open_dev = phase_dev.setdefault(self._phase, {})
            for d, e in m.energy_j_by_device.items():
                done[d] = done.get(d, 0.0) + e
                open_dev[d] = open_dev.get(d, 0.0) + e
            phase_j[self._phase] += m.total_energy_j
            seconds += m.duration_s
        return done, phase_j, phase_dev, seconds

    def _shared_j(self) -> tuple[float, float]:
        """This segment's CPU and RAM energy so far (the machine's)."""
        done, _, _, _ = self._energy_so_far()
        return (sum(e for d, e in done.items() if component_of(d) == "cpu"),
                sum(e for d, e in done.items() if component_of(d) == "ram"))

    def _attribute_interval(self) -> None:
        """Charge the run its CPU-time share of the machine's CPU and RAM energy since the last sample."""
        try:
            cpu_j, ram_j = self._shared_j()
        except Exception:  # noqa: BLE001 - a meter that cannot be read is reported by the meter
            return
        own_s = self._probe.own_cpu_s if self._probe is not None else 0.0
        busy_s = self._probe.machine_busy_cpu_s if self._probe is not None else 0.0
        static = self._meter.static_energy_j() if self._meter is not None else {}
        last = self._attr_last or (0.0,) * 6
        d_busy = busy_s - last[3]
        if d_busy > 0:
            self._attr_share = min(max((own_s - last[2]) / d_busy, 0.0), 1.0)
        now = (cpu_j, ram_j, own_s, busy_s, static.get("cpu", 0.0), static.get("ram", 0.0))
        d_cpu, d_ram, d_un = self._charge(last, now)
        self._attr_j["cpu"] += d_cpu
        self._attr_j["ram"] += d_ram
        self._unattr_j += d_un
        self._attr_last = now

    def _charge(self, last: tuple[float, ...], now: tuple[float, ...]) -> tuple[float, float, float]:
        """(CPU J, RAM J, unattributed J) charged to the run between two samples: static power by
        allocated CPUs, dynamic by CPU time (bench.energy.attribution)."""
        share = self._attr_share if self._attr_share is not None else 1.0 / self.concurrent_runs
        alloc = self._allocated_share()
        cpu = Interval(now[0] - last[0], now[4] - last[4])
        ram = Interval(now[1] - last[1], now[5] - last[5])
        d_cpu, d_ram = charge_j(cpu, alloc, share), charge_j(ram, alloc, share)
        return d_cpu, d_ram, unattributed_j(cpu.energy_j + ram.energy_j, d_cpu + d_ram, self.concurrent_runs)

    def _allocated_share(self) -> float:
        if self.allocated_cpu_share is None:
            self.allocated_cpu_share = len(affinity_cpus()) / max(1, len(machine_cpus()))
        return self.allocated_cpu_share

    def on_progress(self, event: ProgressEvent) -> bool | None:
        self._sample_probe()
        self._raise_csv_failure()
        return None

    def _raise_csv_failure(self) -> None:
        """A power.csv write that failed (a full disk) stops the run on this thread, naming the file:
        the trace must not go on with a hole the result does not know of (issue 26)."""
        failure = getattr(self._meter, "csv_failure", None)
        if failure is not None:
            raise failure

    def on_phase(self, phase: str, wall_s: float) -> None:
        self._switch(phase)

    def on_eval_start(self, step: int, wall_s: float) -> None:
        if self._phase not in (None, "eval"):  # a seed batch's K evaluations start one after another
            self._before_eval = self._phase
        self._switch("eval")

    def on_eval_end(self, event: EvalEvent) -> None:
        self._switch(self._before_eval)

    def on_train_end(self, event: EndEvent) -> None:
        if self._final is not None:
            return
        self._wall_s = event.wall_s
        self._sample_probe()
        carbon: CarbonResult | None = None
        if self._meter is not None:
            try:
                self._gpu_state["end"] = self._meter.gpu_state()
                if self._phase is not None:
                    m = self._meter.end_window(self._phase)
                    self._close_phase(m.energy_j_by_device, m.duration_s)
                self._meter.stop()
            except Exception as exc:  # the run is over; its result must still be written
                self._notes.append(f"power meter failed to stop: {type(exc).__name__}: {exc}")
            self._phase = None
        if self._tracker is not None:
            carbon = self._tracker.stop()
        self._node = self._prior.plus(self._segment(carbon)) if self._active else EnergyTotals()
        if not self._owner:  # a GPU-only rank: no CodeCarbon of its own, nothing missing
            self._node.codecarbon_emissions_kg = self._node.codecarbon_energy_kwh = None
        self._final = self._reduce(self._node, event.status)
        if event.status == "complete":  # the last rows, written at stop, failed: no result over a holed trace
            self._raise_csv_failure()

    # ------------------------------------------------------------------ accounting
    def _segment(self, carbon: CarbonResult | None) -> EnergyTotals:
        """This node's totals since on_train_start (live while training)."""
        done, phase_j, phase_dev, seconds = self._energy_so_far()
        idle_j = {d: w * seconds for d, w in self._idle_w.items()}
        by_comp: dict[str, list[str]] = {}
        for d in done:
            comp = component_of(d)
            if comp is not None:
                by_comp.setdefault(comp, []).append(d)
        meter = self._meter
        probe = self._probe
        seg = EnergyTotals(
            train_energy_j=phase_j["train"], eval_energy_j=phase_j["eval"], other_energy_j=phase_j["other"],
            **{f"{c}_energy_j": sum(done[d] for d in by_comp.get(c, [])) for c in COMPONENTS},
            components=[c for c in COMPONENTS if c in by_comp],
            component_sources={c: meter.source_label(devs) for c, devs in by_comp.items()} if meter else {},
            component_estimated={c: meter.is_estimated(devs) for c, devs in by_comp.items()} if meter else {},
            models={c: m for c, m in meter.models().items() if c in by_comp} if meter else {},
            foreign_cpu_s=probe.foreign_cpu_s if probe else 0.0,
            observed_cpu_s=probe.observed_cpu_s if probe else 0.0,
            foreign_gpu_processes=probe.foreign_gpu_processes if probe else 0,
            attributed=self.attributed, concurrent_runs=self.concurrent_runs,
            energy_j_by_device=done,
            gpus=gpu_accounts(phase_dev, meter.device_coverage(), meter.device_uuids(), idle_w=self._idle_w,
                              idle_j=idle_j, checks=meter.counter_checks()) if meter else {},
            idle_window_s=self.idle_window_s if self._idle_w else 0.0,
            idle_power_w={c: w for c, w in by_component(self._idle_w).items() if c != "gpu"},
            idle_j={c: j for c, j in by_component(idle_j).items() if c != "gpu"},
            coverage_s={c: list(v) for c, v in meter.coverage().items() if c != "gpu"} if meter else {},
            sources=[meter.source] if meter is not None else [],
            estimated=meter.estimated if meter is not None else False,
            meter_errors=list(self._notes) + (list(meter.errors) if meter is not None else [])
            + ([probe.error] if probe is not None and probe.error else []),
        )
        if self.attributed:
            # the energy read after the last sample is charged at the last interval's share
            # the energy read after the last sample: charged at the last interval's shares
            last = self._attr_last or (0.0,) * 6
            static = meter.static_energy_j() if meter is not None else {}
            d_cpu, d_ram, d_un = self._charge(last, (seg.cpu_energy_j, seg.ram_energy_j, 0.0, 0.0,
                                                     static.get("cpu", 0.0), static.get("ram", 0.0)))
            seg.cpu_attributed_j = self._attr_j["cpu"] + d_cpu
            seg.ram_attributed_j = self._attr_j["ram"] + d_ram
            seg.unattributed_j = self._unattr_j + d_un
            if self._attr_share is None and self._probe is not None:
                seg.meter_errors.append(f"CPU time share not measured: the machine's CPU and RAM energy split "
                                        f"evenly over {self.concurrent_runs} concurrent runs")
        else:
            seg.cpu_attributed_j, seg.ram_attributed_j = seg.cpu_energy_j, seg.ram_energy_j
        if not self.codecarbon:
            seg.codecarbon_emissions_kg = seg.codecarbon_energy_kwh = None
            seg.emissions_errors = ["CodeCarbon disabled"]
        elif carbon is None:
            seg.codecarbon_emissions_kg = seg.codecarbon_energy_kwh = None
            seg.emissions_errors = [self._carbon_setup_error or "CodeCarbon has not reported yet"]
        else:
            seg.codecarbon_emissions_kg = carbon.emissions_kg
            seg.codecarbon_energy_kwh = carbon.energy_kwh if carbon.emissions_kg is not None else None
            seg.emissions_errors = [carbon.error] if carbon.error else []
        if self._tracker is not None:
            seg.emissions_errors += list(self._tracker.errors)
        return seg

    def _reduce(self, node: EnergyTotals, status: str) -> EnergyTotals:
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return node
        if status != "complete":
            # A rank that failed may never reach a collective; don't hang the others on it.
            out = EnergyTotals(**{**asdict(node)})
            out.meter_errors = node.meter_errors + [f"run {status}: totals cover this node only"]
            return out
        # CPU, RAM and CodeCarbon: each node's local rank 0 adds its node's; GPUs: gathered per GPU
        # identity from every rank and counted once (bench.energy.ranks)
        owner = 1.0 if self._owner and self._active else 0.0
        own_gpu = gpu_sums(node.gpus)
        cov = {c: node.coverage_s.get(c, [0.0, 0.0]) for c in ("cpu", "ram")}
        vec = [node.train_energy_j - own_gpu["train_j"], node.eval_energy_j - own_gpu["eval_j"],
               node.other_energy_j - own_gpu["other_j"], node.cpu_energy_j, node.ram_energy_j,
               node.codecarbon_emissions_kg or 0.0, node.codecarbon_energy_kwh or 0.0,
               node.foreign_cpu_s, node.observed_cpu_s, float(node.foreign_gpu_processes),
               node.cpu_attributed_j, node.ram_attributed_j, *cov["cpu"], *cov["ram"], node.unattributed_j,
               *(node.idle_j.get(c, 0.0) for c in ("cpu", "ram")), *(node.idle_power_w.get(c, 0.0) for c in ("cpu", "ram"))]
        vec = [owner * v for v in vec] + [
            owner * (node.codecarbon_emissions_kg is None), owner * node.estimated, owner,
            owner * bool(node.emissions_errors), *(owner * (c in node.components) for c in ("cpu", "ram"))]
        backend = str(dist.get_backend())
        device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        t = torch.tensor(vec, dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        (train_j, eval_j, other_j, cpu_j, ram_j, kg, kwh, foreign_s, observed_s, foreign_gpu, cpu_attr_j, ram_attr_j,
         cpu_met_s, cpu_win_s, ram_met_s, ram_win_s, unattr_j, cpu_idle_j, ram_idle_j, cpu_idle_w, ram_idle_w,
         n_missing, n_est, n_nodes, n_cc_err, *n_comp) = t.cpu().tolist()
        mine = {"gpus": node.gpus, "source": node.component_sources.get("gpu", ""), "state": self._gpu_state,
                "estimated": bool(node.component_estimated.get("gpu")), "errors": list(node.meter_errors)}
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, mine)
        gpus = dedup_ranks(g["gpus"] for g in gathered)
        for when in ("start", "end"):  # every rank's GPUs' state, each GPU once
            merged: dict[str, Any] = {}
            for g in gathered:
                for ident, st in (g["state"] or {}).get(when, {}).items():
                    merged.setdefault(ident, st)
            if merged:
                self._gpu_state[when] = merged
        gpu = gpu_sums(gpus)
        meter_errors = list(node.meter_errors)
        for rank, g in enumerate(gathered):
            if rank != dist.get_rank():
                meter_errors += [f"rank {rank}: {e}" for e in g["errors"] if e not in meter_errors]
        emissions_errors = list(node.emissions_errors)
        others_cc = int(n_cc_err) - int(owner * bool(node.emissions_errors))
        if others_cc > 0:
            emissions_errors.append(f"{others_cc} other node(s) reported CodeCarbon errors (see their logs)")
        if self._resumed and n_nodes > 1:
            meter_errors.append("resumed multi-node run: each node's pre-resume energy came from its own checkpoint")
        comps = (["gpu"] if gpus else []) + [c for c, n in zip(("cpu", "ram"), n_comp) if n > 0]
        sources = dict(node.component_sources)
        estimated = dict(node.component_estimated)
        if gpus:
            sources["gpu"] = "+".join(dict.fromkeys(x for g in gathered for x in g["source"].split("+") if x))
            estimated["gpu"] = any(g["estimated"] for g in gathered)
        return EnergyTotals(
            train_energy_j=train_j + gpu["train_j"], eval_energy_j=eval_j + gpu["eval_j"],
            other_energy_j=other_j + gpu["other_j"],
            gpu_energy_j=gpu["train_j"] + gpu["eval_j"] + gpu["other_j"], cpu_energy_j=cpu_j, ram_energy_j=ram_j,
            components=[c for c in COMPONENTS if c in comps],
            component_sources=sources, component_estimated=estimated,
            models=node.models,
            codecarbon_emissions_kg=None if n_missing > 0 else kg, codecarbon_energy_kwh=None if n_missing > 0 else kwh,
            foreign_cpu_s=foreign_s, observed_cpu_s=observed_s, foreign_gpu_processes=int(foreign_gpu),
            cpu_attributed_j=cpu_attr_j, ram_attributed_j=ram_attr_j, unattributed_j=unattr_j,
            attributed=node.attributed, concurrent_runs=node.concurrent_runs,
            sources=list(dict.fromkeys(node.sources + ([sources["gpu"]] if gpus and not owner else []))),
            estimated=n_est > 0 or estimated.get("gpu", False), meter_errors=meter_errors,
            emissions_errors=emissions_errors, energy_j_by_device=dict(node.energy_j_by_device),
            gpus=gpus, coverage_s={"cpu": [cpu_met_s, cpu_win_s], "ram": [ram_met_s, ram_win_s]},
            idle_window_s=node.idle_window_s,
            idle_power_w={c: w for c, w in (("cpu", cpu_idle_w), ("ram", ram_idle_w)) if c in node.idle_power_w},
            idle_j={c: j for c, j in (("cpu", cpu_idle_j), ("ram", ram_idle_j)) if c in node.idle_j})

    def _raw(self) -> EnergyTotals | None:
        """The account so far with the machine's CPU and RAM energy whole (before attribution)."""
        if self._final is not None:
            return self._final
        if not self._active:
            return None
        return self._prior.plus(self._segment(None))

    def _current(self) -> EnergyTotals | None:
        raw = self._raw()
        return None if raw is None else self._attribute(raw)

    @staticmethod
    def _share(totals: EnergyTotals) -> float | None:
        """Attributed CPU and RAM energy over the machine's (None for a run that was never attributed)."""
        if not totals.attributed:
            return None
        shared_j = totals.cpu_energy_j + totals.ram_energy_j
        return (totals.cpu_attributed_j + totals.ram_attributed_j) / shared_j if shared_j > 0 else None

    @staticmethod
    def _attribute(totals: EnergyTotals) -> EnergyTotals:
        """The run's part of the machine's CPU and RAM energy (module docstring); GPUs are its own."""
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

    def total_energy_j(self) -> float | None:
        """Cumulative energy so far, including before a resume (None on ranks that don't meter)."""
        cur = self._current()
        return None if cur is None else cur.energy_j

    def result_fields(self) -> dict[str, Any]:
        """The per-run account for result.json / summary.csv (exactly bench.schema.ENERGY_COLUMNS +
        METER_COLUMNS)."""
        raw = self._raw()
        cur = (self._attribute(raw) if raw is not None else None) or \
            EnergyTotals(codecarbon_emissions_kg=None, codecarbon_energy_kwh=None)
        wall_s = self._wall_s
        energy_j = cur.energy_j if cur.components else None
        intensity = self.carbon_intensity_g_per_kwh
        emissions_kg = energy_j / J_PER_KWH * intensity / 1000.0 if energy_j is not None and intensity else None
        cc_kwh = cur.codecarbon_energy_kwh
        out: dict[str, Any] = {
            "energy_j": energy_j,
            "energy_source": "+".join(dict.fromkeys([*(s for src in cur.sources for s in src.split("+")),
                                                     *(["attributed"] if cur.attributed else [])])) or "none",
            "estimated": bool(cur.estimated),
            "avg_power_w": energy_j / wall_s if energy_j is not None and wall_s and wall_s > 0 else None,
        }
        for c in COMPONENTS:
            metered = c in cur.components
            out[f"{c}_energy_j"] = getattr(cur, f"{c}_energy_j") if metered else None
            out[f"{c}_source"] = cur.component_sources.get(c) if metered else None
            out[f"{c}_estimated"] = bool(cur.component_estimated.get(c)) if metered else None
        out.update({
            "cpu_power_model": cur.models.get("cpu"),
            "ram_power_model": cur.models.get("ram"),
            "train_energy_j": cur.train_energy_j,
            "eval_energy_j": cur.eval_energy_j,
            "country": self.country_iso_code,
            "carbon_intensity_g_per_kwh": intensity,
            "emissions_kg": emissions_kg,
            "codecarbon_energy_kwh": cc_kwh,
            "codecarbon_emissions_kg": cur.codecarbon_emissions_kg,
            "codecarbon_energy_ratio": cc_kwh * J_PER_KWH / energy_j if cc_kwh is not None and energy_j else None,
            "foreign_cpu_share": cur.foreign_cpu_s / cur.observed_cpu_s if cur.observed_cpu_s > 0 else None,
            "foreign_gpu_processes": cur.foreign_gpu_processes if "gpu" in cur.components else None,
            "concurrent_runs": max(cur.concurrent_runs, self.concurrent_runs),
            "attributed_share": self._share(raw) if raw is not None else None,
            "emissions_error": None if emissions_kg is not None or energy_j is None
            else f"no carbon intensity for {self.country_iso_code} (CodeCarbon's data unavailable)",
            "codecarbon_error": "; ".join(cur.emissions_errors) or None,
            "meter_errors": "; ".join(cur.meter_errors) or None,
        })
        meter = meter_fields(cur, out, self._allocated_share() if cur.attributed else 1.0)
        out["meter_errors"] = "; ".join([*cur.meter_errors, *meter.pop("_problems")]) or None
        out.update(meter)
        if self._gpu_state.get("start") or self._gpu_state.get("end"):
            out["gpu_state"] = dict(self._gpu_state)  # result.json only: per GPU, at start and end
        return out

    def phase_fields(self) -> dict[str, Any]:
        """The energy of the third phase (spikerl.phases): energy_j = train + eval + other."""
        cur = self._current()
        return {"other_energy_j": cur.other_energy_j if cur is not None and cur.components else None}

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        """This node's totals so far (CodeCarbon is flushed so its figures survive a crash)."""
        if self._node is not None:
            return asdict(self._node)
        if not self._active:
            return {}
        power_t_s = None
        if self._meter is not None:  # the trace up to this checkpoint on disk: a kill after it loses no row
            power_t_s = self._meter.t_s_now()  # the resumed trace continues from here, in its own time base
            self._meter.flush()
        self._raise_csv_failure()  # before the checkpoint is written: the previous one stays the latest
        self._sample_probe()
        flush = getattr(self._tracker, "flush", None)
        carbon = flush() if flush is not None else None
        seg = self._segment(carbon)
        if self.codecarbon and carbon is None:
            seg.emissions_errors.append("CodeCarbon could not report at a checkpoint: its figures before it are "
                                        "missing after a resume")
        return {**asdict(self._prior.plus(seg)), "power_t_s": power_t_s}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self._prior = EnergyTotals.from_dict(state)
            t = state.get("power_t_s")
            self._power_t_s = float(t) if type(t) in (int, float) and math.isfinite(t) and t >= 0 else None
