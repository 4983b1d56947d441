"""Warn before training when a plan's methods would not do equal training work (bench.metrics.work):
GPS-UP would then refuse to compare them, after hours of training."""
from __future__ import annotations

from baselines.registry import get_method
from bench.run.plan import Plan
from bench.run.resolve import resolve_config, resolve_device

WORK_SETTINGS = ("total_steps", "batch_size", "update_every", "updates_per_step", "update_after")
"""The TD3 settings that fix a run's env steps, updates and batch size."""


def unequal_work_warning(plan: Plan) -> str | None:
    """One line naming the first setting on which a method differs from the baseline's, or None."""
    try:
        device = resolve_device(plan.device)
    except Exception:  # noqa: BLE001 - e.g. a CUDA plan submitted from a login node: checked where it runs
        return None
    for env in plan.envs:
        work = {m: resolve_config(get_method(m), env, plan, device).td3 for m in plan.methods}
        base = plan.baseline if plan.baseline in work else plan.methods[0]
        for m, cfg in work.items():
            for key in WORK_SETTINGS:
                a, b = getattr(cfg, key), getattr(work[base], key)
                if a != b:
                    return (f"warning: {m} on {env} has {key}={a}, the baseline {base} {key}={b}: unequal training "
                            f"work, so GPS-UP will not compare them (set it alike: --set {m}:{key}={b})")
    return None
