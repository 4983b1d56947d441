"""Every figure of the report, drawn from the `Report` model alone: the GPS-UP quadrant, learning
curves against env steps, wall time and energy, power traces per device, and carbon
equivalents per method. Each function returns a `reports.figure.Chart`."""
from __future__ import annotations

from typing import Any, Mapping

import pandas as pd
from matplotlib.ticker import FuncFormatter

from reports.aggregates import EQUIVALENT_LABELS
from reports.figure import Chart, empty, file_key, method_colors, mpl_text, new_figure
from reports.format import SEED_FILES
from reports.model import LearningCurves, PowerTraces, Report
from reports.quadrant import gpsup_chart
from reports.series import CURVES_SOURCE, MAX_TRACE_POINTS, POWER_SOURCE

SEED_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf"]
"""Power traces: colour = seed, line style = device."""
DEVICE_STYLES = ["-", "--", ":", "-."]


def _steps_fmt(v: float, _pos: Any = None) -> str:
    if abs(v) >= 1e6:
        return f"{v / 1e6:g}M"
    if abs(v) >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def learning_curves(data: LearningCurves, colors: Mapping[str, str], caption: str) -> Chart:
    """Evaluation return against env steps, wall time and energy: mean over seeds and a
    ±1 std band where several seeds reached a step."""
    fig, axes = new_figure(12.0, 3.9, ncols=3, sharey=True)
    drawn = False
    for ax, panel in zip(axes, data.panels):
        for m, cur in panel.curves.items():
            if cur.empty:
                continue
            drawn = True
            x = cur["x_mean"].to_numpy() / panel.unit.scale
            color = colors.get(m, "#333333")
            n = int(cur["n"].max())
            ax.plot(x, cur["y_mean"], color=color, lw=1.8, marker="o", ms=3,
                    label=f"{mpl_text(m)} ({n} seed{'s' if n > 1 else ''})")
            if (cur["n"] > 1).any():
                ax.fill_between(x, cur["y_mean"] - cur["y_std"], cur["y_mean"] + cur["y_std"],
                                color=color, alpha=0.18, lw=0)
        ax.set_xlabel(panel.label)
        if panel.column == "step":
            ax.xaxis.set_major_formatter(FuncFormatter(_steps_fmt))
    axes[0].set_ylabel("Evaluation return (mean of episodes)")
    if drawn:
        axes[0].legend(loc="lower right", framealpha=0.9)
    else:
        for ax in axes:
            empty(ax, "no evals.csv rows yet")
    fig.suptitle(f"Learning curves on {mpl_text(data.env)}", fontsize=11)
    return Chart(f"curves-{file_key(data.env)}", f"Learning curves on {data.env}", caption, fig)


def power_traces(data: PowerTraces, caption: str) -> Chart:
    """Power per device against time since the seed started; one panel per method."""
    methods = list(data.by_method)
    fig, axes = new_figure(12.0, 1.2 + 2.1 * max(len(methods), 1), nrows=max(len(methods), 1),
                           sharex=True, squeeze=False)
    axes = axes[:, 0]
    devices = sorted({t.device for seeds in data.by_method.values() for s in seeds for t in s.devices})
    style = {d: DEVICE_STYLES[i % len(DEVICE_STYLES)] for i, d in enumerate(devices)}
    scale = data.time_unit.scale
    for ax, m in zip(axes, methods or [None]):
        seeds = data.by_method.get(m, []) if m is not None else []
        if not seeds:
            empty(ax, f"{mpl_text(m)}: no power.csv yet" if m else "no power.csv in this run")
            continue
        for i, seed in enumerate(seeds):
            for t in seed.devices:
                ax.plot(t.t_s / scale, t.power_w, color=SEED_COLORS[i % len(SEED_COLORS)], ls=style[t.device],
                        lw=1.1, alpha=0.9, label=f"{mpl_text(t.device)} · seed {seed.seed}"
                        + (f" ({mpl_text(t.what)})" if t.what else ""))
        ax.set_ylabel("Power (W)")
        ax.set_title(mpl_text(m), loc="left", fontsize=10)
        ax.set_ylim(bottom=0)
        if ax.get_legend_handles_labels()[0]:  # a trace whose every row was unreadable draws no line
            ax.legend(loc="lower right", ncols=min(4, max(1, len(ax.get_lines()))), framealpha=0.9, fontsize=7.5)
    axes[-1].set_xlabel(f"Time since the seed started ({data.time_unit.label})")
    fig.suptitle(f"Power per device on {mpl_text(data.env)}", fontsize=11)
    return Chart(f"power-{file_key(data.env)}", f"Power traces on {data.env}", caption, fig)


def equivalents_chart(eq: pd.DataFrame, colors: Mapping[str, str], caption: str) -> Chart:
    """Bars per method of the everyday equivalents of one complete run's emissions."""
    fig, axes = new_figure(12.0, 3.4, ncols=3)
    estimated = bool(len(eq) and eq["estimated"].astype(bool).any())
    for ax, (col, title) in zip(axes, EQUIVALENT_LABELS.items()):
        data = eq[eq[col].notna()] if len(eq) and col in eq else pd.DataFrame()
        if data.empty:
            empty(ax, "no complete seed\nreported emissions")
            ax.set_title(title)
            continue
        names = [mpl_text(m) for m in data["method"]]
        vals = data[col].to_numpy(dtype=float)
        bars = ax.bar(names, vals, color=[colors.get(m, "#333333") for m in data["method"]], width=0.6)
        ax.bar_label(bars, labels=[f"{v:.3g}" for v in vals], padding=2, fontsize=8)
        ax.set_title(title + (" [estimated]" if estimated else ""), fontsize=10)
        ax.set_ylim(0, max(vals.max() * 1.2, 1e-12))
        ax.grid(axis="x", visible=False)
        ax.tick_params(axis="x", rotation=20 if len(names) > 3 else 0)
    fig.suptitle("Emissions of one complete run, as everyday equivalents", fontsize=11)
    return Chart("equivalents", "Carbon equivalents per method", caption, fig)


def make_charts(report: Report) -> dict[str, list[Chart]]:
    """Every figure of the report, grouped by section: gpsup, curves, power, carbon."""
    colors = method_colors(report.methods)
    gpsup = gpsup_chart(
        report.gpsup_points, report.baseline, colors,
        "One point per method × env: speedup and powerup of the complete-seed means; bars = range "
        "over seeds (several seeds only); the baseline is the star at (1, 1). "
        f"Source: {SEED_FILES}result.json wall_s, energy_j; {report.gpsup_note}.")
    curves = [learning_curves(
        c, colors,
        "Mean evaluation return over the seeds that reached each evaluation step (running and "
        "interrupted seeds contribute the steps they reached); band = ±1 std over seeds. Wall "
        f"time and energy are the seeds' mean at that step. Source: {CURVES_SOURCE}.")
        for c in report.curves]
    power = [power_traces(
        p, f"Power of each device as sampled (long traces averaged into at most {MAX_TRACE_POINTS} "
           f"points); the legend names the source and marks estimates. Source: {POWER_SOURCE}.")
        for p in report.power]
    carbon = equivalents_chart(
        report.equivalents_data, colors,
        "Mean emissions per complete run of each method, converted. " + report.equivalents.source)
    return {"gpsup": [gpsup], "curves": curves, "power": power, "carbon": [carbon]}
