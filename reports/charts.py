"""Every figure of the report, drawn from the `Report` model alone: the GPS-UP quadrant, learning
curves against env steps, wall time and energy, power traces per device, and carbon
equivalents per method. Each function returns a `reports.figure.Chart`."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from reports.aggregates import EQUIVALENT_LABELS
from reports.figure import Chart, empty, file_key, method_colors, mpl_text, new_figure
from reports.format import EQUIVALENT_UNITS, MASS_UNITS, SEED_FILES, Unit, decimals_for, fmt_fixed, pick_unit
from reports.model import LearningCurves, PowerTraces, Report
from reports.quadrant import gpsup_chart, hollow_caption
from reports.series import CURVES_SOURCE, MAX_TRACE_POINTS, POWER_SOURCE

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
    for ax, panel in zip(axes, data.panels, strict=True):
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
    if drawn:  # one legend for the three panels, below them: it never covers a curve
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside upper center", ncols=min(len(labels), 6), frameon=False,
                   title=f"Learning curves on {mpl_text(data.env)}", title_fontproperties={"size": 11})
    else:
        for ax in axes:
            empty(ax, "no evals.csv rows yet")
    if not drawn:
        fig.suptitle(f"Learning curves on {mpl_text(data.env)}", fontsize=11)
    return Chart(f"curves-{file_key(data.env)}", f"Learning curves on {data.env}", caption, fig)


def power_traces(traces: Sequence[PowerTraces], colors: Mapping[str, str], caption: str) -> Chart:
    """Power against time since the seed started: one panel per env, colour = method, line style
    = device, one thin line per seed; one legend for the figure. The y axis starts at 0 and leaves
    headroom, so a flat (estimated) trace is never drawn on the frame."""
    n = max(len(traces), 1)
    ncols = 2 if n > 1 else 1
    nrows = (n + ncols - 1) // ncols
    fig, axes = new_figure(12.0, 1.0 + 2.6 * nrows, nrows=nrows, ncols=ncols, squeeze=False, sharex=False)
    flat = list(axes.ravel())
    devices = sorted({t.device for p in traces for seeds in p.by_method.values() for s in seeds for t in s.devices})
    style = {d: DEVICE_STYLES[i % len(DEVICE_STYLES)] for i, d in enumerate(devices)}
    whats: dict[str, str] = {}
    methods_seen: list[str] = []
    resumed = False
    panels: Sequence[PowerTraces | None] = traces or [None]  # None: one panel saying there is no trace
    # the grid may hold one axis more than there are envs: zip stops at the envs, the spare axis is hidden below
    for ax, data in zip(flat, panels, strict=False):
        if data is None or not any(data.by_method.values()):
            empty(ax, "no power.csv in this run" if data is None else f"{mpl_text(data.env)}: no power.csv yet")
            continue
        scale = data.time_unit.scale
        top = 0.0
        for m, seeds in data.by_method.items():
            for seed in seeds:
                for t in seed.devices:
                    t_s, power_w = _broken_at(t.t_s, t.power_w, seed.segment_starts_s)
                    ax.plot(t_s / scale, power_w, color=colors.get(m, "#333333"), ls=style[t.device], lw=1.0,
                            alpha=0.85)
                    top = max(top, float(t.power_w.max()) if len(t.power_w) else 0.0)
                    whats.setdefault(t.device, t.what)
                for start in seed.segment_starts_s:  # a resume: the trace is not joined across it
                    ax.axvline(start / scale, color=colors.get(m, "#333333"), ls=":", lw=0.8, alpha=0.7)
                    resumed = True
            if seeds and m not in methods_seen:
                methods_seen.append(m)
        ax.set_ylim(0, max(top * 1.18, 1.0))
        ax.set_title(mpl_text(data.env), loc="left", fontsize=10)
        ax.set_ylabel("Power (W)")
        ax.set_xlabel(f"Time since the seed started ({data.time_unit.label})")
    for ax in flat[len(panels):]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=colors.get(m, "#333333"), lw=2, label=mpl_text(m)) for m in methods_seen]
    handles += [Line2D([], [], color="#444444", ls=style[d], lw=1.2,
                       label=f"{mpl_text(d)}" + (f" ({mpl_text(whats[d])})" if whats.get(d) else "")) for d in devices]
    if resumed:
        handles.append(Line2D([], [], color="#444444", ls=":", lw=0.8, label="resumed here (segment start)"))
    if handles:
        fig.legend(handles=handles, loc="outside upper center", ncols=min(len(handles), 5), frameon=False,
                   title="Power per device (one line per seed)", title_fontproperties={"size": 11})
    else:
        fig.suptitle("Power per device", fontsize=11)
    return Chart("power", "Power traces", caption, fig)


def _broken_at(t_s: Any, power_w: Any, starts: Sequence[float]) -> tuple[Any, Any]:
    """The trace with a gap (NaN) before each segment start, so that no line joins two processes'
    segments across the time between them (result.json's unmetered_s)."""
    t_s, power_w = np.asarray(t_s, dtype=float), np.asarray(power_w, dtype=float)
    cuts = sorted({int(i) for i in np.searchsorted(t_s, starts) if 0 < i < len(t_s)})
    if not cuts:
        return t_s, power_w
    return np.insert(t_s, cuts, np.nan), np.insert(power_w, cuts, np.nan)


def equivalents_chart(eq: pd.DataFrame, colors: Mapping[str, str], caption: str, mass: Unit) -> Chart:
    """One bar per method: emissions of one complete run, in the report's mass unit; the
    everyday equivalents of each bar are written beside it (they are the same bar rescaled)."""
    fig, ax = new_figure(10.0, 1.4 + 0.55 * max(len(eq), 1))
    estimated = bool(len(eq) and eq["estimated"].astype(bool).any())
    data = eq[eq["kg_per_run"].notna()] if len(eq) else pd.DataFrame()
    if data.empty:
        empty(ax, "no complete seed reported emissions")
    else:
        names = [mpl_text(m) for m in data["method"]]
        vals = data["kg_per_run"].to_numpy(dtype=float) / mass.scale
        y = np.arange(len(vals))[::-1]
        ax.barh(y, vals, color=[colors.get(m, "#333333") for m in data["method"]], height=0.6)
        ax.set_yticks(y, names)
        d = decimals_for(vals)
        units = {c: pick_unit(data[c], EQUIVALENT_UNITS[c]) for c in EQUIVALENT_LABELS}
        for yy, v, rec in zip(y, vals, data.to_dict("records"), strict=True):
            eqs = " · ".join(f"{fmt_fixed(rec[c], decimals_for(data[c], units[c].scale), units[c].scale)} "
                             f"{units[c].label} {short}" for c, short in
                             (("car_miles", "by car"), ("tv_hours", "of TV"),
                              ("household_week_pct", "of a US household-week")))
            ax.text(v, yy, f"  {fmt_fixed(v, d)} {mass.label}  =  {eqs}", va="center", ha="left", fontsize=8)
        ax.set_xlim(0, vals.max() * 2.6)  # room for the text beside the longest bar
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:,.{max(d - 1, 0)}f}"))
        ax.grid(axis="y", visible=False)
    ax.set_xlabel(f"Emissions of one complete run ({mass.label}{', estimated' if estimated else ''})")
    ax.set_title("Emissions per complete run and their everyday equivalents", fontsize=11, loc="left")
    return Chart("equivalents", "Carbon equivalents per method", caption, fig)


def aggregates_chart(ct: Any, colors: Mapping[str, str], caption: str) -> Chart:
    """rliable's interval plot: point estimate and 95 % CI of each metric, one row per method."""
    from reports.crosstask import METRICS

    fig, axes = new_figure(12.0, 1.2 + 0.45 * max(len(ct.methods), 2), ncols=len(METRICS), sharey=True)
    y = np.arange(len(ct.methods))[::-1]
    for ax, name in zip(axes, METRICS, strict=True):
        for yy, m in zip(y, ct.methods, strict=True):
            p, lo, hi = ct.estimates[m][name]
            ax.barh(yy, hi - lo, left=lo, height=0.6, color=colors.get(m, "#333333"), alpha=0.75)
            ax.plot([p, p], [yy - 0.3, yy + 0.3], color="black", lw=1.6)
        ax.set_title(name + (" (lower is better)" if name == "Optimality gap" else ""), fontsize=10)
        ax.set_xlabel("Normalised score")
        ax.grid(axis="y", visible=False)
    axes[0].set_yticks(y, [mpl_text(m) for m in ct.methods])
    fig.suptitle(f"Aggregates across {len(ct.envs)} envs, {min(ct.runs.values())} runs each "
                 "(bars: 95 % stratified bootstrap CI; line: point estimate)", fontsize=11)
    return Chart("aggregates", "Aggregates across envs", caption, fig)


def profiles_chart(ct: Any, colors: Mapping[str, str], caption: str) -> Chart:
    """Performance profiles (share of runs scoring above tau, with CI bands) and the probability of
    improvement of each method over the baseline."""
    fig, (ax, ax2) = new_figure(12.0, 3.9, ncols=2, width_ratios=[1.4, 1])
    for m in ct.methods:
        prof, lo, hi = ct.profiles[m]
        ax.plot(ct.taus, prof, color=colors.get(m, "#333333"), lw=1.8, label=mpl_text(m))
        ax.fill_between(ct.taus, lo, hi, color=colors.get(m, "#333333"), alpha=0.15, lw=0)
    ax.set_xlabel("Normalised score τ")
    ax.set_ylabel("Fraction of runs with score > τ")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower left", frameon=True, framealpha=0.9, fontsize=8)
    ax.set_title("Performance profiles", fontsize=10, loc="left")
    others = [m for m in ct.methods if m in ct.improvement]
    y = np.arange(len(others))[::-1]
    for yy, m in zip(y, others, strict=True):
        p, lo, hi = ct.improvement[m]
        ax2.barh(yy, hi - lo, left=lo, height=0.6, color=colors.get(m, "#333333"), alpha=0.75)
        ax2.plot([p, p], [yy - 0.3, yy + 0.3], color="black", lw=1.6)
        ax2.plot([p], [yy], marker="o", ms=5, color=colors.get(m, "#333333"), mec="black", zorder=5)
    ax2.axvline(0.5, color="#555555", ls="--", lw=1)
    ax2.set_xlim(0, 1)
    ax2.set_yticks(y, [mpl_text(m) for m in others]) if others else empty(ax2, "no baseline in the aggregate")
    ax2.set_xlabel(f"P(method > {mpl_text(ct.baseline)})")
    ax2.set_title(f"Probability of improvement over {mpl_text(ct.baseline)}", fontsize=10, loc="left")
    ax2.grid(axis="y", visible=False)
    return Chart("profiles", "Performance profiles and probability of improvement", caption, fig)


def spikes_chart(layers: pd.DataFrame, methods: Sequence[str], envs: Sequence[str], colors: Mapping[str, str],
                 caption: str) -> Chart:
    """Firing rate per layer (encoder included), grouped by layer, one bar per method, one panel per env."""
    from reports.series import SPIKE_LAYER_ORDER

    envs = [e for e in envs if (layers["env"] == e).any()] if len(layers) else []
    n = max(len(envs), 1)
    ncols = min(n, 2)
    fig, axes = new_figure(12.0, 0.9 + 2.8 * ((n + ncols - 1) // ncols), nrows=(n + ncols - 1) // ncols, ncols=ncols,
                           squeeze=False, sharey=True)
    flat = list(axes.ravel())
    shown = [m for m in methods if len(layers) and (layers["method"] == m).any()]
    panel_envs: Sequence[str | None] = envs or [None]  # None: one panel saying there is no activity
    # the grid may hold one axis more than there are envs: zip stops at the envs, the spare axis is hidden below
    for ax, env in zip(flat, panel_envs, strict=False):
        if env is None:
            empty(ax, "no spike activity recorded (no complete seed of a spiking method)")
            continue
        on = layers[layers["env"] == env]
        names = [x for x in SPIKE_LAYER_ORDER if (on["layer"] == x).any()]
        names += [x for x in dict.fromkeys(on["layer"]) if x not in names]
        width = 0.8 / max(len(shown), 1)
        for k, m in enumerate(shown):
            mine = on[on["method"] == m].set_index("layer")["rate"]
            vals = [100 * mine.get(x, np.nan) for x in names]
            ax.bar(np.arange(len(names)) + (k - (len(shown) - 1) / 2) * width, vals, width=width * 0.95,
                   color=colors.get(m, "#333333"), label=mpl_text(m))
        ax.set_xticks(np.arange(len(names)), [mpl_text(x) for x in names])
        ax.set_title(mpl_text(env), loc="left", fontsize=10)
        ax.set_ylabel("Firing rate (% of neuron-timesteps)")
        ax.grid(axis="x", visible=False)
    for ax in flat[len(panel_envs):]:
        ax.set_visible(False)
    if shown:
        fig.legend(*flat[0].get_legend_handles_labels(), loc="outside upper center", ncols=len(shown), frameon=False,
                   title="Firing rate per layer of the final actor on evaluation episodes",
                   title_fontproperties={"size": 11})
    else:
        fig.suptitle("Firing rate per layer", fontsize=11)
    return Chart("spikes", "Firing rate per layer", caption, fig)


def make_charts(report: Report) -> dict[str, list[Chart]]:
    """Every figure of the report, grouped by section: aggregates, gpsup, curves, power, spikes, carbon."""
    colors = method_colors(report.methods)
    gpsup = gpsup_chart(
        report.gpsup_points, report.baseline, colors,
        "One point per method × env: speedup and powerup of the complete-seed means (ratio of means); bars = "
        "95 % bootstrap interval over seeds (two or more seeds or batches a side); the baseline is the star at "
        f"(1, 1). {hollow_caption(report.gpsup_points, report.baseline)}"
        f"Source: {SEED_FILES}result.json; {report.gpsup_note}.", phase=report.gpsup_phase)
    curves = [learning_curves(
        c, colors,
        "Mean evaluation return over the seeds that reached each evaluation step (running and "
        "interrupted seeds contribute the steps they reached); band = ±1 std over seeds. Wall "
        f"time and energy are the seeds' mean at that step. Source: {CURVES_SOURCE}.")
        for c in report.curves]
    batched = sorted({s.seed_batch for p in report.power for ss in p.by_method.values() for s in ss
                      if s.seed_batch > 1})
    batch_note = (f" A seed batch's line is its whole process's power, all K = {', '.join(map(str, batched))} "
                  "seeds (one meter, in its first seed's folder); the tables charge each seed 1/K."
                  if batched else "")
    if any(s.segment_starts_s for p in report.power for ss in p.by_method.values() for s in ss):
        batch_note += (" A dotted vertical marks where a resumed run's next segment starts (a new process after "
                       "a kill); the line is not joined across it, and the time between segments no row covers "
                       "is result.json's unmetered_s.")
    power = [power_traces(
        report.power, colors,
        f"Power of each device as sampled (long traces averaged into at most {MAX_TRACE_POINTS} "
        f"points); the legend names the source and marks estimates.{batch_note} Source: {POWER_SOURCE}.")]
    mass_label = report.units.get("mass", "kg CO₂e")
    mass = Unit(mass_label, dict(MASS_UNITS).get(mass_label, 1.0))
    carbon = equivalents_chart(
        report.equivalents_data, colors,
        "Mean emissions per complete run of each method, with the same amount as everyday equivalents. "
        + report.equivalents.source, mass)
    spikes = spikes_chart(report.spike_layers, report.methods, [c.env for c in report.curves] or
                          list(dict.fromkeys(report.spike_layers.get("env", []))), colors,
                          "Spikes / (neurons × timesteps) per layer, mean over complete seeds; the MLP has no "
                          f"spikes. Source: {SEED_FILES}result.json activity (bench.metrics.activity).")
    out = {"gpsup": [gpsup], "curves": curves, "power": power, "spikes": [spikes], "carbon": [carbon],
           "aggregates": []}
    ct = report.crosstask
    if ct is not None and ct.meaningful:
        src = "Source: result.json final_return_mean of complete seeds, normalised per env (reports/normalization.py)."
        out["aggregates"] = [
            aggregates_chart(ct, colors, "IQM, median, mean and optimality gap of the normalised scores over all "
                             "runs and envs, with 95 % stratified bootstrap CIs (rliable). " + src),
            profiles_chart(ct, colors, "Left: share of runs (all envs) whose normalised score exceeds τ, with "
                           "95 % CI bands. Right: probability that a run of the method beats a run of the "
                           "baseline on the same env, averaged over envs, with 95 % CI. " + src)]
    return out
