"""The GPS-UP quadrant (DESIGN §5.3): speedup against powerup on log-log axes, square and
symmetric about 1, the greenup = 1 diagonal splitting green (saves energy) from red."""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator
from matplotlib.transforms import Bbox

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


def _half_range(pts: pd.DataFrame) -> float:
    """log10 of the axes' upper limit: room for every point and bar, and at least 2.2x."""
    vals = []
    for c in ("speedup", "powerup", "s_lo", "s_hi", "p_lo", "p_hi"):
        if c in pts:
            vals += [abs(math.log10(v)) for v in pts[c] if np.isfinite(v) and v > 0]
    top = max(vals) if vals else 0.0
    return max(top * 1.3, top + 0.08, math.log10(2.2))


def _draw_regions(ax: Any, lim: float) -> list[Any]:
    """Axes, half-planes, the diagonal and the category numbers; returns what labels must avoid."""
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
    return obstacles


def _draw_baseline(ax: Any, baseline: str) -> list[Any]:
    """The star at (1, 1) and its label; returns them as obstacles for the point labels."""
    ax.plot([1], [1], marker="*", ms=17, color="black", mec="white", mew=0.8, zorder=6, ls="none")
    star = ax.plot([1], [1], marker="*", ms=17, ls="none", alpha=0)[0]
    name = ax.annotate(f"{mpl_text(baseline)} (baseline)", xy=(1, 1), xytext=(-8, -14),
                       textcoords="offset points", ha="right", va="top", fontsize=9, zorder=7,
                       bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.75))
    return [star, name]


def _draw_points(ax: Any, pts: pd.DataFrame, baseline: str, colors: Mapping[str, str],
                 markers: Mapping[str, str]) -> tuple[list[Line2D], list[_PointLabel]]:
    """One marker per candidate method × env with its seed range as error bars; returns the
    legend handles (one per method) and the labels still to place."""
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
        if rec.get("n_seeds", 0) > 1 and np.isfinite(rec.get("s_lo", np.nan)):
            xerr = [[max(s - rec["s_lo"], 0)], [max(rec["s_hi"] - s, 0)]]
            yerr = [[max(p - rec["p_lo"], 0)], [max(rec["p_hi"] - p, 0)]]
        ax.errorbar([s], [p], xerr=xerr, yerr=yerr, marker=markers[rec["env"]], ms=9, color=color,
                    mec="white", mew=0.8, ecolor=color, elinewidth=1.3, capsize=3, zorder=5, ls="none")
        text = mpl_text(rec["method"]) + (f" [{rec['engine']}]" if len(engines) > 1 and rec.get("engine") else "")
        text += " ‡" if rec.get("contended") else ""
        text += f" · {mpl_text(str(rec['env']).split('-')[0])}" if len(markers) > 1 else ""
        text += f"\nG = {rec['greenup']:.2f}×" if np.isfinite(rec.get("greenup", np.nan)) else ""
        labels.append((text, (s, p), color))
        if rec["method"] not in seen:
            seen.add(rec["method"])
            handles.append(Line2D([], [], color=color, marker="o", ls="none", label=mpl_text(rec["method"])))
    return handles, labels


def _decorate(ax: Any, lim: float, baseline: str, handles: list[Line2D], estimated: bool) -> None:
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
    ax.set_title(f"GPS-UP against {mpl_text(baseline)}" + (" (energy estimated)" if estimated else ""))


def gpsup_chart(points: pd.DataFrame, baseline: str, colors: Mapping[str, str],
                caption: str) -> Chart:
    """The GPS-UP quadrant: x speedup, y powerup, log-log, square, equal ranges about 1."""
    fig, ax = new_figure(8.4, 6.4)
    pts = points[points["speedup"].notna() & points["powerup"].notna()] if len(points) else points
    lim = _half_range(pts)
    obstacles = _draw_regions(ax, lim)
    envs = list(dict.fromkeys(pts["env"])) if len(pts) else []
    markers = {e: ENV_MARKERS[i % len(ENV_MARKERS)] for i, e in enumerate(envs)}
    obstacles += _draw_baseline(ax, baseline)
    handles, labels = _draw_points(ax, pts, baseline, colors, markers)
    if len(envs) > 1:
        handles += [Line2D([], [], color="#444444", marker=markers[e], ls="none", label=mpl_text(e))
                    for e in envs]
    _decorate(ax, lim, baseline, handles, bool(len(pts) and pts["estimated"].astype(bool).any()))
    if not (len(pts) and (pts["method"] != baseline).any()):
        ax.text(0.5, 0.62, "no point yet: GPS-UP needs complete seeds\nwith both wall time and energy",
                transform=ax.transAxes, ha="center", color="#555555", fontsize=10, zorder=8,
                bbox=dict(boxstyle="round,pad=0.4", fc="white", ec="#999999", alpha=0.95))
    omitted = _place_labels(fig, ax, labels, obstacles)
    if omitted:
        ax.text(1.03, 0.42, f"{omitted} point label(s) left out\nwhere points crowd;\n"
                "marker = env, colour = method", transform=ax.transAxes, ha="left", va="bottom",
                fontsize=7, color="#444444", style="italic")
    return Chart("gpsup", "GPS-UP quadrant", caption, fig)


_LABEL_SPOTS = [(8, 6, "left", "bottom"), (8, -6, "left", "top"), (-8, 6, "right", "bottom"),
                (-8, -6, "right", "top"), (0, 11, "center", "bottom"), (0, -11, "center", "top"),
                (22, 22, "left", "bottom"), (22, -22, "left", "top"), (-22, 22, "right", "bottom"),
                (-22, -22, "right", "top"), (0, 30, "center", "bottom"), (0, -30, "center", "top"),
                (36, 36, "left", "bottom"), (36, -36, "left", "top"), (-36, 36, "right", "bottom"),
                (-36, -36, "right", "top")]


def _place_labels(fig: Figure, ax: Any, labels: Sequence[_PointLabel],
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
