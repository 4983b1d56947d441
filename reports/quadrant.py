"""The GPS-UP quadrant (DESIGN §5.3): speedup against powerup on log-log axes, square and
symmetric about 1, the greenup = 1 diagonal splitting green (saves energy) from red."""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator
from matplotlib.transforms import Bbox

from bench.metrics.gpsup import PHASE_LABELS
from reports.figure import GREEN, RC, RED, Chart, mpl_text, new_figure

ENV_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "h"]
GREEN_FILL, RED_FILL = "#dff3e4", "#fbe3e1"
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
_PointLabel = tuple[str, tuple[float, float], str]
"""(text, (speedup, powerup), colour)."""


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


def _limits(pts: pd.DataFrame) -> tuple[tuple[float, float], tuple[float, float]]:
    """log10 limits (x, y) zoomed to the data: every point, bar and (1, 1) inside with a margin,
    both spans equal (so the greenup = 1 diagonal stays at 45°), at least log10(2.2) wide."""
    xs, ys = [0.0], [0.0]
    for c, into in (("speedup", xs), ("s_lo", xs), ("s_hi", xs), ("powerup", ys), ("p_lo", ys), ("p_hi", ys)):
        if c in pts:
            into += [math.log10(v) for v in pts[c] if np.isfinite(v) and v > 0]
    span = max(max(xs) - min(xs), max(ys) - min(ys), math.log10(2.2))
    span *= 1.45  # room for labels around the outermost points
    lims = []
    for vals in (xs, ys):
        mid = (max(vals) + min(vals)) / 2
        lims.append((mid - span / 2, mid + span / 2))
    return lims[0], lims[1]


def _draw_regions(ax: Any, xlim: tuple[float, float], ylim: tuple[float, float]) -> list[Any]:
    """Axes, half-planes, the diagonal and the category numbers (where their region is in view);
    returns what labels must avoid."""
    x0, x1, y0, y1 = 10 ** xlim[0], 10 ** xlim[1], 10 ** ylim[0], 10 ** ylim[1]
    lo, hi = min(x0, y0), max(x1, y1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.grid(False)
    # Half-planes split by the greenup = 1 diagonal.
    ax.fill([lo, hi, hi], [lo, lo, hi], color=GREEN_FILL, zorder=0, lw=0)
    ax.fill([lo, lo, hi], [lo, hi, hi], color=RED_FILL, zorder=0, lw=0)
    ax.axvline(1, color="#555555", lw=1.0, zorder=1)
    ax.axhline(1, color="#555555", lw=1.0, zorder=1)
    ax.plot([lo, hi], [lo, hi], color="#333333", lw=1.2, ls="--", zorder=1)
    obstacles = []
    # The diagonal's name where it crosses the view, near its upper end.
    d0, d1 = max(xlim[0], ylim[0]), min(xlim[1], ylim[1])
    if d1 > d0:
        u = 10 ** (d0 + 0.8 * (d1 - d0))
        obstacles.append(ax.annotate("greenup = 1", xy=(u, u), xytext=(0, 3), textcoords="offset points", rotation=45,
                                     rotation_mode="anchor", color="#333333", fontsize=8.5, ha="center", va="bottom"))
    # Category numbers: each at a point of its region, shown only when that point is in view.
    span = xlim[1] - xlim[0]
    r = 0.42 * span
    spots = {1: (r, -r), 2: (r, 0.0), 3: (r, 0.55 * r), 4: (-0.55 * r, -r), 5: (0.55 * r, r), 6: (-r, -0.55 * r),
             7: (-r, 0.0), 8: (-r, r)}
    for cat, (lu, lv) in spots.items():
        margin = 0.04 * span
        if not (xlim[0] + margin < lu < xlim[1] - margin and ylim[0] + margin < lv < ylim[1] - margin):
            continue
        color = GREEN if cat <= 4 else RED
        obstacles.append(ax.text(10 ** lu, 10 ** lv, str(cat), ha="center", va="center", fontsize=10,
                                 fontweight="bold", color=color, zorder=2, alpha=0.9,
                                 bbox=dict(boxstyle="circle,pad=0.25", fc="white", ec=color, lw=1.1, alpha=0.85)))
    # red above the diagonal (top left), green below it (bottom right)
    for (x, y), text, color, ha, va in (((0.02, 0.98), "▲ costs energy (greenup < 1)", RED, "left", "top"),
                                        ((0.98, 0.02), "▼ saves energy (greenup > 1)", GREEN, "right", "bottom")):
        obstacles.append(ax.text(x, y, text, transform=ax.transAxes, color=color, fontsize=8, fontweight="bold",
                                 ha=ha, va=va, zorder=3))
    return obstacles


def _draw_baseline(ax: Any) -> None:
    """The star at (1, 1); its label is placed with the others."""
    ax.plot([1], [1], marker="*", ms=17, color="black", mec="white", mew=0.8, zorder=6, ls="none")


def modelled(rec: Mapping[str, Any]) -> bool:
    """A point whose powerup rests (partly) on a power model: drawn hollow, never a finding."""
    return rec.get("gpsup_basis") != "measured"


def hollow_caption(points: pd.DataFrame, baseline: str) -> str:
    """The caption's sentence on hollow points, or '' when every point was measured."""
    if not len(points) or not any(modelled(r) for r in points.to_dict("records") if r["method"] != baseline
                                  and np.isfinite(r.get("speedup", np.nan))):
        return ""
    return ("Hollow points: the energy of at least one side is not (all) measured by counters (basis model or "
            "mixed), so their vertical position (powerup) and their side of the diagonal come from a power model, "
            "not a measurement; their category is not a finding. ")


def _draw_points(ax: Any, pts: pd.DataFrame, baseline: str, colors: Mapping[str, str],
                 markers: Mapping[str, str]) -> tuple[list[Line2D], list[_PointLabel]]:
    """One marker per candidate method × env with its 95 % bootstrap interval as error bars, hollow
    where its basis is not measured; returns the legend handles (one per method) and the labels
    still to place."""
    handles, seen = [], set()
    labels: list[_PointLabel] = []
    # name each point's engine when the methods ran on different ones (the comparison is then partly
    # one of implementations)
    engines = {str(e) for e in pts.get("engine", pd.Series(dtype=object)).dropna() if e} if len(pts) else set()
    for rec in pts.to_dict("records") if len(pts) else []:
        if rec["method"] == baseline:
            continue
        s, p = float(rec["speedup"]), float(rec["powerup"])
        color = colors.get(rec["method"], "#333333")
        xerr = yerr = None
        if np.isfinite(rec.get("s_lo", np.nan)) and np.isfinite(rec.get("p_lo", np.nan)):
            xerr = [[max(s - rec["s_lo"], 0)], [max(rec["s_hi"] - s, 0)]]
            yerr = [[max(p - rec["p_lo"], 0)], [max(rec["p_hi"] - p, 0)]]
        hollow = modelled(rec)
        ax.errorbar([s], [p], xerr=xerr, yerr=yerr, marker=markers[rec["env"]], ms=9, color=color,
                    mfc="white" if hollow else color, mec=color if hollow else "white", mew=1.8 if hollow else 0.8,
                    ecolor=color, elinewidth=1.3, capsize=3, zorder=5, ls="none", gid="hollow" if hollow else "filled")
        text = mpl_text(rec["method"]) + (f" [{rec['engine']}]" if len(engines) > 1 and rec.get("engine") else "")
        text += " ‡" if rec.get("contended") else ""
        text += f" · {mpl_text(str(rec['env']).split('-')[0])}" if len(markers) > 1 else ""
        if np.isfinite(rec.get("greenup", np.nan)):
            text += f"\nG = {rec['greenup']:.2f}×" + (f" ({rec['gpsup_basis']})" if hollow and rec.get("gpsup_basis")
                                                      else " (model)" if hollow else "")
        labels.append((text, (s, p), color))
        if rec["method"] not in seen:
            seen.add(rec["method"])
            handles.append(Line2D([], [], color=color, marker="o", ls="none", label=mpl_text(rec["method"])))
    return handles, labels


def _decorate(ax: Any, lim: float, baseline: str, handles: list[Line2D], estimated: bool,
              phase: str = "train") -> None:
    """Legend, category key, ratio ticks, axis labels and title."""
    star = Line2D([], [], color="black", marker="*", ms=11, ls="none", label=f"{mpl_text(baseline)} (baseline)")
    ax.legend(handles=[*handles, star], loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False,
              fontsize=8.5, title="one point per\nmethod × env", title_fontsize=8)
    ax.text(1.03, 0.0, "GPS-UP categories\n" + "\n".join(f"{k}  {v}" for k, v in CATEGORY_WORDS.items()),
            transform=ax.transAxes, fontsize=7.5, va="bottom", ha="left", color="#444444",
            linespacing=1.3)
    ticks = _ratio_ticks(lim)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_major_formatter(FuncFormatter(_fmt_ratio_tick))
        axis.set_minor_locator(NullLocator())
    ax.set_xlabel(f"Speedup  S = T({mpl_text(baseline)}) / T   (right = faster)")
    ax.set_ylabel(f"Powerup  P = P / P({mpl_text(baseline)})   (up = more power)"
                  + ("  [estimated]" if estimated else ""))
    ax.set_title(f"GPS-UP of the {PHASE_LABELS[phase].split(' (')[0]} against {mpl_text(baseline)}"
                 + (" (energy estimated)" if estimated else ""), fontsize=10)


def gpsup_chart(points: pd.DataFrame, baseline: str, colors: Mapping[str, str],
                caption: str, phase: str = "train") -> Chart:
    """The GPS-UP quadrant: x speedup, y powerup, log-log, square, zoomed to the data; every point
    labelled without overlap (a numbered key where a label does not fit beside its point)."""
    fig, ax = new_figure(8.4, 6.4)
    pts = points[points["speedup"].notna() & points["powerup"].notna()] if len(points) else points
    xlim, ylim = _limits(pts)
    obstacles = _draw_regions(ax, xlim, ylim)
    envs = list(dict.fromkeys(pts["env"])) if len(pts) else []
    markers = {e: ENV_MARKERS[i % len(ENV_MARKERS)] for i, e in enumerate(envs)}
    _draw_baseline(ax)
    handles, labels = _draw_points(ax, pts, baseline, colors, markers)
    labels.insert(0, (f"{mpl_text(baseline)} (baseline)", (1.0, 1.0), "#000000"))
    if len(envs) > 1:
        handles += [Line2D([], [], color="#444444", marker=markers[e], ls="none", label=mpl_text(e))
                    for e in envs]
    if any(modelled(r) for r in pts.to_dict("records") if r["method"] != baseline) if len(pts) else False:
        handles.append(Line2D([], [], color="#444444", marker="o", mfc="white", mew=1.8, ls="none",
                              label="hollow: powerup from\na power model (basis\nmodel or mixed)"))
    _decorate(ax, max(abs(v) for v in (*xlim, *ylim)), baseline, handles,
              bool(len(pts) and pts["estimated"].astype(bool).any()), phase)
    if not (len(pts) and (pts["method"] != baseline).any()):
        ax.text(0.5, 0.62, "no point yet: GPS-UP needs complete seeds\nwith both wall time and energy",
                transform=ax.transAxes, ha="center", color="#555555", fontsize=10, zorder=8,
                bbox=dict(boxstyle="round,pad=0.4", fc="white", ec="#999999", alpha=0.95))
    keyed = _place_labels(fig, ax, labels, obstacles)
    if keyed:
        ax.text(1.03, 0.42, "\n".join(f"{k}  {text.replace(chr(10), ' ')}" for k, text in keyed),
                transform=ax.transAxes, ha="left", va="bottom", fontsize=7, color="#333333")
    return Chart("gpsup", "GPS-UP quadrant", caption, fig)


def _spots() -> list[tuple[float, float, str, str]]:
    """Candidate label offsets (points) around a marker: nearest first, eight directions per ring."""
    out = []
    for r in (9, 16, 26, 38, 52, 68, 86):
        for ang in (45, -45, 135, -135, 90, -90, 0, 180, 22, -22, 158, -158, 68, -68, 112, -112):
            dx, dy = r * math.cos(math.radians(ang)), r * math.sin(math.radians(ang))
            ha = "left" if dx > 1 else "right" if dx < -1 else "center"
            va = "bottom" if dy > 1 else "top" if dy < -1 else "center"
            out.append((dx, dy, ha, va))
    return out


_LABEL_SPOTS = _spots()


def _place_labels(fig: Figure, ax: Any, labels: Sequence[_PointLabel],
                  obstacles: Sequence[Any]) -> list[tuple[str, str]]:
    """Put each point's label at the nearest spot that overlaps no other label, marker, category
    number or region text and stays inside the axes (a leader line joins far labels to their
    point). A point whose label fits nowhere gets a number beside it, and (number, label) is
    returned for a key next to the axes."""
    if not labels:
        return []
    with matplotlib.rc_context(RC):
        fig.draw_without_rendering()  # fixes the layout, so display coordinates hold
    canvas = fig.canvas
    assert isinstance(canvas, FigureCanvasAgg), "reports.figure selects the Agg backend"
    renderer = canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    taken = [o.get_window_extent(renderer) for o in obstacles]
    for _, xy, _ in labels:  # the markers themselves
        x, y = ax.transData.transform(xy)
        taken.append(Bbox.from_extents(x - 9, y - 9, x + 9, y + 9))
    keyed: list[tuple[str, str]] = []
    placed: list[Any] = []
    for text, xy, color in labels:
        for dx, dy, ha, va in _LABEL_SPOTS:
            far = math.hypot(dx, dy) > 12
            ann = _annotate(ax, text, xy, (dx, dy), ha, va, color, far)
            ann.update_positions(renderer)
            box = Text.get_window_extent(ann, renderer).padded(2)  # the text, not its leader
            fits = (box.x0 >= inside.x0 and box.x1 <= inside.x1 and box.y0 >= inside.y0
                    and box.y1 <= inside.y1)
            if fits and not any(box.overlaps(t) for t in taken):
                taken.append(box)
                placed.append(ann)
                break
            ann.remove()
        else:  # a short number instead, at the first free spot, and the full label in the key
            key = str(len(keyed) + 1)
            for dx, dy, ha, va in _LABEL_SPOTS:
                ann = _annotate(ax, key, xy, (dx, dy), ha, va, color, False)
                ann.update_positions(renderer)
                box = Text.get_window_extent(ann, renderer).padded(1)
                if inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1) and \
                        not any(box.overlaps(t) for t in taken):
                    taken.append(box)
                    break
                ann.remove()
            keyed.append((key, text))
    return keyed


def _annotate(ax: Any, text: str, xy: tuple[float, float], offset: tuple[float, float], ha: str, va: str,
              color: str, leader: bool) -> Any:
    ann = ax.annotate(text, xy=xy, xytext=offset, textcoords="offset points", ha=ha, va=va, fontsize=8,
                      color=color, zorder=7, fontweight="bold",
                      bbox=dict(boxstyle="round,pad=0.12", fc="white", ec="none", alpha=0.9),
                      arrowprops=dict(arrowstyle="-", color=color, lw=0.7, shrinkA=0, shrinkB=4) if leader else None)
    ann.set_in_layout(False)
    ann.set_gid("point-label")
    return ann
