"""Building, caching and loading the native kernels' library (`csrc/spike_kernels.c`).

The library is compiled once per machine with the system C compiler (`$CC`, else `cc`/`gcc`/
`clang`) and cached under `$SPIKERL_CACHE_DIR` (default `~/.cache/spikerl-bench`), keyed by the
source, the compiler and the CPU's flags, because it is built with -march=native. Without a
compiler, or with `SPIKERL_NATIVE=0`, `library()` is None and the layers take the pure-torch path.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import platform
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

log = logging.getLogger("spikerl.native")

SOURCE = Path(__file__).with_name("csrc") / "spike_kernels.c"
FLAGS = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math", "-shared", "-fPIC", "-std=c99"]

_lib: ctypes.CDLL | None = None
_tried = False
_reason = ""

KernelObserver = Callable[[str, float], None]
"""Told each kernel call's name and wall seconds (`observe_kernels`)."""
_observed: _ObservedLibrary | None = None
_torch_only = False


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cache_dir() -> Path:
    root = os.environ.get("SPIKERL_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "spikerl-bench"


def _untrusted(path: Path, want_dir: bool) -> str | None:
    """Why `path` must not be trusted with code we load, or None. Like ssh with its keys: it must
    belong to us and be writable by nobody else, or another user could swap in their library."""
    try:
        st = path.lstat()
    except OSError as exc:
        return f"cannot stat {path}: {exc.strerror}"
    kind_ok = stat.S_ISDIR(st.st_mode) if want_dir else stat.S_ISREG(st.st_mode)
    if not kind_ok:
        return f"{path} is not a {'directory' if want_dir else 'regular file'}"
    if st.st_uid != os.getuid():
        return f"{path} belongs to uid {st.st_uid}, not to this user ({os.getuid()})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def _private_dir(path: Path) -> Path | None:
    """`path` made (0700) if missing, and returned only if it passes `_untrusted`."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return None
    why = _untrusted(path, want_dir=True)
    if why:
        log.warning("spikerl: not using the kernel cache %s: %s", path, why)
        return None
    return path


def _cache_dirs() -> Iterator[Path]:
    """Trusted places to keep the library, best first; a fresh unpredictable one comes last, so
    a planted or loosened cache costs a rebuild, never a foreign library."""
    for candidate in (_cache_dir(), Path(tempfile.gettempdir()) / f"spikerl-bench-{os.getuid()}"):
        found = _private_dir(candidate)
        if found is not None:
            yield found
    yield Path(tempfile.mkdtemp(prefix="spikerl-bench-"))


STALE_BUILD_S = 600.0
"""A build takes seconds: a temporary library this old was left by a process killed mid-compile."""
BUILD_PREFIX = ".build-"


def _remove_stale_builds(out_dir: Path) -> None:
    now = time.time()
    # tmp*.so: the unnamed temporaries of earlier versions, which only a kill left behind empty
    leftovers = [*out_dir.glob(f"{BUILD_PREFIX}*.so"), *(t for t in out_dir.glob("tmp*.so") if _empty(t))]
    for tmp in leftovers:
        with contextlib.suppress(OSError):
            if now - tmp.lstat().st_mtime > STALE_BUILD_S:
                tmp.unlink()


def _empty(path: Path) -> bool:
    try:
        return path.lstat().st_size == 0
    except OSError:
        return False


def _cache_key(cc: str) -> str:
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    material = SOURCE.read_bytes() + version.encode() + _cpu_flags().encode() + " ".join(FLAGS).encode()
    return hashlib.sha256(material).hexdigest()[:16]


def _build(cc: str) -> Path:
    """The library for this source, compiler and CPU: a trusted cached file, else a fresh build."""
    name = f"spike_kernels-{_cache_key(cc)}.so"
    for out_dir in _cache_dirs():
        target = out_dir / name
        if target.exists() or target.is_symlink():
            why = _untrusted(target, want_dir=False)
            if why is None:
                return target
            # the folder is ours alone, so the file can go; it is rebuilt below
            log.warning("spikerl: not loading %s: %s; building it again", target, why)
            try:
                target.unlink()
            except OSError:
                continue
        _remove_stale_builds(out_dir)
        try:
            fd, tmp = tempfile.mkstemp(prefix=BUILD_PREFIX, suffix=".so", dir=out_dir)
        except OSError:  # a read-only cache: try the next place
            continue
        os.close(fd)
        return _compile(cc, Path(tmp), target)
    raise RuntimeError(f"no usable cache directory ({_cache_dir()})")


def _compile(cc: str, tmp: Path, target: Path) -> Path:
    try:
        last = None
        for arch in (["-march=native"], []):  # some compilers (or CPUs) have no -march=native
            proc = subprocess.run([cc, *FLAGS, *arch, str(SOURCE), "-o", str(tmp)], capture_output=True,
                                  text=True, timeout=120)
            if proc.returncode == 0:
                os.chmod(tmp, 0o755)  # the compiler honours the umask; ours is never group-writable
                os.replace(tmp, target)  # atomic: ranks building at once all end with one whole file
                return target
            last = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        raise RuntimeError(f"{cc} failed: {last[0] if last else ''}")
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _declare(lib: ctypes.CDLL) -> None:
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.spike_lists.argtypes, lib.spike_lists.restype = [p, i64, i64, i64, p, p, p, p, p, ctypes.c_int32], i64
    lib.pack_weight.argtypes, lib.pack_weight.restype = [p, p, p, i64, i64], None
    lib.spike_matmul.argtypes, lib.spike_matmul.restype = [p, p, p, p, p, p, p, p, i64, i64, i64, i64], None
    lib.spike_matmul_grad_weight.argtypes = [p, p, p, p, p, p, p, i64, i64, i64, i64]
    lib.spike_matmul_grad_weight.restype = None
    lib.linear_rows.argtypes, lib.linear_rows.restype = [p, p, p, p, i64, i64, i64], None
    lib.regular_spikes.argtypes, lib.regular_spikes.restype = [p, p, i64, i64], None
    lib.popsan_lif_forward.argtypes, lib.popsan_lif_forward.restype = [p, p, p, i64, i64, p, i64], None
    lib.popsan_lif_backward.argtypes, lib.popsan_lif_backward.restype = [p, p, p, p, i64, i64], None
    lib.popsan_act.argtypes = [p, i64, i64, i64, i64, p, p, i64, p, p, p, p, p, ctypes.c_float, p, p]
    lib.popsan_act.restype = None
    f32, i32 = ctypes.c_float, ctypes.c_int32
    lib.dsrl_lif_forward.argtypes, lib.dsrl_lif_forward.restype = [p, p, p, i64, i64, i64, f32, i32, p], None
    lib.dsrl_lif_backward.argtypes, lib.dsrl_lif_backward.restype = [p, p, p, p, p, i64, i64, f32], None
    lib.dsrl_act.argtypes = [p, i64, i64, i64, i64, i64, i64, p, p, p, f32, f32, p, p]
    lib.dsrl_act.restype = None
    lib.round_bf16.argtypes, lib.round_bf16.restype = [p, p, i64], None


def library() -> ctypes.CDLL | None:
    """The loaded kernels, or None (the reason is in `unavailable_reason()`)."""
    global _lib, _tried, _reason
    if _tried:
        return _lib if _observed is None else _observed  # type: ignore[return-value]
    _tried = True
    if os.environ.get("SPIKERL_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        _reason = "disabled by SPIKERL_NATIVE=0"
        return None
    cc = _compiler()
    if cc is None:
        _reason = "no C compiler found (set CC)"
        log.warning("spikerl: native CPU kernels unavailable: %s; using the pure-torch path", _reason)
        return None
    try:
        path = _build(cc)
        try:
            lib = ctypes.CDLL(str(path))
        except OSError:  # a truncated or foreign file in the cache: build it again, once
            path.unlink(missing_ok=True)
            lib = ctypes.CDLL(str(_build(cc)))
        _declare(lib)
    except (OSError, RuntimeError, subprocess.SubprocessError, AttributeError) as exc:
        _reason = f"build failed: {exc}"
        log.warning("spikerl: native CPU kernels unavailable: %s; using the pure-torch path", _reason)
        return None
    _lib = lib
    return _lib


class _ObservedLibrary:
    """The kernels' library with every call reported to an observer."""

    def __init__(self, lib: ctypes.CDLL, observer: KernelObserver):
        self._lib, self._observer = lib, observer

    def __getattr__(self, name: str) -> Callable[..., Any]:
        kernel = getattr(self._lib, name)

        def timed(*args: Any) -> Any:
            t0 = time.perf_counter()
            out = kernel(*args)
            self._observer(name, time.perf_counter() - t0)
            return out

        return timed


@contextlib.contextmanager
def observe_kernels(observer: KernelObserver) -> Iterator[None]:
    """Report every kernel call in this block to `observer(name, seconds)` (tools/kernel_profile).
    Outside such a block, kernel calls go straight to the library."""
    global _observed
    lib = library()
    if lib is None:
        raise RuntimeError(f"native kernels unavailable: {unavailable_reason()}")
    outer, _observed = _observed, _ObservedLibrary(lib, observer)
    try:
        yield
    finally:
        _observed = outer


@contextlib.contextmanager
def torch_path() -> Iterator[None]:
    """Run this block on the pure-torch path even where the kernels are usable (comparisons
    against the kernels: tools/native_check, tests)."""
    global _torch_only
    outer, _torch_only = _torch_only, True
    try:
        yield
    finally:
        _torch_only = outer


def reset() -> None:
    """Forget the loaded library, so the next call builds or loads it again (tests)."""
    global _lib, _tried, _reason
    _lib, _tried, _reason = None, False, ""


def unavailable_reason() -> str:
    library()
    return _reason


def status() -> str:
    """'native' or 'torch (<why>)': recorded with benchmark and run metadata."""
    return "native" if library() is not None else f"torch ({unavailable_reason()})"


def torch_only() -> bool:
    """Whether a `torch_path()` block is open."""
    return _torch_only


ENGINES = ("native", "torch")
"""How spiking layers execute: 'native' (this module's CPU kernels, fp32 or the bf16 recipe) or 'torch'
(pure torch, any device and precision). `resolve_engine('auto', ...)` picks native wherever it can run."""


def native_unusable_reason(device_type: str, precision: str) -> str | None:
    """Why the native kernels cannot run a job on this device in this precision, or None."""
    if device_type != "cpu":
        return f"the native kernels run on the CPU only (device {device_type})"
    if precision not in ("fp32", "bf16"):
        return f"the native kernels run in fp32 and bf16 only ({precision} runs on the torch path)"
    if library() is None:
        return unavailable_reason()
    return None


def resolve_engine(requested: str, device_type: str, precision: str) -> str:
    """The engine a run uses: `requested` ('auto', 'native' or 'torch') on this device and
    precision. ValueError when 'native' is asked for where it cannot run."""
    if requested not in ("auto", *ENGINES):
        raise ValueError(f"engine must be auto, native or torch, got {requested!r}")
    if requested == "torch":
        return "torch"
    reason = native_unusable_reason(device_type, precision)
    if reason is None:
        return "native"
    if requested == "native":
        raise ValueError(f"--engine native: {reason}")
    return "torch"


@contextlib.contextmanager
def engine(name: str) -> Iterator[None]:
    """Run this block on engine `name` ('native' leaves the kernels usable; 'torch' disables them)."""
    if name not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {name!r}")
    if name == "torch":
        with torch_path():
            yield
    else:
        yield
