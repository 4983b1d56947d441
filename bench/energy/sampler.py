"""The meter's background sampler: one tick every interval on its own thread, never ending the
trace for an error (a failing sample, clock or wait is logged and the loop goes on)."""
from __future__ import annotations

import threading
import time
from typing import Callable

from bench.energy.base import Clock
from bench.energy.errors import ErrorLog


def run_sampler(sample: Callable[[], None], interval_s: float, stop: threading.Event, clock: Clock,
                errors: ErrorLog) -> None:
    """Call `sample` every `interval_s` until `stop` is set; a tick that falls behind (the process
    suspended or overloaded) is skipped, not made up in a burst."""
    next_t: float | None = None
    while True:
        try:  # nothing in here may end the trace: not a sample, not the clock, not the wait
            now = clock()
            next_t = now + interval_s if next_t is None else next_t
            if stop.wait(min(max(0.0, next_t - now), interval_s)):
                return
            sample()
            next_t += interval_s
            if clock() > next_t:  # fell behind (suspended, overloaded): skip, don't burst
                next_t = clock() + interval_s
        except Exception as exc:
            errors.add(f"sampler: {type(exc).__name__}: {exc}")
            next_t = None
            try:  # a broken clock or wait must not make this loop spin
                if stop.wait(interval_s):
                    return
            except Exception:
                time.sleep(interval_s)
                if stop.is_set():
                    return


def thread_cpu_s(thread: threading.Thread | None) -> float | None:
    """CPU seconds `thread` has used (Linux; None when unknown or not running)."""
    if thread is None or not thread.is_alive() or thread.native_id is None:
        return None
    try:
        import psutil

        for t in psutil.Process().threads():
            if t.id == thread.native_id:
                return float(t.user_time + t.system_time)
    except Exception:
        return None
    return None
