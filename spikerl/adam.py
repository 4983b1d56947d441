"""Adam for the TD3 update: a public `torch.optim.Adam`, stepped through its fused kernel directly
where that is known to give the same result.

`Optimizer.step` spends ~35 µs per call on Python bookkeeping (hooks, grouping by device, state
checks) before the fused kernel runs; for these small nets that is a measurable share of an
update. `adam_step` skips it by calling the private `torch._fused_adam_` with the arguments
`opt.step()` would pass, on the state `opt` owns (so `opt.state_dict()` is unchanged). It does so
only when this torch has the kernel and a one-time self-test shows it matches `opt.step()` bit for
bit; any other torch, any optimiser setting the shortcut does not cover, and every CUDA optimiser
(capturable, so that CUDA graphs capture the public step) goes through `opt.step()`. Set
`SPIKERL_FAST_ADAM=0` to always use the public path.
"""
from __future__ import annotations

import functools
import logging
import os
from typing import Iterable

import torch

log = logging.getLogger(__name__)


def adam_options(device_type: str) -> dict[str, bool]:
    """Adam's flags on this device type. On CUDA the public optimiser is capturable (its step
    counters live on the device, so `opt.step()` itself can be captured in a CUDA graph with no
    private shortcut); on the CPU it is fused, and `adam_step` may take the shortcut."""
    return {"fused": True, "capturable": True} if device_type == "cuda" else {"fused": True}


def make_adam(params: Iterable[torch.Tensor], lr: float) -> torch.optim.Adam:
    # The fused kernel updates every tensor in one call; it exists on CPU and CUDA in torch >= 2.4.
    params = list(params)
    device_type = params[0].device.type if params else "cpu"
    try:
        opts = adam_options(device_type)
        return torch.optim.Adam(params, lr=lr, fused=opts["fused"], capturable=opts.get("capturable", False))
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr, foreach=True, capturable=device_type == "cuda")


def adam_step(opt: torch.optim.Adam) -> None:
    """The same as `opt.step()`, faster when the fused-kernel shortcut applies."""
    if not (fast_path_enabled() and _fast_step(opt)):
        opt.step()


@functools.cache
def fast_path_enabled() -> bool:
    """Whether this torch has the fused kernel and it passes the self-test (checked once)."""
    if os.environ.get("SPIKERL_FAST_ADAM", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if not callable(getattr(torch, "_fused_adam_", None)):
        return False
    try:
        same = _self_test()
    except Exception as exc:  # a changed private signature: TypeError, RuntimeError, ...
        log.info("spikerl: fused Adam shortcut unusable (%s: %s); using Optimizer.step", type(exc).__name__, exc)
        return False
    if not same:
        log.warning("spikerl: fused Adam shortcut differs from Optimizer.step on this torch; using Optimizer.step")
    return same


def _self_test() -> bool:
    gen = torch.Generator().manual_seed(0)
    a = [torch.randn(4, 3, generator=gen, requires_grad=True), torch.randn(3, generator=gen, requires_grad=True)]
    b = [t.detach().clone().requires_grad_() for t in a]
    opt_a, opt_b = make_adam(a, 1e-2), make_adam(b, 1e-2)
    for i in range(3):
        for x, y in zip(a, b, strict=True):
            x.grad = torch.randn(x.shape, generator=gen)
            y.grad = x.grad.clone()
        opt_a.step()
        if i > 0 and not _fast_step(opt_b):  # the first step initialises the state: always opt.step()
            return False
        if i == 0:
            opt_b.step()
    sa, sb = opt_a.state_dict()["state"], opt_b.state_dict()["state"]
    return (all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
            and all(torch.equal(sa[k][n], sb[k][n]) for k in sa for n in ("step", "exp_avg", "exp_avg_sq")))


def _fast_step(opt: torch.optim.Adam) -> bool:
    """Run opt's step through the fused kernel and return True, or return False (nothing done)
    when the shortcut does not cover opt: several groups, not fused, capturable (CUDA: the public
    step is what a graph captures), amsgrad, weight decay, maximize, a tensor lr, step hooks (or a
    torch that keeps them elsewhere), or state not yet initialised."""
    groups = opt.param_groups
    g = groups[0]
    if (len(groups) != 1 or not g.get("fused") or g.get("capturable") or g["amsgrad"] or g["weight_decay"]
            or g["maximize"]
            or g.get("decoupled_weight_decay") or isinstance(g["lr"], torch.Tensor)
            or getattr(opt, "_optimizer_step_pre_hooks", True) or getattr(opt, "_optimizer_step_post_hooks", True)):
        return False
    params = [p for p in g["params"] if p.grad is not None]
    state = opt.state
    if not params or any(p not in state for p in params):
        return False
    sts = [state[p] for p in params]
    steps = [s["step"] for s in sts]
    beta1, beta2 = g["betas"]
    torch._foreach_add_(steps, 1)
    torch._fused_adam_(params, [p.grad for p in params], [s["exp_avg"] for s in sts], [s["exp_avg_sq"] for s in sts],
                       [], steps, amsgrad=False, lr=float(g["lr"]), beta1=float(beta1), beta2=float(beta2),
                       weight_decay=0.0, eps=float(g["eps"]), maximize=False)
    return True
