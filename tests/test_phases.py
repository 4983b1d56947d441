"""A run's wall time and energy split into train, eval and other phases that add up to the totals
(spikerl.phases; bench.energy.callback's windows), for a single run, across a resume and for a
seed batch."""
from __future__ import annotations

import time

import pytest
from harness_helpers import tiny_config
from test_power import ConstantSource, FakeProbe

from baselines.registry import get_method
from bench.energy.callback import EnergyCallback
from bench.energy.meter import PowerMeter
from bench.run import seed_batch_runner, store
from bench.run.plan import Plan
from spikerl.callbacks import Callback
from spikerl.loop import train
from spikerl.phases import PhaseClock, split_wall_s

POWER_W = 1.0


def test_phase_clock_keeps_eval_and_other_and_leaves_train_the_rest():
    clock = PhaseClock(phase="other", _since=0.0)
    assert clock.switch("train", now=2.0) == "other"   # 2 s of start-up
    clock.switch("eval", now=10.0)                      # 8 s training
    clock.switch("train", now=13.0)                     # 3 s evaluating
    clock.switch("other", now=20.0)                     # 7 s training
    assert clock.timed_s(now=21.5) == {"eval": 3.0, "other": 3.5}
    assert split_wall_s(21.5, clock.timed_s(21.5)) == {"train": 15.0, "eval": 3.0, "other": 3.5}
    restored = PhaseClock()
    restored.load_state_dict(clock.state_dict(now=21.5))
    assert restored.closed_s == {"eval": 3.0, "other": 3.5} and restored.phase == "other"
    old = PhaseClock()
    old.load_state_dict(None)  # a checkpoint from before phases: earlier seconds stay in train
    assert old.closed_s == {"eval": 0.0, "other": 0.0}
    with pytest.raises(ValueError, match="unknown phase"):
        clock.switch("warmup")


def _energy() -> EnergyCallback:
    """A real account on a 1 W counter read on the real clock: energy in J = metered seconds."""
    def make(**kw) -> PowerMeter:
        src = ConstantSource(["cpu-package-0"], POWER_W, time.perf_counter)
        return PowerMeter([src], interval_s=None, csv_path=kw.get("csv_path"), clock=time.perf_counter,
                          t_offset_s=kw.get("t_offset_s", 0.0), energy_offset_j=kw.get("energy_offset_j"))
    return EnergyCallback(codecarbon=False, meter_factory=make, probe_factory=FakeProbe)


class StopAt(Callback):
    key = "stop"

    def __init__(self, step: int):
        self.step = step

    def on_progress(self, event):
        return event.step < self.step


def _check_adds_up(phase_s: dict, wall_s: float, fields: dict) -> None:
    assert sum(phase_s.values()) == pytest.approx(wall_s, rel=1e-9)
    assert all(v > 0 for v in phase_s.values()), phase_s
    parts = fields["train_energy_j"] + fields["eval_energy_j"] + fields["other_energy_j"]
    assert parts == pytest.approx(fields["energy_j"], rel=1e-9)
    # time and energy cover the same spans: at 1 W each phase's joules are its seconds, give or take
    # the calls between a clock switch and the meter's (and the meter's start before the clock's)
    for p in ("train", "eval", "other"):
        assert fields[f"{p}_energy_j"] == pytest.approx(phase_s[p] * POWER_W, abs=0.25), p


def test_a_run_and_its_resume_add_up_in_time_and_energy(tmp_path):
    spec = get_method("mlp")
    cfg = tiny_config(total_steps=800, eval_every=400, checkpoint_every=200)
    params = {**spec.actor_params("HalfCheetah-v4"), "hidden": (16, 16)}
    first = _energy()
    r1 = train(spec, "HalfCheetah-v4", 0, cfg, params, run_dir=tmp_path, callbacks=[first, StopAt(400)])
    assert r1.steps == 400
    _check_adds_up(r1.phase_s, r1.wall_s, {**first.result_fields(), **first.phase_fields()})
    second = _energy()
    r2 = train(spec, "HalfCheetah-v4", 0, cfg, params, run_dir=tmp_path, callbacks=[second], resume=True)
    assert r2.steps == 800
    fields = {**second.result_fields(), **second.phase_fields()}
    _check_adds_up(r2.phase_s, r2.wall_s, fields)
    for p in ("eval", "other"):  # the resumed run carries on the first segment's seconds and joules
        assert r2.phase_s[p] > r1.phase_s[p]
    assert fields["other_energy_j"] > first.phase_fields()["other_energy_j"]


def test_a_seed_batch_adds_up_per_seed(tmp_path, monkeypatch):
    meter = _energy()
    monkeypatch.setattr(seed_batch_runner, "extra_callbacks", lambda plan: ([meter], meter.total_energy_j))
    plan = Plan(methods=("mlp",), envs=("HalfCheetah-v4",), seeds=(0, 1), profile="smoke", total_steps=400,
                device="cpu", td3_overrides={"start_steps": 100, "update_after": 100, "eval_every": 200,
                                             "log_every": 100, "checkpoint_every": 200, "batch_size": 16,
                                             "critic_hidden": (16, 16), "max_ep_len": 100},
                actor_overrides={"hidden": (16, 16)})
    results = seed_batch_runner.run_seed_batch(tmp_path, plan, "mlp", "HalfCheetah-v4", (0, 1), plain=True)
    for r in results:
        assert r["status"] == "complete"
        phase_s = {p: r[f"{p}_wall_s"] for p in ("train", "eval", "other")}
        assert sum(phase_s.values()) == pytest.approx(r["wall_s"], rel=1e-9)
        parts = r["train_energy_j"] + r["eval_energy_j"] + r["other_energy_j"]
        assert parts == pytest.approx(r["energy_j"], rel=1e-9)
        # each seed is charged half the process's energy over the process's phases
        for p in ("train", "eval", "other"):
            assert r[f"{p}_energy_j"] == pytest.approx(phase_s[p] * POWER_W / 2, abs=0.25), p
        assert r["measured_energy_share"] == 1.0  # a counter, not an estimate
    assert store.read_json(store.seed_dir(tmp_path, "mlp", "HalfCheetah-v4", 1) / "result.json")["eval_wall_s"] > 0


@pytest.mark.slow
def test_two_ranks_add_up(tmp_path):
    """A 2-rank Gloo run: rank 0's phase seconds sum to its wall_s; the energy summed over the node's
    phases is its energy_j."""
    import json
    import subprocess
    import sys

    run = tmp_path / "run"
    args = ["--total-steps", "600", "--plain", "--set", "start_steps=200", "--set", "update_after=200",
            "--set", "eval_every=300", "--set", "eval_episodes=2", "--set", "checkpoint_every=300",
            "--set", "max_ep_len=100", "--set", "critic_hidden=16,16", "--set", "actor.hidden=16,16",
            "--idle-window-s", "0"]
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--methods", "mlp", "--nproc", "2",
                           "--out", str(run), *args], capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads((run / "mlp" / "HalfCheetah-v4" / "seed0" / "result.json").read_text())
    assert r["world_size"] == 2 and r["status"] == "complete"
    assert r["train_wall_s"] + r["eval_wall_s"] + r["other_wall_s"] == pytest.approx(r["wall_s"], rel=1e-9)
    parts = r["train_energy_j"] + r["eval_energy_j"] + r["other_energy_j"]
    assert parts == pytest.approx(r["energy_j"], rel=1e-9)
    assert min(r[f"{p}_wall_s"] for p in ("train", "eval", "other")) > 0
