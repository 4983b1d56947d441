"""Shadow check of the native spiking kernels along a real training run.

Trains one fp32 spiking method (PopSAN or DSRL) on the native path and, every `--every` updates,
recomputes the actor gradient and the target actor's actions from the same state on the
pure-torch path. It prints the relative gradient difference and the largest action difference of
every check. Rounding-level agreement (~1e-7) is expected; now and then a spike sits within an
ulp of threshold and flips, which shows as one large outlier, as between any two BLAS orderings.
DSRL's fast-sigmoid surrogate (slope up to 200) magnifies an ulp of membrane ~100-fold, so its
gradients agree to ~1e-5.

    python -m tools.native_check --method popsan --steps 12000 --every 97
    python -m tools.native_check --method dsrl --steps 3000 --every 40
"""
from __future__ import annotations

import argparse
import statistics
import sys

import torch

from baselines.registry import get_method
from spikerl import native
from spikerl.config import TD3Config
from spikerl.loop import train
from spikerl.replay import ReplayBatch
from spikerl.td3 import TD3, UpdateHook


class ShadowCheck(UpdateHook):
    """Before every `every`-th update, the actor gradient and target actions on both paths."""

    def __init__(self, every: int):
        self.every = every
        self.checks: list[tuple[int, float, float]] = []
        """(updates done, actor gradient's largest relative difference, target action's largest difference)"""

    def before_update(self, td3: TD3, batch: ReplayBatch) -> None:
        if td3.updates and td3.updates % self.every == 0:
            self.check(td3, batch)

    def check(self, td3: TD3, batch: ReplayBatch) -> None:
        obs, next_obs = td3.normalizer(batch.obs), td3.normalizer(batch.next_obs)

        def actor_grad() -> tuple[torch.Tensor, ...]:
            loss = -td3.critic.q1(obs, td3.actor(obs)).mean()
            return torch.autograd.grad(loss, td3.actor_params)

        with torch.no_grad():
            a_native = td3.actor_target(next_obs)
        g_native = actor_grad()
        with native.torch_path():
            with torch.no_grad():
                a_torch = td3.actor_target(next_obs)
            g_torch = actor_grad()
        rel = max(((a - b).abs().max() / b.abs().max().clamp(min=1e-30)).item()
                  for a, b in zip(g_native, g_torch, strict=True))
        self.checks.append((td3.updates, rel, (a_native - a_torch).abs().max().item()))
        print(f"update {td3.updates:6d}  actor grad rel diff {rel:.1e}  target action max diff "
              f"{self.checks[-1][2]:.1e}", flush=True)


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

    spec = get_method(args.method)
    d = {**TD3Config().to_dict(), **spec.td3_params(args.env)}
    d.update(total_steps=args.steps, eval_every=10 * args.steps, eval_episodes=1, checkpoint_every=0)
    shadow = ShadowCheck(args.every)
    train(spec, args.env, args.seed, TD3Config.from_dict(d), update_hook=shadow)
    rels = sorted(c[1] for c in shadow.checks)
    print(f"{len(shadow.checks)} checks: median grad rel diff {statistics.median(rels):.1e}, "
          f"{sum(r <= 1e-6 for r in rels)} within 1e-6; target actions equal in "
          f"{sum(c[2] == 0.0 for c in shadow.checks)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
