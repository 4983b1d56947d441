"""Every rank's GPUs, each counted once: two Gloo ranks on one node metering faked NVML GPUs
(tests/gpu_rank_worker.py), when both see both GPUs and when each sees one, spawned directly and
as srun tasks under the fake SLURM. GPU 0 draws 200 W and GPU 1 100 W for 2 s (1.5 s train, 0.5 s
eval); local rank 0 also meters the node's CPU at 10 W."""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from bench.energy.ranks import dedup_ranks, gpu_accounts, gpu_sums
from tests.fake_slurm import FakeSlurm

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check(results: list[dict]) -> None:
    for r in results:  # every rank ends with the same account
        assert r["gpu_energy_j"] == pytest.approx(600.0)  # (200 + 100) W x 2 s, each GPU once
        assert r["gpu_devices_metered"] == 2
        assert r["cpu_energy_j"] == pytest.approx(20.0)  # local rank 0's node CPU only
        assert r["energy_j"] == pytest.approx(620.0)
        assert r["train_energy_j"] == pytest.approx(310.0 * 1.5)
        assert r["eval_energy_j"] == pytest.approx(310.0 * 0.5)
        assert r["gpu_coverage"] == pytest.approx(1.0) and r["cpu_coverage"] == pytest.approx(1.0)
        assert r["gpu_source"] == "nvml-counter" and r["meter_verdict"] == "measured"


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["all", "one"])
def test_two_gloo_ranks_count_every_gpu_once(tmp_path, layout):
    """'one' fails on the code before per-rank sums: only local rank 0's GPU was metered (400 J)."""
    import torch.multiprocessing as mp

    from tests.gpu_rank_worker import spawned

    mp.spawn(spawned, args=(2, _free_port(), layout, str(tmp_path)), nprocs=2, join=True)
    _check([json.loads((tmp_path / f"{layout}.rank{r}.json").read_text()) for r in range(2)])


@pytest.mark.slow
def test_two_srun_tasks_under_the_fake_slurm_count_every_gpu_once(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")  # the fake's node name, fakenode0, resolves nowhere
    out = tmp_path / "out"
    out.mkdir()
    with FakeSlurm(tmp_path / "slurm-state", kill_wait_s=1) as slurm:
        jobs = []
        for layout in ("all", "one"):
            monkeypatch.setenv("MASTER_PORT", str(_free_port()))
            script = tmp_path / f"{layout}.sh"
            script.write_text("#!/bin/bash\n#SBATCH --ntasks=2\n"
                              f"srun --output {tmp_path}/{layout}-%t.out {os.sys.executable} "
                              f"-m tests.gpu_rank_worker {layout} {out}\n")
            jobs.append(slurm.run("sbatch", "--parsable", "--chdir", str(ROOT), str(script)).stdout.strip())
            tasks = slurm.wait([jobs[-1]], timeout_s=120)
            logs = "".join(p.read_text() for p in tmp_path.glob(f"{layout}-*.out"))
            assert all(t.state == "COMPLETED" for t in tasks), logs
            _check([json.loads((out / f"{layout}.rank{r}.json").read_text()) for r in range(2)])


def test_dedup_keeps_the_first_rank_and_falls_back_to_host_and_index():
    a = gpu_accounts({"train": {"gpu0": 10.0, "cpu": 5.0}}, {"gpu0": (1.0, 2.0)}, {"gpu0": "GPU-x"}, host="h")
    b = gpu_accounts({"train": {"gpu0": 99.0, "gpu1": 7.0}}, {"gpu0": (2.0, 2.0), "gpu1": (2.0, 2.0)},
                     {"gpu0": "GPU-x"}, host="h")
    merged = dedup_ranks([a, b])
    assert set(merged) == {"GPU-x", "h:gpu1"}  # no UUID: the host's NVML index identifies it
    sums = gpu_sums(merged)
    assert (sums["train_j"], sums["eval_j"], sums["metered_s"], sums["window_s"]) == (17.0, 0.0, 3.0, 4.0)
