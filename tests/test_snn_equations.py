"""The SNN equations of DESIGN §3, pinned by hand-computed cases.

Every expected number here was worked out by hand from the equations (the working is in the
comments), so a wrong coefficient, a reset on the wrong step or a wrong surrogate fails a test.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from baselines.dsrl import sign_split
from spikerl.lif import PopSANLIFLayer, dsrl_lif, dsrl_lif_trace, popsan_lif, popsan_lif_trace
from spikerl.normalizers import IdentityNormalizer, MaxAbsNormalizer, ZScoreNormalizer
from spikerl.population import PopulationDecoder, PopulationEncoder
from spikerl.surrogate import fast_sigmoid_grad_, rect_grad

try:  # tests/ may or may not be a package, depending on how pytest is run
    from tests.snn_reference import (
        dsrl_lif_naive,
        fast_sigmoid_spike,
        popsan_encoder_naive,
        popsan_lif_naive,
        rect_spike,
        straight_through_bernoulli,
        straight_through_threshold,
    )
except ImportError:
    from snn_reference import (
        dsrl_lif_naive,
        fast_sigmoid_spike,
        popsan_encoder_naive,
        popsan_lif_naive,
        rect_spike,
        straight_through_bernoulli,
        straight_through_threshold,
    )


def close(actual, expected, atol: float = 1e-6) -> None:
    torch.testing.assert_close(torch.as_tensor(actual, dtype=torch.float64),
                               torch.as_tensor(expected, dtype=torch.float64), rtol=0.0, atol=atol)


# --- surrogate gradients -------------------------------------------------------------------------

def test_rect_spike_forward_and_window_edges():
    v = torch.tensor([-0.1, 0.0, 1e-4, 0.25, 0.5, 0.5001, 0.9999, 1.0, 1.2], requires_grad=True)
    o = rect_spike(v)
    # H(v − 0.5) with H(0) = 0: exactly 0.5 does not spike
    assert o.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    o.sum().backward()
    # window |v − 0.5| < 0.5 is open: v = 0 and v = 1 lie on its edges and get no gradient
    assert v.grad.tolist() == [0, 0, 1, 1, 1, 1, 1, 0, 0]
    assert rect_grad(v.detach()).tolist() == [0, 0, 1, 1, 1, 1, 1, 0, 0]


def test_fast_sigmoid_forward_and_gradient():
    x = torch.tensor([0.0, 0.01, -0.01, 0.1, -1.0], dtype=torch.float64, requires_grad=True)  # x = U − θ
    s = fast_sigmoid_spike(x)
    assert s.tolist() == [0, 1, 0, 1, 0]
    s.sum().backward()
    # 1 / (100·|x| + 1)²: 1, 1/2², 1/2², 1/11², 1/101²
    close(x.grad, [1.0, 0.25, 0.25, 1 / 121, 1 / 10201], atol=1e-12)
    close(fast_sigmoid_grad_(x.detach().clone()), x.grad, atol=0)


def test_straight_through_functions_pass_the_gradient_unchanged():
    v = torch.tensor([0.5, 0.9990001, 1.5], requires_grad=True)
    o = straight_through_threshold(v, 0.999)
    assert o.tolist() == [0, 1, 1]
    (o * torch.tensor([2.0, 3.0, 4.0])).sum().backward()
    assert v.grad.tolist() == [2.0, 3.0, 4.0]
    p = torch.tensor([0.0, 1.0, 0.3], requires_grad=True)
    s = straight_through_bernoulli(p)
    assert s[0] == 0 and s[1] == 1
    (s * torch.tensor([5.0, 6.0, 7.0])).sum().backward()
    assert p.grad.tolist() == [5.0, 6.0, 7.0]


# --- population encoder --------------------------------------------------------------------------

def test_encoder_initialisation():
    enc = PopulationEncoder(obs_dim=3)
    assert isinstance(enc.mean, torch.nn.Parameter) and isinstance(enc.std, torch.nn.Parameter)
    assert enc.mean.shape == enc.std.shape == (3, 10)
    expected = [-3 + 6 * j / 9 for j in range(10)]
    for row in enc.mean:
        close(row, expected)
    close(enc.std, torch.full((3, 10), math.sqrt(0.15)))


def test_stimulation_is_the_gaussian_receptive_field():
    enc = PopulationEncoder(obs_dim=2, pop_dim=3, mean_range=(-1.0, 1.0))
    with torch.no_grad():
        enc.std.copy_(torch.tensor([[1.0, 0.5, 2.0], [1.0, 1.0, 1.0]]))
    a = enc.stimulation(torch.tensor([[0.5, -1.0]]))
    # dim 0: s = 0.5, μ = (−1, 0, 1), σ = (1, 0.5, 2): exp(−1.5²/2), exp(−0.5²/0.5), exp(−0.5²/8)
    # dim 1: s = −1, μ = (−1, 0, 1), σ = 1: exp(0), exp(−1/2), exp(−4/2)
    expected = [math.exp(-1.125), math.exp(-0.5), math.exp(-0.03125), 1.0, math.exp(-0.5), math.exp(-2.0)]
    close(a[0], expected)


def _encoder_with_stimulation(levels: list[float], timesteps: int = 5, encoding: str = "deterministic"):
    """One obs dimension at s = 0, σ = 1 and μ_j = sqrt(−2 ln A_j), so that A_j = levels[j]."""
    enc = PopulationEncoder(obs_dim=1, pop_dim=len(levels), timesteps=timesteps, encoding=encoding)
    with torch.no_grad():
        enc.mean.copy_(torch.tensor([[math.sqrt(-2 * math.log(a)) for a in levels]]))
        enc.std.fill_(1.0)
    return enc


def test_deterministic_encoder_spike_trains_by_hand():
    enc = _encoder_with_stimulation([0.2, 0.3, 0.5, 0.7, 1.0])
    o = enc(torch.zeros(1, 1))
    assert o.shape == (5, 1, 5)
    # v ← v + A; spike when v > 0.999; v ← v − 0.999·spike
    # A = 0.2: v = .2 .4 .6 .8 1.0                          → spike at t = 5
    # A = 0.3: v = .3 .6 .9 1.2(s) .501                     → t = 4
    # A = 0.5: v = .5 1.0(s) .501 1.001(s) .502              → t = 2, 4
    # A = 0.7: v = .7 1.4(s) 1.101(s) .802 1.502(s)          → t = 2, 3, 5
    # A = 1.0: v = 1.0(s) 1.001(s) 1.002(s) ...              → every step
    expected = [[0, 0, 0, 0, 1], [0, 0, 0, 1, 0], [0, 1, 0, 1, 0], [0, 1, 1, 0, 1], [1, 1, 1, 1, 1]]
    assert o[:, 0, :].T.tolist() == expected


def test_deterministic_encoder_gradient_by_hand():
    # Straight-through spikes and a differentiable accumulator: d v_{t+1} / d v_t = 1 − 0.999,
    # so d o_t / d A = 1, 1.001, 1.001001 for t = 1, 2, 3; chain rule to μ and σ:
    # dA/dμ = A·(s − μ)/σ², dA/dσ = A·(s − μ)²/σ³.
    enc = _encoder_with_stimulation([0.5, 0.7], timesteps=3)
    with torch.no_grad():
        enc.std.fill_(2.0)
        enc.mean.copy_(torch.tensor([[0.5, -1.0]]))
    s = torch.tensor([[0.25]])
    o = enc(s)
    weights = torch.tensor([1.0, 10.0, 100.0]).view(3, 1, 1)  # L = Σ_t w_t·o_t
    (o * weights).sum().backward()
    dl_da = 1.0 + 10.0 * 1.001 + 100.0 * 1.001001
    for j, mu in enumerate([0.5, -1.0]):
        a = math.exp(-((0.25 - mu) ** 2) / 8)
        close(enc.mean.grad[0, j], dl_da * a * (0.25 - mu) / 4, atol=1e-5)
        close(enc.std.grad[0, j], dl_da * a * (0.25 - mu) ** 2 / 8, atol=1e-5)


def test_encoder_gradient_matches_naive_loop():
    torch.manual_seed(0)
    enc = PopulationEncoder(obs_dim=4, timesteps=5).double()
    obs = torch.randn(6, 4, dtype=torch.float64)
    weights = torch.randn(5, 6, 40, dtype=torch.float64)
    (enc(obs) * weights).sum().backward()
    fast = (enc.mean.grad.clone(), enc.std.grad.clone())
    enc.zero_grad()
    (torch.stack(popsan_encoder_naive(enc, obs)) * weights).sum().backward()
    assert fast[0].abs().sum() > 0 and fast[1].abs().sum() > 0
    close(fast[0], enc.mean.grad, atol=1e-12)
    close(fast[1], enc.std.grad, atol=1e-12)


def test_poisson_encoder_rate_matches_stimulation():
    levels = [0.05, 0.2, 0.5, 0.8, 0.95]
    enc = _encoder_with_stimulation(levels, encoding="poisson")
    torch.manual_seed(0)
    o = enc(torch.zeros(4000, 1))
    assert set(o.unique().tolist()) <= {0.0, 1.0}
    rate = o.mean(dim=(0, 1))  # 20,000 Bernoulli draws per neuron: std of the mean <= 0.0036
    close(rate, levels, atol=0.015)
    torch.manual_seed(0)
    assert torch.equal(enc(torch.zeros(4000, 1)), o), "seeding must reproduce Poisson spikes"


def test_poisson_encoder_gradient_is_straight_through():
    enc = _encoder_with_stimulation([0.5, 0.5], encoding="poisson")
    with torch.no_grad():
        enc.mean.copy_(torch.tensor([[1.0, -2.0]]))
    s = torch.zeros(1, 1)
    enc(s).sum().backward()  # dL/dA = Σ_t 1 = T = 5; dA/dμ = A·(s − μ)/σ²
    close(enc.mean.grad[0], [5 * -math.exp(-0.5), 5 * 2 * math.exp(-2.0)])


# --- PopSAN LIF ----------------------------------------------------------------------------------

def test_popsan_lif_trace_by_hand():
    i = torch.tensor([0.3, 0.3, 0.3, 0.0, 0.0]).view(5, 1, 1)
    c, v, o = popsan_lif_trace(i)
    # c_t = 0.5·c_{t−1} + I_t; v_t = 0.75·v_{t−1}·(1 − o_{t−1}) + c_t; o_t = H(v_t − 0.5)
    # t=1: c .3,      v .3                      o 0
    # t=2: c .45,     v .225 + .45 = .675       o 1
    # t=3: c .525,    v 0 + .525 (o_2 = 1 resets the carried .675)   o 1
    # t=4: c .2625,   v 0 + .2625 (o_3 = 1)     o 0
    # t=5: c .13125,  v .75·.2625 + .13125 = .328125   o 0
    close(c.flatten(), [0.3, 0.45, 0.525, 0.2625, 0.13125])
    close(v.flatten(), [0.3, 0.675, 0.525, 0.2625, 0.328125])
    assert o.flatten().tolist() == [0, 1, 1, 0, 0]


def test_popsan_lif_threshold_is_strict_at_every_step():
    c, v, o = popsan_lif_trace(torch.tensor([0.25, 0.1875, 0.0]).view(3, 1, 1))
    # c = .25, .3125, .15625; v = .25, .1875 + .3125 = 0.5 exactly (no spike: H(0) = 0),
    # then .375 + .15625 = .53125 (spikes only because v_2 was not reset)
    close(v.flatten(), [0.25, 0.5, 0.53125], atol=0)
    assert o.flatten().tolist() == [0, 0, 1]


def test_popsan_layer_is_a_linear_synapse_then_lif():
    layer = PopSANLIFLayer(2, 1)
    with torch.no_grad():
        layer.fc.weight.copy_(torch.tensor([[0.375, 0.25]]))
        layer.fc.bias.fill_(0.125)
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]).view(3, 1, 2)
    # I = .5, .75, .125; c = .5, 1.0, .625; v = .5 (no spike: H(0) = 0), .375 + 1.0, 0 + .625
    assert layer(x).flatten().tolist() == [0, 1, 1]


def test_popsan_lif_gradient_flows_through_the_reset():
    # T = 2, L = o_2, I = (0.7, 0.2): v_1 = .7 (spikes, inside the window), c_2 = .35 + .2,
    # v_2 = .75·v_1·(1 − o_1) + c_2 = .55 (inside the window).
    # dL/dI_2 = 1; dL/dI_1 = dc_2/dc_1 + dv_2/do_1 · do_1/dv_1 = 0.5 − 0.75·0.7·1 = −0.025.
    # (A detached reset would give 0.5.)
    i = torch.tensor([0.7, 0.2], dtype=torch.float64).view(2, 1, 1).requires_grad_(True)
    o = popsan_lif(i)
    o[1].sum().backward()
    close(i.grad.flatten(), [-0.025, 1.0], atol=1e-12)
    i.grad = None
    popsan_lif_naive(list(i.unbind(0)))[1].sum().backward()
    close(i.grad.flatten(), [-0.025, 1.0], atol=1e-12)


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_popsan_lif_fast_matches_naive_loop(dtype, atol):
    torch.manual_seed(1)
    i = (0.6 * torch.randn(5, 7, 64, dtype=dtype) + 0.3).requires_grad_(True)
    g = torch.randn(5, 7, 64, dtype=dtype)
    o = popsan_lif(i)
    (o * g).sum().backward()
    fast_grad, i.grad = i.grad.clone(), None
    o_ref = torch.stack(popsan_lif_naive(list(i.unbind(0))))
    (o_ref * g).sum().backward()
    assert 0.1 < o.mean().item() < 0.9
    assert torch.equal(o, o_ref)
    close(fast_grad, i.grad, atol=atol)


# --- DSRL LIF ------------------------------------------------------------------------------------

def test_dsrl_lif_trace_constant_current_by_hand():
    i0 = torch.tensor([[0.6]])
    cur, u, s = dsrl_lif_trace(i0, theta=1.0, timesteps=4)
    # U_t = 0.5·U_{t−1} + 0.6: .6, .9, 1.05 (spike, U ← 0 in this step), then 0 + .6
    close(cur.flatten(), [0.6] * 4)
    close(u.flatten(), [0.6, 0.9, 1.05, 0.6])
    assert s.flatten().tolist() == [0, 0, 1, 0]


def test_dsrl_lif_trace_decaying_current_by_hand():
    j = torch.tensor([0.8, 0.8, 0.0, 0.8]).view(4, 1, 1)
    cur, u, s = dsrl_lif_trace(j, theta=1.0)
    # I_t = 0.5·I_{t−1} + J_t: .8, 1.2, .6, 1.1
    # U_t = 0.5·U_{t−1} + I_t: .8, .4 + 1.2 = 1.6 (spike → 0), 0 + .6, .3 + 1.1 = 1.4 (spike)
    close(cur.flatten(), [0.8, 1.2, 0.6, 1.1])
    close(u.flatten(), [0.8, 1.6, 0.6, 1.4])
    assert s.flatten().tolist() == [0, 1, 0, 1]


def test_dsrl_lif_threshold_is_strict():
    cur, u, s = dsrl_lif_trace(torch.tensor([0.5, 0.5, 0.0]).view(3, 1, 1), theta=1.0)
    # I = .5, .75, .375; U = .5, .25 + .75 = 1.0 = θ (no spike), .5 + .375 = .875 (not reset)
    close(u.flatten(), [0.5, 1.0, 0.875], atol=0)
    assert s.flatten().tolist() == [0, 0, 0]


def test_dsrl_lif_gradient_with_detached_reset_by_hand():
    # T = 2, θ = 1, L = S_2, J = (1.01, 0.595): U_1 = 1.01 spikes (reset to 0, detached);
    # I_2 = .505 + .595 = 1.1, U_2 = 1.1, surrogate 1/(100·0.1 + 1)² = 1/121.
    # dL/dJ_2 = 1/121; dL/dJ_1 = α·dL/dI_2 + dL/dU_1 = 0.5/121 + 0 (the reset blocks the U path).
    j = torch.tensor([1.01, 0.595], dtype=torch.float64).view(2, 1, 1).requires_grad_(True)
    dsrl_lif(j, 1.0)[1].sum().backward()
    close(j.grad.flatten(), [0.5 / 121, 1 / 121], atol=1e-9)
    j.grad = None
    dsrl_lif_naive(list(j.unbind(0)), 1.0, decaying_current=True)[1].sum().backward()
    close(j.grad.flatten(), [0.5 / 121, 1 / 121], atol=1e-9)


@pytest.mark.parametrize("constant", [True, False])
def test_dsrl_lif_fast_matches_naive_loop(constant):
    torch.manual_seed(2)
    shape = (7, 64) if constant else (4, 7, 64)
    i = (0.8 * torch.randn(*shape, dtype=torch.float64) + 0.4).requires_grad_(True)
    g = torch.randn(4, 7, 64, dtype=torch.float64)
    s = dsrl_lif(i, 0.8, timesteps=4)
    (s * g).sum().backward()
    fast_grad, i.grad = i.grad.clone(), None
    currents = [i] * 4 if constant else list(i.unbind(0))
    s_ref = torch.stack(dsrl_lif_naive(currents, 0.8, decaying_current=not constant))
    (s_ref * g).sum().backward()
    assert 0.1 < s.mean().item() < 0.9
    assert torch.equal(s, s_ref)
    close(fast_grad, i.grad, atol=1e-12)


# --- decoder and DSRL input ----------------------------------------------------------------------

def test_population_decoder_by_hand():
    dec = PopulationDecoder(act_dim=2, act_limit=2.0, pop_dim=3)
    with torch.no_grad():
        dec.weight.copy_(torch.tensor([[0.2, -0.4, 0.6], [1.0, 2.0, -0.5]]))
        dec.bias.copy_(torch.tensor([0.1, 0.3]))
    o = torch.tensor([[1, 0, 1, 0, 0, 1], [1, 1, 0, 0, 0, 1]], dtype=torch.float32).view(2, 1, 6)
    # rates (1, .5, .5 | 0, 0, 1); dim 0: .2 − .2 + .3 + .1 = .4; dim 1: −.5 + .3 = −.2
    close(dec(o)[0], [2 * math.tanh(0.4), 2 * math.tanh(-0.2)])


def test_dsrl_sign_split():
    x = torch.tensor([[0.5, -0.25, 0.0]])
    assert sign_split(x).tolist() == [[0.5, 0.0, 0.0, 0.0, 0.25, 0.0]]


# --- observation normalisers ---------------------------------------------------------------------

def test_max_abs_normalizer():
    norm = MaxAbsNormalizer(2)
    close(norm.max_abs, [1.0, 1.0])  # starts at 1
    norm.update(np.array([[2.0, -0.5], [-3.0, 0.2]]))
    close(norm.max_abs, [3.0, 1.0])  # max(1, seen |obs|)
    out = norm(torch.tensor([[1.5, -0.5]]))
    assert out.dtype == torch.float32
    close(out, [[0.5, -0.5]])
    other = MaxAbsNormalizer(2)
    other.update(np.array([[0.1, -4.0]]))
    norm.merge_stats(other.running_stats())
    close(norm.max_abs, [3.0, 4.0])


def _numpy_z(obs: np.ndarray, data: np.ndarray) -> np.ndarray:
    return np.clip((obs - data.mean(0)) / np.sqrt(data.var(0) + 1e-8), -3, 3)


def test_zscore_parallel_merge_matches_numpy():
    rng = np.random.default_rng(0)
    data = rng.normal(loc=[1.0, -50.0, 1e3], scale=[0.1, 5.0, 300.0], size=(1000, 3))
    norm = ZScoreNormalizer(3)
    for chunk in np.split(data, [1, 3, 50, 51, 400, 999]):  # uneven chunks, a 1-row one too
        norm.update(chunk)
    assert norm.count.item() == 1000
    np.testing.assert_allclose(norm.mean.numpy(), data.mean(0), rtol=1e-12)
    np.testing.assert_allclose(norm.var.numpy(), data.var(0), rtol=1e-10)
    obs = rng.normal(loc=[1.0, -50.0, 1e3], scale=[0.5, 50.0, 300.0], size=(20, 3))  # some clip
    out = norm(torch.tensor(obs, dtype=torch.float32))
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), _numpy_z(obs, data), atol=1e-5)
    assert out.abs().max().item() == 3.0


def test_zscore_ranks_stats_merged_in_order_equal_one_process():
    rng = np.random.default_rng(1)
    history = rng.normal(size=(37, 4))
    rank_batches = [rng.normal(loc=k, scale=k + 1, size=(50 + 7 * k, 4)) for k in range(3)]
    single = ZScoreNormalizer(4)
    single.update(history)
    for batch in rank_batches:
        single.update(batch)
    merged = ZScoreNormalizer(4)
    merged.update(history)
    probe = ZScoreNormalizer(4)
    gathered = torch.stack([probe.batch_stats(b) for b in rank_batches])  # what all_gather returns
    merged.merge_stats(gathered)
    everything = np.concatenate([history, *rank_batches])
    for norm in (single, merged):
        np.testing.assert_allclose(norm.mean.numpy(), everything.mean(0), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(norm.var.numpy(), everything.var(0), rtol=1e-10)
    torch.testing.assert_close(merged.running_stats(), single.running_stats(), rtol=1e-12, atol=1e-12)


def test_zscore_merge_two_normalizers_and_empty_batch():
    rng = np.random.default_rng(2)
    a_data, b_data = rng.normal(size=(10, 2)), rng.normal(loc=3.0, size=(25, 2))
    a, b = ZScoreNormalizer(2), ZScoreNormalizer(2)
    a.update(a_data)
    b.update(b_data)
    a.merge_stats(b.running_stats())
    both = np.concatenate([a_data, b_data])
    np.testing.assert_allclose(a.mean.numpy(), both.mean(0), rtol=1e-12)
    np.testing.assert_allclose(a.var.numpy(), both.var(0), rtol=1e-10)
    before = a.running_stats()
    a.update(np.zeros((0, 2)))
    assert torch.equal(a.running_stats(), before)


def test_zscore_before_any_data_and_state_dict():
    norm = ZScoreNormalizer(2)
    close(norm(torch.tensor([[0.5, -7.0]])), [[0.5, -3.0]])  # var 1, mean 0, clipped
    norm.update(np.array([[1.0, 2.0], [3.0, 6.0]]))
    state = norm.state_dict()
    assert set(state) == {"count", "mean", "m2"} and all(t.dtype == torch.float64 for t in state.values())
    fresh = ZScoreNormalizer(2)
    fresh.load_state_dict(state)
    close(fresh(torch.tensor([[2.0, 4.0]])), [[0.0, 0.0]])
    close(fresh(torch.tensor([[3.0, 6.0]])), [[1.0, 1.0]])  # (o − mean)/sqrt(var + 1e-8), var = 1, 4


def test_identity_normalizer():
    norm = IdentityNormalizer(3)
    x = torch.randn(4, 3)
    norm.update(np.ones((5, 3)))
    assert norm(x) is x
    assert norm.batch_stats(np.ones((5, 3))).numel() == 0
    assert list(norm.state_dict()) == []


def test_zscore_cached_std_follows_every_change_of_the_statistics():
    norm = ZScoreNormalizer(3)
    obs = torch.tensor([[1.0, -2.0, 0.5]])
    first = norm(obs)  # before any data: var = 1
    norm.update(np.array([[0.0, 1.0, 2.0], [2.0, 3.0, 6.0]]))
    fresh = ((obs.double() - norm.mean) / torch.sqrt(norm.var + norm.eps)).clamp(-3, 3).float()
    assert not torch.equal(first, norm(obs))
    assert torch.equal(norm(obs), fresh)
    other = ZScoreNormalizer(3)
    other(obs)
    other.load_state_dict(norm.state_dict())
    assert torch.equal(other(obs), fresh)
