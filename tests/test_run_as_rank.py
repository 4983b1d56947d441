"""One rank of a launched job (torchrun, srun, --nproc) joins with its device's type: a torch.device
never equals the string 'cuda', so a CUDA job's ranks would all have trained on the CPU."""
from __future__ import annotations

import pytest

import bench.cli.run as run_mod
from bench.cli.main import build_parser
from bench.run.plan import UsageError
from spikerl.distributed import DistributedSetupError


def test_a_rank_joins_with_its_device_type_as_a_string(monkeypatch):
    seen = []

    def fake_init(launch, backend, device_type, *a, **kw):
        seen.append(device_type)
        raise DistributedSetupError("stop here")

    monkeypatch.setattr("spikerl.distributed.init_distributed", fake_init)
    args = build_parser().parse_args(["run", "--methods", "mlp", "--device", "cpu", "--idle-window-s", "0"])
    with pytest.raises(UsageError, match="stop here"):
        run_mod.run_as_rank(args, launch=object())
    assert seen == ["cpu"] and isinstance(seen[0], str)
