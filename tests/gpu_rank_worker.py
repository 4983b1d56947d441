"""One rank of a two-rank Gloo run metering faked GPUs (tests/fake_pynvml.py), for
tests/test_meter_ranks.py: spawned by torch.multiprocessing or run as a task by the fake SLURM's
srun (`python -m tests.gpu_rank_worker LAYOUT OUT_DIR`, rank from SLURM_PROCID/SLURM_LOCALID).

LAYOUT 'all': every rank sees both GPUs (CUDA_VISIBLE_DEVICES=0,1); 'one': each sees the GPU of
its local rank, as SLURM's --gpus-per-task=1 sets it. Both GPUs are in one node, so a GPU seen by
two ranks has one UUID."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

import bench.energy.nvml as nvml_mod
from bench.energy import PowerMeter
from bench.energy.base import EnergySource, PowerIntegrator
from bench.energy.callback import EnergyCallback
from bench.energy.nvml import open_nvml, visible_gpu_ids
from spikerl.callbacks import EndEvent, EvalEvent, RunInfo
from tests import fake_pynvml
from tests.fake_pynvml import FakeClock, FakeGpu

CPU_W = 10.0




class CpuAt10W(EnergySource):
    source = "rapl"

    def __init__(self, clock: FakeClock):
        self.devices = ["cpu-package-0"]
        self._integ = PowerIntegrator(self.devices, mode="hold", clock=clock)
        self._integ.add({"cpu-package-0": CPU_W})

    def read_energy_j(self) -> dict[str, float]:
        return self._integ.add({"cpu-package-0": CPU_W})

    def read_power_w(self) -> dict[str, float]:
        return {"cpu-package-0": CPU_W}


def run_rank(rank: int, local_rank: int, world: int, layout: str) -> dict:
    fake_pynvml.reset([FakeGpu(uuid="GPU-aaaa", power_w=200.0), FakeGpu(uuid="GPU-bbbb", power_w=100.0)])
    nvml_mod.pynvml = fake_pynvml
    os.environ["CUDA_VISIBLE_DEVICES"] = "0,1" if layout == "all" else str(local_rank)
    clock = FakeClock()

    def factory(**kw) -> PowerMeter:
        sources, _ = open_nvml(kw["gpu_ids"], clock=clock)
        if kw["cpu"] != "none":
            sources.append(CpuAt10W(clock))
        return PowerMeter(sources, interval_s=None, clock=clock)

    cb = EnergyCallback(codecarbon=False, gpu_ids=visible_gpu_ids(), meter_factory=factory)
    cb.on_train_start(RunInfo(run_dir=None, method="popsan", env_id="HalfCheetah-v4", seed=0, total_steps=100,
                              rank=rank, local_rank=local_rank, world_size=world))
    cb.on_phase("train", 0.0)  # the loop leaves start-up ('other') as it enters training
    clock.advance(1.5)
    cb.on_eval_start(50, 1.5)
    clock.advance(0.5)
    cb.on_eval_end(EvalEvent(step=50, wall_s=2.0, return_mean=0.0, return_std=0.0, episodes=1))
    cb.on_train_end(EndEvent(step=100, wall_s=2.0, status="complete"))
    return cb.result_fields()


def spawned(rank: int, world: int, port: int, layout: str, out_dir: str) -> None:
    import torch.distributed as dist

    from tests.dist_workers import end_worker

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        result = run_rank(rank, rank, world, layout)  # one node: local rank = rank
        Path(out_dir, f"{layout}.rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()
    end_worker()


def main(argv: list[str]) -> None:
    import torch.distributed as dist

    from spikerl.distributed import detect_launch
    from tests.dist_workers import end_worker

    layout, out_dir = argv
    launch = detect_launch()
    assert launch is not None and launch.launcher == "slurm", launch
    os.environ.update(MASTER_ADDR=launch.master_addr, MASTER_PORT=str(launch.master_port))
    dist.init_process_group("gloo", rank=launch.rank, world_size=launch.world_size)
    try:
        result = run_rank(launch.rank, launch.local_rank, launch.world_size, layout)
        Path(out_dir, f"{layout}.rank{launch.rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()
    end_worker()


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1:])
