"""A seed batch's evaluation (spikerl.batch_eval, BatchRun.evaluate): the K seeds' episodes side by
side with one batched actor forward per step give each seed exactly the returns of its own
per-seed evaluation (`run_episodes` with its actor alone, its generator as torch's global RNG),
also on Hopper, where episodes end at different steps, and with Poisson spikes, whose draws a
seed that sits out must not take.

Exactly in fp64, as the batch-vs-single tests compare (tests/test_seed_batch.py), and in fp32
where each seed's actor runs alone (engine 'native'); a vmapped fp32 actor sums its matmuls in
another order than a lone one, so there the returns agree to float rounding (measured: ~1e-8
relative on Hopper), as the batch's acting during training always has."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from harness_helpers import tiny_config

from baselines.registry import get_method
from spikerl import native_lib
from spikerl.batch_eval import run_episodes_batched
from spikerl.batch_loop import BatchRun
from spikerl.evaluation import eval_episode_seeds, run_episodes
from spikerl.precision import autocast

SEEDS = [0, 1, 2]


def _per_seed_returns(run: BatchRun) -> list[list[float]]:
    """The evaluation the batch ran before it was batched: seed after seed, its actor alone."""
    out = []
    for k, x in enumerate(run.seeds):
        actor, norm = run.td3.seed_actor(k), x.agent.normalizer

        def policy(obs: np.ndarray, actor=actor, norm=norm) -> np.ndarray:
            o = torch.as_tensor(obs, dtype=run.dtype, device=run.device).unsqueeze(0)
            with torch.no_grad(), autocast(run.cfg.precision, run.device):
                return actor(norm(o)).float().squeeze(0).cpu().numpy()

        with run.gens.as_global(k):
            out.append(run_episodes(x.eval_env, policy, eval_episode_seeds(x.seed, run.cfg.eval_episodes)))
    return out


@pytest.mark.parametrize("method,env_id,extra,engine", [
    ("popsan", "Hopper-v4", {"encoding": "poisson"}, "torch"),
    ("mlp", "Hopper-v4", {}, "torch"),
    ("spikerl", "HalfCheetah-v4", {}, "torch"),
    ("dsrl", "Hopper-v4", {"threshold": 0.2}, "torch"),
])
def test_batched_fp64_evaluation_gives_each_seed_its_per_seed_returns(method, env_id, extra, engine, float64):
    _check(method, env_id, extra, engine, exact=True)


@pytest.mark.parametrize("method,env_id,extra,engine,exact", [
    ("popsan", "Hopper-v4", {"encoding": "poisson"}, "native", True),  # each seed's actor alone: exact
    ("mlp", "Hopper-v4", {}, "torch", False),
])
def test_batched_fp32_evaluation_gives_each_seed_its_per_seed_returns(method, env_id, extra, engine, exact):
    _check(method, env_id, extra, engine, exact)


def _check(method: str, env_id: str, extra: dict, engine: str, exact: bool) -> None:
    spec = get_method(method)
    params = {**spec.actor_params(env_id), "hidden": (16, 16), **extra}
    cfg = tiny_config(eval_episodes=3, max_ep_len=60, critic_hidden=(16, 16))
    with native_lib.engine(engine):
        run = BatchRun(spec, env_id, SEEDS, cfg, params, run_dirs=None, callbacks=None, device=torch.device("cpu"),
                       per_seed_actor=engine == "native", workers=1)
        try:
            for x in run.seeds:  # statistics of their own, so each seed normalises differently
                x.agent.normalizer.update(np.random.default_rng(x.seed).normal(size=(50, run.obs_dim)) * 2)
            states = run.gens.state_dicts()
            expected = _per_seed_returns(run)
            after_single = run.gens.state_dicts()
            run.gens.load_state_dicts(states)
            run.evaluate()
            got = [list(x.evals[-1].returns) for x in run.seeds]
            if exact:
                assert got == expected
            else:
                assert np.allclose(got, expected, rtol=1e-5, atol=0)
            # every seed drew exactly its own evaluation's Poisson uniforms, no more
            assert all(torch.equal(a, b) for a, b in zip(run.gens.state_dicts(), after_single, strict=True))
            if env_id == "Hopper-v4":  # the episodes really did end at different steps
                assert len({r for rets in got for r in rets}) > 1
        finally:
            run.close()


def test_seeds_with_no_episodes_or_different_episode_counts():
    class Countdown:
        """An env whose episode lasts as many steps as its reset seed says; reward 1 per step."""

        def reset(self, seed):
            self.left = seed
            return np.zeros(2), {}

        def step(self, action):
            self.left -= 1
            return np.full(2, self.left), 1.0, self.left == 0, False, {}

    calls = []

    def policy(obs, playing):
        calls.append(playing.copy())
        return np.zeros((len(obs), 1))

    got = run_episodes_batched([Countdown(), Countdown(), Countdown()], policy, [[3, 1], [], [2]])
    assert got == [[3.0, 1.0], [], [2.0]]
    assert [c.tolist() for c in calls] == [[True, False, True], [True, False, True], [True, False, False],
                                           [True, False, False]]
