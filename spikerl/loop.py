"""The training loop, read top to bottom in `train` (set up, loop, save, close).

Every method trains here. The loop owns the environment, replay buffer, TD3 update schedule,
evaluation, checkpoints and RNG; a method contributes only its actor, normaliser and
hyperparameters (`MethodSpec`). Meters and recorders attach through callbacks; diagnostics of
the update through `UpdateHook`.
"""
from __future__ import annotations

import hashlib
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, cast

import numpy as np
import torch

from .callbacks import Callback, CallbackList, EndEvent, EvalEvent, ProgressEvent, RunInfo
from .checkpoint import checkpoint_path, load_run_checkpoint, prune_checkpoints, resume_step, save_checkpoint
from .config import TD3Config
from .critic import TwinCritic
from .distributed import DistContext, global_steps, split_budget
from .envs import act_limit_of, capture_env_state, make_env, restore_env_state, space_dim
from .evaluation import eval_episode_seeds, run_episodes
from .loop_state import LoopState
from .method import ActorContext, MethodSpec
from .normalizers import ObsNormalizer
from .precision import autocast
from .replay import ReplayBuffer
from .seeding import capture_rng, restore_rng, seed_everything
from .td3 import TD3, UpdateHook

__all__ = ["Agent", "TrainResult", "build_agent", "params_sha256", "step_env", "train"]


@dataclass
class TrainResult:
    steps: int
    wall_s: float
    final_return_mean: float | None
    best_return_mean: float | None
    status: str
    updates: int
    param_sha256: str
    error: str | None = None
    evals: list[EvalEvent] = field(default_factory=list)
    param_sha256_by_rank: list[str] = field(default_factory=list)
    world_size: int = 1
    backend: str = "none"
    phase_s: dict[str, float] = field(default_factory=dict)
    """{train, eval, other} seconds (spikerl.phases); they sum to wall_s."""


@dataclass
class Agent:
    """The learnable parts of one method on one env."""

    actor: torch.nn.Module
    normalizer: ObsNormalizer
    critic: TwinCritic
    act_limit: float
    obs_dim: int
    act_dim: int


def build_agent(spec: MethodSpec, env_id: str, config: TD3Config, actor_params: dict[str, Any],
                obs_dim: int, act_dim: int, act_limit: float, device: torch.device) -> Agent:
    ctx = ActorContext(obs_dim=obs_dim, act_dim=act_dim, act_limit=act_limit, env_id=env_id, params=actor_params)
    actor = spec.build_actor(ctx).to(device)
    # a method's normaliser implements ObsNormalizer's interface (MethodSpec types it as a module)
    normalizer = cast(ObsNormalizer, spec.build_normalizer(ctx).to(device))
    critic = TwinCritic(obs_dim, act_dim, config.critic_hidden).to(device)
    return Agent(actor, normalizer, critic, act_limit, obs_dim, act_dim)


def params_sha256(*modules: torch.nn.Module) -> str:
    """SHA-256 of the fp32 parameters and buffers of the modules, in registration order."""
    h = hashlib.sha256()
    for m in modules:
        for name, t in list(m.named_parameters()) + list(m.named_buffers()):
            h.update(name.encode())
            h.update(t.detach().to("cpu", torch.float32 if t.is_floating_point() else t.dtype)
                     .contiguous().numpy().tobytes())
    return h.hexdigest()


def train(spec: MethodSpec, env_id: str, seed: int, config: TD3Config,
          actor_params: dict[str, Any] | None = None, *, run_dir: Path | None = None,
          callbacks: Sequence[Callback] = (), device: torch.device | str = "cpu",
          resume: bool = False, ctx: DistContext | None = None, update_hook: UpdateHook | None = None
          ) -> TrainResult:
    """Train `spec` on `env_id` with TD3 for `config.total_steps` global env steps.

    `run_dir`: where checkpoints go (none without it). `resume`: continue from run_dir's latest
    complete checkpoint set, if any. `ctx`: the data-parallel group (one process without it).
    `update_hook`: diagnostics called around each TD3 update.
    """
    device = torch.device(device)
    ctx = ctx or DistContext(device=device)
    start = None
    if resume and run_dir is not None:  # refuse a folder that cannot be resumed before building anything
        start = resume_step(run_dir, ctx.world_size, method=spec.name, env_id=env_id, load=False)
    run = _Run(spec, env_id, seed, config, actor_params, run_dir=run_dir, callbacks=callbacks, device=device,
               ctx=ctx, update_hook=update_hook)
    if start is not None:
        run.restore(start)
    run.cbs.on_train_start(run.run_info())
    run.s.restart_clock()  # the meters have started: time and energy now cover the same span
    try:
        run.loop()   # act, step, store, learn, log, evaluate, checkpoint
        run.finish()  # every rank done: final evaluation and checkpoint
    except KeyboardInterrupt:
        run.cbs.on_train_end(EndEvent(step=run.gstep(), wall_s=run.s.wall_s(), status="interrupted",
                                      error="interrupted"))
        raise
    except Exception as exc:
        err = f"{type(exc).__name__}: {exc}"
        run.cbs.on_train_end(EndEvent(step=run.gstep(), wall_s=run.s.wall_s(), status="failed", error=err))
        exc.__notes__ = getattr(exc, "__notes__", []) + [traceback.format_exc(limit=3)]
        raise
    finally:
        run.env.close()
        run.eval_env.close()
    result = run.result()
    run.cbs.on_train_end(EndEvent(step=result.steps, wall_s=result.wall_s, status="complete"))
    return result


def step_env(env: Any, replay: ReplayBuffer, s: LoopState, action: np.ndarray) -> None:
    """Step `env` with `action`, store the transition and record a finished episode in `s`."""
    obs, next_obs, reward, terminated = env_transition(env, s, action)
    replay.add(obs, action, reward, next_obs, terminated)  # truncation is not terminal: it bootstraps


def env_transition(env: Any, s: LoopState, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, bool]:
    """Step `env` with `action` and record it in `s` (a finished episode resets the env); the
    transition (obs, next_obs, reward, terminated) to store. s.obs is then the next acting obs."""
    obs = s.obs
    next_obs, reward, terminated, truncated, _ = env.step(action)
    record_transition(env, s, next_obs, float(reward), bool(terminated), bool(truncated))
    return obs, next_obs, float(reward), bool(terminated)


def record_transition(env: Any, s: LoopState, next_obs: np.ndarray, reward: float, terminated: bool,
                      truncated: bool) -> None:
    """The loop state's side of one env step (`env_transition`, once the env has stepped)."""
    s.pending_obs.append(s.obs)
    s.ep_ret += float(reward)
    s.obs = next_obs
    s.t += 1
    if terminated or truncated:
        s.episodes += 1
        s.last_train_return = s.ep_ret
        s.obs, _ = env.reset()
        s.ep_ret = 0.0


def _next_multiple(step: int, every: int) -> int:
    """The first multiple of `every` after `step`."""
    return (step // every + 1) * every


class _Run:
    """One call of `train`: what it built, and the phases `train` runs in order."""

    def __init__(self, spec: MethodSpec, env_id: str, seed: int, cfg: TD3Config,
                 actor_params: dict[str, Any] | None, *, run_dir: Path | None, callbacks: Sequence[Callback],
                 device: torch.device, ctx: DistContext, update_hook: UpdateHook | None):
        self.spec, self.env_id, self.seed, self.cfg = spec, env_id, seed, cfg
        self.run_dir, self.device = run_dir, device
        self.ctx = ctx
        self.W, self.rank = self.ctx.world_size, self.ctx.rank
        self.actor_params = dict(spec.actor_params(env_id) if actor_params is None else actor_params)
        self.cbs = CallbackList(callbacks)
        self.local_total = split_budget(cfg.total_steps, self.W, self.rank)
        # Collective work (updates, normaliser merges, evaluations) happens only at local steps every
        # rank reaches, so ranks holding one extra step of the remainder never wait alone.
        self.lockstep_total = cfg.total_steps // self.W
        self.finished = False
        self.evals: list[EvalEvent] = []
        self.log_step, self.log_time = 0, 0.0  # where the last progress row's steps/s counts from

        # identical start weights on every rank
        seed_everything(seed)
        self.env = make_env(env_id, cfg.max_ep_len)
        self.eval_env = make_env(env_id, cfg.max_ep_len)
        obs_dim = space_dim(self.env.observation_space)
        act_dim = space_dim(self.env.action_space)
        self.lim = act_limit_of(self.env)
        self.agent = build_agent(spec, env_id, cfg, self.actor_params, obs_dim, act_dim, self.lim, device)
        # float32, or float64 for a run built under torch.set_default_dtype(float64) (the seed-batch
        # equivalence tests): observations and sampled batches are handed to the nets in it
        self.dtype = next(self.agent.critic.parameters()).dtype
        for m in (self.agent.actor, self.agent.critic, self.agent.normalizer):
            self.ctx.broadcast_module_(m)
        self.td3 = TD3(self.agent.actor, self.agent.critic, self.agent.normalizer, cfg, self.lim, device,
                       grad_sync=self.ctx.average_grads_ if self.ctx.active else None, hook=update_hook)

        # per-rank exploration randomness
        self.rank_seed = seed + 100_003 * self.rank
        seed_everything(self.rank_seed)
        explore_rng = np.random.default_rng(self.rank_seed)
        self.replay = ReplayBuffer(obs_dim, act_dim, cfg.replay_size, seed=self.rank_seed, device=device,
                                   dtype=self.dtype)
        self.env.action_space.seed(self.rank_seed)
        obs, _ = self.env.reset(seed=self.rank_seed)
        self.s = LoopState(obs=obs, explore_rng=explore_rng)

    # ---- checkpoint and resume

    def restore(self, step: int) -> None:
        """Continue from this rank's checkpoint of global step `step`."""
        assert self.run_dir is not None
        state = load_run_checkpoint(self.run_dir, self.rank, self.W, step, method=self.spec.name,
                                    env_id=self.env_id, map_location=self.device)
        self.td3.load_state_dict(state["td3"])
        self.agent.normalizer.load_state_dict(state["normalizer"])
        self.replay.load_state_dict(state["replay"])
        restore_env_state(self.env, state["env"], self.rank_seed)
        self.s.load_state_dict(state["loop"])
        self.cbs.load_state_dict(state["callbacks"])
        restore_rng(state["rng"])

    def enter(self, phase: str) -> str:
        """Switch the run's phase clock and tell the callbacks; returns the phase left."""
        left = self.s.clock.switch(phase)
        self.cbs.on_phase(phase, self.s.wall_s())
        return left

    def save(self) -> None:
        assert self.run_dir is not None
        left = self.enter("other")  # checkpoint writes are not training
        step = self.gstep()
        path = checkpoint_path(self.run_dir, self.rank, self.W, step)
        save_checkpoint(path, {
            "method": self.spec.name, "env_id": self.env_id, "seed": self.seed, "world_size": self.W,
            "rank": self.rank, "config": self.cfg.to_dict(), "actor_params": self.actor_params,
            "td3": self.td3.state_dict(), "normalizer": self.agent.normalizer.state_dict(),
            "replay": self.replay.state_dict(), "env": capture_env_state(self.env), "loop": self.s.state_dict(),
            "rng": capture_rng(), "callbacks": self.cbs.state_dict(),
        })
        if self.ctx.active:
            self.ctx.barrier()  # every rank has its file for this step: older sets can go
            prune_checkpoints(self.run_dir, self.rank, self.W, keep_step=step)
        self.cbs.on_checkpoint(step, self.s.wall_s(), path)
        self.enter(left)

    # ---- the phases `train` runs

    def gstep(self) -> int:
        """Global env steps so far. Once every rank is done the budget is met exactly, whatever
        each rank's share was."""
        return self.cfg.total_steps if self.finished else global_steps(self.s.t, self.cfg.total_steps, self.W)

    def run_info(self) -> RunInfo:
        start = self.gstep()
        return RunInfo(run_dir=self.run_dir, method=self.spec.name, env_id=self.env_id, seed=self.seed,
                       total_steps=self.cfg.total_steps, rank=self.rank, local_rank=self.ctx.local_rank,
                       world_size=self.W, device=self.device, start_step=start,
                       start_wall_s=self.s.wall_before_s, resumed=start > 0)

    def loop(self) -> None:
        cfg, s = self.cfg, self.s
        n_updates = max(1, round(cfg.update_every * cfg.updates_per_step))
        next_log = _next_multiple(self.gstep(), cfg.log_every)
        next_eval = _next_multiple(self.gstep(), cfg.eval_every)
        next_ckpt = _next_multiple(self.gstep(), cfg.checkpoint_every) if cfg.checkpoint_every else None
        self.log_step, self.log_time = self.gstep(), time.perf_counter()
        self.enter("train")
        while s.t < self.local_total:
            self.collect_step()
            if s.t > self.lockstep_total:
                continue  # the remainder steps of the budget: collect only
            if s.t % cfg.obs_norm_every == 0:
                self.merge_pending_obs()
            if s.t % cfg.update_every == 0 and self.gstep() >= cfg.update_after:
                # the buffer does not change during a burst, so all its batches can be drawn first
                self.td3.update_many(self.replay.sample_many(n_updates, cfg.batch_size))
            step = self.gstep()
            if step >= next_log:
                next_log = _next_multiple(step, cfg.log_every)
                if not self.log_progress(step):
                    break
            if step >= next_eval:
                next_eval = _next_multiple(step, cfg.eval_every)
                self.evaluate()
            if next_ckpt is not None and step >= next_ckpt and self.run_dir is not None:
                next_ckpt = _next_multiple(step, cfg.checkpoint_every)
                self.save()

    def finish(self) -> None:
        self.enter("other")  # waiting for the other ranks, the final evaluation's surroundings, saving
        self.ctx.barrier()
        self.finished = self.s.t >= self.local_total
        if self.s.last_eval_step != self.gstep():
            self.evaluate()
        if self.run_dir is not None and self.cfg.checkpoint_every:
            self.save()

    def result(self) -> TrainResult:
        sha = params_sha256(self.agent.actor, self.agent.critic, self.agent.normalizer)
        phase_s = self.s.phase_s()
        return TrainResult(steps=self.gstep(), wall_s=sum(phase_s.values()), phase_s=phase_s,
                           final_return_mean=self.s.final_eval,
                           best_return_mean=self.s.best_eval, status="complete", updates=self.td3.updates,
                           param_sha256=sha, param_sha256_by_rank=[str(x) for x in self.ctx.all_gather_object(sha)],
                           evals=self.evals, world_size=self.W, backend=self.ctx.backend)

    # ---- one env step, and what the loop does between them

    def collect_step(self) -> None:
        """Act (warm-up actions before start_steps, then the actor plus Gaussian noise), step
        the env, store the transition and record a finished episode."""
        s, cfg, lim = self.s, self.cfg, self.lim
        if self.gstep() < cfg.start_steps and cfg.start_actions == "uniform":
            action = self.env.action_space.sample()
        elif self.gstep() < cfg.start_steps:
            action = np.clip(s.explore_rng.normal(0.0, cfg.start_noise * lim, size=self.agent.act_dim), -lim, lim)
        else:
            action = self.act_deterministic(s.obs)
            action = np.clip(action + s.explore_rng.normal(0.0, cfg.expl_noise * lim, size=self.agent.act_dim),
                             -lim, lim)
        step_env(self.env, self.replay, s, action)

    @torch.no_grad()
    def act_deterministic(self, obs: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(obs, dtype=self.dtype, device=self.device).unsqueeze(0)
        with autocast(self.cfg.precision, self.device):
            a = self.agent.actor(self.agent.normalizer(x))
        return a.float().squeeze(0).cpu().numpy()

    def merge_pending_obs(self) -> None:
        """Merge every rank's new observations into the normaliser, so all ranks normalise alike."""
        norm = self.agent.normalizer
        local = norm.batch_stats(np.asarray(self.s.pending_obs, dtype=np.float64).reshape(-1, self.agent.obs_dim))
        for stats in self.ctx.all_gather_1d(local):
            norm.merge_stats(stats)
        self.s.pending_obs.clear()

    def log_progress(self, step: int) -> bool:
        """Tell the callbacks; False when any callback on any rank asked to stop."""
        now = time.perf_counter()
        sps = (step - self.log_step) / max(now - self.log_time, 1e-9)
        self.log_step, self.log_time = step, now
        event = ProgressEvent(step=step, wall_s=self.s.wall_s(), episodes=self.s.episodes * self.W,
                              train_return=self.s.last_train_return, sps=sps, updates=self.td3.updates,
                              losses=self.td3.losses())
        return not self.ctx.any_true(self.cbs.on_progress(event) is False)

    def evaluate(self) -> EvalEvent:
        """Deterministic episodes on fixed seeds, shared out across ranks."""
        s, step = self.s, self.gstep()
        left = s.clock.switch("eval")
        self.cbs.on_eval_start(step, s.wall_s())
        seeds = eval_episode_seeds(self.seed, self.cfg.eval_episodes)[self.rank::self.W]
        mine = run_episodes(self.eval_env, self.act_deterministic, seeds)
        returns = [float(r) for part in self.ctx.all_gather_object(mine) for r in cast(list, part)]
        ev = EvalEvent(step=step, wall_s=s.wall_s(), return_mean=float(np.mean(returns)),
                       return_std=float(np.std(returns)), episodes=len(returns), returns=tuple(returns))
        s.final_eval = ev.return_mean
        s.best_eval = ev.return_mean if s.best_eval is None else max(s.best_eval, ev.return_mean)
        s.last_eval_step = step
        self.evals.append(ev)
        self.cbs.on_eval_end(ev)
        s.clock.switch(left)
        return ev
