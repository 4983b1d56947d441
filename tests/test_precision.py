"""bfloat16 mixed precision: bf16 matmuls, fp32 state, weights and optimiser, no float16 anywhere."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from baselines.registry import get_method
from spikerl import native
from spikerl.config import TD3Config
from spikerl.lif import PopSANLIFLayer, popsan_lif_trace
from spikerl.loop import build_agent
from spikerl.replay import ReplayBatch
from spikerl.surrogate import POPSAN_V_TH
from spikerl.td3 import TD3

MATMULS = {"mm", "addmm", "bmm", "baddbmm", "matmul", "linear"}


class DtypeRecorder(TorchDispatchMode):
    """Records (op name, output dtypes) of every aten op run inside it."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        outs = out if isinstance(out, (tuple, list)) else [out]
        self.ops.append((func.overloadpacket.__name__, {o.dtype for o in outs if isinstance(o, torch.Tensor)}))
        return out


def small_td3(method: str, precision: str) -> TD3:
    spec = get_method(method)
    cfg = TD3Config(batch_size=16, replay_size=64, precision=precision, critic_hidden=(32, 32), policy_delay=1)
    torch.manual_seed(0)
    agent = build_agent(spec, "HalfCheetah-v4", cfg, {**spec.actor_params("HalfCheetah-v4"), "hidden": (32, 32)},
                        17, 6, 1.0, torch.device("cpu"))
    return TD3(agent.actor, agent.critic, agent.normalizer, cfg, 1.0, torch.device("cpu"))


def batch(n=16):
    g = torch.Generator().manual_seed(1)
    return ReplayBatch(torch.randn(n, 17, generator=g), torch.rand(n, 6, generator=g) * 2 - 1,
                       torch.randn(n, generator=g), torch.randn(n, 17, generator=g), torch.zeros(n))


@pytest.mark.parametrize("method", ["spikerl", "popsan", "dsrl", "mlp"])
def test_bf16_update_matmuls_in_bf16_masters_in_fp32_no_fp16(method):
    td3 = small_td3(method, "bf16")
    b = batch()
    fwd = DtypeRecorder()
    with fwd, torch.autocast("cpu", dtype=torch.bfloat16):
        obs = td3.normalizer(b.obs)
        td3.critic(obs, td3.actor(obs))
    matmul_dtypes = [d for name, ds in fwd.ops if name in MATMULS for d in ds]
    assert matmul_dtypes and all(d == torch.bfloat16 for d in matmul_dtypes), "every forward matmul runs in bf16"
    rec = DtypeRecorder()
    with rec:
        td3.update(b)
        td3.update(b)
    assert any(torch.bfloat16 in ds for name, ds in rec.ops if name in MATMULS)
    assert not any(torch.float16 in ds for _, ds in rec.ops), "float16 appeared"
    for module in (td3.actor, td3.critic, td3.actor_target, td3.critic_target):
        assert all(p.dtype == torch.float32 for p in module.parameters())
    for opt in (td3.actor_opt, td3.critic_opt):
        states = [v for s in opt.state.values() for v in s.values() if torch.is_tensor(v) and v.numel() > 1]
        assert states and all(v.dtype == torch.float32 for v in states)


def test_fp32_update_has_no_bf16():
    td3 = small_td3("popsan", "fp32")
    rec = DtypeRecorder()
    with rec:
        td3.update(batch())
    assert not any(torch.bfloat16 in ds or torch.float16 in ds for _, ds in rec.ops)


def spike_agreement(seed: int = 0, batch_size: int = 64, n_in: int = 170, n_out: int = 256):
    """Same binary input to one PopSAN layer in fp32 and under bf16 autocast: (mismatch fraction,
    fp32 membrane distance to threshold at every mismatch, that distance everywhere)."""
    torch.manual_seed(seed)
    layer = PopSANLIFLayer(n_in, n_out)
    with torch.no_grad():
        layer.fc.weight.mul_(3.0)  # make a good share of neurons fire
    x = (torch.rand(5, batch_size, n_in) < 0.2).float()
    with torch.no_grad():
        i32 = layer.fc(x.reshape(-1, n_in)).view(5, batch_size, n_out)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            i16 = layer.fc(x.reshape(-1, n_in))
        assert i16.dtype == torch.bfloat16
        t32 = popsan_lif_trace(i32)
        t16 = popsan_lif_trace(i16.float().view(5, batch_size, n_out))
    # compare step by step only while the two traces have not diverged for that neuron
    diverged = torch.cumsum((t32.o != t16.o).float(), dim=0) > 0
    first = diverged & ~torch.cat([torch.zeros_like(diverged[:1]), diverged[:-1]])
    margin = (t32.v - POPSAN_V_TH).abs()
    return first.float().sum().item() / first[0].numel(), margin[first], t32.o.mean().item()


def test_bf16_spikes_match_fp32_except_within_rounding_of_threshold():
    frac, margins, rate = spike_agreement()
    assert 0.05 < rate < 0.95, "the layer must actually spike for this to mean anything"
    # bf16 keeps 8 significant bits: the current's rounding error is well under 2^-6 of its scale
    assert frac < 0.05
    if margins.numel():
        assert margins.max().item() < 0.05, margins.max().item()
    print(f"bf16 vs fp32 first spike mismatch per neuron: {frac:.4%}, spike rate {rate:.2f}")


def test_state_stays_fp32_under_autocast():
    layer = PopSANLIFLayer(8, 4)
    seen = []
    orig = layer.fc.forward
    layer.fc.forward = lambda x: (lambda y: (seen.append(y.dtype), y)[1])(orig(x))
    with torch.autocast("cpu", dtype=torch.bfloat16), native.torch_path():  # (the kernels: test_native_bf16.py)
        out = layer(torch.ones(5, 2, 8))
    assert seen == [torch.bfloat16]
    assert out.dtype == torch.float32  # spikes computed from fp32 membranes
