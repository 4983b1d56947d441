"""Figures of the report (matplotlib, Agg): the GPS-UP quadrant, learning curves against env
steps, wall time and energy, power traces per device, and carbon equivalents per method.

Each function returns a `Chart`: `chart.svg()` gives self-contained SVG text for inline HTML
(no XML prolog, DOCTYPE, metadata or namespace URLs; a viewBox plus width and height),
`chart.svg_file()` a standalone .svg file, and `chart.save_pdf(target)` writes vector PDF (a
path or an open `PdfPages`). Call `chart.close()` when done.
"""
from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402

from reports import stats  # noqa: E402
from reports.content import (ENERGY_UNITS, EQUIV_COLUMNS, EQUIV_LABELS, Report,  # noqa: E402
                             Unit, pick_unit, time_unit)
from reports.load import RunFolder  # noqa: E402

PALETTE = ["#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#e377c2", "#7f7f7f", "#bcbd22"]
"""Method colours; pure green and red are kept for the GPS-UP half-planes."""
ENV_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "h"]
SEED_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf"]
"""Power traces: colour = seed, line style = device."""
GREEN, RED = "#1a7f37", "#b42318"
GREEN_FILL, RED_FILL = "#dff3e4", "#fbe3e1"
MAX_TRACE_POINTS = 600
CATEGORY_WORDS = {
    1: "faster, less power",
    2: "faster, same power",
    3: "faster, more power, G > 1",
    4: "slower, less power, G > 1",
    5: "faster, more power, G < 1",
    6: "slower, less power, G < 1",
    7: "slower, same power",
    8: "slower, more power",
}

RC = {
    "font.size": 9.5,
    "axes.titlesize": 11,
    "axes.labelsize": 9.5,
    "legend.fontsize": 8.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "svg.fonttype": "none",
    "pdf.fonttype": 42,
    "text.usetex": False,
}


def _label(text: Any) -> str:
    """User text for matplotlib: '$' would start mathtext."""
    return str(text).replace("$", r"\$")


# ----------------------------------------------------------------------------- Chart


@dataclass
class Chart:
    key: str
    """File stem (figures/<key>.svg) and HTML id; [A-Za-z0-9_-] only."""
    title: str
    caption: str
    """Small print: what is drawn and which run-folder files it comes from."""
    figure: Figure
    _svg: str | None = field(default=None, init=False, repr=False)

    def svg_file(self) -> str:
        """The SVG as matplotlib writes it (standalone file, namespaces included); rendered once."""
        if self._svg is None:
            buf = io.StringIO()
            with matplotlib.rc_context({**RC, "svg.hashsalt": self.key}):
                self.figure.savefig(buf, format="svg", metadata={"Date": None})
            self._svg = buf.getvalue()
        return self._svg

    def svg(self) -> str:
        """SVG for inlining in HTML: no prolog, DOCTYPE, metadata or namespace URLs."""
        text = self.svg_file()
        text = re.sub(r"<\?xml[^>]*\?>", "", text)
        text = re.sub(r"<!DOCTYPE[^>]*>", "", text, flags=re.S)
        text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
        text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
        text = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)
        fig_id = f"fig-{self.key}"
        text = text.replace("*{stroke-linejoin", f"#{fig_id} *{{stroke-linejoin", 1)
        text = re.sub(r"<svg\b", f'<svg id="{fig_id}" class="figure" role="img" '
                      f'aria-label="{_attr(self.title)}"', text, count=1)
        bad = re.compile(r"<\s*script|javascript:|\son\w+\s*=|https?:|url\(\s*['\"]?(?!#)|href=\"(?!#)", re.I)
        if any(bad.search(tag.group()) for tag in re.finditer(r"<[^>]*>", text)):
            # Only markup is checked: text content is escaped by matplotlib.
            raise ValueError(f"figure {self.key}: SVG markup holds script or an external reference")
        return text.strip()

    def save_pdf(self, target: str | PdfPages) -> None:
        with matplotlib.rc_context(RC):
            self.figure.savefig(target, format="pdf")

    def close(self) -> None:
        plt.close(self.figure)


def _attr(text: str) -> str:
    return (str(text).replace("&", "&amp;").replace('"', "&quot;")
            .replace("<", "&lt;").replace(">", "&gt;"))


def _key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "x"


def method_colors(methods: Sequence[str]) -> dict[str, str]:
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(methods)}


def _figure(w: float, h: float, **kw: Any) -> tuple[Figure, Any]:
    with matplotlib.rc_context(RC):
        fig, axes = plt.subplots(figsize=(w, h), layout="constrained", **kw)
    return fig, axes


def _empty(ax: Any, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes,
            color="#666666", fontsize=10, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


# ----------------------------------------------------------------------------- GPS-UP quadrant


def _ratio_ticks(lim: float) -> list[float]:
    """Symmetric 'nice' ratios within [10^-lim, 10^lim]: 1, 2 and 1/2, 5 and 1/5, ..."""
    for steps in ((1, 2, 5), (1, 1.5, 2, 3, 5), (1, 1.25, 1.5, 2, 3, 5)):
        ticks = {1.0}
        for k in range(-6, 7):
            for c in steps:
                r = c * 10.0 ** k
                if r > 1 and math.log10(r) <= lim * 0.98:
                    ticks.update({r, 1 / r})
        if len(ticks) >= 5:
            break
    return sorted(ticks)


def _fmt_ratio_tick(v: float, _pos: Any = None) -> str:
    if v >= 1:
        return f"{v:g}×"
    inv = 1 / v
    if abs(inv - round(inv)) < 1e-9 and inv <= 20:
        return f"1/{round(inv):d}×"
    return f"{v:.2g}×"


def gpsup_chart(points: pd.DataFrame, baseline: str, colors: Mapping[str, str],
                caption: str) -> Chart:
    """The GPS-UP quadrant: x speedup, y powerup, log-log, square, equal ranges about 1."""
    fig, ax = _figure(8.4, 6.4)
    pts = points[points["speedup"].notna() & points["powerup"].notna()] if len(points) else points
    vals = []
    for c in ("speedup", "powerup", "s_lo", "s_hi", "p_lo", "p_hi"):
        if c in pts:
            vals += [abs(math.log10(v)) for v in pts[c] if np.isfinite(v) and v > 0]
    top = max(vals) if vals else 0.0
    lim = max(top * 1.3, top + 0.08, math.log10(2.2))
    lo, hi = 10 ** -lim, 10 ** lim
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.grid(False)
    # Half-planes split by the greenup = 1 diagonal.
    ax.fill([lo, hi, hi], [lo, lo, hi], color=GREEN_FILL, zorder=0, lw=0)
    ax.fill([lo, lo, hi], [lo, hi, hi], color=RED_FILL, zorder=0, lw=0)
    ax.axvline(1, color="#555555", lw=1.0, zorder=1)
    ax.axhline(1, color="#555555", lw=1.0, zorder=1)
    ax.plot([lo, hi], [lo, hi], color="#333333", lw=1.2, ls="--", zorder=1)
    # Labels along the diagonal: its name, and which side saves energy.
    obstacles = []
    for frac, text, dy, color in ((0.5, "greenup = 1", 3, "#333333"),
                                  (-0.5, "▲ costs energy (greenup < 1)", 4, RED),
                                  (-0.5, "▼ saves energy (greenup > 1)", -4, GREEN)):
        u = 10 ** (lim * frac)
        obstacles.append(ax.annotate(text, xy=(u, u), xytext=(0, dy), textcoords="offset points", rotation=45,
                    rotation_mode="anchor", color=color, fontsize=8.5, ha="center",
                    va="bottom" if dy > 0 else "top", fontweight="bold" if frac < 0 else "normal"))
    # Category numbers in their regions, on the outer ring (points sit within 1/1.3 of lim).
    spots = {1: (0.91, -0.55), 2: (0.91, 0.0), 3: (0.91, 0.45), 4: (-0.45, -0.91),
             5: (0.45, 0.91), 6: (-0.91, -0.45), 7: (-0.91, 0.0), 8: (-0.55, 0.91)}
    for cat, (fu, fv) in spots.items():
        color = GREEN if cat <= 4 else RED
        obstacles.append(ax.text(10 ** (fu * lim), 10 ** (fv * lim), str(cat), ha="center", va="center",
                fontsize=11, fontweight="bold", color=color, zorder=2, alpha=0.9,
                bbox=dict(boxstyle="circle,pad=0.25", fc="white", ec=color, lw=1.1, alpha=0.85)))
    # Points.
    envs = list(dict.fromkeys(pts["env"])) if len(pts) else []
    markers = {e: ENV_MARKERS[i % len(ENV_MARKERS)] for i, e in enumerate(envs)}
    handles, seen = [], set()
    labels: list[tuple[str, tuple[float, float], str]] = []
    ax.plot([1], [1], marker="*", ms=17, color="black", mec="white", mew=0.8, zorder=6, ls="none")
    obstacles.append(ax.plot([1], [1], marker="*", ms=17, ls="none", alpha=0)[0])
    base_label = ax.annotate(f"{_label(baseline)} (baseline)", xy=(1, 1), xytext=(-8, -14),
                textcoords="offset points", ha="right", va="top", fontsize=9, zorder=7,
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.75))
    for rec in pts.to_dict("records") if len(pts) else []:
        if rec["method"] == baseline:
            continue
        s, p = float(rec["speedup"]), float(rec["powerup"])
        color = colors.get(rec["method"], "#333333")
        xerr = yerr = None
        if rec.get("n_seeds", 0) > 1 and np.isfinite(rec.get("s_lo", np.nan)):
            xerr = [[max(s - rec["s_lo"], 0)], [max(rec["s_hi"] - s, 0)]]
            yerr = [[max(p - rec["p_lo"], 0)], [max(rec["p_hi"] - p, 0)]]
        ax.errorbar([s], [p], xerr=xerr, yerr=yerr, marker=markers[rec["env"]], ms=9, color=color,
                    mec="white", mew=0.8, ecolor=color, elinewidth=1.3, capsize=3, zorder=5, ls="none")
        label = _label(rec["method"]) + (f" · {_label(str(rec['env']).split('-')[0])}" if len(envs) > 1 else "")
        label += f"\nG = {rec['greenup']:.2f}×" if np.isfinite(rec.get("greenup", np.nan)) else ""
        labels.append((label, (s, p), color))
        if rec["method"] not in seen:
            seen.add(rec["method"])
            handles.append(plt.Line2D([], [], color=color, marker="o", ls="none", label=_label(rec["method"])))
    if len(envs) > 1:
        handles += [plt.Line2D([], [], color="#444444", marker=markers[e], ls="none", label=_label(e))
                    for e in envs]
    handles.append(plt.Line2D([], [], color="black", marker="*", ms=11, ls="none",
                              label=f"{_label(baseline)} (baseline)"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False,
              fontsize=8.5, title="one point per\nmethod × env", title_fontsize=8)
    ax.text(1.03, 0.0, "GPS-UP categories\n" + "\n".join(f"{k}  {v}" for k, v in CATEGORY_WORDS.items()),
            transform=ax.transAxes, fontsize=7.5, va="bottom", ha="left", color="#444444",
            linespacing=1.3)
    ticks = _ratio_ticks(lim)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_major_formatter(FuncFormatter(_fmt_ratio_tick))
        axis.set_minor_locator(NullLocator())
    estimated = bool(len(pts) and pts["estimated"].astype(bool).any())
    ax.set_xlabel(f"Speedup  S = T({_label(baseline)}) / T   (right = faster)")
    ax.set_ylabel(f"Powerup  P = P / P({_label(baseline)})   (up = more power)"
                  + ("  [estimated]" if estimated else ""))
    ax.set_title(f"GPS-UP against {_label(baseline)}" + (" (energy estimated)" if estimated else ""))
    n_pts = int((pts["method"] != baseline).sum()) if len(pts) else 0
    if n_pts == 0:
        ax.text(0.5, 0.62, "no point yet: GPS-UP needs complete seeds\nwith both wall time and energy",
                transform=ax.transAxes, ha="center", color="#555555", fontsize=10, zorder=8,
                bbox=dict(boxstyle="round,pad=0.4", fc="white", ec="#999999", alpha=0.95))
    omitted = _place_labels(fig, ax, labels, obstacles + [base_label])
    if omitted:
        ax.text(1.03, 0.42, f"{omitted} point label(s) left out\nwhere points crowd;\nmarker = env, colour = method", transform=ax.transAxes, ha="left", va="bottom",
                fontsize=7, color="#444444", style="italic")
    return Chart("gpsup", "GPS-UP quadrant", caption, fig)


_LABEL_SPOTS = [(8, 6, "left", "bottom"), (8, -6, "left", "top"), (-8, 6, "right", "bottom"),
                (-8, -6, "right", "top"), (0, 11, "center", "bottom"), (0, -11, "center", "top"),
                (22, 22, "left", "bottom"), (22, -22, "left", "top"), (-22, 22, "right", "bottom"),
                (-22, -22, "right", "top"), (0, 30, "center", "bottom"), (0, -30, "center", "top"),
                (36, 36, "left", "bottom"), (36, -36, "left", "top"), (-36, 36, "right", "bottom"),
                (-36, -36, "right", "top")]


def _place_labels(fig: Figure, ax: Any, labels: Sequence[tuple[str, tuple[float, float], str]],
                  obstacles: Sequence[Any]) -> int:
    """Put each point's label at the first nearby spot that overlaps no point, label or
    category number and stays inside the axes; leave out the ones that fit nowhere.
    Returns how many were left out."""
    if not labels:
        return 0
    with matplotlib.rc_context(RC):
        fig.draw_without_rendering()  # fixes the layout, so display coordinates hold
    renderer = fig.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    taken = [o.get_window_extent(renderer) for o in obstacles]
    for _, xy, _ in labels:  # the markers themselves
        x, y = ax.transData.transform(xy)
        taken.append(Bbox.from_extents(x - 9, y - 9, x + 9, y + 9))
    omitted = 0
    for text, xy, color in labels:
        for dx, dy, ha, va in _LABEL_SPOTS:
            far = abs(dx) > 10 or abs(dy) > 12
            ann = ax.annotate(text, xy=xy, xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                              fontsize=8.5, color=color, zorder=7, fontweight="bold",
                              bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.9),
                              arrowprops=dict(arrowstyle="-", color=color, lw=0.8, shrinkA=0, shrinkB=5)
                              if far else None)
            ann.set_in_layout(False)
            ann.update_positions(renderer)
            box = Text.get_window_extent(ann, renderer).padded(3)  # the text, not its leader
            fits = (box.x0 >= inside.x0 and box.x1 <= inside.x1 and box.y0 >= inside.y0
                    and box.y1 <= inside.y1)
            if fits and not any(box.overlaps(t) for t in taken):
                taken.append(box)
                break
            ann.remove()
        else:
            omitted += 1
    return omitted


# ----------------------------------------------------------------------------- learning curves


def _steps_fmt(v: float, _pos: Any = None) -> str:
    if abs(v) >= 1e6:
        return f"{v / 1e6:g}M"
    if abs(v) >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def learning_curves(env: str, evals: Mapping[str, Sequence[pd.DataFrame]], colors: Mapping[str, str],
                    energy_estimated: bool, caption: str) -> Chart:
    """Evaluation return against env steps, wall time and energy: mean over seeds and a
    ±1 std band where several seeds reached a step."""
    fig, axes = _figure(12.0, 3.9, ncols=3, sharey=True)
    all_frames = [f for fs in evals.values() for f in fs if f is not None]
    t_unit = time_unit(pd.concat([f["wall_s"] for f in all_frames if "wall_s" in f])
                       if any("wall_s" in f for f in all_frames) else [])
    e_unit = pick_unit(pd.concat([f["energy_j"] for f in all_frames if "energy_j" in f])
                       if any("energy_j" in f for f in all_frames) else [], ENERGY_UNITS)
    specs = [("step", Unit("steps", 1.0), "Env steps"),
             ("wall_s", t_unit, f"Wall time ({t_unit.label})"),
             ("energy_j", e_unit, f"Energy ({e_unit.label}{', estimated' if energy_estimated else ''})")]
    drawn = False
    for ax, (xcol, unit, xlabel) in zip(axes, specs):
        for m, frames in evals.items():
            cur = stats.curve_over_seeds([f for f in frames if f is not None], xcol)
            if cur.empty:
                continue
            drawn = True
            x = cur["x_mean"].to_numpy() / unit.scale
            color = colors.get(m, "#333333")
            ax.plot(x, cur["y_mean"], color=color, lw=1.8, marker="o", ms=3,
                    label=f"{_label(m)} ({int(cur['n'].max())} seed{'s' if cur['n'].max() > 1 else ''})")
            if (cur["n"] > 1).any():
                ax.fill_between(x, cur["y_mean"] - cur["y_std"], cur["y_mean"] + cur["y_std"],
                                color=color, alpha=0.18, lw=0)
        ax.set_xlabel(xlabel)
        if xcol == "step":
            ax.xaxis.set_major_formatter(FuncFormatter(_steps_fmt))
    axes[0].set_ylabel("Evaluation return (mean of episodes)")
    if drawn:
        axes[0].legend(loc="lower right", framealpha=0.9)
    else:
        for ax in axes:
            _empty(ax, "no evals.csv rows yet")
    fig.suptitle(f"Learning curves on {_label(env)}", fontsize=11)
    return Chart(f"curves-{_key(env)}", f"Learning curves on {env}", caption, fig)


# ----------------------------------------------------------------------------- power traces


def power_traces(env: str, traces: Mapping[str, Sequence[tuple[int, pd.DataFrame]]],
                 caption: str) -> Chart:
    """Power per device against time since the seed started; one panel per method."""
    methods = list(traces)
    n = max(len(methods), 1)
    fig, axes = _figure(12.0, 1.2 + 2.1 * n, nrows=n, sharex=True, squeeze=False)
    axes = axes[:, 0]
    devices = sorted({str(d) for rows in traces.values() for _, df in rows for d in df["device"].unique()})
    dstyle = {d: ["-", "--", ":", "-."][i % 4] for i, d in enumerate(devices)}
    longest = max((df["t_s"].max() for rows in traces.values() for _, df in rows if len(df)), default=0)
    t_unit = time_unit([longest])
    for ax, m in zip(axes, methods or [None]):
        rows = traces.get(m, []) if m is not None else []
        if not rows:
            _empty(ax, f"{_label(m)}: no power.csv yet" if m else "no power.csv in this run")
            continue
        for i, (seed, df) in enumerate(rows):
            for dev, g in df.groupby("device", sort=True):
                g = g.sort_values("t_s")
                t, p = stats.bin_mean(g["t_s"].to_numpy(), g["power_w"].to_numpy(), MAX_TRACE_POINTS)
                est = bool(g["estimated"].fillna(False).astype(bool).any()) if "estimated" in g else False
                src = ", ".join(sorted({s for s in g.get("source", pd.Series(dtype=str)) if s}))
                what = src if src else ""
                if est and "estimate" not in what:
                    what = f"{what}, estimated" if what else "estimated"
                ax.plot(t / t_unit.scale, p, color=SEED_COLORS[i % len(SEED_COLORS)], ls=dstyle[str(dev)], lw=1.1,
                        alpha=0.9, label=f"{_label(dev)} · seed {seed}" + (f" ({_label(what)})" if what else ""))
        ax.set_ylabel("Power (W)")
        ax.set_title(_label(m), loc="left", fontsize=10)
        ax.set_ylim(bottom=0)
        ax.legend(loc="lower right", ncols=min(4, max(1, len(ax.get_lines()))), framealpha=0.9, fontsize=7.5)
    axes[-1].set_xlabel(f"Time since the seed started ({t_unit.label})")
    fig.suptitle(f"Power per device on {_label(env)}", fontsize=11)
    return Chart(f"power-{_key(env)}", f"Power traces on {env}", caption, fig)


# ----------------------------------------------------------------------------- carbon equivalents


def equivalents_chart(eq: pd.DataFrame, colors: Mapping[str, str], caption: str) -> Chart:
    """Bars per method of the everyday equivalents of one complete run's emissions."""
    fig, axes = _figure(12.0, 3.4, ncols=3)
    estimated = bool(len(eq) and eq["estimated"].astype(bool).any())
    for ax, col in zip(axes, EQUIV_COLUMNS):
        data = eq[eq[col].notna()] if len(eq) and col in eq else pd.DataFrame()
        if data.empty:
            _empty(ax, "no complete seed\nreported emissions")
            ax.set_title(EQUIV_LABELS[col])
            continue
        names = [_label(m) for m in data["method"]]
        vals = data[col].to_numpy(dtype=float)
        bars = ax.bar(names, vals, color=[colors.get(m, "#333333") for m in data["method"]], width=0.6)
        ax.bar_label(bars, labels=[f"{v:.3g}" for v in vals], padding=2, fontsize=8)
        ax.set_title(EQUIV_LABELS[col] + (" [estimated]" if estimated else ""), fontsize=10)
        ax.set_ylim(0, max(vals.max() * 1.2, 1e-12))
        ax.grid(axis="x", visible=False)
        ax.tick_params(axis="x", rotation=20 if len(names) > 3 else 0)
    fig.suptitle("Emissions of one complete run, as everyday equivalents", fontsize=11)
    return Chart("equivalents", "Carbon equivalents per method", caption, fig)


# ----------------------------------------------------------------------------- all figures


def make_charts(run: RunFolder, report: Report) -> dict[str, list[Chart]]:
    """Every figure of the report, grouped by section: gpsup, curves, power, carbon."""
    colors = method_colors(run.methods)
    seeds = run.seeds
    out: dict[str, list[Chart]] = {"gpsup": [], "curves": [], "power": [], "carbon": []}
    out["gpsup"].append(gpsup_chart(
        report.gpsup_points, report.baseline, colors,
        "One point per method × env: speedup and powerup of the complete-seed means; bars = range "
        "over seeds (several seeds only); the baseline is the star at (1, 1). "
        f"Source: <method>/<env>/seed<k>/result.json wall_s, energy_j; {report.gpsup_note}."))
    for env in run.envs:
        runs = [r for r in run.runs if r.env == env]
        if not runs:
            continue
        evals = {m: [r.evals for r in run.runs_of(m, env) if r.evals is not None]
                 for m in run.methods if run.runs_of(m, env)}
        est = bool(seeds[seeds["env"] == env]["estimated"].fillna(False).astype(bool).any())
        out["curves"].append(learning_curves(
            env, evals, colors, est,
            "Mean evaluation return over the seeds that reached each evaluation step (running and "
            "interrupted seeds contribute the steps they reached); band = ±1 std over seeds. Wall "
            "time and energy are the seeds' mean at that step. Source: <method>/<env>/seed<k>/"
            "evals.csv (step, wall_s, return_mean, energy_j)."))
        traces = {m: [(r.seed, r.power) for r in run.runs_of(m, env) if r.power is not None]
                  for m in run.methods if run.runs_of(m, env)}
        out["power"].append(power_traces(
            env, traces,
            f"Power of each device as sampled (long traces averaged into at most {MAX_TRACE_POINTS} "
            "points); the legend names the source and marks estimates. "
            "Source: <method>/<env>/seed<k>/power.csv (t_s, device, power_w, source, estimated)."))
    out["carbon"].append(equivalents_chart(
        report.equivalents_data, colors,
        "Mean emissions per complete run of each method, converted. " + report.equivalents.source))
    return out
