"""A seed batch on every core of a CPU: the K seeds cut into W contiguous groups, each group a
`BatchedTD3` of its own run on a thread of its own.

Why threads and not one batch: at batch 100 a CPU update is compute-bound, so one stacked batch
on one core saves only dispatch. Spread over cores, the batch's pieces are too small for torch's
intra-op threads (a single seed's update gains ~1.15x from a second core), while K seeds are K
independent pieces of work. The spiking kernels (ctypes) and torch's ops release the GIL, so
groups run side by side; each runs its ops on one torch thread (the caller sets torch's thread
count to 1 while groups run: intra-op threads started from several threads would oversubscribe
the cores).

Each group is exactly the batch of its seeds alone: seed k's numbers do not depend on which
group or thread runs it, up to the rounding of batched matmuls over a different number of seeds
(tests/test_seed_groups.py). The groups share the seeds' generators with the caller
(`SeedGenerators`), so evaluation and checkpoints see each seed's one stream.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, Callable, Sequence, TypeVar

import torch
import torch.nn as nn

from .config import TD3Config
from .seed_batch import BatchedTD3, BurstDraws, BurstInputs, SeedGenerators

T = TypeVar("T")


def seed_batch_workers(device: torch.device, seeds: int, threads: int) -> int:
    """How many groups (threads) a batch of `seeds` runs in: one per torch thread on a CPU, at most
    one per seed; one on a GPU (whose bursts are CUDA graphs)."""
    return 1 if device.type != "cpu" else max(1, min(int(seeds), int(threads)))


def group_bounds(seeds: int, groups: int) -> list[tuple[int, int]]:
    """[start, stop) of each of min(groups, seeds) contiguous groups whose sizes differ by at most 1."""
    groups = max(1, min(int(groups), seeds))
    base, extra = divmod(seeds, groups)
    bounds, start = [], 0
    for g in range(groups):
        stop = start + base + (1 if g < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


class SeedGroups:
    """`BatchedTD3`'s interface for K seeds, carried out by W groups on W threads (the caller's
    thread among them)."""

    def __init__(self, actors: Sequence[nn.Module], critics: Sequence[nn.Module], config: TD3Config,
                 act_limit: float, device: torch.device, generators: SeedGenerators, workers: int,
                 per_seed_actor: bool = False, fused_draws: bool | None = None):
        self.cfg, self.device, self.K = config, device, len(actors)
        self.bounds = group_bounds(self.K, workers)
        self.groups = [BatchedTD3(actors[a:b], critics[a:b], config, act_limit, device,
                                  SeedGenerators(generators.generators[a:b]), per_seed_actor=per_seed_actor,
                                  fused_draws=fused_draws)
                       for a, b in self.bounds]
        # a new thread takes torch's thread count at its first parallel op, or at once from here
        self._pool = (ThreadPoolExecutor(len(self.groups) - 1, "seed-group", initializer=torch.set_num_threads,
                                         initargs=(1,)) if len(self.groups) > 1 else None)

    @property
    def workers(self) -> int:
        return len(self.groups)

    @property
    def updates(self) -> int:
        return self.groups[0].updates

    @updates.setter
    def updates(self, value: int) -> None:
        for g in self.groups:
            g.updates = value

    def _each(self, fn: Callable[[int, BatchedTD3], T]) -> list[T]:
        """[fn(0, group 0), fn(1, group 1), …], group 0 on this thread, the others on the pool."""
        if self._pool is None:
            return [fn(0, self.groups[0])]
        futures = [self._pool.submit(fn, i, g) for i, g in enumerate(self.groups) if i > 0]
        try:
            first = fn(0, self.groups[0])
        finally:
            wait(futures)  # no group still runs when this returns or raises
        return [first] + [f.result() for f in futures]

    def _locate(self, k: int) -> tuple[BatchedTD3, int]:
        for (a, b), g in zip(self.bounds, self.groups, strict=True):
            if a <= k < b:
                return g, k - a
        raise IndexError(f"seed index {k} outside the batch of {self.K}")

    # ---- the update

    def draw_burst(self, n: int, batch_size: int, act_dim: int) -> BurstDraws:
        """Each group's draws from its seeds' generators, stacked along the seed dim."""
        parts = [g.draw_burst(n, batch_size, act_dim) for g in self.groups]
        return BurstDraws(torch.cat([p.eps for p in parts]),
                          tuple(torch.cat(us) for us in zip(*(p.target_u for p in parts), strict=True)),
                          tuple(torch.cat(us) for us in zip(*(p.actor_u for p in parts), strict=True)))

    def update_burst(self, inputs: BurstInputs) -> None:
        self._each(lambda i, g: g.update_burst(_seed_slice(inputs, *self.bounds[i])))

    # ---- acting

    def draw_act(self, rows: int, playing: Sequence[bool] | None = None) -> torch.Tensor | None:
        parts = [g.draw_act(rows, None if playing is None else list(playing)[a:b])
                 for g, (a, b) in zip(self.groups, self.bounds, strict=True)]
        drawn = [p for p in parts if p is not None]
        return torch.cat(drawn) if drawn else None

    def act(self, obs_norm: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
        if u is None:
            u = self.draw_act(obs_norm.shape[1])
        return torch.cat(self._each(lambda i, g: g.act(obs_norm[slice(*self.bounds[i])],
                                                       None if u is None else u[slice(*self.bounds[i])])))

    def seed_actor(self, k: int) -> nn.Module:
        g, j = self._locate(k)
        return g.seed_actor(j)

    # ---- per-seed state

    def seed_state_dict(self, k: int) -> dict[str, Any]:
        g, j = self._locate(k)
        return g.seed_state_dict(j)

    def load_seed_state_dicts(self, states: Sequence[dict[str, Any]]) -> None:
        if len(states) != self.K:
            raise ValueError(f"{len(states)} seed states for a batch of {self.K}")
        updates = {int(s["updates"]) for s in states}
        if len(updates) != 1:
            raise ValueError(f"the seeds' checkpoints are at different update counts {sorted(updates)}")
        for (a, b), g in zip(self.bounds, self.groups, strict=True):
            g.load_seed_state_dicts(states[a:b])

    def losses(self, k: int) -> dict[str, float]:
        g, j = self._locate(k)
        return g.losses(j)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def _seed_slice(inputs: BurstInputs, a: int, b: int) -> BurstInputs:
    d = inputs.draws
    return BurstInputs(inputs.obs[a:b], inputs.act[a:b], inputs.rew[a:b], inputs.next_obs[a:b],
                       inputs.terminated[a:b],
                       BurstDraws(d.eps[a:b], tuple(u[a:b] for u in d.target_u), tuple(u[a:b] for u in d.actor_u)))
