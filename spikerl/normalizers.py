"""Observation normalisers, with their statistics in float64 buffers (so they ride in state_dict).

All share one interface so the distributed harness can merge statistics across ranks:
    stats = norm.batch_stats(batch)   # a 1-D float64 tensor summarising a batch of raw obs
    norm.merge_stats(stats)           # fold it in; a [k, n] tensor merges k ranks' rows in order
    norm.running_stats()              # the same summary of everything merged so far
    norm.update(batch)                # == merge_stats(batch_stats(batch))
    norm(obs)                         # normalised obs, in obs's dtype
Merging k ranks' stats in rank order equals one process seeing all their observations (to
float64 rounding), so every rank normalises the same way.

- ZScoreNormalizer (PopSAN, SpikeRL): running count, mean and M2 (sum of squared deviations),
  merged by the parallel algorithm of Chan et al.:
      δ = mean_b − mean_a,  n = n_a + n_b,  mean = mean_a + δ·n_b/n,  M2 = M2_a + M2_b + δ²·n_a·n_b/n;
  var = M2 / n (population variance; 1 before any data), and
      norm(o) = clip((o − mean) / sqrt(var + eps), −clip, clip).
- MaxAbsNormalizer (DSRL): running per-dimension max |o|, starting at 1; norm(o) = o / max_abs.
- IdentityNormalizer (MLP): norm(o) = o.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn


def _as_batch(batch: Any, obs_dim: int) -> np.ndarray:
    arr = np.asarray(batch.detach().cpu() if isinstance(batch, torch.Tensor) else batch, dtype=np.float64)
    arr = arr.reshape(-1, obs_dim) if arr.ndim == 1 and arr.size == obs_dim else arr
    if arr.ndim != 2 or arr.shape[1] != obs_dim:
        raise ValueError(f"expected a batch of observations [n, {obs_dim}], got shape {arr.shape}")
    return arr


class ObsNormalizer(nn.Module):
    """Base class: subclasses define batch_stats, merge_stats and forward."""

    obs_dim: int

    def batch_stats(self, batch: Any) -> torch.Tensor:
        raise NotImplementedError

    def merge_stats(self, stats: torch.Tensor) -> None:
        raise NotImplementedError

    def running_stats(self) -> torch.Tensor:
        """Everything merged so far, in batch_stats' format (merging it elsewhere adds this history)."""
        raise NotImplementedError

    def update(self, batch: Any) -> None:
        """Fold a batch of raw observations [n, obs_dim] into the running statistics."""
        self.merge_stats(self.batch_stats(batch))


class ZScoreNormalizer(ObsNormalizer):
    count: torch.Tensor  # buffers (registered in __init__; declared here for the type checker)
    mean: torch.Tensor
    m2: torch.Tensor

    def __init__(self, obs_dim: int, clip: float = 3.0, eps: float = 1e-8):
        super().__init__()
        self.obs_dim, self.clip, self.eps = obs_dim, float(clip), float(eps)
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(obs_dim, dtype=torch.float64))
        self.register_buffer("m2", torch.zeros(obs_dim, dtype=torch.float64))
        self._std_cache: tuple[tuple[int, ...], torch.Tensor] | None = None

    def _std(self) -> torch.Tensor:
        # sqrt(var + eps) changes only when the statistics do (every obs_norm_every steps), but it
        # is needed 3 times per env step; every in-place merge or load bumps a buffer's version.
        key = tuple(x for b in (self.count, self.mean, self.m2) for x in (id(b), b._version))
        if self._std_cache is None or self._std_cache[0] != key:
            self._std_cache = (key, torch.sqrt(self.var + self.eps))
        return self._std_cache[1]

    @property
    def var(self) -> torch.Tensor:
        # no Python branch on the count: that would synchronise a GPU on every call
        return torch.where(self.count > 0, self.m2 / self.count.clamp(min=1.0), torch.ones_like(self.m2))

    def batch_stats(self, batch: Any) -> torch.Tensor:
        """(n, mean[obs_dim], M2[obs_dim]) of the batch, packed in one float64 tensor [1 + 2·obs_dim]."""
        arr = _as_batch(batch, self.obs_dim)
        n = arr.shape[0]
        mean = arr.mean(0) if n else np.zeros(self.obs_dim)
        m2 = ((arr - mean) ** 2).sum(0)
        packed = np.concatenate([[float(n)], mean, m2])
        return torch.from_numpy(packed).to(self.mean.device)

    def merge_stats(self, stats: torch.Tensor) -> None:
        """Merge one packed stats vector, or the rows of a [k, 1 + 2·obs_dim] tensor in order."""
        d = self.obs_dim
        rows = stats.to(device=self.mean.device, dtype=torch.float64).reshape(-1, 1 + 2 * d)
        for row in rows:
            n_b, mean_b, m2_b = row[0], row[1:1 + d], row[1 + d:]
            n_a = self.count.clone()
            n = n_a + n_b
            safe_n = n.clamp(min=1.0)  # an empty batch (n_b = 0) then changes nothing, without a branch
            delta = mean_b - self.mean
            self.mean.add_(delta * (n_b / safe_n))
            self.m2.add_(m2_b + delta.square() * (n_a * n_b / safe_n))
            self.count.copy_(n)

    def running_stats(self) -> torch.Tensor:
        return torch.cat([self.count.view(1), self.mean, self.m2])

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        z = (obs.double() - self.mean) / self._std()
        return z.clamp_(-self.clip, self.clip).to(obs.dtype)

    def extra_repr(self) -> str:
        return f"obs_dim={self.obs_dim}, clip={self.clip}, eps={self.eps}"


class MaxAbsNormalizer(ObsNormalizer):
    max_abs: torch.Tensor  # a buffer (registered in __init__; declared here for the type checker)

    def __init__(self, obs_dim: int):
        super().__init__()
        self.obs_dim = obs_dim
        self.register_buffer("max_abs", torch.ones(obs_dim, dtype=torch.float64))

    def batch_stats(self, batch: Any) -> torch.Tensor:
        """Per-dimension max |obs| of the batch, float64 [obs_dim] (0 for an empty batch)."""
        arr = _as_batch(batch, self.obs_dim)
        m = np.abs(arr).max(0) if arr.shape[0] else np.zeros(self.obs_dim)
        return torch.from_numpy(np.ascontiguousarray(m)).to(self.max_abs.device)

    def merge_stats(self, stats: torch.Tensor) -> None:
        """Merge one [obs_dim] vector or the rows of a [k, obs_dim] tensor (order does not matter)."""
        rows = stats.to(device=self.max_abs.device, dtype=torch.float64).reshape(-1, self.obs_dim)
        torch.maximum(self.max_abs, rows.amax(0), out=self.max_abs)

    def running_stats(self) -> torch.Tensor:
        return self.max_abs.clone()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs.double() / self.max_abs).to(obs.dtype)

    def extra_repr(self) -> str:
        return f"obs_dim={self.obs_dim}"


class IdentityNormalizer(ObsNormalizer):
    def __init__(self, obs_dim: int = 0):
        super().__init__()
        self.obs_dim = obs_dim

    def batch_stats(self, batch: Any) -> torch.Tensor:
        return torch.zeros(0, dtype=torch.float64)

    def merge_stats(self, stats: torch.Tensor) -> None:
        pass

    def running_stats(self) -> torch.Tensor:
        return torch.zeros(0, dtype=torch.float64)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs
