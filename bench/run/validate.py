"""The checks a plan passes before its run folder is created or resumed: method and env names,
the baseline, the country, the device and backend, and every method × env's resolved settings.
Each failure is a UsageError (one line, exit code 2) raised before anything is written."""
from __future__ import annotations

from pathlib import Path

import torch

from baselines.registry import get_method
from bench.energy.carbon import validate_country
from bench.energy.grid import grid_inputs
from bench.run.plan import Plan, UsageError, validate_names
from bench.run.resolve import check_settings, resolve_config, resolve_device
from bench.run.sweep_options import check_launcher


def check_plan(plan: Plan) -> torch.device:
    """Refuse a plan that could not run to the end here; returns the device it runs on."""
    validate_names(plan.methods, plan.envs)
    try:
        get_method(plan.baseline)
    except KeyError as exc:
        raise UsageError(f"--baseline: {exc.args[0]}") from None
    try:
        validate_country(plan.country)
    except ValueError as exc:
        raise UsageError(f"--country: {exc}") from None
    try:
        grid_inputs(plan.country, region=plan.region, intensity_g_per_kwh=plan.carbon_intensity_g_per_kwh,
                    pue=plan.pue)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    check_launcher(plan.launcher, plan.jobs, plan.slurm)
    for m in plan.method_overrides:
        if m not in plan.methods:  # a setting that would silently go nowhere
            raise UsageError(f"--set {m}:KEY=VALUE: {m!r} is not among the methods ({', '.join(plan.methods)})")
    if plan.launcher == "slurm" and plan.device == "cuda" and not torch.cuda.is_available():
        # submitted from a login node without GPUs: every setting is checked here; the device's own
        # choices (precision, engine) are checked by each task where it runs
        cuda = torch.device("cuda")
        check_backend(plan.backend, cuda)
        for m in plan.methods:
            for e in plan.envs:
                check_settings(get_method(m), e, plan)
        check_seed_batch(plan, cuda)
        return cuda
    device = resolve_device(plan.device)
    check_backend(plan.backend, device)
    if plan.launcher != "slurm":  # (SLURM places --nproc ranks over nodes: each task checks its own)
        check_local_gpus(plan.nproc, plan.backend, device)
    for m in plan.methods:
        for e in plan.envs:
            resolve_config(get_method(m), e, plan, device)
    check_seed_batch(plan, device)
    return device


def check_seed_batch(plan: Plan, device: torch.device) -> None:
    """A seed batch is one process on one device: it does not combine with data-parallel ranks."""
    if plan.seed_batch == 1:
        return
    if len(plan.seeds) % plan.seed_batch:
        # a smaller last batch would charge its seeds a different share of a process than the rest
        raise UsageError(f"--seed-batch {plan.seed_batch}: {len(plan.seeds)} seeds do not split into batches of "
                         f"{plan.seed_batch}; every seed's energy must be the same share of a process")
    from bench.run.resolve import world_size_for

    parallel = [m for m in plan.methods if world_size_for(get_method(m), plan, device) > 1]
    if parallel:
        raise UsageError(f"--seed-batch {plan.seed_batch}: {', '.join(parallel)} would train on several ranks "
                         "(--nproc, or SpikeRL's default on GPUs); a seed batch is one process: pass --nproc 1")


def check_backend(backend: str, device: torch.device) -> None:
    """The same refusal at any world size: a backend that cannot start here is a bad flag even
    when one rank would never open a process group."""
    from spikerl.distributed import DistributedSetupError, resolve_backend

    try:
        resolve_backend(backend, device)
    except DistributedSetupError as exc:
        raise UsageError(str(exc)) from None


def check_local_gpus(nproc: int | None, backend: str, device: torch.device) -> None:
    """--nproc N local NCCL ranks need N visible GPUs (`spikerl.distributed.check_local_gpus`)."""
    from spikerl.distributed import DistributedSetupError
    from spikerl.distributed import check_local_gpus as check

    try:
        check(nproc, backend, device)
    except DistributedSetupError as exc:
        raise UsageError(str(exc)) from None


def make_new_folder(run_dir: Path) -> None:
    """Create run_dir (and missing parents) as the first write of a run. An existing non-empty
    path, or one the OS refuses (under a file, in /proc, a name too long), is a UsageError; folders
    made before a refusal are removed again."""
    try:
        taken = run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir()))
    except (OSError, ValueError) as exc:
        raise UsageError(f"unusable run folder {str(run_dir)!r}: {_reason(exc)}") from None
    if taken:
        raise UsageError(f"{run_dir} already exists; a new run never writes into an existing folder "
                         "(choose another --out, or --resume it)")
    missing = []
    p = run_dir.absolute()
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    made = []
    try:
        for d in reversed(missing):
            d.mkdir()
            made.append(d)
        if not run_dir.is_dir():
            raise NotADirectoryError(f"{run_dir} is not a folder")
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        for d in reversed(made):
            d.rmdir()
        raise UsageError(f"cannot create run folder {run_dir}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc)
