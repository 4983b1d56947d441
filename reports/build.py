"""Build the report of a run folder: RUN/report.html, report.pdf, report.json, report.tex and
RUN/figures/ (every figure as .svg and .pdf).

Everything is rendered in memory (the PDF into a temporary file beside its target) before
anything is replaced, and every file is written as a temporary file and then `os.replace`d,
so a failed build leaves the previous report untouched and a reader never sees half a file.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

from bench.run.store import FILE_MODE
from reports.charts import make_charts
from reports.content import build_content
from reports.export import report_json, report_latex
from reports.figure import Chart
from reports.html import render_html
from reports.load import load_run
from reports.model import ReportError
from reports.pdf import write_pdf

FORMATS = ("html", "pdf", "json", "latex")
DEFAULT_FORMATS = ("html", "pdf")


def parse_formats(formats: str | Iterable[str]) -> tuple[str, ...]:
    """'html,pdf' or ['html'] -> ('html', 'pdf'); raises ReportError on an unknown or empty list."""
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    out = tuple(dict.fromkeys(str(f).strip().lower() for f in items if str(f).strip()))
    bad = [f for f in out if f not in FORMATS]
    if bad or not out:
        raise ReportError(f"unknown report format {', '.join(bad) or '(none given)'}; "
                          f"choose from {', '.join(FORMATS)} (comma-separated)")
    return out


def _temp_beside(path: Path) -> Path:
    """An empty temporary file next to `path`, with the permissions a plain open() would give."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(name, FILE_MODE)
    return Path(name)


def _stage(path: Path, data: str | bytes) -> Path:
    tmp = _temp_beside(path)
    if isinstance(data, str):
        tmp.write_text(data, encoding="utf-8")
    else:
        tmp.write_bytes(data)
    return tmp


def build_report(run_dir: str | Path, formats: Sequence[str] | str = DEFAULT_FORMATS,
                 baseline: str | None = None, out_dir: str | Path | None = None,
                 gpsup_phase: str = "train") -> list[Path]:
    """Write the report of `run_dir` and return the paths written.

    Writes OUT/report.html, report.pdf, report.json and/or report.tex (format 'latex'), and
    OUT/figures/<key>.svg and <key>.pdf, where OUT is `out_dir` or the run folder. (Each figure is
    also a vector page of report.pdf.)
    Raises reports.load.NotARunFolder if `run_dir` is not a run folder and
    reports.model.ReportError for an unknown format or baseline, before writing anything.
    """
    fmts = parse_formats(formats)
    run = load_run(run_dir)
    report = build_content(run, baseline, gpsup_phase)
    out = Path(out_dir) if out_dir is not None else Path(run_dir)
    if out.exists() and not out.is_dir():
        raise ReportError(f"{out}: exists and is not a folder")
    charts = make_charts(report)
    flat: list[Chart] = [c for cs in charts.values() for c in cs]
    staged: list[tuple[Path, Path]] = []
    try:
        html = render_html(report, charts) if "html" in fmts else None
        svgs = {c.key: c.svg_file() for c in flat}
        figures = out / "figures"
        figures.mkdir(parents=True, exist_ok=True)
        for key, text in svgs.items():
            staged.append((_stage(figures / f"{key}.svg", text), figures / f"{key}.svg"))
        for c in flat:  # for LaTeX: the figure at its natural size, vector
            tmp = _temp_beside(figures / f"{c.key}.pdf")
            staged.append((tmp, figures / f"{c.key}.pdf"))
            c.save_pdf(str(tmp))
        if "json" in fmts:
            staged.append((_stage(out / "report.json", report_json(report)), out / "report.json"))
        if "latex" in fmts:
            staged.append((_stage(out / "report.tex", report_latex(report)), out / "report.tex"))
        if "pdf" in fmts:
            target = out / "report.pdf"
            tmp = _temp_beside(target)
            staged.append((tmp, target))
            write_pdf(tmp, report, charts)
        if html is not None:
            staged.append((_stage(out / "report.html", html), out / "report.html"))
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    finally:
        for c in flat:
            c.close()
    written = []
    for tmp, target in staged:
        os.replace(tmp, target)
        written.append(target)
    order = {"report.html": 0, "report.pdf": 1, "report.json": 2, "report.tex": 3}
    return sorted(written, key=lambda p: (order.get(p.name, 2), str(p)))


def report_after_run(run_dir: str | Path, plan: dict) -> list[Path]:
    """`spikerl-bench run` calls this (entry point `spikerl_bench.run_finished`) when its runs end."""
    paths = build_report(run_dir)  # the plan's baseline when it was run, else a documented fallback
    for p in paths:
        if p.name.startswith("report."):
            print(f"report: {p}", flush=True)
    return paths
