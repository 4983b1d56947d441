"""What could make a comparison in this run folder unfair, in words for the report's headline:
contended runs, methods run on different engines, two methods that ran the same computation,
and what data parallelism changes (updates per env step, effective batch)."""
from __future__ import annotations

import json
from typing import Any

import pandas as pd

from bench.energy.contention import CONTENDED_ABOVE, is_contended
from bench.schema import Status
from reports.format import fmt_num
from reports.load import RunFolder

_NOT_COMPUTATION = ("method", "seed", "summary", "precision_reason", "engine_reason", "threads", "placement",
                    "seed_batch_seeds")
"""config.json keys that name or describe a run without changing what it computes."""


CONTENDED_MARK = " ‡"


def contended(rec: dict[str, Any]) -> bool:
    """Whether other processes took more than CONTENDED_ABOVE of the run's CPU, or used its GPUs."""
    return is_contended(rec.get("foreign_cpu_share"), rec.get("foreign_gpu_processes"))


def contention_warning(seeds: pd.DataFrame) -> str | None:
    bad = [r for r in seeds.to_dict("records") if contended(r)]
    if not bad:
        return None
    worst = max((r.get("foreign_cpu_share") or 0.0) for r in bad)
    names = sorted({f"{r['method']}/{r['env']} seed {int(r['seed'])}" for r in bad})
    return (f"Contended: {len(bad)} of {len(seeds)} seeds shared their hardware with other processes "
            f"(up to {worst:.0%} of the CPU time went to processes outside the run; threshold "
            f"{CONTENDED_ABOVE:.0%}): {', '.join(names[:6])}{' …' if len(names) > 6 else ''}. Their time, "
            "power and GPS-UP partly measure that contention and are marked ‡ in the results and the chart.")


def _is_spiking(method: str) -> bool:
    try:
        from baselines.registry import get_method

        return bool(get_method(method).spiking)
    except Exception:  # a method this machine does not have: assume it spikes
        return True


def engine_warning(seeds: pd.DataFrame) -> str | None:
    """Spiking methods compared on different engines (native kernels vs torch)."""
    if "engine" not in seeds.columns:
        return None
    by_method = {m: sorted({str(e) for e in g["engine"].dropna()}) for m, g in seeds.groupby("method")
                 if _is_spiking(str(m))}
    engines = {e for es in by_method.values() for e in es}
    if len(engines) <= 1:
        return None
    detail = "; ".join(f"{m}: {', '.join(es) or 'unknown'}" for m, es in by_method.items())
    return (f"Spiking methods ran on different engines ({detail}): their GPS-UP partly measures how "
            "each implementation was executed, not only the method (choose one with --engine).")


def _computation(config: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in config.items() if k not in _NOT_COMPUTATION}, sort_keys=True, default=str)


def same_computation_warnings(run: RunFolder) -> list[str]:
    """Pairs of methods whose configs (recipe as resolved on this hardware) are identical on an env:
    comparing them measures noise, not methods."""
    same: dict[tuple[str, ...], list[str]] = {}  # methods -> the envs on which they ran alike
    for env in run.envs:
        groups: dict[str, list[str]] = {}
        for m in run.methods:
            configs = [r.config for r in run.runs_of(m, env) if r.config]
            if configs:
                groups.setdefault(_computation(configs[0]), []).append(m)
        for methods in groups.values():
            if len(methods) > 1:
                same.setdefault(tuple(methods), []).append(env)
    return [f"{' and '.join(methods)} ran the same computation on {', '.join(envs)} on this hardware "
            "(identical resolved settings, e.g. a bf16 recipe that fell back to fp32 on a CPU "
            "without native bf16, at one rank): their GPS-UP against each other is noise."
            for methods, envs in same.items()]


def data_parallel_note(seeds: pd.DataFrame, run: RunFolder) -> str | None:
    """What W > 1 ranks change: each gradient step averages W batches, and updates per env step
    fall to 1/W (the budget is split across ranks)."""
    done = seeds[(seeds["status"] == Status.COMPLETE) & (seeds["world_size"] > 1)]
    if done.empty:
        return None
    parts = []
    for (m, w), g in done.groupby(["method", "world_size"], sort=False):
        batch = next((r.config.get("td3", {}).get("batch_size") for r in run.runs
                      if r.method == m and r.config and isinstance(r.config.get("td3"), dict)), None)
        per_step = (g["updates"] / g["steps"]).mean()
        eff = f"effective batch {int(w) * int(batch)} ({int(w)} × {batch})" if batch else f"{int(w)} batches per step"
        parts.append(f"{m} on {int(w)} ranks: {eff}, {fmt_num(per_step, 3)} gradient steps per env step")
    return ("Data parallel: " + "; ".join(parts) + ". Each rank collects its share of the env-step budget "
            "and every gradient step averages all ranks' batches, so fewer, larger updates are made than "
            "at one rank.")


def seed_batch_note(seeds: pd.DataFrame) -> str | None:
    """K seeds in one process share its energy: per-seed figures are the process's / K, and are
    comparable only between methods run at the same K."""
    if "seed_batch" not in seeds.columns:
        return None
    k = pd.to_numeric(seeds["seed_batch"], errors="coerce")
    by_method = {str(m): sorted({int(x) for x in g.dropna()}) for m, g in k.groupby(seeds["method"])}
    ks = {x for xs in by_method.values() for x in xs}
    if not ks or ks == {1}:
        return None
    detail = "; ".join(f"{m}: K = {', '.join(map(str, xs))}" for m, xs in by_method.items())
    if len(ks) > 1:
        return (f"Seed batches differ between methods ({detail}): a seed's energy is its process's divided by "
                "K, so GPS-UP across different K measures the batching, not the methods. Compare at equal K.")
    (k_all,) = ks
    return (f"Seed batches: every method trained {k_all} seeds together in one process (--seed-batch "
            f"{k_all}, batched weights through torch.func.vmap); each seed's time is the batch's and its "
            f"energy the process's divided by {k_all}. GPS-UP compares methods at this equal K only; these "
            "per-seed figures are not those of runs trained one seed per process.")


def warnings(run: RunFolder, seeds: pd.DataFrame) -> list[str]:
    found = [contention_warning(seeds), engine_warning(seeds), *same_computation_warnings(run),
             data_parallel_note(seeds, run), seed_batch_note(seeds)]
    return [w for w in found if w]
