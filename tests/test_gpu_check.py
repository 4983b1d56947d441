"""tools/gpu_check.py's dry mode (--device cpu): the plumbing of the one prepared GPU check runs here.
What only a GPU checks (real capture, its speeds, NVML energy) is not claimed by these tests."""
from __future__ import annotations

import json

import pytest
import torch

from tools import gpu_check


def test_dry_mode_captures_every_method_and_precision_and_refuses_nccl_on_one_faked_gpu(tmp_path, capsys):
    assert gpu_check.main(["--out", str(tmp_path), "--device", "cpu", "--tiny", "--updates", "6",
                           "--parts", "capture,energy,nccl"]) == 0
    rows = json.loads((tmp_path / "gpu_check.json").read_text())
    capture = {item: result for part, item, result in rows if part == "capture"}
    assert set(capture) == {f"{m} {p}" for m in gpu_check.METHODS for p in ("fp32", "bf16")}
    for item, result in capture.items():  # the eager stand-in replays exactly what the eager twin computed
        assert result == "ok (eager stand-in); max |d| after 6 updates 0", item
    (nccl,) = [r for r in rows if r[0] == "nccl"]
    assert nccl[2].startswith("refused: exit 2, 1 line(s)") and "NCCL needs 2 visible GPUs" in nccl[2]
    (energy,) = [r for r in rows if r[0] == "energy"]
    assert energy[2].startswith("n/a")  # never a number where nothing was measured
    assert "== gpu_check on cpu (dry mode)" in capsys.readouterr().out


def test_cuda_without_a_gpu_is_one_line_and_exit_2(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    assert gpu_check.main(["--out", str(tmp_path / "x"), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no CUDA device" in err[0] and not (tmp_path / "x").exists()
