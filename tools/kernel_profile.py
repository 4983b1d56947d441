"""Where the native spiking kernels spend a training step, and how short their spike lists are.

    python -m tools.kernel_profile --method popsan --loop-steps 3000
    python -m tools.kernel_profile --checkpoint RUN/popsan/HalfCheetah-v4/seed0/checkpoint.pt

Default: runs the training loop behind `spikerl-bench perf`'s loop/raw (same settings, one
process, 1 thread) with every kernel call timed in place, and prints each kernel's ms per TD3
update next to the whole update's ms.

--checkpoint: for a trained PopSAN-style actor on a replay batch, prints each spiking layer's input
spike density and the share of inputs `spike_matmul` adds per output, with active/silent lists
only and with the changed-since-last-timestep lists too (`spikerl.native.SpikeIndex`), and the
layer's kernel time against a BLAS matmul over the same rows.
"""
from __future__ import annotations

import argparse
import collections
import sys

import torch

from baselines.registry import METHODS
from bench.perf import load_checkpoint_agent, median_ms, training_loop_sps
from spikerl import native
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
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    print(f"torch threads {torch.get_num_threads()}, spiking kernels: {native.status()}", flush=True)
    if args.checkpoint:
        try:
            return list_shares(args.checkpoint, args.batch)
        except CheckpointError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.method not in METHODS:
        print(f"error: unknown method {args.method!r} (choose from {', '.join(METHODS)})", file=sys.stderr)
        return 2
    return profile_loop(args.method, args.env, args.loop_steps)


if __name__ == "__main__":
    sys.exit(main())
