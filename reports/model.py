"""The report model: everything a report says, independent of its format. `reports.content`
fills it from a run folder; `reports.html`, `reports.pdf` and `reports.charts` only render it,
so the HTML, the PDF and the figures say exactly the same thing."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench.schema import Status
from reports.format import Unit
from reports.load import Problem

STATUS_ORDER = (Status.COMPLETE, Status.RUNNING, Status.PENDING, Status.INTERRUPTED, Status.FAILED,
                Status.CORRUPT)
"""Display order: done, then on its way, then cut short."""


class ReportError(ValueError):
    """A request the report cannot honour (unknown baseline, ...)."""


@dataclass(frozen=True)
class Cell:
    text: str
    cls: str = ""
    """CSS class: 'num', 'status-<status>', 'green', 'red', 'est', or ''."""


@dataclass
class Table:
    key: str
    title: str
    headers: list[str]
    rows: list[list[Cell]]
    source: str
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CurvePanel:
    """One x axis of a learning-curve figure."""

    column: str
    """The evals.csv column on the x axis: step, wall_s or energy_j."""
    label: str
    unit: Unit
    curves: dict[str, pd.DataFrame]
    """Per method with a seed folder on the env: `stats.curve_over_seeds` of its evals.csv."""


@dataclass(frozen=True)
class LearningCurves:
    env: str
    panels: list[CurvePanel]


@dataclass(frozen=True)
class DeviceTrace:
    """One device's power of one seed, averaged into at most `series.MAX_TRACE_POINTS` points."""

    device: str
    t_s: np.ndarray
    power_w: np.ndarray
    what: str
    """Its source(s), with 'estimated' added where the rows say so and the source does not."""


@dataclass(frozen=True)
class SeedPower:
    seed: int
    devices: list[DeviceTrace]
    seed_batch: int = 1
    """Seeds the traced process trained: K for a seed batch's meter (its first seed's folder)."""
    segment_starts_s: tuple[float, ...] = ()
    """t_s where each resumed segment of the trace starts (the first segment's start excluded)."""


@dataclass(frozen=True)
class PowerTraces:
    env: str
    time_unit: Unit
    """Chosen from the longest raw trace, before averaging."""
    by_method: dict[str, list[SeedPower]]
    """Per method with a seed folder on the env: its seeds that have a power.csv (maybe none)."""


@dataclass
class Report:
    title: str
    run_name: str
    generated_utc: str
    methods: list[str]
    baseline: str
    estimated: bool
    energy_kind: str
    """'estimated' (any seed), 'measured' (every seed that reported), or 'none' (no seed did)."""
    headline: list[str]
    """Key messages, shown first (the estimated-energy warning comes first of all)."""
    warnings: list[str]
    """What may make a comparison unfair (contention, engines, identical computations, W > 1)."""
    findings: list[str]
    """One line per method across envs: its returns, energy per run and GPS-UP against the baseline."""
    facts: list[tuple[str, str]]
    facts_source: str
    power_sources: Table
    account: Table
    """Our energy account by component against CodeCarbon's."""
    status_counts: dict[str, int]
    """Seeds per status, in STATUS_ORDER."""
    problems: list[Problem]
    results: list[tuple[str, Table, Table]]
    """Per env: (env, aggregate table, per-seed table)."""
    gpsup_points: pd.DataFrame
    gpsup_note: str
    equivalents: Table
    equivalents_data: pd.DataFrame
    curves: list[LearningCurves]
    power: list[PowerTraces]
    command: str
    argv: list[str]
    environment: Table
    configs: list[tuple[str, str]]
    """(title, pretty JSON) per method × env, seed differences noted in the title."""
    plan_json: str
    crosstask: Any = None
    """reports.crosstask.CrossTask: aggregates across envs (or why there are none)."""
    aggregates: Table | None = None
    normalization: Table | None = None
    spikes: Table | None = None
    spike_layers: pd.DataFrame = field(default_factory=pd.DataFrame)
    """method, env, layer, rate (mean over complete seeds) for the per-layer chart."""
    hyperparameters: Table | None = None
    meters: Table | None = None
    """Meter coverage, verdict and problems per seed (reports.meters)."""
    units: dict[str, str] = field(default_factory=dict)
    """The report's display unit per quantity (time, energy, power, mass)."""
    gpsup_phase: str = "train"
    """The phase GPS-UP compares: train (default) or run (bench.metrics.gpsup)."""
