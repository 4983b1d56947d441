"""CUDA graphs for a seed batch: the update burst and acting, captured once and replayed.

At a few thousand small kernels per update burst, a GPU spends most of a seed batch's update
launching kernels; a CUDA graph (`torch.cuda.CUDAGraph`) replays the whole burst in one launch.
A graph reads and writes fixed addresses, so every input lives in a static buffer:

- `GraphedBurst.run(inputs)`: the first WARMUPS bursts of a shape and policy-delay phase run
  eagerly on the stream that captures (they are real bursts of training; they create Adam's state
  and let cuBLAS and the allocator settle, as capture needs), then the next burst is captured from
  static copies of its inputs and replayed at once: that replay is the burst, so every tensor the
  capture left behind (gradients, losses) holds this burst's values before anything reads it. Every
  later burst of that key copies its inputs (the K replay draws, normalised, and the K seeds' random
  draws, all made outside the graph from the seeds' own generators) into those buffers and replays.
  The losses are copied inside the graph into buffers allocated before capture, outside the graph
  pool, so no other graph of the pool can overwrite them before a progress row reads them. Python
  side effects are not replayed, so the update counter is advanced here.
- `GraphedAct.run(obs_norm, u)`: the vmapped actor for one env step, likewise.

All graphs of a batch share one capture stream and one memory pool (`CudaCapture`): they never run
concurrently, and what one leaves alive (gradients, outputs) is never handed to another.

Where capture fails (an op that cannot be captured, a torch without CUDA graphs) the batch runs
eagerly from then on, with one warning; the burst that failed to capture runs eagerly too. Adam is
capturable on CUDA (`spikerl.adam.adam_options`): its public step is what is captured. Graphs are used
only on CUDA devices; the CPU runs eagerly. The buffer discipline is the same either way and is
tested on the CPU with `EagerReplay`, which stands in for a graph by calling the captured
function again on the same static buffers (and, like a graph, not at capture).
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Protocol

import torch

from .seed_batch import BatchedTD3, BurstDraws, BurstInputs
from .seed_groups import SeedGroups


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


WARMUPS = 2
"""Eager bursts (and acting steps) of a key on the capture stream before it is captured."""


class CudaCapture:
    """Captures on one side stream into one memory pool, shared by every graph of a seed batch;
    `warmup(fn)` runs fn eagerly on that same stream, as capture wants its warm-ups."""

    def __init__(self, device: torch.device):
        self.device = device
        self.stream = torch.cuda.Stream(device)
        self.pool = torch.cuda.graph_pool_handle()

    def warmup(self, fn: Callable[[], Any]) -> Any:
        current = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            out = fn()
        current.wait_stream(self.stream)
        return out

    def __call__(self, fn: Callable[[], Any]) -> Replayable:
        graph = torch.cuda.CUDAGraph()
        current = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(current)
        with torch.cuda.graph(graph, pool=self.pool, stream=self.stream):
            fn()
        current.wait_stream(self.stream)
        return graph


def _warmup(capture: Any, fn: Callable[[], Any]) -> Any:
    """fn run eagerly where `capture` wants its warm-ups (its stream), or plainly."""
    warm = getattr(capture, "warmup", None)
    return warm(fn) if callable(warm) else fn()


class CaptureFailed(UserWarning):
    """A CUDA graph could not be captured; the seed batch runs eagerly."""


def _warn_once(owner: Any, what: str, exc: BaseException) -> None:
    if not getattr(owner, "_warned", False):
        owner._warned = True
        warnings.warn(f"CUDA graph capture of the seed batch's {what} failed ({type(exc).__name__}: "
                      f"{str(exc)[:200]}); running it eagerly", CaptureFailed, stacklevel=3)


def _static_copy(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().clone()


def _copy_into(static: Any, new: Any) -> None:
    """Copy every tensor of `new` into the same place of `static` (same structure, same shapes)."""
    if isinstance(static, torch.Tensor):
        static.copy_(new)
    elif isinstance(static, (tuple, list)):
        for s, n in zip(static, new, strict=True):
            _copy_into(s, n)


def _clone_inputs(inputs: BurstInputs) -> BurstInputs:
    d = inputs.draws
    draws = BurstDraws(d.eps.clone(), tuple(u.clone() for u in d.target_u), tuple(u.clone() for u in d.actor_u))
    return BurstInputs(inputs.obs.clone(), inputs.act.clone(), inputs.rew.clone(), inputs.next_obs.clone(),
                       inputs.terminated.clone(), draws)


def _shapes(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return tuple(x.shape)
    if isinstance(x, (tuple, list)):
        return tuple(_shapes(y) for y in x)
    return None


class GraphedBurst:
    """`BatchedTD3.update_burst` replayed from a graph per (input shapes, policy-delay phase)."""

    def __init__(self, td3: BatchedTD3 | SeedGroups, capture: Capture | None):
        """A batch in several groups (`SeedGroups`, CPU threads) is never captured: `capture` must be None."""
        if capture is not None and not isinstance(td3, BatchedTD3):
            raise ValueError("CUDA graphs capture a seed batch of one group only")
        self.td3, self.capture = td3, capture
        self.graphs: dict[Any, tuple[BurstInputs, Replayable]] = {}
        self.losses: dict[Any, dict[str, torch.Tensor]] = {}
        """Per key, the losses its burst writes, in buffers allocated before capture."""
        self.warmups: dict[Any, int] = {}
        self._warned = False

    def run(self, inputs: BurstInputs) -> None:
        td3 = self.td3
        n = inputs.obs.shape[1] // td3.cfg.batch_size
        key = (_shapes(inputs), td3.updates % td3.cfg.policy_delay)
        entry = self.graphs.get(key)
        if entry is not None:
            static, graph = entry
            _copy_into(static, inputs)
            self._replay(key, graph, n)
            return
        if self.capture is None:
            td3.update_burst(inputs)
            return
        assert isinstance(td3, BatchedTD3)  # (__init__)
        done = self.warmups.get(key, 0)
        if done < WARMUPS or not (td3.actor_opt.state and td3.critic_opt.state):
            written = self._warm(inputs)
            self.warmups[key] = done + 1
            self.losses[key] = {k: td3.last_losses[k].detach().clone() for k in written}
            return
        static = _clone_inputs(inputs)
        losses = self.losses[key]
        start = td3.updates

        def burst() -> None:
            at = td3.updates
            td3.update_burst(static)
            for name, buf in losses.items():
                buf.copy_(td3.last_losses[name])
            td3.updates = at  # a graph replays no Python: run() advances the counter

        saved = dict(td3.last_losses)
        try:
            graph = self.capture(burst)
        except Exception as exc:  # noqa: BLE001 - any capture failure means: run eagerly
            self.capture = None
            _warn_once(self, "update burst", exc)
            td3.updates = start
            td3.last_losses.clear()
            td3.last_losses.update(saved)
            td3.update_burst(inputs)  # the burst that failed to capture still happens, eagerly
            return
        td3.updates = start
        self.graphs[key] = (static, graph)
        self._replay(key, graph, n)  # the capture ran nothing: this replay is the burst

    def _warm(self, inputs: BurstInputs) -> set[str]:
        """One eager warm-up burst on the capture stream; the names of the losses it wrote."""
        td3 = self.td3
        assert isinstance(td3, BatchedTD3)  # only a captured batch warms up (__init__)
        before = dict(td3.last_losses)
        td3.last_losses.clear()
        _warmup(self.capture, lambda: td3.update_burst(inputs))
        written = set(td3.last_losses)
        td3.last_losses.update({k: v for k, v in before.items() if k not in written})
        return written

    def _replay(self, key: Any, graph: Replayable, n: int) -> None:
        td3 = self.td3
        assert isinstance(td3, BatchedTD3)  # only a captured batch replays (__init__)
        graph.replay()
        td3.updates += n  # the counter is Python state: not part of the graph
        td3.last_losses.update(self.losses[key])


class GraphedAct:
    """`BatchedTD3.act` for one env step of every seed, replayed from a graph."""

    def __init__(self, td3: BatchedTD3 | SeedGroups, capture: Capture | None):
        self.td3, self.capture = td3, capture
        self.static: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self.out: torch.Tensor | None = None
        self.graph: Replayable | None = None
        self.warmups = 0
        self._warned = False

    def run(self, obs_norm: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        if self.graph is not None and self.static is not None and self.out is not None:
            _copy_into(self.static, (obs_norm, u))
            self.graph.replay()
            return self.out.clone()
        if self.capture is None:
            return self.td3.act(obs_norm, u)
        if self.warmups < WARMUPS:
            self.warmups += 1
            return _warmup(self.capture, lambda: self.td3.act(obs_norm, u))  # real steps, eager
        static_obs, static_u = obs_norm.clone(), _static_copy(u)
        static_out = self.td3.act(static_obs, static_u).clone()  # the output buffer, outside the pool
        # (this eager call is a third warm-up; acting changes no state, so its step is repeated below)

        def step() -> None:
            static_out.copy_(self.td3.act(static_obs, static_u))

        try:
            graph = self.capture(step)
        except Exception as exc:  # noqa: BLE001
            self.capture = None
            _warn_once(self, "acting", exc)
            return static_out.clone()
        self.graph, self.static, self.out = graph, (static_obs, static_u), static_out
        graph.replay()
        return static_out.clone()


def capture_for(device: torch.device, enabled: bool = True) -> Capture | None:
    """The capture to use on `device`: CUDA graphs on a CUDA device, none elsewhere."""
    if not enabled or device.type != "cuda":
        return None
    if not hasattr(torch.cuda, "CUDAGraph"):
        warnings.warn("this torch has no CUDA graphs; the seed batch runs eagerly", CaptureFailed, stacklevel=2)
        return None
    return CudaCapture(device)
