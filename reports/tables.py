"""The report's tables, as display strings: results per env (aggregate and per seed), spike
activity, the aggregates across envs and their normalisation, and the appendix (what was run,
hyperparameters, software and hardware).

The energy tables (where the energy numbers come from, our account against CodeCarbon's, carbon
equivalents) live in reports.energy_tables and the display units in reports.units; both are
re-exported here, so `from reports.tables import account_table` keeps working.

Every number derived from an estimated energy (energy, power, emissions, powerup, greenup,
category, equivalents) is labelled estimated, and every table names the files it comes from.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from bench.energy.contention import CONTENDED_ABOVE
from bench.schema import Status
from reports import stats
from reports.aggregates import complete_seeds
from reports.energy_tables import account_table, equivalents_table, power_sources_table
from reports.fairness import CONTENDED_MARK
from reports.format import (
    DASH,
    INFERENCE_ENERGY_UNITS,
    SEED_FILES,
    decimals_for,
    est_header,
    finite,
    fmt_fixed,
    fmt_num,
    fmt_range,
    pick_unit,
    plain,
    tagged,
)
from reports.gpsup_text import gpsup_notes, ratio_cell
from reports.load import RunFolder, SeedRun
from reports.model import STATUS_ORDER, Cell, Table
from reports.units import Units, column, report_units

__all__ = ["Units", "account_table", "activity_table", "crosstask_table", "environment_table", "equivalents_table",
           "facts_table", "hyperparameter_table", "normalization_table", "power_sources_table", "report_units",
           "results_tables"]

_WORST_FIRST = (Status.FAILED, Status.CORRUPT, Status.INTERRUPTED, Status.RUNNING, Status.PENDING)
_CUT_SHORT = (Status.INTERRUPTED, Status.FAILED, Status.CORRUPT)


def _status_cell(statuses: list[str]) -> Cell:
    counts = {s: statuses.count(s) for s in STATUS_ORDER if s in statuses}
    text = f"{counts.get(Status.COMPLETE, 0)}/{len(statuses)}"
    others = [f"{n} {s.value}" for s, n in counts.items() if s != Status.COMPLETE]
    if others:
        text += " · " + ", ".join(others)
    worst = next((s for s in _WORST_FIRST if s in counts), Status.COMPLETE)
    return Cell(text, f"status-{worst.value}")


def _target_note(seeds: pd.DataFrame) -> str | None:
    """The target return(s) behind 'energy to target' on one env."""
    col = seeds["target_return"].dropna()
    if col.empty:
        return None
    lo, hi = col.min(), col.max()
    if lo == hi:
        return f"Target return for 'energy to target': {fmt_num(lo, 5)}."
    return (f"Target return for 'energy to target' differs by seed ({fmt_num(lo, 5)} to "
            f"{fmt_num(hi, 5)}): each seed's target comes from the baseline run of the same seed.")


def _return_columns(sts: list[stats.SeedStats]) -> tuple[list[str], list[str]]:
    """'mean ± std' and 'IQM (CI low–high)' of the final returns, fixed decimals over the column
    ('*' marks a crude two-seed CI)."""
    d = decimals_for([x for st in sts for x in (st.mean, st.iqm)], sig=4, most=2)
    means, iqms = [], []
    for st in sts:
        if st.n == 0:
            means.append(DASH)
            iqms.append(DASH)
        elif st.n == 1:
            means.append(fmt_fixed(st.mean, d) + " (1 seed)")
            iqms.append(fmt_fixed(st.iqm, d) + " (no CI)")
        else:
            means.append(f"{fmt_fixed(st.mean, d)} ± {fmt_fixed(st.std, d)}")
            iqms.append(f"{fmt_fixed(st.iqm, d)} ({fmt_range(st.ci_low, st.ci_high, d)})" + ("*" if st.n < 3 else ""))
    return means, iqms


def _category_cell(method: str, baseline: str, category: Any, tag: str, basis: Any = "measured") -> Cell:
    if method == baseline:
        return Cell("baseline")
    if not finite(category):
        return Cell(DASH)
    c = int(category)
    if basis != "measured":  # a category drawn from a power model is not a result: no colour
        return Cell(f"{c} ({basis or 'model'}){tag}")
    return Cell(f"{c} {'▼' if c <= 4 else '▲'}{tag}", "green" if c <= 4 else "red")


def _to_target_text(done: pd.DataFrame, value: str, has_target: bool) -> str:
    reached = done["energy_to_target_j"].notna().sum()
    if not (len(done) and has_target or reached):
        return DASH
    text = value if reached else "not reached"
    return text + f" ({reached}/{len(done)} reached)"


def _aggregate_notes(baseline: str, seed_counts: set[int], target: str | None) -> list[str]:
    notes = ["Means over complete seeds only; running, interrupted and failed seeds are listed below "
             "with their status and are not averaged.",
             "IQM = interquartile mean (scipy.stats.trim_mean, 25 %); in brackets its 95 % percentile "
             "bootstrap CI over seeds (scipy.stats.bootstrap), low–high; with fewer than 4 seeds IQM = mean.",
             f"Speedup = T_{baseline} / T, powerup = P / P_{baseline}, greenup = speedup / powerup "
             f"= E_{baseline} / E (GPS-UP); categories 1–4 (▼) save energy, 5–8 (▲) cost energy."]
    if 1 in seed_counts:
        notes.append("(1 seed): one complete seed, so no std and no confidence interval.")
    if 2 in seed_counts:
        notes.append("* Two complete seeds: the bootstrap CI is crude (it can only take a few values).")
    if target is not None:
        notes.append(target)
    notes.append(f"{CONTENDED_MARK.strip()} contended: other processes used more than "
                 f"{CONTENDED_ABOVE:.0%} of the CPU time of this method's or the baseline's seeds "
                 "(result.json foreign_cpu_share), or its GPUs.")
    return notes


def results_tables(run: RunFolder, env: str, baseline: str, points: pd.DataFrame,
                   units: Units | None = None, phase: str = "train") -> tuple[Table, Table]:
    """(aggregate table, per-seed table) of one env, in the report's units."""
    seeds = run.seeds[run.seeds["env"] == env]
    units = units or report_units(run.seeds)
    methods = [m for m in run.methods if (seeds["method"] == m).any()]
    return (_aggregate_table(env, methods, seeds, baseline, points, units, phase),
            _seed_table(run, env, seeds, units))


def _aggregate_table(env: str, methods: list[str], seeds: pd.DataFrame, baseline: str,
                     points: pd.DataFrame, u: Units, phase: str = "train") -> Table:
    done = complete_seeds(seeds)
    est_rows = [bool(done[done["method"] == m]["estimated"].fillna(False).any()) for m in methods]
    h_energy, mark = est_header(f"Energy ({u.energy.label})", est_rows)
    h_power, h_co2, h_pu, h_gu, h_cat, h_ett = (est_header(h, est_rows)[0] for h in (
        f"Avg power ({u.power.label})", f"Emissions ({u.mass.label})", "Powerup", "Greenup", "Category",
        f"Energy to target ({u.energy.label})"))
    target = _target_note(seeds)
    headers = ["Method", "Complete seeds", "Return mean ± std", "Return IQM (95 % CI)",
               f"Wall time ({u.time.label})", h_energy, h_power, h_co2, f"Speedup ({phase})", h_pu, h_gu, h_cat,
               h_ett]
    by_m = [done[done["method"] == m] for m in methods]
    sts = [stats.describe(md["final_return_mean"]) for md in by_m]
    ret, iqm = _return_columns(sts)
    wall = column([md["wall_s"].mean() for md in by_m], u.time)
    energy = column([md["energy_j"].mean() for md in by_m], u.energy)
    power = column([md["avg_power_w"].mean() for md in by_m], u.power)
    co2 = column([md["emissions_kg"].mean() for md in by_m], u.mass)
    ett = column([md["energy_to_target_j"].mean() for md in by_m], u.energy)
    rows = []
    for k, (m, est, md) in enumerate(zip(methods, est_rows, by_m, strict=True)):
        tag = mark if est else ""
        pt = points[(points["method"] == m) & (points["env"] == env)]
        pr = pt.iloc[0].to_dict() if len(pt) else {}
        rows.append([
            Cell(m + (" (baseline)" if m == baseline else "") + (CONTENDED_MARK if pr.get("contended") else "")),
            _status_cell(list(seeds[seeds["method"] == m]["status"])), Cell(ret[k], "num"), Cell(iqm[k], "num"),
            Cell(wall[k], "num"), Cell(tagged(energy[k], tag), "num"), Cell(tagged(power[k], tag), "num"),
            Cell(tagged(co2[k], tag), "num"),
            Cell(ratio_cell(pr, "speedup"), "num"),
            Cell(tagged(ratio_cell(pr, "powerup"), tag), "num"),
            Cell(tagged(ratio_cell(pr, "greenup"), tag), "num"),
            _category_cell(m, baseline, pr.get("gpsup_category"), tag, pr.get("gpsup_basis")),
            Cell(_to_target_text(md, tagged(ett[k], tag), target is not None), "num"),
        ])
    return Table(
        key=f"results-{env}", title=f"Results on {env}", headers=headers, rows=rows,
        source=(f"Source: {SEED_FILES}result.json (status, steps, final_return_mean, wall_s, energy_j, "
                "avg_power_w, emissions_kg, energy_to_target_j); GPS-UP: see the quadrant's note."),
        notes=_aggregate_notes(baseline, {st.n for st in sts}, target) + gpsup_notes(points, env, phase))


def _so_far(rec: dict[str, Any], r: SeedRun | None) -> tuple[Any, Any, Any, Any, Any]:
    """(steps, wall_s, energy_j, final return, best return) of a running seed, from its logs."""
    final, best = rec.get("final_return_mean"), rec.get("best_return_mean")
    if r is not None and r.evals is not None and len(r.evals):
        final, best = r.evals["return_mean"].iloc[-1], r.evals["return_mean"].max()
    return rec.get("progress_step"), rec.get("progress_wall_s"), rec.get("progress_energy_j"), final, best


def _seed_note(rec: dict[str, Any], r: SeedRun | None, total_steps: Any) -> str:
    status = rec["status"]
    note = ""
    if status == Status.RUNNING:
        note = "still running: numbers so far (progress.csv, evals.csv)"
        if r is not None and all(f is None or f.empty for f in (r.progress, r.evals)):
            note = "no result.json, progress.csv or evals.csv yet"
    elif status == Status.PENDING:
        return "not started yet"
    elif status in _CUT_SHORT:
        bits = []
        if status != Status.CORRUPT and finite(rec.get("steps")) and finite(total_steps):
            bits.append(f"stopped at {fmt_num(rec.get('steps'), 7)} of {fmt_num(total_steps, 7)} steps")
        if rec.get("error") and str(rec.get("error")) != "nan":
            bits.append(str(rec["error"]))
        elif status == Status.CORRUPT:
            bits.append("result unreadable (see the missing or unreadable files)")
        note = "; ".join(bits)
    if rec.get("folder_missing"):
        note = "; ".join(x for x in ("seed folder missing: values from summary.csv", note) if x)
    return note


def _seed_values(run: RunFolder, rec: dict[str, Any], env: str) -> tuple[Any, ...]:
    """(steps, wall_s, energy_j, final, best) of a seed; running seeds: so far, from their logs."""
    r = run.run(rec["method"], env, int(rec["seed"]))
    if str(rec["status"]) == Status.RUNNING:
        return _so_far(rec, r)
    return (rec.get("steps"), rec.get("wall_s"), rec.get("energy_j"), rec.get("final_return_mean"),
            rec.get("best_return_mean"))


def _seed_table(run: RunFolder, env: str, seeds: pd.DataFrame, u: Units) -> Table:
    est = [bool(x) for x in seeds["estimated"].fillna(False)]
    h_energy, mark = est_header(f"Energy ({u.energy.label})", est)
    h_power, _ = est_header(f"Avg power ({u.power.label})", est)
    h_co2, _ = est_header(f"Emissions ({u.mass.label})", est)
    headers = ["Method", "Seed", "Status", "Steps", "Final return", "Best return",
               f"Wall time ({u.time.label})", h_energy, h_power, h_co2, "Energy source",
               f"Time to target ({u.time.label})", "Note"]
    order = {m: i for i, m in enumerate(run.methods)}
    seeds = seeds.assign(_o=seeds["method"].map(order)).sort_values(["_o", "seed"], kind="stable")
    recs = seeds.to_dict("records")
    vals = [_seed_values(run, rec, env) for rec in recs]
    d_ret = decimals_for([v for x in vals for v in (x[3], x[4])], sig=4, most=2)
    wall = column([x[1] for x in vals], u.time)
    energy = column([x[2] for x in vals], u.energy)
    power = column([rec.get("avg_power_w") for rec in recs], u.power)
    co2 = column([rec.get("emissions_kg") for rec in recs], u.mass)
    ttt = column([rec.get("time_to_target_s") for rec in recs], u.time)
    rows = []
    for k, (rec, (steps, _, _, final, best)) in enumerate(zip(recs, vals, strict=True)):
        status, tag = str(rec["status"]), mark if rec.get("estimated") else ""
        rows.append([
            Cell(str(rec["method"])), Cell(str(rec["seed"]), "num"), Cell(status, f"status-{status}"),
            Cell(fmt_fixed(steps, 0), "num"), Cell(fmt_fixed(final, d_ret), "num"), Cell(fmt_fixed(best, d_ret), "num"),
            Cell(wall[k], "num"), Cell(tagged(energy[k], tag), "num"), Cell(tagged(power[k], tag), "num"),
            Cell(tagged(co2[k], tag), "num"), Cell(str(rec.get("energy_source") or DASH)), Cell(ttt[k], "num"),
            Cell(_seed_note(rec, run.run(rec["method"], env, int(rec["seed"])), (run.plan or {}).get("total_steps"))),
        ])
    return Table(
        key=f"seeds-{env}", title=f"Every seed on {env}", headers=headers, rows=rows,
        source=(f"Source: {SEED_FILES}result.json; for running seeds the last row of progress.csv "
                "(steps, wall time, energy) and evals.csv (returns); summary.csv for seeds whose "
                "folder is missing."))


def activity_table(run: RunFolder, units: Units) -> Table:
    """Per method × env (means over complete seeds): overall firing rate, SynOps and MACs per action,
    the estimated inference energy per action on neuromorphic hardware, and beside it the training
    energy that was metered."""
    from bench.metrics.activity import ENERGY_MODEL

    done = complete_seeds(run.seeds)
    groups = [(m, e, done[(done["method"] == m) & (done["env"] == e)]) for e in run.envs for m in run.methods]
    groups = [(m, e, g) for m, e, g in groups if len(g)]
    e_inf = pick_unit([g["inference_energy_j_per_action_est"].mean() for *_, g in groups], INFERENCE_ENERGY_UNITS)
    est = [bool(g["estimated"].fillna(False).any()) for *_, g in groups]
    h_train, mark = est_header(f"Training energy per run ({units.energy.label})", est)
    headers = ["Method", "Env", "Seeds", "Spike rate (%)", "SynOps / action", "MACs / action",
               f"Inference energy / action ({e_inf.label}, estimate)", h_train]
    rate = column([g["spike_rate"].mean() * 100 for *_, g in groups])
    syn = [fmt_fixed(g["synops_per_action"].mean(), 0) for *_, g in groups]  # counts: whole numbers
    mac = [fmt_fixed(g["macs_per_action"].mean(), 0) for *_, g in groups]
    inf = column([g["inference_energy_j_per_action_est"].mean() for *_, g in groups], e_inf)
    train = column([g["energy_j"].mean() for *_, g in groups], units.energy)
    rows = [[Cell(m), Cell(e), Cell(str(len(g)), "num"), Cell(rate[k], "num"), Cell(syn[k], "num"),
             Cell(mac[k], "num"), Cell(inf[k], "num"), Cell(tagged(train[k], mark if est[k] else ""), "num")]
            for k, (m, e, g) in enumerate(groups)]
    return Table(
        key="spikes", title="Spike activity and estimated inference energy per action", headers=headers, rows=rows,
        source=(f"Source: {SEED_FILES}result.json spike_rate, synops_per_action, macs_per_action, "
                "inference_energy_j_per_action_est and activity (per layer), measured by "
                "bench.metrics.activity on evaluation episodes of the final actor; training energy: energy_j."),
        notes=[f"Inference energy is an ESTIMATE for neuromorphic hardware, not a measurement: {ENERGY_MODEL}.",
               "SynOps = each spike times its fan-out, per timestep (accumulates); MACs = operations on "
               "real-valued inputs (PopSAN's receptive fields and decoder, DSRL's analog first layer, every "
               "layer of the MLP). Spike rate = spikes / (neurons × timesteps) over every spiking layer, "
               "encoder included; '—' for a method without spikes.",
               "The training energy is what this run metered (CPU/GPU/RAM over the whole training), for scale."])


def crosstask_table(ct: Any) -> Table:
    """IQM, median, mean and optimality gap of the normalised scores with their 95 % CIs, and the
    probability of improvement over the baseline."""
    from reports.crosstask import METRICS, sources

    headers = ["Method", "Runs × envs"] + [f"{name} (95 % CI)" for name in METRICS] + [
        f"P(method > {ct.baseline}) (95 % CI)"]
    rows = []
    for m in ct.methods if ct.meaningful else []:
        est = ct.estimates[m]
        cells = [Cell(m + (" (baseline)" if m == ct.baseline else "")), Cell(f"{ct.runs[m]} × {len(ct.envs)}", "num")]
        for name in METRICS:
            p, lo, hi = est[name]
            cells.append(Cell(f"{fmt_fixed(p, 2)} ({fmt_range(lo, hi, 2)})", "num"))
        if m in ct.improvement:
            p, lo, hi = ct.improvement[m]
            cells.append(Cell(f"{fmt_fixed(p, 2)} ({fmt_range(lo, hi, 2)})", "num"))
        else:
            cells.append(Cell("baseline" if m == ct.baseline else DASH))
        rows.append(cells)
    notes = ([ct.reason] if not ct.meaningful else []) + [
        "Score = (return − R_random) / (R_reference − R_random) per env: 0 = uniform random actions, 1 = "
        "published TD3 at 1M steps. IQM, median, mean and optimality gap (1 − score, clipped at 1, averaged) over "
        "all runs of all envs; CIs: stratified bootstrap over runs within each env (rliable, percentile, "
        "2,000 replicates). P(X > Y): probability that a run of X scores higher than a run of Y on the same "
        "env, averaged over envs.", sources()] + ct.notes
    return Table(key="aggregates", title="Aggregates across envs (normalised scores, rliable)", headers=headers,
                 rows=rows, source=f"Source: {SEED_FILES}result.json final_return_mean of complete seeds; "
                                   "constants: reports/normalization.py.", notes=notes)


def normalization_table(ct: Any) -> Table:
    from reports.normalization import RANDOM_SOURCE, REFERENCE_SOURCE

    rows = [[Cell(e), Cell(fmt_fixed(r0, 2), "num"), Cell(fmt_fixed(r1, 2), "num")] for e, r0, r1 in ct.constants]
    return Table(key="normalization", title="Normalisation constants per env",
                 headers=["Env", "R_random (return)", "R_reference (return)"], rows=rows,
                 source=f"R_random: {RANDOM_SOURCE}. R_reference: {REFERENCE_SOURCE}.")


def facts_table(facts: list[tuple[str, str]], source: str) -> Table:
    return Table(key="facts", title="What was run", headers=["Field", "Value"],
                 rows=[[Cell(k), Cell(v)] for k, v in facts], source=source)


def hyperparameter_table(run: RunFolder) -> Table:
    """One row per setting, one column per method: the values its config.json holds on every env
    ('a / b (env)' where envs differ); settings equal for every method are listed first."""
    per_method: dict[str, dict[str, list[tuple[str, str]]]] = {}
    for m in run.methods:
        for e in run.envs:
            rs = [r for r in run.runs_of(m, e) if r.config]
            if not rs:
                continue
            cfg = rs[0].config or {}
            flat = {f"{k}": v for k, v in (cfg.get("td3") or {}).items()}
            flat.update({f"actor.{k}": v for k, v in (cfg.get("actor") or {}).items()})
            for k in ("precision", "world_size", "engine", "device"):
                if k in cfg:
                    flat[k] = cfg[k]
            for k, v in flat.items():
                per_method.setdefault(m, {}).setdefault(k, []).append((e, _short(v)))
    methods = [m for m in run.methods if m in per_method]
    keys = sorted({k for d in per_method.values() for k in d})

    def value(m: str, k: str) -> str:
        vals = per_method[m].get(k)
        if not vals:
            return DASH
        distinct = list(dict.fromkeys(v for _, v in vals))
        if len(distinct) == 1:
            return distinct[0]
        return "; ".join(f"{v} ({e.split('-')[0]})" for e, v in vals)

    table = {k: [value(m, k) for m in methods] for k in keys}
    keys.sort(key=lambda k: (len(set(table[k])) > 1, k))  # shared settings first, then the recipes' differences
    rows = [[Cell(k)] + [Cell(v, "num" if v.replace(",", "").replace(".", "").replace("-", "").replace("e", "")
                              .isdigit() else "") for v in table[k]] for k in keys]
    return Table(key="hyperparameters", title="Hyperparameters per method", headers=["Setting", *methods],
                 rows=rows, source=f"Source: {SEED_FILES}config.json of each method's first seed per env "
                                   "(td3 and actor settings as resolved for the run).",
                 notes=["Settings the same for every method come first; values that differ between envs "
                        "name the env in brackets."])


def _short(v: Any) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "-".join(_short(x) for x in v)
    return plain(v)


def environment_table(environment: dict[str, Any] | None) -> Table:
    rows = [[Cell(str(k)), Cell(plain(v))] for k, v in (environment or {}).items()]
    if not rows:
        rows = [[Cell("environment.json"), Cell("missing")]]
    return Table(key="environment", title="Software and hardware", headers=["Field", "Value"],
                 rows=rows, source="Source: environment.json.")
