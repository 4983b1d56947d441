"""Per-env constants of the cross-task aggregates: score = (R − R_random) / (R_reference − R_random).

R_reference: TD3's final return at 1M steps in the TD3 paper (Fujimoto, van Hoof, Meger, ICML 2018,
Table 1; MuJoCo v1 envs, mean over 10 seeds), the reference DESIGN §6 names. A score of 1 means "as
good as published TD3 at 1M steps"; 0 means "as good as uniformly random actions".

R_random: measured by this suite (DESIGN §6): uniform random actions, 100 episodes per env and
version, `python -m tools.random_returns --episodes 100` (gymnasium 1.x, MuJoCo 3, episodes capped at
1,000 steps, reset seeds 20,000–20,099), mean return. Hopper, Walker2d and Ant changed in v5, so each
version has its own value; HalfCheetah v4 and v5 behave identically (and measure the same).
"""
from __future__ import annotations

from dataclasses import dataclass

REFERENCE_SOURCE = "TD3 at 1M steps, Fujimoto et al. 2018 (ICML), Table 1"
RANDOM_SOURCE = ("uniform random actions, 100 episodes, measured by `python -m tools.random_returns "
                 "--episodes 100` (2026-11-30, gymnasium 1.x, MuJoCo 3)")

REFERENCE_RETURN = {"HalfCheetah": 9636.95, "Hopper": 3564.07, "Walker2d": 4682.82, "Ant": 4372.44}
RANDOM_RETURN = {
    "HalfCheetah-v4": -275.18, "Hopper-v4": 18.13, "Walker2d-v4": 2.69, "Ant-v4": -44.79,
    "HalfCheetah-v5": -275.18, "Hopper-v5": 17.13, "Walker2d-v5": 1.65, "Ant-v5": -45.89,
}


@dataclass(frozen=True)
class Normalizer:
    env: str
    random_return: float
    reference_return: float

    def __call__(self, r: float) -> float:
        return (r - self.random_return) / (self.reference_return - self.random_return)


def normalizer(env: str) -> Normalizer | None:
    """The constants of `env` (e.g. 'Hopper-v4'), or None when the suite has none for it."""
    family = env.split("-")[0]
    if env not in RANDOM_RETURN or family not in REFERENCE_RETURN:
        return None
    return Normalizer(env, RANDOM_RETURN[env], REFERENCE_RETURN[family])
