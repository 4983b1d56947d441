"""A seed batch's device-resident replay and stacked normalisers (spikerl.batch_replay), on the CPU.

- `BatchReplay` gives seed k the rows its single run's `ReplayBuffer` gives (same transitions, same
  seed: the same indices and values), through one staging copy per env step and one gather per
  burst, and checkpoints each seed in the single run's format, so a `ReplayBuffer` loads it and
  continues the same stream (and the other way round);
- `StackedNormalizer` gives the same bits as each seed's own normaliser.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from spikerl.batch_replay import BatchReplay, StackedNormalizer
from spikerl.normalizers import IdentityNormalizer, MaxAbsNormalizer, ZScoreNormalizer
from spikerl.replay import ReplayBuffer, rng_state_to_tensor

SEEDS = [3, 7, 11]
OBS, ACT = 4, 2


def _transitions(seed: int, steps: int):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(steps + 1, OBS))
    for t in range(steps):
        yield obs[t], rng.uniform(-1, 1, ACT), float(rng.normal()), obs[t + 1], bool(rng.random() < 0.1)


def _filled(capacity: int, steps: int) -> tuple[BatchReplay, list[ReplayBuffer]]:
    batch = BatchReplay(OBS, ACT, capacity, SEEDS, torch.device("cpu"))
    singles = [ReplayBuffer(OBS, ACT, capacity, seed=s) for s in SEEDS]
    streams = [list(_transitions(s, steps)) for s in SEEDS]
    for t in range(steps):
        batch.staging()
        for k, (single, stream) in enumerate(zip(singles, streams, strict=True)):
            o, a, r, o2, d = stream[t]
            single.add(o, a, r, o2, d)
            batch.fill(k, o, a, r, o2, d, act_obs=o2 * 10)
        act_obs = batch.push()
        assert torch.equal(act_obs, torch.tensor(np.stack([s[t][3] * 10 for s in streams]), dtype=torch.float32))
    return batch, singles


@pytest.mark.parametrize("steps", [5, 40])  # 40 > capacity: the buffers wrap
def test_each_seed_samples_the_rows_its_single_run_samples(steps):
    batch, singles = _filled(capacity=25, steps=steps)
    assert len(batch) == len(singles[0]) and batch.ptr == singles[0].ptr
    for n in (3, 1, 2):
        got = batch.sample_stacked(n, 8)
        for k, single in enumerate(singles):
            want = single.sample_stacked(n, 8)
            for g, w in zip(got, want, strict=True):
                assert torch.equal(g[k], w)


def test_checkpoints_are_the_single_runs_format_both_ways():
    batch, singles = _filled(capacity=25, steps=30)
    states = [batch.seed_state_dict(k) for k in range(len(SEEDS))]
    for k, single in enumerate(singles):
        want = single.state_dict()
        assert states[k].keys() == want.keys()
        for key, v in want.items():
            assert (torch.equal(states[k][key], v) if isinstance(v, torch.Tensor) else states[k][key] == v), key
    # a fresh batch loaded from the singles' checkpoints continues their streams, and the other way round
    other = BatchReplay(OBS, ACT, 25, [0, 0, 0], torch.device("cpu"))
    other.load_seed_state_dicts([s.state_dict() for s in singles])
    fresh = [ReplayBuffer(OBS, ACT, 25, seed=99) for _ in SEEDS]
    for f, st in zip(fresh, states, strict=True):
        f.load_state_dict(st)
    got = other.sample_stacked(2, 6)
    for k, (single, f) in enumerate(zip(singles, fresh, strict=True)):
        want = single.sample_stacked(2, 6)
        assert torch.equal(got.obs[k], want.obs) and torch.equal(f.sample_stacked(2, 6).rew, want.rew)


def test_a_numpy_sampler_checkpoint_is_refused_in_one_line():
    single = ReplayBuffer(OBS, ACT, 10, seed=0)
    single.add(np.zeros(OBS), np.zeros(ACT), 0.0, np.zeros(OBS), False)
    state = {**single.state_dict(), "rng": rng_state_to_tensor(np.random.default_rng(0))}
    with pytest.raises(ValueError, match="numpy's"):
        ReplayBuffer(OBS, ACT, 10, seed=0).load_state_dict(state)
    with pytest.raises(ValueError, match="numpy's"):
        BatchReplay(OBS, ACT, 10, [0], torch.device("cpu")).load_seed_state_dicts([state])


def test_the_index_stream_is_not_torchs_global_stream_of_the_same_seed():
    single = ReplayBuffer(OBS, ACT, 1000, seed=5)
    for t in range(1000):
        single.add(np.full(OBS, t), np.zeros(ACT), float(t), np.zeros(OBS), False)
    torch.manual_seed(5)
    same_seed = torch.randint(0, 1000, (50,))
    assert not torch.equal(single.sample(50).rew.long(), same_seed)


@pytest.mark.parametrize("make", [
    lambda k: ZScoreNormalizer(OBS), lambda k: MaxAbsNormalizer(OBS), lambda k: IdentityNormalizer(OBS),
    lambda k: ZScoreNormalizer(OBS) if k % 2 else MaxAbsNormalizer(OBS),  # mixed kinds: seed by seed
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stacked_normalisers_give_each_seeds_own_bits(make, dtype):
    norms = [make(k) for k in range(len(SEEDS))]
    for k, n in enumerate(norms):
        n.update(np.random.default_rng(k).normal(size=(30, OBS)) * (k + 1) * 3)
    stacked = StackedNormalizer(norms)
    obs = torch.randn(len(SEEDS), 9, OBS, dtype=dtype) * 5
    for _ in range(2):  # the second call from the stacked statistics' cache
        got = stacked(obs)
        for k, n in enumerate(norms):
            assert torch.equal(got[k], n(obs[k]))
    norms[1].update(np.full((3, OBS), 50.0))  # new statistics are picked up
    assert torch.equal(stacked(obs)[1], norms[1](obs[1]))
