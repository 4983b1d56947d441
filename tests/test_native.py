"""The native CPU kernels (spikerl/csrc/spike_kernels.c) against their pure-torch twins.

Every kernel is checked on shapes that hit its vector body and its scalar tails (K not a
multiple of 8, N not a multiple of 16, rows not a multiple of 4), at spike densities and
timestep-to-timestep persistence that take the active, silent and changed lists and the dense
BLAS fallback.

DSRL: the recurrence kernels must give the torch path's spikes to the bit for the same currents.
Whole layers and actors compare exactly when their weights lie on a 2^-10 grid: every partial
sum of W·S for 0/1 spikes is then exact in fp32, so the column sums and BLAS agree to the bit.
With arbitrary weights the currents differ by an ulp now and then, and the fast-sigmoid
surrogate (slope up to 200) amplifies that in the gradients, as in tests/test_methods.py.
"""
from __future__ import annotations

import contextlib
import shutil

import pytest
import torch

import spikerl.lif as lif_module
from baselines.dsrl import DSRLActor
from spikerl import native, native_lib
from spikerl.adam import adam_step, make_adam
from spikerl.config import TD3Config
from spikerl.critic import TwinCritic
from spikerl.lif import (
    _DSRLLIF,
    PopSANLIFLayer,
    _dsrl_forward,
    _popsan_forward,
    _PopSANLIF,
    dsrl_lif,
    native_dsrl_layer,
    native_dsrl_lif,
)
from spikerl.normalizers import MaxAbsNormalizer
from spikerl.popspike_actor import PopSpikingActor
from spikerl.population import _regular_spikes
from spikerl.replay import ReplayBatch
from spikerl.td3 import TD3

needs_native = pytest.mark.skipif(native.library() is None, reason=f"native kernels: {native.unavailable_reason()}")


def _spikes(rows: int, cols: int, density: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(rows, cols, generator=g) < density).float()


def test_kernels_build_wherever_a_compiler_exists():
    if shutil.which("cc") or shutil.which("gcc"):
        assert native.library() is not None, native.unavailable_reason()
        assert native.status() == "native"


def test_without_a_compiler_everything_falls_back(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("PATH", str(tmp_path))  # nor cc, gcc or clang
    native._reset()
    try:
        assert native.library() is None
        assert native.status().startswith("torch (no C compiler")
        assert not native.usable(torch.zeros(2))
        layer = PopSANLIFLayer(8, 4)
        out = layer(_spikes(3 * 2, 8, 0.5).view(3, 2, 8))  # the torch path still works
        assert out.shape == (3, 2, 4)
    finally:
        native._reset()


def test_disabled_by_environment(monkeypatch):
    monkeypatch.setenv("SPIKERL_NATIVE", "0")
    native._reset()
    try:
        assert native.library() is None and "SPIKERL_NATIVE=0" in native.status()
    finally:
        native._reset()


@needs_native
@pytest.mark.slow
def test_a_fresh_cache_builds_and_a_corrupt_library_is_rebuilt(monkeypatch, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv("SPIKERL_CACHE_DIR", str(first))
    native._reset()
    try:
        assert native.library() is not None
        (built,) = first.glob("spike_kernels-*.so")
        # the same cache entry, truncated (a loaded library must not be overwritten in place)
        second.mkdir()
        (second / built.name).write_bytes(b"not a shared library")
        monkeypatch.setenv("SPIKERL_CACHE_DIR", str(second))
        native._reset()
        assert native.library() is not None  # unlinked and built again
        assert (second / built.name).stat().st_size > 1000
    finally:
        native._reset()


def _spike_trains(T: int, B: int, K: int, density: float, persist: float, seed: int = 0) -> torch.Tensor:
    """[T·B, K] t-major spikes where each input keeps its previous value with probability `persist`
    (a spiking layer's inputs mostly repeat from one timestep to the next)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(T, B, K)
    x[0] = (torch.rand(B, K, generator=g) < density).float()
    for t in range(1, T):
        fresh = (torch.rand(B, K, generator=g) < density).float()
        x[t] = torch.where(torch.rand(B, K, generator=g) < persist, x[t - 1], fresh)
    return x.reshape(T * B, K).contiguous()


@needs_native
@pytest.mark.parametrize("density,persist", [(0.0, 0.0), (0.2, 0.0), (0.2, 0.9), (0.5, 0.8), (0.8, 0.5), (1.0, 0.0)])
@pytest.mark.parametrize("step", [0, 37])
def test_spike_lists_pick_each_rows_shortest_list(density, persist, step):
    T, B, K = 4, 37, 170
    x = _spike_trains(T, B, K, density, persist)
    index = native.SpikeIndex(x, step)
    assert index.binary and index.step == step
    listed = 0
    for r in range(T * B):
        on, off = x[r] == 1, x[r] == 0
        lists = {native.LIST_ACTIVE: (on, torch.zeros_like(on)), native.LIST_SILENT: (torch.zeros_like(on), off)}
        if step and r >= step:
            before = x[r - step] == 1
            lists[native.LIST_CHANGED] = (on & ~before, before & ~on)
        lengths = {m: int(p.sum() + q.sum()) for m, (p, q) in lists.items()}
        mode = int(index.mode[r])
        assert lengths[mode] == min(lengths.values())
        plus, minus = int(index.cnt[2 * r]), int(index.cnt[2 * r + 1])
        entries = index.idx[r * K: r * K + plus + minus]
        want_plus, want_minus = lists[mode]
        assert torch.equal(entries[:plus], torch.nonzero(want_plus).flatten().int())
        assert torch.equal(entries[plus:], torch.nonzero(want_minus).flatten().int())
        listed += plus + minus
    assert index.listed == listed
    # every row once, timestep by timestep (a changed-list row's predecessor comes first)
    order = index.order.tolist()
    assert sorted(order) == list(range(T * B))
    block = step or T * B
    assert [r // block for r in order] == sorted(r // block for r in order)


@needs_native
@pytest.mark.parametrize("n", [256, 72, 60])
def test_lif_kernel_bit_masks_give_the_same_lists_as_the_spikes(n):
    T, B = 5, 37
    i = torch.randn(T, B, n) * 0.8 + 0.4
    i[2, 3, 5] = float("nan")  # a NaN membrane spikes, in the masks too
    bits = native.spike_bits_like(T * B, n)
    o, _ = native.popsan_lif_forward(i, record=False, bits=bits)
    if n % 8:
        assert bits is None  # the caller lists from the spikes themselves
        return
    x = o.view(T * B, n)
    from_bits, from_floats = native.SpikeIndex(x, B, bits), native.SpikeIndex(x, B)
    for name in ("cnt", "mode", "order"):
        assert torch.equal(getattr(from_bits, name), getattr(from_floats, name)), name
    for r in range(T * B):
        used = int(from_floats.cnt[2 * r] + from_floats.cnt[2 * r + 1])
        assert torch.equal(from_bits.idx[r * n: r * n + used], from_floats.idx[r * n: r * n + used])
    assert from_floats.listed > 0


@needs_native
def test_changed_lists_halve_the_work_on_persistent_spikes():
    x = _spike_trains(5, 100, 256, 0.4, 0.85)
    assert native.SpikeIndex(x, 100).work < 0.6 * native.SpikeIndex(x, 0).work


@needs_native
@pytest.mark.parametrize("n,k", [(256, 256), (60, 256), (7, 23), (17, 9), (256, 170)])
def test_packed_weight_is_the_slab_layout_with_row_sums(n, k):
    w = torch.randn(n, k)
    packed, rowsum = native.packed_weight(w)
    chunks = -(-n // native.CHUNK)
    padded = torch.zeros(chunks * native.CHUNK, k)
    padded[:n] = w
    expected = padded.view(chunks, native.CHUNK, k).transpose(1, 2).reshape(-1)  # [c][k][j] = w[c·CHUNK + j, k]
    assert torch.equal(packed, expected)
    torch.testing.assert_close(rowsum, w.sum(1), rtol=1e-6, atol=1e-5)


@needs_native
def test_spike_index_rejects_values_other_than_0_and_1():
    x = _spikes(8, 24, 0.5)
    x[3, 17] = 0.5
    assert not native.SpikeIndex(x).binary
    w, b = torch.randn(5, 24), torch.randn(5)
    out, index = native.spike_linear(x.repeat(8, 1), w, b)  # 64 rows: past the small-batch path
    assert index is None
    torch.testing.assert_close(out, torch.addmm(b, x.repeat(8, 1), w.t()))


@needs_native
@pytest.mark.parametrize("rows", [5, 37, 500])
@pytest.mark.parametrize("k,n", [(170, 256), (256, 60), (23, 7)])
@pytest.mark.parametrize("density", [0.0, 0.15, 0.4, 0.7, 1.0])
@pytest.mark.parametrize("persist", [0.0, 0.9])
def test_spike_linear_equals_the_dense_product(rows, k, n, density, persist):
    T = 5 if rows % 5 == 0 else 1
    x = _spike_trains(T, rows // T, k, density, persist, seed=rows + k)
    w, b = torch.randn(n, k) / k ** 0.5, torch.randn(n)
    out, index = native.spike_linear(x, w, b, step=rows // T if T > 1 else 0)
    torch.testing.assert_close(out, torch.addmm(b, x, w.t()), rtol=1e-6, atol=1e-5)  # summation order differs
    if rows < native.SPARSE_MIN_ROWS:
        assert index is None
    elif min(density, 1 - density) < native.DENSE_ABOVE - 0.05:
        assert index is not None  # the sparse kernel ran
        modes = set(index.mode.tolist())
        if density in (0.0, 1.0):
            assert index.listed == 0  # nothing to add: every row starts from b, b + W·1 or its predecessor
        elif persist and T > 1 and 0.1 < density < 0.9:
            assert native.LIST_CHANGED in modes


@needs_native
@pytest.mark.parametrize("density,persist", [(0.05, 0.0), (0.2, 0.0), (0.9, 0.0), (0.2, 0.9), (0.5, 0.9), (0.8, 0.7)])
@pytest.mark.parametrize("n", [256, 60])
def test_linear_grad_weight_equals_the_dense_product(density, persist, n):
    # 5 timesteps of 101 rows: changed-list rows chain back to t = 0, and their gradient must too
    x = _spike_trains(5, 101, 170, density, persist)
    g = torch.randn(505, n, generator=torch.Generator().manual_seed(n))  # not the global RNG: other tests move it
    index = native.SpikeIndex(x, 101)
    expected = g.double().t() @ x.double()
    # sums of up to 505 N(0, 1) terms; at density 0.9 the silent lists (h·1 minus the rest) round by up to
    # ~1e-4, twice BLAS's error (30 draws), so the two could differ by more than 1e-4 between them
    torch.testing.assert_close(native.linear_grad_weight(g, x, index).double(), expected, rtol=0, atol=1.5e-4)
    torch.testing.assert_close(native.linear_grad_weight(g, x, None).double(), expected, rtol=0, atol=1.5e-4)
    if persist:
        assert native.LIST_CHANGED in set(index.mode.tolist())


@needs_native
def test_popsan_lif_kernels_round_exactly_like_the_torch_recurrence():
    g = torch.Generator().manual_seed(3)
    i = torch.randn(5, 37, 61, generator=g) * 0.6 + 0.3
    i[0, 0, :4] = torch.tensor([0.5, 0.5000001, 0.4999999, float("nan")])  # threshold is strict; NaN spikes
    o_ref, v_ref = _popsan_forward(i, record=True)
    o, v = native.popsan_lif_forward(i, record=True)
    assert torch.equal(o, o_ref)
    assert torch.equal(v.nan_to_num(7.0), v_ref.nan_to_num(7.0))
    i[0, 0, 3] = 0.0
    ir = i.clone().requires_grad_()
    grad_o = torch.randn(5, 37, 61, generator=g)
    _PopSANLIF.apply(ir).backward(grad_o)
    o_ref, v_ref = _popsan_forward(i, record=True)
    torch.testing.assert_close(native.popsan_lif_backward(v_ref, o_ref, grad_o), ir.grad, rtol=0, atol=1e-6)


@needs_native
def test_regular_encoder_kernel_is_bit_identical():
    a = torch.rand(7, 170, generator=torch.Generator().manual_seed(1))
    a[0, :3] = torch.tensor([0.999, 0.9990001, 1.0])
    assert torch.equal(native.regular_spikes(a, 5), _regular_spikes(a, 5))


@needs_native
@pytest.mark.parametrize("batch", [1, 100])
def test_native_actor_equals_the_torch_path(monkeypatch, batch):
    torch.manual_seed(0)
    actor = PopSpikingActor(17, 6, act_limit=1.0)
    obs = torch.randn(batch, 17)
    calls = []
    real = native.popsan_lif_forward
    monkeypatch.setattr(native, "popsan_lif_forward", lambda *a, **k: calls.append(1) or real(*a, **k))

    def run():
        actor.zero_grad(set_to_none=True)
        y = actor(obs)
        (y * torch.linspace(-1, 2, y.numel()).view_as(y)).sum().backward()
        return y.detach(), {k: p.grad.clone() for k, p in actor.named_parameters()}

    y_native, g_native = run()
    assert len(calls) == 3  # every layer went through the kernels
    with native.torch_path():
        y_torch, g_torch = run()
    assert len(calls) == 3
    torch.testing.assert_close(y_native, y_torch, rtol=0, atol=1e-6)
    for name in g_torch:
        scale = max(1.0, g_torch[name].abs().max().item())
        torch.testing.assert_close(g_native[name], g_torch[name], rtol=0, atol=1e-5 * scale, msg=name)


@needs_native
@pytest.mark.parametrize("batch", [1, 6])
def test_acting_kernel_equals_the_torch_path(monkeypatch, batch):
    torch.manual_seed(1)
    actor = PopSpikingActor(17, 6, act_limit=2.0)
    obs = torch.randn(batch, 17) * 1.5
    calls = []
    real = native.popsan_act
    monkeypatch.setattr(native, "popsan_act", lambda *a, **k: calls.append(1) or real(*a, **k))
    with torch.no_grad():
        fused = actor(obs)
        assert calls == [1]  # the whole net in one call
        with native.torch_path():
            reference = actor(obs)
    assert calls == [1]
    torch.testing.assert_close(fused, reference, rtol=0, atol=1e-6)
    # with a gradient, or Poisson encoding, or more rows, the layer-by-layer path runs
    monkeypatch.undo()
    monkeypatch.setattr(native, "popsan_act", lambda *a, **k: calls.append(1) or real(*a, **k))
    actor(obs)
    with torch.no_grad():
        actor(torch.randn(native.SPARSE_MIN_ROWS, 17))
        PopSpikingActor(17, 6, act_limit=2.0, encoding="poisson")(obs)
    assert calls == [1]


@needs_native
def test_weights_changed_by_a_fused_optimiser_step_are_used_at_once():
    # a fused Adam step does not bump the version counter: nothing may cache packed weights on it
    torch.manual_seed(0)
    actor = PopSpikingActor(17, 6, act_limit=1.0)
    obs = torch.randn(100, 17)
    with torch.no_grad():
        before = actor(obs)
    opt = make_adam(list(actor.parameters()), lr=0.05)
    for _ in range(2):
        actor(obs).square().sum().backward()
        adam_step(opt)
    with torch.no_grad():
        after = actor(obs)
        with native.torch_path():
            reference = actor(obs)
    assert not torch.equal(before, after)
    torch.testing.assert_close(after, reference, rtol=0, atol=1e-6)


@needs_native
def test_native_path_only_for_fp32_cpu_outside_fp16_autocast_and_torch_path():
    x = torch.zeros(3, 2, 8)
    w = torch.zeros(4, 8)
    assert native.usable(x, w)
    assert not native.usable(x.double(), w.double())
    with torch.autocast("cpu", dtype=torch.float16):
        assert not native.usable(x, w)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert native.usable(x, w)  # the bf16 recipe (tests/test_native_bf16.py)
    with native.torch_path():
        assert not native.usable(x, w)
        with native.torch_path():
            pass
        assert not native.usable(x, w)  # a nested block does not end the outer one
    assert native.usable(x, w)


@needs_native
def test_kernel_observer_sees_every_call_in_its_block_only():
    actor = PopSpikingActor(17, 6, act_limit=1.0)
    seen = []
    with native.observe_kernels(lambda name, seconds: seen.append((name, seconds))):
        with torch.no_grad():
            actor(torch.randn(1, 17))
        actor(torch.randn(100, 17)).sum().backward()
    names = {name for name, _ in seen}
    assert {"popsan_act", "spike_lists", "spike_matmul", "popsan_lif_forward", "popsan_lif_backward"} <= names
    assert all(seconds >= 0 for _, seconds in seen)
    count = len(seen)
    with torch.no_grad():
        actor(torch.randn(1, 17))
    assert len(seen) == count and native.library() is native_lib._lib  # unobserved calls go straight to the library



@needs_native
@pytest.mark.slow
def test_native_check_shadows_a_short_training_run(capsys):
    from tools import native_check

    assert native_check.main(["--steps", "1400", "--every", "40", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("update ")]
    # bursts of 50 updates at steps 1000, 1050, ..., 1400: 450 updates, a check before every 40th
    assert [int(line.split()[1]) for line in lines] == list(range(40, 441, 40))
    rels = sorted(float(line.split("rel diff")[1].split()[0]) for line in lines)
    assert rels[len(rels) // 2] < 1e-5  # gradients agree with the torch path to rounding


@needs_native
def test_acting_kernel_rejects_mismatched_shapes_and_follows_replaced_parameters():
    actor = PopSpikingActor(3, 2, act_limit=1.0, hidden=(16,))
    other = PopSpikingActor(3, 2, act_limit=1.0, hidden=(16,))
    obs = torch.randn(1, 3)
    with torch.no_grad():
        actor(obs)
        with pytest.raises(ValueError, match="do not match the encoder"):
            actor(torch.randn(1, 4))  # the torch path raises here too; the kernel must not guess
        actor.load_state_dict(other.state_dict(), assign=True)  # new Parameter objects
        torch.testing.assert_close(actor(obs), other(obs), rtol=0, atol=1e-6)


@needs_native
@pytest.mark.slow
@pytest.mark.serial
def test_kernel_profile_times_every_kernel_in_the_training_loop(capsys):
    from tools import kernel_profile

    assert kernel_profile.main(["--method", "popsan", "--loop-steps", "200"]) == 0
    out = capsys.readouterr().out
    per_kernel = {line.split()[0]: float(line.split()[1]) for line in out.splitlines()
                  if line.startswith("  ") and "ms/update" in line and not line.strip().startswith("all")}
    for name in ("spike_lists", "spike_matmul", "popsan_lif_forward", "popsan_lif_backward", "popsan_act"):
        assert per_kernel.get(name, 0) > 0, name  # every kernel of the native path ran and was timed
    update_ms = float(out.split(" update ")[1].split()[0])
    assert sum(per_kernel.values()) < update_ms + per_kernel["popsan_act"]  # parts of the whole


@needs_native
@pytest.mark.slow
def test_kernel_profile_parts_splits_an_update_pair_in_cpu_time(capsys):
    from tools import kernel_profile

    assert kernel_profile.main(["--parts", "--methods", "popsan,mlp", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    rows = {tuple(line.split()[:2]): line for line in out.splitlines() if line.startswith("  ") and " / " in line}
    assert "native kernels" in rows["popsan", "actor"] and "native kernels" not in rows["mlp", "actor"]
    assert "update pair / mlp's: popsan" in out
    assert kernel_profile.main(["--parts", "--methods", "nope"]) == 2


# --- DSRL ----------------------------------------------------------------------------------------

def _on_grid(w: torch.Tensor) -> torch.Tensor:
    """w rounded to multiples of 2^-10: sums of its entries over 0/1 inputs are exact in fp32."""
    return torch.round(w * 1024) / 1024


def _dsrl_currents(shape: tuple[int, ...], theta: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    i = torch.randn(*shape, generator=g) * 0.5 * theta + 0.45 * theta
    flat = i.view(-1)
    edges = torch.tensor([theta, theta, theta / 2, theta / 2], dtype=torch.float32)
    flat[:4] = edges  # U exactly at θ: no spike (strict threshold), at t = 1 and, through β·U + I, later
    flat[4:6] = torch.nextafter(edges[:2], torch.tensor([10.0, -10.0]))
    return i


@needs_native
@pytest.mark.parametrize("theta", [0.8, 2.0])
@pytest.mark.parametrize("constant", [True, False])
@pytest.mark.parametrize("b,n", [(100, 400), (100, 300), (37, 61), (5, 7), (1, 300), (6, 1030)])
def test_dsrl_lif_kernels_round_exactly_like_the_torch_recurrence(b, n, constant, theta):
    T = 4
    i = _dsrl_currents((b, n) if constant else (T, b, n), theta, seed=b + n)
    if not constant:
        i[1, 0, 6] = float("nan")  # a NaN membrane spikes in both, and stays NaN
    s_ref, u_ref = _dsrl_forward(i, theta, T, record=True)
    bits = native.dsrl_bits_like(T * b, n)
    s, u = native.dsrl_lif_forward(i, theta, T, record=True, bits=bits)
    assert torch.equal(s, s_ref)
    assert torch.equal(u.nan_to_num(7.0), u_ref.nan_to_num(7.0))
    assert 0.05 < s.mean().item() < 0.8  # both spikes and silence to get right
    assert torch.equal(native.dsrl_lif_forward(i, theta, T, record=False)[0], s_ref)
    # the bit masks list the same inputs for the next layer as the spikes themselves, at any width
    x = s.view(T * b, n)
    from_bits, from_floats = native.SpikeIndex(x, b, bits), native.SpikeIndex(x, b)
    for name in ("cnt", "mode", "order"):
        assert torch.equal(getattr(from_bits, name), getattr(from_floats, name)), name
    assert from_bits.listed == from_floats.listed > 0
    # BPTT against the torch path's backward, from the same saved U and S
    i = i.nan_to_num(0.0)
    ir = i.clone().requires_grad_()
    grad_s = torch.randn(T, b, n, generator=torch.Generator().manual_seed(1))
    _DSRLLIF.apply(ir, theta, T).backward(grad_s)
    s_ref, u_ref = _dsrl_forward(i, theta, T, record=True)
    g = native.dsrl_lif_backward(u_ref, s_ref, grad_s, theta, constant)
    assert g.shape == i.shape
    torch.testing.assert_close(g, ir.grad, rtol=0, atol=1e-6 * max(1.0, ir.grad.abs().max().item()))


@needs_native
def test_dsrl_bits_fit_any_width_but_not_past_the_listed_limit():
    assert native.dsrl_bits_like(8, 300).numel() == 8 * 5
    assert native.dsrl_bits_like(8, native.MAX_LISTED_INPUTS + 1) is None
    i = _dsrl_currents((4, 3, 70), 0.8, seed=3)
    bits = native.dsrl_bits_like(12, 70)
    s, _ = native.dsrl_lif_forward(i, 0.8, 4, record=False, bits=bits)
    words = bits.view(12, 2)
    for r, row in enumerate(s.view(12, 70)):
        want = sum(1 << k for k in range(70) if row[k] == 1)
        assert (int(words[r, 0]) & (2 ** 64 - 1)) | ((int(words[r, 1]) & (2 ** 64 - 1)) << 64) == want


@needs_native
@pytest.mark.parametrize("t,b,k,n", [(4, 100, 400, 300), (4, 37, 170, 60), (4, 5, 61, 37)])
def test_native_dsrl_layers_equal_the_torch_path(t, b, k, n):
    # layer 1 (constant current) feeding layer 2 (spike lists + decaying current), weights on the grid
    theta = 0.8
    g = torch.Generator().manual_seed(t * b + k)
    i0 = (torch.randn(b, k, generator=g) * 0.5 + 0.35).requires_grad_()
    w = _on_grid(torch.randn(n, k, generator=g) * 2.0 / k ** 0.5).requires_grad_()
    grad_s = torch.randn(t, b, n, generator=g)
    seen: list[str] = []

    def run():
        if native.usable(i0):
            s0, bits = native_dsrl_lif(i0, theta, t)
            assert bits is not None
            with native.observe_kernels(lambda name, sec: seen.append(name)):
                s1 = native_dsrl_layer(s0, w, theta, bits)
        else:
            s0 = dsrl_lif(i0, theta, t)
            s1 = dsrl_lif(torch.nn.functional.linear(s0.reshape(t * b, k), w).view(t, b, n), theta)
        i0.grad = w.grad = None
        (s1 * grad_s).sum().backward()
        return s0.detach(), s1.detach(), i0.grad, w.grad

    s0, s1, gi, gw = run()
    with native.torch_path():
        s0_ref, s1_ref, gi_ref, gw_ref = run()
    assert 0.05 < s0.mean().item() < 0.8 and 0.05 < s1.mean().item() < 0.8
    assert torch.equal(s0, s0_ref) and torch.equal(s1, s1_ref)
    torch.testing.assert_close(gi, gi_ref, rtol=0, atol=1e-6 * gi_ref.abs().max().item())
    torch.testing.assert_close(gw, gw_ref, rtol=0, atol=1e-6 * gw_ref.abs().max().item())
    if t * b >= native.SPARSE_MIN_ROWS:
        assert "spike_matmul" in seen  # the column sums ran, not BLAS
    else:
        assert "linear_rows" in seen


def _dsrl_test_actor(on_grid: bool) -> DSRLActor:
    torch.manual_seed(0)
    actor = DSRLActor(17, 6, act_limit=1.0, threshold=0.8)
    with torch.no_grad():
        actor.fc0.weight.mul_(1.5)
        actor.fc1.weight.mul_(1.5)  # default init spikes sparsely in layer 2
        if on_grid:
            for fc in (actor.fc1, actor.fc2):
                fc.weight.copy_(_on_grid(fc.weight))
    return actor


def _record_dsrl_spikes(monkeypatch) -> list[torch.Tensor]:
    """Captures the spikes of both DSRL layers on either path."""
    seen: list[torch.Tensor] = []
    real_native, real_torch = native.dsrl_lif_forward, lif_module._dsrl_forward

    def on_native(*args, **kwargs):
        out = real_native(*args, **kwargs)
        seen.append(out[0])
        return out

    def on_torch(*args, **kwargs):
        out = real_torch(*args, **kwargs)
        seen.append(out[0])
        return out

    monkeypatch.setattr(native, "dsrl_lif_forward", on_native)
    monkeypatch.setattr(lif_module, "_dsrl_forward", on_torch)
    return seen


@needs_native
@pytest.mark.parametrize("on_grid", [True, False])
@pytest.mark.parametrize("batch", [1, 7, 100])
def test_native_dsrl_actor_equals_the_torch_path(monkeypatch, batch, on_grid):
    actor = _dsrl_test_actor(on_grid)
    obs = 2 * torch.rand(batch, 17, generator=torch.Generator().manual_seed(batch)) - 1
    spikes = _record_dsrl_spikes(monkeypatch)

    def run():
        actor.zero_grad(set_to_none=True)
        y = actor(obs)
        (y * torch.linspace(-1, 2, y.numel()).view_as(y)).sum().backward()
        return y.detach(), {k: p.grad.clone() for k, p in actor.named_parameters()}

    kernels: list[str] = []
    with native.observe_kernels(lambda name, sec: kernels.append(name)):
        y_native, g_native = run()
    assert {"dsrl_lif_forward", "dsrl_lif_backward"} <= set(kernels)
    assert len(spikes) == 2
    with native.torch_path():
        y_torch, g_torch = run()
    assert len(spikes) == 4
    s0, s1, s0_ref, s1_ref = spikes
    assert all(0.02 < s.mean().item() < 0.9 for s in spikes), [s.mean().item() for s in spikes]
    assert torch.equal(s0, s0_ref)  # the same B-row matmul feeds both
    if on_grid:  # exact currents everywhere: spikes and actions to the bit, gradients to rounding
        assert torch.equal(s1, s1_ref) and torch.equal(y_native, y_torch)
        tol = 1e-6
    else:
        torch.testing.assert_close(y_native, y_torch, rtol=0, atol=1e-6)
        tol = 1e-4  # an ulp of current, through the surrogate's slope (module docstring)
    for name in g_torch:
        scale = max(1.0, g_torch[name].abs().max().item())
        torch.testing.assert_close(g_native[name], g_torch[name], rtol=0, atol=tol * scale, msg=name)


@needs_native
@pytest.mark.parametrize("batch", [1, 7])
def test_dsrl_acting_kernel_equals_the_torch_path(monkeypatch, batch):
    actor = _dsrl_test_actor(on_grid=False)
    obs = 2 * torch.rand(batch, 17, generator=torch.Generator().manual_seed(2)) - 1
    obs[0, :2] = torch.tensor([0.0, -1.0])
    calls = []
    real = native.dsrl_act
    monkeypatch.setattr(native, "dsrl_act", lambda *a, **k: calls.append(1) or real(*a, **k))
    with torch.no_grad():
        fused = actor(obs)
        assert calls == [1]  # the whole net in one call
        with native.torch_path():
            reference = actor(obs)
        assert calls == [1]
    torch.testing.assert_close(fused, reference, rtol=0, atol=1e-6)
    assert fused.abs().max() > 0.05
    # with a gradient, or with T·B rows past the small-batch limit, the layer-by-layer path runs
    actor(obs)
    with torch.no_grad():
        actor(torch.rand(native.SPARSE_MIN_ROWS // actor.timesteps, 17))
    assert calls == [1]


@needs_native
def test_dsrl_acting_kernel_rejects_mismatched_shapes():
    actor = DSRLActor(3, 2, act_limit=1.0, hidden=(16, 12))
    with torch.no_grad():
        with pytest.raises(ValueError, match="do not match the layers"):
            actor(torch.rand(1, 4))  # the torch path raises here too; the kernel must not guess
        other = DSRLActor(3, 2, act_limit=1.0, hidden=(16, 12))
        actor.load_state_dict(other.state_dict(), assign=True)  # new Parameter objects
        obs = torch.rand(1, 3)
        torch.testing.assert_close(actor(obs), other(obs), rtol=0, atol=0)


@needs_native
def test_dsrl_takes_the_torch_path_outside_fp32_cpu_and_bf16_autocast():
    actor = _dsrl_test_actor(on_grid=False)
    obs = torch.rand(6, 17)
    kernels: list[str] = []
    with native.observe_kernels(lambda name, sec: kernels.append(name)):
        with native.torch_path():
            actor(obs).sum().backward()
        with torch.autocast("cpu", dtype=torch.float16):
            actor(obs).float().sum().backward()
        actor.double()(obs.double()).sum().backward()
        assert kernels == []
        actor.float()(obs)
    assert "dsrl_lif_forward" in kernels


def _dsrl_td3() -> TD3:
    actor = _dsrl_test_actor(on_grid=True)
    torch.manual_seed(1)
    critic = TwinCritic(17, 6, hidden=(64, 64))
    cfg = TD3Config(batch_size=100, replay_size=1000, lr_actor=1e-3, lr_critic=1e-3)
    return TD3(actor, critic, MaxAbsNormalizer(17), cfg, act_limit=1.0, device=torch.device("cpu"))


@needs_native
def test_dsrl_td3_updates_on_the_native_path_equal_the_torch_path():
    g = torch.Generator().manual_seed(4)
    batches = [ReplayBatch(2 * torch.rand(100, 17, generator=g) - 1, 2 * torch.rand(100, 6, generator=g) - 1,
                           torch.randn(100, generator=g), 2 * torch.rand(100, 17, generator=g) - 1,
                           torch.zeros(100)) for _ in range(4)]
    native_td3, torch_td3 = _dsrl_td3(), _dsrl_td3()
    start = native_td3.actor.fc1.weight.detach().clone()

    def compare(atol_actor: float) -> None:
        for net, atol in (("actor", atol_actor), ("actor_target", 1e-6), ("critic", 1e-6)):
            for (name, a), b in zip(getattr(native_td3, net).state_dict().items(),
                                    getattr(torch_td3, net).state_dict().values(), strict=True):
                torch.testing.assert_close(a, b, rtol=0, atol=atol, msg=f"{net}.{name}")
        for key in ("loss_q", "loss_pi"):
            torch.testing.assert_close(native_td3.last_losses[key], torch_td3.last_losses[key], rtol=1e-6, atol=0)

    for burst in (batches[:2], batches[2:]):  # each: two critic steps, an actor step, polyak
        for td3, path in ((native_td3, contextlib.nullcontext), (torch_td3, native.torch_path)):
            torch.manual_seed(5)  # the same target-policy noise
            with path():
                td3.update_many(burst)
        if burst is batches[:2]:
            compare(atol_actor=1e-6)  # from weights on the grid: the same gradients to rounding
    # off the grid, currents differ by an ulp here and there, and Adam's first steps g/(|g| + ε) turn
    # a rounding difference of a near-zero gradient into a visible one: 1 % of what two steps move
    compare(atol_actor=2e-5)
    assert (native_td3.actor.fc1.weight - start).abs().max() > 1.5e-3  # the actor did learn (lr 1e-3)
