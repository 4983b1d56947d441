"""Atomic file replacement: write a temporary file beside the target, fsync, rename over it.

A crash at any moment leaves either the previous file or the new one, never half of one, and a
reader never sees a partial file. Used for checkpoints and every whole-file result.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
import time
from pathlib import Path
from typing import IO, Iterator

# mkstemp makes 0600; results should read like any file. Set outright rather than derived from
# the umask, because reading the umask means changing it for every thread of the process.
FILE_MODE = 0o644


TMP_SUFFIX = ".tmp"
"""Temporary names: `.<target>.<pid>-<random>.tmp`, the writer's process id in the name so that a
later process can tell a dead writer's leftover from a live writer's file (`remove_stale_temps`)."""
_TMP_NAME = re.compile(r"^\.(?P<target>.+)\.(?:(?P<pid>\d+)-)?[A-Za-z0-9_]{6,}\.tmp$")


class WriteError(OSError):
    """A write that failed (a full disk, a lost mount, a read-only folder), naming the file. The
    file it was to replace, if any, is untouched, and no temporary file is left behind."""

    def __init__(self, path: Path, exc: BaseException):
        self.path = Path(path)
        self.reason = _reason(self.path, exc)
        super().__init__(getattr(exc, "errno", None) or errno.EIO, f"could not write {self.path}: {self.reason}")

    def __str__(self) -> str:
        return f"could not write {self.path}: {self.reason}"


def _reason(path: Path, exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    try:  # torch's writer says "unexpected pos ..." where the disk is full
        st = os.statvfs(path.parent)
        if st.f_bavail * st.f_frsize < 1 << 20:
            return "No space left on device"
    except OSError:
        pass
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file for writing that replaces `path` only if the block succeeds. An
    OSError on the way (a full disk) becomes a WriteError naming `path`."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', got {mode!r}")
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=TMP_SUFFIX, dir=path.parent)
        f: IO = os.fdopen(fd, "w", encoding="utf-8", newline="") if mode == "w" else os.fdopen(fd, "wb")
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise WriteError(path, exc) from None
        raise


def remove_stale_temps(folder: Path, started_at: float | None = None) -> list[Path]:
    """Delete the temporary files interrupted writes left in `folder` (not below it): only names
    of our own pattern, only files last written before this process started (`started_at`, a
    time.time()), and only where the writer named in the file is no longer running. Returns what
    was removed; a file that cannot be removed is left (a later run tries again)."""
    started_at = _process_start() if started_at is None else started_at
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TMP_NAME.match(entry.name)
        if m is None or not entry.is_file(follow_symlinks=False):
            continue
        pid = m.group("pid")
        if pid is not None and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime >= started_at:
                continue
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid < 2**22  # someone else's live process (a pid past the kernel's range never is)
    return True


def _process_start() -> float:
    """When this process started (time.time() scale): its /proc entry's age on Linux, else now
    (then only files older than this call go)."""
    try:
        ticks = int(open(f"/proc/{os.getpid()}/stat").read().rpartition(")")[2].split()[19])
        boot = next(float(line.split()[1]) for line in open("/proc/stat") if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()

