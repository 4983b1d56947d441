"""The native CPU kernels (spikerl/csrc/spike_kernels.c) against their pure-torch twins.

Every kernel is checked on shapes that hit its vector body and its scalar tails (K not a
multiple of 8, N not a multiple of 16, rows not a multiple of 4), at spike densities and
timestep-to-timestep persistence that take the active, silent and changed lists and the dense
BLAS fallback.
"""
from __future__ import annotations

import shutil

import pytest
import torch

from spikerl import native, native_lib
from spikerl.lif import PopSANLIFLayer, _popsan_forward, _PopSANLIF
from spikerl.popspike_actor import PopSpikingActor
from spikerl.population import _regular_spikes
from spikerl.adam import adam_step, make_adam

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
    g = torch.randn(505, n)
    index = native.SpikeIndex(x, 101)
    expected = g.t() @ x
    torch.testing.assert_close(native.linear_grad_weight(g, x, index), expected, rtol=0, atol=1e-4)
    torch.testing.assert_close(native.linear_grad_weight(g, x, None), expected, rtol=0, atol=1e-4)
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
def test_native_path_only_for_fp32_cpu_outside_autocast_and_torch_path():
    x = torch.zeros(3, 2, 8)
    w = torch.zeros(4, 8)
    assert native.usable(x, w)
    assert not native.usable(x.double(), w.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not native.usable(x, w)
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
