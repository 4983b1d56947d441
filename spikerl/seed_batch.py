"""K seeds of one method × env trained at once: the TD3 update over stacked weights.

Mechanism: torch.func. Each seed's nets are built exactly as its single run builds them, then
their parameters are stacked along a new leading dim ([K, ...] leaves, `torch.func.stack_module_state`)
and every forward pass is `vmap(functional_call(template, ...))` over that dim. One definition of
every actor serves both paths, so a new method batches with no batched twin of its own. The
spiking layers' custom autograd Functions have vmap rules (`spikerl.lif`, `spikerl.population`)
that run each recurrence once on the stacked tensor, each element exactly as alone. The native
C kernels (engine 'native') cannot be vmapped; with `per_seed_actor` each seed's actor runs alone
on views of the stacked weights (on the kernels where they are usable) and only critics, losses,
targets and optimisers are batched. On a CPU at batch 100 that is the faster choice: the kernels
skip silent inputs, which a dense batched matmul cannot (`spikerl-bench perf --seed-batch K`).

Why each seed still matches its single run: the seeds' losses are summed, so autograd hands each
seed's slice exactly its own gradient; Adam and polyak averaging are elementwise, so they act on
each slice as on the seed's own tensors; and every random number the single run draws from torch's
global RNG (target-policy noise; Poisson spikes) is drawn per seed from that seed's own
`torch.Generator`, seeded like the global RNG after the single run's set-up, in the same order,
outside vmap, and handed in (`BurstDraws`). What differs is only the summation order of the
batched matmuls (float rounding; tests/test_seed_batch.py measures it).

A burst of updates takes one `BurstInputs` (the K replay draws, normalised, and the K seeds' random
draws), so that the whole burst reads only from tensors a caller can keep at fixed addresses:
what CUDA-graph replay needs (`spikerl.cuda_graphs`).
"""
from __future__ import annotations

import contextlib
from typing import Any, ContextManager, NamedTuple, Sequence

import torch
import torch.nn as nn
from torch.func import functional_call, vmap

from .adam import adam_step, make_adam
from .config import TD3Config
from .population import Encoding, PopulationEncoder, poisson_uniforms
from .precision import autocast, state_precision
from .seed_stack import SeedGenerators, StackedNet, seed_opt_state, stacked_opt_state
from .td3 import actor_loss, bellman_target, critic_loss, smoothed_target_action

__all__ = ["BatchedTD3", "BurstDraws", "BurstInputs", "SeedGenerators", "StackedNet", "UpdateGroup", "burst_schedule",
           "poisson_encoder"]


class _Q1(nn.Module):
    """The critic's Q1 as a module's forward, so functional_call can run it."""

    def __init__(self, critic: nn.Module):
        super().__init__()
        self.critic = critic

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.critic.q1(obs, act)  # type: ignore[operator]


def poisson_encoder(actor: nn.Module) -> PopulationEncoder | None:
    """The actor's Poisson population encoder, whose spikes draw from torch's RNG, or None."""
    found = [m for m in actor.modules() if isinstance(m, PopulationEncoder) and m.encoding is Encoding.POISSON]
    if len(found) > 1:
        raise ValueError("a seed batch supports at most one Poisson encoder per actor")
    return found[0] if found else None


class UpdateGroup(NamedTuple):
    """Updates first..last-1 of a burst bootstrap from the same target nets; `actor_step`: whether
    the last of them is followed by an actor step (as in `TD3.update_many`)."""

    first: int
    last: int
    actor_step: bool


def burst_schedule(updates_before: int, n: int, delay: int) -> list[UpdateGroup]:
    """TD3.update_many's grouping of n updates starting after `updates_before` updates."""
    groups, i, done = [], 0, updates_before
    while i < n:
        j = min(n, i + delay - done % delay)
        done += j - i
        groups.append(UpdateGroup(i, j, done % delay == 0))
        i = j
    return groups


class BurstDraws(NamedTuple):
    """Every random number a burst uses, per seed, drawn in the single run's order."""

    eps: torch.Tensor
    """Standard normal target-policy noise [K, n·B, act_dim]."""
    target_u: tuple[torch.Tensor, ...]
    """Poisson uniforms of each group's target-actor pass [K, T, rows, N] (empty without Poisson)."""
    actor_u: tuple[torch.Tensor, ...]
    """Poisson uniforms of each actor step [K, T, B, N] (empty without Poisson)."""


class BurstInputs(NamedTuple):
    """One burst of n updates for K seeds: normalised replay rows [K, n·B, ...] and the draws."""

    obs: torch.Tensor
    act: torch.Tensor
    rew: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor
    draws: BurstDraws


def _over_seeds(fn: Any, *args: Any) -> Any:
    """vmap(fn) over the leading (seed) dim of every argument but the absent (None) ones."""
    return vmap(fn, in_dims=tuple(None if a is None else 0 for a in args))(*args)


def _uniforms(u: torch.Tensor | None) -> ContextManager:
    return poisson_uniforms(u) if u is not None else contextlib.nullcontext()


class BatchedTD3:
    """TD3 (`spikerl.td3.TD3`) for K seeds at once; seed k's slice follows seed k's single run.

    `actors`, `critics`: each seed's freshly built nets (built as the single run builds them).
    """

    def __init__(self, actors: Sequence[nn.Module], critics: Sequence[nn.Module], config: TD3Config,
                 act_limit: float, device: torch.device, generators: SeedGenerators, per_seed_actor: bool = False,
                 fused_draws: bool | None = None):
        """`per_seed_actor`: run the actors seed by seed (each a module on views of the stacked weights,
        so on the native kernels where they are usable) instead of vmapped; critics, losses and
        optimisers stay batched. The native kernels skip silent inputs, which at batch 100 outweighs
        what one batched dense pass saves.

        A batch may run on a thread of its own (`spikerl.seed_groups`), where torch's thread-local
        state starts at its defaults: `update_burst` enables grad and `act` disables it, bf16 opens
        its autocast wherever it computes, and each seed's Poisson uniforms are set around its call.
        (fp32 opens none: call it outside autocast, as `spikerl.batch_loop` does.)

        `fused_draws`: draw a burst's random numbers in one call per seed (`draw_burst`); default on
        CUDA devices only."""
        self.cfg, self.act_limit, self.device = config, float(act_limit), device
        self.per_seed_actor = per_seed_actor
        self.fused_draws = device.type == "cuda" if fused_draws is None else bool(fused_draws)
        self.K = len(actors)
        self.actor = StackedNet(actors, requires_grad=True)
        self.critic = StackedNet(critics, requires_grad=True)
        self.actor_target = StackedNet(actors, requires_grad=False)
        self.critic_target = StackedNet(critics, requires_grad=False)
        self.q1 = _Q1(self.critic.template)
        self.actor_opt = make_adam(self.actor.trainable_params(), config.lr_actor)
        self.critic_opt = make_adam(self.critic.trainable_params(), config.lr_critic)
        self.gens = generators
        self.encoder = poisson_encoder(self.actor.template)
        self.actor_seeds = self.actor.seed_modules()
        self.target_seeds = self.actor_target.seed_modules() if per_seed_actor else []
        # every seed's trainable leaves, seed-major, in the optimiser's order
        self.seed_params = [dict(m.named_parameters())[n] for m in self.actor_seeds for n in self.actor.trainable]
        self.dtype = next(iter(self.critic.params.values())).dtype
        self.updates = 0
        self.last_losses: dict[str, torch.Tensor] = {}

    # ---- random draws, per seed, in the single run's order

    def _poisson_draw(self, rows: int, playing: Sequence[bool] | None = None) -> torch.Tensor | None:
        """Every seed's Poisson uniforms [K, T, rows, N]; with `playing`, only the seeds that play
        draw (the others' rows are zeros and their generators untouched)."""
        if self.encoder is None:
            return None
        enc = self.encoder
        shape = (enc.timesteps, rows, enc.obs_dim * enc.pop_dim)
        if playing is None:
            return torch.stack(self.gens.uniform(shape, self.dtype))
        return torch.stack([torch.rand(shape, dtype=self.dtype, generator=g, device=g.device) if on else
                            torch.zeros(shape, dtype=self.dtype, device=self.device)
                            for g, on in zip(self.gens.generators, playing, strict=True)])

    def draw_burst(self, n: int, batch_size: int, act_dim: int) -> BurstDraws:
        """The draws of the next n updates: per group, the target actor's Poisson spikes, then one
        noise batch per update; then the actor step's Poisson spikes (TD3.update_many's order).

        With `fused_draws` (CUDA), each seed draws its burst's noise in one call and its Poisson
        uniforms in another, instead of n + 2·groups calls: 1–2 launches per seed per burst instead
        of 50·(K+1). The numbers are as random but a different stream from the single run's
        per-update draws (`spikerl.td3.TD3.target`), so a CUDA batch seed does not reproduce a
        single run; every method draws this way alike. Seed k's draws still come only from its own
        generator, so they do not depend on the batch it is in (tests/test_seed_batch_draws.py)."""
        if self.fused_draws:
            return self._draw_burst_fused(n, batch_size, act_dim)
        eps, target_u, actor_u = [], [], []
        for g in burst_schedule(self.updates, n, self.cfg.policy_delay):
            u = self._poisson_draw((g.last - g.first) * batch_size)
            if u is not None:
                target_u.append(u)
            eps += [torch.stack(self.gens.normal((batch_size, act_dim), self.dtype)) for _ in range(g.first, g.last)]
            if g.actor_step:
                u = self._poisson_draw(batch_size)
                if u is not None:
                    actor_u.append(u)
        return BurstDraws(torch.cat(eps, dim=1), tuple(target_u), tuple(actor_u))

    def _draw_burst_fused(self, n: int, batch_size: int, act_dim: int) -> BurstDraws:
        groups = burst_schedule(self.updates, n, self.cfg.policy_delay)
        eps = torch.stack(self.gens.normal((n * batch_size, act_dim), self.dtype))
        if self.encoder is None:
            return BurstDraws(eps, (), ())
        # every Poisson pass of the burst, in TD3.update_many's order, as row blocks of one draw
        blocks = []
        for g in groups:
            blocks.append(("target", (g.last - g.first) * batch_size))
            if g.actor_step:
                blocks.append(("actor", batch_size))
        u = self._poisson_draw(sum(rows for _, rows in blocks))
        assert u is not None
        parts = u.split([rows for _, rows in blocks], dim=2)
        target_u = tuple(p for (kind, _), p in zip(blocks, parts, strict=True) if kind == "target")
        actor_u = tuple(p for (kind, _), p in zip(blocks, parts, strict=True) if kind == "actor")
        return BurstDraws(eps, target_u, actor_u)

    # ---- the update

    @torch.enable_grad()
    def update_burst(self, inputs: BurstInputs) -> None:
        """n = rows / batch_size updates on every seed, as `TD3.update_many` runs them on each alone."""
        B = self.cfg.batch_size
        n = inputs.obs.shape[1] // B
        target_u, actor_u = iter(inputs.draws.target_u), iter(inputs.draws.actor_u)
        for g in burst_schedule(self.updates, n, self.cfg.policy_delay):
            rows = slice(g.first * B, g.last * B)
            y = self.target(inputs.rew[:, rows], inputs.next_obs[:, rows], inputs.terminated[:, rows],
                            inputs.draws.eps[:, rows], next(target_u, None))
            for m in range(g.first, g.last):
                r, yr = slice(m * B, (m + 1) * B), slice((m - g.first) * B, (m - g.first + 1) * B)
                self._critic_step(inputs.obs[:, r], inputs.act[:, r], y[:, yr])
            if g.actor_step:
                self._actor_step(inputs.obs[:, (g.last - 1) * B:g.last * B], next(actor_u, None))

    @torch.no_grad()
    def target(self, rew: torch.Tensor, next_obs: torch.Tensor, terminated: torch.Tensor, eps: torch.Tensor,
               u: torch.Tensor | None) -> torch.Tensor:
        """`TD3.target` for every seed: y [K, rows] from the seeds' own noise draws eps [K, rows, act_dim]."""
        cfg, lim = self.cfg, self.act_limit
        critic = self.critic_target.template

        def q(cp: dict, next_obs: torch.Tensor, next_act: torch.Tensor) -> torch.Tensor:
            with autocast(cfg.precision, self.device):
                return state_precision(functional_call(critic, cp, (next_obs, next_act)))

        with autocast(cfg.precision, self.device):
            next_act = state_precision(self._actors(self.actor_target, next_obs, u))
            # elementwise, so on the stacked tensors directly (vmap has no batching rule for the in-place clamp_)
            next_act = smoothed_target_action(next_act, eps.clone(), cfg, lim)
        q_next = _over_seeds(q, self.critic_target.tensors(), next_obs, next_act).min(dim=1).values
        return bellman_target(rew, terminated, q_next, cfg.gamma)

    def _critic_step(self, obs: torch.Tensor, act: torch.Tensor, y: torch.Tensor) -> None:
        cfg, critic = self.cfg, self.critic.template

        def one(cp: dict, obs: torch.Tensor, act: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            with autocast(cfg.precision, self.device):
                q = state_precision(functional_call(critic, cp, (obs, act)))
            return critic_loss(q, y)

        loss_q = _over_seeds(one, self.critic.tensors(), obs, act, y)
        params = self.critic.trainable_params()
        for p in params:
            p.grad = None
        loss_q.sum().backward()  # d(Σ_k L_k)/dθ_k = dL_k/dθ_k: each seed's slice gets its own gradient
        adam_step(self.critic_opt)
        self.last_losses["loss_q"] = loss_q.detach()
        self.updates += 1

    def _actor_step(self, obs: torch.Tensor, u: torch.Tensor | None) -> None:
        cfg, q1 = self.cfg, self.q1

        def one(cp: dict, obs: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
            with autocast(cfg.precision, self.device):
                return actor_loss(functional_call(q1, cp, (obs, a)))

        critic = {f"critic.{n}": t for n, t in self.critic.tensors().items()}
        params = self.actor.trainable_params()
        if self.per_seed_actor:
            a = torch.stack([self._seed_actor_call(self.actor_seeds, k, obs, u, grad=True) for k in range(self.K)])
            loss_pi = _over_seeds(one, critic, obs, a)
            # each seed's module holds leaves of its own: their gradients, stacked, are the stack's
            flat = torch.autograd.grad(loss_pi.sum(), self.seed_params)
            grads = [torch.stack(flat[i::len(params)]) for i in range(len(params))]
        else:
            with autocast(cfg.precision, self.device):
                a = self._actors(self.actor, obs, u)
            loss_pi = _over_seeds(one, critic, obs, a)
            grads = list(torch.autograd.grad(loss_pi.sum(), params))
        for p, g in zip(params, grads, strict=True):
            # vmap returns weight gradients transposed in memory, and the fused CPU Adam kernel walks a
            # gradient as if it had its parameter's (contiguous) layout: it must get a contiguous one
            p.grad = g.contiguous()
        adam_step(self.actor_opt)
        self.last_losses["loss_pi"] = loss_pi.detach()
        with torch.no_grad():
            for target, source in ((self.actor_target, self.actor), (self.critic_target, self.critic)):
                # polyak_ walks the modules' parameters, not their buffers: the same here
                torch._foreach_lerp_(list(target.params.values()), list(source.params.values()), cfg.tau)

    def _seed_actor_call(self, modules: list[nn.Module], k: int, obs: torch.Tensor, u: torch.Tensor | None,
                         grad: bool) -> torch.Tensor:
        """Seed k's actor (of `modules`) on obs[k] under the batch's grad mode, autocast and seed k's
        Poisson uniforms."""
        with torch.set_grad_enabled(grad), autocast(self.cfg.precision, self.device), \
                _uniforms(None if u is None else u[k]):
            return modules[k](obs[k])

    # ---- acting

    def draw_act(self, rows: int, playing: Sequence[bool] | None = None) -> torch.Tensor | None:
        """The Poisson uniforms [K, T, rows, N] of the next acting call (None without Poisson);
        `playing`: draw only for these seeds (an evaluation whose other seeds are done)."""
        return self._poisson_draw(rows, playing)

    @torch.no_grad()
    def act(self, obs_norm: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
        """Deterministic actions [K, rows, act_dim] of every seed's actor on its normalised obs [K, rows, obs_dim].
        `u`: the acting draws (`draw_act`); drawn here when not given, from each seed's generator,
        as the single run's acting draws them."""
        if u is None:
            u = self.draw_act(obs_norm.shape[1])
        with autocast(self.cfg.precision, self.device):
            return self._actors(self.actor, obs_norm, u)

    def _actors(self, net: StackedNet, obs: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        """Every seed's actor (of `net`: the actors or their targets) on its obs [K, rows, obs_dim]:
        actions [K, rows, act_dim]; `u`: the seeds' Poisson uniforms [K, T, rows, N]."""
        template = net.template
        if not self.per_seed_actor:
            def one(ap: dict, x: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
                with _uniforms(u):
                    return functional_call(template, ap, (x,))

            return _over_seeds(one, net.tensors(), obs, u)
        if torch.is_grad_enabled():
            raise RuntimeError("per-seed actors take gradients through _actor_step only")
        modules = self.actor_seeds if net is self.actor else self.target_seeds
        return torch.stack([self._seed_actor_call(modules, k, obs, u, grad=False) for k in range(self.K)])

    def seed_actor(self, k: int) -> nn.Module:
        """Seed k's actor as a module of its own (views of the stacked weights; no copy)."""
        return self.actor_seeds[k]

    # ---- per-seed state, in the single run's format (`TD3.state_dict`)

    def seed_state_dict(self, k: int) -> dict[str, Any]:
        return {
            "actor": self.actor.seed_state_dict(k), "critic": self.critic.seed_state_dict(k),
            "actor_target": self.actor_target.seed_state_dict(k),
            "critic_target": self.critic_target.seed_state_dict(k),
            "actor_opt": seed_opt_state(self.actor_opt, k), "critic_opt": seed_opt_state(self.critic_opt, k),
            "updates": self.updates,
        }

    def load_seed_state_dicts(self, states: Sequence[dict[str, Any]]) -> None:
        """Every seed's `TD3.state_dict` (or `seed_state_dict`), in seed order."""
        updates = {int(s["updates"]) for s in states}
        if len(updates) != 1:
            raise ValueError(f"the seeds' checkpoints are at different update counts {sorted(updates)}")
        for name in ("actor", "critic", "actor_target", "critic_target"):
            getattr(self, name).load_seed_state_dicts([s[name] for s in states])
        self.actor_opt.load_state_dict(stacked_opt_state([s["actor_opt"] for s in states]))
        self.critic_opt.load_state_dict(stacked_opt_state([s["critic_opt"] for s in states]))
        self.updates = updates.pop()

    def losses(self, k: int) -> dict[str, float]:
        return {name: float(v[k]) for name, v in self.last_losses.items()}
