"""Spike activity and the neuromorphic energy estimate (bench.metrics.activity): SynOps, MACs and
firing rates pinned on tiny networks computed by hand, and the traced spikes reproduce each
actor's own actions."""
from __future__ import annotations

import pytest
import torch

from baselines.dsrl import DSRLActor
from baselines.mlp import MLPActor
from bench.metrics.activity import AC_ENERGY_J, MAC_ENERGY_J, trace_actor
from spikerl import native_lib
from spikerl.popspike_actor import PopSpikingActor


def _set(linear: torch.nn.Linear, rows: list[list[float]]) -> None:
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(rows))
        if linear.bias is not None:
            linear.bias.zero_()


def test_synops_of_a_tiny_popsan_net_by_hand() -> None:
    """obs_dim 1, pop 2, hidden (3,), act_dim 1, T = 2.
    Encoder: μ = obs, so A = 1: v = 1 > 0.999 spikes at t = 1, v = 0.001 + 1 spikes at t = 2 → 4 spikes.
    Hidden: currents 1.0, 0 and 0.3 (input 1+1 spikes each step):
      n0: v1 = 1 > 0.5, then c2 = 0.5 + 1 = 1.5, v2 = 0 + 1.5 → 2 spikes; n1: never;
      n2: v1 = 0.3, c2 = 0.45, v2 = 0.75·0.3 + 0.45 = 0.675 > 0.5 → 1 spike.
    Output (2 neurons, zero weights): silent.
    SynOps = 4 encoder spikes × fan-out 3 + 3 hidden spikes × fan-out 2 = 18.
    MACs = 2 receptive fields + 2 decoder weights = 4. Energy = 18 × 0.9 + 4 × 4.6 = 34.6 pJ."""
    actor = PopSpikingActor(1, 1, 1.0, pop_dim=2, hidden=(3,), timesteps=2)
    with torch.no_grad():
        actor.encoder.mean.zero_()
    _set(actor.layers[0].fc, [[0.5, 0.5], [0.0, 0.0], [0.15, 0.15]])
    _set(actor.layers[1].fc, [[0.0] * 3, [0.0] * 3])
    act = trace_actor(actor, torch.zeros(1, 1))
    assert [layer.spikes_per_action for layer in act.layers] == [4.0, 3.0, 0.0]
    assert [layer.rate for layer in act.layers] == [1.0, 0.5, 0.0]
    assert act.synops_per_action == 18.0 and act.macs_per_action == 4.0
    assert act.spike_rate == pytest.approx(7 / 14)
    assert act.inference_energy_j_per_action_est == pytest.approx(34.6e-12)
    assert act.inference_energy_j_per_action_est == pytest.approx(18 * AC_ENERGY_J + 4 * MAC_ENERGY_J)


def test_synops_of_a_tiny_dsrl_net_by_hand() -> None:
    """obs 1.0 → sign split [1, 0]; layers 2 → 2 → 2 → 1, θ = 0.8, T = 2.
    Hidden 1 (constant currents 1.0 and 0.5): n0 spikes at both steps (U reset to 0 each time),
    n1: 0.5, then 0.25 + 0.5 = 0.75 < 0.8 → 2 spikes.
    Hidden 2 (inputs: n0's spikes): currents 1, then 0.5 + 1 = 1.5 → 2 spikes; 0.3, then
    I = 0.45, U = 0.15 + 0.45 = 0.6 → none. SynOps = 2 × 2 + 2 × 1 = 6; MACs = 2 × 2 (analog input)."""
    actor = DSRLActor(1, 1, 1.0, threshold=0.8, hidden=(2, 2), timesteps=2)
    _set(actor.fc0, [[1.0, 0.0], [0.5, 0.0]])
    _set(actor.fc1, [[1.0, 0.0], [0.3, 0.0]])
    _set(actor.fc2, [[1.0, 1.0]])
    act = trace_actor(actor, torch.ones(1, 1))
    spiking = [layer for layer in act.layers if layer.kind == "spiking"]
    assert [layer.spikes_per_action for layer in spiking] == [2.0, 2.0]
    assert act.synops_per_action == 6.0 and act.macs_per_action == 4.0
    assert act.spike_rate == pytest.approx(0.5)
    assert act.inference_energy_j_per_action_est == pytest.approx(6 * 0.9e-12 + 4 * 4.6e-12)
    assert act.layers[0].rate is None  # the analog input does not spike


def test_mlp_counts_macs_only() -> None:
    act = trace_actor(MLPActor(17, 6, 1.0, hidden=(64, 64)), torch.zeros(3, 17))
    assert act.macs_per_action == 17 * 64 + 64 * 64 + 64 * 6
    assert act.synops_per_action is None and act.spike_rate is None
    assert act.inference_energy_j_per_action_est == pytest.approx((17 * 64 + 64 * 64 + 64 * 6) * 4.6e-12)


@pytest.mark.parametrize("engine", ["torch", "native"])
def test_traced_spikes_reproduce_the_actions(engine: str) -> None:
    torch.manual_seed(0)
    obs = torch.randn(64, 17) * 1.5
    pop = PopSpikingActor(17, 6, 1.0, hidden=(64, 64))
    dsrl = DSRLActor(17, 6, 1.0, threshold=0.8, hidden=(64, 48))
    with torch.no_grad():
        for p in list(pop.parameters()) + list(dsrl.parameters()):
            p.mul_(3.0)  # busier nets: more spikes near threshold
    if engine == "native" and native_lib.library() is None:
        pytest.skip("native kernels unavailable")
    with native_lib.engine(engine), torch.no_grad():
        for actor in (pop, dsrl):
            want = torch.cat([actor(obs), actor(obs[:1])])  # batch forward and the batch-1 acting path
            got = torch.cat([trace_actor(actor, obs).actions_out, trace_actor(actor, obs[:1]).actions_out])
            if engine == "torch":
                assert torch.equal(got, want), type(actor).__name__
            else:  # the kernels sum in another order than BLAS (ulps): a spike at threshold may flip
                assert (got - want).abs().max() < 1e-4, type(actor).__name__
        # Poisson encoding: the same draws from torch's global RNG give the same spikes
        poisson = PopSpikingActor(17, 6, 1.0, hidden=(64, 64), encoding="poisson")
        torch.manual_seed(3)
        want = poisson(obs)
        torch.manual_seed(3)
        assert torch.equal(trace_actor(poisson, obs).actions_out, want)
    act = trace_actor(pop, obs)
    assert act.synops_per_action > 0 and 0 < act.spike_rate < 1
