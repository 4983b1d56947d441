"""A seed batch (spikerl.seed_batch, spikerl.batch_loop) trains each seed as its single run would.

Each seed of a K = 3 batch is compared with `spikerl.loop.train` of the same seed on the torch
engine, through the checkpoints both write (the nets, their targets and both Adams' state):
- fp64: parameters within 1e-9 and the same evaluation returns, for every method and for
  Poisson encoding (the batch's only differences are the summation orders of batched matmuls);
- fp32: the same runs within FP32_ATOL (measured: see the test's docstring).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from harness_helpers import tiny_config
from torch.func import functional_call, stack_module_state, vmap

from baselines.registry import get_method
from spikerl import native_lib, population
from spikerl.batch_loop import NEXT_SUFFIX, batch_resume_step, train_seed_batch
from spikerl.callbacks import Callback
from spikerl.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, save_checkpoint
from spikerl.loop import train
from spikerl.method import ActorContext
from spikerl.population import poisson_uniforms
from spikerl.seed_batch import burst_schedule

SEEDS = (0, 1, 2)
FP64_ATOL = 1e-9
FP32_ATOL = 1e-4
"""fp32: the batched matmuls may sum in another order (measured here: max |Δ| 3e-8 to 4e-7 over
every parameter, target and Adam moment after 250 updates); the margin covers a BLAS that rounds
more differently, short of a spike or ReLU flipping at its threshold."""

CASES = {  # method, env, actor settings (small nets: the comparison, not the model, is under test)
    "spikerl": ("spikerl", "HalfCheetah-v4", {"hidden": (32, 32)}),
    "popsan": ("popsan", "HalfCheetah-v4", {"hidden": (32, 32)}),
    "popsan-poisson": ("popsan", "Hopper-v4", {"hidden": (32, 32)}),  # Poisson encoding on Hopper
    "dsrl": ("dsrl", "HalfCheetah-v4", {"hidden": (32, 32), "threshold": 0.2}),  # low θ: the net spikes
    "mlp": ("mlp", "HalfCheetah-v4", {"hidden": (32, 32)}),
}


def _config(**changes):
    # 250 updates: bursts of 50 at steps 200, 250, ..., 400; evaluations at 250 and 400
    settings = dict(total_steps=400, start_steps=200, update_after=200, eval_every=250, max_ep_len=100,
                    checkpoint_every=400)
    return tiny_config(**{**settings, **changes})


def _case(name: str):
    method, env_id, overrides = CASES[name]
    spec = get_method(method)
    return spec, env_id, {**spec.actor_params(env_id), **overrides}


def _tensors(state: dict) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint's TD3 state, by a flat name."""
    td3 = state["td3"]
    out = {f"{net}.{k}": v for net in ("actor", "critic", "actor_target", "critic_target") for k, v in td3[net].items()}
    for opt in ("actor_opt", "critic_opt"):
        for i, st in td3[opt]["state"].items():
            out.update({f"{opt}.{i}.{k}": v for k, v in st.items()})
    return out


def _max_diff(a: dict, b: dict) -> float:
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys()
    return max((ta[k].double() - tb[k].double()).abs().max().item() for k in ta)


def _batch_and_singles(tmp_path: Path, name: str, engine: str = "torch", workers: int = 1):
    spec, env_id, params = _case(name)
    cfg = _config()
    dirs = [tmp_path / f"batch{s}" for s in SEEDS]
    batch = train_seed_batch(spec, env_id, SEEDS, cfg, params, run_dirs=dirs, engine=engine, workers=workers)
    with native_lib.engine(engine):
        singles = [train(spec, env_id, s, cfg, params, run_dir=tmp_path / f"single{s}") for s in SEEDS]
    states = [(load_checkpoint(d / CHECKPOINT_NAME), load_checkpoint(tmp_path / f"single{s}" / CHECKPOINT_NAME))
              for d, s in zip(dirs, SEEDS, strict=True)]
    return batch, singles, states


@pytest.mark.parametrize("name,engine,workers", [(name, "torch", 1) for name in CASES]
                         + [("popsan-poisson", "native", 1), ("popsan-poisson", "native", 2), ("dsrl", "torch", 3)])
@pytest.mark.slow
def test_each_seed_of_an_fp64_batch_matches_its_single_run(tmp_path, name, engine, workers, float64):
    """engine 'native': each seed's actor runs alone (in fp64 on the torch path), the rest batched.
    workers > 1: the seeds in groups on threads of their own (spikerl.seed_groups; 3: one seed each)."""
    batch, singles, states = _batch_and_singles(tmp_path, name, engine, workers)
    for b, s, (sb, ss) in zip(batch, singles, states, strict=True):
        assert b.updates == s.updates == 250
        assert [e.returns for e in b.evals] == [e.returns for e in s.evals]
        assert all(v.dtype == torch.float64 for k, v in _tensors(sb).items() if not k.endswith(".step"))
        diff = _max_diff(sb, ss)
        print(f"{name} ({engine}): fp64 max |Δ| = {diff:.3g}")
        assert diff <= FP64_ATOL
    # the seeds are not copies of one another
    assert len({b.param_sha256 for b in batch}) == len(SEEDS)


@pytest.mark.parametrize("name,engine,workers", [("popsan", "torch", 1), ("mlp", "torch", 1), ("popsan", "native", 1),
                                                 ("popsan", "native", 2)])
@pytest.mark.slow
def test_each_seed_of_an_fp32_batch_matches_its_single_run_to_rounding(tmp_path, name, engine, workers):
    """Against single runs on the same engine (native: each seed's actor on the native kernels,
    as its single run; workers 2: the native kernels called from two threads at once); the
    measured max |Δ| is printed with -s."""
    if engine == "native" and native_lib.library() is None:
        pytest.skip(f"native kernels: {native_lib.unavailable_reason()}")
    batch, singles, states = _batch_and_singles(tmp_path, name, engine, workers)
    for b, s, (sb, ss) in zip(batch, singles, states, strict=True):
        diff = _max_diff(sb, ss)
        print(f"{name} ({engine}): fp32 max |Δ| = {diff:.3g}")
        assert diff <= FP32_ATOL
        assert b.evals[0].return_mean == pytest.approx(s.evals[0].return_mean, rel=1e-3, abs=1e-3)


class StopAt(Callback):
    key = "stop"

    def __init__(self, step: int):
        self.step = step

    def on_progress(self, event):
        if event.step == self.step:
            raise RuntimeError("simulated crash")


@pytest.mark.parametrize("name,workers", [("popsan-poisson", 1), ("mlp", 1), ("popsan-poisson", 2)])
@pytest.mark.slow
def test_resumed_batch_is_bit_identical_to_an_uninterrupted_one(tmp_path, name, workers):
    spec, env_id, params = _case(name)
    # a checkpoint at 300 (mid-episode, after three bursts and Poisson acting), a crash at 400
    cfg = _config(checkpoint_every=300)
    full = train_seed_batch(spec, env_id, SEEDS, cfg, params, run_dirs=[tmp_path / f"a{s}" for s in SEEDS],
                            workers=workers)
    dirs = [tmp_path / f"b{s}" for s in SEEDS]
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_seed_batch(spec, env_id, SEEDS, cfg, params, run_dirs=dirs,
                         callbacks=[[], [StopAt(400)], []], workers=workers)
    assert {load_checkpoint(d / CHECKPOINT_NAME)["loop"]["t"] for d in dirs} == {300}
    resumed = train_seed_batch(spec, env_id, SEEDS, cfg, params, run_dirs=dirs, resume=True, workers=workers)
    for a, b in zip(full, resumed, strict=True):
        assert a.param_sha256 == b.param_sha256
        assert [e.returns for e in a.evals if e.step > 300] == [e.returns for e in b.evals]
        assert a.updates == b.updates


def _fake_checkpoint(path: Path, t: int) -> None:
    save_checkpoint(path, {"loop": {"t": t}})


def test_resume_finishes_an_interrupted_save_and_refuses_mixed_steps(tmp_path):
    dirs = [tmp_path / f"s{i}" for i in range(3)]
    for d in dirs:
        d.mkdir()
    assert batch_resume_step(dirs) is None
    # the crash came while renaming: seed 0 has the new file in place, seeds 1 and 2 still as .next
    _fake_checkpoint(dirs[0] / CHECKPOINT_NAME, 600)
    for d in dirs[1:]:
        _fake_checkpoint(d / CHECKPOINT_NAME, 300)
        _fake_checkpoint(d / (CHECKPOINT_NAME + NEXT_SUFFIX), 600)
    assert batch_resume_step(dirs) == 600
    assert all(load_checkpoint(d / CHECKPOINT_NAME)["loop"]["t"] == 600 for d in dirs)
    assert not any((d / (CHECKPOINT_NAME + NEXT_SUFFIX)).exists() for d in dirs)
    # the crash came while writing the .next files: the old step is the common one
    _fake_checkpoint(dirs[2] / (CHECKPOINT_NAME + NEXT_SUFFIX), 900)
    assert batch_resume_step(dirs) == 600
    shutil.rmtree(dirs[1])
    dirs[1].mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint of a common step"):
        batch_resume_step(dirs)


def test_burst_schedule_follows_update_many():
    assert burst_schedule(0, 5, 2) == [(0, 2, True), (2, 4, True), (4, 5, False)]
    assert burst_schedule(1, 3, 2) == [(0, 1, True), (1, 3, True)]
    assert burst_schedule(0, 2, 1) == [(0, 1, True), (1, 2, True)]


@pytest.mark.parametrize("method,extra", [("popsan", {}), ("popsan", {"encoding": "poisson"}),
                                          ("dsrl", {"threshold": 0.2}), ("mlp", {})])
def test_vmapped_actor_is_each_seed_alone(method, extra, float64, monkeypatch):
    """The spiking Functions' vmap rules: per seed, actions and gradients as alone, to rounding."""
    spec = get_method(method)
    params = {**spec.actor_params("HalfCheetah-v4"), "hidden": (24, 16), **extra}
    actors = []
    for k in range(3):
        torch.manual_seed(k)
        actors.append(spec.build_actor(ActorContext(5, 2, 1.0, "HalfCheetah-v4", params)))
    stacked, _ = stack_module_state(actors)
    obs = torch.randn(3, 7, 5).clamp(-3, 3)
    u = torch.rand(3, params.get("timesteps", 5), 7, 5 * params.get("pop_dim", 10))

    def one(p, x, u):
        if extra.get("encoding") == "poisson":
            with poisson_uniforms(u):
                return functional_call(actors[0], p, (x,))
        return functional_call(actors[0], p, (x,))

    with native_lib.engine("torch"):
        out = vmap(one)(stacked, obs, u)
        out.square().sum().backward()
        for k, actor in enumerate(actors):
            # alone, the encoder draws its uniforms itself: hand it seed k's
            monkeypatch.setattr(population, "_poisson_spikes", lambda a, T, k=k: u[k].clone().lt_(a))
            alone = actor(obs[k])
            alone.square().sum().backward()
            torch.testing.assert_close(out[k], alone, rtol=0, atol=1e-14)  # matmuls: summation order
            for n, p in actor.named_parameters():
                torch.testing.assert_close(stacked[n].grad[k], p.grad, rtol=0, atol=1e-12)


class _Losses(Callback):
    key = "losses"

    def __init__(self):
        self.rows: list[tuple[int, dict[str, float]]] = []

    def on_progress(self, event):
        self.rows.append((event.step, dict(event.losses)))


BF16_RTOL = 1e-2
"""bf16 keeps 8 bits of mantissa (one rounding: 2^-9 ≈ 2e-3 relative): the batched and the lone
matmuls round their outputs at different points, so the first updates' losses agree to a few
roundings, not to fp32's (measured here: |Δ| 3e-6 to 1.6e-3 on losses of 0.1 to 1)."""


@pytest.mark.parametrize("name", ["popsan", "mlp"])
@pytest.mark.slow
def test_each_seed_of_a_bf16_batch_matches_its_single_run_to_bf16_rounding(name):
    """The first four updates' critic and actor losses, seed by seed, against bf16 single runs;
    and unlike an fp32 batch's, so autocast did reach the vmapped nets. Later, bf16's rounding
    grows through training as any two bf16 runs' would (parameters differ by ~1e-2 after 250)."""
    spec, env_id, params = _case(name)

    def losses(precision: str, batch: bool) -> list[list[tuple[int, dict[str, float]]]]:
        cfg = _config(precision=precision, total_steps=204, update_every=1, log_every=1, eval_every=10_000,
                      checkpoint_every=0)
        probes = [_Losses() for _ in SEEDS]
        if batch:
            train_seed_batch(spec, env_id, SEEDS, cfg, params, callbacks=[[p] for p in probes], engine="torch")
        else:
            with native_lib.engine("torch"):
                for s, p in zip(SEEDS, probes, strict=True):
                    train(spec, env_id, s, cfg, params, callbacks=[p])
        return [[(step, row) for step, row in p.rows if row] for p in probes]

    batch16, single16, batch32 = losses("bf16", True), losses("bf16", False), losses("fp32", True)
    apart_from_fp32 = 0.0
    for b16, s16, b32 in zip(batch16, single16, batch32, strict=True):
        assert [step for step, _ in b16] == [step for step, _ in s16] == [200, 201, 202, 203, 204]
        for (_, lb), (_, ls), (_, l32) in zip(b16, s16, b32, strict=True):
            assert lb.keys() == ls.keys() and lb
            for key in lb:
                assert lb[key] == pytest.approx(ls[key], rel=BF16_RTOL, abs=BF16_RTOL)
                apart_from_fp32 = max(apart_from_fp32, abs(lb[key] - l32[key]))
    assert apart_from_fp32 > 1e-5  # fp32 rounding alone would be ~1e-7
