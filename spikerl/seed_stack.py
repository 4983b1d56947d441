"""K seeds' nets, optimiser states and random generators as stacked tensors (`spikerl.seed_batch`).

`StackedNet`: K copies of one architecture as [K, ...] tensors called through one template module;
`SeedGenerators`: each seed's stand-in for torch's global RNG; `seed_opt_state` /
`stacked_opt_state`: a stacked Adam's state cut into each seed's single-run state and back.
(Split from spikerl.seed_batch, which re-exports them, to keep modules short.)
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
import torch.nn as nn
from torch.func import stack_module_state

__all__ = ["SeedGenerators", "StackedNet", "seed_opt_state", "stacked_opt_state"]


class StackedNet:
    """K copies of one architecture as stacked tensors, called through one template module."""

    def __init__(self, modules: Sequence[nn.Module], requires_grad: bool):
        self.template = copy.deepcopy(modules[0])
        params, buffers = stack_module_state(list(modules))
        self.params: dict[str, torch.Tensor] = {n: p.detach().requires_grad_(requires_grad) for n, p in params.items()}
        self.buffers: dict[str, torch.Tensor] = {n: b.detach() for n, b in buffers.items()}
        # what the optimiser steps: the parameters the single run's TD3 hands to Adam, in its order
        self.trainable = [name for name, p in modules[0].named_parameters() if p.requires_grad]
        self.keys = list(self.template.state_dict().keys())
        self.K = len(modules)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {**self.params, **self.buffers}

    def trainable_params(self) -> list[torch.Tensor]:
        return [self.params[n] for n in self.trainable]

    def seed_state_dict(self, k: int) -> dict[str, torch.Tensor]:
        """Seed k's nn.Module state_dict, as its single run's module would give it."""
        every = self.tensors()
        return {key: every[key][k].detach().clone() for key in self.keys}

    @torch.no_grad()
    def load_seed_state_dicts(self, states: Sequence[dict[str, torch.Tensor]]) -> None:
        every = self.tensors()
        for k, state in enumerate(states):
            if set(state) != set(self.keys):
                raise KeyError(f"seed {k}: state keys {sorted(set(state) ^ set(self.keys))} do not match the net")
        for key in self.keys:
            every[key].copy_(torch.stack([s[key] for s in states]))

    def seed_modules(self) -> list[nn.Module]:
        """Seed k's net as a module of its own, for each k: a copy of the template whose parameters
        and buffers are views of slice k of the stacked tensors. It reads the current weights (the
        optimiser and polyak update the stacked tensors in place) and runs exactly as a single run's
        module, with no functional_call per call; its trainable parameters are leaves of their
        own, so a backward through it hands their gradients back to the caller, not the stack."""
        tensors, mods = self.tensors(), []
        for k in range(self.K):
            module = copy.deepcopy(self.template)
            for name, t in tensors.items():
                path, _, attr = name.rpartition(".")
                owner = module.get_submodule(path)
                view = t.detach()[k]
                if name in self.params:
                    owner._parameters[attr] = nn.Parameter(view, requires_grad=t.requires_grad and
                                                           name in self.trainable)
                else:
                    owner._buffers[attr] = view
            mods.append(module)
        return mods


@dataclass
class SeedGenerators:
    """Each seed's stand-in for torch's global RNG (which its single run draws from)."""

    generators: list[torch.Generator]

    @classmethod
    def seeded(cls, seeds: Sequence[int], device: torch.device) -> SeedGenerators:
        # the single run's global RNG is re-seeded with its seed after the nets are built
        return cls([torch.Generator(device=device).manual_seed(int(s)) for s in seeds])

    def normal(self, shape: Sequence[int], dtype: torch.dtype) -> list[torch.Tensor]:
        return [torch.randn(tuple(shape), dtype=dtype, generator=g, device=g.device) for g in self.generators]

    def uniform(self, shape: Sequence[int], dtype: torch.dtype) -> list[torch.Tensor]:
        return [torch.rand(tuple(shape), dtype=dtype, generator=g, device=g.device) for g in self.generators]

    @contextlib.contextmanager
    def as_global(self, k: int) -> Iterator[None]:
        """Seed k's generator in place of torch's global CPU RNG for this block (single-seed code
        such as evaluation draws from the global RNG, exactly as in seed k's single run)."""
        g = self.generators[k]
        if g.device.type != "cpu":
            with torch.random.fork_rng(devices=[g.device]):
                torch.cuda.set_rng_state(g.get_state(), g.device)
                try:
                    yield
                finally:
                    g.set_state(torch.cuda.get_rng_state(g.device))
            return
        saved = torch.get_rng_state()
        torch.set_rng_state(g.get_state())
        try:
            yield
        finally:
            g.set_state(torch.get_rng_state())
            torch.set_rng_state(saved)

    def state_dicts(self) -> list[torch.Tensor]:
        return [g.get_state() for g in self.generators]

    def load_state_dicts(self, states: Sequence[torch.Tensor]) -> None:
        for g, s in zip(self.generators, states, strict=True):
            g.set_state(s)


def seed_opt_state(opt: torch.optim.Optimizer, k: int) -> dict[str, Any]:
    """Seed k's slice of a stacked Adam's state_dict: what its single run's Adam would hold."""
    sd = opt.state_dict()
    state = {i: {name: (t.clone() if name == "step" else t[k].clone()) for name, t in st.items()}
             for i, st in sd["state"].items()}
    return {"state": state, "param_groups": copy.deepcopy(sd["param_groups"])}


def stacked_opt_state(states: Sequence[dict[str, Any]]) -> dict[str, Any]:
    first = states[0]
    stacked: dict[int, dict[str, torch.Tensor]] = {}
    for i, st in first["state"].items():
        steps = {float(s["state"][i]["step"]) for s in states}
        if len(steps) != 1:
            raise ValueError(f"the seeds' optimiser states are at different steps {sorted(steps)}")
        stacked[i] = {name: (t.clone() if name == "step" else torch.stack([s["state"][i][name] for s in states]))
                      for name, t in st.items()}
    return {"state": stacked, "param_groups": copy.deepcopy(first["param_groups"])}
