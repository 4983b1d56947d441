"""What `run --resume` checks before it touches a run folder, and the one repair it makes.

Nothing read back from a run folder is trusted. For every unfinished run, three accounts of
it must agree before anything is written: config.json (the settings the run started with),
plan.json (what was asked: budget and explicit overrides) and the checkpoint (what was
trained: its labels, its settings and the shapes of its tensors). An edited learning rate, a
budget below the checkpoint's step or a checkpoint of another method or network is refused in
one line (RunFolderError / CheckpointError, exit code 2), and the folder is left as it was.

The repair: power.csv is cut back to the checkpoint, as progress.csv and evals.csv are
(bench.run.store.CsvLog), so that its time and cumulative energy columns continue without
a step back after the resume.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, TypeGuard

import torch

from baselines.registry import get_method
from bench import schema
from bench.run import restart, store
from bench.run.plan import Plan
from bench.run.resolve import RunConfig, check_actor_params, method_overrides, resolve_config
from bench.schema import FINAL_STATUSES, Status
from spikerl import native_lib
from spikerl.checkpoint import CheckpointError, checkpoint_path, load_run_checkpoint, resume_step
from spikerl.config import TD3Config
from spikerl.distributed import global_steps
from spikerl.method import MethodSpec
from spikerl.replay import rng_is_generator_state


@dataclass(frozen=True)
class ResumePoint:
    """Where rank 0's checkpoint stands: its global step, the run's wall seconds and each
    device's cumulative energy (the values the resumed power trace continues from)."""

    step: int
    wall_s: float
    energy_j_by_device: dict[str, float]
    power_t_s: float | None = None
    """power.csv's t_s at the checkpoint (the meter's clock, which starts at its own moment, not
    the loop's); None for checkpoints from before it was recorded: wall_s stands in."""


def load_run_config(folder: Path, spec: MethodSpec | None = None, env_id: str = "") -> RunConfig | None:
    """The settings a started run was trained with (config.json), validated; None if it has none."""
    path = folder / schema.CONFIG
    if not path.exists():
        return None
    saved = store.read_json(path)
    if not isinstance(saved, dict) or not isinstance(saved.get("td3"), dict) \
            or not isinstance(saved.get("actor"), dict):
        raise store.RunFolderError(f"{path} lacks the td3/actor settings")
    try:
        td3 = TD3Config.from_dict(saved["td3"])
        if spec is not None:
            check_actor_params(spec, env_id, saved["actor"])
    except (ValueError, TypeError) as exc:
        raise store.RunFolderError(f"{path}: {exc}") from None
    engine = saved.get("engine", "torch")  # folders from before engines were recorded ran either way
    if engine not in native_lib.ENGINES:
        raise store.RunFolderError(f"{path}: engine has an invalid value {str(engine)[:40]!r}")
    return RunConfig(td3, saved["actor"], str(saved.get("precision_reason", "")), engine,
                     str(saved.get("engine_reason", "")))


def check_resumable(run_dir: Path, plan: Plan, world_size: int, device: torch.device,
                    methods: Sequence[str] | None = None,
                    only_runs: Sequence[tuple[str, str, int]] | None = None,
                    restarting: Sequence[tuple[str, str, int]] = ()
                    ) -> dict[tuple[str, str, int], ResumePoint]:
    """Refuse (RunFolderError / CheckpointError) before anything is written if any unfinished
    run (of `methods`, or `only_runs`, if given) cannot be continued exactly; returns the resume
    point of each run that has a checkpoint. `restarting`: runs `--restart-seed` will move aside
    and start from step 0 (checked as if their folders were gone)."""
    points = {}
    runs = plan.runs(methods)
    if only_runs is not None:
        runs = [r for r in runs if r in set(only_runs)]
    if plan.seed_batch > 1:
        _check_batches(run_dir, plan, runs, set(restarting))
    runs = [r for r in runs if r not in set(restarting)]
    for method, env_id, seed in runs:
        folder = store.seed_dir(run_dir, method, env_id, seed)
        if os.path.lexists(folder):
            point = check_run(folder, plan, method, env_id, seed, world_size, device)
            if point is not None:
                points[(method, env_id, seed)] = point
    return points


def _check_batches(run_dir: Path, plan: Plan, runs: Sequence[tuple[str, str, int]],
                   restarting: set[tuple[str, str, int]]) -> None:
    """Every started seed batch resumes from one step all its seeds have a checkpoint of (a seed
    about to restart from step 0 has none)."""
    from spikerl.batch_loop import batch_common_step

    for unit in plan.batches(runs):
        folders = [store.seed_dir(run_dir, *r) for r in unit]
        gone = {f for r, f in zip(unit, folders, strict=True) if r in restarting}
        if any(os.path.lexists(f) for f in folders if f not in gone) \
                and (gone or not all(_is_finished(f) for f in folders)):
            batch_common_step(folders, absent=gone)


def check_run(folder: Path, plan: Plan, method: str, env_id: str, seed: int, world_size: int,
              device: torch.device) -> ResumePoint | None:
    """Check one started run; None when it is complete or has no checkpoint yet."""
    if folder.is_symlink() or not folder.is_dir():
        raise store.RunFolderError(f"{folder} is not a folder")
    if _is_finished(folder):
        return None
    spec = get_method(method)
    asked = resolve_config(spec, env_id, plan, device)
    saved = load_run_config(folder, spec, env_id)
    if saved is not None:
        _check_labels(folder, method, env_id, seed)
        _check_against_plan(folder / schema.CONFIG, saved, asked, plan, method)
    run = saved or asked
    if run.engine == "native" and native_lib.library() is None:
        raise store.RunFolderError(f"{folder} trains on the native engine, which is unavailable here "
                                   f"({native_lib.unavailable_reason()}); resuming on torch would mix engines")
    check_logs(folder)
    logged = restart.logged_rows(folder) > 0  # then retraining from step 0 would overwrite rows: said, not done
    try:
        step = resume_step(folder, world_size, method=method, env_id=env_id, load=False)
    except CheckpointError as exc:
        raise restart.lost_seed_error(folder, method, env_id, seed, exc) if logged else exc from None
    if step is None:
        if logged and not restart.has_checkpoint_files(folder):
            raise restart.lost_seed_error(folder, method, env_id, seed, None)
        return None
    point = None
    for rank in range(world_size):
        path = checkpoint_path(folder, rank, world_size, step)
        try:
            state = load_run_checkpoint(folder, rank, world_size, step, method=method, env_id=env_id)
        except CheckpointError as exc:
            raise restart.lost_seed_error(folder, method, env_id, seed, exc) if logged else exc from None
        if rank == 0:
            point = _resume_point(path, state, world_size)
            if point.step > run.td3.total_steps:
                raise CheckpointError(f"{path} is at step {point.step}, beyond the run's total_steps "
                                      f"{run.td3.total_steps}; a budget cannot shrink below what was trained")
        _check_checkpoint(path, state, run, spec, env_id, seed)
    return point


def _is_finished(folder: Path) -> bool:
    """Whether result.json says the run completed. An unreadable result.json is refused, not
    redone: results are never overwritten, and an atomic writer never leaves half of one."""
    path = folder / schema.RESULT
    if not path.exists():
        return False
    result = store.read_json(path)
    status = result.get("status") if isinstance(result, dict) else None
    if status not in [s.value for s in FINAL_STATUSES]:
        raise store.RunFolderError(f"{path} is not a run result (status {status!r}); move it aside to redo the run")
    return status == Status.COMPLETE.value


def _check_labels(folder: Path, method: str, env_id: str, seed: int) -> None:
    saved = store.read_json(folder / schema.CONFIG)
    for key, want in (("method", method), ("env", env_id), ("seed", seed)):
        if key in saved and saved[key] != want:
            raise store.RunFolderError(f"{folder / schema.CONFIG} is the config of {key} {saved[key]!r}, "
                                       f"not {want!r}")


def _plain(value: Any) -> Any:
    """As JSON would store it (tuples become lists), so both files compare alike."""
    return json.loads(json.dumps(value))


def _check_against_plan(path: Path, saved: RunConfig, asked: RunConfig, plan: Plan, method: str) -> None:
    """The plan's explicit parts (budget, --set, --precision) must be what the run was started
    with; defaults may differ between versions and are taken from config.json."""
    keys = {"total_steps", *plan.td3_overrides, *method_overrides(plan, method, "td3")} \
        | ({"precision"} if plan.precision else set())
    for key in sorted(keys):
        if getattr(saved.td3, key) != getattr(asked.td3, key):
            raise store.RunFolderError(f"{path} has {key}={getattr(saved.td3, key)!r} but plan.json asks for "
                                       f"{getattr(asked.td3, key)!r}; restore the file or start a new run")
    for key in sorted({*plan.actor_overrides, *method_overrides(plan, method, "actor")}):
        if _plain(saved.actor.get(key)) != _plain(asked.actor.get(key)):
            raise store.RunFolderError(f"{path} has actor.{key}={saved.actor.get(key)!r} but plan.json asks for "
                                       f"{asked.actor.get(key)!r}; restore the file or start a new run")


def _check_checkpoint(path: Path, state: dict[str, Any], run: RunConfig, spec: MethodSpec, env_id: str,
                      seed: int) -> None:
    if state.get("seed") != seed:
        raise CheckpointError(f"{path} was written for seed {state.get('seed')!r}, not {seed}")
    try:
        trained = TD3Config.from_dict(dict(state.get("config") or {}))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: unusable settings ({exc})") from None
    for key, value in trained.to_dict().items():
        if value != getattr(run.td3, key):
            raise CheckpointError(f"{path} was trained with {key}={value!r} but config.json says "
                                  f"{getattr(run.td3, key)!r}; restore config.json or start a new run")
    actor = state.get("actor_params")
    if not isinstance(actor, dict) or _plain(actor) != _plain(run.actor):
        raise CheckpointError(f"{path} was trained with actor settings {actor!r}, not config.json's {run.actor!r}")
    replay = state.get("replay")
    rng = replay.get("rng") if isinstance(replay, dict) else None
    if not isinstance(rng, torch.Tensor) or rng.dtype != torch.uint8 or not rng_is_generator_state(rng):
        raise CheckpointError(f"{path}: its replay sampler state is missing or numpy's (written before replay "
                              "sampling moved to torch generators); it cannot be resumed exactly: start the run again")
    _check_shapes(path, state, run, spec, env_id)


def _check_shapes(path: Path, state: dict[str, Any], run: RunConfig, spec: MethodSpec, env_id: str) -> None:
    """Every tensor of the checkpoint has the name and shape the configured networks have: a
    checkpoint whose labels were copied onto another network is refused here, not mid-training."""
    from spikerl.envs import act_limit_of, make_env
    from spikerl.loop import build_agent

    env = make_env(env_id)
    try:
        obs_shape, act_shape = env.observation_space.shape, env.action_space.shape
        assert obs_shape is not None and act_shape is not None, f"{env_id}: observation and action spaces need a shape"
        obs_dim, act_dim = int(obs_shape[0]), int(act_shape[0])
        lim = act_limit_of(env)
    finally:
        env.close()
    agent = build_agent(spec, env_id, run.td3, run.actor, obs_dim, act_dim, lim, torch.device("cpu"))
    td3 = _dict(state.get("td3"))
    parts = {"actor": agent.actor, "actor_target": agent.actor, "critic": agent.critic,
             "critic_target": agent.critic}
    found = {name: td3.get(name) for name in parts}
    found["normalizer"] = state.get("normalizer")
    parts["normalizer"] = agent.normalizer
    for name, module in parts.items():
        want = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        got = found[name]
        have = {k: tuple(v.shape) for k, v in got.items() if isinstance(v, torch.Tensor)} \
            if isinstance(got, dict) else None
        if have != want:
            diff = sorted(set(want.items()) ^ set((have or {}).items()))
            raise CheckpointError(f"{path}: its {name} does not have the configured network's shape "
                                  f"(first difference: {diff[0] if diff else 'missing'})")


def _resume_point(path: Path, state: dict[str, Any], world_size: int) -> ResumePoint:
    """Global steps trained (one process's checkpoint.pt has no step in its name), wall time and
    energy per device, from rank 0's checkpoint."""
    loop, config = _dict(state.get("loop")), _dict(state.get("config"))
    t, total, wall_s = loop.get("t"), config.get("total_steps"), loop.get("wall_s")
    energy = (state.get("callbacks") or {}).get("energy") or {}
    by_device = energy.get("energy_j_by_device", {}) if isinstance(energy, dict) else None
    if type(t) is not int or t < 0 or type(total) is not int or total <= 0 or not _finite(wall_s) or wall_s < 0 \
            or not isinstance(by_device, dict) \
            or not all(isinstance(k, str) and _finite(v) for k, v in by_device.items()):
        raise CheckpointError(f"{path}: its step, wall time or energy account is not a set of valid numbers")
    power_t_s = energy.get("power_t_s") if isinstance(energy, dict) else None
    return ResumePoint(global_steps(t, total, world_size), float(wall_s), {k: float(v) for k, v in by_device.items()},
                       float(power_t_s) if _finite(power_t_s) and power_t_s >= 0 else None)


def _finite(x: Any) -> TypeGuard[float]:
    return type(x) in (int, float) and math.isfinite(x)


def _dict(x: Any) -> dict[str, Any]:
    """x where it is a dict (a section of the checkpoint), else empty."""
    return x if isinstance(x, dict) else {}


# ----------------------------------------------------------------------------- the CSV logs


_LOGS = {schema.PROGRESS: schema.PROGRESS_COLUMNS, schema.EVALS: schema.EVAL_COLUMNS, schema.POWER: None}
"""Logs a resume appends to, with the header it needs (power.csv: any, PowerCsv moves another aside)."""


def check_logs(folder: Path) -> None:
    """Each log is UTF-8 text with the expected header, so that cutting it back cannot fail
    halfway through a resume."""
    for name, columns in _LOGS.items():
        path = folder / name
        if not path.exists():
            continue
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise store.RunFolderError(f"{path} is not UTF-8 text; move it aside to resume") from None
        except OSError as exc:
            raise store.RunFolderError(f"unreadable {path}: {exc.strerror or exc}") from None
        if columns is not None and text:
            header = next(store.csv_rows([text.partition("\n")[0]]), (0, None))[1]
            if header != list(columns):
                raise store.RunFolderError(f"{path}: header {str(header)[:200]} is not {list(columns)}; "
                                           "move it aside to resume")


def cut_power_csv(path: Path, point: ResumePoint) -> None:
    """Keep the rows of power.csv up to the checkpoint: t_s at most the trace's time at the
    checkpoint (`power_t_s`; its wall seconds for checkpoints from before that was recorded) and
    each device's cumulative energy at most its checkpointed value (the resumed meter continues
    from exactly those, so the trace is continuous in its own time base). Rows are in time order, so
    the kept rows are a prefix and the file is truncated at the first row past the checkpoint, or at
    the last line when a kill cut it short. Truncating is one system call: a crash leaves the old or the new length,
    never a mixed file. A garbage row inside that prefix (a disk fault, an edit) is dropped by an
    atomic rewrite and recorded (bench.run.log_repairs), not taken as the end of the trace."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    lines = data.decode("utf-8").splitlines(keepends=True)
    header = lines[0].rstrip("\r\n").split(",") if lines else []
    if header not in (list(schema.POWER_COLUMNS), list(schema.POWER_COLUMNS_BEFORE_SEGMENTS)):
        return  # another schema: bench.energy.power_csv moves the file aside rather than mixing
    width = len(header)
    t_col, dev_col, e_col = (schema.POWER_COLUMNS.index(c) for c in ("t_s", "device", "energy_j"))
    until_s = point.wall_s if point.power_t_s is None else point.power_t_s
    keep, kept_lines, dropped = len(lines[0].encode("utf-8")), [lines[0]], []
    for line_no, line in enumerate(lines[1:], start=2):
        if not line.endswith("\n"):
            break  # cut short by a kill: the latest row, past the checkpoint
        row = next(store.csv_rows([line]), (0, None))[1] or []
        t_s = _number(row[t_col]) if len(row) == width else math.nan
        energy_j = _number(row[e_col]) if len(row) == width else math.nan
        if math.isnan(t_s) or math.isnan(energy_j):
            dropped.append(f"line {line_no}")
            continue
        if not (t_s <= until_s and energy_j <= point.energy_j_by_device.get(row[dev_col], 0.0)):
            break
        keep += len(line.encode("utf-8"))
        kept_lines.append(line)
    if dropped:
        from bench.run import log_repairs

        store.atomic_write_text(path, "".join(kept_lines))
        log_repairs.record(path.parent, path.name, dropped, point.step)
    elif keep < len(data):
        os.truncate(path, keep)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan  # compares False: the row is cut
