"""Where the native spiking kernels spend a training step, and how short their spike lists are.

    python -m tools.kernel_profile --method popsan --loop-steps 3000
    python -m tools.kernel_profile --parts --methods popsan,dsrl,mlp
    python -m tools.kernel_profile --checkpoint RUN/popsan/HalfCheetah-v4/seed0/checkpoint.pt

Default: runs the training loop behind `spikerl-bench perf`'s loop/raw (same settings, one
process, 1 thread) with every kernel call timed in place, and prints each kernel's ms per TD3
update next to the whole update's ms.

--parts: splits one TD3 update pair (two updates, one actor step, as `perf` times them) of each
method into its phases (the target actor's no-grad forward on 2·B rows, the actor's forward and
backward on B rows, the whole target, a critic step, an actor step) and the native kernels inside
each, in thread CPU ms, the methods taking turns: on a shared machine wall time mostly measures the
neighbours, CPU time much less so. Prints the 20th percentile and the median of each.

--checkpoint: for a trained PopSAN-style actor on a replay batch, prints each spiking layer's input
spike density and the share of inputs `spike_matmul` adds per output, with active/silent lists
only and with the changed-since-last-timestep lists too (`spikerl.native.SpikeIndex`), and the
layer's kernel time against a BLAS matmul over the same rows.
"""
from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from typing import Callable

import torch

from baselines.registry import METHODS
from bench.perf import load_checkpoint_agent, median_ms, training_loop_sps, update_td3
from spikerl import native, native_lib
from spikerl.checkpoint import CheckpointError
from spikerl.lif import native_popsan_layer
from spikerl.popspike_actor import PopSpikingActor
from spikerl.td3 import TD3, UpdateHook


class UpdateTimer(UpdateHook):
    """Wall seconds and count of the loop's TD3 updates."""

    def __init__(self) -> None:
        self.seconds, self.updates = 0.0, 0

    def after_updates(self, td3: TD3, n_updates: int, seconds: float) -> None:
        self.seconds += seconds
        self.updates += n_updates


def profile_loop(method: str, env_id: str, loop_steps: int) -> int:
    if native.library() is None:
        print(f"native kernels unavailable: {native.unavailable_reason()}", file=sys.stderr)
        return 2
    kernel_s: dict[str, float] = collections.defaultdict(float)
    calls: collections.Counter[str] = collections.Counter()

    def observe(name: str, seconds: float) -> None:
        kernel_s[name] += seconds
        calls[name] += 1

    timer = UpdateTimer()
    with native.observe_kernels(observe):
        sps = training_loop_sps(method, env_id, loop_steps, "fp32", update_hook=timer)
    n = max(1, timer.updates)
    print(f"{method} on {env_id}: loop {sps:.1f} env steps/s, {timer.updates} updates, "
          f"update {1e3 * timer.seconds / n:.3f} ms (all phases of the loop, warm-up included)")
    for name, sec in sorted(kernel_s.items(), key=lambda kv: -kv[1]):
        print(f"  {name:26s} {1e3 * sec / n:7.3f} ms/update  ({calls[name]} calls)")
    print(f"  {'all kernels':26s} {1e3 * sum(kernel_s.values()) / n:7.3f} ms/update")
    return 0


def _cpu_ms(fn: Callable[[], object], calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        t0 = time.thread_time()
        fn()
        out.append(1e3 * (time.thread_time() - t0))
    return out


def _update_phases(method: str, env_id: str) -> dict[str, Callable[[], object]]:
    """The phases of one update pair of `method` on a fresh net and random replay (as `perf`)."""
    td3, replay = update_td3(method, env_id, "fp32")
    for _ in range(10):
        td3.update_many(replay.sample_many(2, 100))
    b = replay.sample_many(2, 100)
    obs = td3.normalizer(b[0].obs)
    next_obs = td3.normalizer(torch.cat([b[0].next_obs, b[1].next_obs]))
    rew, term = torch.cat([x.rew for x in b]), torch.cat([x.terminated for x in b])

    def target_actor() -> None:
        with torch.no_grad():
            td3.actor_target(next_obs)

    def actor_fwd_bwd() -> None:
        torch.autograd.grad(td3.actor(obs).sum(), td3.actor_params)

    return {"target actor fwd (2B)": target_actor, "actor fwd+bwd (B)": actor_fwd_bwd,
            "target() (2B)": lambda: td3.target(rew, next_obs, term, batch_sizes=[100, 100]),
            "critic step": lambda: td3._critic_step(obs, b[0].act, torch.zeros(100)),
            "actor step": lambda: td3._actor_step(obs),
            "update pair": lambda: td3.update_many(replay.sample_many(2, 100))}


def profile_parts(methods: list[str], env_id: str, rounds: int) -> int:
    phases = {m: _update_phases(m, env_id) for m in methods}
    cpu: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    kern: dict[tuple[str, str], float] = collections.defaultdict(float)
    for _ in range(rounds):  # the methods take turns, phase by phase
        for name in phases[methods[0]]:
            for m in methods:
                fn = phases[m][name]
                fn()
                cpu[m, name] += _cpu_ms(fn, 10)
    if native.library() is not None:
        for m in methods:
            for name, fn in phases[m].items():
                if name == "update pair":
                    continue
                calls: dict[str, float] = collections.defaultdict(float)
                with _thread_timed(calls):
                    for _ in range(20):
                        fn()
                kern[m, name] = sum(calls.values()) / 20
    print(f"thread CPU ms, p20 / median of {10 * rounds} calls each ({', '.join(methods)} taking turns); "
          "kernels: their share of the same phase")
    for m in methods:
        for name in phases[m]:
            xs = sorted(cpu[m, name])
            extra = f"  (native kernels {kern[m, name]:.3f})" if kern.get((m, name)) else ""
            print(f"  {m:8s} {name:22s} {xs[len(xs) // 5]:7.3f} / {statistics.median(xs):7.3f}{extra}")
    if "mlp" in methods:
        pair = {m: statistics.median(cpu[m, "update pair"]) for m in methods}
        print("  update pair / mlp's: " + ", ".join(f"{m} {pair[m] / pair['mlp']:.2f}" for m in methods))
    return 0


class _thread_timed:
    """Within the block, every kernel call adds its thread CPU ms to `calls[name]`."""

    def __init__(self, calls: dict[str, float]):
        self.calls = calls

    def __enter__(self) -> None:
        lib = native.library()
        assert lib is not None
        calls = self.calls

        class Timed(native_lib._ObservedLibrary):
            def __getattr__(self, name: str) -> Callable[..., object]:
                kernel = getattr(self._lib, name)

                def timed(*args: object) -> object:
                    t0 = time.thread_time()
                    out = kernel(*args)
                    calls[name] += 1e3 * (time.thread_time() - t0)
                    return out

                return timed

        self.outer = native_lib._observed
        native_lib._observed = Timed(lib, lambda _n, _s: None)

    def __exit__(self, *exc: object) -> None:
        native_lib._observed = self.outer


@torch.no_grad()
def list_shares(path: str, batch: int) -> int:
    if native.library() is None:
        print(f"native kernels unavailable: {native.unavailable_reason()}", file=sys.stderr)
        return 2
    method, env_id, _, agent, _, replay = load_checkpoint_agent(path)
    actor = agent.actor
    if not isinstance(actor, PopSpikingActor):
        print(f"{path}: {method} has no PopSAN-style spiking layers to list", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    obs = agent.normalizer(replay.sample(batch).obs)
    x = actor.encoder.spike_trains(actor.encoder.stimulation(obs))
    T, B = x.shape[:2]
    print(f"{method} on {env_id}, {batch} replay samples x {T} timesteps; listed = inputs added per output")
    for k, layer in enumerate(actor.layers, 1):
        w, b = layer.fc.weight, layer.fc.bias
        x2 = x.reshape(T * B, -1).contiguous()
        plain, changed = native.SpikeIndex(x2, 0), native.SpikeIndex(x2, B)
        modes = torch.bincount(changed.mode.long(), minlength=3).tolist()
        kernel = median_ms(lambda x2=x2, w=w, b=b: native.spike_linear(x2, w, b, step=B), 200, 20)
        blas = median_ms(lambda x2=x2, w=w, b=b: torch.addmm(b, x2, w.t()), 200, 20)
        print(f"  layer {k} ({x2.shape[1]} -> {w.shape[0]}): density {x2.mean().item():.3f}, listed "
              f"{plain.work:.3f} active/silent -> {changed.work:.3f} with changed lists "
              f"(rows active/silent/changed {modes[0]}/{modes[1]}/{modes[2]}); "
              f"lists + kernel {kernel:.3f} ms, BLAS {blas:.3f} ms")
        x = native_popsan_layer(x, w, b)[0]
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="popsan")
    p.add_argument("--env", default="HalfCheetah-v4")
    p.add_argument("--loop-steps", type=int, default=3_000)
    p.add_argument("--checkpoint", metavar="CKPT", help="list shares of this one-process checkpoint's actor")
    p.add_argument("--batch", type=int, default=100, help="replay samples for --checkpoint")
    p.add_argument("--parts", action="store_true", help="CPU ms of each phase of an update pair, method by method")
    p.add_argument("--methods", default="spikerl,popsan,dsrl,mlp", help="methods for --parts")
    p.add_argument("--rounds", type=int, default=10, help="turns per method and phase for --parts (10 calls each)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    print(f"torch threads {torch.get_num_threads()}, spiking kernels: {native.status()}", flush=True)
    if args.checkpoint:
        try:
            return list_shares(args.checkpoint, args.batch)
        except CheckpointError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.parts:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = [m for m in methods if m not in METHODS]
        if not methods or unknown or not 1 <= args.rounds <= 10_000:
            print(f"error: --methods needs known methods ({', '.join(METHODS)}) and --rounds 1 to 10000",
                  file=sys.stderr)
            return 2
        return profile_parts(methods, args.env, args.rounds)
    if args.method not in METHODS:
        print(f"error: unknown method {args.method!r} (choose from {', '.join(METHODS)})", file=sys.stderr)
        return 2
    return profile_loop(args.method, args.env, args.loop_steps)


if __name__ == "__main__":
    sys.exit(main())
