"""What makes the GPU path capture-safe and its launches sane, checked on the CPU at the library
boundary (no GPU runs here): no host->device copy where a CUDA graph may capture, a capturable public
Adam on CUDA, autocast's weight cache off on CUDA, and --nproc N NCCL ranks refused on fewer GPUs."""
from __future__ import annotations

import os

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import spikerl.population as population
from bench.cli.main import main
from spikerl import adam
from spikerl.distributed import DistributedSetupError, check_local_gpus
from spikerl.precision import autocast


class _Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func.overloadpacket.__name__))
        return func(*args, **(kwargs or {}))


def test_encoder_gains_are_filled_on_the_device_never_copied_from_the_host(monkeypatch):
    monkeypatch.setattr(population, "_GAINS", {})
    real_tensor = torch.tensor

    def host_data_only(data, *args, device=None, **kwargs):  # torch.tensor(list, device=...) copies host->device
        if device is not None and torch.device(device).type != "cpu":
            raise AssertionError(f"a host list copied to {device}")
        return real_tensor(data, *args, **kwargs)

    monkeypatch.setattr(torch, "tensor", host_data_only)
    meta = torch.device("meta")  # any device but the CPU: what matters is how the tensor is made
    with _Ops() as seen:
        gains = population._accumulator_gains(5, torch.float32, meta)
    assert gains.device == meta and gains.shape == (5,)
    assert "fill_" in seen.ops and set(seen.ops) <= {"empty", "select", "fill_"}, seen.ops
    cpu = population._accumulator_gains(5, torch.float64, torch.device("cpu"))
    want = [sum(0.001 ** k for k in range(t + 1)) for t in range(5)]
    assert cpu.tolist() == want  # the same values as the Python sums, to the bit


def test_adam_is_public_and_capturable_on_cuda_and_skips_the_private_shortcut():
    assert adam.adam_options("cuda") == {"fused": True, "capturable": True}
    assert adam.adam_options("cpu") == {"fused": True}
    p = torch.nn.Parameter(torch.randn(3))
    opt = torch.optim.Adam([p], lr=1e-3, fused=True)
    p.grad = torch.ones(3)
    opt.step()
    p.grad = torch.ones(3)
    assert adam._fast_step(opt) or not adam.fast_path_enabled()  # the CPU may take the shortcut
    opt.param_groups[0]["capturable"] = True  # as on CUDA
    assert not adam._fast_step(opt)  # a graph captures the public opt.step()


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_autocast_weight_cache_is_off_on_cuda_only():
    assert not autocast("bf16", torch.device("cuda"))._cache_enabled
    assert autocast("bf16", torch.device("cpu"))._cache_enabled


def _fake_gpus(monkeypatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_nccl_ranks_on_fewer_gpus_are_refused(monkeypatch):
    cuda = torch.device("cuda")
    _fake_gpus(monkeypatch, 1)
    with pytest.raises(DistributedSetupError, match="--nproc 2 with NCCL needs 2 visible GPUs, this machine has 1"):
        check_local_gpus(2, "auto", cuda)
    check_local_gpus(2, "gloo", cuda)  # Gloo ranks may share a GPU
    check_local_gpus(1, "nccl", cuda)
    check_local_gpus(None, "nccl", cuda)
    check_local_gpus(4, "auto", torch.device("cpu"))
    _fake_gpus(monkeypatch, 2)
    check_local_gpus(2, "nccl", cuda)


def test_run_nproc_2_nccl_on_one_gpu_is_one_line_and_exit_2_before_anything_is_written(monkeypatch, tmp_path, capsys):
    _fake_gpus(monkeypatch, 1)
    monkeypatch.chdir(tmp_path)
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_JOB_ID", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK"):
        monkeypatch.delenv(var, raising=False)
    code = main(["run", "--methods", "mlp", "--device", "cuda", "--nproc", "2", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "NCCL needs 2 visible GPUs" in err[0], err
    assert os.listdir(tmp_path) == []
