"""The end of a distributed run: every node's account summed into the run's.

CPU, RAM and CodeCarbon: each node's local rank 0 adds its node's with one all_reduce in which
only those processes contribute; GPUs: every rank's per-GPU accounts are gathered and each GPU
counted once (bench.energy.ranks). A run that did not complete keeps its node's totals: a rank that
failed may never reach a collective, and the others must not hang on it."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch
import torch.distributed as dist

from bench.energy.base import COMPONENTS
from bench.energy.ranks import dedup_ranks, gpu_sums
from bench.energy.totals import EnergyTotals


def reduce_totals(node: EnergyTotals, status: str, *, owner_active: bool, resumed: bool,
                  gpu_state: dict[str, Any]) -> EnergyTotals:
    """All nodes' account from this node's (`owner_active`: this process is the node's local rank 0
    and meters; `gpu_state` is updated in place with every rank's GPUs' start and end state)."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return node
    if status != "complete":
        # A rank that failed may never reach a collective; don't hang the others on it.
        out = EnergyTotals(**{**asdict(node)})
        out.meter_errors = node.meter_errors + [f"run {status}: totals cover this node only"]
        return out
    # CPU, RAM and CodeCarbon: each node's local rank 0 adds its node's; GPUs: gathered per GPU
    # identity from every rank and counted once (bench.energy.ranks)
    owner = 1.0 if owner_active else 0.0
    own_gpu = gpu_sums(node.gpus)
    cov = {c: node.coverage_s.get(c, [0.0, 0.0]) for c in ("cpu", "ram")}
    vec = [node.train_energy_j - own_gpu["train_j"], node.eval_energy_j - own_gpu["eval_j"],
           node.other_energy_j - own_gpu["other_j"], node.cpu_energy_j, node.ram_energy_j,
           node.codecarbon_emissions_kg or 0.0, node.codecarbon_energy_kwh or 0.0,
           node.foreign_cpu_s, node.observed_cpu_s, float(node.foreign_gpu_processes),
           node.cpu_attributed_j, node.ram_attributed_j, *cov["cpu"], *cov["ram"], node.unattributed_j,
           *(node.idle_j.get(c, 0.0) for c in ("cpu", "ram")), *(node.idle_power_w.get(c, 0.0) for c in ("cpu", "ram"))]
    vec = [owner * v for v in vec] + [
        owner * (node.codecarbon_emissions_kg is None), owner * node.estimated, owner,
        owner * bool(node.emissions_errors), *(owner * (c in node.components) for c in ("cpu", "ram"))]
    backend = str(dist.get_backend())
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    t = torch.tensor(vec, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    (train_j, eval_j, other_j, cpu_j, ram_j, kg, kwh, foreign_s, observed_s, foreign_gpu, cpu_attr_j, ram_attr_j,
     cpu_met_s, cpu_win_s, ram_met_s, ram_win_s, unattr_j, cpu_idle_j, ram_idle_j, cpu_idle_w, ram_idle_w,
     n_missing, n_est, n_nodes, n_cc_err, *n_comp) = t.cpu().tolist()
    mine = {"gpus": node.gpus, "source": node.component_sources.get("gpu", ""), "state": gpu_state,
            "estimated": bool(node.component_estimated.get("gpu")), "errors": list(node.meter_errors)}
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, mine)
    gpus = dedup_ranks(g["gpus"] for g in gathered)
    for when in ("start", "end"):  # every rank's GPUs' state, each GPU once
        merged: dict[str, Any] = {}
        for g in gathered:
            for ident, st in (g["state"] or {}).get(when, {}).items():
                merged.setdefault(ident, st)
        if merged:
            gpu_state[when] = merged
    gpu = gpu_sums(gpus)
    meter_errors = list(node.meter_errors)
    for rank, g in enumerate(gathered):
        if rank != dist.get_rank():
            meter_errors += [f"rank {rank}: {e}" for e in g["errors"] if e not in meter_errors]
    emissions_errors = list(node.emissions_errors)
    others_cc = int(n_cc_err) - int(owner * bool(node.emissions_errors))
    if others_cc > 0:
        emissions_errors.append(f"{others_cc} other node(s) reported CodeCarbon errors (see their logs)")
    if resumed and n_nodes > 1:
        meter_errors.append("resumed multi-node run: each node's pre-resume energy came from its own checkpoint")
    comps = (["gpu"] if gpus else []) + [c for c, n in zip(("cpu", "ram"), n_comp, strict=True) if n > 0]
    sources = dict(node.component_sources)
    estimated = dict(node.component_estimated)
    if gpus:
        sources["gpu"] = "+".join(dict.fromkeys(x for g in gathered for x in g["source"].split("+") if x))
        estimated["gpu"] = any(g["estimated"] for g in gathered)
    return EnergyTotals(
        train_energy_j=train_j + gpu["train_j"], eval_energy_j=eval_j + gpu["eval_j"],
        other_energy_j=other_j + gpu["other_j"],
        gpu_energy_j=gpu["train_j"] + gpu["eval_j"] + gpu["other_j"], cpu_energy_j=cpu_j, ram_energy_j=ram_j,
        components=[c for c in COMPONENTS if c in comps],
        component_sources=sources, component_estimated=estimated,
        models=node.models,
        codecarbon_emissions_kg=None if n_missing > 0 else kg, codecarbon_energy_kwh=None if n_missing > 0 else kwh,
        foreign_cpu_s=foreign_s, observed_cpu_s=observed_s, foreign_gpu_processes=int(foreign_gpu),
        cpu_attributed_j=cpu_attr_j, ram_attributed_j=ram_attr_j, unattributed_j=unattr_j,
        attributed=node.attributed, concurrent_runs=node.concurrent_runs,
        sources=list(dict.fromkeys(node.sources + ([sources["gpu"]] if gpus and not owner else []))),
        estimated=n_est > 0 or estimated.get("gpu", False), meter_errors=meter_errors,
        emissions_errors=emissions_errors, energy_j_by_device=dict(node.energy_j_by_device),
        gpus=gpus, coverage_s={"cpu": [cpu_met_s, cpu_win_s], "ram": [ram_met_s, ram_win_s]},
        idle_window_s=node.idle_window_s,
        idle_power_w={c: w for c, w in (("cpu", cpu_idle_w), ("ram", ram_idle_w)) if c in node.idle_power_w},
        idle_j={c: j for c, j in (("cpu", cpu_idle_j), ("ram", ram_idle_j)) if c in node.idle_j})
