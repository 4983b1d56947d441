"""GPU check of the energy issue: load one GPU for ~30 s and compare three energy accounts.

1. NVML's cumulative energy counter (nvmlDeviceGetTotalEnergyConsumption), read at both ends;
2. NVML power samples (nvmlDeviceGetPowerUsage) every 0.1 s, integrated by the trapezoid rule;
3. CodeCarbon's offline tracker's GPU energy over the same window.
The counter and integrated power should agree within a few percent on a steady load; prints
all three, the ratios, and the NVML power trace summary. Needs a CUDA GPU and NVML.

    python -m tools.gpu_check_energy --seconds 30
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--gpu", type=int, default=0)
    p.add_argument("--interval", type=float, default=0.1)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA GPU here: this check needs one (nothing was measured)")
        return 2
    import pynvml

    from bench.energy.carbon import CarbonTracker

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(args.gpu)
    print(f"GPU {args.gpu}: {pynvml.nvmlDeviceGetName(handle)}, driver {pynvml.nvmlSystemGetDriverVersion()}, "
          f"torch {torch.__version__}")
    torch.cuda.set_device(args.gpu)
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()

    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sampler() -> None:
        while not stop.is_set():
            samples.append((time.monotonic(), pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0))
            stop.wait(args.interval)

    with tempfile.TemporaryDirectory() as tmp:
        tracker = CarbonTracker(Path(tmp), country_iso_code="USA", measure_power_secs=1.0, gpu_ids=[args.gpu])
        tracker.start()
        thread = threading.Thread(target=sampler, daemon=True)
        e0_mj = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        t0 = time.monotonic()
        thread.start()
        flops = 0
        while time.monotonic() - t0 < args.seconds:
            for _ in range(20):
                a @ b
            flops += 20 * 2 * 8192 ** 3
            torch.cuda.synchronize()
        stop.set()
        thread.join()
        e1_mj = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        t1 = time.monotonic()
        cc = tracker.stop()
    counter_j = (e1_mj - e0_mj) / 1000.0
    pts = [(t0, samples[0][1])] + samples + [(t1, samples[-1][1])]
    sampled_j = sum((tb - ta) * (pa + pb) / 2 for (ta, pa), (tb, pb) in zip(pts, pts[1:], strict=True))
    powers = [pw for _, pw in samples]
    print(f"load: {t1 - t0:.1f} s of bf16 8192^3 matmuls, {flops / (t1 - t0) / 1e12:.0f} TFLOP/s")
    print(f"power samples: {len(samples)}, mean {statistics.mean(powers):.1f} W, min {min(powers):.1f} W, "
          f"max {max(powers):.1f} W")
    print(f"NVML counter energy:        {counter_j:10.1f} J  ({counter_j / (t1 - t0):.1f} W average)")
    print(f"integrated sampled power:   {sampled_j:10.1f} J  (sampled/counter = {sampled_j / counter_j:.4f})")
    cc_j = cc.gpu_energy_kwh * 3.6e6 if cc.gpu_energy_kwh is not None else None
    if cc_j is None:
        print(f"CodeCarbon GPU energy:      unavailable ({cc.error})")
    else:
        print(f"CodeCarbon GPU energy:      {cc_j:10.1f} J  (codecarbon/counter = {cc_j / counter_j:.4f})")
    pynvml.nvmlShutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
