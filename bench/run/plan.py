"""What `spikerl-bench run` was asked to do (RUN/plan.json), and the parsing of its user inputs."""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from baselines.registry import get_method
from bench.run.profiles import DEFAULT_BASELINE
from bench.run.store import RunFolderError, is_simple_name
from spikerl.config import TD3Config, coerce_value
from spikerl.envs import check_checkpointable, make_env

MAX_SEED = 2**32 - 1  # numpy's SeedSequence and gymnasium's reset(seed=) accept up to this
MAX_SEED_BATCH = 1_024
"""Bound of --seed-batch: K environments, replay buffers and agents live in one process."""
MAX_WORKERS = 1_024
"""Bound of --nproc and --threads: each is a process or an OS thread, so a typo must not fork thousands."""


MAX_IDLE_WINDOW_S = 3_600.0
"""Bound of --idle-window-s: an hour of idling is a typo, not a baseline."""


RunKey = tuple[str, str, int]
"""(method, env id, seed): one run of a plan."""


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
    method_overrides: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """`--set METHOD:KEY=VALUE`: {method: {"td3": {...}, "actor": {...}}}, applied after the global ones."""
    precision: str | None = None
    baseline: str = DEFAULT_BASELINE
    country: str = "USA"
    region: str | None = None
    """--region: a US state or Canadian province whose grid intensity CodeCarbon has (bench.energy.grid)."""
    carbon_intensity_g_per_kwh: float | None = None
    """--carbon-intensity: the user's own grid figure, g CO2e/kWh (recorded with source 'user')."""
    pue: float = 1.0
    """--pue: facility energy / IT energy, 1.0-3.0; emissions use energy_j x pue."""
    power_interval_s: float = 0.1
    idle_window_s: float = 0.0
    """--idle-window-s: the idle baseline before training (bench.run.idle), 0 none. A plan.json from
    before the baseline lacks it: its runs took none, and a resume of them takes none either."""
    target_return: float | None = None
    nproc: int | None = None
    """Data-parallel ranks of every run; None: each method's default (`MethodSpec.world_size`)."""
    backend: str = "auto"
    threads: int | None = None
    engine: str = "auto"
    """'auto' (native kernels for spiking layers where they run, else torch), 'native' or 'torch'."""
    seed_batch: int = 1
    """Seeds of one method × env trained together in one process (spikerl.batch_loop); 1: one run each."""
    launcher: str = "inline"
    """Where the runs execute: 'inline' (this process, one after another), 'local' (submitit jobs on
    this machine) or 'slurm' (a submitit job array); bench.run.sweep."""
    jobs: int = 1
    """Runs executing at once (local: processes on this machine; slurm: the array's parallelism)."""
    slurm: dict[str, Any] = field(default_factory=dict)
    """SLURM options of each array task (bench.run.sweep.SLURM_OPTIONS), when launcher is 'slurm'."""
    config_file: str | None = None
    """The sweep file of `--config` as given (bench.cli.config_file), so a report can name it."""
    config_sha256: str | None = None
    """SHA-256 of that file's bytes as read: which version of it made the sweep."""
    argv: tuple[str, ...] = ()
    created_utc: str = ""

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["command"] = " ".join(["spikerl-bench", *self.argv])
        d["overrides"] = {"td3": self.td3_overrides, "actor": self.actor_overrides, "precision": self.precision,
                          "methods": self.method_overrides}
        return d

    @classmethod
    def from_json(cls, d: Any, source: Path | str = "plan.json") -> "Plan":
        """A plan read back from a run folder: nothing in it is trusted. Method and env names
        and seeds become folder names, so a wrong type or an unknown name is refused here,
        before any path is built from it."""
        if not isinstance(d, dict):
            raise RunFolderError(f"{source}: expected a JSON object")
        kw = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for key, check in _PLAN_CHECKS.items():
            if key in kw and not check(kw[key]):
                raise RunFolderError(f"{source}: {key} has an invalid value {_short(kw[key])}")
        required = [k for k, f in cls.__dataclass_fields__.items()
                    if f.default is MISSING and f.default_factory is MISSING]
        for key in ("methods", "envs", "seeds", *required):
            if key not in kw:
                raise RunFolderError(f"{source}: lacks {key}")
        for key in ("methods", "envs", "seeds", "argv"):
            kw[key] = tuple(kw.get(key, ()))
        return cls(**kw)

    def batches(self, runs: Sequence[RunKey] | None = None) -> list[tuple[RunKey, ...]]:
        """The plan's runs (or those of `runs`) in the units that train together: each method × env's
        seeds cut into consecutive groups of `seed_batch` in plan order (one run per unit when
        seed_batch is 1). The cut depends only on the plan, so a resume finds the same batches."""
        wanted = None if runs is None else set(runs)
        groups = [self.seeds[i:i + self.seed_batch] for i in range(0, len(self.seeds), self.seed_batch)]
        out = []
        for e in self.envs:
            for group in groups:
                for m in self.methods:
                    unit = tuple((m, e, s) for s in group if wanted is None or (m, e, s) in wanted)
                    if unit:
                        out.append(unit)
        return out

    def runs(self, methods: Sequence[str] | None = None) -> list[RunKey]:
        """Every (method, env, seed), or only those of `methods`, in training order."""
        return [(m, e, s) for e in self.envs for s in self.seeds for m in self.methods
                if methods is None or m in methods]


def _is_seed(x: Any) -> bool:
    return type(x) is int and 0 <= x <= MAX_SEED


def _is_number(x: Any, lo: float = -math.inf) -> bool:
    return type(x) in (int, float) and math.isfinite(x) and x > lo


def _is_method_overrides(v: Any) -> bool:
    """{method: {"td3": {...}, "actor": {...}}} with string keys; the values are checked where they
    are resolved (bench.run.resolve), as the global overrides are."""
    return isinstance(v, dict) and len(v) <= 10_000 and all(
        is_simple_name(m) and isinstance(o, dict) and set(o) <= {"td3", "actor"}
        and all(isinstance(kv, dict) and all(isinstance(k, str) for k in kv) for kv in o.values())
        for m, o in v.items())


def _unique_list(check):  # noqa: ANN001, ANN202
    return lambda v: isinstance(v, (list, tuple)) and 0 < len(v) <= 10_000 and all(map(check, v)) and \
        len(set(v)) == len(v)


_PLAN_CHECKS = {
    "methods": _unique_list(is_simple_name),
    "envs": _unique_list(is_simple_name),
    "seeds": _unique_list(_is_seed),
    "profile": lambda v: isinstance(v, str),
    "total_steps": lambda v: type(v) is int and 0 < v <= 10**12,
    "device": lambda v: v in ("auto", "cpu", "cuda"),
    "td3_overrides": lambda v: isinstance(v, dict),
    "actor_overrides": lambda v: isinstance(v, dict),
    "method_overrides": _is_method_overrides,
    "precision": lambda v: v in (None, "fp32", "bf16"),
    "baseline": lambda v: isinstance(v, str),
    "country": lambda v: isinstance(v, str) and len(v) == 3 and v.isalpha(),
    "region": lambda v: v is None or (isinstance(v, str) and 0 < len(v) <= 64),
    "carbon_intensity_g_per_kwh": lambda v: v is None or (_is_number(v) and 0 < v <= 2000),
    "pue": lambda v: _is_number(v) and 1.0 <= v <= 3.0,
    "power_interval_s": lambda v: _is_number(v, 0.0) and 1e-3 <= v <= 3600,  # as --power-interval
    "idle_window_s": lambda v: _is_number(v) and 0 <= v <= MAX_IDLE_WINDOW_S,  # as --idle-window-s
    "target_return": lambda v: v is None or _is_number(v),
    "nproc": lambda v: v is None or (type(v) is int and 0 < v <= MAX_WORKERS),
    "backend": lambda v: v in ("auto", "nccl", "gloo", "mpi"),
    "threads": lambda v: v is None or (type(v) is int and 0 < v <= MAX_WORKERS),
    "engine": lambda v: v in ("auto", "native", "torch"),
    "seed_batch": lambda v: type(v) is int and 0 < v <= MAX_SEED_BATCH,
    "launcher": lambda v: v in ("inline", "local", "slurm"),
    "jobs": lambda v: type(v) is int and 0 < v <= MAX_WORKERS,
    "slurm": lambda v: isinstance(v, dict),
    "config_file": lambda v: v is None or (isinstance(v, str) and 0 < len(v) <= 4096),
    "config_sha256": lambda v: v is None or (isinstance(v, str) and len(v) == 64 and set(v) <= set("0123456789abcdef")),
    "argv": lambda v: isinstance(v, (list, tuple)) and all(isinstance(a, str) for a in v),
    "created_utc": lambda v: isinstance(v, str),
}


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def validate_names(methods: Sequence[str], envs: Sequence[str]) -> None:
    for m in methods:
        try:
            get_method(m)  # its message names a plugin that was skipped, and why
        except KeyError as exc:
            raise UsageError(exc.args[0]) from None
    for e in envs:
        try:
            env = make_env(e)  # also rejects discrete or asymmetric action spaces
            try:
                check_checkpointable(env, e)
            finally:
                env.close()
        except ValueError as exc:
            raise UsageError(str(exc)) from None


def parse_set_options(items: Sequence[str], scope: str = "") -> tuple[dict[str, Any], dict[str, str]]:
    """`--set key=value` items into (TD3Config overrides, raw actor overrides keyed without 'actor.').
    Items for one method (`METHOD:KEY=VALUE`) are left to `parse_method_set_options`; `scope` is
    the `METHOD:` their messages name."""
    defaults = TD3Config().to_dict()
    td3: dict[str, Any] = {}
    actor: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not scope and ":" in key:
            continue
        if not sep or not key:
            raise UsageError(f"--set expects key=value, got {item!r}")
        if key.startswith("actor."):
            actor[key[len("actor."):]] = value
        elif key in defaults:
            try:
                td3[key] = coerce_value(defaults[key], value)
            except ValueError as exc:
                raise UsageError(f"--set {scope}{key}: {exc}") from None
        else:
            raise UsageError(f"--set: unknown setting {scope + key!r}; TD3 settings: {', '.join(defaults)}; "
                             "actor settings are written actor.NAME")
    return td3, actor


def parse_method_set_options(items: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """The `--set METHOD:KEY=VALUE` items among `items` into Plan.method_overrides:
    {method: {"td3": {...}, "actor": {...}}}, parsed as the global ones are."""
    scoped: dict[str, list[str]] = {}
    for item in items:
        key = item.partition("=")[0]
        if ":" not in key:
            continue
        method, _, rest = item.partition(":")
        method = method.strip()
        if not is_simple_name(method):
            raise UsageError(f"--set expects METHOD:KEY=VALUE with a method name before ':', got {item!r}")
        scoped.setdefault(method, []).append(rest)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for method, items_of in scoped.items():
        td3, actor = parse_set_options(items_of, scope=f"{method}:")
        out[method] = {"td3": td3, "actor": actor}
    return out


def default_run_dir(plan: Plan, root: Path = Path("runs")) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    tag = "-".join(plan.methods) if len(plan.methods) <= 4 else f"{len(plan.methods)}methods"
    base = root / f"{stamp}-{plan.profile}-{tag}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = Path(f"{base}-{n}")
    return path
