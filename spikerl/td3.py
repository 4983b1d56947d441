"""The TD3 update (Fujimoto et al. 2018): clipped double-Q targets, target-policy smoothing,
delayed actor and target updates. The only learning rule in the project: every method goes
through it with its own actor and normaliser.
"""
from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import TD3Config
from .critic import TwinCritic
from .precision import autocast
from .replay import ReplayBatch

GradSync = Callable[[Sequence[torch.Tensor]], None]
"""Averages gradients across data-parallel ranks in place (a no-op for one process)."""


def make_adam(params, lr: float) -> torch.optim.Adam:
    # The fused kernel updates every tensor in one call; it exists on CPU and CUDA in torch >= 2.4.
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr, foreach=True)


def adam_step(opt: torch.optim.Adam) -> None:
    """opt.step() for a plain fused Adam, calling the fused kernel directly.

    Optimizer.step's Python bookkeeping (hooks, grouping by device, state checks) costs about
    0.2 ms per call, as much as the update itself for these small nets. The kernel and its
    arguments are the ones opt.step() uses, so the result is bit-identical (tested), and the state
    stays in `opt`, so its state_dict is unchanged. Anything else (first step, amsgrad, weight
    decay, several groups, tensor lr) goes through opt.step().
    """
    groups = opt.param_groups
    g = groups[0]
    if (len(groups) != 1 or not g.get("fused") or g["amsgrad"] or g["weight_decay"] or g["maximize"]
            or g.get("decoupled_weight_decay") or isinstance(g["lr"], torch.Tensor) or opt._optimizer_step_pre_hooks
            or opt._optimizer_step_post_hooks):
        opt.step()
        return
    params = [p for p in g["params"] if p.grad is not None]
    state = opt.state
    if not params or any(p not in state for p in params):
        opt.step()  # initialises the state
        return
    sts = [state[p] for p in params]
    steps = [s["step"] for s in sts]
    beta1, beta2 = g["betas"]
    torch._foreach_add_(steps, 1)
    torch._fused_adam_(params, [p.grad for p in params], [s["exp_avg"] for s in sts], [s["exp_avg_sq"] for s in sts],
                       [], steps, amsgrad=False, lr=float(g["lr"]), beta1=float(beta1), beta2=float(beta2),
                       weight_decay=0.0, eps=float(g["eps"]), maximize=False)


class TD3:
    def __init__(self, actor: nn.Module, critic: TwinCritic, normalizer: nn.Module, config: TD3Config,
                 act_limit: float, device: torch.device, grad_sync: GradSync | None = None):
        self.actor, self.critic, self.normalizer = actor, critic, normalizer
        self.actor_target = copy.deepcopy(actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(critic).requires_grad_(False)
        self.cfg, self.act_limit, self.device = config, float(act_limit), device
        self.actor_params = [p for p in actor.parameters() if p.requires_grad]
        self.critic_params = list(critic.parameters())
        self.actor_opt = make_adam(self.actor_params, config.lr_actor)
        self.critic_opt = make_adam(self.critic_params, config.lr_critic)
        self.grad_sync = grad_sync
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
        # the normaliser is fixed during updates and works row by row: one call for every row
        sizes = [b.obs.shape[0] for b in batches]
        normed = self.normalizer(torch.cat([b.obs for b in batches] + [b.next_obs for b in batches]))
        obs, next_obs = normed[:sum(sizes)].split(sizes), normed[sum(sizes):].split(sizes)
        i, delay = 0, self.cfg.policy_delay
        while i < n:
            j = min(n, i + delay - self.updates % delay)  # the updates until the next actor step
            group = batches[i:j]
            y = self.target(torch.cat([b.rew for b in group]), torch.cat(next_obs[i:j]),
                            torch.cat([b.terminated for b in group]), batch_sizes=sizes[i:j])
            for b, o, y in zip(group, obs[i:j], y.split(sizes[i:j])):
                self._critic_step(o, b.act, y)
                if self.updates % delay == 0:
                    self._actor_step(o)
            i = j

    def _critic_step(self, obs: torch.Tensor, act: torch.Tensor, y: torch.Tensor) -> None:
        with autocast(self.cfg.precision, self.device):
            q = self.critic(obs, act).float()
        loss_q = F.mse_loss(q[0], y) + F.mse_loss(q[1], y)
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
            loss_pi = -self.critic.q1(obs, self.actor(obs)).float().mean()
        grads = torch.autograd.grad(loss_pi, self.actor_params)
        for p, g in zip(self.actor_params, grads):
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
            next_act = self.actor_target(next_obs).float()
            sizes = list(batch_sizes) if batch_sizes else [next_act.shape[0]]
            eps = torch.cat([torch.randn_like(a) for a in next_act.split(sizes)])
            eps.mul_(cfg.target_noise * lim).clamp_(-cfg.noise_clip * lim, cfg.noise_clip * lim)
            next_act = (next_act + eps).clamp_(-lim, lim)
            q_next = self.critic_target(next_obs, next_act).float().min(dim=0).values
        return rew + cfg.gamma * (1.0 - terminated) * q_next

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


@torch.no_grad()
def polyak_(target: nn.Module, source: nn.Module, tau: float) -> None:
    """θ' ← (1 − τ) θ' + τ θ for every parameter, the encoder's learnable μ and σ included."""
    t = [p for p in target.parameters()]
    s = [p for p in source.parameters()]
    torch._foreach_lerp_(t, s, tau)
