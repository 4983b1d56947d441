"""Shadow check of the native spiking kernels along a real training run.

Trains one PopSAN-style method on the native path and, every `--every` updates, recomputes the
actor gradient and the target actor's actions from the same state on the pure-torch path. It
prints the relative gradient difference and the largest action difference of every check.
Rounding-level agreement (~1e-7) is expected; now and then a spike sits within an ulp of
threshold and flips, which shows as one large outlier, as between any two BLAS orderings.

    python -m tools.native_check --method popsan --steps 12000 --every 97
"""
from __future__ import annotations

import argparse
import statistics
import sys
from unittest import mock

import torch

from baselines.registry import get_method
from spikerl import native
from spikerl.config import TD3Config
from spikerl.loop import train
from spikerl.td3 import TD3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="popsan")
    p.add_argument("--env", default="HalfCheetah-v4")
    p.add_argument("--steps", type=int, default=12_000)
    p.add_argument("--every", type=int, default=97, help="updates between checks")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if native.library() is None:
        print(f"native kernels unavailable: {native.unavailable_reason()}", file=sys.stderr)
        return 2

    checks: list[tuple[int, float, float]] = []
    real_update_many = TD3.update_many

    def check(self: TD3, batch) -> None:
        obs, next_obs = self.normalizer(batch.obs), self.normalizer(batch.next_obs)

        def actor_grad():
            loss = -self.critic.q1(obs, self.actor(obs)).mean()
            return torch.autograd.grad(loss, self.actor_params)

        with torch.no_grad():
            a_native = self.actor_target(next_obs)
        g_native = actor_grad()
        with mock.patch.object(native, "usable", lambda *t: False):
            with torch.no_grad():
                a_torch = self.actor_target(next_obs)
            g_torch = actor_grad()
        rel = max(((a - b).abs().max() / b.abs().max().clamp(min=1e-30)).item() for a, b in zip(g_native, g_torch))
        checks.append((self.updates, rel, (a_native - a_torch).abs().max().item()))
        print(f"update {self.updates:6d}  actor grad rel diff {rel:.1e}  target action max diff {checks[-1][2]:.1e}",
              flush=True)

    def update_many(self: TD3, batches) -> None:
        # the training loop's bursts, split where a check falls: each check sees the state before its update
        first, start = self.updates, 0
        for i, batch in enumerate(batches):
            done = first + i  # updates finished before this batch's
            if done and done % args.every == 0:
                real_update_many(self, batches[start:i])
                start = i
                check(self, batch)
        real_update_many(self, batches[start:])

    spec = get_method(args.method)
    d = {**TD3Config().to_dict(), **spec.td3_params(args.env)}
    d.update(total_steps=args.steps, eval_every=10 * args.steps, eval_episodes=1, checkpoint_every=0)
    with mock.patch.object(TD3, "update_many", update_many):
        train(spec, args.env, args.seed, TD3Config.from_dict(d))
    rels = sorted(c[1] for c in checks)
    print(f"{len(checks)} checks: median grad rel diff {statistics.median(rels):.1e}, "
          f"{sum(r <= 1e-6 for r in rels)} within 1e-6; target actions equal in "
          f"{sum(c[2] == 0.0 for c in checks)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
