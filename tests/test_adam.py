"""Adam for the TD3 update: the fused-kernel shortcut against the public Optimizer.step."""
import copy

import pytest
import torch

from spikerl import adam
from spikerl.adam import adam_step, make_adam

GRADS = [([0.5, -1.0], [2.0]), ([-0.25, 3.0], [0.0]), ([1.0, 1.0], [-4.0]), ([0.0, -0.5], [1e-3])]
"""Hand-set gradients for a [2] weight and a [1] bias, one pair per step."""


def _params():
    return [torch.tensor([1.0, -2.0], requires_grad=True), torch.tensor([0.5], requires_grad=True)]


def _set_grads(params, step):
    for p, g in zip(params, GRADS[step], strict=True):
        p.grad = torch.tensor(g)


def _textbook_adam(lr=1e-2, b1=0.9, b2=0.999, eps=1e-8):
    """Kingma & Ba's Adam in float64, step by step, on the same parameters and gradients."""
    ps = [p.detach().double() for p in _params()]
    m = [torch.zeros_like(p) for p in ps]
    v = [torch.zeros_like(p) for p in ps]
    for t, grads in enumerate(GRADS, 1):
        for i, g in enumerate(grads):
            g = torch.tensor(g, dtype=torch.float64)
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            ps[i] = ps[i] - lr * (m[i] / (1 - b1 ** t)) / ((v[i] / (1 - b2 ** t)).sqrt() + eps)
    return ps


def test_this_torch_takes_the_fused_shortcut():
    assert adam.fast_path_enabled()  # torch 2.x has the kernel and it passes the self-test


def test_shortcut_equals_optimizer_step_bit_for_bit_and_is_adam():
    public, fast = _params(), _params()
    opt_public, opt_fast = make_adam(public, 1e-2), make_adam(fast, 1e-2)
    for step in range(len(GRADS)):
        _set_grads(public, step)
        _set_grads(fast, step)
        opt_public.step()
        if step == 0:
            assert not adam._fast_step(opt_fast)  # no state yet: opt.step() initialises it
            opt_fast.step()
        else:
            assert adam._fast_step(opt_fast)
    assert all(torch.equal(a, b) for a, b in zip(public, fast, strict=True))
    sa, sb = opt_public.state_dict()["state"], opt_fast.state_dict()["state"]
    for i in sa:
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(sa[i][key], sb[i][key]), key
    for p, ref in zip(fast, _textbook_adam(), strict=True):
        torch.testing.assert_close(p.detach().double(), ref, rtol=0, atol=1e-6)


def test_shortcut_uses_the_state_a_checkpoint_loaded():
    trained = _params()
    opt = make_adam(trained, 1e-2)
    for step in range(2):
        _set_grads(trained, step)
        adam_step(opt)
    restored = [p.detach().clone().requires_grad_() for p in trained]
    opt_restored = make_adam(restored, 1e-2)
    opt_restored.load_state_dict(copy.deepcopy(opt.state_dict()))  # as from a checkpoint: no shared tensors
    _set_grads(trained, 2)
    _set_grads(restored, 2)
    opt.step()
    assert adam._fast_step(opt_restored)
    assert all(torch.equal(a, b) for a, b in zip(trained, restored, strict=True))


def test_settings_outside_the_shortcut_go_through_optimizer_step():
    params = _params()
    decayed = torch.optim.Adam(params, lr=1e-2, weight_decay=0.1, fused=True)
    _set_grads(params, 0)
    decayed.step()
    assert not adam._fast_step(decayed)
    hooked = make_adam(_params(), 1e-2)
    calls = []
    hooked.register_step_pre_hook(lambda *_: calls.append(1))
    for step in range(2):
        _set_grads(hooked.param_groups[0]["params"], step)
        adam_step(hooked)
    assert calls == [1, 1]  # hooks still run: the shortcut stood aside


def test_public_path_when_switched_off(monkeypatch):
    monkeypatch.setenv("SPIKERL_FAST_ADAM", "0")
    adam.fast_path_enabled.cache_clear()
    try:
        assert not adam.fast_path_enabled()
        public, other = _params(), _params()
        opt_a, opt_b = make_adam(public, 1e-2), make_adam(other, 1e-2)
        for step in range(3):
            _set_grads(public, step)
            _set_grads(other, step)
            opt_a.step()
            adam_step(opt_b)
        assert all(torch.equal(a, b) for a, b in zip(public, other, strict=True))
    finally:
        monkeypatch.undo()
        adam.fast_path_enabled.cache_clear()


@pytest.mark.parametrize("broken", ["missing", "raises"])
def test_a_torch_without_a_working_kernel_falls_back(monkeypatch, broken):
    if broken == "missing":
        monkeypatch.delattr(torch, "_fused_adam_")
    else:
        monkeypatch.setattr(torch, "_fused_adam_", lambda *a, **k: (_ for _ in ()).throw(TypeError("new signature")))
    adam.fast_path_enabled.cache_clear()
    try:
        assert not adam.fast_path_enabled()
    finally:
        monkeypatch.undo()
        adam.fast_path_enabled.cache_clear()
