"""A comparison rendered: a terminal table, a markdown summary, and github-action-benchmark JSON.

All three are made from one Report (bench.compare.gate); none computes anything of its own.
"""
from __future__ import annotations

import math
from typing import Any

from bench.compare.gate import Check, Report, Row
from bench.compare.load import Side
from bench.compare.rules import Better, Verdict

GITHUB_BIGGER = "customBiggerIsBetter"
GITHUB_SMALLER = "customSmallerIsBetter"


def _num(v: float) -> str:
    if not math.isfinite(v):
        return "—"
    return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"


def _signed(v: float, relative: bool) -> str:
    if not math.isfinite(v):
        return "—"
    if relative:
        return f"{v * 100:+.1f}%" if abs(v) >= 5e-4 else "+0.0%"
    return f"{v:+.4g}"


def change_text(c: Check) -> str:
    return _signed(c.change, c.relative)


def ci_text(c: Check) -> str:
    ci = c.change_ci
    if ci is None:
        return "no noise estimate"
    return f"[{_signed(ci[0], c.relative)}, {_signed(ci[1], c.relative)}]"


def verdict_text(row: Row, c: Check) -> str:
    if not row.gated:
        return "(per seed)"
    if c.rule is None:
        return "not gated"
    text = f"{c.verdict} ({c.rule})"
    if c.verdict is Verdict.REGRESSION and c.change_ci is None:
        text += ", threshold only"
    return text


def header(report: Report) -> tuple[str, ...]:
    return ("run", "metric", "BASE", "NEW", "change", f"{report.confidence:.0%} CI", "noise from", "verdict")


def table_rows(report: Report, gated: bool | None = None) -> list[tuple[str, ...]]:
    """Cells of every row and metric (only the gated rows, or only the others, if asked)."""
    out: list[tuple[str, ...]] = []
    for row in report.rows:
        if gated is not None and row.gated is not gated:
            continue
        for c in row.checks:
            e = c.estimate
            if e is None:
                continue
            out.append((row.label, c.metric.name + (f" ({c.metric.unit})" if c.metric.unit != c.metric.name else ""),
                        _num(e.base), _num(e.new),
                        f"{change_text(c)} {c.mark}".strip(), ci_text(c), f"{e.noise} ({e.samples})",
                        verdict_text(row, c)))
    return out


def gpsup_rows(report: Report) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for g in report.gpsup:
        v = g.value
        if v is None:
            out.append((g.method, g.env, str(g.n_seeds), "—", "—", "—", "—"))
        else:
            out.append((g.method, g.env, str(g.n_seeds), f"{v.speedup:.3f}", f"{v.powerup:.3f}", f"{v.greenup:.3f}",
                        f"{v.category} ({'green' if v.green else 'red'})"))
    return out


GPSUP_HEADER = ("method", "env", "seeds", "speedup", "powerup", "greenup", "category")


def _describe(side: Side) -> str:
    about = side.about
    bits = [f"{side.kind} {side.path}"]
    if about.get("git_commit"):
        bits.append(f"commit {str(about['git_commit'])[:12]}{' (dirty)' if about.get('git_dirty') else ''}")
    if about.get("profile"):
        bits.append(f"profile {about['profile']}")
    if about.get("created_utc"):
        bits.append(str(about["created_utc"]))
    return ", ".join(bits)


def verdict_lines(report: Report) -> list[str]:
    lines = []
    if report.config_diffs:
        lines.append("configurations differ (compared anyway, --allow-config-diff):")
        lines += [f"  {d}" for d in report.config_diffs]
    if report.failed_runs:
        lines.append("runs that NEW did not complete:")
        lines += [f"  {f}" for f in report.failed_runs]
    if report.too_noisy:
        lines.append("too noisy to decide (beyond the threshold, but not beyond the noise):")
        lines += [f"  {r.label}: {c.metric.name} {change_text(c)} {ci_text(c)} ({c.rule})"
                  + (f": {c.reason}" if c.reason else "") for r, c in report.too_noisy]
    if report.notes:
        lines.append("notes:")
        lines += [f"  {n}" for n in report.notes]
    rules = ", ".join(map(str, report.rules)) or "none (report only)"
    if report.regressions:
        lines.append("regressions:")
        lines += [f"  {r.label}: {c.metric.name} {change_text(c)} {ci_text(c)} beyond {c.rule}"
                  for r, c in report.regressions]
    if report.exit_code:
        what = report.regressed_metrics + (["incomplete runs"] if report.failed_runs else [])
        lines.append(f"REGRESSION in {', '.join(what)} (rules: {rules}; {report.confidence:.0%} intervals)")
    else:
        lines.append(f"no regression (rules: {rules}; {report.confidence:.0%} intervals)")
    return lines


def _aligned(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
    return [fmt(header), fmt(tuple("-" * w for w in widths)), *map(fmt, rows)]


def terminal(report: Report) -> str:
    lines = [f"BASE: {_describe(report.base)}", f"NEW:  {_describe(report.new)}", ""]
    lines += _aligned(header(report), table_rows(report))
    lines += ["", f"GPS-UP of NEW against BASE ({_phase_words(report)}; ratio of the seed means)"]
    lines += _aligned(GPSUP_HEADER, gpsup_rows(report))
    lines += ["", *verdict_lines(report)]
    return "\n".join(lines) + "\n"


def _phase_words(report: Report) -> str:
    return ("training phase: train_wall_s and train_energy_j" if report.gpsup_phase == "train"
            else "whole runs: wall_s and energy_j")


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _md_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    return ["| " + " | ".join(map(_md_cell, header)) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(map(_md_cell, r)) + " |" for r in rows)]


def markdown(report: Report) -> str:
    status = "❌ regression" if report.exit_code else "✅ no regression"
    lines = [f"### spikerl-bench compare: {status}", "",
             f"- **BASE**: {_md_cell(_describe(report.base))}", f"- **NEW**: {_md_cell(_describe(report.new))}",
             "", "▲ better, ▼ worse than BASE beyond the noise; the gate decides per method × env "
             "(seeds pooled as repeats).", ""]
    lines += _md_table(header(report), table_rows(report, gated=True))
    per_seed = table_rows(report, gated=False)
    if per_seed:
        lines += ["", "<details><summary>per seed</summary>", ""]
        lines += _md_table(header(report), per_seed)
        lines += ["", "</details>"]
    lines += ["", f"**GPS-UP of NEW against BASE** ({_phase_words(report)}; ratio of the seed means)", ""]
    lines += _md_table(GPSUP_HEADER, gpsup_rows(report))
    lines += ["", "```", *verdict_lines(report), "```", ""]
    return "\n".join(lines)


def benchmark_json(report: Report) -> dict[str, list[dict[str, Any]]]:
    """NEW's values in github-action-benchmark's custom format, one list per direction: each
    list is what its `customBiggerIsBetter` / `customSmallerIsBetter` tool reads."""
    out: dict[str, list[dict[str, Any]]] = {GITHUB_BIGGER: [], GITHUB_SMALLER: []}
    for row in report.rows:
        if not row.gated:
            continue
        for c in row.checks:
            e = c.estimate
            if e is None or not math.isfinite(e.new):
                continue
            entry: dict[str, Any] = {"name": f"{row.method} {row.env} {c.metric.label}", "unit": c.metric.unit,
                                     "value": e.new}
            if e.new_ci is not None:
                entry["range"] = f"± {(e.new_ci[1] - e.new_ci[0]) / 2:.4g}"
            entry["extra"] = (f"BASE {_num(e.base)}; change {change_text(c)} {ci_text(c)}; "
                              f"{verdict_text(row, c)}; noise from {e.noise} ({e.samples})")
            out[GITHUB_BIGGER if c.metric.better is Better.HIGHER else GITHUB_SMALLER].append(entry)
    return out
