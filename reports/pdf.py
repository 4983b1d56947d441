"""Render a `Report` and its charts into a PDF for a paper's appendix (matplotlib PdfPages).

Figures are vector pages; tables are drawn as text (matplotlib table figures) with the same
cells as the HTML, so the PDF's text can be searched and extracted. Pages are US-letter
landscape except the figures, which keep their own size.
"""
from __future__ import annotations

import json
import textwrap
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from bench.schema import Status  # noqa: E402
from reports.figure import RC, Chart  # noqa: E402
from reports.model import Cell, Report, Table  # noqa: E402

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


def _paginate(row_heights: list[float], header_h: float) -> list[list[int]]:
    """Row indices per page, each page starting with the header; heights in axes fractions."""
    pages: list[list[int]] = [[]]
    used = header_h
    for i, h in enumerate(row_heights):
        if pages[-1] and used + h > 1.0:
            pages.append([])
            used = header_h
        pages[-1].append(i)
        used += h
    return pages


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


def table_pages(table: Table, subtitle: str = "") -> list[Figure]:
    """One or more pages drawing `table` as text, with its notes and source line."""
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
    fontsize = max(5.0, min(9.0, avail_in * 72 / (0.56 * total)))
    col_w = [w / total * min(1.0, 0.56 * total * fontsize / 72 / avail_in) for w in widths]
    ax_h_in = PAGE[1] * (TOP - BOTTOM - 0.06)
    line_h = fontsize * 1.3 / 72 / ax_h_in

    def height(cells: list[str]) -> float:
        return (max(c.count("\n") + 1 for c in cells) + 0.7) * line_h

    header_h = height(headers)
    pages = _paginate([height(row) for row in body], header_h)
    figs = []
    for k, idx in enumerate(pages):
        title = table.title + (f" (page {k + 1} of {len(pages)})" if len(pages) > 1 else "")
        fig = _page(title, subtitle)
        ax = fig.add_axes((MARGIN_X, BOTTOM + 0.06, 1 - 2 * MARGIN_X, TOP - BOTTOM - 0.06))
        ax.axis("off")
        rows = [body[i] for i in idx] or [["no rows"] + [""] * (ncols - 1)]
        tbl = ax.table(cellText=rows, colLabels=headers, colWidths=col_w, loc="upper left",
                       cellLoc="left")
        tbl.AXESPAD = 0.0
        tbl.auto_set_font_size(False)
        tbl.set_fontsize(fontsize)
        for (r, c), cell in tbl.get_celld().items():
            cell.set_edgecolor("#d1d9e0")
            cell.set_linewidth(0.5)
            cell.PAD = 0.04
            if r == 0:
                cell.set_height(header_h)
                cell.set_facecolor("#f6f8fa")
                cell.get_text().set_fontweight("bold")
                continue
            cell.set_height(height(rows[r - 1]))
            if idx:
                _style_cell(cell, table.rows[idx[r - 1]][c])
        used = header_h + sum(height(r) for r in rows)
        ax_bottom, ax_h = BOTTOM + 0.06, TOP - BOTTOM - 0.06
        foot = [_wrap(n, 190) for n in table.notes] + [_wrap(table.source, 190)]
        fig.text(MARGIN_X, max(0.02 + 0.012 * sum(f.count("\n") + 1 for f in foot),
                              ax_bottom + ax_h * (1 - used) - 0.025),
                 "\n".join(foot), fontsize=6.5, color="#59636e", va="top", linespacing=1.4)
        figs.append(fig)
    return figs


def flatten_json(text: str) -> list[str]:
    """'{"td3": {"gamma": 0.99}}' -> ['td3.gamma = 0.99']; text that is not JSON comes back as lines."""
    try:
        obj = json.loads(text)
    except (TypeError, ValueError):
        return text.splitlines()
    out: list[str] = []

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, dict) and v:
            for k in sorted(v):
                walk(f"{prefix}.{k}" if prefix else str(k), v[k])
        else:
            out.append(f"{prefix} = {json.dumps(v, default=str)}")

    walk("", obj)
    return out


def text_pages(title: str, blocks: Sequence[tuple[str, str]], *, mono: bool = True,
               lines_per_page: int = 62, width: int = 150, columns: int = 1) -> list[Figure]:
    """Pages of (heading, text) blocks, wrapped and paginated (in `columns` columns)."""
    width = width // columns - 4 if columns > 1 else width
    lines: list[tuple[str, str]] = []
    for heading, text in blocks:
        for part in textwrap.wrap(heading, width=width) if heading else []:
            lines.append(("h", part))
        for raw in text.splitlines() or [""]:
            for ln in textwrap.wrap(raw, width=width, replace_whitespace=False,
                                    drop_whitespace=False) or [""]:
                lines.append(("t", ln))
        lines.append(("t", ""))
    figs = []
    per_page = lines_per_page * columns
    chunks = [lines[i:i + per_page] for i in range(0, len(lines), per_page)] or [[]]
    col_w = (1 - 2 * MARGIN_X) / columns
    for k, chunk in enumerate(chunks):
        fig = _page(title + (f" ({k + 1}/{len(chunks)})" if len(chunks) > 1 else ""))
        step = 0.8 / lines_per_page
        for n, (kind, ln) in enumerate(chunk):
            x = MARGIN_X + (n // lines_per_page) * col_w
            y = 0.89 - (n % lines_per_page) * step
            if kind == "h":
                fig.text(x, y, ln, fontsize=7.5, fontweight="bold", va="top")
            else:
                fig.text(x, y, ln, fontsize=7, va="top", family="DejaVu Sans Mono" if mono else None)
        figs.append(fig)
    return figs


def cover_page(report: Report) -> Figure:
    fig = _page(f"{report.title} — {report.run_name}",
                f"baseline {report.baseline} · generated {report.generated_utc} from the run folder's files only")
    y = 0.88
    lines = [(line, i == 0 and report.estimated) for i, line in enumerate(report.headline)]
    lines[1:1] = [(w, True) for w in report.warnings]  # fairness warnings right after the energy headline
    for line, est in lines:
        text = _wrap(("⚠ " if est else "") + line, 125)
        n = text.count("\n") + 1
        fig.text(MARGIN_X, y, text, fontsize=10, va="top", fontweight="bold" if est else "normal",
                 color="#7d4e00" if est else "#1f2328",
                 bbox=dict(boxstyle="round,pad=0.5", fc="#fff8c5" if est else "#ddf4ff",
                           ec="#d4a72c" if est else "#54aeff"))
        y -= 0.03 * n + 0.035
    for f in report.findings:
        text = _wrap("• " + f, 140)
        fig.text(MARGIN_X, y, text, fontsize=9, va="top")
        y -= 0.024 * (text.count("\n") + 1) + 0.006
    y -= 0.015
    fig.text(MARGIN_X, y, "What was run", fontsize=12, fontweight="bold", va="top")
    y -= 0.035
    for k, v in report.facts:
        fig.text(MARGIN_X, y, k, fontsize=8.5, color="#59636e", fontweight="bold", va="top")
        text = _wrap(v, 110)
        fig.text(MARGIN_X + 0.25, y, text, fontsize=8.5, va="top")
        y -= 0.022 * (text.count("\n") + 1)
    fig.text(MARGIN_X, y - 0.005, report.facts_source, fontsize=6.5, color="#59636e", va="top")
    if report.problems:
        y -= 0.035
        shown = report.problems[:8]
        lines = [f"Missing or unreadable files ({len(report.problems)}), shown as '—', never as zero:"]
        lines += [f"  {p.path}: {p.message}" for p in shown]
        if len(report.problems) > len(shown):
            lines.append(f"  … and {len(report.problems) - len(shown)} more (see report.html)")
        fig.text(MARGIN_X, y, "\n".join(lines), fontsize=7, va="top", color="#59636e")
    return fig


@contextmanager
def captioned(chart: Chart) -> Iterator[Figure]:
    """The chart's figure with its caption as small print at the bottom, for one save; the
    figure is left as it was afterwards (the HTML shows the caption as text instead)."""
    fig = chart.figure
    engine = fig.get_layout_engine()
    old_rect = engine.get().get("rect", (0, 0, 1, 1)) if engine is not None else None
    text = _wrap(f"{chart.title}. {chart.caption}", int(fig.get_figwidth() * 17))
    n_lines = text.count("\n") + 1
    bottom = min(0.3, (n_lines * 6.5 * 1.35 + 8) / 72 / fig.get_figheight())
    if engine is not None:
        engine.set(rect=(0, bottom, 1, 1 - bottom))
    artist = fig.text(0.01, 0.005, text, fontsize=6.5, color="#59636e", va="bottom")
    try:
        yield fig
    finally:
        artist.remove()
        if engine is not None:
            engine.set(rect=old_rect)


def write_pdf(path: str | Path, report: Report, charts: Mapping[str, Sequence[Chart]]) -> None:
    """Write the whole report as a PDF at `path` (the caller makes it atomic)."""
    sub = f"Run folder {report.run_name}"
    pages: list[Figure | Chart] = [cover_page(report)]
    pages += table_pages(report.power_sources, sub)
    pages += table_pages(report.account, sub)
    for _env, agg, seeds in report.results:
        pages += table_pages(agg, sub)
        pages += table_pages(seeds, sub)
    for section in ("gpsup", "curves", "power"):
        pages += list(charts.get(section, []))
    pages += table_pages(report.equivalents, sub)
    pages += list(charts.get("carbon", []))
    pages += text_pages("Reproducibility appendix", [("Command line", report.command),
                                                     ("argv", " ".join(report.argv) or "—")])
    pages += table_pages(report.environment, sub)
    pages += text_pages("Configurations (config.json, flattened)",
                        [(title, "\n".join(flatten_json(text))) for title, text in report.configs]
                        + [("plan.json", "\n".join(flatten_json(report.plan_json)))], columns=2)
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
