"""Plans and runs method × env × seed training runs into one run folder."""
from __future__ import annotations

import datetime as dt
import signal
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from baselines.registry import METHODS, get_method
from spikerl.callbacks import Callback
from spikerl.config import TD3Config, coerce_value
from spikerl.distributed import DistContext
from spikerl.envs import make_env
from spikerl.loop import TrainResult, train
from spikerl.method import MethodSpec
from spikerl.precision import resolve_precision

from bench import schema
from bench.run import store
from bench.energy.callback import EnergyCallback
from bench.run.environment import collect_environment
from bench.metrics.equivalents import add_equivalent_columns
from bench.metrics.gpsup import add_gpsup_columns, add_target_columns
from bench.run.profiles import PROFILES
from bench.run.recorder import CsvRecorder, ProgressDisplay


class UsageError(ValueError):
    """Bad user input: reported as one line with exit code 2."""


@dataclass(frozen=True)
class Plan:
    """Everything `spikerl-bench run` was asked to do; stored as RUN/plan.json."""

    methods: tuple[str, ...]
    envs: tuple[str, ...]
    seeds: tuple[int, ...]
    profile: str
    total_steps: int
    device: str
    td3_overrides: dict[str, Any] = field(default_factory=dict)
    actor_overrides: dict[str, Any] = field(default_factory=dict)
    precision: str | None = None
    baseline: str = "popsan"
    country: str = "USA"
    power_interval_s: float = 0.1
    target_return: float | None = None
    nproc: int = 1
    backend: str = "auto"
    threads: int | None = None
    argv: tuple[str, ...] = ()
    created_utc: str = ""

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["command"] = " ".join(["spikerl-bench", *self.argv])
        d["overrides"] = {"td3": self.td3_overrides, "actor": self.actor_overrides, "precision": self.precision}
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Plan":
        known = set(cls.__dataclass_fields__)
        kw = {k: v for k, v in d.items() if k in known}
        for k in ("methods", "envs", "seeds", "argv"):
            kw[k] = tuple(kw.get(k, ()))
        return cls(**kw)

    def runs(self) -> list[tuple[str, str, int]]:
        return [(m, e, s) for e in self.envs for s in self.seeds for m in self.methods]


def validate_names(methods: Sequence[str], envs: Sequence[str]) -> None:
    for m in methods:
        if m not in METHODS:
            raise UsageError(f"unknown method {m!r}; known methods: {', '.join(METHODS)}")
    for e in envs:
        try:
            make_env(e).close()  # also rejects discrete or asymmetric action spaces
        except ValueError as exc:
            raise UsageError(str(exc)) from None


def parse_set_options(items: Sequence[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """`--set key=value` items into (TD3Config overrides, raw actor overrides keyed without 'actor.')."""
    defaults = TD3Config().to_dict()
    td3: dict[str, Any] = {}
    actor: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set expects key=value, got {item!r}")
        if key.startswith("actor."):
            actor[key[len("actor."):]] = value
        elif key in defaults:
            try:
                td3[key] = coerce_value(defaults[key], value)
            except ValueError as exc:
                raise UsageError(f"--set {key}: {exc}") from None
        else:
            raise UsageError(f"--set: unknown setting {key!r}; TD3 settings: {', '.join(defaults)}; "
                             "actor settings are written actor.NAME")
    return td3, actor


def resolve_config(spec: MethodSpec, env_id: str, plan: Plan) -> tuple[TD3Config, dict[str, Any]]:
    """Harness defaults ← method recipe ← profile budget ← the user's explicit settings."""
    d = TD3Config().to_dict()
    d.update(spec.td3_params(env_id))
    d.update(PROFILES[plan.profile].td3 if plan.profile in PROFILES else {})
    d["total_steps"] = plan.total_steps
    d.update(plan.td3_overrides)
    if plan.precision is not None:
        d["precision"] = plan.precision
    actor = dict(spec.actor_params(env_id))
    for key, raw in plan.actor_overrides.items():
        if key not in actor:
            raise UsageError(f"--set actor.{key}: {spec.name} has no actor setting {key!r}; "
                             f"it has {', '.join(actor)}")
        try:
            actor[key] = coerce_value(actor[key], str(raw)) if isinstance(raw, str) else raw
        except ValueError as exc:
            raise UsageError(f"--set actor.{key}: {exc}") from None
    explicit = plan.precision is not None or "precision" in plan.td3_overrides
    d["precision"], _ = resolve_precision(d["precision"], torch.device(resolve_device(plan.device)), explicit)
    try:
        return TD3Config.from_dict(d), actor
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{spec.name} on {env_id}: {exc}") from None


def precision_note(spec: MethodSpec, env_id: str, plan: Plan) -> str:
    requested = plan.precision or plan.td3_overrides.get("precision") or spec.td3_params(env_id).get("precision", "fp32")
    explicit = plan.precision is not None or "precision" in plan.td3_overrides
    return resolve_precision(requested, torch.device(resolve_device(plan.device)), explicit)[1]


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    if device not in ("cpu", "cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda, got {device!r}")
    return device


def default_run_dir(plan: Plan, root: Path = Path("runs")) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    tag = "-".join(plan.methods) if len(plan.methods) <= 4 else f"{len(plan.methods)}methods"
    base = root / f"{stamp}-{plan.profile}-{tag}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = Path(f"{base}-{n}")
    return path


def apply_threads(plan: Plan) -> None:
    # One intra-op thread by default: at batch 100 these networks gain little from a second
    # thread, and OpenMP threads spin badly when the machine is shared (measured: an update
    # went from ~10 ms to ~600 ms with 2 threads on a loaded 2-core VM).
    torch.set_num_threads(plan.threads or 1)


def create_run_folder(run_dir: Path, plan: Plan) -> None:
    """Make a fresh run folder; refuse any existing non-empty path so no result is ever overwritten."""
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise UsageError(f"{run_dir} already exists; a new run never writes into an existing folder "
                         "(choose another --out, or --resume it)")
    for m in plan.methods:
        for e in plan.envs:
            resolve_config(get_method(m), e, plan)  # reject bad overrides before anything is written
    run_dir.mkdir(parents=True, exist_ok=True)
    apply_threads(plan)
    store.write_json(run_dir / schema.PLAN, plan.to_json())
    store.write_json(run_dir / schema.ENVIRONMENT, collect_environment())


def extra_callbacks(plan: Plan, run_dir: Path) -> tuple[list[Callback], Any]:
    """Meters attached to every run: (callbacks, cumulative-energy probe for the CSV columns)."""
    energy = EnergyCallback(interval_s=plan.power_interval_s, country_iso_code=plan.country)
    return [energy], energy.total_energy_j


def run_one(run_dir: Path, plan: Plan, method: str, env_id: str, seed: int, resume: bool,
            plain: bool = False, ctx: DistContext | None = None) -> dict[str, Any]:
    ctx = ctx or DistContext(device=torch.device(resolve_device(plan.device)))
    spec = get_method(method)
    folder = store.seed_dir(run_dir, method, env_id, seed)
    if resume and (folder / schema.CONFIG).exists():
        saved = store.read_json(folder / schema.CONFIG)
        config, actor_params = TD3Config.from_dict(saved["td3"]), saved["actor"]
    else:
        config, actor_params = resolve_config(spec, env_id, plan)
    device = ctx.device
    base = {"method": method, "env": env_id, "seed": seed, "world_size": ctx.world_size, "backend": ctx.backend,
            "precision": config.precision, "device": device.type}
    if ctx.is_main:
        folder.mkdir(parents=True, exist_ok=True)
        store.write_json(folder / schema.CONFIG, {
            **base, "precision_reason": precision_note(spec, env_id, plan), "threads": torch.get_num_threads(),
            "td3": config.to_dict(), "actor": actor_params, "summary": spec.summary,
        })
    ctx.barrier()
    meters, energy_probe = extra_callbacks(plan, folder)
    callbacks: list[Callback] = [*meters, CsvRecorder(energy_probe),
                                 ProgressDisplay(f"{method} {env_id} s{seed}", force_plain=plain)]
    result_fields: dict[str, Any]
    try:
        res: TrainResult = train(spec, env_id, seed, config, actor_params, run_dir=folder, callbacks=callbacks,
                                 device=device, resume=resume, ctx=ctx)
        result_fields = {"status": res.status, "error": None, "steps": res.steps, "wall_s": res.wall_s,
                         "final_return_mean": res.final_return_mean, "best_return_mean": res.best_return_mean,
                         "updates": res.updates, "param_sha256_by_rank": res.param_sha256_by_rank}
    except KeyboardInterrupt:
        _write_result(folder, base, {"status": "interrupted", "error": "interrupted by signal"}, meters, ctx)
        raise
    except Exception as exc:
        result_fields = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        if ctx.active:
            # the other ranks are blocked in a collective: record, then end this rank so the launcher
            # stops the job (a failed rank cannot be skipped past in data parallelism)
            _write_result(folder, base, result_fields, meters, ctx)
            raise
    return _write_result(folder, base, result_fields, meters, ctx)


def _write_result(folder: Path, base: dict[str, Any], fields: dict[str, Any],
                  meters: Sequence[Callback], ctx: DistContext) -> dict[str, Any]:
    result = {**base, **fields}
    if "steps" not in result:
        result.update(_last_progress(folder))
    for m in meters:
        if hasattr(m, "result_fields"):
            result.update(m.result_fields())  # type: ignore[attr-defined]
    if ctx.is_main:
        store.write_json(folder / schema.RESULT, result)
    return result


def _last_progress(folder: Path) -> dict[str, Any]:
    """Steps and wall time of a run that did not finish, from its last progress row."""
    import csv

    try:
        with open(folder / schema.PROGRESS, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return {"steps": 0, "wall_s": None}
    if not rows:
        return {"steps": 0, "wall_s": None}
    return {"steps": int(float(rows[-1]["step"])), "wall_s": float(rows[-1]["wall_s"])}


def collect_results(run_dir: Path, plan: Plan) -> list[dict[str, Any]]:
    rows = []
    for method, env_id, seed in plan.runs():
        path = store.seed_dir(run_dir, method, env_id, seed) / schema.RESULT
        if path.exists():
            try:
                rows.append(store.read_json(path))
                continue
            except store.RunFolderError as exc:
                rows.append({"method": method, "env": env_id, "seed": seed, "status": "corrupt", "error": str(exc)})
                continue
        status = "running" if path.parent.exists() else "pending"
        rows.append({"method": method, "env": env_id, "seed": seed, "status": status, **_last_progress(path.parent)})
    return rows


def write_summary(run_dir: Path, plan: Plan) -> Path:
    rows = collect_results(run_dir, plan)
    rows = enrich_summary(rows, plan, run_dir)
    columns: list[str] = list(schema.RESULT_COLUMNS)
    for r in rows:
        for k in r:
            if k not in columns and not isinstance(r[k], (list, dict)):
                columns.append(k)
    path = run_dir / schema.SUMMARY
    store.write_csv(path, columns, rows)
    return path


def enrich_summary(rows: list[dict[str, Any]], plan: Plan, run_dir: Path) -> list[dict[str, Any]]:
    """Cross-run columns: GPS-UP against the baseline run of the same env and seed, energy and
    time to the target return, and carbon equivalents of each run's emissions."""
    import pandas as pd

    df = pd.DataFrame(rows)
    for col in ("wall_s", "energy_j", "emissions_kg", "final_return_mean"):
        if col not in df:
            df[col] = float("nan")
        df[col] = pd.to_numeric(df[col], errors="coerce")
    # only finished runs are compared: an interrupted run's time and energy are partial
    finished = df.copy()
    finished.loc[df["status"] != "complete", ["wall_s", "energy_j"]] = float("nan")
    df = add_gpsup_columns(finished, plan.baseline).assign(wall_s=df["wall_s"], energy_j=df["energy_j"])
    evals = {}
    for method, env_id, seed in plan.runs():
        path = store.seed_dir(run_dir, method, env_id, seed) / schema.EVALS
        try:
            evals[(method, env_id, seed)] = pd.read_csv(path)
        except (OSError, ValueError, pd.errors.EmptyDataError):
            continue
    df = add_target_columns(df, evals, plan.baseline, target_return=plan.target_return)
    df = add_equivalent_columns(df)
    return [{k: (None if _isnan(v) else v) for k, v in r.items()} for r in df.to_dict("records")]


def _isnan(v: Any) -> bool:
    try:
        return v != v  # NaN, NA
    except (TypeError, ValueError):
        return False


def is_complete(folder: Path) -> bool:
    try:
        return store.read_json(folder / schema.RESULT).get("status") == "complete"
    except (store.RunFolderError, AttributeError):
        return False


def execute(run_dir: Path, plan: Plan, resume: bool, plain: bool = False, ctx: DistContext | None = None) -> int:
    """Run every unfinished run of the plan; returns the exit code (0 ok, 1 a run failed, 130 interrupted)."""
    ctx = ctx or DistContext(device=torch.device(resolve_device(plan.device)))
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    apply_threads(plan)
    if resume:
        check_resumable(run_dir, plan, ctx.world_size)
        started = any(store.seed_dir(run_dir, *r).exists() for r in plan.runs())
        if ctx.is_main and started:  # a fresh folder handed to --nproc ranks is not a resume
            print(f"resuming {run_dir}", file=sys.stderr)
    failed = 0
    try:
        for method, env_id, seed in plan.runs():
            folder = store.seed_dir(run_dir, method, env_id, seed)
            # rank 0 decides, so every rank skips (or trains) the same runs
            if ctx.broadcast_object(resume and is_complete(folder)):
                continue
            result = run_one(run_dir, plan, method, env_id, seed, resume=resume, plain=plain, ctx=ctx)
            if result["status"] != "complete":
                failed += 1
                print(f"spikerl-bench: {method} on {env_id} seed {seed} {result['status']}: {result.get('error')}",
                      file=sys.stderr)
            if ctx.is_main:
                write_summary(run_dir, plan)
    except KeyboardInterrupt:
        if ctx.is_main:
            write_summary(run_dir, plan)
            print(f"spikerl-bench: interrupted; finish with: spikerl-bench run --resume {run_dir}", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    if ctx.is_main:
        write_summary(run_dir, plan)
        finish_run_folder(run_dir, plan)
    ctx.barrier()  # no rank leaves the process group while rank 0 still finishes the folder
    return 1 if failed else 0


def finish_run_folder(run_dir: Path, plan: Plan) -> None:
    """Hand the finished folder to every `spikerl_bench.run_finished` plug-in (the report builder).
    A plug-in that fails is reported in one line: the measurements are already safe on disk."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="spikerl_bench.run_finished"):
        try:
            ep.load()(run_dir, plan.to_json())
        except Exception as exc:  # noqa: BLE001
            print(f"spikerl-bench: {ep.name} after the run failed: {type(exc).__name__}: {exc} "
                  f"(retry with: spikerl-bench {ep.name} {run_dir})", file=sys.stderr)


def check_resumable(run_dir: Path, plan: Plan, world_size: int = 1) -> None:
    """Refuse (CheckpointError / RunFolderError) before anything is written if any unfinished
    run's checkpoint or config cannot be read."""
    from spikerl.checkpoint import CheckpointError, load_checkpoint
    from spikerl.loop import checkpoint_path, complete_checkpoint_step

    for method, env_id, seed in plan.runs():
        folder = store.seed_dir(run_dir, method, env_id, seed)
        if is_complete(folder):
            continue
        if (folder / schema.CONFIG).exists():
            saved = store.read_json(folder / schema.CONFIG)
            if not isinstance(saved, dict) or "td3" not in saved or "actor" not in saved:
                raise store.RunFolderError(f"{folder / schema.CONFIG} lacks the td3/actor settings")
        step = complete_checkpoint_step(folder, world_size) if folder.exists() else None
        if step is not None:
            for rank in range(world_size):
                load_checkpoint(checkpoint_path(folder, rank, world_size, step))
        elif folder.exists() and any(folder.glob("checkpoint*.pt")):
            raise CheckpointError(f"{folder} holds checkpoints of another world size than {world_size} "
                                  "(or an incomplete set); resume with the world size that wrote them")


def _raise_interrupt(signum, frame):  # noqa: ANN001
    raise KeyboardInterrupt
