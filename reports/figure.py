"""The figure type every chart returns, and the style all charts share (matplotlib, Agg).

`chart.svg()` gives self-contained SVG text for inline HTML (no XML prolog, DOCTYPE, metadata or
namespace URLs; a viewBox plus width and height), `chart.svg_file()` a standalone .svg file, and
`chart.save_pdf(target)` writes vector PDF (a path or an open `PdfPages`). Call `chart.close()`
when done.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

PALETTE = ["#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#e377c2", "#7f7f7f", "#bcbd22"]
"""Method colours; pure green and red are kept for the GPS-UP half-planes."""
GREEN, RED = "#1a7f37", "#b42318"

RC: dict[RcKeyType, Any] = {
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


def mpl_text(text: Any) -> str:
    """User text for matplotlib: '$' would start mathtext."""
    return str(text).replace("$", r"\$")


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
            if isinstance(target, PdfPages):
                target.savefig(self.figure)  # a page of a multi-page PDF
            else:
                self.figure.savefig(target, format="pdf")

    def close(self) -> None:
        plt.close(self.figure)


def _attr(text: str) -> str:
    return (str(text).replace("&", "&amp;").replace('"', "&quot;")
            .replace("<", "&lt;").replace(">", "&gt;"))


def file_key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "x"


def method_colors(methods: Sequence[str]) -> dict[str, str]:
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(methods)}


def new_figure(w: float, h: float, **kw: Any) -> tuple[Figure, Any]:
    with matplotlib.rc_context(RC):
        fig, axes = plt.subplots(figsize=(w, h), layout="constrained", **kw)
    return fig, axes


def empty(ax: Any, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes,
            color="#666666", fontsize=10, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])

