"""The training loop for a seed batch: K seeds of one method × env in one process, read top to
bottom in `train_seed_batch` (set up, loop, save, close).

It is `spikerl.loop.train` run K times in lock-step: K environments, replay buffers, normalisers,
exploration RNGs and evaluation envs, one per seed and each seeded as that seed's single run seeds
it; acting and the TD3 update run once for all K (`spikerl.seed_batch`). The K replay buffers live
on the run's device as one tensor, filled by one copy per env step and sampled by one gather per
burst, and the K normalisers run as one op (`spikerl.batch_replay`); evaluation plays the K seeds'
episodes side by side, one batched actor call per step (`spikerl.batch_eval`). The envs are stepped
one after another: gymnasium's vector envs were slower here (`tools/vector_env_perf.py`). Every seed keeps its own
run folder, callbacks and checkpoint, in the single run's format. One process, one rank: a seed
batch is not data parallel. The native kernels cannot be vmapped: on engine 'torch' everything is
vmapped, on 'native' each seed's actor runs alone on the kernels and the rest is batched.

Checkpoints. Each seed's folder gets its own checkpoint.pt. So that a crash between two seeds'
files never leaves the batch at two different steps, all K are written as checkpoint.pt.next first
and only then renamed into place; a resume takes the latest step every seed has a file for,
finishing an interrupted rename.
"""
from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Sequence

import numpy as np
import torch

from . import native_lib
from .batch_eval import run_episodes_batched
from .batch_replay import BatchReplay, StackedNormalizer
from .callbacks import Callback, CallbackList, EndEvent, EvalEvent, ProgressEvent, RunInfo
from .checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, save_checkpoint
from .config import TD3Config
from .cuda_graphs import Capture, GraphedAct, GraphedBurst, capture_for
from .envs import act_limit_of, capture_env_state, make_env, restore_env_state, space_dim
from .evaluation import eval_episode_seeds
from .loop import Agent, TrainResult, build_agent, env_transition, params_sha256
from .loop_state import LoopState
from .method import MethodSpec
from .seed_batch import BatchedTD3, BurstInputs, SeedGenerators
from .seed_groups import SeedGroups, seed_batch_workers
from .seeding import capture_rng, seed_everything

__all__ = ["train_seed_batch", "NEXT_SUFFIX"]

NEXT_SUFFIX = ".next"
"""A seed's new checkpoint waits under checkpoint.pt.next until every seed of the batch has one."""


def train_seed_batch(spec: MethodSpec, env_id: str, seeds: Sequence[int], config: TD3Config,
                     actor_params: dict[str, Any] | None = None, *, run_dirs: Sequence[Path] | None = None,
                     callbacks: Sequence[Sequence[Callback]] | None = None, device: torch.device | str = "cpu",
                     resume: bool = False, cuda_graphs: bool = True, engine: str = "torch",
                     workers: int | None = None, fused_draws: bool | None = None,
                     graph_capture: Capture | None = None) -> list[TrainResult]:
    """Train `spec` on `env_id` once per seed, all seeds at once; one TrainResult per seed, in order.

    `run_dirs`: one folder per seed for its checkpoints (none without them). `callbacks`: one list per
    seed. `resume`: continue every seed from its folder's latest checkpoint of a common step.
    `cuda_graphs`: on a CUDA device, replay the update bursts and acting as CUDA graphs
    (`spikerl.cuda_graphs`; eager, with one warning, where capture fails).
    `engine`: 'torch' vmaps the actors too (pure torch, any device and dtype); 'native' runs each
    seed's actor alone on the native kernels where they are usable (fp32 CPU) and batches the rest.
    `workers`: on a CPU, the seeds are cut into this many groups, each trained on a thread of its
    own with one torch thread (`spikerl.seed_groups`); default torch's thread count on entry, which
    is restored on return. A CUDA device runs one group.
    `fused_draws`: each seed draws a burst's random numbers in one call (`BatchedTD3.draw_burst`);
    default on CUDA only. `graph_capture`: capture with this instead of `capture_for(device)` (the
    tests' CPU stand-in for a CUDA graph, `spikerl.cuda_graphs.EagerReplay`).
    Seed k's result is that of `spikerl.loop.train(spec, env_id, seeds[k], ...)` on the torch engine,
    up to the rounding of the batched matmuls (tests/test_seed_batch.py).
    """
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"a seed batch needs distinct seeds, got {seeds}")
    if run_dirs is not None and len(run_dirs) != len(seeds):
        raise ValueError(f"{len(run_dirs)} run folders for {len(seeds)} seeds")
    if callbacks is not None and len(callbacks) != len(seeds):
        raise ValueError(f"{len(callbacks)} callback lists for {len(seeds)} seeds")
    with native_lib.engine(engine):
        run = BatchRun(spec, env_id, seeds, config, actor_params, run_dirs=run_dirs, callbacks=callbacks,
                        device=torch.device(device), cuda_graphs=cuda_graphs, per_seed_actor=engine == "native",
                        workers=workers, fused_draws=fused_draws, graph_capture=graph_capture)
        try:
            if resume and run_dirs is not None:
                step = batch_resume_step([Path(d) for d in run_dirs])
                if step is not None:
                    run.restore()
            for s in run.seeds:
                s.cbs.on_train_start(run.run_info(s))
            for s in run.seeds:
                s.s.restart_clock()  # the meter has started: time and energy now cover the same span
            try:
                run.loop()  # act, step, store, learn, log, evaluate, checkpoint
                run.finish()  # final evaluation and checkpoint
            except KeyboardInterrupt:
                run.end("interrupted", "interrupted")
                raise
            except Exception as exc:
                run.end("failed", f"{type(exc).__name__}: {exc}")
                exc.__notes__ = getattr(exc, "__notes__", []) + [traceback.format_exc(limit=3)]
                raise
        finally:
            run.close()
        results = run.results()
    for s, r in zip(run.seeds, results, strict=True):
        s.cbs.on_train_end(EndEvent(step=r.steps, wall_s=r.wall_s, status="complete"))
    return results


@dataclass
class _Seed:
    """What one seed of the batch owns: everything its single run owns except the nets."""

    seed: int
    agent: Agent
    """Built as the single run builds it; its actor and critic are refreshed from the batch only
    for hashing the final parameters (training uses the stacked weights)."""
    env: Any
    eval_env: Any
    s: LoopState
    cbs: CallbackList
    run_dir: Path | None
    evals: list[EvalEvent]


class BatchRun:
    """One call of `train_seed_batch`: what it built, and the phases it runs in order (also driven
    piecewise by `bench.perf_seed_batch`)."""

    def __init__(self, spec: MethodSpec, env_id: str, seeds: list[int], cfg: TD3Config,
                 actor_params: dict[str, Any] | None, *, run_dirs: Sequence[Path] | None,
                 callbacks: Sequence[Sequence[Callback]] | None, device: torch.device, cuda_graphs: bool = True,
                 per_seed_actor: bool = False, workers: int | None = None, fused_draws: bool | None = None,
                 graph_capture: Capture | None = None):
        self.spec, self.env_id, self.cfg, self.device = spec, env_id, cfg, device
        self.actor_params = dict(spec.actor_params(env_id) if actor_params is None else actor_params)
        self.t = 0
        self.finished = False
        self.log_step, self.log_time = 0, 0.0
        self.seeds: list[_Seed] = []
        for k, seed in enumerate(seeds):
            seed_everything(seed)  # each seed's nets start as in its single run
            env, eval_env = make_env(env_id, cfg.max_ep_len), make_env(env_id, cfg.max_ep_len)
            obs_dim = space_dim(env.observation_space)
            self.act_dim = space_dim(env.action_space)
            self.lim = act_limit_of(env)
            agent = build_agent(spec, env_id, cfg, self.actor_params, obs_dim, self.act_dim, self.lim, device)
            self.dtype = next(agent.critic.parameters()).dtype
            env.action_space.seed(seed)
            obs, _ = env.reset(seed=seed)
            state = LoopState(obs=obs, explore_rng=np.random.default_rng(seed))
            self.seeds.append(_Seed(seed, agent, env, eval_env, state,
                                    CallbackList(callbacks[k] if callbacks is not None else ()),
                                    Path(run_dirs[k]) if run_dirs is not None else None, []))
        self.obs_dim = obs_dim
        # every seed's replay buffer on the device, and its normaliser over stacked rows
        self.replay = BatchReplay(obs_dim, self.act_dim, cfg.replay_size, seeds, device, self.dtype)
        self.norm = StackedNormalizer([x.agent.normalizer for x in self.seeds])
        self.act_obs: torch.Tensor | None = None
        """The K observations the seeds act on next, on the device (from the last env step's copy)."""
        self.gens = SeedGenerators.seeded(seeds, device)
        actors, critics = [x.agent.actor for x in self.seeds], [x.agent.critic for x in self.seeds]
        workers = seed_batch_workers(device, len(seeds), workers or torch.get_num_threads())
        self.torch_threads = torch.get_num_threads()  # restored by close()
        self.td3: BatchedTD3 | SeedGroups
        if workers > 1:
            self.td3 = SeedGroups(actors, critics, cfg, self.lim, device, self.gens, workers, per_seed_actor,
                                  fused_draws)
        else:
            self.td3 = BatchedTD3(actors, critics, cfg, self.lim, device, self.gens, per_seed_actor=per_seed_actor,
                                  fused_draws=fused_draws)
        capture = graph_capture if graph_capture is not None else capture_for(device, cuda_graphs)
        self.bursts, self.acting = GraphedBurst(self.td3, capture), GraphedAct(self.td3, capture)
        if workers > 1:
            torch.set_num_threads(1)  # one per group (spikerl.seed_groups); the last step: close() restores it

    # ---- checkpoint and resume

    def enter(self, phase: str) -> str:
        """Switch every seed's phase clock (the batch's phases are the process's) and tell the
        callbacks; returns the phase left."""
        left = "other"
        for x in self.seeds:
            left = x.s.clock.switch(phase)
            x.cbs.on_phase(phase, x.s.wall_s())
        return left

    def save(self) -> None:
        """Every seed's checkpoint in its single run's format, all K written before any replaces the last."""
        left = self.enter("other")  # checkpoint writes are not training
        step = self.t
        pending = []
        for k, x in enumerate(self.seeds):
            assert x.run_dir is not None
            path = x.run_dir / CHECKPOINT_NAME
            save_checkpoint(path.with_name(CHECKPOINT_NAME + NEXT_SUFFIX), {
                "method": self.spec.name, "env_id": self.env_id, "seed": x.seed, "world_size": 1, "rank": 0,
                "config": self.cfg.to_dict(), "actor_params": self.actor_params,
                "td3": self.td3.seed_state_dict(k), "normalizer": x.agent.normalizer.state_dict(),
                "replay": self.replay.seed_state_dict(k), "env": capture_env_state(x.env), "loop": x.s.state_dict(),
                "rng": {**capture_rng(), "torch": self.gens.generators[k].get_state()}, "callbacks": x.cbs.state_dict(),
                "seed_batch": {"seeds": [y.seed for y in self.seeds], "index": k},
            })
            pending.append(path)
        for path in pending:
            os.replace(path.with_name(CHECKPOINT_NAME + NEXT_SUFFIX), path)
        for x, path in zip(self.seeds, pending, strict=True):
            x.cbs.on_checkpoint(step, x.s.wall_s(), path)
        self.enter(left)

    def restore(self) -> None:
        states = []
        for x in self.seeds:
            assert x.run_dir is not None
            state = load_checkpoint(x.run_dir / CHECKPOINT_NAME, map_location=self.device)
            origin = (state.get("method"), state.get("env_id"), state.get("world_size"), state.get("seed"))
            if origin != (self.spec.name, self.env_id, 1, x.seed):
                raise CheckpointError(f"{x.run_dir / CHECKPOINT_NAME} was written by {origin[0]}/{origin[1]} seed "
                                      f"{origin[3]} at world size {origin[2]}, not {self.spec.name}/{self.env_id} "
                                      f"seed {x.seed} at 1")
            states.append(state)
        self.td3.load_seed_state_dicts([st["td3"] for st in states])
        self.gens.load_state_dicts([st["rng"]["torch"] for st in states])
        self.replay.load_seed_state_dicts([st["replay"] for st in states])
        self.act_obs = None
        for x, st in zip(self.seeds, states, strict=True):
            x.agent.normalizer.load_state_dict(st["normalizer"])
            restore_env_state(x.env, st["env"], x.seed)
            x.s.load_state_dict(st["loop"])
            x.cbs.load_state_dict(st["callbacks"])
        self.t = self.seeds[0].s.t

    # ---- the phases

    def run_info(self, x: _Seed) -> RunInfo:
        return RunInfo(run_dir=x.run_dir, method=self.spec.name, env_id=self.env_id, seed=x.seed,
                       total_steps=self.cfg.total_steps, rank=0, local_rank=0, world_size=1, device=self.device,
                       start_step=self.t, start_wall_s=x.s.wall_before_s, resumed=self.t > 0)

    def loop(self) -> None:
        cfg = self.cfg
        n_updates = max(1, round(cfg.update_every * cfg.updates_per_step))
        next_log = _next_multiple(self.t, cfg.log_every)
        next_eval = _next_multiple(self.t, cfg.eval_every)
        next_ckpt = _next_multiple(self.t, cfg.checkpoint_every) if cfg.checkpoint_every else None
        self.log_step, self.log_time = self.t, time.perf_counter()
        has_dirs = all(x.run_dir is not None for x in self.seeds)
        self.enter("train")
        while self.t < cfg.total_steps:
            self.collect_step()
            if self.t % cfg.obs_norm_every == 0:
                self.merge_pending_obs()
            if self.t % cfg.update_every == 0 and self.t >= cfg.update_after:
                self.update(n_updates)
            step = self.t
            if step >= next_log:
                next_log = _next_multiple(step, cfg.log_every)
                if not self.log_progress(step):
                    break
            if step >= next_eval:
                next_eval = _next_multiple(step, cfg.eval_every)
                self.evaluate()
            if next_ckpt is not None and step >= next_ckpt and has_dirs:
                next_ckpt = _next_multiple(step, cfg.checkpoint_every)
                self.save()

    def finish(self) -> None:
        self.enter("other")  # the final evaluation's surroundings and checkpoint
        self.finished = self.t >= self.cfg.total_steps
        if any(x.s.last_eval_step != self.t for x in self.seeds):
            self.evaluate()
        if all(x.run_dir is not None for x in self.seeds) and self.cfg.checkpoint_every:
            self.save()

    def end(self, status: str, error: str) -> None:
        for x in self.seeds:
            x.cbs.on_train_end(EndEvent(step=self.t, wall_s=x.s.wall_s(), status=status, error=error))

    def close(self) -> None:
        if isinstance(self.td3, SeedGroups):
            self.td3.close()
        torch.set_num_threads(self.torch_threads)
        for x in self.seeds:
            x.env.close()
            x.eval_env.close()

    def results(self) -> list[TrainResult]:
        out = []
        for k, x in enumerate(self.seeds):
            state = self.td3.seed_state_dict(k)
            x.agent.actor.load_state_dict(state["actor"])
            x.agent.critic.load_state_dict(state["critic"])
            sha = params_sha256(x.agent.actor, x.agent.critic, x.agent.normalizer)
            phase_s = x.s.phase_s()
            out.append(TrainResult(steps=self.t, wall_s=sum(phase_s.values()), phase_s=phase_s,
                                   final_return_mean=x.s.final_eval,
                                   best_return_mean=x.s.best_eval, status="complete", updates=self.td3.updates,
                                   param_sha256=sha, param_sha256_by_rank=[sha], evals=x.evals))
        return out

    # ---- one env step of every seed, and what the loop does between them

    def collect_step(self) -> None:
        cfg, lim = self.cfg, self.lim
        if self.t < cfg.start_steps:
            actions = [x.env.action_space.sample() if cfg.start_actions == "uniform" else
                       np.clip(x.s.explore_rng.normal(0.0, cfg.start_noise * lim, size=self.act_dim), -lim, lim)
                       for x in self.seeds]
        else:
            a = self.act_all()
            actions = [np.clip(a[k] + x.s.explore_rng.normal(0.0, cfg.expl_noise * lim, size=self.act_dim), -lim, lim)
                       for k, x in enumerate(self.seeds)]
        self.replay.staging()  # the last step's copy out of the staging rows is done
        for k, (x, action) in enumerate(zip(self.seeds, actions, strict=True)):
            obs, next_obs, reward, terminated = env_transition(x.env, x.s, action)
            self.replay.fill(k, obs, action, reward, next_obs, terminated, x.s.obs)
        self.act_obs = self.replay.push()  # one host->device copy: the transitions and the next acting obs
        self.t += 1

    @torch.no_grad()
    def act_all(self) -> np.ndarray:
        """Every seed's deterministic action [K, act_dim] for its current observation, in one call."""
        obs = self.act_obs
        if obs is None:  # before the first step (or after a resume): from the seeds' loop states
            obs = torch.as_tensor(np.stack([x.s.obs for x in self.seeds]), device=self.device)
        x = self.norm(obs.to(self.dtype).unsqueeze(1))
        return self.acting.run(x, self.td3.draw_act(1)).float()[:, 0].cpu().numpy()

    def merge_pending_obs(self) -> None:
        for x in self.seeds:
            norm = x.agent.normalizer
            norm.merge_stats(norm.batch_stats(np.asarray(x.s.pending_obs, dtype=np.float64).reshape(-1, self.obs_dim)))
            x.s.pending_obs.clear()

    def update(self, n: int) -> None:
        B = self.cfg.batch_size
        rows = self.replay.sample_stacked(n, B)  # [K, n·B, ...]: one gather on the device
        # every seed's normaliser over all its rows (as TD3.update_many calls it), in one op
        normed = self.norm(torch.cat([rows.obs, rows.next_obs], dim=1))
        draws = self.td3.draw_burst(n, B, self.act_dim)
        self.bursts.run(BurstInputs(obs=normed[:, :n * B], act=rows.act, rew=rows.rew, next_obs=normed[:, n * B:],
                                    terminated=rows.terminated, draws=draws))

    def log_progress(self, step: int) -> bool:
        """Tell every seed's callbacks; False when any of them asked to stop (the batch stops together)."""
        now = time.perf_counter()
        sps = (step - self.log_step) / max(now - self.log_time, 1e-9)  # each seed's own env steps/s
        self.log_step, self.log_time = step, now
        keep_going = True
        for k, x in enumerate(self.seeds):
            event = ProgressEvent(step=step, wall_s=x.s.wall_s(), episodes=x.s.episodes,
                                  train_return=x.s.last_train_return, sps=sps, updates=self.td3.updates,
                                  losses=self.td3.losses(k))
            keep_going &= x.cbs.on_progress(event) is not False
        return keep_going

    def evaluate(self) -> None:
        """Every seed's deterministic episodes on its own eval env and fixed seeds, the K seeds side
        by side with one batched actor forward per step (`spikerl.batch_eval`); then every seed's
        evaluation ends at once. One meter measures the batch, so each seed's eval row is written
        after all K have evaluated and carries the same share of the round's energy."""
        step = self.t
        left = [x.s.clock.switch("eval") for x in self.seeds]  # every seed's clock: the process evaluates
        for x in self.seeds:
            x.cbs.on_eval_start(step, x.s.wall_s())
        returns = run_episodes_batched([x.eval_env for x in self.seeds], self.eval_policy,
                                       [eval_episode_seeds(x.seed, self.cfg.eval_episodes) for x in self.seeds])
        for x, rets in zip(self.seeds, returns, strict=True):
            ev = EvalEvent(step=step, wall_s=x.s.wall_s(), return_mean=float(np.mean(rets)),
                           return_std=float(np.std(rets)), episodes=len(rets), returns=tuple(rets))
            s = x.s
            s.final_eval = ev.return_mean
            s.best_eval = ev.return_mean if s.best_eval is None else max(s.best_eval, ev.return_mean)
            s.last_eval_step = step
            x.evals.append(ev)
            x.cbs.on_eval_end(ev)
        for x, phase in zip(self.seeds, left, strict=True):
            x.s.clock.switch(phase)

    @torch.no_grad()
    def eval_policy(self, obs: np.ndarray, playing: np.ndarray) -> np.ndarray:
        """Every seed's deterministic action [K, act_dim] on obs [K, obs_dim], in one (graphed) call;
        a seed that is not playing draws no Poisson spikes (its stream stays its single run's)."""
        o = torch.as_tensor(obs, dtype=self.dtype, device=self.device).unsqueeze(1)
        return self.acting.run(self.norm(o), self.td3.draw_act(1, playing.tolist())).float()[:, 0].cpu().numpy()


def _next_multiple(step: int, every: int) -> int:
    return (step // every + 1) * every


def _checkpoint_steps(run_dirs: Sequence[Path]) -> list[dict[int, Path]]:
    """Per seed folder, the step of each checkpoint it holds (checkpoint.pt and checkpoint.pt.next)."""
    found: list[dict[int, Path]] = []
    for d in run_dirs:
        steps: dict[int, Path] = {}
        for path in (Path(d) / CHECKPOINT_NAME, Path(d) / (CHECKPOINT_NAME + NEXT_SUFFIX)):
            if path.is_file():
                steps.setdefault(int(load_checkpoint(path)["loop"]["t"]), path)
        found.append(steps)
    return found


def batch_common_step(run_dirs: Sequence[Path], found: list[dict[int, Path]] | None = None,
                      absent: Collection[Path] = ()) -> int | None:
    """The latest step every seed's folder has a checkpoint of, or None when no folder has any;
    CheckpointError when some do and no step is common. Reads only (bench's resume checks call it
    before anything is written). `absent`: folders counted as holding no checkpoint, unread (seeds
    `--restart-seed` will start again from step 0)."""
    if found is None:
        read = iter(_checkpoint_steps([d for d in run_dirs if d not in absent]))
        found = [{} if d in absent else next(read) for d in run_dirs]
    if not any(found):
        return None
    common = set.intersection(*(set(f) for f in found))
    if not common:
        raise CheckpointError(f"the seeds' folders hold no checkpoint of a common step "
                              f"({', '.join(f'{d}: {sorted(f)}' for d, f in zip(run_dirs, found, strict=True))}); "
                              "resume them as they were started, or start again")
    return max(common)


def batch_resume_step(run_dirs: Sequence[Path]) -> int | None:
    """The step a seed batch resumes from (`batch_common_step`), finishing the renames of an
    interrupted save so every seed's checkpoint.pt holds it."""
    found = _checkpoint_steps(run_dirs)
    step = batch_common_step(run_dirs, found)
    if step is None:
        return None
    for d, f in zip(run_dirs, found, strict=True):
        if f[step].name != CHECKPOINT_NAME:
            os.replace(f[step], Path(d) / CHECKPOINT_NAME)
        (Path(d) / (CHECKPOINT_NAME + NEXT_SUFFIX)).unlink(missing_ok=True)
    return step
