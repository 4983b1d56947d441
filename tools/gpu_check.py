"""Every GPU check of the suite, one table (`tools/gpu_check_all.sh` runs it on a lent GPU, <= 8 min):

1. capture: per method x fp32/bf16, whether the seed batch's update burst was captured as a CUDA graph
   (ok) or fell back to eager, and the graphed batch's max |Δ| from an eager twin after U updates;
2. run: a whole seed-batch run (device-resident replay, fused draws, graphed bursts, graphed acting and
   batched evaluation) against its eager twin: max |Δ| of every net and Adam moment after U updates,
   and whether the evaluation returns are equal;
3. speed: update ms, action ms and loop env steps/s at K = 1 (a single seed on CUDA trains as a batch
   of one: `bench.run.seed_batch_runner.single_seed_as_batch`), 4 and 16, through the seed batch's
   path (device-resident replay, graphed bursts and acting);
4. energy: NVML's counter over a K-seed batch run against the sum of its seeds' energy_j;
5. gloo: a 2-rank Gloo run sharing one device; the ranks' parameter hashes must be equal;
6. nccl refusal: `--nproc 2` with NCCL where fewer than 2 GPUs are visible: exit 2, one line.

`--device cpu` is the dry mode that tests the plumbing here: capture runs through the eager stand-in
(`spikerl.cuda_graphs.EagerReplay`), the refusal through a faked GPU count, and the energy row says
it needs NVML. What only a GPU checks: real capture, the speeds that matter, NVML energy.

    python -m tools.gpu_check --out OUT --device cuda
    python -m tools.gpu_check --out OUT --device cpu --tiny --updates 6 --loop-steps 300 --ks 1,2

An env-stepping row (serial vs gymnasium's vector envs, `tools.vector_env_perf`) comes with the
speed part: it needs no GPU but the device machine's cores.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from baselines.registry import get_method
from spikerl import native_lib
from spikerl.checkpoint import CHECKPOINT_NAME, load_checkpoint
from spikerl.config import TD3Config
from spikerl.cuda_graphs import CaptureFailed, EagerReplay, GraphedBurst, capture_for
from spikerl.loop import build_agent
from spikerl.seed_batch import BatchedTD3, BurstInputs, SeedGenerators

ENV = "HalfCheetah-v4"
OBS, ACT = 17, 6
METHODS = ("spikerl", "popsan", "dsrl", "mlp")
Row = tuple[str, str, str]
"""(part, item, result)."""


def _batch(method: str, precision: str, device: torch.device, k: int, tiny: bool) -> BatchedTD3:
    spec = get_method(method)
    params = dict(spec.actor_params(ENV))
    cfg_d = {**TD3Config().to_dict(), **spec.td3_params(ENV), "precision": precision}
    if tiny:
        params["hidden"] = (16, 16)
        cfg_d.update(batch_size=8, critic_hidden=(16, 16))
    cfg = TD3Config.from_dict(cfg_d)
    actors, critics = [], []
    for s in range(k):
        torch.manual_seed(s)
        agent = build_agent(spec, ENV, cfg, params, OBS, ACT, 1.0, device)
        actors.append(agent.actor)
        critics.append(agent.critic)
    return BatchedTD3(actors, critics, cfg, 1.0, device, SeedGenerators.seeded(range(k), device))


def _inputs(td3: BatchedTD3, n: int, gen: torch.Generator) -> BurstInputs:
    rows, dev = n * td3.cfg.batch_size, td3.device

    def draw(*shape: int, uniform: bool = False) -> torch.Tensor:
        x = torch.rand(*shape, generator=gen) if uniform else torch.randn(*shape, generator=gen)
        return x.to(dev)

    K = td3.K
    return BurstInputs(draw(K, rows, OBS).clamp(-3, 3), draw(K, rows, ACT, uniform=True) * 2 - 1, draw(K, rows),
                       draw(K, rows, OBS).clamp(-3, 3), (draw(K, rows, uniform=True) < 0.1).float(),
                       td3.draw_burst(n, td3.cfg.batch_size, ACT))


def capture_row(method: str, precision: str, device: torch.device, updates: int, tiny: bool) -> Row:
    """Capture status and graphed-vs-eager max |Δ| of all parameters after `updates` updates (bursts of 2)."""
    eager, graphed = _batch(method, precision, device, 2, tiny), _batch(method, precision, device, 2, tiny)
    capture = capture_for(device) if device.type == "cuda" else EagerReplay
    runner = GraphedBurst(graphed, capture)
    gen_a, gen_b = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    # the seed batch vmaps its actors: the torch engine (the native kernels cannot be vmapped)
    with warnings.catch_warnings(record=True) as caught, native_lib.engine("torch"):
        warnings.simplefilter("always", CaptureFailed)
        for _ in range(max(1, updates // 2)):
            eager.update_burst(_inputs(eager, 2, gen_a))
            runner.run(_inputs(graphed, 2, gen_b))
    diff = max((a - b).abs().max().item() for net in ("actor", "critic")
               for a, b in zip(getattr(eager, net).params.values(), getattr(graphed, net).params.values(), strict=True))
    failed = [str(w.message) for w in caught if issubclass(w.category, CaptureFailed)]
    if failed:
        status = f"fallback ({failed[0][:120]})"
    elif runner.graphs:
        status = "ok" if device.type == "cuda" else "ok (eager stand-in)"
    else:
        status = "not captured"
    return "capture", f"{method} {precision}", f"{status}; max |d| after {eager.updates} updates {diff:.3g}"


def _checkpoint_tensors(path: Path) -> dict[str, torch.Tensor]:
    td3 = load_checkpoint(path)["td3"]
    out = {f"{net}.{k}": v for net in ("actor", "critic", "actor_target", "critic_target") for k, v in td3[net].items()}
    for opt in ("actor_opt", "critic_opt"):
        for i, st in td3[opt]["state"].items():
            out.update({f"{opt}.{i}.{k}": v for k, v in st.items() if k != "step"})
    return out


def run_row(method: str, device: torch.device, updates: int, tiny: bool, out: Path) -> Row:
    """A K = 2 seed-batch run graphed (on the CPU: the eager stand-in) against the same run eager."""
    from spikerl.batch_loop import train_seed_batch

    spec = get_method(method)
    params = {**spec.actor_params(ENV), **({"hidden": (16, 16)} if tiny else {})}
    every = max(1, min(50, updates))
    cfg = TD3Config.from_dict({**TD3Config().to_dict(), **spec.td3_params(ENV), "start_steps": 200,
                               "update_after": 200, "update_every": every, "total_steps": 200 + updates,
                               "eval_every": 200 + updates, "eval_episodes": 1, "checkpoint_every": 200 + updates,
                               **({"batch_size": 8, "critic_hidden": (16, 16)} if tiny else {})})
    results, dirs = [], []
    for graphed in (False, True):
        folder = [out / "run_check" / f"{method}-{'graphed' if graphed else 'eager'}-{s}" for s in (0, 1)]
        capture = EagerReplay if graphed and device.type != "cuda" else None
        with warnings.catch_warnings():
            warnings.simplefilter("error", CaptureFailed)  # a fallback must not pass as graphed
            results.append(train_seed_batch(spec, ENV, (0, 1), cfg, params, run_dirs=folder, device=device,
                                            cuda_graphs=graphed, graph_capture=capture))
        dirs.append(folder)
    diff = 0.0
    for a, b in zip(dirs[0], dirs[1], strict=True):
        ta, tb = _checkpoint_tensors(a / CHECKPOINT_NAME), _checkpoint_tensors(b / CHECKPOINT_NAME)
        diff = max(diff, max((ta[k].double() - tb[k].double()).abs().max().item() for k in ta))
    same_evals = all([e.returns for e in x.evals] == [e.returns for e in y.evals]
                     for x, y in zip(results[0], results[1], strict=True))
    how = "graphed" if device.type == "cuda" else "eager stand-in"
    return "run", f"{method} K=2 {how} vs eager", (f"max |d| after {results[0][0].updates} updates {diff:.3g}; "
                                                   f"eval returns {'equal' if same_evals else 'DIFFER'}")


def speed_rows(method: str, device: str, ks: list[int], loop_steps: int) -> list[Row]:
    from bench.perf_seed_batch import seed_batch_row

    rows = []
    for k in ks:
        t0 = time.perf_counter()
        r = seed_batch_row(method, ENV, k, loop_steps, None, device=device, engine="torch")
        upd, act, sps = r["update_ms"], r["action_ms"], r["loop_sps_aggregate"]
        rows.append(("speed", f"{method} K={k}", f"update {upd:.2f} ms, action {act:.3f} ms, loop {sps:,.0f} env "
                                                  f"steps/s (aggregate) [{time.perf_counter() - t0:.0f} s]"))
    return rows


def env_rows(ks: list[int]) -> list[Row]:
    """Serial vs gymnasium's vector envs at each K (aggregate env steps/s, median of 3)."""
    import statistics

    from tools.vector_env_perf import measure

    rows = []
    for k in ks:
        got = {w: statistics.median(measure(ENV, k, w, 200) for _ in range(3)) for w in ("serial", "sync", "async")}
        rows.append(("envs", f"K={k} serial/sync/async", " / ".join(f"{v:,.0f}" for v in got.values())
                     + " env steps/s (aggregate)"))
    return rows


def _cli(args: list[str], out: Path, timeout_s: float, prelude: str = "") -> subprocess.CompletedProcess:
    code = f"{prelude}\nimport sys\nfrom bench.cli.main import main\nsys.exit(main({args!r}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s, cwd=out)


def _nvml_counter_j() -> float | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetTotalEnergyConsumption(pynvml.nvmlDeviceGetHandleByIndex(0)) / 1000.0
    except Exception:  # noqa: BLE001 - no NVML: the row says so
        return None


def energy_row(device: str, out: Path, steps: int) -> Row:
    if device != "cuda":
        return "energy", "per seed vs counter", "n/a: needs NVML on a GPU (dry mode)"
    before = _nvml_counter_j()
    if before is None:
        return "energy", "per seed vs counter", "n/a: NVML unreadable"
    run = out / "energy_run"
    proc = _cli(["run", "--methods", "popsan", "--seeds", "0-3", "--seed-batch", "4", "--device", "cuda", "--profile",
                 "smoke", "--total-steps", str(steps), "--plain", "--out", str(run)], out, 240)
    counter = (_nvml_counter_j() or before) - before
    if proc.returncode != 0:
        return "energy", "per seed vs counter", f"run failed (exit {proc.returncode}): {proc.stderr.strip()[-200:]}"
    seeds = [float(r["energy_j"]) for r in csv.DictReader(open(run / "summary.csv")) if r.get("energy_j")]
    total = sum(seeds)
    if counter <= 0:
        return "energy", "per seed vs counter", f"sum {total:.0f} J; counter did not move"
    return "energy", "per seed vs counter", (f"{len(seeds)} seeds: {', '.join(f'{e:.0f}' for e in seeds)} J, "
                                             f"sum {total:.0f} J; counter over the whole process {counter:.0f} J "
                                             f"(ratio {total / counter:.3f})")


def gloo_row(device: str, out: Path, steps: int) -> Row:
    run = out / "gloo_run"
    proc = _cli(["run", "--methods", "popsan", "--nproc", "2", "--backend", "gloo", "--device", device, "--profile",
                 "smoke", "--total-steps", str(steps), "--plain", "--out", str(run)], out, 300)
    if proc.returncode != 0:
        return "gloo", "2 ranks, one device", f"failed (exit {proc.returncode}): {proc.stderr.strip()[-200:]}"
    result = json.loads(next(run.glob("popsan/*/seed0/result.json")).read_text())
    hashes = result.get("param_sha256_by_rank") or []
    same = len(hashes) == 2 and len(set(hashes)) == 1
    return "gloo", "2 ranks, one device", f"{'ok' if same else 'ranks differ'}: world {result.get('world_size')}, " \
                                          f"backend {result.get('backend')}, {len(set(hashes))} distinct hash(es)"


def nccl_refusal_row(device: str, out: Path) -> Row:
    prelude = ""
    if device != "cuda":  # dry mode: one GPU faked at torch's boundary
        prelude = "import torch\ntorch.cuda.is_available = lambda: True\ntorch.cuda.device_count = lambda: 1"
    elif torch.cuda.device_count() >= 2:
        return "nccl", "--nproc 2 on 1 GPU", "n/a: 2 or more GPUs visible"
    proc = _cli(["run", "--methods", "mlp", "--device", "cuda", "--nproc", "2", "--backend", "nccl", "--out",
                 str(out / "nccl_run")], out, 60, prelude)
    lines = proc.stderr.strip().splitlines()
    ok = proc.returncode == 2 and len(lines) == 1 and not (out / "nccl_run").exists()
    label = "refused" if ok else "NOT refused as it should be"
    return "nccl", "--nproc 2 on 1 GPU" + (" (faked)" if prelude else ""), \
        f"{label}: exit {proc.returncode}, {len(lines)} line(s): {lines[0][:140] if lines else ''}"


def _guarded(part: str, fn: Callable[[], Any]) -> list[Row]:
    """A part that fails becomes a row saying so; the other parts still run. Rows are printed as
    they come (a killed check still shows what it finished), and again as one table at the end."""
    try:
        got = fn()
        rows = got if isinstance(got, list) else [got]
    except Exception as exc:  # noqa: BLE001
        rows = [(part, "error", f"{type(exc).__name__}: {str(exc)[:200]}")]
    for row in rows:
        print("  ".join(row), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--updates", type=int, default=250)
    p.add_argument("--ks", default="1,4,16")
    p.add_argument("--speed-methods", default="popsan,spikerl")
    p.add_argument("--loop-steps", type=int, default=1500)
    p.add_argument("--run-steps", type=int, default=1500, help="env steps of the energy and Gloo runs")
    p.add_argument("--tiny", action="store_true", help="16-unit nets and batch 8 for the capture rows (dry mode)")
    p.add_argument("--parts", default="capture,run,speed,envs,energy,gloo,nccl")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: --device cuda but no CUDA device is visible (use --device cpu for the dry mode)",
              file=sys.stderr)
        return 2
    if args.device == "cpu":
        torch.set_num_threads(1)  # the dry mode's timings are plumbing, on the suite's one thread
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    parts, dev = set(args.parts.split(",")), torch.device(args.device)
    rows: list[Row] = []
    t0 = time.perf_counter()
    if "capture" in parts:
        for m in METHODS:
            for prec in ("fp32", "bf16"):
                rows += _guarded("capture", lambda m=m, prec=prec: capture_row(m, prec, dev, args.updates, args.tiny))
    if "run" in parts:
        for m in args.speed_methods.split(","):
            rows += _guarded("run", lambda m=m: run_row(m, dev, args.updates, args.tiny, out))
    if "speed" in parts:
        for m in args.speed_methods.split(","):
            rows += _guarded("speed", lambda m=m: speed_rows(m, args.device, [int(k) for k in args.ks.split(",")],
                                                         args.loop_steps))
    if "envs" in parts:
        # the largest K only: Async's K worker processes start once per repeat, which costs device time
        rows += _guarded("envs", lambda: env_rows([max(int(k) for k in args.ks.split(","))]))
    if "energy" in parts:
        rows += _guarded("energy", lambda: energy_row(args.device, out, args.run_steps))
    if "gloo" in parts:
        rows += _guarded("gloo", lambda: gloo_row(args.device, out, args.run_steps))
    if "nccl" in parts:
        rows += _guarded("nccl", lambda: nccl_refusal_row(args.device, out))
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu (dry mode)"
    print(f"== gpu_check on {name}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"{time.perf_counter() - t0:.0f} s")
    width = max(len(r[1]) for r in rows) if rows else 10
    for part, item, result in rows:
        print(f"{part:8s} {item:{width}s}  {result}")
    (out / "gpu_check.json").write_text(json.dumps([list(r) for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
