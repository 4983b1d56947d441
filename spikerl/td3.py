"""The TD3 update (Fujimoto et al. 2018): clipped double-Q targets, target-policy smoothing,
delayed actor and target updates. The only learning rule in the project: every method goes
through it with its own actor and normaliser.
"""
from __future__ import annotations

import copy
import time
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .adam import adam_step, make_adam
from .config import TD3Config
from .critic import TwinCritic
from .precision import autocast, state_precision
from .replay import ReplayBatch

GradSync = Callable[[Sequence[torch.Tensor]], None]
"""Averages gradients across data-parallel ranks in place (a no-op for one process)."""


class UpdateHook:
    """Diagnostics attached to TD3 (tools/native_check, tools/kernel_profile). Both hooks do
    nothing by default; a TD3 without a hook calls neither."""

    def before_update(self, td3: TD3, batch: ReplayBatch) -> None:
        """Called before each update with the parameters it starts from and the batch it will use
        (the normalised observations are `td3.normalizer(batch.obs)`: the normaliser is fixed
        during updates)."""

    def after_updates(self, td3: TD3, n_updates: int, seconds: float) -> None:
        """Called when `update_many` returns: how many updates it ran and their wall seconds."""


class TD3:
    def __init__(self, actor: nn.Module, critic: TwinCritic, normalizer: nn.Module, config: TD3Config,
                 act_limit: float, device: torch.device, grad_sync: GradSync | None = None,
                 hook: UpdateHook | None = None):
        self.actor, self.critic, self.normalizer = actor, critic, normalizer
        self.actor_target = copy.deepcopy(actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(critic).requires_grad_(False)
        self.cfg, self.act_limit, self.device = config, float(act_limit), device
        self.actor_params = [p for p in actor.parameters() if p.requires_grad]
        self.critic_params = list(critic.parameters())
        self.actor_opt = make_adam(self.actor_params, config.lr_actor)
        self.critic_opt = make_adam(self.critic_params, config.lr_critic)
        self.grad_sync, self.hook = grad_sync, hook
        self.updates = 0
        self.last_losses: dict[str, torch.Tensor] = {}

    def update(self, batch: ReplayBatch) -> None:
        """One TD3 update: a critic step, then (every policy_delay-th update) an actor step and polyak."""
        self.update_many([batch])

    def update_many(self, batches: Sequence[ReplayBatch]) -> None:
        """len(batches) consecutive updates, the same as calling `update` on each in turn.

        The target nets change only after an actor step, so the updates up to and including the
        next actor step bootstrap from the same target nets: their targets are computed in one
        pass over all their batches (one spiking forward over 2·B samples instead of two over B).
        Each batch draws its own target-policy noise in turn, as one-at-a-time updates do. On the
        pure-torch path with deterministic spike encoding the result is the same to the bit
        (tested); the native kernels choose sparse or dense products from all stacked rows at
        once, which can change fp32 summation order. Poisson encoding draws the target actor's
        spikes for the group at once, which orders the RNG stream differently.
        """
        n = len(batches)
        if n == 0:
            return
        t0 = time.perf_counter()
        # the normaliser is fixed during updates and works row by row: one call for every row
        sizes = [b.obs.shape[0] for b in batches]
        normed = self.normalizer(torch.cat([b.obs for b in batches] + [b.next_obs for b in batches]))
        obs, next_obs = normed[:sum(sizes)].split(sizes), normed[sum(sizes):].split(sizes)
        i, delay = 0, self.cfg.policy_delay
        while i < n:
            j = min(n, i + delay - self.updates % delay)  # the updates until the next actor step
            group = batches[i:j]
            ys = self.target(torch.cat([b.rew for b in group]), torch.cat(next_obs[i:j]),
                             torch.cat([b.terminated for b in group]), batch_sizes=sizes[i:j])
            for b, o, y in zip(group, obs[i:j], ys.split(sizes[i:j]), strict=True):
                if self.hook is not None:
                    self.hook.before_update(self, b)
                self._critic_step(o, b.act, y)
                if self.updates % delay == 0:
                    self._actor_step(o)
            i = j
        if self.hook is not None:
            self.hook.after_updates(self, n, time.perf_counter() - t0)

    def _critic_step(self, obs: torch.Tensor, act: torch.Tensor, y: torch.Tensor) -> None:
        with autocast(self.cfg.precision, self.device):
            q = state_precision(self.critic(obs, act))
        loss_q = critic_loss(q, y)
        for p in self.critic_params:  # zero_grad(set_to_none=True) without its Python overhead
            p.grad = None
        loss_q.backward()
        self._sync(self.critic_params)
        adam_step(self.critic_opt)
        self.last_losses["loss_q"] = loss_q.detach()
        self.updates += 1

    def _actor_step(self, obs: torch.Tensor) -> None:
        """Delayed actor step: maximise Q1(s, μ(s)), gradients only into the actor; then polyak."""
        cfg = self.cfg
        with autocast(cfg.precision, self.device):
            loss_pi = actor_loss(self.critic.q1(obs, self.actor(obs)))
        grads = torch.autograd.grad(loss_pi, self.actor_params)
        for p, g in zip(self.actor_params, grads, strict=True):
            p.grad = g
        self._sync(self.actor_params)
        adam_step(self.actor_opt)
        self.last_losses["loss_pi"] = loss_pi.detach()
        with torch.no_grad():
            polyak_(self.actor_target, self.actor, cfg.tau)
            polyak_(self.critic_target, self.critic, cfg.tau)

    @torch.no_grad()
    def target(self, rew: torch.Tensor, next_obs: torch.Tensor, terminated: torch.Tensor,
               batch_sizes: Sequence[int] | None = None) -> torch.Tensor:
        """y = r + γ (1 − terminated) min_i Q'_i(s', clip(μ'(s') + clip(ε, ±c), ±a_max)), ε ~ N(0, σ²) per element.

        `batch_sizes`: the rows are these batches stacked, and ε is drawn batch by batch (the same
        draws as separate calls)."""
        cfg, lim = self.cfg, self.act_limit
        with autocast(cfg.precision, self.device):
            next_act = state_precision(self.actor_target(next_obs))
            sizes = list(batch_sizes) if batch_sizes else [next_act.shape[0]]
            eps = torch.cat([torch.randn_like(a) for a in next_act.split(sizes)])
            next_act = smoothed_target_action(next_act, eps, cfg, lim)
            q_next = state_precision(self.critic_target(next_obs, next_act)).min(dim=0).values
        return bellman_target(rew, terminated, q_next, cfg.gamma)

    def _sync(self, params: Sequence[torch.Tensor]) -> None:
        if self.grad_sync is not None:
            self.grad_sync([p.grad for p in params if p.grad is not None])

    def losses(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.last_losses.items()}

    def state_dict(self) -> dict:
        return {
            "actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
            "actor_target": self.actor_target.state_dict(), "critic_target": self.critic_target.state_dict(),
            "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.actor_target.load_state_dict(state["actor_target"])
        self.critic_target.load_state_dict(state["critic_target"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.updates = int(state["updates"])


# The update's arithmetic, shared with the seed batch (`spikerl.seed_batch`), which runs it under vmap.
# `state_precision` brings autocast's bf16 back to fp32 and leaves fp32 and fp64 as they are.

def smoothed_target_action(next_act: torch.Tensor, eps: torch.Tensor, cfg: TD3Config, lim: float) -> torch.Tensor:
    """clip(μ'(s') + clip(σ·ε, ±c), ±a_max) from standard normal ε (scaled and clipped in place)."""
    eps.mul_(cfg.target_noise * lim).clamp_(-cfg.noise_clip * lim, cfg.noise_clip * lim)
    return (next_act + eps).clamp_(-lim, lim)


def bellman_target(rew: torch.Tensor, terminated: torch.Tensor, q_next: torch.Tensor, gamma: float) -> torch.Tensor:
    return rew + gamma * (1.0 - terminated) * q_next


def critic_loss(q: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Both critics' mean squared TD errors, summed; q is [2, B]."""
    return F.mse_loss(q[0], y) + F.mse_loss(q[1], y)


def actor_loss(q1: torch.Tensor) -> torch.Tensor:
    """−mean Q1(s, μ(s))."""
    return -state_precision(q1).mean()


@torch.no_grad()
def polyak_(target: nn.Module, source: nn.Module, tau: float) -> None:
    """θ' ← (1 − τ) θ' + τ θ for every parameter, the encoder's learnable μ and σ included."""
    t: list[torch.Tensor] = [p for p in target.parameters()]
    s: list[torch.Tensor] = [p for p in source.parameters()]
    torch._foreach_lerp_(t, s, tau)
