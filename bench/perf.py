"""Throughput benchmark: everything measured side by side in ONE process.

Prints raw env steps/s (random actions), TD3 update ms at batch 100 and action ms at batch 1 for
every method, and the training loop's env steps/s while one update runs per env step, with the
ratio training-loop / raw-env. The thread count is printed because it changes CPU timings a lot.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from baselines.registry import METHODS, get_method
from bench.perf_seed_batch import seed_batch_row
from bench.run.plan import UsageError
from spikerl import native, native_lib
from spikerl.callbacks import Callback, ProgressEvent
from spikerl.checkpoint import CheckpointError, load_checkpoint
from spikerl.config import TD3Config
from spikerl.envs import act_limit_of, make_env, space_dim
from spikerl.loop import build_agent, train
from spikerl.precision import autocast
from spikerl.replay import ReplayBuffer
from spikerl.td3 import TD3, UpdateHook


def add_perf_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--methods", default="spikerl,popsan,dsrl,mlp")
    p.add_argument("--env", default="HalfCheetah-v4")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1, the issue's setting); a seed "
                   "batch on a CPU trains its K seeds in this many groups, one thread each, against a single "
                   "seed on this many torch threads")
    p.add_argument("--loop-steps", type=int, default=2_000, help="measured training-loop steps per method")
    p.add_argument("--precision", choices=("fp32", "bf16", "method"), default="fp32",
                   help="precision of the update timings (default fp32; 'method' uses each recipe's)")
    p.add_argument("--engines", default="native",
                   help="comma-separated engines of the spiking layers to time side by side: native, torch "
                        "(default native; e.g. native,torch compares them method by method)")
    p.add_argument("--json", action="store_true", help="also print one JSON line with every number")
    p.add_argument("--seed-batch", type=int, default=1, metavar="K",
                   help="also time K seeds of each method trained in one process (spikerl.batch_loop) on each "
                        "engine: update and action ms of all K, loop env steps/s per seed and aggregate")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="device of the update/action timings and the training loops (default cpu; cuda needs "
                        "--engines torch)")
    p.add_argument("--checkpoint", metavar="CKPT",
                   help="time update and action on the net, normaliser and replay of this checkpoint.pt "
                        "(a trained net spikes more than a fresh one) instead of the loop benchmark")


def raw_env_sps(env_id: str, steps: int = 20_000, seed: int = 0) -> float:
    env = make_env(env_id)
    env.action_space.seed(seed)
    env.reset(seed=seed)
    actions = [env.action_space.sample() for _ in range(1000)]
    t0 = time.perf_counter()
    for i in range(steps):
        _, _, term, trunc, _ = env.step(actions[i % 1000])
        if term or trunc:
            env.reset()
    return steps / (time.perf_counter() - t0)


def median_ms(fn, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


def _time_update_and_action(td3: TD3, agent, replay: ReplayBuffer, cfg: TD3Config, dev: torch.device,
                            x: torch.Tensor, repeats: int) -> tuple[float, float]:
    # Two updates per measurement so the delayed actor step is included once, and through
    # update_many, as the training loop runs them (their targets computed in one pass).
    def two_updates() -> None:
        td3.update_many(replay.sample_many(2, 100))
        if dev.type == "cuda":
            torch.cuda.synchronize()

    update_ms = median_ms(two_updates, repeats, max(1, repeats // 10)) / 2

    @torch.no_grad()
    def act() -> None:  # what the loop does per env step: host obs in, host action out
        with autocast(cfg.precision, dev):
            agent.actor(agent.normalizer(x.to(dev))).float().cpu().numpy()

    action_ms = median_ms(act, 5 * repeats, max(1, repeats // 2))
    return update_ms, action_ms


def update_td3(method: str, env_id: str, precision: str | None, device: str = "cpu"
               ) -> tuple[TD3, ReplayBuffer]:
    """A freshly initialised `method` (TD3 and all) and a replay of 5,000 random transitions, its
    normaliser fitted to them: what `update_and_action_ms` times (tools/kernel_profile too)."""
    td3, replay, *_ = _fresh_update_setup(method, env_id, precision, device)
    return td3, replay


def _fresh_update_setup(method: str, env_id: str, precision: str | None, device: str
                        ) -> tuple[TD3, ReplayBuffer, Any, TD3Config, np.random.Generator]:
    spec = get_method(method)
    env = make_env(env_id)
    cfg_d = {**TD3Config().to_dict(), **spec.td3_params(env_id), "replay_size": 10_000}
    if precision is not None:
        cfg_d["precision"] = precision
    cfg = TD3Config.from_dict(cfg_d)
    obs_dim, act_dim = space_dim(env.observation_space), space_dim(env.action_space)
    lim = act_limit_of(env)
    dev = torch.device(device)
    agent = build_agent(spec, env_id, cfg, spec.actor_params(env_id), obs_dim, act_dim, lim, dev)
    td3 = TD3(agent.actor, agent.critic, agent.normalizer, cfg, lim, dev)
    replay = ReplayBuffer(obs_dim, act_dim, 10_000, seed=0, device=dev)
    rng = np.random.default_rng(0)
    for _ in range(5_000):
        replay.add(rng.normal(size=obs_dim), rng.uniform(-lim, lim, act_dim), rng.normal(), rng.normal(size=obs_dim),
                   False)
    agent.normalizer.update(replay.obs[:5_000].astype(np.float64))
    return td3, replay, agent, cfg, rng


def update_and_action_ms(method: str, env_id: str, precision: str | None, repeats: int = 100,
                         device: str = "cpu") -> tuple[float, float]:
    """Update and action ms of a freshly initialised net on random replay data."""
    td3, replay, agent, cfg, rng = _fresh_update_setup(method, env_id, precision, device)
    x = torch.as_tensor(rng.normal(size=agent.obs_dim), dtype=torch.float32).unsqueeze(0)
    return _time_update_and_action(td3, agent, replay, cfg, torch.device(device), x, repeats)


def load_checkpoint_agent(path: str, precision: str | None = None
                          ) -> tuple[str, str, TD3Config, Any, TD3, ReplayBuffer]:
    """(method, env, config, agent, TD3, replay) restored from a one-process checkpoint, on the CPU."""
    state = load_checkpoint(Path(path))
    if state.get("world_size") != 1:
        raise CheckpointError(f"{path}: needs a one-process checkpoint (checkpoint.pt), "
                              f"not one rank of {state.get('world_size')}")
    try:  # nothing in the file is trusted: any inconsistency is one line, not a traceback
        method, env_id = state["method"], state["env_id"]
        spec = get_method(method)
        env = make_env(env_id)
        cfg_d = dict(state["config"])
        if precision is not None:
            cfg_d["precision"] = precision
        cfg = TD3Config.from_dict(cfg_d)
        obs_dim, act_dim = space_dim(env.observation_space), space_dim(env.action_space)
        lim = act_limit_of(env)
        dev = torch.device("cpu")
        agent = build_agent(spec, env_id, cfg, state["actor_params"], obs_dim, act_dim, lim, dev)
        td3 = TD3(agent.actor, agent.critic, agent.normalizer, cfg, lim, dev)
        td3.load_state_dict(state["td3"])
        agent.normalizer.load_state_dict(state["normalizer"])
        replay = ReplayBuffer(obs_dim, act_dim, cfg.replay_size, seed=0, device=dev)
        replay.load_state_dict(state["replay"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a usable checkpoint ({type(exc).__name__}: {str(exc)[:120]})") from None
    return method, env_id, cfg, agent, td3, replay


def checkpoint_update_and_action_ms(path: str, precision: str | None, repeats: int = 100
                                    ) -> tuple[str, str, float, float]:
    """(method, env, update ms, action ms) of the net, normaliser and replay in a one-process
    checkpoint: a trained spiking net fires more than a fresh one, and the kernels' cost follows."""
    method, env_id, cfg, agent, td3, replay = load_checkpoint_agent(path, precision)
    x = torch.from_numpy(replay.obs[: 1]).float()
    upd, act = _time_update_and_action(td3, agent, replay, cfg, torch.device("cpu"), x, repeats)
    return method, env_id, upd, act


class _SpsProbe(Callback):
    key = "sps_probe"

    def __init__(self, after_step: int):
        self.after_step = after_step
        self.rows: list[float] = []

    def on_progress(self, event: ProgressEvent) -> None:
        if event.step > self.after_step:
            self.rows.append(event.sps)


def loop_benchmark_config(method: str, env_id: str, loop_steps: int, precision: str | None
                          ) -> tuple[TD3Config, "_SpsProbe"]:
    """The method's recipe with a 1,000-step warm-up, `loop_steps` of learning after it and no
    evaluation or checkpoint in the way; and the probe that times the learning phase."""
    warm = 1_000
    d = {**TD3Config().to_dict(), **get_method(method).td3_params(env_id)}
    d.update(total_steps=warm + loop_steps, start_steps=warm, update_after=warm, log_every=loop_steps // 4,
             eval_every=10 * (warm + loop_steps), eval_episodes=1, checkpoint_every=0, replay_size=50_000)
    if precision is not None:
        d["precision"] = precision
    # The first quarter after the warm-up still pays for allocator and cache warm-up: it is dropped.
    return TD3Config.from_dict(d), _SpsProbe(after_step=warm + loop_steps // 4)


def training_loop_sps(method: str, env_id: str, loop_steps: int, precision: str | None,
                      update_hook: UpdateHook | None = None, device: str = "cpu") -> float:
    """Env steps/s of the real loop in its learning phase, one update per env step on average.
    `update_hook`: diagnostics of the loop's updates (tools/kernel_profile)."""
    spec = get_method(method)
    cfg, probe = loop_benchmark_config(method, env_id, loop_steps, precision)
    train(spec, env_id, 0, cfg, callbacks=[probe], update_hook=update_hook, device=device)
    return statistics.mean(probe.rows)


def check_perf_arguments(args: argparse.Namespace) -> list[str]:
    """The methods to time; UsageError (one line, exit 2) for any argument that cannot run."""
    from bench.run.plan import MAX_WORKERS, UsageError
    from spikerl.envs import EnvError

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise UsageError(f"--methods: expected a comma-separated list of methods, got {args.methods!r}")
    if len(set(methods)) != len(methods):
        raise UsageError(f"--methods: a method is given more than once in {args.methods!r}")
    for m in methods:
        if m not in METHODS:
            raise UsageError(f"--methods: unknown method {m!r}; known methods: {', '.join(METHODS)}")
    if not 1 <= args.threads <= MAX_WORKERS:
        raise UsageError(f"--threads must be 1 to {MAX_WORKERS}, got {args.threads}")
    if not 4 <= args.loop_steps <= 10**7:  # a quarter of them is the progress interval
        raise UsageError(f"--loop-steps must be 4 to 10000000, got {args.loop_steps}")
    if not 1 <= args.seed_batch <= 1_024:
        raise UsageError(f"--seed-batch must be 1 to 1024, got {args.seed_batch}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is visible to torch")
    if args.checkpoint is None:
        try:
            make_env(args.env).close()
        except EnvError as exc:
            raise UsageError(f"--env: {exc}") from None
    return methods


def run_perf(args: argparse.Namespace) -> int:
    methods = check_perf_arguments(args)
    torch.set_num_threads(args.threads)
    precision = None if args.precision == "method" else args.precision
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    for e in engines:
        try:
            native_lib.resolve_engine(e, args.device, "bf16" if args.precision == "bf16" else "fp32")
        except ValueError as exc:
            raise UsageError(f"--engines: {exc}") from None
    header: dict[str, Any] = {
        "env": args.env, "torch_threads": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "torch": torch.__version__, "cpu": platform.processor() or platform.machine(), "precision": args.precision,
        "spiking_kernels": native.status(), "device": args.device, "seed_batch": args.seed_batch,
    }
    print("spikerl-bench perf: " + ", ".join(f"{k}={v}" for k, v in header.items()), flush=True)
    if args.checkpoint:
        method, env_id, upd, act = checkpoint_update_and_action_ms(args.checkpoint, precision)
        print(f"checkpoint {args.checkpoint} ({method}, {env_id}): update {upd:.2f} ms (b=100), "
              f"action {act:.3f} ms (b=1)", flush=True)
        if args.json:
            print(json.dumps({**header, "checkpoint": args.checkpoint, "method": method, "env": env_id,
                              "update_ms": upd, "action_ms": act}))
        return 0
    raw = raw_env_sps(args.env)
    print(f"raw env: {raw:,.0f} steps/s (random actions, same process)", flush=True)
    rows = []
    print(f"{'method':8s} {'engine':7s} {'update ms (b=100)':>18s} {'action ms (b=1)':>16s} {'loop steps/s':>13s} "
          f"{'loop/raw':>9s}", flush=True)
    for m in methods:
        # engines alternate within each method, so both see the same state of a shared machine
        for engine in engines if get_method(m).spiking else ["torch"]:
            with native_lib.engine(engine):
                upd, act = update_and_action_ms(m, args.env, precision, device=args.device)
                sps = training_loop_sps(m, args.env, args.loop_steps, precision, device=args.device)
            raw_again = raw_env_sps(args.env, steps=5_000)
            raw_mid = statistics.mean([raw, raw_again])  # the machine is shared: re-measure beside each method
            row = {"method": m, "engine": engine, "update_ms": upd, "action_ms": act, "loop_sps": sps,
                   "raw_env_sps": raw_mid, "ratio": sps / raw_mid}
            rows.append(row)
            print(f"{m:8s} {engine:7s} {upd:18.2f} {act:16.3f} {sps:13.1f} {row['ratio']:9.4f}", flush=True)
            if args.seed_batch > 1:  # the same method on the same engine, K seeds in one process
                batch = seed_batch_row(m, args.env, args.seed_batch, args.loop_steps, precision, device=args.device,
                                       engine=engine)
                batch["aggregate_vs_single"] = batch["loop_sps_aggregate"] / sps
                rows.append(batch)
                print(f"{m:8s} {engine:7s} seed batch K={args.seed_batch} in {batch['seed_groups']} group(s), one "
                      f"thread each: update {batch['update_ms']:.2f} ms and "
                      f"action {batch['action_ms']:.3f} ms for all K; loop {batch['loop_sps_per_seed']:.1f} steps/s "
                      f"per seed, {batch['loop_sps_aggregate']:.1f} aggregate = {batch['aggregate_vs_single']:.2f}x "
                      f"the single seed's", flush=True)
    print("reference: public SpikeRL code, HalfCheetah-v4, 1 thread: 82 steps/s, 11.0 ms/update, "
          "0.98 ms/action, ratio 0.0044 (goal here: >= 0.009 for popsan and spikerl)")
    if args.json:
        print(json.dumps({**header, "raw_env_sps": raw, "methods": rows}))
    return 0
