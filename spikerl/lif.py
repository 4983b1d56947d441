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

Native path. fp32 CPU tensors outside autocast (or under CPU bf16 autocast, in the bf16 recipe)
run the same equations on the C kernels of `spikerl.native`, through the autograd Functions of
`spikerl.lif_native` (re-exported here). The kernels round like the torch recurrences below, so the
same currents give the same spikes to the bit.

Precision. Under torch.autocast(bfloat16) the matmul runs in bf16, but its output is cast to
fp32 before the recurrence, so current and membrane state (c, v, I, U) are always fp32: bf16's
8-bit mantissa would otherwise shift membranes by ~0.4 % per step and flip spikes near
threshold, and the recurrence is a negligible share of the FLOPs. Spikes are exactly 0/1 and go
to the next matmul in whatever dtype autocast picks.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn

from spikerl import native

# the native-kernel layers live in spikerl.lif_native; re-exported so their import path stays spikerl.lif
from spikerl.lif_native import (  # noqa: F401
    native_dsrl_layer,
    native_dsrl_lif,
    native_encoded_popsan_layer,
    native_popsan_layer,
)
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
    def forward(ctx, i: torch.Tensor) -> torch.Tensor:
        o, v = _popsan_forward(i, record=True)
        ctx.save_for_backward(v, o)
        return o

    @staticmethod
    def backward(ctx, grad_o: torch.Tensor) -> torch.Tensor:
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
    def forward(i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        o, v = _popsan_forward(i, record=True)
        return o, v  # type: ignore[return-value]

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        o, v = output
        ctx.save_for_backward(v, o)
        ctx.mark_non_differentiable(v)
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, grad_o: torch.Tensor, _grad_v: torch.Tensor | None) -> torch.Tensor:
        v, o = ctx.saved_tensors
        return _popsan_backward(v, o, grad_o)

    @staticmethod
    def vmap(info, in_dims, i: torch.Tensor):
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
    def forward(ctx, i: torch.Tensor, theta: float, timesteps: int) -> torch.Tensor:
        s, u = _dsrl_forward(i, theta, timesteps, record=True)
        ctx.save_for_backward(u, s)
        ctx.theta, ctx.constant = theta, i.dim() == 2
        return s

    @staticmethod
    def backward(ctx, grad_s: torch.Tensor) -> tuple[torch.Tensor, None, None]:
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
    def forward(i: torch.Tensor, theta: float, timesteps: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
        s, u = _dsrl_forward(i, theta, timesteps, record=True)
        return s, u  # type: ignore[return-value]

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        s, u = output
        ctx.save_for_backward(u, s)
        ctx.theta, ctx.constant = inputs[1], inputs[0].dim() == 2
        ctx.mark_non_differentiable(u)
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, grad_s: torch.Tensor, _grad_u: torch.Tensor | None
                 ) -> tuple[torch.Tensor, None, None]:
        u, s = ctx.saved_tensors
        return _dsrl_backward(u, s, grad_s, ctx.theta, ctx.constant), None, None

    @staticmethod
    def vmap(info, in_dims, i: torch.Tensor, theta: float, timesteps: int):
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




class PopSANLIFLayer(nn.Module):
    """A fully connected synapse (with bias) feeding PopSAN LIF neurons: [T, B, in] → spikes [T, B, out].

    fp32 on a CPU outside autocast runs on the native kernels when they could be built; anything
    else (CUDA, fp64, bf16 autocast) runs the pure-torch matmul + `popsan_lif`.
    """

    fc: nn.Linear

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.fc = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if native.usable(x, self.fc.weight):
            return native_popsan_layer(x, self.fc.weight, self.fc.bias)[0]
        T, B = x.shape[0], x.shape[1]
        i = state_precision(self.fc(x.reshape(T * B, x.shape[2]))).view(T, B, -1)
        return popsan_lif(i)
