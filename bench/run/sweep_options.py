"""The launcher options of a plan (`--launcher`, `--jobs`, `--slurm-*`), checked before anything is
written. SLURM options end up in an sbatch script, so every value is one token of ordinary
characters: a newline or a quote in `--slurm-opt` must never become a second script line."""
from __future__ import annotations

import re
from typing import Any, Sequence

from bench.run.plan import MAX_WORKERS, UsageError

LAUNCHERS = ("inline", "local", "slurm")
SLURM_OPTIONS = ("partition", "time_min", "gpus_per_task", "cpus_per_task", "mem", "account", "qos", "extra")
"""Keys of Plan.slurm; `extra` holds the --slurm-opt KEY=VALUE pairs (more #SBATCH lines)."""

_TOKEN = re.compile(r"[A-Za-z0-9_.,:=@+/%-]{1,200}")
_KEY = re.compile(r"[a-z][a-z0-9-]{0,63}")
_MEM = re.compile(r"[0-9]{1,7}[KMGT]?B?", re.IGNORECASE)
_TIME = re.compile(r"(?:(\d{1,3})-)?(\d{1,6}(?::\d{1,2}){0,2})")
# options submitit sets itself: a --slurm-opt for them would contradict the job it generates
_OWNED = {"array", "output", "error", "job-name", "open-mode", "signal", "parsable", "wrap", "ntasks-per-node",
          "nodes", "time", "partition", "gpus-per-task", "cpus-per-task", "mem", "account", "qos"}
MAX_TIME_MIN = 366 * 24 * 60


def parse_time_min(text: str) -> int:
    """A SLURM time limit in whole minutes, in sbatch's own grammar: 'M', 'M:S', 'H:M:S', 'D-H',
    'D-H:M' or 'D-H:M:S' (so '30:00' is 30 minutes, as sbatch reads it). Seconds round up."""
    t = text.strip()
    m = _TIME.fullmatch(t)
    if m is None:
        raise UsageError(f"--slurm-time: expected sbatch's M, M:S, H:M:S, D-H, D-H:M or D-H:M:S, got {text!r}")
    days, rest = m.group(1), m.group(2).split(":")
    parts = [int(x) for x in rest]
    if days is None:
        h, mins, secs = (0, parts[0], 0) if len(parts) == 1 else (0, *parts) if len(parts) == 2 else tuple(parts)
    else:
        h, mins, secs = (parts + [0, 0])[:3]
    minutes = int(days or 0) * 1440 + h * 60 + mins + (1 if secs else 0)
    if not 0 < minutes <= MAX_TIME_MIN:
        raise UsageError(f"--slurm-time must be 1 minute to 366 days, got {text!r}")
    return minutes


def _token(flag: str, value: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise UsageError(f"{flag}: {value!r} is not one word of letters, digits and _.,:=@+/%-")
    return value


def _count(flag: str, value: int | None) -> int | None:
    if value is not None and not 0 < value <= MAX_WORKERS:
        raise UsageError(f"{flag} must be 1 to {MAX_WORKERS}, got {value}")
    return value


def parse_slurm_extra(items: Sequence[str]) -> dict[str, str]:
    """`--slurm-opt KEY=VALUE` items (sbatch long options without the dashes, e.g. constraint=a100)."""
    extra: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not _KEY.fullmatch(key):
            raise UsageError(f"--slurm-opt expects an sbatch option as key=value (e.g. constraint=a100), got {item!r}")
        if key in _OWNED:
            raise UsageError(f"--slurm-opt {key}: set by spikerl-bench itself (use its own flag where one exists)")
        extra[key] = _token(f"--slurm-opt {key}", value.strip())
    return extra


def slurm_options(*, partition: str | None = None, time: str | None = None, gpus_per_task: int | None = None,
                  cpus_per_task: int | None = None, mem: str | None = None, account: str | None = None,
                  qos: str | None = None, extra: Sequence[str] = ()) -> dict[str, Any]:
    """Plan.slurm from the flags' values (only those given)."""
    out: dict[str, Any] = {}
    if partition is not None:
        out["partition"] = _token("--slurm-partition", partition)
    if time is not None:
        out["time_min"] = parse_time_min(time)
    if gpus_per_task is not None:
        out["gpus_per_task"] = _count("--slurm-gpus-per-task", gpus_per_task)
    if cpus_per_task is not None:
        out["cpus_per_task"] = _count("--slurm-cpus-per-task", cpus_per_task)
    if mem is not None:
        if not _MEM.fullmatch(mem.strip()):
            raise UsageError(f"--slurm-mem: expected e.g. 16G or 4000M, got {mem!r}")
        out["mem"] = mem.strip().upper()
    if account is not None:
        out["account"] = _token("--slurm-account", account)
    if qos is not None:
        out["qos"] = _token("--slurm-qos", qos)
    if extra:
        out["extra"] = parse_slurm_extra(extra)
    return out


def check_launcher(launcher: str, jobs: int, slurm: dict[str, Any]) -> None:
    """The launcher fields of a plan, from flags or read back from plan.json."""
    if launcher not in LAUNCHERS:
        raise UsageError(f"--launcher must be one of {', '.join(LAUNCHERS)}, got {launcher!r}")
    if type(jobs) is not int or not 0 < jobs <= MAX_WORKERS:
        raise UsageError(f"--jobs must be 1 to {MAX_WORKERS}, got {jobs!r}")
    if launcher == "inline" and jobs > 1:
        raise UsageError("--jobs N > 1 runs several runs at once: choose --launcher local or slurm")
    if slurm and launcher != "slurm":
        raise UsageError("--slurm-* options need --launcher slurm")
    normalised_slurm(slurm)


def normalised_slurm(slurm: Any) -> dict[str, Any]:
    """Plan.slurm rebuilt through the flags' own checks; UsageError unless it is exactly that
    rebuild (a value that would be stripped, re-cased or retyped on its way into the sbatch script
    is refused, not silently changed). The executor is built from this, never from raw values."""
    if not isinstance(slurm, dict):
        raise UsageError(f"slurm options must be a table, got {type(slurm).__name__}")
    unknown = set(slurm) - set(SLURM_OPTIONS)
    if unknown:
        raise UsageError(f"slurm options: unknown {', '.join(sorted(map(str, unknown)))}; "
                         f"known: {', '.join(SLURM_OPTIONS)}")
    for key in ("partition", "mem", "account", "qos"):
        if key in slurm and not isinstance(slurm[key], str):
            raise UsageError(f"slurm option {key} must be text, got {slurm[key]!r}")
    for key in ("gpus_per_task", "cpus_per_task", "time_min"):
        if key in slurm and type(slurm[key]) is not int:
            raise UsageError(f"slurm option {key} must be an integer, got {slurm[key]!r}")
    extra = slurm.get("extra", {})
    if not isinstance(extra, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
        raise UsageError(f"slurm option extra must map option names to text, got {extra!r}")
    rebuilt = slurm_options(
        partition=slurm.get("partition"), account=slurm.get("account"), qos=slurm.get("qos"),
        gpus_per_task=slurm.get("gpus_per_task"), cpus_per_task=slurm.get("cpus_per_task"), mem=slurm.get("mem"),
        time=str(slurm["time_min"]) if "time_min" in slurm else None, extra=[f"{k}={v}" for k, v in extra.items()])
    if rebuilt != slurm:
        changed = sorted(k for k in set(rebuilt) | set(slurm) if rebuilt.get(k) != slurm.get(k))
        raise UsageError(f"slurm option {changed[0]} has an invalid value {slurm.get(changed[0])!r}")
    return rebuilt
