"""Argument types of the command line: each turns bad text into one argparse error line."""
from __future__ import annotations

import argparse
import math

from bench.run.plan import MAX_IDLE_WINDOW_S

EXIT_USAGE = 2
MAX_SEED = 2**32 - 1  # numpy's SeedSequence and gymnasium's reset(seed=) accept up to this (= plan.MAX_SEED)
MAX_SEEDS = 10_000  # as many as a plan.json may hold
MAX_STEPS = 10**12  # as TD3Config's bound of total_steps


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def csv_list(text: str) -> tuple[str, ...]:
    items = tuple(x.strip() for x in text.split(",") if x.strip())
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def unique_csv_list(text: str) -> tuple[str, ...]:
    """A comma-separated list without repeats: `mlp,mlp` would train and report the same run twice."""
    items = csv_list(text)
    repeated = sorted({x for x in items if items.count(x) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(f"{', '.join(repeated)} given more than once in {text!r}")
    return items


def run_keys(text: str) -> tuple[tuple[str, str, int], ...]:
    """'method:env:seed,...': the runs one task of a sweep trains (set by the launcher)."""
    keys = []
    for item in csv_list(text):
        parts = item.split(":")
        if len(parts) != 3 or not parts[2].isdigit():
            raise argparse.ArgumentTypeError(f"expected method:env:seed, got {item!r}")
        keys.append((parts[0], parts[1], int(parts[2])))
    return tuple(keys)


def seed_list(text: str) -> tuple[int, ...]:
    """'0,1,2' or '0-4' (inclusive) or a mix: '0-2,7'."""
    seeds: list[int] = []
    try:
        for part in csv_list(text):
            lo, sep, hi = part.partition("-")
            if sep and lo:
                a, b = int(lo), int(hi)
                if b < a:
                    raise ValueError
                if b - a + 1 + len(seeds) > MAX_SEEDS:  # checked before the range is built
                    raise argparse.ArgumentTypeError(f"at most {MAX_SEEDS} seeds, got {text!r}")
                seeds.extend(range(a, b + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(f"malformed seeds {text!r}: use e.g. 0,1,2 or 0-4") from None
    if any(s > MAX_SEED for s in seeds):
        raise argparse.ArgumentTypeError(f"seeds must be at most 2^32-1 = {MAX_SEED}, got {text!r}")
    if len(seeds) > MAX_SEEDS:
        raise argparse.ArgumentTypeError(f"at most {MAX_SEEDS} seeds, got {text!r}")
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"seeds must be distinct non-negative integers, got {text!r}")
    return tuple(seeds)


def step_count(text: str) -> int:
    """A positive step count: 50000, 50_000, 5e4, 50k or 1M."""
    t = text.strip().lower().replace("_", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    try:
        value = float(t[:-1] if scale > 1 else t) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"malformed step count {text!r}: use e.g. 50000, 5e4 or 50k") from None
    if not value.is_integer() or value <= 0:
        raise argparse.ArgumentTypeError(f"step count must be a positive integer, got {text!r}")
    if value > MAX_STEPS:
        raise argparse.ArgumentTypeError(f"step count must be at most {MAX_STEPS:.0e}, got {text!r}")
    return int(value)


def finite_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def power_interval(text: str) -> float:
    """Seconds between power samples: 1 ms (a busier sampler would measure itself) to 1 h."""
    v = positive_float(text)
    if not 1e-3 <= v <= 3600:
        raise argparse.ArgumentTypeError(f"power sampling interval must be 0.001 to 3600 s, got {text!r}")
    return v


def idle_window(text: str) -> float:
    """--idle-window-s: seconds of idle baseline before training, 0 (none) to an hour."""
    v = finite_float(text)
    if not 0 <= v <= MAX_IDLE_WINDOW_S:
        raise argparse.ArgumentTypeError(f"idle window must be 0 (none) to {MAX_IDLE_WINDOW_S:g} s, got {text!r}")
    return v


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v
