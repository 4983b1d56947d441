"""The report's fairness warnings: contended runs, mixed engines, identical computations, W > 1."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from reports import fairness


def _seeds(rows: list[dict[str, Any]]) -> pd.DataFrame:
    base = {"env": "HalfCheetah-v4", "seed": 0, "status": "complete", "world_size": 1, "steps": 1000,
            "updates": 1000, "foreign_cpu_share": 0.01, "foreign_gpu_processes": None, "engine": "native"}
    return pd.DataFrame([{**base, **r} for r in rows])


@dataclass
class _Run:
    config: dict[str, Any]
    method: str
    env: str = "HalfCheetah-v4"
    seed: int = 0


@dataclass
class _Folder:
    methods: list[str]
    envs: list[str]
    runs: list[_Run] = field(default_factory=list)

    def runs_of(self, method: str, env: str) -> list[_Run]:
        return [r for r in self.runs if r.method == method and r.env == env]


def test_contention_above_the_threshold_is_named_and_below_it_is_not():
    seeds = _seeds([{"method": "popsan"}, {"method": "dsrl", "foreign_cpu_share": 0.40}])
    text = fairness.contention_warning(seeds)
    assert text is not None and "1 of 2 seeds" in text and "dsrl/HalfCheetah-v4 seed 0" in text and "40%" in text
    assert "popsan" not in text
    assert fairness.contention_warning(_seeds([{"method": "popsan", "foreign_cpu_share": 0.049}])) is None
    assert fairness.contended({"foreign_cpu_share": 0.0, "foreign_gpu_processes": 2})


def test_spiking_methods_on_different_engines_are_flagged_but_the_mlp_is_not():
    same = _seeds([{"method": "popsan"}, {"method": "dsrl"}, {"method": "mlp", "engine": "torch"}])
    assert fairness.engine_warning(same) is None
    mixed = _seeds([{"method": "popsan"}, {"method": "dsrl", "engine": "torch"}])
    text = fairness.engine_warning(mixed)
    assert text is not None and "dsrl: torch" in text and "popsan: native" in text


def test_methods_that_ran_the_same_computation_are_flagged():
    cfg = {"world_size": 1, "precision": "fp32", "engine": "native", "td3": {"lr_actor": 1e-4},
           "actor": {"encoding": "deterministic"}}
    folder = _Folder(["spikerl", "popsan", "dsrl"], ["HalfCheetah-v4"], [
        _Run({**cfg, "method": "spikerl", "precision_reason": "bf16 emulated: fp32"}, "spikerl"),
        _Run({**cfg, "method": "popsan", "precision_reason": "recipe"}, "popsan"),
        _Run({**cfg, "method": "dsrl", "td3": {"lr_actor": 1e-3}}, "dsrl"),
    ])
    (text,) = fairness.same_computation_warnings(folder)
    assert text.startswith("spikerl and popsan ran the same computation on HalfCheetah-v4")
    folder.runs[0].config["actor"] = {"encoding": "poisson"}
    assert fairness.same_computation_warnings(folder) == []


def test_data_parallel_runs_state_their_effective_batch_and_updates_per_step():
    seeds = _seeds([{"method": "spikerl", "world_size": 4, "updates": 250}, {"method": "popsan"}])
    folder = _Folder(["spikerl", "popsan"], ["HalfCheetah-v4"],
                     [_Run({"td3": {"batch_size": 100}}, "spikerl")])
    text = fairness.data_parallel_note(seeds, folder)
    assert text is not None
    assert "spikerl on 4 ranks: effective batch 400 (4 × 100), 0.250 gradient steps per env step" in text
    assert fairness.data_parallel_note(_seeds([{"method": "popsan"}]), folder) is None
