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

The idle baseline (bench.energy.baseline): before training, with `idle_window_s` > 0, the run
sits idle for that long on its meters and records each device's idle power, from which each
component's dynamic (idle-subtracted) energy follows. Only a run alone on its machine may take
its own window: beside other runs of its sweep (`concurrent_runs` > 1) an idle window would
measure a sibling's training, so such a run uses the idle power its sweep measured on this host
before any run started (`sweep_idle`, bench.run.idle), or records that it has none.
"""
from __future__ import annotations

import logging
import math
import os
import socket
import time
from dataclasses import asdict
from typing import Any, Callable, Sequence

import torch

from bench.energy.attribution import RunCharges
from bench.energy.base import COMPONENTS, EnergySourceError, component_of
from bench.energy.baseline import SweepIdle, by_component, measure_idle_power_w
from bench.energy.carbon import (
    DEFAULT_COUNTRY,
    CarbonResult,
    CarbonTracker,
    carbon_intensity_g_per_kwh,
    validate_country,
)
from bench.energy.contention import ContentionProbe
from bench.energy.estimate import affinity_cpus, machine_cpus
from bench.energy.meter import PowerMeter
from bench.energy.nvml import DeviceId, nvml_ids_for_cuda
from bench.energy.ranks import gpu_accounts
from bench.energy.reduce import reduce_totals
from bench.energy.result import J_PER_KWH, result_fields
from bench.energy.totals import EnergyTotals, attribute
from bench.energy.windows import PhaseWindows
from spikerl.callbacks import Callback, EndEvent, EvalEvent, ProgressEvent, RunInfo

__all__ = ["J_PER_KWH", "EnergyCallback", "EnergyTotals"]  # EnergyTotals lived here; importers keep working

log = logging.getLogger(__name__)

_LOCAL_SIZE_VARS = ("LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE")


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
                 sweep_idle: SweepIdle | None = None, sleep_fn: Callable[[float], None] = time.sleep):
        """`gpu_ids`: NVML indices or UUIDs of this node's GPUs; by default local ranks
        0..LOCAL_WORLD_SIZE-1 are taken to use cuda:0..N-1. `cpu`, `ram`: 'auto' | 'rapl' |
        'estimate' | 'none'. `concurrent_runs`: runs executing at once on this machine, this one
        included (module docstring). `idle_window_s`: the idle baseline's length (0: none);
        `sweep_idle`: the idle power the sweep measured before its runs, for runs side by side.
        Bad country codes fail here, before training starts."""
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
        """The run's allocated CPUs / the machine's (default: this process's affinity), by which
        static power is shared between runs side by side."""
        window_s = float(idle_window_s)
        self.idle_window_s = window_s if math.isfinite(window_s) and window_s > 0 else 0.0
        self.sweep_idle = sweep_idle
        self._sleep = sleep_fn
        self._idle_w: dict[str, float] = {}  # per device, this segment's idle baseline
        self._idle_s = 0.0  # the length of the window that measured it
        self._idle_from = ""  # 'run' (its own window) or 'sweep' (the sweep's, before any run)
        self._gpu_state: dict[str, dict[str, Any]] = {}  # "start"/"end": per GPU temperature, clock, limit
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
        self._windows = PhaseWindows()  # this segment's train / eval / other windows
        self._owner = False  # local rank 0: meters the node's CPU and RAM, runs CodeCarbon and the probe
        self._before_eval = "train"  # the phase an evaluation returns to
        self._charges = RunCharges(self.concurrent_runs, self._allocated_share)  # this segment's, attributed
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

    @property
    def _phase(self) -> str | None:
        return self._windows.phase

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
            self._windows.open(self._meter, "other")  # start-up until the loop enters training
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
        """Before training: the idle baseline (module docstring) and the GPUs' state."""
        assert self._meter is not None
        sweep = self.sweep_idle
        if sweep is not None and sweep.host != socket.gethostname():
            self._notes.append(f"idle baseline of host {sweep.host} not used on {socket.gethostname()}")
            sweep = None
        if sweep is not None and self.attributed:
            devices = set(self._meter.device_coverage())
            self._idle_w = {d: w for d, w in sweep.power_w.items() if d in devices}
            self._idle_s, self._idle_from = sweep.idle_window_s, "sweep"
            missing = sorted(devices - set(self._idle_w))
            if missing:
                self._notes.append(f"the sweep's idle baseline lacks {', '.join(missing)}")
        elif self.idle_window_s > 0 and self.attributed:
            self._notes.append(f"idle baseline skipped: {self.concurrent_runs} runs of the sweep may train side by "
                               "side here, so no window is idle (the local launcher measures one per sweep; "
                               "--jobs 1 lets each run take its own)")
        elif self.idle_window_s > 0:
            try:
                self._idle_w = measure_idle_power_w(self._meter, self.idle_window_s, self._sleep)
                self._idle_s, self._idle_from = self.idle_window_s, "run"
            except Exception as exc:  # noqa: BLE001 - a baseline is context, never a reason to stop
                self._notes.append(f"idle baseline failed: {type(exc).__name__}: {exc}")
        if self._idle_w:
            self._meter.set_static_power_w(self._idle_w)
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
        self._windows.switch(phase)

    def _sample_probe(self) -> None:
        if self._probe is not None:
            self._probe.sample()
        if self.attributed and self._owner:
            self._attribute_interval()

    def _shared_j(self) -> tuple[float, float]:
        """This segment's CPU and RAM energy so far (the machine's)."""
        done, _, _, _ = self._windows.so_far()
        return (sum(e for d, e in done.items() if component_of(d) == "cpu"),
                sum(e for d, e in done.items() if component_of(d) == "ram"))

    def _attribute_interval(self) -> None:
        """Charge the run its share of the machine's CPU and RAM energy since the last sample
        (bench.energy.attribution: static power by allocated CPUs, dynamic by CPU time)."""
        try:
            cpu_j, ram_j = self._shared_j()
        except Exception:  # noqa: BLE001 - a meter that cannot be read is reported by the meter
            return
        own_s = self._probe.own_cpu_s if self._probe is not None else 0.0
        busy_s = self._probe.machine_busy_cpu_s if self._probe is not None else 0.0
        static = self._meter.static_energy_j() if self._meter is not None else {}
        self._charges.sample(cpu_j, ram_j, own_s, busy_s, static.get("cpu", 0.0), static.get("ram", 0.0))

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
            self._before_eval = str(self._phase)
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
                self._windows.end()
                self._meter.stop()
            except Exception as exc:  # the run is over; its result must still be written
                self._notes.append(f"power meter failed to stop: {type(exc).__name__}: {exc}")
        if self._tracker is not None:
            carbon = self._tracker.stop()
        self._node = self._prior.plus(self._segment(carbon)) if self._active else EnergyTotals()
        if not self._owner:  # a GPU-only rank: no CodeCarbon of its own, nothing missing
            self._node.codecarbon_emissions_kg = self._node.codecarbon_energy_kwh = None
        self._final = reduce_totals(self._node, event.status, owner_active=self._owner and self._active,
                                    resumed=self._resumed, gpu_state=self._gpu_state)
        if event.status == "complete":  # the last rows, written at stop, failed: no result over a holed trace
            self._raise_csv_failure()

    # ------------------------------------------------------------------ accounting
    def _segment(self, carbon: CarbonResult | None) -> EnergyTotals:
        """This node's totals since on_train_start (live while training)."""
        done, phase_j, phase_dev, seconds = self._windows.so_far()
        idle_j = {d: w * seconds for d, w in self._idle_w.items()}
        by_comp: dict[str, list[str]] = {}
        for d in done:
            comp = component_of(d)
            if comp is not None:
                by_comp.setdefault(comp, []).append(d)
        comp_j = {c: sum(done[d] for d in by_comp.get(c, [])) for c in COMPONENTS}
        meter = self._meter
        probe = self._probe
        seg = EnergyTotals(
            train_energy_j=phase_j["train"], eval_energy_j=phase_j["eval"], other_energy_j=phase_j["other"],
            gpu_energy_j=comp_j["gpu"], cpu_energy_j=comp_j["cpu"], ram_energy_j=comp_j["ram"],
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
            idle_window_s=self._idle_s if self._idle_w else 0.0, idle_baseline=self._idle_from if self._idle_w else "",
            idle_power_w={c: w for c, w in by_component(self._idle_w).items() if c != "gpu"},
            idle_j={c: j for c, j in by_component(idle_j).items() if c != "gpu"},
            coverage_s={c: list(v) for c, v in meter.coverage().items() if c != "gpu"} if meter else {},
            sources=[meter.source] if meter is not None else [],
            estimated=meter.estimated if meter is not None else False,
            meter_errors=list(self._notes) + (list(meter.errors) if meter is not None else [])
            + ([probe.error] if probe is not None and probe.error else []),
        )
        if self.attributed:
            static = meter.static_energy_j() if meter is not None else {}
            seg.cpu_attributed_j, seg.ram_attributed_j, seg.unattributed_j = self._charges.totals(
                seg.cpu_energy_j, seg.ram_energy_j, static.get("cpu", 0.0), static.get("ram", 0.0))
            if self._charges.share is None and self._probe is not None:
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

    def _raw(self) -> EnergyTotals | None:
        """The account so far with the machine's CPU and RAM energy whole (before attribution)."""
        if self._final is not None:
            return self._final
        if not self._active:
            return None
        return self._prior.plus(self._segment(None))

    def _current(self) -> EnergyTotals | None:
        raw = self._raw()
        return None if raw is None else attribute(raw)

    def total_energy_j(self) -> float | None:
        """Cumulative energy so far, including before a resume (None on ranks that don't meter)."""
        cur = self._current()
        return None if cur is None else cur.energy_j

    def result_fields(self) -> dict[str, Any]:
        """The per-run account for result.json / summary.csv (exactly bench.schema.ENERGY_COLUMNS +
        METER_COLUMNS; bench.energy.result)."""
        return result_fields(self._raw(), wall_s=self._wall_s, country=self.country_iso_code,
                             intensity=self.carbon_intensity_g_per_kwh, concurrent_runs=self.concurrent_runs,
                             allocated_share=self._allocated_share, gpu_state=self._gpu_state)

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
            self._power_t_s = None
            if isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) and t >= 0:
                self._power_t_s = float(t)
