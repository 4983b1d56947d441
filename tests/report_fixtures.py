"""TEST FIXTURE: a synthetic run folder for the report tests.

Nothing here was measured. `make_fixture_run` writes a run folder in the layout that
`spikerl-bench run` writes (plan.json, environment.json, summary.csv and per seed config.json,
progress.csv, evals.csv, power.csv, result.json, emissions.csv) with made-up but plausible
numbers, so the report can be tested before (and independently of) a real smoke run. Every
file says it is a fixture (hostname, command, project_name).

`fixture_run_dir` is the default: methods spikerl and popsan (the baseline), seeds 0 and 1,
HalfCheetah-v4, energy estimated (no NVML/RAPL), spikerl seed 1 'interrupted', popsan seed 1
still 'running' (no result.json).
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pytest

FIXTURE_HOST = "TEST-FIXTURE-NOT-A-REAL-RUN"

# Per method: (seconds per 1000 steps, CPU watts, asymptotic return).
_PROFILE = {
    "spikerl": (4.0, 41.0, 5200.0),
    "popsan": (5.9, 42.0, 5000.0),
    "dsrl": (5.0, 38.0, 3600.0),
    "mlp": (2.5, 36.0, 5600.0),
}
_INTENSITY_KG_PER_J = 369.5e-3 / 3.6e6  # USA, 369.5 g/kWh


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2), encoding="utf-8")


def _seed_files(d: Path, method: str, env: str, seed: int, status: str, total_steps: int,
                estimated: bool, config_extra: Mapping[str, Any]) -> dict[str, Any] | None:
    """Write one seed's folder; return its result dict (None when it is still running)."""
    d.mkdir(parents=True, exist_ok=True)
    sec_per_k, watts, top = _PROFILE.get(method, (5.0, 40.0, 4000.0))
    rng = np.random.default_rng([seed, sum(map(ord, method)), sum(map(ord, env))])
    sec_per_k *= 1.0 + 0.05 * rng.standard_normal()
    watts *= 1.0 + 0.03 * rng.standard_normal()
    top *= 1.0 + 0.06 * rng.standard_normal()
    stop = {"complete": total_steps, "interrupted": int(total_steps * 0.6),
            "failed": int(total_steps * 0.3), "running": int(total_steps * 0.7)}[status]
    source = "estimate" if estimated else "rapl"
    config = {
        "method": method, "env": env, "seed": seed, "device": "cpu", "world_size": 1,
        "precision": "bf16" if method == "spikerl" else "fp32",
        "td3": {"total_steps": total_steps, "gamma": 0.99, "tau": 0.005, "batch_size": 100,
                "start_steps": 1000, "eval_every": 10_000, "eval_episodes": 10},
        "actor": {"timesteps": 5, "hidden": [256, 256], "encoder": "deterministic"},
        **config_extra,
    }
    _write_json(d / "config.json", config)

    steps = np.arange(1000, stop + 1, 1000)
    wall = steps / 1000 * sec_per_k
    energy = wall * watts
    ret = top * (1 - np.exp(-steps / (total_steps / 3))) + 60 * rng.standard_normal(steps.size) - 300
    _write_csv(d / "progress.csv", ["step", "wall_s", "episodes", "train_return", "sps", "energy_j"],
               [[int(s), round(w, 3), int(s // 1000), round(r, 2), round(1000 / sec_per_k, 1), round(e, 3)]
                for s, w, r, e in zip(steps, wall, ret, energy, strict=True)])

    eval_steps = np.arange(0, stop + 1, 10_000)
    ewall = eval_steps / 1000 * sec_per_k
    eret = top * (1 - np.exp(-eval_steps / (total_steps / 3))) - 300 + 80 * rng.standard_normal(eval_steps.size)
    _write_csv(d / "evals.csv", ["step", "wall_s", "return_mean", "return_std", "episodes", "energy_j"],
               [[int(s), round(w, 3), round(r, 2), round(abs(40 + 0.05 * r), 2), 10, round(w * watts, 3)]
                for s, w, r in zip(eval_steps, ewall, eret, strict=True)])

    t = np.arange(0.0, wall[-1] + 1e-9, 1.0)
    p = watts + 3.0 * np.sin(t / 7.0) + rng.standard_normal(t.size)
    _write_csv(d / "power.csv", ["t_s", "device", "power_w", "energy_j", "source", "estimated"],
               [[round(tt, 2), "cpu", round(pp, 3), round(float(np.sum(p[: i + 1])), 3), source, estimated]
                for i, (tt, pp) in enumerate(zip(t, p, strict=True))])
    if status == "running":
        return None

    e_total = float(energy[-1])
    kg = e_total * _INTENSITY_KG_PER_J
    _write_csv(d / "emissions.csv",
               ["timestamp", "project_name", "run_id", "duration", "emissions", "energy_consumed",
                "country_iso_code"],
               [["2025-01-01T00:00:00", "TEST-FIXTURE", f"{method}-{seed}", round(float(wall[-1]), 3),
                 kg, e_total / 3.6e6, "USA"]])
    reached = ret[-1] > 0.8 * top
    result = {
        "method": method, "env": env, "seed": seed, "steps": int(stop), "wall_s": float(wall[-1]),
        "final_return_mean": float(eret[-1]), "best_return_mean": float(np.max(eret)),
        "status": status, "error": {"failed": "RuntimeError: CUDA out of memory (fixture)",
                                    "interrupted": "KeyboardInterrupt"}.get(status),
        "world_size": 1, "backend": None, "precision": config["precision"],
        "energy_j": e_total, "energy_source": source, "estimated": estimated,
        "avg_power_w": e_total / float(wall[-1]), "gpu_energy_j": None, "cpu_energy_j": e_total,
        "train_energy_j": 0.85 * e_total, "eval_energy_j": 0.1 * e_total, "other_energy_j": 0.05 * e_total,
        "train_wall_s": 0.8 * float(wall[-1]), "eval_wall_s": 0.15 * float(wall[-1]),
        "other_wall_s": 0.05 * float(wall[-1]), "cpu_estimated": estimated,
        "measured_energy_share": 0.0 if estimated else 1.0, "run_measured_energy_share": 0.0 if estimated else 1.0,
        "emissions_kg": kg,
        "codecarbon_energy_kwh": e_total / 3.6e6, "emissions_error": None,
        "energy_to_target_j": float(e_total * 0.7) if reached else None,
        "time_to_target_s": float(wall[-1] * 0.7) if reached else None,
    }
    if status == "complete":
        result.update(_fixture_activity(method, rng))
    _write_json(d / "result.json", result)
    return result


def _fixture_activity(method: str, rng: np.random.Generator) -> dict[str, Any]:
    """Made-up spike activity with the shapes of the real actors (obs 17, act 6), counted by
    bench.metrics.activity's own classes so the fields are consistent."""
    from bench.metrics.activity import Activity, LayerActivity

    def spiking(name: str, n: int, t: int, rate: float, fan_out: int, macs: float = 0.0) -> LayerActivity:
        spikes = n * t * rate
        return LayerActivity(name, "spiking", n, t, spikes, rate, fan_out, spikes * fan_out, macs)

    r = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    if method in ("spikerl", "popsan"):
        layers = [spiking("encoder", 170, 5, r(0.08, 0.12), 256, 170.0), spiking("hidden 1", 256, 5, r(0.1, 0.3), 256),
                  spiking("hidden 2", 256, 5, r(0.1, 0.3), 60), spiking("output", 60, 5, r(0.2, 0.5), 0, 60.0)]
        t = 5
    elif method == "dsrl":
        layers = [LayerActivity("input (analog, sign split)", "analog", 34, 4, None, None, 400, 0.0, 34 * 400.0),
                  spiking("hidden 1", 400, 4, r(0.02, 0.08), 300), spiking("hidden 2", 300, 4, r(0.02, 0.08), 6),
                  LayerActivity("output (integrator)", "readout", 6, 4, None, None, 0, 0.0, 0.0)]
        t = 4
    else:
        layers = [LayerActivity(f"linear {k + 1}", "analog", a, 1, None, None, b, 0.0, float(a * b))
                  for k, (a, b) in enumerate(((17, 256), (256, 256), (256, 6)))]
        t = 1
    return Activity(layers, 2000, t, 2, "TEST FIXTURE: made-up activity").result_fields()


def make_fixture_run(root: Path, *, methods: Sequence[str] = ("spikerl", "popsan"),
                     envs: Sequence[str] = ("HalfCheetah-v4",), seeds: Sequence[int] = (0, 1),
                     statuses: Mapping[tuple[str, int], str] | None = None,
                     total_steps: int = 50_000, estimated: bool = True, baseline: str = "popsan",
                     command: str | None = None,
                     config_extra: Mapping[str, Any] | None = None) -> Path:
    """Write a synthetic run folder under `root` and return it.

    `statuses` maps (method, seed) to 'complete' (default), 'interrupted', 'failed' or
    'running' (no result.json and no summary row).
    """
    statuses = dict(statuses or {})
    root.mkdir(parents=True, exist_ok=True)
    cmd = command or (f"spikerl-bench run --methods {','.join(methods)} --envs {','.join(envs)} "
                      f"--seeds {','.join(map(str, seeds))} --total-steps {total_steps}  # TEST FIXTURE")
    _write_json(root / "plan.json", {
        "argv": cmd.split(), "command": cmd, "methods": list(methods), "envs": list(envs),
        "seeds": list(seeds), "total_steps": total_steps, "profile": "smoke", "device": "cpu",
        "baseline": baseline, "country": "USA", "nproc": 1, "created_utc": "2025-01-01T00:00:00Z",
        "overrides": {}})
    _write_json(root / "environment.json", {
        "cpu_model": "Fixture CPU @ 2.0GHz", "cpu_count": 2, "gpus": [], "torch": "2.5.0+cpu",
        "gymnasium": "1.0.0", "mujoco": "3.2.0", "python": "3.11.7", "platform": "Linux-x86_64",
        "hostname": FIXTURE_HOST, "git_commit": "0123456789abcdef0123456789abcdef01234567",
        "git_dirty": True, "torch_threads": 2, "spikerl_bench_version": "0.1.0"})
    results = []
    for m in methods:
        for e in envs:
            for s in seeds:
                r = _seed_files(root / m / e / f"seed{s}", m, e, s, statuses.get((m, s), "complete"),
                                total_steps, estimated, config_extra or {})
                if r is not None:
                    results.append(r)
    _write_summary(root / "summary.csv", results, baseline)
    return root


def _write_summary(path: Path, results: list[dict[str, Any]], baseline: str) -> None:
    """summary.csv as `spikerl-bench run` writes it: result fields plus GPS-UP (against the
    baseline's complete-seed means) and carbon equivalents."""
    base: dict[str, tuple[float, float]] = {}
    for env in {r["env"] for r in results}:
        b = [r for r in results if r["env"] == env and r["method"] == baseline and r["status"] == "complete"]
        if b:
            base[env] = (float(np.mean([r["wall_s"] for r in b])), float(np.mean([r["energy_j"] for r in b])))
    fields = list(results[0].keys()) + ["speedup", "powerup", "greenup", "gpsup_category",
                                        "car_miles", "tv_hours", "household_week_pct"]
    rows = []
    for r in results:
        row = dict(r)
        if r["env"] in base and r["status"] == "complete":
            t0, e0 = base[r["env"]]
            s = t0 / r["wall_s"]
            p = (r["energy_j"] / r["wall_s"]) / (e0 / t0)
            row.update(speedup=s, powerup=p, greenup=s / p, gpsup_category=_category(s, p))
        kg = r["emissions_kg"]
        row.update(car_miles=kg / 0.409, tv_hours=kg / 0.014409, household_week_pct=kg / 160.58 * 100)
        rows.append(row)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for row in rows:
            w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fields})


def _category(s: float, p: float, tol: float = 0.01) -> int:
    """Fixture-only GPS-UP category (DESIGN §5.3), enough to fill summary.csv."""
    one = lambda v: math.isclose(v, 1.0, rel_tol=tol)  # noqa: E731
    if s >= 1:
        if one(p):
            return 2
        if p < 1:
            return 1
        return 3 if p < s else 5
    if one(p):
        return 7
    if p > 1:
        return 8
    return 4 if p < s else 6


DEFAULT_STATUSES = {("spikerl", 1): "interrupted", ("popsan", 1): "running"}


@pytest.fixture(scope="session")
def fixture_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TEST FIXTURE run folder: spikerl + popsan (baseline), seeds 0-1, HalfCheetah-v4,
    estimated energy, spikerl seed 1 interrupted, popsan seed 1 running (no result.json)."""
    return make_fixture_run(tmp_path_factory.mktemp("fixture_run") / "run",
                            statuses=DEFAULT_STATUSES)
