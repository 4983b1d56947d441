"""Argument types of the command line: each turns bad text into one argparse error line."""
from __future__ import annotations

import argparse

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def csv_list(text: str) -> tuple[str, ...]:
    items = tuple(x.strip() for x in text.split(",") if x.strip())
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


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
                seeds.extend(range(a, b + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(f"malformed seeds {text!r}: use e.g. 0,1,2 or 0-4") from None
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
    return int(value)


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v
