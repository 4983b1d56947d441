"""Preallocated replay buffer (raw observations; normalisation happens at sampling time).

Sampling indices are drawn with a torch generator on the run's device (`replay_generator`), the
same way in a single run and in a seed batch's device-resident buffers (`spikerl.batch_replay`),
so seed k of a batch samples exactly the rows its single run samples. The generator's seed is
derived from the run's seed (not the seed itself: torch's global RNG is seeded with that, and the
index stream must not be the target-noise stream).
"""
from __future__ import annotations

import hashlib
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
        self.generator = replay_generator(seed, self.device)

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
        """n batches in one draw, as one batch of n·batch_size rows (batch i is rows i·batch_size on),
        gathered with one fancy index per array."""
        drawn = torch.randint(0, self.size, (n * batch_size,), generator=self.generator, device=self.device)
        idx = drawn.cpu().numpy()
        return ReplayBatch(*(torch.from_numpy(a[idx]).to(self.device, self.dtype, non_blocking=True)
                             for a in (self.obs, self.act, self.rew, self.next_obs, self.terminated)))

    def sample_many(self, n: int, batch_size: int) -> list[ReplayBatch]:
        """`sample_stacked`'s rows as n batches."""
        cols = self.sample_stacked(n, batch_size)
        return [ReplayBatch(*parts) for parts in zip(*(c.split(batch_size) for c in cols), strict=True)]

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
            "rng": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"replay capacity in checkpoint ({state['capacity']}) != configured ({self.capacity})")
        n = int(state["size"])
        for name in ("obs", "act", "rew", "next_obs", "terminated"):
            getattr(self, name)[:n] = state[name].numpy()
        if not rng_is_generator_state(state["rng"]):
            raise ValueError("this checkpoint's replay sampler is numpy's (written before replay sampling moved to "
                             "torch generators); it cannot be resumed exactly: start the run again")
        self.size, self.ptr = n, int(state["ptr"])
        self.generator.set_state(state["rng"].cpu())


def replay_generator(seed: int, device: torch.device | str) -> torch.Generator:
    """The generator a run's replay indices are drawn from, on its device: seeded with a 32-bit
    hash of the run's seed (torch's CPU generator keeps only 32 bits of a seed)."""
    derived = int.from_bytes(hashlib.sha256(f"spikerl.replay:{int(seed)}".encode()).digest()[:4], "little")
    return torch.Generator(device=torch.device(device)).manual_seed(derived)


def rng_is_generator_state(t: torch.Tensor) -> bool:
    """Whether a checkpoint's replay "rng" is a torch generator's state (not the JSON of numpy's,
    which older checkpoints hold and which starts with '{')."""
    return not (t.numel() > 0 and int(t.view(-1)[0]) == ord("{"))


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
