"""The bf16 recipe on the native kernels (spikerl/lif.py, above `_fp32_block`) against the torch path
under CPU bf16 autocast.

Both round weights, biases and synaptic sums to bf16 and run the recurrences in fp32; only the
order of each fp32 sum differs (column sums or dot products against BLAS), so a current lands on
the other side of a bf16 rounding boundary now and then. Stated tolerances, all against the torch
bf16 path (measured margins in the comments):
- rounding: `native.round_bf16` is torch's fp32 -> bf16 -> fp32 cast bit for bit;
- spikes of one layer from the same input spikes: >= 99.9 % agree (measured 100 % here);
- whole actors: actions within 1e-2·act_limit (two bf16 ulps at 1; measured 0);
- gradients: every parameter's cosine similarity >= 0.999 and max |Δ| <= 2e-2 of its largest
  entry (a flipped spike moves the surrogate's gradient; measured <= 2e-3);
- TD3 updates: the losses to 1e-2 relative, the weights to 1e-4 after two bursts (an Adam step
  of lr 1e-3 that went the other way on a near-zero gradient would show as ~2e-3; measured 3e-7).
"""
from __future__ import annotations

import pytest
import torch

from baselines.dsrl import DSRLActor
from spikerl import native, native_lib
from spikerl.config import TD3Config
from spikerl.critic import TwinCritic
from spikerl.lif import PopSANLIFLayer
from spikerl.normalizers import MaxAbsNormalizer
from spikerl.popspike_actor import PopSpikingActor
from spikerl.replay import ReplayBatch
from spikerl.td3 import TD3

needs_native = pytest.mark.skipif(native.library() is None, reason=f"native kernels: {native.unavailable_reason()}")


def _bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


@needs_native
def test_round_bf16_is_torchs_cast_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(4096, generator=g) * 10.0 ** torch.randint(-40, 38, (4096,), generator=g).float(),
                   torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan"), 3.4e38, -3.4e38, 1e-40,
                                 1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8, 1.0 + 2.0 ** -8 + 2.0 ** -20])])
    want = x.bfloat16().float()
    got = native.round_bf16(x)
    assert torch.equal(got.isnan(), want.isnan())
    ok = ~want.isnan()
    assert torch.equal(got[ok].view(torch.int32), want[ok].view(torch.int32))  # -0.0 and ties to even too
    y = x.clone()
    assert native.round_bf16(y, out=y) is y and torch.equal(y[ok], want[ok])


@needs_native
def test_bf16_autocast_takes_the_native_path_and_auto_chooses_it():
    x, w = torch.zeros(3, 2, 8), torch.zeros(4, 8)
    with _bf16():
        assert native.bf16_autocast() and native.usable(x, w)
    with torch.autocast("cpu", dtype=torch.float16):
        assert not native.bf16_autocast() and not native.usable(x, w)  # no fp16 recipe on the kernels
    assert not native.bf16_autocast()
    assert native_lib.native_unusable_reason("cpu", "bf16") is None
    assert native_lib.resolve_engine("auto", "cpu", "bf16") == "native"
    assert native_lib.resolve_engine("native", "cpu", "bf16") == "native"
    assert native_lib.resolve_engine("auto", "cuda", "bf16") == "torch"


def _spike_input(t: int, b: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(t, b, k, generator=g) < 0.3).float()


@needs_native
@pytest.mark.parametrize("batch", [1, 100])  # 5 rows take the dot products, 500 the spike lists
def test_one_layer_spikes_and_gradients_agree_with_torch_bf16(batch):
    torch.manual_seed(3)
    layer = PopSANLIFLayer(170, 256)
    x = _spike_input(5, batch, 170, seed=batch).requires_grad_(True)
    up = torch.linspace(-1, 1, 5 * batch * 256).view(5, batch, 256)

    def run():
        layer.zero_grad(set_to_none=True)
        x.grad = None
        with _bf16():
            o = layer(x)
        (o * up).sum().backward()
        return o.detach(), x.grad.clone(), layer.fc.weight.grad.clone(), layer.fc.bias.grad.clone()

    kernels: list[str] = []
    with native.observe_kernels(lambda name, sec: kernels.append(name)):
        o_n, gx_n, gw_n, gb_n = run()
    assert "popsan_lif_forward" in kernels and "popsan_lif_backward" in kernels and "round_bf16" in kernels
    with native.torch_path():
        o_t, gx_t, gw_t, gb_t = run()
    assert o_n.dtype == torch.float32 and 0.05 < o_t.mean().item() < 0.95
    assert (o_n == o_t).float().mean().item() >= 0.999
    for got, want in ((gx_n, gx_t), (gw_n, gw_t), (gb_n, gb_t)):
        _close_gradients(got, want, "layer")
    # the gradients are bf16 values, as autocast's are
    assert torch.equal(gw_n, gw_n.bfloat16().float()) and torch.equal(gx_n, gx_n.bfloat16().float())


def _close_gradients(got: torch.Tensor, want: torch.Tensor, name: str) -> None:
    scale = want.abs().max().item()
    if scale == 0.0:
        assert got.abs().max().item() == 0.0, name
        return
    assert (got - want).abs().max().item() <= 2e-2 * scale, name
    cos = torch.nn.functional.cosine_similarity(got.flatten().double(), want.flatten().double(), dim=0).item()
    assert cos >= 0.999, (name, cos)


def _actor_run(actor: torch.nn.Module, obs: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    actor.zero_grad(set_to_none=True)
    with _bf16():
        y = actor(obs)
    (y * torch.linspace(-1, 2, y.numel()).view_as(y)).sum().backward()
    return y.detach(), {k: p.grad.clone() for k, p in actor.named_parameters()}


def _dsrl_actor() -> DSRLActor:
    torch.manual_seed(0)
    actor = DSRLActor(17, 6, act_limit=1.0, threshold=0.8)
    with torch.no_grad():  # default init spikes sparsely in layer 2 (tests/test_native.py)
        actor.fc0.weight.mul_(1.5)
        actor.fc1.weight.mul_(1.5)
    return actor


@needs_native
@pytest.mark.parametrize("method", ["popsan", "dsrl"])
@pytest.mark.parametrize("batch", [1, 100])
def test_actors_in_bf16_agree_with_the_torch_bf16_path(method, batch):
    if method == "popsan":
        torch.manual_seed(0)
        actor, obs = PopSpikingActor(17, 6, act_limit=1.0), torch.randn(batch, 17)
        kernel = "popsan_lif_forward"
    else:
        actor = _dsrl_actor()
        obs = 2 * torch.rand(batch, 17, generator=torch.Generator().manual_seed(batch)) - 1
        kernel = "dsrl_lif_forward"
    kernels: list[str] = []
    with native.observe_kernels(lambda name, sec: kernels.append(name)):
        y_n, g_n = _actor_run(actor, obs)
        with torch.no_grad(), _bf16():
            acted = actor(obs[:1])  # acting: layer by layer (the one-call acting kernels are fp32 only)
    assert kernel in kernels and "round_bf16" in kernels
    assert "popsan_act" not in kernels and "dsrl_act" not in kernels
    with native.torch_path():
        y_t, g_t = _actor_run(actor, obs)
        with torch.no_grad(), _bf16():
            acted_t = actor(obs[:1])
    assert y_n.dtype == torch.float32
    torch.testing.assert_close(y_n, y_t, rtol=0, atol=1e-2)
    torch.testing.assert_close(acted, acted_t, rtol=0, atol=1e-2)
    assert any(g.abs().max() > 0 for g in g_t.values())
    for name in g_t:
        _close_gradients(g_n[name], g_t[name], name)


def _td3(method: str) -> TD3:
    if method == "popsan":
        torch.manual_seed(0)
        actor = PopSpikingActor(17, 6, act_limit=1.0, hidden=(64, 64))
    else:
        actor = _dsrl_actor()
    torch.manual_seed(1)
    critic = TwinCritic(17, 6, hidden=(64, 64))
    cfg = TD3Config(batch_size=100, replay_size=1000, lr_actor=1e-3, lr_critic=1e-3, precision="bf16")
    return TD3(actor, critic, MaxAbsNormalizer(17), cfg, act_limit=1.0, device=torch.device("cpu"))


@needs_native
@pytest.mark.parametrize("method", ["popsan", "dsrl"])
def test_td3_updates_in_bf16_agree_with_the_torch_bf16_path(method):
    g = torch.Generator().manual_seed(4)
    batches = [ReplayBatch(2 * torch.rand(100, 17, generator=g) - 1, 2 * torch.rand(100, 6, generator=g) - 1,
                           torch.randn(100, generator=g), 2 * torch.rand(100, 17, generator=g) - 1,
                           torch.zeros(100)) for _ in range(4)]
    native_td3, torch_td3 = _td3(method), _td3(method)
    start = [p.detach().clone() for p in native_td3.actor.parameters()]
    kernels: list[str] = []
    for burst in (batches[:2], batches[2:]):
        torch.manual_seed(5)  # the same target-policy noise
        with native.observe_kernels(lambda name, sec: kernels.append(name)):
            native_td3.update_many(burst)
        torch.manual_seed(5)
        with native.torch_path():
            torch_td3.update_many(burst)
        for key in ("loss_q", "loss_pi"):
            torch.testing.assert_close(native_td3.last_losses[key], torch_td3.last_losses[key], rtol=1e-2, atol=1e-4)
    assert "round_bf16" in kernels
    for net in ("actor", "critic"):
        for (name, a), b in zip(getattr(native_td3, net).state_dict().items(),
                                getattr(torch_td3, net).state_dict().values(), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-4, msg=f"{net}.{name}")
    moved = max((p.detach() - s).abs().max().item() for p, s in zip(native_td3.actor.parameters(), start, strict=True))
    assert moved > 1e-3  # the actor did learn (lr 1e-3)
