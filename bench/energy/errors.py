"""ErrorLog: each distinct problem recorded once, with a count and when it first and last happened.

A source that fails on every poll (10 polls a second) for a ten-hour run would otherwise add
hundreds of thousands of lines to result.json's `meter_errors`. The log is bounded: after
MAX_DISTINCT different messages, further new ones are counted in a single overflow entry.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterable, Iterator

MAX_DISTINCT = 50


@dataclass
class _Entry:
    first_t_s: float | None
    last_t_s: float | None
    count: int = 1

    def format(self, message: str) -> str:
        when = "" if self.first_t_s is None else f"t={self.first_t_s:.1f}s "
        if self.count == 1:
            return when + message
        span = "" if self.last_t_s is None else f", last t={self.last_t_s:.1f}s"
        return f"{when}{message} (x{self.count}{span})"


class ErrorLog:
    """A list-like log of problems (iterating gives formatted lines). Thread-safe."""

    def __init__(self, messages: Iterable[str] = (), max_distinct: int = MAX_DISTINCT):
        self._entries: dict[str, _Entry] = {}
        self._max = max_distinct
        self._overflow = 0
        self._lock = threading.Lock()
        for m in messages:
            self.add(m)

    def add(self, message: str, t_s: float | None = None) -> bool:
        """Record one occurrence; True if the message is new (worth logging once)."""
        with self._lock:
            entry = self._entries.get(message)
            if entry is not None:
                entry.count += 1
                entry.last_t_s = t_s if t_s is not None else entry.last_t_s
                return False
            if len(self._entries) >= self._max:
                self._overflow += 1
                return False
            self._entries[message] = _Entry(t_s, t_s)
            return True

    append = add  # so code that holds a plain list of problems can hold this instead

    def count(self, message: str) -> int:
        with self._lock:
            entry = self._entries.get(message)
            return entry.count if entry is not None else 0

    def lines(self) -> list[str]:
        with self._lock:
            out = [e.format(m) for m, e in self._entries.items()]
            if self._overflow:
                out.append(f"{self._overflow} further problem(s) of other kinds not recorded individually")
            return out

    def __iter__(self) -> Iterator[str]:
        return iter(self.lines())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries) + (1 if self._overflow else 0)

    def __getitem__(self, i: int) -> str:
        return self.lines()[i]

    def __bool__(self) -> bool:
        return len(self) > 0
