"""The seed batch's CUDA-graph buffer discipline (spikerl.cuda_graphs), exercised on the CPU.

`EagerReplay` stands in for a captured graph: it calls the captured function again on the same
static buffers, so any burst that replayed stale inputs, a buffer that moved, a schedule captured
in the wrong policy-delay phase or a double-counted update would show up as parameters that
differ from plain `update_burst` / `act` calls.
"""
from __future__ import annotations

import warnings

import pytest
import torch
from harness_helpers import tiny_popsan_nets

from spikerl import native_lib
from spikerl.cuda_graphs import CaptureFailed, EagerReplay, GraphedAct, GraphedBurst, capture_for
from spikerl.seed_batch import BatchedTD3, BurstInputs, SeedGenerators

SEEDS = (0, 1, 2)
OBS, ACT = 5, 2


def _batch(encoding: str) -> BatchedTD3:
    actors, critics, cfg = tiny_popsan_nets(SEEDS, encoding, OBS, ACT)
    return BatchedTD3(actors, critics, cfg, 1.0, torch.device("cpu"), SeedGenerators.seeded(SEEDS, torch.device("cpu")))


def _inputs(td3: BatchedTD3, n: int, gen: torch.Generator) -> BurstInputs:
    rows = n * td3.cfg.batch_size
    K = len(SEEDS)
    return BurstInputs(torch.randn(K, rows, OBS, generator=gen).clamp(-3, 3),
                       torch.rand(K, rows, ACT, generator=gen) * 2 - 1, torch.randn(K, rows, generator=gen),
                       torch.randn(K, rows, OBS, generator=gen).clamp(-3, 3),
                       (torch.rand(K, rows, generator=gen) < 0.1).float(), td3.draw_burst(n, td3.cfg.batch_size, ACT))


def _state(td3: BatchedTD3) -> list[torch.Tensor]:
    nets = (td3.actor, td3.critic, td3.actor_target, td3.critic_target)
    opt = [t for o in (td3.actor_opt, td3.critic_opt) for st in o.state.values() for t in st.values()]
    return [t.detach().clone() for net in nets for t in net.params.values()] + [t.clone() for t in opt]


@pytest.mark.parametrize("encoding", ["deterministic", "poisson"])
def test_graphed_bursts_replay_from_static_buffers_like_plain_bursts(encoding):
    plain, graphed = _batch(encoding), _batch(encoding)
    runner = GraphedBurst(graphed, EagerReplay)
    gen_a, gen_b = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    ptrs = None
    with native_lib.engine("torch"):
        # odd bursts alternate the policy-delay phase: two graphs of n = 3, each captured at its key's
        # third burst (after two warm-ups), then one of n = 2, and a replay of the first
        for n in (3, 3, 3, 3, 3, 3, 2, 2, 2, 3):
            plain.update_burst(_inputs(plain, n, gen_a))
            runner.run(_inputs(graphed, n, gen_b))
            assert plain.updates == graphed.updates
            if len(runner.graphs) == 2 and ptrs is None:
                ptrs = {k: v[0].obs.data_ptr() for k, v in runner.graphs.items()}
    assert len(runner.graphs) == 3 and ptrs is not None  # (n=3, phase 0), (n=3, phase 1), (n=2, phase 0)
    assert {k: v[0].obs.data_ptr() for k, v in runner.graphs.items() if k in ptrs} == ptrs  # buffers stay put
    for a, b in zip(_state(plain), _state(graphed), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("encoding", ["deterministic", "poisson"])
def test_graphed_acting_replays_from_static_buffers_like_plain_acting(encoding):
    plain, graphed = _batch(encoding), _batch(encoding)
    runner = GraphedAct(graphed, EagerReplay)
    gen = torch.Generator().manual_seed(1)
    with native_lib.engine("torch"):
        for _ in range(4):
            obs = torch.randn(len(SEEDS), 1, OBS, generator=gen)
            expected = plain.act(obs, plain.draw_act(1))
            got = runner.run(obs, graphed.draw_act(1))
            assert torch.equal(expected, got)
    assert runner.graph is not None


def test_a_failed_capture_warns_once_and_runs_eagerly():
    plain, graphed = _batch("deterministic"), _batch("deterministic")

    def broken(fn):
        raise RuntimeError("operation not permitted when stream is capturing")

    runner = GraphedBurst(graphed, broken)
    gen_a, gen_b = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    with native_lib.engine("torch"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            plain.update_burst(_inputs(plain, 2, gen_a))
            runner.run(_inputs(graphed, 2, gen_b))
    assert [w.category for w in caught] == [CaptureFailed]
    assert "update burst" in str(caught[0].message) and runner.capture is None and not runner.graphs
    for a, b in zip(_state(plain), _state(graphed), strict=True):
        assert torch.equal(a, b)


def test_graphs_only_on_cuda():
    assert capture_for(torch.device("cpu")) is None
    assert capture_for(torch.device("cuda"), enabled=False) is None


class CountingCapture:
    """A capture stand-in that, like CUDA's, runs nothing at capture and has a warm-up stream;
    it logs warm-ups, captures and replays in order."""

    def __init__(self):
        self.log: list[str] = []

    def warmup(self, fn):
        self.log.append("warmup")
        return fn()

    def __call__(self, fn):
        self.log.append("capture")
        log = self.log

        class Graph:
            def replay(self):
                log.append("replay")
                fn()

        return Graph()


def test_two_warmups_on_the_capture_stream_then_the_captured_burst_is_replayed_at_once():
    plain, graphed = _batch("deterministic"), _batch("deterministic")
    capture = CountingCapture()
    runner = GraphedBurst(graphed, capture)
    gen_a, gen_b = torch.Generator().manual_seed(6), torch.Generator().manual_seed(6)
    buffers = None
    with native_lib.engine("torch"):
        for i in range(5):  # n = 2: every burst has the same key (an even n keeps the phase)
            plain.update_burst(_inputs(plain, 2, gen_a))
            runner.run(_inputs(graphed, 2, gen_b))
            # right after every burst, the capturing one included, the losses are this burst's
            assert set(graphed.last_losses) == set(plain.last_losses)
            for name, value in plain.last_losses.items():
                assert torch.equal(graphed.last_losses[name], value), (i, name)
            if i == 2:
                assert capture.log == ["warmup", "warmup", "capture", "replay"]
                buffers = {k: v.data_ptr() for k, v in graphed.last_losses.items()}
    assert capture.log == ["warmup", "warmup", "capture", "replay", "replay", "replay"]
    # the losses a progress row reads are the buffers allocated before capture, not the graph's temporaries
    assert {k: v.data_ptr() for k, v in graphed.last_losses.items()} == buffers
    for a, b in zip(_state(plain), _state(graphed), strict=True):
        assert torch.equal(a, b)


def test_acting_warms_up_twice_then_replays_from_the_capturing_step_on():
    plain, graphed = _batch("poisson"), _batch("poisson")
    capture = CountingCapture()
    runner = GraphedAct(graphed, capture)
    gen = torch.Generator().manual_seed(3)
    with native_lib.engine("torch"):
        for _ in range(4):
            obs = torch.randn(len(SEEDS), 1, OBS, generator=gen)
            assert torch.equal(plain.act(obs, plain.draw_act(1)), runner.run(obs, graphed.draw_act(1)))
    assert capture.log == ["warmup", "warmup", "capture", "replay", "replay"]


def test_a_failed_capture_still_trains_the_burst_it_failed_on():
    plain, graphed = _batch("deterministic"), _batch("deterministic")

    class Failing(CountingCapture):
        def __call__(self, fn):
            raise RuntimeError("operation not permitted when stream is capturing")

    runner = GraphedBurst(graphed, Failing())
    gen_a, gen_b = torch.Generator().manual_seed(8), torch.Generator().manual_seed(8)
    with native_lib.engine("torch"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(4):
            plain.update_burst(_inputs(plain, 2, gen_a))
            runner.run(_inputs(graphed, 2, gen_b))
            assert plain.updates == graphed.updates
    assert [w.category for w in caught] == [CaptureFailed]
    for a, b in zip(_state(plain), _state(graphed), strict=True):
        assert torch.equal(a, b)
