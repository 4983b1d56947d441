"""The training loop: one function, read top to bottom (set up, loop, save, close).

Every method trains here. The loop owns the environment, replay buffer, TD3 update schedule,
evaluation, checkpoints and RNG; a method contributes only its actor, normaliser and
hyperparameters (`MethodSpec`). Meters and recorders attach through callbacks.
"""
from __future__ import annotations

import hashlib
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .callbacks import Callback, CallbackList, EndEvent, EvalEvent, ProgressEvent, RunInfo
from .checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, save_checkpoint
from .config import TD3Config
from .critic import TwinCritic
from .distributed import DistContext, global_steps, split_budget
from .envs import act_limit_of, capture_env_state, make_env, restore_env_state
from .evaluation import eval_episode_seeds, run_episodes
from .method import ActorContext, MethodSpec
from .precision import autocast
from .replay import ReplayBuffer, rng_from_tensor, rng_state_to_tensor
from .seeding import capture_rng, restore_rng, seed_everything
from .td3 import TD3


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


@dataclass
class Agent:
    """The learnable parts of one method on one env."""

    actor: torch.nn.Module
    normalizer: torch.nn.Module
    critic: TwinCritic
    act_limit: float
    obs_dim: int
    act_dim: int


def build_agent(spec: MethodSpec, env_id: str, config: TD3Config, actor_params: dict[str, Any],
                obs_dim: int, act_dim: int, act_limit: float, device: torch.device) -> Agent:
    ctx = ActorContext(obs_dim=obs_dim, act_dim=act_dim, act_limit=act_limit, env_id=env_id, params=actor_params)
    actor = spec.build_actor(ctx).to(device)
    normalizer = spec.build_normalizer(ctx).to(device)
    critic = TwinCritic(obs_dim, act_dim, config.critic_hidden).to(device)
    return Agent(actor, normalizer, critic, act_limit, obs_dim, act_dim)


def checkpoint_path(run_dir: Path, rank: int = 0, world_size: int = 1, step: int = 0) -> Path:
    """One process: RUN/.../checkpoint.pt, replaced atomically. Data parallel: one file per rank
    and step, `checkpoint.step<S>.rank<r>.pt`; older steps are deleted only after every rank has
    written the new one, so a rank that dies mid-save never leaves the job without a full set."""
    if world_size == 1:
        return run_dir / CHECKPOINT_NAME
    return run_dir / f"checkpoint.step{step}.rank{rank}.pt"


def checkpoint_steps(run_dir: Path, rank: int, world_size: int) -> set[int]:
    if world_size == 1:
        return {0} if (run_dir / CHECKPOINT_NAME).exists() else set()
    steps = set()
    for p in run_dir.glob(f"checkpoint.step*.rank{rank}.pt"):
        try:
            steps.add(int(p.name.split(".")[1][len("step"):]))
        except ValueError:
            continue
    return steps


def complete_checkpoint_step(run_dir: Path, world_size: int) -> int | None:
    """The latest step for which every rank's checkpoint exists (None if there is none)."""
    common = set.intersection(*(checkpoint_steps(run_dir, r, world_size) for r in range(world_size)))
    return max(common) if common else None


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
          resume: bool = False, ctx: DistContext | None = None) -> TrainResult:
    cfg = config
    device = torch.device(device)
    ctx = ctx or DistContext(device=device)
    actor_params = dict(spec.actor_params(env_id) if actor_params is None else actor_params)
    cbs = CallbackList(callbacks)
    W, rank = ctx.world_size, ctx.rank
    local_total = split_budget(cfg.total_steps, W, rank)
    # Collective work (updates, normaliser merges, evaluations) happens only at local steps every
    # rank reaches, so ranks holding one extra step of the remainder never wait alone.
    lockstep_total = cfg.total_steps // W

    # ---- set up: identical start weights everywhere, per-rank exploration randomness
    seed_everything(seed)
    env = make_env(env_id, cfg.max_ep_len)
    eval_env = make_env(env_id, cfg.max_ep_len)
    obs_dim = int(np.prod(env.observation_space.shape))
    act_dim = int(np.prod(env.action_space.shape))
    lim = act_limit_of(env)
    agent = build_agent(spec, env_id, cfg, actor_params, obs_dim, act_dim, lim, device)
    for m in (agent.actor, agent.critic, agent.normalizer):
        ctx.broadcast_module_(m)
    td3 = TD3(agent.actor, agent.critic, agent.normalizer, cfg, lim, device,
              grad_sync=ctx.average_grads_ if ctx.active else None)
    rank_seed = seed + 100_003 * rank
    seed_everything(rank_seed)
    explore_rng = np.random.default_rng(rank_seed)
    replay = ReplayBuffer(obs_dim, act_dim, cfg.replay_size, seed=rank_seed, device=device)
    env.action_space.seed(rank_seed)
    obs, _ = env.reset(seed=rank_seed)
    t, episodes, ep_ret, last_train_return, wall_before = 0, 0, 0.0, None, 0.0
    best_eval: float | None = None
    final_eval: float | None = None
    last_eval_step = -1
    pending_obs: list[np.ndarray] = []
    evals: list[EvalEvent] = []

    resume_step = complete_checkpoint_step(run_dir, W) if resume and run_dir is not None else None
    if resume and run_dir is not None and resume_step is None:
        other = list(run_dir.glob("checkpoint*.pt"))
        if other:
            raise CheckpointError(f"{run_dir} holds checkpoints ({other[0].name}) of another world size "
                                  f"than {W}, or an incomplete set; resume with the world size that wrote them")
    if resume_step is not None:
        ckpt_file = checkpoint_path(run_dir, rank, W, resume_step)
        state = load_checkpoint(ckpt_file, map_location=device)
        if state["world_size"] != W or state["env_id"] != env_id or state["method"] != spec.name:
            raise CheckpointError(f"{ckpt_file} was written by {state['method']}/{state['env_id']} at world size "
                                  f"{state['world_size']}, not {spec.name}/{env_id} at {W}")
        td3.load_state_dict(state["td3"])
        agent.normalizer.load_state_dict(state["normalizer"])
        replay.load_state_dict(state["replay"])
        restore_env_state(env, state["env"], rank_seed)
        obs = state["obs"].numpy().copy()
        pending_obs = list(state["pending_obs"].numpy())
        explore_rng = rng_from_tensor(state["explore_rng"])
        c = state["counters"]
        t, episodes, ep_ret, last_train_return = c["t"], c["episodes"], c["ep_ret"], c["last_train_return"]
        wall_before, best_eval, final_eval, last_eval_step = (c["wall_s"], c["best_eval"], c["final_eval"],
                                                              c["last_eval_step"])
        cbs.load_state_dict(state["callbacks"])
        restore_rng(state["rng"])
    start_step = global_steps(t, cfg.total_steps, W)

    finished = False

    def gstep() -> int:
        # Once every rank is done the budget is met exactly, whatever each rank's share was.
        return cfg.total_steps if finished else global_steps(t, cfg.total_steps, W)

    t0 = time.perf_counter()

    def wall_s() -> float:
        return wall_before + time.perf_counter() - t0

    def evaluate() -> EvalEvent:
        nonlocal best_eval, final_eval, last_eval_step
        step = gstep()
        cbs.on_eval_start(step, wall_s())
        seeds = eval_episode_seeds(seed, cfg.eval_episodes)[rank::W]
        mine = run_episodes(eval_env, act_deterministic, seeds)
        returns = [r for part in ctx.all_gather_object(mine) for r in part]  # type: ignore[union-attr]
        ev = EvalEvent(step=step, wall_s=wall_s(), return_mean=float(np.mean(returns)),
                       return_std=float(np.std(returns)), episodes=len(returns), returns=tuple(returns))
        final_eval = ev.return_mean
        best_eval = ev.return_mean if best_eval is None else max(best_eval, ev.return_mean)
        last_eval_step = step
        evals.append(ev)
        cbs.on_eval_end(ev)
        return ev

    @torch.no_grad()
    def act_deterministic(o: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(o, dtype=torch.float32, device=device).unsqueeze(0)
        with autocast(cfg.precision, device):
            a = agent.actor(agent.normalizer(x))
        return a.float().squeeze(0).cpu().numpy()

    def merge_pending_obs() -> None:
        local = agent.normalizer.batch_stats(np.asarray(pending_obs, dtype=np.float64).reshape(-1, obs_dim))
        for stats in ctx.all_gather_1d(local):
            agent.normalizer.merge_stats(stats)
        pending_obs.clear()

    def save() -> None:
        assert run_dir is not None
        path = checkpoint_path(run_dir, rank, W, gstep())
        save_checkpoint(path, {
            "method": spec.name, "env_id": env_id, "seed": seed, "world_size": W, "rank": rank,
            "config": cfg.to_dict(), "actor_params": actor_params,
            "td3": td3.state_dict(), "normalizer": agent.normalizer.state_dict(), "replay": replay.state_dict(),
            "env": capture_env_state(env), "obs": torch.from_numpy(np.asarray(obs, dtype=np.float64)),
            "pending_obs": torch.from_numpy(np.asarray(pending_obs, dtype=np.float64).reshape(-1, obs_dim)),
            "explore_rng": rng_state_to_tensor(explore_rng), "rng": capture_rng(),
            "counters": {"t": t, "episodes": episodes, "ep_ret": ep_ret, "last_train_return": last_train_return,
                         "wall_s": wall_s(), "best_eval": best_eval, "final_eval": final_eval,
                         "last_eval_step": last_eval_step},
            "callbacks": cbs.state_dict(),
        })
        if ctx.active:
            ctx.barrier()  # every rank has its file for this step: older sets can go
            for old_step in checkpoint_steps(run_dir, rank, W) - {gstep()}:
                checkpoint_path(run_dir, rank, W, old_step).unlink(missing_ok=True)
        cbs.on_checkpoint(gstep(), wall_s(), path)

    info = RunInfo(run_dir=run_dir, method=spec.name, env_id=env_id, seed=seed, total_steps=cfg.total_steps,
                   rank=rank, local_rank=ctx.local_rank, world_size=W, device=device, start_step=start_step,
                   start_wall_s=wall_before, resumed=start_step > 0)
    cbs.on_train_start(info)
    n_updates = max(1, round(cfg.update_every * cfg.updates_per_step))
    next_log = (gstep() // cfg.log_every + 1) * cfg.log_every
    next_eval = (gstep() // cfg.eval_every + 1) * cfg.eval_every
    next_ckpt = (gstep() // cfg.checkpoint_every + 1) * cfg.checkpoint_every if cfg.checkpoint_every else None
    log_step, log_time = gstep(), time.perf_counter()
    noise_std = cfg.expl_noise * lim

    try:
        # ---- the loop: act, step, store, learn, log, evaluate, checkpoint
        while t < local_total:
            if gstep() < cfg.start_steps:
                action = env.action_space.sample()
            else:
                action = act_deterministic(obs)
                action = np.clip(action + explore_rng.normal(0.0, noise_std, size=act_dim), -lim, lim)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            replay.add(obs, action, reward, next_obs, terminated)  # truncation is not terminal: it bootstraps
            pending_obs.append(obs)
            ep_ret += float(reward)
            obs = next_obs
            t += 1
            if terminated or truncated:
                episodes += 1
                last_train_return = ep_ret
                obs, _ = env.reset()
                ep_ret = 0.0

            if t > lockstep_total:
                continue  # the remainder steps of the budget: collect only
            if t % cfg.obs_norm_every == 0:
                merge_pending_obs()
            if t % cfg.update_every == 0 and gstep() >= cfg.update_after:
                # the buffer does not change during a burst, so all its batches can be drawn first
                td3.update_many(replay.sample_many(n_updates, cfg.batch_size))
            step = gstep()
            if step >= next_log:
                now = time.perf_counter()
                sps = (step - log_step) / max(now - log_time, 1e-9)
                log_step, log_time = step, now
                next_log = (step // cfg.log_every + 1) * cfg.log_every
                event = ProgressEvent(step=step, wall_s=wall_s(), episodes=episodes * W,
                                      train_return=last_train_return, sps=sps, updates=td3.updates,
                                      losses=td3.losses())
                if ctx.any_true(cbs.on_progress(event) is False):
                    break
            if step >= next_eval:
                next_eval = (step // cfg.eval_every + 1) * cfg.eval_every
                evaluate()
            if next_ckpt is not None and step >= next_ckpt and run_dir is not None:
                next_ckpt = (step // cfg.checkpoint_every + 1) * cfg.checkpoint_every
                save()

        # ---- close: every rank has finished its share; final evaluation and checkpoint
        ctx.barrier()
        finished = t >= local_total
        if last_eval_step != gstep():
            evaluate()
        if run_dir is not None and cfg.checkpoint_every:
            save()
    except KeyboardInterrupt:
        cbs.on_train_end(EndEvent(step=gstep(), wall_s=wall_s(), status="interrupted", error="interrupted"))
        raise
    except Exception as exc:
        err = f"{type(exc).__name__}: {exc}"
        cbs.on_train_end(EndEvent(step=gstep(), wall_s=wall_s(), status="failed", error=err))
        exc.__notes__ = getattr(exc, "__notes__", []) + [traceback.format_exc(limit=3)]
        raise
    finally:
        env.close()
        eval_env.close()

    sha = params_sha256(agent.actor, agent.critic, agent.normalizer)
    result = TrainResult(steps=gstep(), wall_s=wall_s(), final_return_mean=final_eval, best_return_mean=best_eval,
                         status="complete", updates=td3.updates, param_sha256=sha,
                         param_sha256_by_rank=[str(x) for x in ctx.all_gather_object(sha)], evals=evals,
                         world_size=W, backend=ctx.backend)
    cbs.on_train_end(EndEvent(step=result.steps, wall_s=result.wall_s, status="complete"))
    return result
