"""The kernel cache loads only a library that this user built: a planted, loosened or foreign
file is never loaded (its constructor never runs), and leftovers of killed builds are removed."""
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from spikerl import native_lib

CC = native_lib._compiler()
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler")

PLANT = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void planted(void) {
    const char *marker = getenv("SPIKERL_TEST_MARKER");
    FILE *f = marker ? fopen(marker, "w") : NULL;
    if (f) { fputs("planted code ran", f); fclose(f); }
}
"""


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """An isolated cache and temp dir, the library forgotten before and after."""
    monkeypatch.setenv("SPIKERL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SPIKERL_TEST_MARKER", str(tmp_path / "marker"))
    monkeypatch.delenv("SPIKERL_NATIVE", raising=False)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    native_lib.reset()
    yield tmp_path
    native_lib.reset()


def _plant(path, mode):
    src = path.parent / "plant.c"
    src.write_text(PLANT)
    subprocess.run([CC, "-shared", "-fPIC", str(src), "-o", str(path)], check=True)
    src.unlink()
    os.chmod(path, mode)


def _target(cache):
    return cache / f"spike_kernels-{native_lib._cache_key(CC)}.so"


@pytest.mark.slow
def test_a_group_writable_library_in_our_cache_is_rebuilt_not_loaded(fresh):
    cache = fresh / "cache"
    cache.mkdir(mode=0o700)
    _plant(_target(cache), 0o777)
    assert native_lib.library() is not None
    assert not (fresh / "marker").exists(), "the planted library's constructor ran"
    assert os.stat(_target(cache)).st_mode & 0o022 == 0  # replaced by our own build


@pytest.mark.slow
def test_a_world_writable_cache_dir_is_not_used(fresh):
    cache = fresh / "cache"
    cache.mkdir()
    os.chmod(cache, 0o777)
    _plant(_target(cache), 0o755)
    assert native_lib.library() is not None
    assert not (fresh / "marker").exists(), "a library from a world-writable folder was loaded"
    assert _target(fresh / "tmp" / f"spikerl-bench-{os.getuid()}").exists()  # built in a private place


@pytest.mark.slow
def test_a_predictable_temp_dir_made_by_someone_else_is_not_used(fresh, monkeypatch):
    monkeypatch.setenv("SPIKERL_CACHE_DIR", "/proc/no-such-cache")  # unusable: fall through to the temp dir
    squatted = fresh / "tmp" / f"spikerl-bench-{os.getuid()}"
    squatted.mkdir()
    os.chmod(squatted, 0o777)  # as a squatter leaves it for the victim
    _plant(_target(squatted), 0o777)
    assert native_lib.library() is not None
    assert not (fresh / "marker").exists()


@pytest.mark.skipif(os.getuid() != 0, reason="planting a file owned by another user needs root")
@pytest.mark.slow
def test_a_library_owned_by_another_user_is_not_loaded(fresh):
    cache = fresh / "cache"
    cache.mkdir(mode=0o700)
    _plant(_target(cache), 0o755)
    os.chown(_target(cache), 65534, 65534)
    assert native_lib.library() is not None
    assert not (fresh / "marker").exists()
    assert os.stat(_target(cache)).st_uid == os.getuid()


@pytest.mark.slow
def test_leftovers_of_killed_builds_are_removed(fresh):
    cache = fresh / "cache"
    cache.mkdir(mode=0o700)
    old = time.time() - 2 * native_lib.STALE_BUILD_S
    stale = [cache / f"{native_lib.BUILD_PREFIX}abc.so", cache / "tmpk1ll3d.so"]
    busy = cache / f"{native_lib.BUILD_PREFIX}now.so"  # another process compiling right now
    for p in [*stale, busy]:
        p.write_bytes(b"")
    for p in stale:
        os.utime(p, (old, old))
    assert native_lib.library() is not None
    assert not any(p.exists() for p in stale)
    assert busy.exists()


def test_no_compiler_means_the_torch_path_with_a_reason(fresh, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert native_lib.library() is None
    assert "no C compiler" in native_lib.unavailable_reason()
