"""The idle baseline of `spikerl-bench run` (bench.energy.baseline): who takes the window, when.

    launcher, --jobs           idle window (plan.idle_window_s, --idle-window-s, 0 skips)
    inline (one after another)  each run its own, before its training
    local --jobs 1, slurm --jobs 1
    local --jobs N > 1          one, by the sweep on this machine before any run starts, written to
                                RUN/idle_baseline.json; each run records that idle power (idle_baseline
                                'sweep') and its dynamic energy from it, taking no window of its own
    slurm --jobs N > 1          none: a task cannot know that no sibling trains on its node, and another
                                node's idle power is not its own; the run records why (meter_errors)

An idle window taken while a sibling run trains beside it would measure that training, not idle.
The sweep's baseline carries its host; a run on another host ignores it (bench.energy.callback).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from bench import schema
from bench.energy.baseline import SweepIdle, measure_idle_power_w
from bench.run import store
from bench.run.plan import Plan

IDLE_ENV = "SPIKERL_BENCH_SWEEP_IDLE"
"""The sweep's idle baseline as JSON, handed by the local launcher to each task (bench.run.sweep)."""
IDLE_FILE = schema.IDLE_BASELINE


def idle_options(plan: Plan, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """EnergyCallback's idle keywords for one run of `plan` in this process."""
    raw = (os.environ if environ is None else environ).get(IDLE_ENV)
    sweep = None
    if raw:
        try:
            sweep = SweepIdle.from_json(json.loads(raw))
        except ValueError:
            sweep = None
    return {"idle_window_s": plan.idle_window_s, "sweep_idle": sweep}


def measure_sweep_idle(run_dir: Path, plan: Plan, device_type: str, meter_factory: Any = None) -> SweepIdle | None:
    """One idle window on this machine before a local sweep's runs start side by side: every GPU
    the slots may use, the CPU and the RAM as the runs meter them (the CPU estimate over every
    CPU). Written atomically to RUN/idle_baseline.json; None (said on stderr) when no meter starts."""
    from bench.energy.estimate import machine_cpus
    from bench.energy.meter import PowerMeter
    from bench.energy.nvml import visible_gpu_ids

    if plan.idle_window_s <= 0:
        return None
    factory = meter_factory or PowerMeter.create
    print(f"sweep: {plan.idle_window_s:g} s idle baseline on this machine before the runs start", file=sys.stderr)
    try:
        meter = factory(gpu_ids=visible_gpu_ids() if device_type == "cuda" else [], cpu="auto", ram="auto",
                        interval_s=plan.power_interval_s, estimate_cpus=machine_cpus())
        try:
            power_w = measure_idle_power_w(meter, plan.idle_window_s)
        finally:
            meter.stop()
    except Exception as exc:  # noqa: BLE001 - a baseline is context, never a reason not to run
        print(f"spikerl-bench: idle baseline failed ({type(exc).__name__}: {exc}); the runs record none",
              file=sys.stderr)
        return None
    idle = SweepIdle(socket.gethostname(), plan.idle_window_s, power_w,
                     dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    store.write_json(run_dir / IDLE_FILE, idle.to_json())
    return idle
