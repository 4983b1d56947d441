"""Native CPU kernels for the spiking layers of every spiking method (PopSAN, SpikeRL, DSRL):
compiled once per machine, called through ctypes, so that no method's comparison measures
another's tuning effort.

At batch 100 on a CPU, PyTorch spends more time dispatching the LIF recurrence's tiny
elementwise ops than computing them, and a dense matmul over 0/1 spikes wastes most of its
multiply-adds. `csrc/spike_kernels.c` does both jobs in a few plain loops:
- `spike_lists` + `spike_matmul`: W·x + b for a 0/1 input as a sum of weight columns, each row
  from the shortest of its active inputs, its silent ones, or what changed since the previous
  timestep (cost ∝ that share, ≤ min(d, 1 − d) at spike density d), and
  `spike_matmul_grad_weight`, its weight gradient from the same lists (with or without a bias:
  DSRL has none);
- `linear_rows`: plain dot products for a few rows; `popsan_act` / `dsrl_act`: a whole actor for
  acting;
- `popsan_lif_forward` / `popsan_lif_backward`: the whole PopSAN recurrence over T and its BPTT;
- `dsrl_lif_forward` / `dsrl_lif_backward`: the same for DSRL's LIF, with a constant current
  (layer 1, I = W₀·x every step) or a decaying one (layer 2);
- `regular_spikes`: PopSAN's deterministic encoder.

The library is built and loaded by `spikerl.native_lib`; without it (no compiler,
`SPIKERL_NATIVE=0`) everything runs on the pure-torch path in `spikerl.lif` (same equations;
the tests compare the two). Only fp32 CPU tensors take the native path: outside autocast in fp32,
or under CPU bf16 autocast in the bf16 recipe (`bf16_autocast`; spikerl/lif.py rounds as autocast does).
"""
from __future__ import annotations

import ctypes
import threading
from typing import Sequence

import torch

from .native_lib import library, observe_kernels, status, torch_only, torch_path, unavailable_reason
from .native_lib import reset as _reset

__all__ = ["library", "observe_kernels", "status", "torch_path", "unavailable_reason", "_reset"]

CHUNK = 32
"""Output columns per packed weight slab (spike_kernels.c's CHUNK)."""
DENSE_ABOVE = 0.45
"""Above this share of listed inputs a BLAS matmul is used instead of the column-sum kernel. On a
2-core AVX2 EPYC, 1 thread, [500, 256] x [256, 256], lists + packing + kernel took 0.25 / 0.40 /
0.56 ms at 0.15 / 0.30 / 0.45 listed against 0.70 ms for BLAS; a CPU with a faster BLAS (AVX-512)
moves the crossover down, so the threshold stays below the 0.5 that per-row lists can reach."""
SPARSE_MIN_ROWS = 32
"""Fewer rows than this (a few samples × T) take plain dot products (`linear_rows`): packing the
weights would cost more, and BLAS spends ~25 µs on setup for a [5, 256] x [256, 256]. Acting with
deterministic encoding runs the whole actor in one call instead (`popsan_act`, built on the same
dot products)."""
SCATTER_BELOW = 0.3
"""The weight gradient's scatter-add beats BLAS below this share of listed inputs (same machine and
shapes: 0.40 vs 0.72 ms at 0.15, 0.71 vs 0.72 ms at 0.30, 0.77 vs 0.72 ms at 0.37)."""


def usable(*tensors: torch.Tensor) -> bool:
    """Whether these tensors may take the native path: fp32, CPU, contiguous-able, outside
    `torch_path()`, and outside autocast or under CPU bf16 autocast (the bf16 recipe: `bf16_autocast`)."""
    if torch_only():
        return False
    for t in tensors:
        if t.dtype != torch.float32 or t.device.type != "cpu":
            return False
    if _cpu_autocast() and not bf16_autocast():
        return False
    return library() is not None


def _cpu_autocast() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4 has no device argument
        return torch.is_autocast_cpu_enabled()


def bf16_autocast() -> bool:
    """Whether CPU autocast to bfloat16 is on: the native layers then run the bf16 recipe."""
    if not _cpu_autocast():
        return False
    try:
        return torch.get_autocast_dtype("cpu") == torch.bfloat16
    except AttributeError:  # torch < 2.4
        return torch.get_autocast_cpu_dtype() == torch.bfloat16


def round_bf16(t: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """fp32 t rounded to bf16 and kept in fp32 (what `t.bfloat16().float()` gives, in one pass):
    into `out` (t itself for in place), else into a new tensor. No graph."""
    lib = library()
    assert lib is not None and t.dtype == torch.float32
    src = t.detach().contiguous()
    dst = torch.empty_like(src) if out is None else out
    assert dst.is_contiguous() and dst.dtype == torch.float32 and dst.numel() == src.numel()
    lib.round_bf16(_ptr(src), _ptr(dst), src.numel())
    return dst


def _ptr(t: torch.Tensor) -> int:
    return t.data_ptr()


MAX_LISTED_INPUTS = 4096
"""spike_lists' row masks live on the stack: wider inputs are multiplied densely."""

LIST_ACTIVE, LIST_SILENT, LIST_CHANGED = 0, 1, 2
"""How a row is listed (spike_kernels.c): its active inputs, its silent ones (W·x = W·1 − W·(1 − x)),
or what changed since the same sample's row one timestep earlier (W·x_t = W·x_{t−1} + W·(x_t − x_{t−1}))."""


class SpikeIndex:
    """Per-row input lists of a 0/1 matrix x [R, K] (spike_kernels.c: spike_lists).

    Each row lists whichever is shortest: its active inputs, its silent ones, or (for rows r >=
    `step`, the rows per timestep) the inputs that switched on or off since row r − step. A
    spiking layer's inputs mostly repeat from one timestep to the next, so in training the third
    list is often half as long as the other two. `binary` is False when x holds anything but 0
    and 1 (nothing is listed then). `bits`, if given, are x's rows as bit masks
    (`spike_bits_like`, filled by `popsan_lif_forward`): x itself is then not read.
    """

    __slots__ = ("idx", "cnt", "mode", "order", "listed", "rows", "cols", "step", "binary")

    def __init__(self, x: torch.Tensor, step: int = 0, bits: torch.Tensor | None = None):
        lib = library()
        assert lib is not None and x.is_contiguous() and x.dim() == 2
        self.rows, self.cols = x.shape
        self.step = int(step) if 0 < step < self.rows else 0
        self.binary = self.cols <= MAX_LISTED_INPUTS
        self.listed = 0
        if not self.binary:
            return
        have_bits = bits is not None
        if bits is None:
            bits = torch.empty(self.rows * ((self.cols + 63) // 64), dtype=torch.int64)
        assert bits.numel() == self.rows * ((self.cols + 63) // 64)
        self.idx = torch.empty(x.numel() + 8, dtype=torch.int32)  # the kernel stores 8 at a time
        self.cnt = torch.empty(2 * self.rows, dtype=torch.int32)
        self.mode = torch.empty(self.rows, dtype=torch.int8)
        self.order = torch.empty(self.rows, dtype=torch.int32)
        listed = int(lib.spike_lists(_ptr(x), self.rows, self.cols, self.step, _ptr(bits), _ptr(self.idx),
                                     _ptr(self.cnt), _ptr(self.mode), _ptr(self.order), int(have_bits)))
        self.binary = listed >= 0
        self.listed = max(listed, 0)

    @property
    def work(self) -> float:
        """Listed entries per matrix entry (at most min(d, 1 − d) for spike density d)."""
        return self.listed / max(1, self.rows * self.cols)


def packed_weight(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(w [N, K] in the kernels' slab layout (CHUNK output columns per slab), its row sums W·1 [N]).

    Packed on every call (~10 µs for 256 x 256) rather than cached: a fused optimiser step
    updates the weights without bumping their version counter, so no cheap test could tell a
    stale copy from a fresh one."""
    lib = library()
    assert lib is not None
    n, k = w.shape
    wc = w.detach().contiguous()
    packed = torch.empty(((n + CHUNK - 1) // CHUNK) * k * CHUNK, dtype=torch.float32)
    rowsum = torch.empty(n, dtype=torch.float32)
    lib.pack_weight(_ptr(wc), _ptr(packed), _ptr(rowsum), k, n)
    return packed, rowsum


def spike_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, step: int = 0,
                 bits: torch.Tensor | None = None) -> tuple[torch.Tensor, SpikeIndex | None]:
    """x [R, K] (0/1) → (x·wᵀ + b [R, N], the input lists or None); b None: no bias (DSRL).

    `step` is the number of rows per timestep when x stacks T timesteps ([T·B, K], t-major): row r
    may then be computed from row r − step plus what changed. `bits`: x's rows as bit masks, when
    the kernel that made x wrote them (x is then known to be 0/1). The column-sum kernel runs on 0/1
    spikes unless more than DENSE_ABOVE of the entries would be listed; BLAS runs otherwise (None
    is returned then, and `linear_grad_weight` is dense too)."""
    lib = library()
    assert lib is not None
    x = x.contiguous()
    if x.shape[0] < SPARSE_MIN_ROWS:
        out = torch.empty(x.shape[0], w.shape[0], dtype=torch.float32)
        # named: a temporary copy would be freed before the kernel reads it
        wc, bc = w.detach().contiguous(), b.detach().contiguous() if b is not None else None
        lib.linear_rows(_ptr(x), _ptr(wc), _ptr(bc) if bc is not None else None, _ptr(out), x.shape[0], x.shape[1],
                        w.shape[0])
        return out, None
    index = SpikeIndex(x, step, bits)
    if not index.binary or index.work > DENSE_ABOVE:
        return (torch.addmm(b, x, w.t()) if b is not None else torch.mm(x, w.t())), None
    bd = b.detach().contiguous() if b is not None else None
    slabs, rowsum = packed_weight(w)  # held in names: a temporary would be freed before the kernel reads it
    bias_all = rowsum.add_(bd) if bd is not None else rowsum  # b + W·1, where silent-listed rows start
    out = torch.empty(x.shape[0], w.shape[0], dtype=torch.float32)
    lib.spike_matmul(_ptr(index.idx), _ptr(index.cnt), _ptr(index.mode), _ptr(index.order), _ptr(slabs),
                     _ptr(bd) if bd is not None else None, _ptr(bias_all), _ptr(out), index.rows, index.cols,
                     w.shape[0], index.step)
    return out, index


def linear_grad_weight(g: torch.Tensor, x: torch.Tensor, index: SpikeIndex | None) -> torch.Tensor:
    """gᵀ·x [N, K] for g [R, N] and x [R, K]: from the forward's input lists when they are short
    (the scatter-add is store-bound and loses to BLAS above SCATTER_BELOW), else BLAS."""
    if index is None or index.work > SCATTER_BELOW:
        return g.t() @ x
    lib = library()
    assert lib is not None
    g = g.contiguous()
    n, k = g.shape[1], index.cols
    gw = torch.empty(n, k, dtype=torch.float32)
    h = torch.empty_like(g)
    scratch = torch.empty(k * CHUNK, dtype=torch.float32)
    lib.spike_matmul_grad_weight(_ptr(index.idx), _ptr(index.cnt), _ptr(index.mode), _ptr(g), _ptr(h), _ptr(gw),
                                 _ptr(scratch), index.rows, k, n, index.step)
    return gw


def regular_spikes(a: torch.Tensor, timesteps: int) -> torch.Tensor:
    """PopSAN's deterministic encoder spikes [T, *a.shape] from stimulation a (no graph)."""
    lib = library()
    assert lib is not None
    a = a.detach().contiguous()
    o = torch.empty((timesteps, *a.shape), dtype=torch.float32)
    lib.regular_spikes(_ptr(a), _ptr(o), timesteps, a.numel())
    return o


def spike_bits_like(rows: int, neurons: int) -> torch.Tensor | None:
    """A buffer for `popsan_lif_forward` to write its spikes into as bit masks (one row of
    ceil(neurons/64) words per sample and timestep), or None where the kernel cannot (neurons not
    a multiple of 8, or too many to list)."""
    if neurons % 8 or neurons > MAX_LISTED_INPUTS:
        return None
    return torch.empty(rows * ((neurons + 63) // 64), dtype=torch.int64)


def popsan_lif_forward(i: torch.Tensor, record: bool, bits: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Spikes o [T, ...] (and the membrane v when `record`) from contiguous fp32 currents i [T, ...].
    `bits` (from `spike_bits_like(T·B, N)` for i [T, B, N]) also receives the spikes as bit masks."""
    lib = library()
    assert lib is not None and i.is_contiguous()
    o = torch.empty_like(i)
    v = torch.empty_like(i) if record else None
    n = i.shape[-1]
    lib.popsan_lif_forward(_ptr(i), _ptr(o), _ptr(v) if v is not None else None, i.shape[0], i[0].numel(),
                           _ptr(bits) if bits is not None else None, n)
    return o, v


def popsan_lif_backward(v: torch.Tensor, o: torch.Tensor, grad_o: torch.Tensor) -> torch.Tensor:
    """dL/di [T, ...] of popsan_lif_forward."""
    lib = library()
    assert lib is not None
    grad_o = grad_o.contiguous()
    g = torch.empty_like(v)
    lib.popsan_lif_backward(_ptr(v), _ptr(o), _ptr(grad_o), _ptr(g), v.shape[0], v[0].numel())
    return g


def _check_act_shapes(obs: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, ws: Sequence[torch.Tensor],
                      bs: Sequence[torch.Tensor], dec_w: torch.Tensor, dec_b: torch.Tensor) -> None:
    """The checks the torch path's ops would make, before the kernel trusts the shapes (once per plan)."""
    tensors = (obs, mean, std, dec_w, dec_b, *ws, *bs)
    if any(t.dtype != torch.float32 or t.device.type != "cpu" for t in tensors):
        raise TypeError("popsan_act: every tensor must be fp32 on the CPU")
    if obs.dim() != 2 or mean.dim() != 2 or std.shape != mean.shape or obs.shape[1] != mean.shape[0] or not ws:
        raise ValueError(f"popsan_act: observations {tuple(obs.shape)} do not match the encoder {tuple(mean.shape)}")
    pop, width = mean.shape[1], mean.numel()
    for w, b in zip(ws, bs, strict=True):
        if w.dim() != 2 or w.shape[1] != width or b.shape != (w.shape[0],):
            raise ValueError(f"popsan_act: layer weight {tuple(w.shape)} / bias {tuple(b.shape)} after width {width}")
        width = w.shape[0]
    if dec_w.shape != (width // pop, pop) or width % pop or dec_b.shape != (dec_w.shape[0],):
        raise ValueError(f"popsan_act: decoder {tuple(dec_w.shape)} after {width} outputs of populations of {pop}")


_ACT_PLANS: dict[tuple, tuple] = {}
"""popsan_act's ctypes argument arrays and scratch, keyed by the tensors' addresses and shapes: they
only hold pointers, so a key that matches is always right (even for another net at the same addresses).
A plan's scratch is used by one call at a time as long as one net does not act on two threads at once
(a seed batch's threads each act for their own seeds)."""
_ACT_PLANS_MAX = 64
"""Plans kept: a seed batch of up to 64 seeds acts without planning again."""
_ACT_PLANS_LOCK = threading.Lock()


def popsan_act(obs: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, weights: Sequence[torch.Tensor],
               biases: Sequence[torch.Tensor], dec_w: torch.Tensor, dec_b: torch.Tensor, act_limit: float,
               timesteps: int) -> torch.Tensor:
    """The whole deterministic-encoding PopSAN actor for a few normalised observations [B, D] in one
    kernel call (acting at batch 1 is otherwise ~30 small torch ops and kernel calls, each
    costing more in dispatch than in arithmetic). No gradient: call it under torch.no_grad().
    Action [B, A]."""
    lib = library()
    assert lib is not None
    tensors = (obs, mean, std, dec_w, dec_b, *weights, *biases)
    if not all(t.is_contiguous() for t in tensors):
        tensors = tuple(t.contiguous() for t in tensors)  # (kept alive in this tuple while the kernel runs)
    key = (timesteps, *(t.data_ptr() for t in tensors[1:]), *(t.shape for t in tensors))
    plan = _ACT_PLANS.get(key)
    if plan is None:
        ws, bs = tensors[5:5 + len(weights)], tensors[5 + len(weights):]
        _check_act_shapes(tensors[0], mean, std, ws, bs, dec_w, dec_b)
        d = tensors[0].shape[1]
        sizes = [tensors[1].numel()] + [w.shape[0] for w in ws]
        widest = max(sizes[1:])
        n = len(ws)
        plan = (d, tensors[1].numel() // d, n, (ctypes.c_int64 * (n + 1))(*sizes),
                (ctypes.c_void_p * n)(*[_ptr(w) for w in ws]), (ctypes.c_void_p * n)(*[_ptr(b) for b in bs]),
                torch.empty(timesteps * (max(sizes[0], widest) + 2 * widest) + sizes[0], dtype=torch.float32))
        with _ACT_PLANS_LOCK:  # a seed batch's threads act at once, each seed on its own plan
            if len(_ACT_PLANS) >= _ACT_PLANS_MAX:
                _ACT_PLANS.pop(next(iter(_ACT_PLANS)))
            _ACT_PLANS[key] = plan
    d, pop, n, c_sizes, c_w, c_b, scratch = plan
    obs_c = tensors[0]
    out = torch.empty(obs_c.shape[0], tensors[3].shape[0], dtype=torch.float32)
    lib.popsan_act(_ptr(obs_c), obs_c.shape[0], d, pop, timesteps, _ptr(tensors[1]), _ptr(tensors[2]), n, c_sizes,
                   c_w, c_b, _ptr(tensors[3]), _ptr(tensors[4]), act_limit, _ptr(scratch), _ptr(out))
    return out


def dsrl_bits_like(rows: int, neurons: int) -> torch.Tensor | None:
    """A buffer for `dsrl_lif_forward` to write its spikes into as bit masks (ceil(neurons/64) words
    per sample and timestep; any width, unlike PopSAN's kernel), or None past MAX_LISTED_INPUTS."""
    if neurons > MAX_LISTED_INPUTS:
        return None
    return torch.empty(rows * ((neurons + 63) // 64), dtype=torch.int64)


def dsrl_lif_forward(i: torch.Tensor, theta: float, timesteps: int, record: bool, bits: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """DSRL spikes S [T, B, N] (and U before the reset when `record`) from contiguous fp32 currents:
    i [B, N] is a constant current (layer 1, injected every step), i [T, B, N] feeds the decaying
    current (layer 2). `bits` (from `dsrl_bits_like(T·B, N)`) also receives S as bit masks."""
    lib = library()
    assert lib is not None and i.is_contiguous()
    constant = i.dim() == 2
    T = int(timesteps) if constant else i.shape[0]
    B, N = i.shape[-2], i.shape[-1]
    s = torch.empty(T, B, N, dtype=torch.float32)
    u = torch.empty_like(s) if record else None
    lib.dsrl_lif_forward(_ptr(i), _ptr(s), _ptr(u) if u is not None else None, T, B, N, theta, int(constant),
                         _ptr(bits) if bits is not None else None)
    return s, u


def dsrl_lif_backward(u: torch.Tensor, s: torch.Tensor, grad_s: torch.Tensor, theta: float, constant: bool
                      ) -> torch.Tensor:
    """dL/di of dsrl_lif_forward: [B, N] (summed over T) for a constant current, else [T, B, N]."""
    lib = library()
    assert lib is not None
    grad_s = grad_s.contiguous()
    g = torch.empty_like(u)
    gsum = torch.empty_like(u[0]) if constant else None
    lib.dsrl_lif_backward(_ptr(u), _ptr(s), _ptr(grad_s), _ptr(g), _ptr(gsum) if gsum is not None else None,
                          u.shape[0], u[0].numel(), theta)
    return gsum if gsum is not None else g


def dsrl_act(obs: torch.Tensor, w0: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, theta: float,
             act_limit: float, timesteps: int) -> torch.Tensor:
    """The whole DSRL actor for a few max-abs-normalised observations [B, D] in one kernel call
    (layer by layer, acting at batch 1 pays ~10 calls' dispatch for ~0.1 MFLOP). No gradient: call
    it under torch.no_grad(). Action [B, A]."""
    lib = library()
    assert lib is not None
    tensors = (obs, w0, w1, w2)
    if any(t.dtype != torch.float32 or t.device.type != "cpu" for t in tensors):
        raise TypeError("dsrl_act: every tensor must be fp32 on the CPU")
    if not all(t.is_contiguous() for t in tensors):
        obs, w0, w1, w2 = (t.contiguous() for t in tensors)  # named: kept alive while the kernel runs
    n0, n1, a = w0.shape[0], w1.shape[0], w2.shape[0]
    # the checks F.linear would make, before the kernel trusts the shapes
    if obs.dim() != 2 or w0.shape[1] != 2 * obs.shape[1] or w1.shape[1] != n0 or w2.shape[1] != n1:
        raise ValueError(f"dsrl_act: observations {tuple(obs.shape)} do not match the layers "
                         f"{tuple(w0.shape)}, {tuple(w1.shape)}, {tuple(w2.shape)}")
    B, D, T = obs.shape[0], obs.shape[1], int(timesteps)
    scratch = torch.empty(2 * D + n0 + T * (n0 + 2 * n1 + a), dtype=torch.float32)
    out = torch.empty(B, a, dtype=torch.float32)
    lib.dsrl_act(_ptr(obs), B, D, n0, n1, a, T, _ptr(w0), _ptr(w1), _ptr(w2), theta, act_limit, _ptr(scratch),
                 _ptr(out))
    return out
