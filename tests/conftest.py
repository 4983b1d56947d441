import warnings

import pytest
import torch

# Tests compare numbers across runs: pin the thread count so CPU kernels pick one code path.
torch.set_num_threads(1)
warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.fixture(autouse=True)
def _chdir_tmp(tmp_path, monkeypatch):
    """Run every test in its own folder so MuJoCo/CodeCarbon side files never land in the repo."""
    monkeypatch.chdir(tmp_path)
