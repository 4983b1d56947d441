"""The data behind the learning-curve and power figures, from each seed folder's evals.csv and
power.csv: returns averaged over seeds, and power traces averaged down to a drawable size."""
from __future__ import annotations

import pandas as pd

from bench import schema
from reports import stats
from reports.format import ENERGY_UNITS, SEED_FILES, STEPS, pick_unit, time_unit
from reports.load import RunFolder, SeedRun, batch_seeds, power_segment_starts
from reports.model import CurvePanel, DeviceTrace, LearningCurves, PowerTraces, SeedPower

MAX_TRACE_POINTS = 600
"""Longer traces are averaged into this many points: the SVG stays small, the shape honest."""
CURVES_SOURCE = f"{SEED_FILES}{schema.EVALS} (step, wall_s, return_mean, energy_j)"
POWER_SOURCE = f"{SEED_FILES}{schema.POWER} (t_s, device, power_w, source, estimated)"


def _runs_by_method(run: RunFolder, env: str) -> dict[str, list[SeedRun]]:
    """Methods with a seed folder on `env`, in the run's method order."""
    return {m: run.runs_of(m, env) for m in run.methods if run.runs_of(m, env)}


def learning_curves(run: RunFolder, env: str) -> LearningCurves:
    """Evaluation return against env steps, wall time and energy, per method over its seeds."""
    evals = {m: [r.evals for r in rs if r.evals is not None] for m, rs in _runs_by_method(run, env).items()}
    frames = [f for fs in evals.values() for f in fs]
    t_unit = time_unit(v for f in frames if "wall_s" in f for v in f["wall_s"])
    e_unit = pick_unit((v for f in frames if "energy_j" in f for v in f["energy_j"]), ENERGY_UNITS)
    on_env = run.seeds[run.seeds["env"] == env]
    estimated = bool(on_env["estimated"].fillna(False).astype(bool).any())
    axes = [("step", STEPS, "Env steps"),
            ("wall_s", t_unit, f"Wall time ({t_unit.label})"),
            ("energy_j", e_unit, f"Energy ({e_unit.label}{', estimated' if estimated else ''})")]
    panels = [CurvePanel(column, label, unit, {m: stats.curve_over_seeds(fs, column) for m, fs in evals.items()})
              for column, unit, label in axes]
    return LearningCurves(env, panels)


def power_traces(run: RunFolder, env: str) -> PowerTraces:
    """Each device's power of each seed against time since the seed started."""
    by_method = {m: [(r, r.power) for r in rs if r.power is not None] for m, rs in _runs_by_method(run, env).items()}
    longest = max((p["t_s"].max() for rs in by_method.values() for _, p in rs if len(p)), default=0)
    return PowerTraces(env, time_unit([longest]),
                       {m: [SeedPower(r.seed, _device_traces(p), len(batch_seeds(r.config) or [r.seed]),
                                      power_segment_starts(p))
                            for r, p in rs] for m, rs in by_method.items()})


def _device_traces(power: pd.DataFrame) -> list[DeviceTrace]:
    out = []
    for device, g in power.groupby("device", sort=True):
        g = g.sort_values("t_s")
        t_s, power_w = stats.bin_mean(g["t_s"].to_numpy(), g["power_w"].to_numpy(), MAX_TRACE_POINTS)
        estimated = bool(g["estimated"].fillna(False).astype(bool).any()) if "estimated" in g else False
        what = ", ".join(sorted({s for s in g.get("source", pd.Series(dtype=str)) if s}))
        if estimated and "estimate" not in what:
            what = f"{what}, estimated" if what else "estimated"
        out.append(DeviceTrace(str(device), t_s, power_w, what))
    return out


SPIKE_LAYER_ORDER = ("encoder", "hidden 1", "hidden 2", "output")


def spike_layers(run: RunFolder) -> pd.DataFrame:
    """Firing rate per spiking layer (mean over complete seeds), from result.json's activity."""
    rows = []
    for r in run.runs:
        if r.status != schema.Status.COMPLETE or not isinstance(r.result, dict):
            continue
        act = r.result.get("activity")
        for layer in (act.get("layers") if isinstance(act, dict) else None) or []:
            if isinstance(layer, dict) and layer.get("rate") is not None:
                rows.append({"method": r.method, "env": r.env, "seed": r.seed, "layer": str(layer.get("name")),
                             "rate": float(layer["rate"])})
    cols = ["method", "env", "layer", "rate", "n"]
    if not rows:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(rows)
    out = df.groupby(["method", "env", "layer"], sort=False).agg(rate=("rate", "mean"), n=("seed", "nunique"))
    return out.reset_index()[cols]
