"""Render a `Report` and its charts into a PDF for a paper's appendix (matplotlib PdfPages).

Every page is US-letter landscape. Figures are vector pages (each keeps its aspect ratio at the
top of its page, caption below); tables are drawn as real tables (matplotlib table artists, text
kept as text so it can be searched) with the same cells as the HTML, and flow: a short table
shares a page with the next ones, a long one continues on the next page with its header.
"""
from __future__ import annotations

import textwrap
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.layout_engine import ConstrainedLayoutEngine  # noqa: E402

from bench.schema import Status  # noqa: E402
from reports.figure import RC, Chart  # noqa: E402
from reports.model import Cell, Report, Table  # noqa: E402
from reports.tables import facts_table  # noqa: E402

PAGE = (11.0, 8.5)
MARGIN_X, TOP, BOTTOM = 0.045, 0.9, 0.1
STATUS_COLORS = {Status.COMPLETE.value: "#dafbe1", Status.RUNNING.value: "#ddf4ff",
                 Status.PENDING.value: "#eff2f5", Status.INTERRUPTED.value: "#fff8c5",
                 Status.FAILED.value: "#ffebe9", Status.CORRUPT.value: "#ffebe9"}
TEXT_COLORS = {"green": "#1a7f37", "red": "#b42318", "est": "#7d4e00"}


def _page(title: str | None = None, subtitle: str | None = None) -> Figure:
    fig = Figure(figsize=PAGE)
    if title:
        fig.text(MARGIN_X, 0.95, title, fontsize=14, fontweight="bold", va="top")
    if subtitle:
        fig.text(MARGIN_X, 0.915, subtitle, fontsize=8, color="#59636e", va="top")
    return fig


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width=width, break_long_words=True,
                                   break_on_hyphens=False) or [""])


def _style_cell(cell: Any, src: Cell) -> None:
    """The HTML's cell classes in PDF terms: status colours, green/red/estimate text, numbers right."""
    if src.cls.startswith("status-"):
        cell.set_facecolor(STATUS_COLORS.get(src.cls[7:], "white"))
        cell.get_text().set_fontweight("bold")
    elif src.cls in TEXT_COLORS:
        cell.get_text().set_color(TEXT_COLORS[src.cls])
        cell.get_text().set_fontweight("bold")
    if src.cls == "num":
        cell.get_text().set_horizontalalignment("right")
        cell._loc = "right"


@dataclass
class _Laid:
    """A table measured for drawing: wrapped text, column widths (axes fractions of the text
    width), font size and row heights (inches)."""

    table: Table
    headers: list[str]
    body: list[list[str]]
    col_w: list[float]
    fontsize: float
    header_h: float
    row_h: list[float]

    def foot(self) -> str:
        return "\n".join([_wrap(n, 200) for n in self.table.notes] + [_wrap(self.table.source, 200)])

    def foot_h(self) -> float:
        return (self.foot().count("\n") + 1) * 6.5 * 1.4 / 72 + 0.08


def _lay_out(table: Table) -> _Laid:
    ncols = len(table.headers)
    # Wide tables wrap cells hard so the font stays readable; narrow ones keep lines whole.
    wrap_at = max(17, min(80, 170 // max(ncols, 1)))
    headers = [_wrap(h, max(11, wrap_at // 2)) for h in table.headers]
    body = [[_wrap(c.text, wrap_at if len(c.text) > wrap_at + 4 else wrap_at + 4) for c in row]
            for row in table.rows]
    widths = []
    for j in range(ncols):
        # Bold text (headers, status badges) is about 12 % wider than regular text.
        bold = any(row[j].cls.startswith("status-") or row[j].cls in TEXT_COLORS for row in table.rows)
        lines = [(ln, 1.12) for ln in headers[j].split("\n")]
        lines += [(ln, 1.12 if bold else 1.0) for r in body for ln in r[j].split("\n")]
        widths.append(max(len(ln) * k for ln, k in lines) + 2)
    total = sum(widths)
    avail_in = PAGE[0] * (1 - 2 * MARGIN_X)
    fontsize = max(5.0, min(8.5, avail_in * 72 / (0.56 * total)))
    col_w = [w / total * min(1.0, 0.56 * total * fontsize / 72 / avail_in) for w in widths]
    line_in = fontsize * 1.3 / 72

    def height(cells: list[str]) -> float:
        return (max(c.count("\n") + 1 for c in cells) + 0.7) * line_in

    return _Laid(table, headers, body, col_w, fontsize, height(headers), [height(r) for r in body])


TITLE_H = 0.32
"""Inches above a table for its title."""
GAP_H = 0.22


class _Flow:
    """Lays tables one after another on letter-landscape pages, starting a page only when the next
    table (or its next rows) does not fit: a short table shares its page with others."""

    def __init__(self, subtitle: str):
        self.subtitle = subtitle
        self.pages: list[Figure] = []
        self.y = 0.0  # inches used from the top of the content area on the current page
        self.content_h = PAGE[1] * (0.95 - 0.04)

    def _new_page(self) -> Figure:
        fig = _page(None, None)
        fig.text(MARGIN_X, 0.985, self.subtitle, fontsize=7, color="#59636e", va="top")
        self.pages.append(fig)
        self.y = 0.0
        return fig

    def _top_frac(self) -> float:
        return 0.95 - self.y / PAGE[1]

    def add(self, table: Table) -> None:
        laid = _lay_out(table)
        rows = list(range(len(laid.body)))
        part = 0
        while True:
            fig = self.pages[-1] if self.pages else self._new_page()
            room = self.content_h - self.y - TITLE_H - laid.header_h - laid.foot_h()
            fit, used = [], 0.0
            for i in rows:
                if used + laid.row_h[i] > room:
                    break
                fit.append(i)
                used += laid.row_h[i]
            if len(fit) < min(3, len(rows)):  # a table never starts with a stray row at a page's foot
                if self.y > 0:
                    self._new_page()
                    continue
                fit = fit or [rows[0]]  # a fresh page always takes at least one row
                used = sum(laid.row_h[i] for i in fit)
            left = rows[len(fit):]
            part += 1
            title = table.title + (f" (continued, part {part})" if part > 1 else "")
            self._draw(fig, laid, fit, used, title, foot=not left)
            rows = left
            if not rows:
                return
            self._new_page()

    def _draw(self, fig: Figure, laid: _Laid, idx: list[int], rows_h: float, title: str, foot: bool) -> None:
        top = self._top_frac()
        fig.text(MARGIN_X, top, title, fontsize=11, fontweight="bold", va="top")
        table_h = laid.header_h + rows_h
        ax_top = top - TITLE_H / PAGE[1]
        ax = fig.add_axes((MARGIN_X, ax_top - table_h / PAGE[1], 1 - 2 * MARGIN_X, table_h / PAGE[1]))
        ax.axis("off")
        ncols = len(laid.headers)
        rows = [laid.body[i] for i in idx] or [["no rows"] + [""] * (ncols - 1)]
        tbl = ax.table(cellText=rows, colLabels=laid.headers, colWidths=laid.col_w, loc="upper left",
                       cellLoc="left")
        tbl.AXESPAD = 0.0
        tbl.auto_set_font_size(False)
        tbl.set_fontsize(laid.fontsize)
        for (r, c), cell in tbl.get_celld().items():
            cell.set_edgecolor("#d1d9e0")
            cell.set_linewidth(0.5)
            cell.PAD = 0.04
            if r == 0:
                cell.set_height(laid.header_h / table_h)
                cell.set_facecolor("#f6f8fa")
                cell.get_text().set_fontweight("bold")
                continue
            cell.set_height((laid.row_h[idx[r - 1]] if idx else laid.header_h) / table_h)
            if idx:
                _style_cell(cell, laid.table.rows[idx[r - 1]][c])
        self.y += TITLE_H + table_h
        if foot:
            fig.text(MARGIN_X, self._top_frac() - 0.05 / PAGE[1], laid.foot(), fontsize=6.5, color="#59636e",
                     va="top", linespacing=1.4)
            self.y += laid.foot_h()
        self.y += GAP_H

    def close(self) -> list[Figure]:
        pages, self.pages = self.pages, []
        return pages


def table_pages(table: Table, subtitle: str = "") -> list[Figure]:
    """The pages drawing `table` alone (a flow of one table)."""
    flow = _Flow(subtitle)
    flow.add(table)
    return flow.close()


def cover_page(report: Report) -> Figure:
    """The headline (estimated energy first, then every fairness warning), the summary per method
    and the missing files; what was run follows as a table."""
    fig = _page(f"{report.title} — {report.run_name}",
                f"baseline {report.baseline} · generated {report.generated_utc} from the run folder's files only")
    y = 0.87
    lines = [(line, i == 0 and report.estimated) for i, line in enumerate(report.headline)]
    lines[1:1] = [(w, True) for w in report.warnings]  # fairness warnings right after the energy headline
    for line, est in lines:
        text = _wrap(("⚠ " if est else "") + line, 135)
        n = text.count("\n") + 1
        fig.text(MARGIN_X, y, text, fontsize=9.5, va="top", fontweight="bold" if est else "normal",
                 color="#7d4e00" if est else "#1f2328",
                 bbox=dict(boxstyle="round,pad=0.45", fc="#fff8c5" if est else "#ddf4ff",
                           ec="#d4a72c" if est else "#54aeff"))
        y -= 0.027 * n + 0.032
    if report.findings:
        y -= 0.005
        fig.text(MARGIN_X, y, "Summary per method, across envs", fontsize=11, fontweight="bold", va="top")
        y -= 0.032
    for f in report.findings:
        text = _wrap("• " + f, 150)
        fig.text(MARGIN_X, y, text, fontsize=8.5, va="top")
        y -= 0.022 * (text.count("\n") + 1) + 0.006
    if report.problems:
        y -= 0.02
        shown = report.problems[:8]
        missing = [f"Missing or unreadable files ({len(report.problems)}), shown as '—', never as zero:"]
        missing += [f"  {p.path}: {p.message}" for p in shown]
        if len(report.problems) > len(shown):
            missing.append(f"  … and {len(report.problems) - len(shown)} more (see report.html)")
        fig.text(MARGIN_X, max(y, 0.03), "\n".join(missing), fontsize=7, va="top", color="#59636e")
    return fig


@contextmanager
def captioned(chart: Chart) -> Iterator[Figure]:
    """The chart's figure on a letter-landscape page: its drawing keeps its own aspect ratio in the
    upper part of the page (the whole page if it is tall enough), its caption is small print below;
    the figure's size and layout are restored afterwards (the SVG keeps its natural size)."""
    fig = chart.figure
    size = tuple(fig.get_size_inches())
    engine = fig.get_layout_engine()
    if not isinstance(engine, ConstrainedLayoutEngine):  # (new_figure makes every chart's layout constrained)
        engine = None
    old_rect = engine.get().get("rect", (0, 0, 1, 1)) if engine is not None else None
    text = _wrap(f"{chart.title}. {chart.caption}", int(PAGE[0] * 17))
    n_lines = text.count("\n") + 1
    caption_h = (n_lines * 6.5 * 1.35 + 10) / 72 / PAGE[1]
    natural_h = min(PAGE[0] * size[1] / size[0], PAGE[1] * (1 - caption_h) * 0.97) / PAGE[1]
    top_gap = 0.02
    fig.set_size_inches(*PAGE)
    if engine is not None:
        engine.set(rect=(0.02, 1 - top_gap - natural_h, 0.96, natural_h))
    artist = fig.text(0.02, 1 - top_gap - natural_h - 0.01, text, fontsize=6.5, color="#59636e", va="top")
    try:
        yield fig
    finally:
        artist.remove()
        fig.set_size_inches(*size)
        if engine is not None:
            engine.set(rect=old_rect)


def _command_table(report: Report) -> Table:
    return Table(key="command", title="Reproducibility appendix: command line", headers=["Field", "Value"],
                 rows=[[Cell("command"), Cell(report.command)], [Cell("argv"), Cell(" ".join(report.argv) or "—")]],
                 source="Source: plan.json (command, argv); the full plan and every config.json are in report.html "
                        "and the run folder.")


def write_pdf(path: str | Path, report: Report, charts: Mapping[str, Sequence[Chart]]) -> None:
    """Write the whole report as a PDF at `path` (the caller makes it atomic): every page US-letter
    landscape; tables flow (several share a page when they fit), each figure gets a page."""
    flow = _Flow(f"{report.title} — run folder {report.run_name}")
    pages: list[Figure | Chart] = [cover_page(report)]

    def tables(*ts: Table | None) -> None:
        for t in ts:
            if t is not None:
                flow.add(t)

    def figures(*sections: str) -> None:
        pages.extend(flow.close())
        for section in sections:
            pages.extend(charts.get(section, []))

    tables(facts_table(report.facts, report.facts_source), report.power_sources, report.account, report.aggregates,
           report.normalization if report.crosstask is not None and report.crosstask.constants else None)
    figures("aggregates")
    for _env, agg, seeds in report.results:
        tables(agg, seeds)
    figures("gpsup", "curves", "power", "spikes", "carbon")
    # the short tables after the figures they go with, so that they share pages
    tables(report.spikes, report.equivalents, report.hyperparameters, _command_table(report), report.environment,
           report.meters)
    pages.extend(flow.close())
    with matplotlib.rc_context(RC):
        with PdfPages(path, metadata={"Title": f"{report.title}: {report.run_name}",
                                      "Author": "spikerl-bench", "Subject": "energy and carbon benchmark",
                                      "Creator": "spikerl-bench reports"}) as pdf:
            for page in pages:
                if isinstance(page, Chart):
                    with captioned(page) as fig:
                        pdf.savefig(fig)
                else:
                    pdf.savefig(page)
