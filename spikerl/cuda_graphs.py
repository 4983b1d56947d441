"""CUDA graphs for a seed batch: the update burst and acting, captured once and replayed.

At a few thousand small kernels per update burst, a GPU spends most of a seed batch's update
launching kernels; a CUDA graph (`torch.cuda.CUDAGraph`) replays the whole burst in one launch.
A graph reads and writes fixed addresses, so every input lives in a static buffer:

- `GraphedBurst.run(inputs)`: the first burst of a shape and policy-delay phase runs eagerly on a
  side stream (it is a real burst of training, and it creates Adam's state), then the burst is
  captured from static copies of its inputs; every later burst of that key copies its inputs (the
  K replay draws, normalised, and the K seeds' random draws, all made outside the graph from the
  seeds' own generators) into those buffers and replays. Python side effects are not replayed, so
  the update counter is advanced here.
- `GraphedAct.run(obs_norm, u)`: the vmapped actor for one env step, likewise.

Where capture fails (an op that cannot be captured, an optimiser outside the fused shortcut, a
torch without CUDA graphs) the batch runs eagerly from then on, with one warning. Graphs are used
only on CUDA devices; the CPU runs eagerly. The buffer discipline is the same either way and is
tested on the CPU with `EagerReplay`, which stands in for a graph by calling the captured
function again on the same static buffers.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Protocol

import torch

from .seed_batch import BatchedTD3, BurstDraws, BurstInputs


class Replayable(Protocol):
    def replay(self) -> None: ...


Capture = Callable[[Callable[[], Any]], Replayable]
"""Records fn (running it is not required) and returns something that replays it."""


class EagerReplay:
    """Stands in for a captured graph on the CPU: replay() calls the function again."""

    def __init__(self, fn: Callable[[], Any]):
        self.fn = fn

    def replay(self) -> None:
        self.fn()


def cuda_capture(fn: Callable[[], Any]) -> Replayable:
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph


class CaptureFailed(UserWarning):
    """A CUDA graph could not be captured; the seed batch runs eagerly."""


def _warn_once(owner: Any, what: str, exc: BaseException) -> None:
    if not getattr(owner, "_warned", False):
        owner._warned = True
        warnings.warn(f"CUDA graph capture of the seed batch's {what} failed ({type(exc).__name__}: "
                      f"{str(exc)[:200]}); running it eagerly", CaptureFailed, stacklevel=3)


def _side_stream_run(fn: Callable[[], Any], device: torch.device) -> Any:
    """fn on a side stream, as CUDA-graph warm-up must run (on the CPU: fn())."""
    if device.type != "cuda":
        return fn()
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        out = fn()
    torch.cuda.current_stream(device).wait_stream(stream)
    return out


def _static_copy(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().clone()


def _copy_into(static: Any, new: Any) -> None:
    """Copy every tensor of `new` into the same place of `static` (same structure, same shapes)."""
    if isinstance(static, torch.Tensor):
        static.copy_(new)
    elif isinstance(static, (tuple, list)):
        for s, n in zip(static, new):
            _copy_into(s, n)


def _clone_inputs(inputs: BurstInputs) -> BurstInputs:
    d = inputs.draws
    draws = BurstDraws(d.eps.clone(), tuple(u.clone() for u in d.target_u), tuple(u.clone() for u in d.actor_u))
    return BurstInputs(*(t.clone() for t in inputs[:5]), draws=draws)


def _shapes(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return tuple(x.shape)
    if isinstance(x, (tuple, list)):
        return tuple(_shapes(y) for y in x)
    return None


class GraphedBurst:
    """`BatchedTD3.update_burst` replayed from a graph per (input shapes, policy-delay phase)."""

    def __init__(self, td3: BatchedTD3, capture: Capture | None):
        self.td3, self.capture = td3, capture
        self.graphs: dict[Any, tuple[BurstInputs, Replayable]] = {}
        self._warned = False

    def run(self, inputs: BurstInputs) -> None:
        td3 = self.td3
        n = inputs.obs.shape[1] // td3.cfg.batch_size
        key = (_shapes(inputs), td3.updates % td3.cfg.policy_delay)
        entry = self.graphs.get(key)
        if entry is not None:
            static, graph = entry
            _copy_into(static, inputs)
            graph.replay()
            td3.updates += n  # the counter is Python state: not part of the graph
            return
        if self.capture is None:
            td3.update_burst(inputs)
            return
        static = _clone_inputs(inputs)
        before = td3.updates
        # this burst runs for real, eagerly (warm-up); capture needs both Adams' state to exist
        _side_stream_run(lambda: td3.update_burst(static), td3.device)
        if not (td3.actor_opt.state and td3.critic_opt.state):
            return
        after = td3.updates

        def burst() -> None:
            start = td3.updates
            td3.update_burst(static)
            td3.updates = start  # a graph replays no Python: run() advances the counter

        td3.updates = before  # the captured burst is scheduled like the bursts it will replay
        try:
            graph = self.capture(burst)
        except Exception as exc:  # noqa: BLE001 - any capture failure means: run eagerly
            self.capture = None
            _warn_once(self, "update burst", exc)
            return
        finally:
            td3.updates = after
        self.graphs[key] = (static, graph)


class GraphedAct:
    """`BatchedTD3.act` for one env step of every seed, replayed from a graph."""

    def __init__(self, td3: BatchedTD3, capture: Capture | None):
        self.td3, self.capture = td3, capture
        self.static: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self.out: torch.Tensor | None = None
        self.graph: Replayable | None = None
        self._warned = False

    def run(self, obs_norm: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        if self.graph is not None and self.static is not None and self.out is not None:
            _copy_into(self.static, (obs_norm, u))
            self.graph.replay()
            return self.out.clone()
        if self.capture is None:
            return self.td3.act(obs_norm, u)
        static_obs, static_u = obs_norm.clone(), _static_copy(u)
        out = _side_stream_run(lambda: self.td3.act(static_obs, static_u), self.td3.device)  # warm-up, real
        static_out = out.clone()

        def step() -> None:
            static_out.copy_(self.td3.act(static_obs, static_u))

        try:
            self.graph = self.capture(step)
        except Exception as exc:  # noqa: BLE001
            self.capture = None
            _warn_once(self, "acting", exc)
            return out
        self.static, self.out = (static_obs, static_u), static_out
        return out


def capture_for(device: torch.device, enabled: bool = True) -> Capture | None:
    """The capture to use on `device`: CUDA graphs on a CUDA device, none elsewhere."""
    if not enabled or device.type != "cuda":
        return None
    if not hasattr(torch.cuda, "CUDAGraph"):
        warnings.warn("this torch has no CUDA graphs; the seed batch runs eagerly", CaptureFailed, stacklevel=2)
        return None
    return cuda_capture
