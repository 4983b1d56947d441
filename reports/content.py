"""Assemble the `Report` of a run folder: resolve the baseline, compute the aggregates with
bench's metrics, and fill the model with the tables, the prose and the data behind every figure.
Aggregates use complete seeds only; every seed still appears in the per-seed tables."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from bench.run.profiles import DEFAULT_BASELINE
from reports import aggregates, crosstask, facts, fairness, meters, resume_notes, series, tables
from reports.format import DASH, SEED_FILES
from reports.load import RunFolder
from reports.model import STATUS_ORDER, Report, ReportError


def resolve_baseline(run: RunFolder, baseline: str | None) -> str:
    """The asked-for baseline, else the plan's, else the suite's default, else the first method."""
    methods = run.methods
    if baseline:
        if baseline not in methods:
            raise ReportError(f"baseline {baseline!r} is not a method of this run "
                              f"(methods: {', '.join(methods) or 'none'})")
        return baseline
    if run.baseline and run.baseline in methods:
        return run.baseline
    if DEFAULT_BASELINE in methods:
        return DEFAULT_BASELINE
    if not methods:
        raise ReportError("the run folder holds no method")
    return methods[0]


def build_content(run: RunFolder, baseline: str | None = None, gpsup_phase: str = "train") -> Report:
    base = resolve_baseline(run, baseline)
    seeds = run.seeds
    counts = {s.value: int((seeds["status"] == s).sum()) for s in STATUS_ORDER}
    estimated, headline = facts.headline(seeds, counts)
    reported = bool(seeds["estimated"].notna().any() or seeds["energy_source"].notna().any())
    points, gpsup_note = aggregates.gpsup_points(seeds, base, gpsup_phase)
    equivalents = aggregates.equivalents_frame(seeds, run.methods)
    units = tables.report_units(seeds)
    ct = crosstask.compute(seeds, run.methods, run.envs, base)
    with_folders = [e for e in run.envs if any(r.env == e for r in run.runs)]
    plan = run.plan or {}
    argv = plan.get("argv")
    argv = argv if isinstance(argv, list) else []
    return Report(
        title="spikerl-bench report",
        run_name=run.path.resolve().name,
        generated_utc=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        methods=run.methods,
        baseline=base,
        estimated=estimated,
        energy_kind="estimated" if estimated else ("measured" if reported else "none"),
        headline=headline,
        warnings=fairness.warnings(run, seeds),
        findings=facts.method_summaries(seeds, points, run.methods, run.envs, base, units),
        facts=facts.facts(run, base),
        facts_source=f"Source: plan.json, environment.json, {SEED_FILES}config.json.",
        power_sources=tables.power_sources_table(seeds),
        account=tables.account_table(seeds, run.methods, units),
        status_counts=counts,
        problems=list(run.problems),
        results=[(env, *tables.results_tables(run, env, base, points, units, gpsup_phase))
                 for env in run.envs if (seeds["env"] == env).any()],
        gpsup_points=points,
        gpsup_note=gpsup_note,
        gpsup_phase=gpsup_phase,
        equivalents=tables.equivalents_table(equivalents, units),
        equivalents_data=equivalents,
        curves=[series.learning_curves(run, env) for env in with_folders],
        power=[series.power_traces(run, env) for env in with_folders],
        command=str(plan.get("command") or DASH),
        argv=[str(a) for a in argv],
        environment=resume_notes.with_resume_rows(tables.environment_table(run.environment), run),
        configs=facts.configs(run),
        plan_json=json.dumps(plan, indent=2, sort_keys=True, default=str) if plan else "plan.json missing",
        crosstask=ct,
        aggregates=tables.crosstask_table(ct),
        normalization=tables.normalization_table(ct),
        spikes=tables.activity_table(run, units),
        spike_layers=series.spike_layers(run),
        hyperparameters=tables.hyperparameter_table(run),
        meters=meters.meters_table(seeds, run.path),
        units={"time": units.time.label, "energy": units.energy.label, "power": units.power.label,
               "mass": units.mass.label},
    )
