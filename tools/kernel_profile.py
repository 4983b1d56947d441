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
import time
from typing import Any
from unittest import mock

import torch

from baselines.registry import METHODS
from bench.perf import load_checkpoint_agent, median_ms, training_loop_sps
from spikerl import native
from spikerl.checkpoint import CheckpointError
from spikerl.lif import native_popsan_layer
from spikerl.popspike_actor import PopSpikingActor
from spikerl.td3 import TD3


class _TimedLibrary:
    """The kernels' ctypes library with every call timed (seconds and calls per kernel name)."""

    def __init__(self, lib: Any):
        self._lib = lib
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self.calls: collections.Counter[str] = collections.Counter()

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._lib, name)

        def timed(*args: Any) -> Any:
            t0 = time.perf_counter()
            out = fn(*args)
            self.seconds[name] += time.perf_counter() - t0
            self.calls[name] += 1
            return out

        return timed


def profile_loop(method: str, env_id: str, loop_steps: int) -> int:
    lib = native.library()
    if lib is None:
        print(f"native kernels unavailable: {native.unavailable_reason()}", file=sys.stderr)
        return 2
    timed = _TimedLibrary(lib)
    update = {"seconds": 0.0, "n": 0}
    real = TD3.update_many

    def update_many(self: TD3, batches: Any) -> None:
        t0 = time.perf_counter()
        real(self, batches)
        update["seconds"] += time.perf_counter() - t0
        update["n"] += len(batches)

    with mock.patch.object(native, "_lib", timed), mock.patch.object(TD3, "update_many", update_many):
        sps = training_loop_sps(method, env_id, loop_steps, "fp32")
    n = max(1, update["n"])
    print(f"{method} on {env_id}: loop {sps:.1f} env steps/s, {update['n']} updates, "
          f"update {1e3 * update['seconds'] / n:.3f} ms (all phases of the loop, warm-up included)")
    for name, sec in sorted(timed.seconds.items(), key=lambda kv: -kv[1]):
        print(f"  {name:26s} {1e3 * sec / n:7.3f} ms/update  ({timed.calls[name]} calls)")
    print(f"  {'all kernels':26s} {1e3 * sum(timed.seconds.values()) / n:7.3f} ms/update")
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
        kernel = median_ms(lambda: native.spike_linear(x2, w, b, step=B), 200, 20)
        blas = median_ms(lambda: torch.addmm(b, x2, w.t()), 200, 20)
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
