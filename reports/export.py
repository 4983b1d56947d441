"""Machine-readable exports of a `Report`: JSON (the whole model: every table as headers and
rows of display text, the aggregates and spike activity as numbers with their units) and LaTeX
(booktabs tables of the results, the aggregates, the spike activity and the hyperparameters,
ready to \\input into a paper; needs \\usepackage{booktabs})."""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from bench import schema
from bench.metrics.gpsup import CI_COLUMNS
from reports.model import Report, Table

_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "–": "--", "—": "---", "±": r"$\pm$", "×": r"$\times$", "†": r"$^\dagger$", "‡": r"$^\ddagger$",
                  "▼": r"$\blacktriangledown$", "▲": r"$\blacktriangle$", "µ": r"$\mu$", "₂": r"$_2$",
                  "≥": r"$\geq$", "‰": r"\textperthousand{}", "·": r"$\cdot$", "τ": r"$\tau$"}


def _table_json(t: Table | None) -> dict[str, Any] | None:
    if t is None:
        return None
    return {"key": t.key, "title": t.title, "headers": t.headers, "rows": [[c.text for c in r] for r in t.rows],
            "source": t.source, "notes": t.notes}


def _clean(v: Any) -> Any:
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, (np.floating, np.integer)):
        return _clean(v.item())
    if isinstance(v, np.ndarray):
        return [_clean(x) for x in v.tolist()]
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def _frame(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [_clean(r) for r in df.to_dict("records")] if df is not None and len(df) else []


def report_json(report: Report) -> str:
    """The report model as JSON: tables as display text, figures' data and aggregates as numbers."""
    ct = report.crosstask
    out: dict[str, Any] = {
        "title": report.title, "run_name": report.run_name, "generated_utc": report.generated_utc,
        "methods": report.methods, "baseline": report.baseline, "energy_kind": report.energy_kind,
        "headline": report.headline, "warnings": report.warnings, "method_summaries": report.findings,
        "facts": dict(report.facts), "units": report.units,
        "tables": {t.key: _table_json(t) for t in [report.power_sources, report.account, report.aggregates,
                                                     report.normalization, report.spikes, report.equivalents,
                                                     report.hyperparameters, report.environment,
                                                     *[x for _, a, s in report.results for x in (a, s)]]
                   if t is not None},
        "gpsup_points": {"rows": _frame(report.gpsup_points), "phase": report.gpsup_phase,
                         "units": {"wall_s": "s", "energy_j": "J", "gpsup_time_s": "s", "gpsup_energy_j": "J",
                                   **{c: "x" for c in ("speedup", "powerup", "greenup", *CI_COLUMNS)}},
                         "aggregation": "ratio of the seed means; 95 % percentile bootstrap over seeds "
                                        "(scipy.stats.bootstrap, 2,000 resamples, seed 0)"},
        "equivalents": {"rows": _frame(report.equivalents_data),
                        "units": {"kg_per_run": "kg CO2e", "kg_total": "kg CO2e", "car_miles": "mi",
                                  "tv_hours": "h", "household_week_pct": "%"}},
        "spike_layers": {"rows": _frame(report.spike_layers), "units": {"rate": "spikes / (neuron x timestep)"}},
        "activity_units": {f.name: f.unit for f in schema.ACTIVITY_FIELDS},
        "problems": [str(p) for p in report.problems],
        "command": report.command,
    }
    if ct is not None:
        out["aggregates"] = {
            "meaningful": ct.meaningful, "reason": ct.reason, "envs": ct.envs, "runs": ct.runs,
            "unit": "normalised score: (R - R_random) / (R_reference - R_random)",
            "constants": [{"env": e, "random_return": a, "reference_return": b} for e, a, b in ct.constants],
            "estimates": {m: {k: {"point": p, "ci_low": lo, "ci_high": hi} for k, (p, lo, hi) in d.items()}
                          for m, d in ct.estimates.items()},
            "probability_of_improvement": {m: {"point": p, "ci_low": lo, "ci_high": hi, "over": ct.baseline}
                                           for m, (p, lo, hi) in ct.improvement.items()},
            "profiles": {"tau": ct.taus, **{m: {"fraction": a, "ci_low": b, "ci_high": c}
                                              for m, (a, b, c) in ct.profiles.items()}},
            "notes": ct.notes,
        }
    return json.dumps(_clean(out), indent=2, ensure_ascii=False)


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def latex_table(t: Table) -> str:
    """One booktabs table: numbers right-aligned, the source and notes as a footnote-size caption."""
    align = "".join("r" if any(r[j].cls == "num" for r in t.rows) else "l" for j in range(len(t.headers)))
    lines = [r"\begin{table}[htbp]", r"\centering", r"\footnotesize",
             rf"\caption{{{latex_escape(t.title)}}}", rf"\label{{tab:{t.key}}}",
             r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
             rf"\begin{{tabular}}{{{align}}}", r"\toprule",
             " & ".join(latex_escape(h) for h in t.headers) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(c.text) for c in row) + r" \\" for row in t.rows]
    lines += [r"\bottomrule", r"\end{tabular}}"]
    small = [latex_escape(n) for n in t.notes] + [latex_escape(t.source)]
    lines += [r"\par\smallskip\parbox{\linewidth}{\scriptsize " + r" \\ ".join(small) + "}", r"\end{table}", ""]
    return "\n".join(lines)


def report_latex(report: Report) -> str:
    """Booktabs tables (results per env, aggregates, spikes, equivalents, hyperparameters)."""
    head = [f"% spikerl-bench report of {report.run_name}, generated {report.generated_utc}.",
            r"% Needs \usepackage{booktabs} and \usepackage{graphicx}; figures are in figures/*.pdf.", ""]
    tables = [t for _, agg, _ in report.results for t in (agg,)]
    tables += [t for t in (report.aggregates, report.spikes, report.equivalents, report.account,
                           report.hyperparameters) if t is not None and t.rows]
    return "\n".join(head) + "\n".join(latex_table(t) for t in tables)
