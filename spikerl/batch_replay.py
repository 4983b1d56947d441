"""A seed batch's replay buffers and observation normalisers, resident on the run's device.

Replay. The K seeds step in lock-step, so their buffers fill alike (one pointer, one size): they
are one tensor [K, capacity, F] on the device, each row a packed transition (obs, act, rew,
next_obs, terminated: F = 2·obs_dim + act_dim + 2). Per env step the K new transitions, and the
K observations the seeds act on next, go to the device in one copy from one host staging buffer
(pinned on CUDA, so the copy is asynchronous); a burst draws each seed's indices on the device
from the seed's own generator (`torch.randint`, as `ReplayBuffer.sample_stacked` draws them, so
seed k samples the rows its single run samples) and gathers every seed's rows in one indexing op.
Checkpoints hold each seed's buffer in the single run's format (CPU tensors; `ReplayBuffer`).

Normalisers. `StackedNormalizer` applies the K seeds' normalisers to [K, rows, obs_dim] in one
broadcast op on their stacked statistics: elementwise the same arithmetic as each normaliser's
own forward, so the same bits (tests/test_batch_replay.py).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from .normalizers import IdentityNormalizer, MaxAbsNormalizer, ObsNormalizer, ZScoreNormalizer
from .replay import ReplayBatch, replay_generator, rng_is_generator_state


class StackedNormalizer:
    """The K seeds' normalisers over [K, rows, obs_dim], in one op where they are of one built-in kind."""

    def __init__(self, normalizers: Sequence[ObsNormalizer]):
        self.norms = list(normalizers)
        self.zscore = [n for n in self.norms if type(n) is ZScoreNormalizer]
        self.maxabs = [n for n in self.norms if type(n) is MaxAbsNormalizer]
        kinds = {type(n) for n in self.norms}
        self.kind = kinds.pop() if len(kinds) == 1 else None
        if self.zscore and len({(n.clip, n.eps) for n in self.zscore}) != 1:
            self.kind = None
        self._cache: tuple[tuple[int, ...], tuple[torch.Tensor, ...]] | None = None

    def _stats(self) -> tuple[torch.Tensor, ...]:
        """The stacked statistics [K, 1, obs_dim], restacked only when a normaliser's changed."""
        key = tuple(x for n in self.norms for b in n.buffers() for x in (id(b), b._version))
        if self._cache is None or self._cache[0] != key:
            if self.kind is ZScoreNormalizer:
                stats: tuple[torch.Tensor, ...] = (_stack([n.mean for n in self.zscore]),
                                                   _stack([n._std() for n in self.zscore]))
            else:
                stats = (_stack([n.max_abs for n in self.maxabs]),)
            self._cache = (key, stats)
        return self._cache[1]

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        if self.kind is IdentityNormalizer:
            return obs
        if self.kind is ZScoreNormalizer:
            mean, std = self._stats()
            clip = self.zscore[0].clip
            return ((obs.double() - mean) / std).clamp_(-clip, clip).to(obs.dtype)
        if self.kind is MaxAbsNormalizer:
            (max_abs,) = self._stats()
            return (obs.double() / max_abs).to(obs.dtype)
        return torch.stack([n(o) for n, o in zip(self.norms, obs, strict=True)])


def _stack(buffers: Sequence[Any]) -> torch.Tensor:
    """K normalisers' [obs_dim] buffers as [K, 1, obs_dim] (they are registered buffers: tensors)."""
    tensors = [b for b in buffers if isinstance(b, torch.Tensor)]
    if len(tensors) != len(buffers):
        raise TypeError("a normaliser's statistics are not tensors")
    return torch.stack(tensors).unsqueeze(1)


class BatchReplay:
    """K seeds' replay buffers as one device tensor; see the module docstring."""

    def __init__(self, obs_dim: int, act_dim: int, capacity: int, seeds: Sequence[int], device: torch.device,
                 dtype: torch.dtype = torch.float32):
        self.K, self.obs_dim, self.act_dim = len(seeds), obs_dim, act_dim
        self.capacity, self.device, self.dtype = int(capacity), torch.device(device), dtype
        self.F = 2 * obs_dim + act_dim + 2
        self.data = torch.zeros((self.K, self.capacity, self.F), dtype=torch.float32, device=self.device)
        self.generators = [replay_generator(int(s), self.device) for s in seeds]
        self.ptr = self.size = 0
        cuda = self.device.type == "cuda"
        # one staging row per seed: its transition, then the observation it acts on next
        # (float64 where the run is: its acting obs are not rounded to float32 first, as in its single run;
        # the buffers store float32 either way)
        staged = torch.float64 if dtype == torch.float64 else torch.float32
        self._host = torch.zeros((self.K, self.F + obs_dim), dtype=staged, pin_memory=cuda)
        self._host_np = self._host.numpy()
        self._dev = self._host if not cuda else torch.zeros_like(self._host, device=self.device)
        self._copied: Any = None  # the CUDA event after the last copy out of the pinned buffer
        self._rows = torch.arange(self.K, device=self.device).unsqueeze(1)

    # ---- one env step of every seed

    def staging(self) -> np.ndarray:
        """The host staging rows [K, F + obs_dim] to fill (with `fill`); waits until the last copy
        out of them is done (the copy is asynchronous on CUDA)."""
        if self._copied is not None:
            self._copied.synchronize()
            self._copied = None
        return self._host_np

    def fill(self, k: int, obs: np.ndarray, act: np.ndarray, rew: float, next_obs: np.ndarray, terminated: bool,
             act_obs: np.ndarray) -> None:
        """Seed k's transition and the observation it acts on next (next_obs, or a reset's)."""
        row, d, a = self.staging()[k], self.obs_dim, self.act_dim
        row[:d] = obs
        row[d:d + a] = act
        row[d + a] = rew
        row[d + a + 1:2 * d + a + 1] = next_obs
        row[2 * d + a + 1] = float(terminated)
        row[self.F:] = act_obs

    def push(self) -> torch.Tensor:
        """The staged transitions into the buffers (one host→device copy); the K observations the
        seeds act on next [K, obs_dim] (float32, on the device)."""
        if self._dev is not self._host:
            self._dev.copy_(self._host, non_blocking=True)
            self._copied = torch.cuda.Event()
            self._copied.record()
        self.data[:, self.ptr] = self._dev[:, :self.F]
        self.ptr = (self.ptr + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        return self._dev[:, self.F:]

    # ---- sampling

    def sample_stacked(self, n: int, batch_size: int) -> ReplayBatch:
        """n batches of every seed, [K, n·batch_size, ...]: seed k's rows are those its single run's
        `ReplayBuffer.sample_stacked(n, batch_size)` draws."""
        rows = n * batch_size
        idx = torch.stack([torch.randint(0, self.size, (rows,), generator=g, device=self.device)
                           for g in self.generators])
        got = self.data[self._rows, idx].to(self.dtype)  # [K, rows, F], one gather for all seeds
        d, a = self.obs_dim, self.act_dim
        return ReplayBatch(got[..., :d], got[..., d:d + a], got[..., d + a], got[..., d + a + 1:2 * d + a + 1],
                           got[..., 2 * d + a + 1])

    def __len__(self) -> int:
        return self.size

    # ---- checkpoints: each seed's buffer in the single run's format

    def seed_state_dict(self, k: int) -> dict[str, Any]:
        n, d, a = self.size, self.obs_dim, self.act_dim
        rows = self.data[k, :n].cpu()
        return {
            "obs": rows[:, :d].clone(), "act": rows[:, d:d + a].clone(), "rew": rows[:, d + a].clone(),
            "next_obs": rows[:, d + a + 1:2 * d + a + 1].clone(), "terminated": rows[:, 2 * d + a + 1].clone(),
            "ptr": self.ptr, "size": n, "capacity": self.capacity, "rng": self.generators[k].get_state(),
        }

    def load_seed_state_dicts(self, states: Sequence[dict[str, Any]]) -> None:
        if len(states) != self.K:
            raise ValueError(f"{len(states)} replay states for a batch of {self.K}")
        where = {(int(s["size"]), int(s["ptr"])) for s in states}
        if len(where) != 1:
            raise ValueError(f"the seeds' replay buffers are at different sizes/pointers {sorted(where)}")
        for k, s in enumerate(states):
            if int(s["capacity"]) != self.capacity:
                raise ValueError(f"replay capacity in checkpoint ({s['capacity']}) != configured ({self.capacity})")
            if not rng_is_generator_state(s["rng"]):
                raise ValueError("this checkpoint's replay sampler is numpy's (written before replay sampling moved "
                                 "to torch generators); it cannot be resumed exactly: start the run again")
            n = int(s["size"])
            cols = [s["obs"], s["act"], s["rew"].unsqueeze(1), s["next_obs"], s["terminated"].unsqueeze(1)]
            self.data[k, :n] = torch.cat([c.reshape(n, -1).float() for c in cols], dim=1).to(self.device)
            self.generators[k].set_state(s["rng"].cpu())
        self.size, self.ptr = where.pop()
