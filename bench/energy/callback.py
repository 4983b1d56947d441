"""EnergyCallback: the run's time, energy and carbon account, plugged into the harness.

One power meter and one CodeCarbon tracker per node, owned by local rank 0 and covering
that node's GPUs and its CPU. Training and evaluation are separate meter windows, switched
on one reading so that train + eval is the whole measured energy. Totals before a resume
come back through `state_dict` / `load_state_dict` (each rank checkpoints its own node's
totals). At the end of a completed distributed run the node totals are summed over nodes
with one all_reduce in which only local-rank-0 processes contribute.

Call `total_energy_j()` for the cumulative energy column of progress.csv / evals.csv
(node-local until the run ends), and `result_fields()` after training for result.json.
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field, fields as dc_fields
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist

from bench.energy.carbon import DEFAULT_COUNTRY, CarbonResult, CarbonTracker, validate_country
from bench.energy.base import EnergySourceError
from bench.energy.meter import PowerMeter
from bench.energy.nvml import DeviceId, nvml_ids_for_cuda
from spikerl.callbacks import Callback, EndEvent, EvalEvent, RunInfo

log = logging.getLogger(__name__)

_LOCAL_SIZE_VARS = ("LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE")


@dataclass
class EnergyTotals:
    """One node's (or, after the reduce, all nodes') account. emissions None = missing, not zero."""

    train_energy_j: float = 0.0
    eval_energy_j: float = 0.0
    gpu_energy_j: float = 0.0
    cpu_energy_j: float = 0.0
    emissions_kg: float | None = 0.0
    codecarbon_energy_kwh: float | None = 0.0
    sources: list[str] = field(default_factory=list)
    estimated: bool = False
    meter_errors: list[str] = field(default_factory=list)
    emissions_errors: list[str] = field(default_factory=list)
    energy_j_by_device: dict[str, float] = field(default_factory=dict)
    """This node's devices only: continues power.csv's cumulative column after a resume."""

    @property
    def energy_j(self) -> float:
        return self.train_energy_j + self.eval_energy_j

    def plus(self, other: "EnergyTotals") -> "EnergyTotals":
        return EnergyTotals(
            train_energy_j=self.train_energy_j + other.train_energy_j,
            eval_energy_j=self.eval_energy_j + other.eval_energy_j,
            gpu_energy_j=self.gpu_energy_j + other.gpu_energy_j,
            cpu_energy_j=self.cpu_energy_j + other.cpu_energy_j,
            emissions_kg=_add_or_none(self.emissions_kg, other.emissions_kg),
            codecarbon_energy_kwh=_add_or_none(self.codecarbon_energy_kwh, other.codecarbon_energy_kwh),
            sources=list(dict.fromkeys(self.sources + other.sources)),
            estimated=self.estimated or other.estimated,
            meter_errors=self.meter_errors + other.meter_errors,
            emissions_errors=self.emissions_errors + other.emissions_errors,
            energy_j_by_device={d: self.energy_j_by_device.get(d, 0.0) + other.energy_j_by_device.get(d, 0.0)
                                for d in {**self.energy_j_by_device, **other.energy_j_by_device}},
        )

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "EnergyTotals":
        known = {f.name for f in dc_fields(cls)}
        return cls(**{k: v for k, v in state.items() if k in known})


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
                 measure_power_secs: float = 15.0, codecarbon: bool = True, cpu: str = "auto",
                 gpu_ids: Sequence[DeviceId] | None = None, write_power_csv: bool = True,
                 meter_factory: Callable[..., PowerMeter] = PowerMeter.create,
                 tracker_factory: Callable[..., CarbonTracker] = CarbonTracker):
        """`gpu_ids`: NVML indices or UUIDs of this node's GPUs; by default local ranks
        0..LOCAL_WORLD_SIZE-1 are taken to use cuda:0..N-1. `cpu`: 'auto' | 'rapl' |
        'estimate' | 'none'. Bad country codes fail here, before training starts."""
        self.interval_s = interval_s
        self.country_iso_code = validate_country(country_iso_code)
        self.measure_power_secs = measure_power_secs
        self.codecarbon = codecarbon
        self.cpu = cpu
        self.gpu_ids = list(gpu_ids) if gpu_ids is not None else None
        self.write_power_csv = write_power_csv
        self._meter_factory = meter_factory
        self._tracker_factory = tracker_factory
        self._prior = EnergyTotals()
        self._node: EnergyTotals | None = None   # this node, final
        self._final: EnergyTotals | None = None  # all nodes, final
        self._wall_s: float | None = None
        self._meter: PowerMeter | None = None
        self._tracker: CarbonTracker | None = None
        self._phase: str | None = None
        self._done_j: dict[str, float] = {}  # per device, closed windows of this segment
        self._phase_j = {"train": 0.0, "eval": 0.0}
        self._notes: list[str] = []
        self._carbon_setup_error: str | None = None
        self._active = False
        self._resumed = False

    @property
    def meter(self) -> PowerMeter | None:
        """This node's meter (local rank 0 only), e.g. to open extra windows."""
        return self._meter

    # ------------------------------------------------------------------ hooks
    def on_train_start(self, info: RunInfo) -> None:
        self._active = info.local_rank == 0
        self._resumed = info.resumed
        if not self._active:
            return
        gpu_ids, sync_fn = self._gpus(info)
        csv_path = info.run_dir / "power.csv" if info.run_dir is not None and self.write_power_csv else None
        try:
            self._meter = self._meter_factory(gpu_ids=gpu_ids, cpu=self.cpu, interval_s=self.interval_s,
                                              csv_path=csv_path, t_offset_s=info.start_wall_s, sync_fn=sync_fn,
                                              energy_offset_j=self._prior.energy_j_by_device)
        except EnergySourceError:
            raise  # only when the user asked for a source this machine cannot give
        except Exception as exc:
            self._notes.append(f"power meter failed to start: {type(exc).__name__}: {exc}")
            log.warning("%s; training continues unmetered", self._notes[-1])
        else:
            self._meter.start()  # idempotent; factories may hand back an unstarted meter
            self._meter.begin_window("train")
            self._phase = "train"
        if self.codecarbon:
            try:
                self._tracker = self._tracker_factory(
                    info.run_dir, country_iso_code=self.country_iso_code,
                    measure_power_secs=self.measure_power_secs, gpu_ids=gpu_ids or None)
                self._tracker.start()
            except Exception as exc:
                self._tracker = None
                self._carbon_setup_error = f"CodeCarbon could not be set up: {type(exc).__name__}: {exc}"

    def _gpus(self, info: RunInfo) -> tuple[list[DeviceId], Callable[[], None] | None]:
        if info.device.type != "cuda":
            return (list(self.gpu_ids or []), None)
        device = info.device

        def sync() -> None:
            torch.cuda.synchronize(device)

        if self.gpu_ids is not None:
            return list(self.gpu_ids), sync
        n_local = _local_world_size(info.world_size)
        if n_local is None:
            n_local = 1
            self._notes.append("local world size unknown (no LOCAL_WORLD_SIZE): only this rank's GPU is "
                               "metered; pass gpu_ids to meter every GPU of the node")
        # local rank r runs on cuda:(r mod device count) (spikerl.distributed.init_distributed), so
        # several ranks sharing one GPU meter that GPU once
        count = max(1, torch.cuda.device_count())
        cuda = sorted({r % count for r in range(n_local)}) if n_local > 1 else \
            [device.index if device.index is not None else torch.cuda.current_device()]
        return nvml_ids_for_cuda(cuda), sync

    def _switch(self, phase: str) -> None:
        if self._meter is None or self._phase is None or self._phase == phase:
            return
        m = self._meter.switch_window(self._phase, phase)
        self._close_phase(m.energy_j_by_device)
        self._phase = phase

    def _close_phase(self, by_dev: dict[str, float]) -> None:
        assert self._phase is not None
        for d, e in by_dev.items():
            self._done_j[d] = self._done_j.get(d, 0.0) + e
        self._phase_j[self._phase] += sum(by_dev.values())

    def on_eval_start(self, step: int, wall_s: float) -> None:
        self._switch("eval")

    def on_eval_end(self, event: EvalEvent) -> None:
        self._switch("train")

    def on_train_end(self, event: EndEvent) -> None:
        if self._final is not None:
            return
        self._wall_s = event.wall_s
        carbon: CarbonResult | None = None
        if self._meter is not None:
            try:
                if self._phase is not None:
                    self._close_phase(self._meter.end_window(self._phase).energy_j_by_device)
                self._meter.stop()
            except Exception as exc:  # the run is over; its result must still be written
                self._notes.append(f"power meter failed to stop: {type(exc).__name__}: {exc}")
            self._phase = None
        if self._tracker is not None:
            carbon = self._tracker.stop()
        self._node = self._prior.plus(self._segment(carbon)) if self._active else EnergyTotals()
        self._final = self._reduce(self._node, event.status)

    # ------------------------------------------------------------------ accounting
    def _segment(self, carbon: CarbonResult | None) -> EnergyTotals:
        """This node's totals since on_train_start (live while training)."""
        done = dict(self._done_j)
        phase_j = dict(self._phase_j)
        if self._meter is not None and self._phase is not None:
            m = self._meter.read_window(self._phase)
            for d, e in m.energy_j_by_device.items():
                done[d] = done.get(d, 0.0) + e
            phase_j[self._phase] += m.total_energy_j
        seg = EnergyTotals(
            train_energy_j=phase_j["train"], eval_energy_j=phase_j["eval"],
            gpu_energy_j=sum(e for d, e in done.items() if d.startswith("gpu")),
            cpu_energy_j=sum(e for d, e in done.items() if d.startswith("cpu")),
            energy_j_by_device=done,
            sources=[self._meter.source] if self._meter is not None else [],
            estimated=self._meter.estimated if self._meter is not None else False,
            meter_errors=list(self._notes) + (list(self._meter.errors) if self._meter is not None else []),
        )
        if not self.codecarbon:
            seg.emissions_kg = seg.codecarbon_energy_kwh = None
            seg.emissions_errors = ["CodeCarbon disabled"]
        elif carbon is None:
            seg.emissions_kg = seg.codecarbon_energy_kwh = None
            seg.emissions_errors = [self._carbon_setup_error or "CodeCarbon has not reported yet"]
        else:
            seg.emissions_kg = carbon.emissions_kg
            seg.codecarbon_energy_kwh = carbon.energy_kwh if carbon.emissions_kg is not None else None
            seg.emissions_errors = [carbon.error] if carbon.error else []
        return seg

    def _reduce(self, node: EnergyTotals, status: str) -> EnergyTotals:
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return node
        if status != "complete":
            # A rank that failed may never reach a collective; don't hang the others on it.
            out = EnergyTotals(**{**asdict(node)})
            out.meter_errors = node.meter_errors + [f"run {status}: totals cover this node only"]
            return out
        active = 1.0 if self._active else 0.0
        vec = [node.train_energy_j, node.eval_energy_j, node.gpu_energy_j, node.cpu_energy_j,
               node.emissions_kg or 0.0, node.codecarbon_energy_kwh or 0.0,
               active * (node.emissions_kg is None), active * node.estimated, active,
               active * bool(node.meter_errors), active * bool(node.emissions_errors)]
        backend = str(dist.get_backend())
        device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        t = torch.tensor(vec, dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        (train_j, eval_j, gpu_j, cpu_j, kg, kwh, n_missing, n_est, n_nodes,
         n_meter_err, n_cc_err) = t.cpu().tolist()
        meter_errors = list(node.meter_errors)
        emissions_errors = list(node.emissions_errors)
        others_meter = int(n_meter_err) - int(active * bool(node.meter_errors))
        others_cc = int(n_cc_err) - int(active * bool(node.emissions_errors))
        if others_meter > 0:
            meter_errors.append(f"{others_meter} other node(s) reported meter errors (see their logs)")
        if others_cc > 0:
            emissions_errors.append(f"{others_cc} other node(s) reported CodeCarbon errors (see their logs)")
        if self._resumed and n_nodes > 1:
            meter_errors.append("resumed multi-node run: each node's pre-resume energy came from its own checkpoint")
        return EnergyTotals(
            train_energy_j=train_j, eval_energy_j=eval_j, gpu_energy_j=gpu_j, cpu_energy_j=cpu_j,
            emissions_kg=None if n_missing > 0 else kg, codecarbon_energy_kwh=None if n_missing > 0 else kwh,
            sources=node.sources, estimated=n_est > 0, meter_errors=meter_errors,
            emissions_errors=emissions_errors, energy_j_by_device=dict(node.energy_j_by_device))

    def _current(self) -> EnergyTotals | None:
        if self._final is not None:
            return self._final
        if not self._active:
            return None
        return self._prior.plus(self._segment(None))

    def total_energy_j(self) -> float | None:
        """Cumulative energy so far, including before a resume (None on ranks that don't meter)."""
        cur = self._current()
        return None if cur is None else cur.energy_j

    def result_fields(self) -> dict[str, Any]:
        """The per-run accounting for result.json / summary.csv (exactly bench.schema.ENERGY_COLUMNS)."""
        cur = self._current() or EnergyTotals(emissions_kg=None, codecarbon_energy_kwh=None)
        wall_s = self._wall_s
        energy_j = cur.energy_j
        return {
            "energy_j": energy_j,
            "energy_source": "+".join(dict.fromkeys(s for src in cur.sources for s in src.split("+"))) or "none",
            "estimated": bool(cur.estimated),
            "avg_power_w": energy_j / wall_s if wall_s and wall_s > 0 else None,
            "gpu_energy_j": cur.gpu_energy_j,
            "cpu_energy_j": cur.cpu_energy_j,
            "train_energy_j": cur.train_energy_j,
            "eval_energy_j": cur.eval_energy_j,
            "emissions_kg": cur.emissions_kg,
            "codecarbon_energy_kwh": cur.codecarbon_energy_kwh,
            "emissions_error": "; ".join(cur.emissions_errors) or None,
            "meter_errors": "; ".join(cur.meter_errors) or None,
        }

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        """This node's totals so far (CodeCarbon is flushed so emissions survive a crash)."""
        if self._node is not None:
            return asdict(self._node)
        if not self._active:
            return {}
        flush = getattr(self._tracker, "flush", None)
        carbon = flush() if flush is not None else None
        seg = self._segment(carbon)
        if self.codecarbon and carbon is None:
            seg.emissions_errors = ["CodeCarbon could not report at the checkpoint"]
        return asdict(self._prior.plus(seg))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self._prior = EnergyTotals.from_dict(state)
