"""The spiking layers on the native CPU kernels (`spikerl.native`): custom autograd Functions whose
forward and backward call the C kernels; the pure-torch twins are in `spikerl.lif`, which re-exports
the public functions here (`native_popsan_layer`, `native_encoded_popsan_layer`, `native_dsrl_lif`,
`native_dsrl_layer`), so `from spikerl.lif import ...` keeps working. A separate module because the
two paths share only the equations: this one is ctypes calls and the bf16 recipe, that one torch ops.

Native path. fp32 CPU tensors outside autocast (or under CPU bf16 autocast, in the bf16 recipe
described above `_fp32_block`) run the same equations on the C kernels of
`spikerl.native` (the `_Native*` Functions below): a PopSAN layer, and DSRL's layer 1 (its B-row
matmul stays in torch; the kernel runs the constant-current recurrence) and layer 2 (currents
from spike lists, then the decaying-current recurrence). The kernels round like the torch
recurrences of `spikerl.lif`, so the same currents give the same spikes to the bit.
"""
from __future__ import annotations

import contextlib

import torch

from spikerl import native

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


def _rounded(t: torch.Tensor, bf16: bool) -> torch.Tensor:
    """t rounded to bf16 in place (a fresh result of ours) when `bf16`, else t."""
    return native.round_bf16(t, out=t) if bf16 else t


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


def _forward_saving(ctx, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, x_bits: torch.Tensor | None,
                    bf16: bool, *extra: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(o, o's bit masks) of `_native_layer_forward`, with what `_native_layer_backward` reads saved in
    ctx (x [T·B, K], the weight used, v, o, then `extra`)."""
    o, v, x2, ctx.index, o_bits, w_used = _native_layer_forward(x, w, b, True, x_bits, bf16)
    ctx.save_for_backward(x2, w_used, v, o, *extra)
    ctx.bf16 = bf16
    ctx.mark_non_differentiable(o_bits)
    return o, o_bits


class _NativePopSANLayer(torch.autograd.Function):
    """Synapse + PopSAN LIF on the native CPU kernels (`spikerl.native`), fp32 only.

    Forward: currents W·x_t + b for all T·B rows at once (for 0/1 spikes a column sum over each
    row's shortest list: its active inputs, its silent ones, or those that changed since step
    t − 1; BLAS when every list is long), then the recurrence in one kernel call.
    Backward: the BPTT kernel gives dL/dI; dW = dIᵀ·x sums dI rows into the listed columns (BLAS
    when the lists are long); db = Σ dI and dx = dI·W are BLAS calls.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
                x_bits: torch.Tensor | None, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
        return _forward_saving(ctx, x, w, b, x_bits, bf16)

    @staticmethod
    def backward(ctx, grad_o: torch.Tensor, _: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
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
    def forward(ctx, a: torch.Tensor, w: torch.Tensor, b: torch.Tensor, s: torch.Tensor,
                gains: torch.Tensor, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
        return _forward_saving(ctx, s, w, b, None, bf16, gains)

    @staticmethod
    def backward(ctx, grad_o: torch.Tensor, _: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
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
    def forward(ctx, i: torch.Tensor, theta: float, timesteps: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
        s_bits = native.dsrl_bits_like(timesteps * i.shape[0], i.shape[1])
        s, u = native.dsrl_lif_forward(i.contiguous(), theta, timesteps, record=True, bits=s_bits)
        ctx.save_for_backward(u, s)
        ctx.theta = theta
        s_bits = s_bits if s_bits is not None else _NO_BITS
        ctx.mark_non_differentiable(s_bits)
        return s, s_bits

    @staticmethod
    def backward(ctx, grad_s: torch.Tensor, _: torch.Tensor) -> tuple[torch.Tensor, None, None]:
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
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, theta: float,
                x_bits: torch.Tensor | None, bf16: bool) -> torch.Tensor:
        s, u, x2, ctx.index, w_used = _native_dsrl_layer_forward(x, w, theta, True, x_bits, bf16)
        ctx.save_for_backward(x2, w_used, u, s)
        ctx.theta, ctx.bf16 = theta, bf16
        return s

    @staticmethod
    def backward(ctx, grad_s: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
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
