"""Preallocated replay buffer (raw observations; normalisation happens at sampling time)."""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch


class ReplayBatch(NamedTuple):
    obs: torch.Tensor
    act: torch.Tensor
    rew: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor
    """1.0 only for true terminal states; time-limit truncations are stored as 0 so they bootstrap."""


class ReplayBuffer:
    def __init__(self, obs_dim: int, act_dim: int, capacity: int, seed: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32):
        """`dtype`: of the sampled tensors (the agent's; stored transitions are float32 either way)."""
        self.capacity = int(capacity)
        self.device = torch.device(device)
        self.dtype = dtype
        self.obs = np.zeros((self.capacity, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((self.capacity, obs_dim), dtype=np.float32)
        self.act = np.zeros((self.capacity, act_dim), dtype=np.float32)
        self.rew = np.zeros(self.capacity, dtype=np.float32)
        self.terminated = np.zeros(self.capacity, dtype=np.float32)
        self.ptr = 0
        self.size = 0
        self.rng = np.random.default_rng(seed)

    def add(self, obs: np.ndarray, act: np.ndarray, rew: float, next_obs: np.ndarray, terminated: bool) -> None:
        i = self.ptr
        self.obs[i] = obs
        self.act[i] = act
        self.rew[i] = rew
        self.next_obs[i] = next_obs
        self.terminated[i] = float(terminated)
        self.ptr = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int) -> ReplayBatch:
        return self.sample_stacked(1, batch_size)

    def sample_stacked(self, n: int, batch_size: int) -> ReplayBatch:
        """n batches in one draw, as one batch of n·batch_size rows (batch i is rows i·batch_size on):
        the same indices as n calls of `sample` (numpy's bounded integers are drawn one after
        another either way; tested), gathered with one fancy index per array."""
        idx = self.rng.integers(0, self.size, size=n * batch_size)
        return ReplayBatch(*(torch.from_numpy(a[idx]).to(self.device, self.dtype, non_blocking=True)
                             for a in (self.obs, self.act, self.rew, self.next_obs, self.terminated)))

    def sample_many(self, n: int, batch_size: int) -> list[ReplayBatch]:
        """`sample_stacked`'s rows as n batches."""
        cols = self.sample_stacked(n, batch_size)
        return [ReplayBatch(*parts) for parts in zip(*(c.split(batch_size) for c in cols))]

    def __len__(self) -> int:
        return self.size

    def state_dict(self) -> dict[str, Any]:
        n = self.size
        return {
            "obs": torch.from_numpy(self.obs[:n].copy()),
            "act": torch.from_numpy(self.act[:n].copy()),
            "rew": torch.from_numpy(self.rew[:n].copy()),
            "next_obs": torch.from_numpy(self.next_obs[:n].copy()),
            "terminated": torch.from_numpy(self.terminated[:n].copy()),
            "ptr": self.ptr,
            "size": n,
            "capacity": self.capacity,
            "rng": rng_state_to_tensor(self.rng),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"replay capacity in checkpoint ({state['capacity']}) != configured ({self.capacity})")
        n = int(state["size"])
        for name in ("obs", "act", "rew", "next_obs", "terminated"):
            getattr(self, name)[:n] = state[name].numpy()
        self.size, self.ptr = n, int(state["ptr"])
        self.rng = rng_from_tensor(state["rng"])


def rng_state_to_tensor(rng: np.random.Generator) -> torch.Tensor:
    """A numpy Generator's state as a uint8 tensor (JSON inside) so it loads with weights_only=True."""
    import json

    return torch.frombuffer(bytearray(json.dumps(rng.bit_generator.state).encode()), dtype=torch.uint8).clone()


def rng_from_tensor(t: torch.Tensor) -> np.random.Generator:
    import json

    state = json.loads(bytes(t.tolist()).decode())
    bitgen = getattr(np.random, state["bit_generator"])()
    bitgen.state = state
    return np.random.Generator(bitgen)
