"""Runs K seeds of one method × env as one seed batch (`spikerl.batch_loop`) into K ordinary seed folders.

Each seed folder gets what `bench.run.runner.run_one` writes for a single run: config.json,
progress.csv, evals.csv, checkpoint.pt (the single run's format) and result.json, with
`seed_batch` = K (and the batch's seeds) in config.json and result.json. The engine is the plan's
(`bench.run.resolve`): on 'native' each seed's actor runs alone on the kernels and the rest is
batched; on 'torch' everything is vmapped. On a CPU with --threads N the seeds train in N groups,
one thread each (`spikerl.seed_groups`); engine_reason says so.

A single seed on one CUDA rank also trains here, as a batch of K = 1 (`single_seed_as_batch`): so it
gets the batch's device-resident replay, CUDA-graphed update bursts and graphed acting, which the
single-seed loop (`spikerl.loop`) does not have. Its folder is a single run's (config.json says
seed_batch 1; engine_reason says why). The CPU keeps the single-seed loop: there the native
kernels' per-seed actor is the faster path and there are no graphs to gain.

Energy. The K seeds share one process, so they share one meter: a single EnergyCallback measures
the process (its power.csv and CodeCarbon files are in the first seed's folder, named by
config.json's `seed_batch_seeds`; the report does not ask the other seeds for them and captions the
power trace as the whole process's), sees every
seed's evaluation as eval time, and each seed is charged the process's energy divided by K
(energy, its components, train/eval split, power, emissions and CodeCarbon's figures alike; the
shares and ratios stay as measured). progress.csv and evals.csv carry the same per-seed share; all K
seeds' eval rows of a step are written once every seed has evaluated, so each carries the same share.
GPS-UP must compare methods at equal K only: a batch's per-seed energy is not a lone run's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from baselines.registry import get_method
from bench import schema
from bench.energy.callback import EnergyCallback
from bench.run import log_repairs, store
from bench.run.placement import placement
from bench.run.plan import Plan
from bench.run.recorder import CsvRecorder, ProgressDisplay
from bench.run.resolve import resolve_config, resolve_device, world_size_groups
from bench.run.resume import ResumePoint, cut_power_csv, load_run_config
from bench.run.runner import energy_phase_fields, extra_callbacks, measure_activity, work_fields
from bench.schema import Status
from spikerl.atomic import WriteError
from spikerl.batch_loop import train_seed_batch
from spikerl.callbacks import Callback, EndEvent, EvalEvent, ProgressEvent, RunInfo
from spikerl.seed_groups import seed_batch_workers

PER_SEED_SHARE = ("energy_j", "avg_power_w", "gpu_energy_j", "cpu_energy_j", "ram_energy_j", "train_energy_j",
                  "eval_energy_j", "other_energy_j", "emissions_kg", "codecarbon_energy_kwh", "codecarbon_emissions_kg")
"""result.json's energy fields that are amounts: seed k of a batch is charged 1/K of the process's."""

ENGINE_REASONS = {
    "native": "seed batch: each seed's actor alone on the native kernels, critics and updates batched (vmap)",
    "torch": "seed batch: every net of every seed batched (vmap) on the torch engine",
}


class _SharedMeter(Callback):
    """Seed k's view of the one meter of a seed batch: every seed's evaluation switches it to eval
    time; everything else reaches it once, through the first seed."""

    def __init__(self, meter: Callback, index: int):
        self.meter, self.index = meter, index
        self.key = getattr(meter, "key", "energy")

    def on_train_start(self, info: RunInfo) -> None:
        if self.index == 0:
            self.meter.on_train_start(info)

    def on_progress(self, event: ProgressEvent) -> bool | None:
        return self.meter.on_progress(event) if self.index == 0 else None

    def on_eval_start(self, step: int, wall_s: float) -> None:
        self.meter.on_eval_start(step, wall_s)

    def on_eval_end(self, event: EvalEvent) -> None:
        self.meter.on_eval_end(event)

    def on_checkpoint(self, step: int, wall_s: float, path: Path) -> None:
        if self.index == 0:
            self.meter.on_checkpoint(step, wall_s, path)

    def on_phase(self, phase: str, wall_s: float) -> None:
        if self.index == 0:  # the batch's phases are the process's: every seed enters them together
            self.meter.on_phase(phase, wall_s)

    def on_train_end(self, event: EndEvent) -> None:
        if self.index == 0:
            self.meter.on_train_end(event)

    def state_dict(self) -> dict[str, Any]:
        return self.meter.state_dict() if self.index == 0 else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.index == 0:
            self.meter.load_state_dict(state)


def single_seed_as_batch(device: torch.device, world_size: int) -> bool:
    """Whether single seeds train as seed batches of K = 1: on one CUDA rank (module docstring)."""
    return device.type == "cuda" and world_size == 1


def plan_batches_single_seeds(plan: Plan, device: torch.device) -> bool:
    """`single_seed_as_batch` decided once for the whole plan, at its largest world size: where
    any method's runs span several ranks (a data-parallel recipe on several GPUs) no single seed is
    graphed, so no method's graphed loop is compared with another method's eager one."""
    return single_seed_as_batch(device, max(world_size_groups(plan, device)))


def per_seed_energy(fields: dict[str, Any], k: int) -> dict[str, Any]:
    """The process's energy fields charged to one seed of a K-seed batch."""
    return {name: (v / k if name in PER_SEED_SHARE and isinstance(v, (int, float)) and not isinstance(v, bool)
                   else v) for name, v in fields.items()}


def _share(probe: Callable[[], float | None] | None, k: int) -> Callable[[], float | None] | None:
    if probe is None:
        return None

    def share() -> float | None:
        e = probe()
        return None if e is None else e / k

    return share


def run_seed_batch(run_dir: Path, plan: Plan, method: str, env_id: str, seeds: Sequence[int], *,
                   resume: bool = False, plain: bool = False, point: ResumePoint | None = None
                   ) -> list[dict[str, Any]]:
    """Train `seeds` of method × env as one batch into their seed folders; their result.json dicts, in
    order. `point`: where the first seed's checkpoint stands, when the batch resumes (its folder
    holds the process's power.csv, cut back to it as a single run's is)."""
    spec = get_method(method)
    seeds = [int(s) for s in seeds]
    K = len(seeds)
    device = resolve_device(plan.device)
    folders = [store.seed_dir(run_dir, method, env_id, s) for s in seeds]
    saved = [load_run_config(f, spec, env_id) if resume else None for f in folders]
    run = next((s for s in saved if s is not None), None) or resolve_config(spec, env_id, plan, device)
    base = {"method": method, "env": env_id, "world_size": 1, "backend": "none", "precision": run.td3.precision,
            "device": device.type, "engine": run.engine, "seed_batch": K,
            "seed_batch_unit": "+".join(map(str, seeds)), **work_fields(run.td3)}
    if point is not None:
        cut_power_csv(folders[0] / schema.POWER, point)
    workers = seed_batch_workers(device, K, torch.get_num_threads())
    groups_reason = f"; the seeds in {workers} groups, one thread each" if workers > 1 else ""
    if K == 1:
        groups_reason += ("; a single seed on CUDA trains as a batch of 1 (graphed bursts and acting, replay on "
                          "the device)")
    for folder, seed in zip(folders, seeds, strict=True):
        folder.mkdir(parents=True, exist_ok=True)
        store.write_json(folder / schema.CONFIG, {
            **base, "seed": seed, "seed_batch_seeds": seeds, "precision_reason": run.precision_reason,
            "engine_reason": f"{run.engine_reason}; {ENGINE_REASONS[run.engine]}{groups_reason}",
            "threads": torch.get_num_threads(),
            "placement": placement(),
            "td3": run.td3.to_dict(), "actor": run.actor, "summary": spec.summary,
        })
    meters, energy_probe = extra_callbacks(plan)
    seed_probe = _share(energy_probe, K)
    energy = next((m for m in meters if isinstance(m, EnergyCallback)), None)
    callbacks: list[list[Callback]] = []
    for k in range(K):
        cbs: list[Callback] = [*(_SharedMeter(m, k) for m in meters), CsvRecorder(seed_probe)]
        if k == 0:
            cbs.append(ProgressDisplay(f"{method} {env_id} seeds {','.join(map(str, seeds))} (batch of {K})",
                                       force_plain=plain, energy_probe=energy_probe))
        callbacks.append(cbs)
    fields: list[dict[str, Any]]
    try:
        results = train_seed_batch(spec, env_id, seeds, run.td3, run.actor, run_dirs=folders, callbacks=callbacks,
                                   device=device, resume=resume, engine=run.engine)
        fields = [{"status": r.status, "error": None, "steps": r.steps, "wall_s": r.wall_s,
                   "final_return_mean": r.final_return_mean, "best_return_mean": r.best_return_mean,
                   "updates": r.updates, "param_sha256_by_rank": r.param_sha256_by_rank,
                   **{f"{p}_wall_s": v for p, v in r.phase_s.items()}} for r in results]
        for f, folder, seed in zip(fields, folders, seeds, strict=True):
            f.update(measure_activity(folder, spec, env_id, seed, run))
    except KeyboardInterrupt:
        interrupted = {"status": Status.INTERRUPTED.value, "error": "interrupted by signal"}
        _write_results(folders, seeds, base, [interrupted] * K, energy, K, plan)
        raise
    except WriteError:
        raise  # a full disk stops the sweep, naming the file (bench.cli)
    except Exception as exc:
        fields = [{"status": Status.FAILED.value, "error": f"{type(exc).__name__}: {exc}"}] * K
    return _write_results(folders, seeds, base, fields, energy, K, plan)


def _write_results(folders: Sequence[Path], seeds: Sequence[int], base: dict[str, Any],
                   fields: Sequence[dict[str, Any]], energy: EnergyCallback | None, k: int,
                   plan: Plan | None = None) -> list[dict[str, Any]]:
    from bench.run.summary import last_progress

    out = []
    for folder, seed, f in zip(folders, seeds, fields, strict=True):
        result = {**base, "seed": seed, "seed_batch_seeds": list(seeds), **f}
        if "steps" not in result:
            result.update(last_progress(folder))
        if energy is not None:
            process = energy.result_fields()
            result.update(per_seed_energy({**process, **energy_phase_fields(energy, process, plan)}, k))
        result.update(log_repairs.result_fields(folder))
        store.write_json(folder / schema.RESULT, result)
        out.append(result)
    return out
