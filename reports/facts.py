"""The report's prose: the headline (how the energy was obtained, whether the run is partial),
what was run, one finding per candidate method × env, and each method's config."""
from __future__ import annotations

import json

import pandas as pd

from bench.metrics.format import ratio_text
from bench.schema import Status
from reports.format import DASH, finite, fmt_num, fmt_ratio, plain
from reports.load import RunFolder


def _hardware(env: dict) -> str:
    gpus = env.get("gpus")
    hardware = [str(env.get("cpu_model") or "CPU model unknown")]
    if env.get("cpu_count"):
        hardware.append(f"{env['cpu_count']} CPU threads")
    hardware.append(f"GPUs: {plain(gpus)}" if gpus else "no GPU")
    return "; ".join(hardware)


def facts(run: RunFolder, baseline: str) -> list[tuple[str, str]]:
    """What was run, where, with which settings."""
    plan = run.plan or {}
    env = run.environment or {}
    configs = [r.config for r in run.runs if r.config]
    world = sorted({str(c.get("world_size")) for c in configs if c.get("world_size") is not None}
                   | {str(int(x)) for x in run.seeds["world_size"].dropna()})
    precision = sorted({str(c.get("precision")) for c in configs if c.get("precision")}
                       | {str(x) for x in run.seeds["precision"].dropna()})
    per_method: dict[str, set[str]] = {}
    engines: dict[str, set[str]] = {}
    reasons: set[str] = set()
    for r in run.runs:
        if r.config:
            per_method.setdefault(r.method, set()).add(
                f"{r.config.get('precision', '?')} × {r.config.get('world_size', '?')}")
            engines.setdefault(r.method, set()).add(plain(r.config.get("engine")))
            if r.config.get("engine_reason") and r.config.get("engine_reason") != "no spiking layers":
                reasons.add(plain(r.config.get("engine_reason")))
    return [
        ("Methods", ", ".join(run.methods) or DASH),
        ("Baseline (GPS-UP)", baseline),
        ("Environments", ", ".join(run.envs) or DASH),
        ("Seeds", ", ".join(str(s) for s in plan.get("seeds", [])) or
         ", ".join(str(s) for s in sorted(set(run.seeds["seed"])))),
        ("Env-step budget per seed", fmt_num(plan.get("total_steps"), 9)
         + (f" (profile {plan['profile']})" if plan.get("profile") else "")),
        ("Device", _device(run, plan)),
        ("Hardware", _hardware(env)),
        ("World size", ", ".join(world) or plain(plan.get("nproc"))),
        ("Precision", ", ".join(precision) or DASH),
        ("Precision × world size per method",
         "; ".join(f"{m}: {', '.join(sorted(v))}" for m, v in per_method.items()) or DASH),
        ("Engine of the spiking layers", "; ".join(f"{m}: {', '.join(sorted(v))}" for m, v in engines.items())
         + (f" ({'; '.join(sorted(reasons))})" if reasons else "") if engines else DASH),
        ("Carbon intensity country", plain(plan.get("country"))),
        ("Started (UTC)", plain(plan.get("created_utc"))),
        ("Git commit", plain(env.get("git_commit")) + (" (dirty tree)" if env.get("git_dirty") else "")),
    ]


def _device(run: RunFolder, plan: dict) -> str:
    """The device(s) the runs used (result.json / config.json), and what was asked when it differs."""
    used = sorted({str(x) for x in run.seeds.get("device", []) if isinstance(x, str) and x}
                  | {str(r.config.get("device")) for r in run.runs if r.config and r.config.get("device")})
    asked = plain(plan.get("device"))
    if not used:
        return asked
    return ", ".join(used) + (f" (asked: {asked})" if asked not in used and asked != "—" else "")


def method_summaries(seeds: pd.DataFrame, points: pd.DataFrame, methods: list[str], envs: list[str],
                     baseline: str, units) -> list[str]:  # noqa: ANN001
    """One line per method across envs: final return per env (mean of complete seeds), energy and
    emissions per run, and GPS-UP against the baseline as a range over envs."""
    done = seeds[seeds["status"] == Status.COMPLETE]
    out = []
    for m in methods:
        md = done[done["method"] == m]
        if md.empty:
            continue
        rets = []
        for e in envs:
            g = md[md["env"] == e]
            if len(g):
                r = g["final_return_mean"]
                rets.append(f"{fmt_num(r.mean(), 4)}{f' ± {fmt_num(r.std(), 3)}' if len(g) > 1 else ''} on {e}")
        counts = sorted({int((md["env"] == e).sum()) for e in envs if (md["env"] == e).any()})
        n = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
        line = (f"{m}{' (baseline)' if m == baseline else ''}: return {'; '.join(rets) or '—'} "
                f"({n} complete seed{'s' if counts[-1] != 1 else ''} per env); per run "
                f"{fmt_num(md['energy_j'].mean() / units.energy.scale)} {units.energy.label}, "
                f"{fmt_num(md['emissions_kg'].mean() / units.mass.scale)} {units.mass.label}")
        pts = points[(points["method"] == m) & points["speedup"].notna()] if len(points) else points
        if m != baseline and len(pts):
            measured = pts[pts["gpsup_basis"] == "measured"] if "gpsup_basis" in pts else pts.iloc[0:0]
            saves = int((measured["greenup"] > 1).sum())
            phases = pts["gpsup_phase"].dropna() if "gpsup_phase" in pts else pts.iloc[0:0]
            phase = f" ({phases.iloc[0]} phase)" if len(phases) else ""
            line += (f"; against {baseline}{phase}: speedup {_span(pts, 'speedup')}, "
                     f"greenup {_span(pts, 'greenup')} ")
            if len(measured):
                modelled = len(pts) - len(measured)
                line += (f"(uses less energy on {saves} of {len(measured)} env{'s' if len(measured) != 1 else ''} "
                         "with measured energy" + (f"; the range includes {modelled} env(s) whose energy is "
                                                   "partly or wholly from a power model)" if modelled else ")"))
            else:  # a greenup from a power model is ≈ speedup by construction: not a finding
                line += "(energy from a power model on at least one side: no energy finding)"
        out.append(line + ".")
    return out


def _span(pts: pd.DataFrame, col: str) -> str:
    """A ratio's range over envs, one value where the ends agree to the shown precision."""
    lo, hi = pts[col].min(), pts[col].max()
    return fmt_ratio(lo) if not finite(hi) or abs(hi - lo) < 5e-3 else f"{fmt_ratio(lo)}–{fmt_ratio(hi)}"


def headline(seeds: pd.DataFrame, counts: dict[str, int]) -> tuple[bool, list[str]]:
    """(any energy estimated, key messages): the estimated-energy warning first of all."""
    known = seeds[seeds["estimated"].notna()]
    n_est = int(known["estimated"].astype(bool).sum())
    estimated = n_est > 0
    lines = []
    if estimated:
        srcs = sorted({str(s) for s in known[known["estimated"].astype(bool)]["energy_source"].dropna()})
        lines.append(
            f"Energy is ESTIMATED (no NVML/RAPL) for {n_est} of {len(seeds)} seeds"
            f" (source: {', '.join(srcs) or 'estimate'}): energy, power, emissions, powerup, greenup "
            "and the carbon equivalents of those seeds come from CodeCarbon's power model, not a "
            "measurement, and are labelled estimated wherever they appear.")
    elif len(known):
        srcs = sorted({str(s) for s in known["energy_source"].dropna()})
        lines.append(f"Energy measured ({', '.join(srcs) or 'NVML/RAPL'}) for every seed that reported it.")
    else:
        lines.append("No seed has reported its energy yet.")
    partial = {s: n for s, n in counts.items() if s != Status.COMPLETE and n}
    if partial:
        lines.append("Partial run: " + ", ".join(f"{n} {s}" for s, n in partial.items())
                     + f" of {sum(counts.values())} seeds; aggregates use the "
                       f"{counts.get(Status.COMPLETE, 0)} complete seed(s) only.")
    return estimated, lines


def findings(points: pd.DataFrame, baseline: str) -> list[str]:
    """One line per candidate method × env: its GPS-UP against the baseline, in words."""
    out = []
    for rec in points.to_dict("records"):
        if rec["method"] == baseline or not finite(rec["speedup"]):
            continue
        g = rec["greenup"]
        basis = rec.get("gpsup_basis")
        if basis == "measured":
            verdict = ("uses less energy" if finite(g) and g > 1 else
                       "uses more energy" if finite(g) and g < 1 else "uses the same energy")
        else:  # powerup ≈ 1 and greenup ≈ speedup by construction on a power model
            verdict = f"no energy finding: basis {basis or 'model'} (power model)"
        est = " (energy estimated)" if rec["estimated"] else ""
        cat = f", category {int(rec['gpsup_category'])}" if finite(rec["gpsup_category"]) else ""
        word = "" if basis == "measured" else f" {basis or 'model'}"
        out.append(f"{rec['method']} vs {baseline} on {rec['env']} ({rec.get('gpsup_phase', 'train')} phase): "
                   f"speedup {ratio_text(rec['speedup'], rec.get('speedup_ci_low'), rec.get('speedup_ci_high'))}, "
                   f"powerup {fmt_ratio(rec['powerup'])}{word}, greenup {fmt_ratio(rec['greenup'])}{word}{cat} — "
                   f"{verdict}{est} ({rec['n_seeds']} complete seed(s)).")
    return out


def configs(run: RunFolder) -> list[tuple[str, str]]:
    """(title, pretty JSON) of the first seed's config.json per method × env; the title says
    which keys the other seeds change, so one config stands for all."""
    out = []
    for m in run.methods:
        for e in run.envs:
            rs = [r for r in run.runs_of(m, e) if r.config]
            if not rs:
                continue
            first = rs[0].config or {}
            diffs = {k for r in rs[1:] for k in set(first) | set(r.config or {})
                     if k != "seed" and first.get(k) != (r.config or {}).get(k)}
            title = f"{m} / {e} — config.json of seed {rs[0].seed}"
            if len(rs) > 1:
                others = ", ".join(str(r.seed) for r in rs[1:])
                title += (f" (seeds {others} differ in: {', '.join(sorted(diffs))})" if diffs
                          else f" (seeds {others}: identical apart from the seed)")
            out.append((title, json.dumps(first, indent=2, sort_keys=True, default=str)))
    return out
