"""Runs every method × env × seed of a plan into one run folder, one after another."""
from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from baselines.registry import get_method
from bench import schema
from bench.energy.callback import EnergyCallback
from bench.energy.grid import grid_inputs
from bench.metrics import activity
from bench.metrics.basis import measured_energy_share
from bench.run import log_repairs, store
from bench.run.environment import collect_environment
from bench.run.idle import idle_options
from bench.run.placement import current_task, placement
from bench.run.plan import Plan, RunKey, UsageError
from bench.run.recorder import CsvRecorder, ProgressDisplay, SweepClock
from bench.run.resolve import RunConfig, resolve_config, resolve_device
from bench.run.resume import ResumePoint, check_resumable, cut_power_csv, load_run_config
from bench.run.summary import contention_warning, is_complete, last_progress, results_table, write_summary
from bench.run.validate import check_plan, make_new_folder
from bench.run.work_check import unequal_work_warning
from bench.schema import Status
from spikerl import native_lib
from spikerl.atomic import WriteError
from spikerl.callbacks import Callback
from spikerl.distributed import DistContext
from spikerl.loop import TrainResult, train


def apply_threads(plan: Plan) -> None:
    # One intra-op thread by default: at batch 100 these networks gain little from a second
    # thread, and OpenMP threads spin badly when the machine is shared (measured: an update
    # went from ~10 ms to ~600 ms with 2 threads on a loaded 2-core VM).
    torch.set_num_threads(plan.threads or 1)


def create_run_folder(run_dir: Path, plan: Plan) -> None:
    """Make a fresh run folder; refuse any existing non-empty path so no result is ever overwritten.
    Every check of the plan comes first: the folder is the first thing written."""
    check_plan(plan)  # reject bad names, flags and overrides before anything is written
    warning = unequal_work_warning(plan)
    if warning is not None:
        print(f"spikerl-bench: {warning}", file=sys.stderr)
    make_new_folder(Path(run_dir))
    apply_threads(plan)
    store.write_json(run_dir / schema.PLAN, plan.to_json())
    store.write_json(run_dir / schema.ENVIRONMENT, collect_environment())


def extra_callbacks(plan: Plan) -> tuple[list[Callback], Any]:
    """Meters attached to every run: (callbacks, cumulative-energy probe for the CSV columns)."""
    energy = EnergyCallback(interval_s=plan.power_interval_s, country_iso_code=plan.country,
                            concurrent_runs=current_task().concurrent_runs, **idle_options(plan))
    return [energy], energy.total_energy_j


def run_one(run_dir: Path, plan: Plan, method: str, env_id: str, seed: int, *, resume: bool,
            ctx: DistContext, plain: bool = False, point: ResumePoint | None = None,
            sweep: SweepClock | None = None) -> dict[str, Any]:
    """Train one method × env × seed into its folder and write its result.json (with the final
    actor's spike activity, measured on evaluation episodes after training). `point`: where its
    checkpoint stands (bench.run.resume), when it resumes from one."""
    spec = get_method(method)
    folder = store.seed_dir(run_dir, method, env_id, seed)
    saved = load_run_config(folder, spec, env_id) if resume else None
    run = saved or resolve_config(spec, env_id, plan, ctx.device)
    base = {"method": method, "env": env_id, "seed": seed, "world_size": ctx.world_size, "backend": ctx.backend,
            "precision": run.td3.precision, "device": ctx.device.type, "engine": run.engine, "seed_batch": 1,
            **work_fields(run.td3)}
    if ctx.is_main:
        folder.mkdir(parents=True, exist_ok=True)
        if point is not None:
            cut_power_csv(folder / schema.POWER, point)
        store.write_json(folder / schema.CONFIG, {
            **base, "precision_reason": run.precision_reason, "engine_reason": run.engine_reason,
            "threads": torch.get_num_threads(), "placement": placement(),
            "td3": run.td3.to_dict(), "actor": run.actor, "summary": spec.summary,
        })
    ctx.barrier()
    meters, energy_probe = extra_callbacks(plan)
    energy = next((m for m in meters if isinstance(m, EnergyCallback)), None)
    callbacks: list[Callback] = [*meters, CsvRecorder(energy_probe),
                                 ProgressDisplay(f"{method} {env_id} s{seed}", force_plain=plain,
                                                 energy_probe=energy_probe, estimated_probe=_estimated_probe(energy),
                                                 sweep=sweep)]
    try:
        with native_lib.engine(run.engine):
            res: TrainResult = train(spec, env_id, seed, run.td3, run.actor, run_dir=folder, callbacks=callbacks,
                                     device=ctx.device, resume=resume, ctx=ctx)
        fields = {"status": res.status, "error": None, "steps": res.steps, "wall_s": res.wall_s,
                  "final_return_mean": res.final_return_mean, "best_return_mean": res.best_return_mean,
                  "updates": res.updates, "param_sha256_by_rank": res.param_sha256_by_rank,
                  **{f"{p}_wall_s": v for p, v in res.phase_s.items()}}
        if ctx.is_main:
            with native_lib.engine(run.engine):
                fields.update(measure_activity(folder, spec, env_id, seed, run))
    except KeyboardInterrupt:
        _write_result(folder, base, {"status": Status.INTERRUPTED.value, "error": "interrupted by signal"},
                      meters, ctx, plan)
        raise
    except WriteError:
        raise  # a full disk: nothing more can be written; the sweep stops and says which file (bench.cli)
    except Exception as exc:
        fields = {"status": Status.FAILED.value, "error": f"{type(exc).__name__}: {exc}"}
        if ctx.active:
            # the other ranks are blocked in a collective: record, then end this rank so the launcher
            # stops the job (a failed rank cannot be skipped past in data parallelism)
            _write_result(folder, base, fields, meters, ctx, plan)
            raise
    return _write_result(folder, base, fields, meters, ctx, plan)


def _estimated_probe(energy: EnergyCallback | None):  # noqa: ANN202
    """Whether the run's energy so far is (partly) estimated, for the progress bar."""
    if energy is None:
        return None
    return lambda: bool(energy.meter is not None and energy.meter.estimated)


def measure_activity(folder: Path, spec: Any, env_id: str, seed: int, run: RunConfig) -> dict[str, Any]:
    """The final actor's spike activity and inference-energy estimate (bench.metrics.activity);
    empty columns, never a failed run, when it cannot be measured."""
    try:
        act = activity.measure_checkpoint(folder, spec, env_id, seed, run.td3, run.actor)
    except Exception as exc:  # noqa: BLE001 - the training result is already safe
        print(f"spikerl-bench: spike activity not measured ({type(exc).__name__}: {exc})", file=sys.stderr)
        act = None
    return act.result_fields() if act is not None else activity.empty_fields()


def work_fields(td3: Any) -> dict[str, Any]:
    """The settings GPS-UP checks for equal work beside steps and updates (bench.metrics.work)."""
    return {"batch_size": td3.batch_size, "eval_every": td3.eval_every, "eval_episodes": td3.eval_episodes}


def energy_phase_fields(energy: EnergyCallback, result: dict[str, Any], plan: Plan | None = None) -> dict[str, Any]:
    """The other phase's energy, the measured shares, and emissions from the plan's carbon inputs
    (bench.energy.grid: PUE, the user's or a region's intensity), from the meter's account."""
    out = energy.phase_fields()
    share = measured_energy_share(result)
    out.update(measured_energy_share=share, run_measured_energy_share=share)
    if plan is not None:
        grid = grid_inputs(plan.country, region=plan.region, intensity_g_per_kwh=plan.carbon_intensity_g_per_kwh,
                           pue=plan.pue)
        out.update(grid.result_fields(), emissions_kg=grid.emissions_kg(result.get("energy_j")))
    return out


def _write_result(folder: Path, base: dict[str, Any], fields: dict[str, Any],
                  meters: Sequence[Callback], ctx: DistContext, plan: Plan | None = None) -> dict[str, Any]:
    result = {**base, **fields}
    if "steps" not in result:
        result.update(last_progress(folder))
    for m in meters:
        if isinstance(m, EnergyCallback):
            result.update(m.result_fields())
            result.update(energy_phase_fields(m, result, plan))
    result.update(log_repairs.result_fields(folder))
    if ctx.is_main:
        store.write_json(folder / schema.RESULT, result)
    return result


def execute(run_dir: Path, plan: Plan, resume: bool, plain: bool = False, ctx: DistContext | None = None,
            methods: Sequence[str] | None = None, only_runs: Sequence[RunKey] | None = None) -> int:
    """Run every unfinished run of the plan, or of `methods` only (one world-size group of several)
    or `only_runs` only (one task of a sweep): their callers finish the folder. Returns the exit
    code (0 ok, 1 a run failed, 130 interrupted)."""
    ctx = ctx or DistContext(device=resolve_device(plan.device))
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    apply_threads(plan)
    points: dict[tuple[str, str, int], ResumePoint] = {}
    if resume:
        points = check_resumable(run_dir, plan, ctx.world_size, ctx.device, methods, only_runs)
        started = any(store.seed_dir(run_dir, *r).exists() for r in _selected(plan, methods, only_runs))
        if ctx.is_main and started:  # a fresh folder handed to --nproc ranks is not a resume
            print(f"resuming {run_dir}", file=sys.stderr)
            store.clean_stale_temps(run_dir, [store.seed_dir(run_dir, *r) for r in _selected(plan, methods, only_runs)])
    try:
        failed = _run_all(run_dir, plan, resume, plain, ctx, points, _selected(plan, methods, only_runs))
    except KeyboardInterrupt:
        if ctx.is_main:
            write_summary(run_dir, plan)
            print(f"spikerl-bench: interrupted; finish with: spikerl-bench run --resume {run_dir}", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    if ctx.is_main:
        write_summary(run_dir, plan)
        if methods is None and only_runs is None:
            finish_run_folder(run_dir, plan)
    ctx.barrier()  # no rank leaves the process group while rank 0 still finishes the folder
    return 1 if failed else 0


def _selected(plan: Plan, methods: Sequence[str] | None, only_runs: Sequence[RunKey] | None) -> list[RunKey]:
    runs = plan.runs(methods)
    if only_runs is not None:
        wanted = set(only_runs)
        if not wanted <= set(plan.runs()):
            raise UsageError(f"runs not in the plan: {sorted(wanted - set(plan.runs()))}")
        runs = [r for r in runs if r in wanted]
    return runs


def _run_all(run_dir: Path, plan: Plan, resume: bool, plain: bool, ctx: DistContext,
             points: dict[RunKey, ResumePoint], runs: Sequence[RunKey]) -> int:
    """Train these unfinished runs of the plan in order (seed batches together); returns how many
    did not complete."""
    from bench.run.seed_batch_runner import plan_batches_single_seeds

    if plan.seed_batch > 1 or plan_batches_single_seeds(plan, ctx.device):
        return _run_batches(run_dir, plan, resume, plain, runs, points)
    failed = 0
    sweep = SweepClock(len(runs), plan.total_steps)
    for method, env_id, seed in runs:
        folder = store.seed_dir(run_dir, method, env_id, seed)
        sweep.next_run()
        # rank 0 decides, so every rank skips (or trains) the same runs
        if ctx.broadcast_object(resume and is_complete(folder)):
            sweep.skip()
            continue
        lock = store.RunLock(folder)
        if not ctx.broadcast_object(lock.acquire() if ctx.is_main else None):
            failed += _busy([(method, env_id, seed)])
            continue
        try:
            result = run_one(run_dir, plan, method, env_id, seed, resume=resume, plain=plain, ctx=ctx,
                             point=points.get((method, env_id, seed)), sweep=sweep)
        finally:
            lock.release()
        failed += _report(result)
        if ctx.is_main:
            write_summary(run_dir, plan)
    return failed


def _run_batches(run_dir: Path, plan: Plan, resume: bool, plain: bool, runs: Sequence[RunKey],
                 points: dict[RunKey, ResumePoint]) -> int:
    """`--seed-batch K`: each method × env's seeds K at a time in one process (one rank); on one
    CUDA rank also K = 1, each seed a batch of its own (`single_seed_as_batch`)."""
    from bench.run.seed_batch_runner import run_seed_batch

    failed = 0
    for unit in plan.batches(runs):
        if resume and all(is_complete(store.seed_dir(run_dir, *r)) for r in unit):
            continue
        method, env_id = unit[0][:2]
        locks = [store.RunLock(store.seed_dir(run_dir, *r)) for r in unit]
        taken = [lock.acquire() for lock in locks]
        try:
            if not all(taken):
                failed += _busy(unit)
                continue
            results = run_seed_batch(run_dir, plan, method, env_id, [r[2] for r in unit], resume=resume,
                                     plain=plain, point=points.get(unit[0]))
        finally:
            for lock in locks:
                lock.release()
        failed += sum(_report(r) for r in results)
        write_summary(run_dir, plan)
    return failed


def _busy(runs: Sequence[RunKey]) -> int:
    """Runs another process is training right now: left to it, untouched."""
    for method, env_id, seed in runs:
        print(f"spikerl-bench: {method} on {env_id} seed {seed} is being trained by another process "
              "(its folder's lock is held); left to it", file=sys.stderr)
    return len(runs)


def _report(result: dict[str, Any]) -> int:
    """1 (and a line) for a run that did not complete, else 0."""
    if result["status"] == Status.COMPLETE:
        return 0
    print(f"spikerl-bench: {result['method']} on {result['env']} seed {result['seed']} {result['status']}: "
          f"{result.get('error')}", file=sys.stderr)
    return 1


def finish_run_folder(run_dir: Path, plan: Plan) -> None:
    """Warn about contended runs, then hand the finished folder to every
    `spikerl_bench.run_finished` plug-in (the report builder). A plug-in that fails is reported
    in one line: the measurements are already safe on disk."""
    from importlib.metadata import entry_points

    table = results_table(run_dir, plan)
    if table:
        print(table, file=sys.stderr)
    warning = contention_warning(run_dir, plan)
    if warning:
        print(f"spikerl-bench: {warning}", file=sys.stderr)
    for ep in entry_points(group="spikerl_bench.run_finished"):
        try:
            ep.load()(run_dir, plan.to_json())
        except OSError as exc:  # a full disk: said in one line naming the file, and the command fails
            if isinstance(exc, WriteError):
                raise
            raise WriteError(Path(exc.filename) if isinstance(exc.filename, str) else Path(run_dir), exc) from None
        except Exception as exc:  # noqa: BLE001
            print(f"spikerl-bench: {ep.name} after the run failed: {type(exc).__name__}: {exc} "
                  f"(retry with: spikerl-bench {ep.name} {run_dir})", file=sys.stderr)


def _raise_interrupt(signum, frame):  # noqa: ANN001
    raise KeyboardInterrupt
