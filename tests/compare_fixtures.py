"""TEST FIXTURE: small synthetic run folders with chosen per-window rates, for the compare tests.

Nothing here was measured. `make_run` writes plan.json, environment.json and per seed
config.json, progress.csv, evals.csv and result.json in the layout `spikerl-bench run` writes
(names from bench.schema), so that the progress windows hold exactly the rates asked for:
window i of a seed runs at sps[i] env steps/s and uses energy_per_step[i] J per env step.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

from bench import schema
from bench.run import store
from bench.run.plan import Plan

LOG_EVERY = 250
UPDATE_AFTER = 500


def make_run(root: Path, rates: Mapping[tuple[str, int], tuple[Sequence[float], Sequence[float]]], *,
             env: str = "HalfCheetah-v4", final_return: float = -200.0, eval_std: float = 0.0,
             eval_episodes: int = 1, status: Mapping[tuple[str, int], str] | None = None,
             td3: Mapping[str, object] | None = None, result_extra: Mapping[str, object] | None = None,
             cpu_model: str = "Fixture CPU", placement: Mapping[str, object] | None = None) -> Path:
    """`rates` maps (method, seed) to (sps per window, J per env step per window). Two
    warm-up windows (no updates yet) come first and an evaluation lands in no window."""
    methods = tuple(dict.fromkeys(m for m, _ in rates))
    seeds = tuple(sorted({s for _, s in rates}))
    n_windows = {len(v[0]) for v in rates.values()}.pop()
    total = UPDATE_AFTER + LOG_EVERY * n_windows
    root.mkdir(parents=True)
    plan = Plan(methods=methods, envs=(env,), seeds=seeds, profile="ci", total_steps=total, device="cpu",
                argv=("run", "--profile", "ci"), created_utc="2025-01-01T00:00:00+00:00")
    store.write_json(root / schema.PLAN, plan.to_json())
    store.write_json(root / schema.ENVIRONMENT, {"cpu_model": cpu_model, "cpu_count": 2, "gpus": [],
                                                 "git_commit": "0" * 40, "git_dirty": False,
                                                 "spiking_kernels": "native", "hostname": "TEST-FIXTURE"})
    for (method, seed), (sps, eps) in rates.items():
        folder = store.seed_dir(root, method, env, seed)
        folder.mkdir(parents=True)
        cfg = {"total_steps": total, "batch_size": 100, "log_every": LOG_EVERY, "update_after": UPDATE_AFTER,
               **(td3 or {})}
        store.write_json(folder / schema.CONFIG, {"method": method, "env": env, "seed": seed, "device": "cpu",
                                                  "world_size": 1, "precision": "fp32", "threads": 1,
                                                  "td3": cfg, "actor": {"hidden": [256, 256]},
                                                  **({"placement": dict(placement)} if placement else {})})
        rows = []
        step, wall, energy, updates = 0, 0.0, 0.0, 0
        for s_rate, e_rate in [(5000.0, 0.01), (1000.0, 0.01), *zip(sps, eps, strict=True)]:
            step += LOG_EVERY
            wall += LOG_EVERY / s_rate
            energy += LOG_EVERY * e_rate
            updates = 0 if step < UPDATE_AFTER else updates + LOG_EVERY
            rows.append({"step": step, "wall_s": wall, "episodes": 0, "sps": s_rate, "updates": updates,
                         "energy_j": energy})
        store.write_csv(folder / schema.PROGRESS, schema.PROGRESS_COLUMNS, rows)
        store.write_csv(folder / schema.EVALS, schema.EVAL_COLUMNS, [
            {"step": total, "wall_s": wall + 1.0, "return_mean": final_return, "return_std": eval_std,
             "episodes": eval_episodes, "energy_j": energy + 5.0}])
        st = (status or {}).get((method, seed), schema.Status.COMPLETE.value)
        store.write_json(folder / schema.RESULT, {
            "method": method, "env": env, "seed": seed, "world_size": 1, "backend": "none", "precision": "fp32",
            "device": "cpu", "status": st, "error": None if st == "complete" else "RuntimeError: fixture",
            "steps": total, "wall_s": wall + 1.0, "final_return_mean": final_return,
            "best_return_mean": final_return, "updates": updates, "energy_j": energy + 5.0,
            "energy_source": "rapl", "estimated": False, "avg_power_w": (energy + 5.0) / (wall + 1.0),
            "cpu_energy_j": energy + 5.0, "train_wall_s": wall, "eval_wall_s": 1.0, "other_wall_s": 0.0,
            "train_energy_j": energy, "eval_energy_j": 5.0, "other_energy_j": 0.0, **(result_extra or {})})
    return root


def edit_json(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))
