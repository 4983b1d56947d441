import warnings

import pytest
import torch

# Tests compare numbers across runs: pin the thread count so CPU kernels pick one code path.
torch.set_num_threads(1)
warnings.filterwarnings("ignore", category=DeprecationWarning)

RUN_SLOW_HINT = "python -m pytest --runslow (everything) or python -m pytest --runslow -m slow (only those)"


def pytest_configure(config):
    # CI runs the slow tests on both cores (pytest-xdist, -m "slow and not serial") and then, alone, the ones
    # whose assertions depend on timing or on having the machine to themselves (-m "slow and serial")
    config.addinivalue_line("markers", "serial: a slow test that measures time, concurrency or CPU share, or "
                                       "must have the machine to itself; CI runs these alone, after the parallel pass")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run the tests marked slow (several processes, sweeps, kills and resumes, "
                          "full report builds, real training); CI runs them")


def _slow_wanted(config) -> bool:
    # `-m slow` (or any marker expression naming slow) asks for them as clearly as --runslow does
    return config.getoption("--runslow") or "slow" in (config.getoption("markexpr") or "")


def pytest_collection_modifyitems(config, items):
    """The default run leaves the slow tests out (deselected, counted once) to stay fast."""
    if _slow_wanted(config):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]
        config._spikerl_slow_left_out = len(slow)


def pytest_terminal_summary(terminalreporter, config):
    n = getattr(config, "_spikerl_slow_left_out", 0)
    if n:
        terminalreporter.write_line(f"{n} slow test{'s' if n > 1 else ''} not run (deselected); "
                                    f"run them with: {RUN_SLOW_HINT}")


@pytest.fixture(autouse=True)
def _chdir_tmp(tmp_path, monkeypatch):
    """Run every test in its own folder so MuJoCo/CodeCarbon side files never land in the repo."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def float64():
    """torch's default dtype float64 for one test (seed-batch equivalence checked without fp32 rounding)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)
