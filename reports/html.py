"""Render a `Report` and its charts into one self-contained HTML page (Jinja2, autoescape on).

Figures are inline SVG, styles are inline CSS, and the page needs no JavaScript and fetches
nothing. Only the SVG produced by `reports.charts` is marked safe; every string read from the
run folder (method names, configs, command line) goes through autoescape.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import jinja2
from markupsafe import Markup

from reports.figure import Chart
from reports.model import Report

TEMPLATES = Path(__file__).parent / "templates"
EXTERNAL = re.compile(r"""<link\b|<script\b|<iframe\b|<img\b|<object\b|<embed\b|@import""",
                      re.I)
"""Markup that would fetch or run something. Escaped user text can never match it (its '<'
is '&lt;'), so a match means the template or a figure is wrong."""


@dataclass(frozen=True)
class InlineFigure:
    key: str
    title: str
    caption: str
    svg: Markup


def environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=False,
                              lstrip_blocks=False, keep_trailing_newline=True)


def render_html(report: Report, charts: Mapping[str, Sequence[Chart]]) -> str:
    """The report page as text. Raises ValueError if its markup would fetch or run anything."""
    figures = {section: [InlineFigure(c.key, c.title, c.caption, Markup(c.svg())) for c in cs]
               for section, cs in charts.items()}
    for section in ("aggregates", "gpsup", "curves", "power", "spikes", "carbon"):
        figures.setdefault(section, [])
    html = environment().get_template("report.html.j2").render(r=report, figures=figures)
    found = EXTERNAL.search(html)
    if found:
        start = max(0, found.start() - 60)
        raise ValueError(f"report HTML would reference an external resource near: "
                         f"{html[start:found.end() + 60]!r}")
    return html
