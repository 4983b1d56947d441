"""Leaky integrate-and-fire layers, evaluated fast: one matmul per layer, then a fused recurrence.

PopSAN current-based LIF (DESIGN §3.1), zero state at t = 0, for t = 1..T:
    c_t = 0.5·c_{t−1} + W·x_t + b
    v_t = 0.75·v_{t−1}·(1 − o_{t−1}) + c_t
    o_t = H(v_t − 0.5)
The reset acts on the step after a spike, through (1 − o_{t−1}), and it is NOT detached: the
gradient flows through the reset term via the surrogate, exactly as autograd of the original
step-by-step loop does.

DSRL LIF (DESIGN §3.3), α = β = 0.5, threshold θ:
    layer 1 (analog input, constant current):  I_t = W₀·x,                U_t = β·U_{t−1} + I_t
    layer 2 (spiking input, decaying current): I_t = α·I_{t−1} + W₁·S⁰_t,  U_t = β·U_{t−1} + I_t
    S_t = H(U_t − θ), and U is set to 0 in the same step where a spike occurs.
The reset multiplies U_t by (1 − S_t) with S_t DETACHED, as snntorch does by default: the
gradient of U_{t+1} w.r.t. U_t is β where no spike occurred and 0 where one did, and no
gradient flows through the spike's effect on the reset.

Speed design. The affine part W·x_t (+ b) of every step is independent of the recurrence, so
each layer does ONE matmul over all T·B rows ([T, B, in] → [T·B, in]) and only the cheap
elementwise recurrence loops over T. That recurrence is a custom autograd Function with a
hand-written BPTT backward: the forward loops in plain tensor ops without building a graph
and saves v (or U) and the spikes; the backward loops over T in reverse with two ops per
step, in place in one buffer (on CPUs every fresh [T, B, N] buffer costs page faults). At
batch 100 on a CPU, the ~6 tiny autograd nodes per step × T × layers of the naive loop would
otherwise dominate the elementwise cost. Given the same currents, the forward
uses the same floating-point operations in the same order as the naive loop (multiplications
by 0.5 and by the 0/1 keep mask are exact, so `add(alpha=0.5)` and `addcmul(·, keep)` round
exactly like the separate ops; a fused 0.75-multiply-add would not, so it is avoided), and its
spikes are bit-identical. Only the batched matmul may round differently from per-step matmuls
(BLAS can sum in another order for T·B rows than for B rows, ~1 ulp). Gradients agree with
autograd of the naive loop to rounding; tests pin both in fp64 and fp32.

Native path. fp32 CPU tensors outside autocast (or under CPU bf16 autocast, in the bf16 recipe
described above `_fp32_block`) run the same equations on the C kernels of
`spikerl.native` (the `_Native*` Functions below): a PopSAN layer, and DSRL's layer 1 (its B-row
matmul stays in torch; the kernel runs the constant-current recurrence) and layer 2 (currents
from spike lists, then the decaying-current recurrence). The kernels round like the torch
recurrences above, so the same currents give the same spikes to the bit.

Precision. Under torch.autocast(bfloat16) the matmul runs in bf16, but its output is cast to
fp32 before the recurrence, so current and membrane state (c, v, I, U) are always fp32: bf16's
8-bit mantissa would otherwise shift membranes by ~0.4 % per step and flip spikes near
threshold, and the recurrence is a negligible share of the FLOPs. Spikes are exactly 0/1 and go
to the next matmul in whatever dtype autocast picks.
"""
from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch
import torch.nn as nn

from spikerl import native
from spikerl.precision import state_precision
from spikerl.surrogate import POPSAN_V_TH, fast_sigmoid_grad_, rect_grad
from spikerl.vmapped import is_vmapped

POPSAN_C_DECAY = 0.5
POPSAN_V_DECAY = 0.75
DSRL_ALPHA = 0.5
"""DSRL synaptic-current decay α (layer 2)."""
DSRL_BETA = 0.5
"""DSRL membrane decay β."""

# 0-d constants: a Python scalar in a binary op is wrapped into a tensor on every call, which
# costs about as much as the op itself at batch 1. A 0-d CPU tensor of the data's dtype acts as
# a scalar for CPU and CUDA tensors alike and rounds like the Python scalar would (a constant of
# another dtype would force a slow, unvectorised casting loop).
_CONSTANTS: dict[tuple[float, torch.dtype], torch.Tensor] = {}


def scalar(value: float, dtype: torch.dtype) -> torch.Tensor:
    """A cached 0-d CPU tensor holding `value` in `dtype`."""
    key = (value, dtype)
    if key not in _CONSTANTS:
        _CONSTANTS[key] = torch.tensor(value, dtype=dtype)
    return _CONSTANTS[key]


class PopSANTrace(NamedTuple):
    c: torch.Tensor
    v: torch.Tensor
    """Membrane before the (delayed) reset: the value compared with the threshold."""
    o: torch.Tensor


class DSRLTrace(NamedTuple):
    i: torch.Tensor
    u: torch.Tensor
    """Membrane before the same-step reset: the value compared with θ."""
    s: torch.Tensor


def _popsan_forward(i: torch.Tensor, record: bool = False, currents: list[torch.Tensor] | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Runs the PopSAN recurrence on currents i = W·x_t + b [T, B, N].

    Returns (o, v), each [T, B, N]; v only when `record` (for backward and traces).
    `currents`, if given, collects c_t (traces only).
    """
    v_th, v_decay = scalar(POPSAN_V_TH, i.dtype), scalar(POPSAN_V_DECAY, i.dtype)
    # unbind once: indexing a tensor in Python costs about as much as a small op
    i_t = i.unbind(0)
    keep = torch.empty_like(i)
    keep_t = keep.unbind(0)
    v_all = torch.empty_like(i) if record else None  # written in place: no per-step copies to stack
    v_t = v_all.unbind(0) if v_all is not None else None
    c = v = i_t[0]  # zero initial state: c_1 = I_1 and v_1 = c_1
    if v_t is not None:
        v = v_t[0].copy_(v)
    torch.le(v, v_th, out=keep_t[0])
    if currents is not None:
        currents.append(c)
    for t in range(1, len(i_t)):
        c = torch.add(i_t[t], c, alpha=POPSAN_C_DECAY)
        v = torch.addcmul(c, torch.mul(v, v_decay), keep_t[t - 1], out=v_t[t] if v_t is not None else None)
        torch.le(v, v_th, out=keep_t[t])
        if currents is not None:
            currents.append(c)
    return torch.sub(scalar(1.0, i.dtype), keep, out=keep), v_all  # o = 1 − keep, in place


class _PopSANLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, i: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        o, v = _popsan_forward(i, record=True)
        ctx.save_for_backward(v, o)
        return o

    @staticmethod
    def backward(ctx, grad_o: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        v, o = ctx.saved_tensors
        return _popsan_backward(v, o, grad_o)


def _popsan_backward(v: torch.Tensor, o: torch.Tensor, grad_o: torch.Tensor) -> torch.Tensor:
    """dL/dI [T, ...] of the PopSAN recurrence from its saved v and o (any shape after T)."""
    # With m_t = do_t/dv_t (surrogate), autograd of the loop gives
    #   dL/do_t = grad_o_t − dL/dv_{t+1} · 0.75·v_t                (through the reset)
    #   dL/dv_t = m_t · dL/do_t + dL/dv_{t+1} · 0.75·(1 − o_t)
    #           = a_t + dL/dv_{t+1} · d_t,  a = grad_o·m,  d = 0.75·(1 − o − v·m)
    #   dL/dc_t = dL/dv_t + 0.5 · dL/dc_{t+1} = dL/dI_t
    # g holds m, then a, then dL/dv, then dL/dI, in place.
    g = rect_grad(v)
    keep = torch.sub(scalar(1.0, o.dtype), o)
    d_t = keep.addcmul_(v, g, value=-1.0).mul_(POPSAN_V_DECAY).unbind(0)
    g_t = g.mul_(grad_o).unbind(0)
    T = len(g_t)
    for t in range(T - 2, -1, -1):
        torch.addcmul(g_t[t], g_t[t + 1], d_t[t], out=g_t[t])
    for t in range(T - 2, -1, -1):  # dL/dI_T = dL/dv_T; t+1 already holds dL/dI_{t+1}
        g_t[t].add_(g_t[t + 1], alpha=POPSAN_C_DECAY)
    return g


class _PopSANLIFVmap(torch.autograd.Function):
    """`_PopSANLIF` for torch.func.vmap (seed batches, `spikerl.seed_batch`): the same forward and
    backward, in the form functorch needs (no ctx in forward, v as an extra output to save).

    The recurrence is elementwise over everything but T, so its vmap rule runs it ONCE on the
    stacked tensor with the seed dim moved behind T, each element computed exactly as alone.
    A separate class, so the single-seed path keeps its leaner Function untouched."""

    generate_vmap_rule = False

    @staticmethod
    def forward(i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        o, v = _popsan_forward(i, record=True)
        return o, v  # type: ignore[return-value]

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        o, v = output
        ctx.save_for_backward(v, o)
        ctx.mark_non_differentiable(v)
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, grad_o: torch.Tensor, _grad_v: torch.Tensor | None) -> torch.Tensor:  # type: ignore[override]
        v, o = ctx.saved_tensors
        return _popsan_backward(v, o, grad_o)

    @staticmethod
    def vmap(info, in_dims, i: torch.Tensor):  # type: ignore[override]
        (d,) = in_dims
        if d is None:
            return _PopSANLIFVmap.apply(i), (None, None)
        return _PopSANLIFVmap.apply(i.movedim(d, 1)), (1, 1)


def popsan_lif(i: torch.Tensor) -> torch.Tensor:
    """PopSAN LIF spikes o [T, B, N] (fp32) from input currents i = W·x_t + b [T, B, N] (fp32)."""
    if torch.is_grad_enabled() and i.requires_grad:
        return _PopSANLIF.apply(i)
    if is_vmapped(i):  # a seed batch: requires_grad is not visible through vmap's wrapper
        return _PopSANLIFVmap.apply(i)[0]
    return _popsan_forward(i)[0]


@torch.no_grad()
def popsan_lif_trace(i: torch.Tensor) -> PopSANTrace:
    """Every state of the PopSAN recurrence over T (for tests and inspection; no gradient)."""
    currents: list[torch.Tensor] = []
    o, v = _popsan_forward(i, record=True, currents=currents)
    return PopSANTrace(torch.stack(currents), v, o)  # type: ignore[arg-type]


def _dsrl_forward(i: torch.Tensor, theta: float, timesteps: int, record: bool = False,
                  currents: list[torch.Tensor] | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Runs the DSRL recurrence; i is [B, N] (constant current, layer 1) or [T, B, N] (layer 2).

    Returns (S, U before reset), each [T, B, N]; U only when `record`.
    `currents`, if given, collects I_t (traces only).
    """
    theta_t = scalar(theta, i.dtype)
    j_t = None if i.dim() == 2 else i.unbind(0)
    steps = timesteps if j_t is None else len(j_t)
    # [T, ...] like the state; a seed batch (`_DSRLLIFVmap`) brings a 4-D [T, K, B, N] current
    keep = i.new_empty((steps, *i.shape)) if j_t is None else torch.empty_like(i)
    keep_t = keep.unbind(0)
    u_all = torch.empty_like(keep) if record else None
    u_t = u_all.unbind(0) if u_all is not None else None
    cur = u = i if j_t is None else j_t[0]  # zero initial state: U_1 = I_1
    if u_t is not None:
        u = u_t[0].copy_(u)
    torch.le(u, theta_t, out=keep_t[0])
    if currents is not None:
        currents.append(cur)
    for t in range(1, steps):
        if j_t is not None:
            cur = torch.add(j_t[t], cur, alpha=DSRL_ALPHA)
        rest = torch.mul(u, keep_t[t - 1])  # same-step reset: U <- 0 where S = 1
        u = torch.add(cur, rest, alpha=DSRL_BETA, out=u_t[t] if u_t is not None else None)
        torch.le(u, theta_t, out=keep_t[t])
        if currents is not None:
            currents.append(cur)
    return torch.sub(scalar(1.0, i.dtype), keep, out=keep), u_all  # S = 1 − keep, in place


class _DSRLLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, i: torch.Tensor, theta: float, timesteps: int) -> torch.Tensor:  # type: ignore[override]
        s, u = _dsrl_forward(i, theta, timesteps, record=True)
        ctx.save_for_backward(u, s)
        ctx.theta, ctx.constant = theta, i.dim() == 2
        return s

    @staticmethod
    def backward(ctx, grad_s: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        u, s = ctx.saved_tensors
        return _dsrl_backward(u, s, grad_s, ctx.theta, ctx.constant), None, None


def _dsrl_backward(u: torch.Tensor, s: torch.Tensor, grad_s: torch.Tensor, theta: float, constant: bool
                   ) -> torch.Tensor:
    """dL/dI of the DSRL recurrence from its saved U and S: [B, ...] for a constant current, else [T, ...]."""
    # With g_t = dS_t/dU_t (surrogate) and the reset detached:
    #   dL/dU_t = grad_s_t · g_t + dL/dU_{t+1} · β·(1 − S_t)
    #   dL/dI_t = dL/dU_t + α · dL/dI_{t+1}   (layer 2);  dL/dI = Σ_t dL/dU_t (layer 1)
    # g holds the surrogate, then a = grad_s·surrogate, then dL/dU, then dL/dI, in place.
    g = fast_sigmoid_grad_(u - theta).mul_(grad_s)
    g_t, keep_t = g.unbind(0), torch.sub(scalar(1.0, s.dtype), s).unbind(0)
    T = len(g_t)
    for t in range(T - 2, -1, -1):
        torch.addcmul(g_t[t], g_t[t + 1], keep_t[t], value=DSRL_BETA, out=g_t[t])
    if constant:
        return g.sum(0)
    for t in range(T - 2, -1, -1):  # dL/dI_T = dL/dU_T; t+1 already holds dL/dI_{t+1}
        g_t[t].add_(g_t[t + 1], alpha=DSRL_ALPHA)
    return g


class _DSRLLIFVmap(torch.autograd.Function):
    """`_DSRLLIF` for torch.func.vmap (seed batches), as `_PopSANLIFVmap` is for PopSAN: one call on
    the stacked tensor, the seed dim behind T (a constant current [K, B, N] is run as [K·B, N])."""

    generate_vmap_rule = False

    @staticmethod
    def forward(i: torch.Tensor, theta: float, timesteps: int  # type: ignore[override]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        s, u = _dsrl_forward(i, theta, timesteps, record=True)
        return s, u  # type: ignore[return-value]

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        s, u = output
        ctx.save_for_backward(u, s)
        ctx.theta, ctx.constant = inputs[1], inputs[0].dim() == 2
        ctx.mark_non_differentiable(u)
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, grad_s: torch.Tensor, _grad_u: torch.Tensor | None  # type: ignore[override]
                 ) -> tuple[torch.Tensor, None, None]:
        u, s = ctx.saved_tensors
        return _dsrl_backward(u, s, grad_s, ctx.theta, ctx.constant), None, None

    @staticmethod
    def vmap(info, in_dims, i: torch.Tensor, theta: float, timesteps: int):  # type: ignore[override]
        d = in_dims[0]
        if d is None:
            return _DSRLLIFVmap.apply(i, theta, timesteps), (None, None)
        if i.dim() == 3:  # a constant current: K seeds of [B, N] are K·B rows
            x = i.movedim(d, 0)
            K, B, N = x.shape
            s, u = _DSRLLIFVmap.apply(x.reshape(K * B, N), theta, timesteps)
            return (s.view(timesteps, K, B, N), u.view(timesteps, K, B, N)), (1, 1)
        return _DSRLLIFVmap.apply(i.movedim(d, 1), theta, timesteps), (1, 1)


def dsrl_lif(i: torch.Tensor, theta: float, timesteps: int | None = None) -> torch.Tensor:
    """DSRL LIF spikes S [T, B, N] (fp32).

    i: fp32 currents, [B, N] for layer 1 (W₀·x, injected unchanged every step; give `timesteps`)
    or [T, B, N] for layer 2 (W₁·S⁰_t, which feeds the decaying current I_t).
    """
    if i.dim() == 2 and timesteps is None:
        raise ValueError("dsrl_lif: a constant [B, N] current needs `timesteps`")
    steps = int(timesteps) if timesteps is not None else i.shape[0]
    if torch.is_grad_enabled() and i.requires_grad:
        return _DSRLLIF.apply(i, theta, steps)
    if is_vmapped(i):  # a seed batch: requires_grad is not visible through vmap's wrapper
        return _DSRLLIFVmap.apply(i, float(theta), steps)[0]
    return _dsrl_forward(i, theta, steps)[0]


@torch.no_grad()
def dsrl_lif_trace(i: torch.Tensor, theta: float, timesteps: int | None = None) -> DSRLTrace:
    """Every state of the DSRL recurrence over T (for tests and inspection; no gradient)."""
    steps = int(timesteps) if timesteps is not None else i.shape[0]
    currents: list[torch.Tensor] = []
    s, u = _dsrl_forward(i, float(theta), steps, record=True, currents=currents)
    return DSRLTrace(torch.stack(currents), u, s)  # type: ignore[arg-type]


# The bf16 recipe on the native kernels (`bf16` below: CPU bf16 autocast is on, `native.bf16_autocast`)
# rounds where autocast's bf16 matmul would: its weight and bias are rounded to bf16 before the fp32
# sums, and each sum is rounded to bf16 once, then kept as fp32 for the fp32 recurrence (`state_precision`
# on the torch path). Spikes are 0/1, exact in bf16, so the inputs need no rounding. Backward rounds
# as the bf16 matmul's autograd does: dL/dI reaches it through the cast to fp32 (rounded to bf16),
# and dW, db and dx are each one fp32 sum of bf16 values rounded once. Only the summation order
# differs from torch's (a sum can land on the other side of a bf16 rounding boundary, ~1e-4 of the
# currents), and the first layer's input gradient is rounded after the encoder's sum over T rather
# than per timestep; tests/test_native_bf16.py states the tolerances.


def _fp32_block(bf16: bool) -> contextlib.AbstractContextManager:
    """Autocast off while the bf16 recipe computes in fp32 on pre-rounded values (a matmul under
    autocast would round again and hand back bf16)."""
    return torch.autocast("cpu", enabled=False) if bf16 else contextlib.nullcontext()


def _rounded(t: torch.Tensor | None, bf16: bool) -> torch.Tensor | None:
    """t rounded to bf16 in place (a fresh result of ours) when `bf16`, else t."""
    return native.round_bf16(t, out=t) if bf16 and t is not None else t


def _native_layer_forward(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, record: bool,
                          x_bits: torch.Tensor | None = None, bf16: bool = False
                          ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, native.SpikeIndex | None,
                                     torch.Tensor, torch.Tensor]:
    """(o, v if record, x as [T·B, K], its spike lists, o's bit masks, the weight used) for spikes
    x [T, B, K] on the native kernels. `x_bits`: x's bit masks, if the layer before wrote them; o's are
    empty (numel 0) where the kernel cannot write them. `bf16`: the bf16 recipe (w and b rounded, the
    currents rounded; the weight returned is the rounded copy)."""
    T, B, K = x.shape
    x2 = x.reshape(T * B, K).contiguous()
    if bf16:
        w, b = native.round_bf16(w), native.round_bf16(b)
    with _fp32_block(bf16):
        i, index = native.spike_linear(x2, w, b, step=B, bits=x_bits)
    _rounded(i, bf16)
    o_bits = native.spike_bits_like(T * B, w.shape[0])
    o, v = native.popsan_lif_forward(i.view(T, B, -1), record=record, bits=o_bits)
    return o, v, x2, index, o_bits if o_bits is not None else _NO_BITS, w


_NO_BITS = torch.empty(0, dtype=torch.int64)


def _native_layer_backward(ctx, grad_o: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None,
                                                                 torch.Tensor | None]:
    """(dL/dI [T, B, N], dL/dW, dL/db) from what `_native_layer_forward` saved in ctx (rounded to bf16
    under the bf16 recipe, `ctx.bf16`)."""
    x2, w, v, o = ctx.saved_tensors[:4]
    g = _rounded(native.popsan_lif_backward(v, o, grad_o), ctx.bf16)
    g2 = g.view(x2.shape[0], -1)
    with _fp32_block(ctx.bf16):
        gw = _rounded(native.linear_grad_weight(g2, x2, ctx.index), ctx.bf16) if ctx.needs_input_grad[1] else None
        gb = _rounded(g2.sum(0), ctx.bf16) if ctx.needs_input_grad[2] else None
    return g, gw, gb


class _NativePopSANLayer(torch.autograd.Function):
    """Synapse + PopSAN LIF on the native CPU kernels (`spikerl.native`), fp32 only.

    Forward: currents W·x_t + b for all T·B rows at once (for 0/1 spikes a column sum over each
    row's shortest list: its active inputs, its silent ones, or those that changed since step
    t − 1; BLAS when every list is long), then the recurrence in one kernel call.
    Backward: the BPTT kernel gives dL/dI; dW = dIᵀ·x sums dI rows into the listed columns (BLAS
    when the lists are long); db = Σ dI and dx = dI·W are BLAS calls.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor,  # type: ignore[override]
                x_bits: torch.Tensor | None, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
        o, v, x2, ctx.index, o_bits, w_used = _native_layer_forward(x, w, b, True, x_bits, bf16)
        ctx.save_for_backward(x2, w_used, v, o)
        ctx.bf16 = bf16
        ctx.mark_non_differentiable(o_bits)
        return o, o_bits

    @staticmethod
    def backward(ctx, grad_o: torch.Tensor, _: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        g, gw, gb = _native_layer_backward(ctx, grad_o)
        w = ctx.saved_tensors[1]
        gx = None
        if ctx.needs_input_grad[0]:
            with _fp32_block(ctx.bf16):
                gx = _rounded((g.view(-1, g.shape[-1]) @ w), ctx.bf16).view(*g.shape[:2], -1)
        return gx, gw, gb, None, None


class _NativeEncodedPopSANLayer(torch.autograd.Function):
    """The first layer fed by the population encoder, on the native kernels.

    Takes the encoder's stimulation A [B, K] and its spikes s [T, B, K] (drawn without a graph).
    Since d s_t / d A = gain_t (straight-through, `PopulationEncoder.spike_gains`),
        dL/dA = Σ_t gain_t · (g_t · W) = (Σ_t gain_t · g_t) · W,
    one [B, N] x [N, K] matmul instead of T of them.
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, w: torch.Tensor, b: torch.Tensor, s: torch.Tensor,  # type: ignore[override]
                gains: torch.Tensor, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
        o, v, s2, ctx.index, o_bits, w_used = _native_layer_forward(s, w, b, True, None, bf16)
        ctx.save_for_backward(s2, w_used, v, o, gains)
        ctx.bf16 = bf16
        ctx.mark_non_differentiable(o_bits)
        return o, o_bits

    @staticmethod
    def backward(ctx, grad_o: torch.Tensor, _: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        g, gw, gb = _native_layer_backward(ctx, grad_o)
        w, gains = ctx.saved_tensors[1], ctx.saved_tensors[4]
        T, B = g.shape[:2]
        ga = None
        if ctx.needs_input_grad[0]:
            with _fp32_block(ctx.bf16):
                ga = _rounded((gains @ g.view(T, -1)).view(B, -1) @ w, ctx.bf16)
        return ga, gw, gb, None, None, None


def native_encoded_popsan_layer(a: torch.Tensor, s: torch.Tensor, gains: torch.Tensor, w: torch.Tensor,
                                b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(PopSAN spikes [T, B, N] of fc(s), their bit masks or None) where s are the encoder's spikes of
    stimulation a; in the bf16 recipe under CPU bf16 autocast."""
    if torch.is_grad_enabled() and (a.requires_grad or w.requires_grad or b.requires_grad):
        o, bits = _NativeEncodedPopSANLayer.apply(a, w, b, s, gains, native.bf16_autocast())
        return o, bits if bits.numel() else None
    return native_popsan_layer(s, w, b)


def native_popsan_layer(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, x_bits: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(PopSAN spikes [T, B, N] of fc(x), their bit masks or None) on the native kernels (the bf16
    recipe under CPU bf16 autocast); callers check `native.usable` first. `x_bits`: x's bit masks,
    from the layer that made x."""
    bf16 = native.bf16_autocast()
    if torch.is_grad_enabled() and (x.requires_grad or w.requires_grad or b.requires_grad):
        o, bits = _NativePopSANLayer.apply(x, w, b, x_bits, bf16)
    else:
        o, _, _, _, bits, _ = _native_layer_forward(x, w, b, False, x_bits, bf16)
    return o, bits if bits.numel() else None


class _NativeDSRLLIF(torch.autograd.Function):
    """DSRL's layer-1 LIF on a constant current I = W₀·x [B, N] (`native.dsrl_lif_forward`), fp32.

    Backward: the BPTT kernel sums dL/dU_t over T into dL/dI [B, N]; W₀ and x get their gradients
    from autograd of the B-row matmul that made I.
    """

    @staticmethod
    def forward(ctx, i: torch.Tensor, theta: float, timesteps: int  # type: ignore[override]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        s_bits = native.dsrl_bits_like(timesteps * i.shape[0], i.shape[1])
        s, u = native.dsrl_lif_forward(i.contiguous(), theta, timesteps, record=True, bits=s_bits)
        ctx.save_for_backward(u, s)
        ctx.theta = theta
        s_bits = s_bits if s_bits is not None else _NO_BITS
        ctx.mark_non_differentiable(s_bits)
        return s, s_bits

    @staticmethod
    def backward(ctx, grad_s: torch.Tensor, _: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        u, s = ctx.saved_tensors
        return native.dsrl_lif_backward(u, s, grad_s, ctx.theta, constant=True), None, None


def native_dsrl_lif(i: torch.Tensor, theta: float, timesteps: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(DSRL layer-1 spikes S⁰ [T, B, N] of the constant current i [B, N], their bit masks or None) on
    the native kernels; callers check `native.usable` first."""
    if torch.is_grad_enabled() and i.requires_grad:
        s, bits = _NativeDSRLLIF.apply(i, theta, timesteps)
    else:
        bits = native.dsrl_bits_like(timesteps * i.shape[0], i.shape[1])
        s, _ = native.dsrl_lif_forward(i.contiguous(), theta, timesteps, record=False, bits=bits)
        bits = bits if bits is not None else _NO_BITS
    return s, bits if bits.numel() else None


def _native_dsrl_layer_forward(x: torch.Tensor, w: torch.Tensor, theta: float, record: bool,
                               x_bits: torch.Tensor | None, bf16: bool = False
                               ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, native.SpikeIndex | None,
                                          torch.Tensor]:
    """(S, U if record, x as [T·B, K], its spike lists, the weight used) for spikes x [T, B, K]: the
    currents W·x_t of all T·B rows (no bias), then the decaying-current recurrence. `bf16`: the bf16
    recipe (w and the currents rounded, as for PopSAN's layers)."""
    T, B, K = x.shape
    x2 = x.reshape(T * B, K).contiguous()
    if bf16:
        w = native.round_bf16(w)
    with _fp32_block(bf16):
        j, index = native.spike_linear(x2, w, None, step=B, bits=x_bits)
    _rounded(j, bf16)
    s, u = native.dsrl_lif_forward(j.view(T, B, -1), theta, T, record=record)
    return s, u, x2, index, w


class _NativeDSRLLayer(torch.autograd.Function):
    """DSRL's layer 2 (synapse without bias + decaying-current LIF) on the native kernels, fp32.

    Forward: J_t = W₁·S⁰_t for all T·B rows as column sums over each row's shortest spike list
    (`native.spike_linear`), then the recurrence in one kernel call. Backward: the BPTT kernel
    gives dL/dJ [T, B, N]; dW₁ = dJᵀ·S⁰ from the same lists, dS⁰ = dJ·W₁ by BLAS.
    Its spikes feed only the output integrator, a B-row matmul on their counts: no bit masks.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, theta: float,  # type: ignore[override]
                x_bits: torch.Tensor | None, bf16: bool) -> torch.Tensor:
        s, u, x2, ctx.index, w_used = _native_dsrl_layer_forward(x, w, theta, True, x_bits, bf16)
        ctx.save_for_backward(x2, w_used, u, s)
        ctx.theta, ctx.bf16 = theta, bf16
        return s

    @staticmethod
    def backward(ctx, grad_s: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x2, w, u, s = ctx.saved_tensors
        g = _rounded(native.dsrl_lif_backward(u, s, grad_s, ctx.theta, constant=False), ctx.bf16)
        g2 = g.view(x2.shape[0], -1)
        with _fp32_block(ctx.bf16):
            gw = _rounded(native.linear_grad_weight(g2, x2, ctx.index), ctx.bf16) if ctx.needs_input_grad[1] else None
            gx = _rounded(g2 @ w, ctx.bf16).view(*g.shape[:2], -1) if ctx.needs_input_grad[0] else None
        return gx, gw, None, None, None


def native_dsrl_layer(x: torch.Tensor, w: torch.Tensor, theta: float, x_bits: torch.Tensor | None = None
                      ) -> torch.Tensor:
    """DSRL layer-2 spikes [T, B, N] of the spikes x [T, B, K] through w on the native kernels (the bf16
    recipe under CPU bf16 autocast); callers check `native.usable` first. `x_bits`: x's bit masks, from
    the layer before."""
    bf16 = native.bf16_autocast()
    if torch.is_grad_enabled() and (x.requires_grad or w.requires_grad):
        return _NativeDSRLLayer.apply(x, w, theta, x_bits, bf16)
    return _native_dsrl_layer_forward(x, w, theta, False, x_bits, bf16)[0]


class PopSANLIFLayer(nn.Module):
    """A fully connected synapse (with bias) feeding PopSAN LIF neurons: [T, B, in] → spikes [T, B, out].

    fp32 on a CPU outside autocast runs on the native kernels when they could be built; anything
    else (CUDA, fp64, bf16 autocast) runs the pure-torch matmul + `popsan_lif`.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.fc = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if native.usable(x, self.fc.weight):
            return native_popsan_layer(x, self.fc.weight, self.fc.bias)[0]
        T, B = x.shape[0], x.shape[1]
        i = state_precision(self.fc(x.reshape(T * B, x.shape[2]))).view(T, B, -1)
        return popsan_lif(i)
