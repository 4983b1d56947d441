"""The four methods: fast actors against naive step-by-step references, bounds, registry, bf16.

The fast actors (one matmul per layer over T·B rows, fused BPTT recurrences) must compute the
same function, with the same gradients, as a naive loop over timesteps with plain autograd
(tests/snn_reference.py). Weights are scaled so that every spiking layer actually spikes, and
the test asserts it: with silent layers a match would prove nothing.

Tolerances. In fp64 fast and naive agree to 1e-10: the same mathematics. In fp32, PopSAN's
outputs and gradients agree to 1e-6. DSRL's outputs agree to 1e-6; its gradients agree to
1e-6 relative to each gradient's largest entry only up to fp32 rounding of the currents:
the batched matmul over T·B rows may round I one ulp away from the per-step matmul, and the
fast-sigmoid surrogate 1/(100·|U − θ| + 1)² has slope up to 200, so that ulp is amplified. The
naive fp32 loop is itself only that close to the fp64 result, so fp32 DSRL gradients are held
to 1e-4 of their scale and the exactness is pinned in fp64.
"""
from __future__ import annotations

import dataclasses
import pickle

import pytest
import torch
import torch.nn as nn

import baselines.dsrl as dsrl_module
import spikerl.lif as lif_module
from baselines.dsrl import DSRLActor, threshold_for
from baselines.registry import METHODS, get_method
from spikerl import native
from spikerl.config import TD3Config
from spikerl.method import ActorContext, WorldSize
from spikerl.popspike_actor import PopSpikingActor

try:  # tests/ may or may not be a package, depending on how pytest is run
    from tests.snn_reference import SpikeRecord, dsrl_actor_naive, popsan_actor_naive
except ImportError:
    from snn_reference import SpikeRecord, dsrl_actor_naive, popsan_actor_naive

ENVS = {"HalfCheetah-v4": (17, 6), "Hopper-v4": (11, 3), "Ant-v4": (27, 8)}


def _popsan_actor(encoding: str, dtype: torch.dtype) -> PopSpikingActor:
    torch.manual_seed(0)
    actor = PopSpikingActor(17, 6, act_limit=1.0, encoding=encoding)
    with torch.no_grad():
        for layer in actor.layers:
            layer.fc.weight.mul_(2.0)  # default init spikes sparsely in the last layer
    return actor.to(dtype)


def _dsrl_actor(dtype: torch.dtype) -> DSRLActor:
    torch.manual_seed(0)
    actor = DSRLActor(17, 6, act_limit=1.0, threshold=0.8)
    with torch.no_grad():
        actor.fc0.weight.mul_(1.5)
        actor.fc1.weight.mul_(1.5)
    return actor.to(dtype)


def _value_and_grads(actor: nn.Module, forward, obs: torch.Tensor, seed: int):
    actor.zero_grad(set_to_none=True)
    x = obs.clone().requires_grad_(True)
    torch.manual_seed(seed)  # the same Poisson draws for fast and naive
    y = forward(x)
    weights = torch.linspace(-1.0, 2.0, y.numel(), dtype=y.dtype).view_as(y)
    (y * weights).sum().backward()
    grads = {"obs": x.grad}
    grads.update({name: p.grad for name, p in actor.named_parameters()})
    return y.detach(), grads


def _assert_match(fast, naive, atol_scale: float) -> None:
    (y_fast, g_fast), (y_naive, g_naive) = fast, naive
    torch.testing.assert_close(y_fast, y_naive, rtol=0.0, atol=1e-6 if y_fast.dtype == torch.float32 else 1e-10)
    assert g_fast.keys() == g_naive.keys()
    for name in g_naive:
        assert g_fast[name] is not None and g_naive[name] is not None, name
        scale = max(1.0, g_naive[name].abs().max().item())
        torch.testing.assert_close(g_fast[name], g_naive[name], rtol=0.0, atol=atol_scale * scale, msg=name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("encoding", ["deterministic", "poisson"])
def test_popsan_actor_matches_naive_loop(encoding, batch, dtype):
    actor = _popsan_actor(encoding, dtype)
    obs = torch.randn(batch, 17, generator=torch.Generator().manual_seed(batch), dtype=dtype)
    record = SpikeRecord()
    naive = _value_and_grads(actor, lambda x: popsan_actor_naive(actor, x, record), obs, seed=5)
    fast = _value_and_grads(actor, actor, obs, seed=5)
    assert len(record.rates) == 4 and all(0.02 < r < 0.9 for r in record.rates), record.rates
    _assert_match(fast, naive, atol_scale=1e-6 if dtype == torch.float32 else 1e-10)
    assert fast[1]["encoder.mean"].abs().sum() > 0 and fast[1]["encoder.std"].abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch", [1, 7])
def test_dsrl_actor_matches_naive_loop(batch, dtype):
    actor = _dsrl_actor(dtype)
    obs = 2 * torch.rand(batch, 17, generator=torch.Generator().manual_seed(batch), dtype=dtype) - 1
    record = SpikeRecord()
    naive = _value_and_grads(actor, lambda x: dsrl_actor_naive(actor, x, record), obs, seed=0)
    fast = _value_and_grads(actor, actor, obs, seed=0)
    assert all(0.02 < r < 0.9 for r in record.rates), record.rates
    _assert_match(fast, naive, atol_scale=1e-4 if dtype == torch.float32 else 1e-10)


def _build(name: str, env_id: str, act_limit: float = 0.4) -> tuple[nn.Module, nn.Module, ActorContext]:
    spec = get_method(name)
    obs_dim, act_dim = ENVS[env_id]
    ctx = ActorContext(obs_dim, act_dim, act_limit=act_limit, env_id=env_id, params=spec.actor_params(env_id))
    return spec.build_actor(ctx), spec.build_normalizer(ctx), ctx


@pytest.mark.parametrize("env_id", list(ENVS))
@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_builds_runs_and_stays_in_bounds(name, env_id):
    torch.manual_seed(0)
    actor, norm, ctx = _build(name, env_id)
    raw = 50 * torch.randn(9, ctx.obs_dim)
    norm.update(raw[:5].numpy())
    obs = norm(raw)
    assert obs.shape == raw.shape and obs.dtype == torch.float32
    act = actor(obs)
    assert act.shape == (9, ctx.act_dim) and act.dtype == torch.float32
    assert act.abs().max() <= torch.tensor(ctx.act_limit)  # act_limit as fp32 rounds it
    act.square().sum().backward()
    for pname, p in actor.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    TD3Config().replace(**get_method(name).td3_params(env_id))  # every key is a real TD3 setting


@pytest.mark.parametrize("name", list(METHODS))
def test_actions_scale_with_act_limit(name):
    torch.manual_seed(3)
    actor_1, _, _ = _build(name, "HalfCheetah-v4", act_limit=1.0)
    torch.manual_seed(3)
    actor_04, _, _ = _build(name, "HalfCheetah-v4", act_limit=0.4)
    obs = torch.randn(6, 17)
    with torch.no_grad():
        torch.manual_seed(0)
        a1 = actor_1(obs)
        torch.manual_seed(0)
        a04 = actor_04(obs)
    torch.testing.assert_close(a04, 0.4 * a1)


def test_actor_state_starts_at_zero_on_every_call():
    actor, _, _ = _build("spikerl", "HalfCheetah-v4")
    obs = torch.randn(5, 17)
    with torch.no_grad():
        first, second = actor(obs), actor(obs)
        single = actor(obs[2:3])
    assert torch.equal(first, second)
    torch.testing.assert_close(single, first[2:3], rtol=0.0, atol=1e-6)  # no cross-talk in a batch


def test_method_recipes():
    assert get_method("spikerl").td3_params("HalfCheetah-v4")["precision"] == "bf16"
    assert get_method("popsan").td3_params("Hopper-v4")["precision"] == "fp32"
    assert get_method("spikerl").actor_params("Hopper-v4")["encoding"] == "deterministic"
    assert get_method("popsan").actor_params("Hopper-v4")["encoding"] == "poisson"
    assert get_method("popsan").actor_params("Walker2d-v4")["encoding"] == "poisson"
    assert get_method("popsan").actor_params("HalfCheetah-v4")["encoding"] == "deterministic"
    popsan_hopper, _, _ = _build("popsan", "Hopper-v4")
    assert popsan_hopper.encoder.encoding.value == "poisson"
    assert get_method("dsrl").td3_params("HalfCheetah-v4")["replay_size"] == 200_000
    assert get_method("dsrl").td3_params("Ant-v4")["replay_size"] == 1_000_000
    assert [threshold_for(e) for e in ("HalfCheetah-v4", "Hopper-v4", "Ant-v4", "Walker2d-v4", "Swimmer-v4")] \
        == [0.8, 2.0, 2.5, 2.0, 2.0]
    for name, spec in METHODS.items():
        assert spec.name == name and spec.summary
        assert dataclasses.is_dataclass(spec)


@pytest.mark.parametrize("env_id", ["HalfCheetah-v4", "Hopper-v4", "Walker2d-v4", "Ant-v4"])
def test_spikerl_is_popsan_with_its_recipe(env_id):
    spikerl, popsan = get_method("spikerl"), get_method("popsan")
    assert spikerl.build_actor is popsan.build_actor and spikerl.build_normalizer is popsan.build_normalizer
    # only the recipe differs, and the keys keep PopSAN's order (the `methods` listing shows them)
    assert spikerl.actor_params(env_id) == {**popsan.actor_params(env_id), "encoding": "deterministic"}
    assert list(spikerl.actor_params(env_id)) == list(popsan.actor_params(env_id))
    assert spikerl.td3_params(env_id) == {**popsan.td3_params(env_id), "precision": "bf16"}
    assert list(spikerl.td3_params(env_id)) == list(popsan.td3_params(env_id))
    assert spikerl.world_size is WorldSize.LOCAL_GPUS
    assert all(get_method(n).world_size is WorldSize.ONE for n in ("popsan", "dsrl", "mlp"))


def test_world_size_resolves_to_local_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert WorldSize.LOCAL_GPUS.resolve() == 4 and WorldSize.ONE.resolve() == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert WorldSize.LOCAL_GPUS.resolve() == 1


def test_derived_spec_pickles_and_hashes():
    spikerl = get_method("spikerl")
    # a derived spec stays as picklable and hashable as a hand-written one (a closure would not pickle)
    again = pickle.loads(pickle.dumps(spikerl))
    assert again == spikerl and hash(again) == hash(spikerl)
    assert again.actor_params("Hopper-v4") == spikerl.actor_params("Hopper-v4")


def test_popsan_actor_architecture():
    actor, norm, _ = _build("spikerl", "Ant-v4")
    assert type(norm).__name__ == "ZScoreNormalizer"
    assert actor.timesteps == 5 and actor.encoder.encoding.value == "deterministic"
    assert [tuple(layer.fc.weight.shape) for layer in actor.layers] == [(256, 270), (256, 256), (80, 256)]
    assert all(layer.fc.bias is not None for layer in actor.layers)
    assert tuple(actor.encoder.mean.shape) == (27, 10) and tuple(actor.decoder.weight.shape) == (8, 10)
    assert tuple(actor.decoder.bias.shape) == (8,)


def test_dsrl_actor_shapes_and_init():
    actor, norm, _ = _build("dsrl", "HalfCheetah-v4")
    assert type(norm).__name__ == "MaxAbsNormalizer"
    assert actor.timesteps == 4 and actor.threshold == 0.8
    assert DSRLActor(3, 1, 1.0).timesteps == 4
    assert [tuple(fc.weight.shape) for fc in (actor.fc0, actor.fc1, actor.fc2)] == [(400, 34), (300, 400), (6, 300)]
    assert all(fc.bias is None for fc in (actor.fc0, actor.fc1, actor.fc2))
    for fc in (actor.fc0, actor.fc1):  # N(0, std = 1/sqrt(fan_in))
        std = fc.weight.std().item() * fc.in_features ** 0.5
        assert 0.9 < std < 1.1


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(KeyError, match="spikerl, popsan, dsrl, mlp"):
        get_method("nope")


def _record_recurrences(monkeypatch) -> list[torch.Tensor]:
    """Wraps the LIF recurrences to capture their input currents and outputs."""
    seen: list[torch.Tensor] = []

    def wrap(fn):
        def wrapped(i, *args, **kwargs):
            out = fn(i, *args, **kwargs)
            seen.extend([i, out])
            return out
        return wrapped

    monkeypatch.setattr(lif_module, "popsan_lif", wrap(lif_module.popsan_lif))
    monkeypatch.setattr(dsrl_module, "dsrl_lif", wrap(dsrl_module.dsrl_lif))
    return seen


@pytest.mark.parametrize("name", ["spikerl", "popsan", "dsrl", "mlp"])
def test_bf16_autocast_keeps_fp32_weights_and_state(name, monkeypatch):
    actor, _, ctx = _build(name, "HalfCheetah-v4")
    linear_dtypes: list[torch.dtype] = []
    for module in actor.modules():
        if isinstance(module, nn.Linear):
            module.register_forward_hook(lambda m, args, out: linear_dtypes.append(out.dtype))
    seen = _record_recurrences(monkeypatch)
    # the torch path's recipe (the native kernels' bf16 recipe: tests/test_native_bf16.py)
    with torch.autocast("cpu", dtype=torch.bfloat16), native.torch_path():
        act = actor(torch.randn(4, ctx.obs_dim))
    saved = [s for t in seen if t.grad_fn is not None and "LIF" in type(t.grad_fn).__name__
             for s in t.grad_fn.saved_tensors]  # membrane state and keep masks, read before backward frees them
    act.float().sum().backward()
    assert linear_dtypes and all(d == torch.bfloat16 for d in linear_dtypes)
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in actor.parameters())
    if name == "mlp":
        return
    assert seen, "the spiking layers did not go through the fused recurrences"
    for t in seen:  # input currents and spikes
        assert t.dtype == torch.float32
    assert saved and all(s.dtype == torch.float32 for s in saved)
