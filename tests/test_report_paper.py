"""The report as a paper uses it: aggregates across envs (rliable), spike activity, a PDF of one
page size with real tables, consistent units and decimals per column, a quadrant whose labels
never overlap, exports (JSON, LaTeX, figures as PDF and SVG), the progress line and the
end-of-run table. Built once on a 4-env × 5-seed fixture (the real smoke run's spike columns are
tested in test_reports, which owns that session fixture)."""
from __future__ import annotations

import html as html_lib
import io
import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest

from reports.build import build_report
from reports.content import build_content
from reports.load import load_run
from reports.quadrant import gpsup_chart
from tests.report_fixtures import fixture_run_dir, make_fixture_run  # noqa: F401

ENVS4 = ("HalfCheetah-v4", "Hopper-v4", "Walker2d-v4", "Ant-v4")
METHODS4 = ("spikerl", "popsan", "dsrl", "mlp")


@pytest.fixture(scope="session")
def paper_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    run = make_fixture_run(tmp_path_factory.mktemp("paper") / "run", methods=METHODS4, envs=ENVS4,
                           seeds=(0, 1, 2, 3, 4), total_steps=30_000)
    out = tmp_path_factory.mktemp("paper_report")
    paths = build_report(run, formats="html,pdf,json,latex", out_dir=out)
    return {"run": run, "out": out, "paths": paths, "html": (out / "report.html").read_text(encoding="utf-8")}


def _tables(html: str) -> dict[str, tuple[list[str], list[list[str]]]]:
    out = {}
    for key, body in re.findall(r'<table id="([^"]+)">(.*?)</table>', html, flags=re.S):
        heads = [html_lib.unescape(h) for h in re.findall(r"<th[^>]*>(.*?)</th>", body, flags=re.S)]
        rows = [[html_lib.unescape(re.sub(r"<[^>]+>", "", c))
                 for c in re.findall(r"<td[^>]*>(.*?)</td>", r, flags=re.S)]
                for r in re.findall(r"<tr>(.*?)</tr>", body, flags=re.S)]
        out[key] = (heads, [r for r in rows if r])
    return out


# ----------------------------------------------------------------------------- aggregates across envs


@pytest.mark.slow
def test_aggregates_with_cis_profiles_and_improvement(paper_run: dict) -> None:
    data = json.loads((paper_run["out"] / "report.json").read_text(encoding="utf-8"))
    agg = data["aggregates"]
    assert agg["meaningful"] and agg["envs"] == list(ENVS4) and set(agg["runs"].values()) == {5}
    for m in METHODS4:
        for metric in ("IQM", "Median", "Mean", "Optimality gap"):
            e = agg["estimates"][m][metric]
            assert e["ci_low"] <= e["point"] <= e["ci_high"], (m, metric, e)
        prof = agg["profiles"][m]["fraction"]
        assert prof[0] == 1.0 and all(a >= b for a, b in itertools.pairwise(prof))  # a survival curve
    # the fixture's asymptotes: mlp > spikerl > popsan > dsrl, on every env
    iqm = {m: agg["estimates"][m]["IQM"]["point"] for m in METHODS4}
    assert iqm["mlp"] > iqm["popsan"] > iqm["dsrl"]
    poi = agg["probability_of_improvement"]
    assert set(poi) == {"spikerl", "dsrl", "mlp"} and poi["dsrl"]["point"] < 0.1 < 0.9 < poi["mlp"]["point"] + 0.05
    # normalisation constants are documented with their sources
    consts = {c["env"]: c for c in agg["constants"]}
    assert consts["HalfCheetah-v4"]["reference_return"] == pytest.approx(9636.95)
    html = paper_run["html"]
    section = html[html.find('<section id="aggregates">'):html.find('<section id="results">')]
    assert "Fujimoto" in section and "tools.random_returns" in section and section.count("<svg") == 2


@pytest.mark.slow
def test_aggregates_not_meaningful_is_said_not_drawn(fixture_run_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    # the default fixture: one env (and two seeds)
    content = build_content(load_run(fixture_run_dir))
    assert not content.crosstask.meaningful and "1 env" in content.crosstask.reason
    two_seeds = make_fixture_run(tmp_path / "r", envs=("HalfCheetah-v4", "Hopper-v4"), seeds=(0, 1))
    html = build_report(two_seeds, formats="html", out_dir=tmp_path / "o")[0].read_text(encoding="utf-8")
    section = html[html.find('<section id="aggregates">'):html.find('<section id="results">')]
    assert "Not meaningful here" in section and "2 complete seeds" in section and "<svg" not in section


def test_fast_probability_of_improvement_is_rliables() -> None:
    from rliable import metrics

    from reports.crosstask import probability_of_improvement

    rng = np.random.default_rng(0)
    for _ in range(40):  # small integer scores: many ties, and identical columns
        x = rng.integers(0, 3, (rng.integers(2, 6), 3)).astype(float)
        y = rng.integers(0, 3, (rng.integers(2, 6), 3)).astype(float)
        assert probability_of_improvement(x, y) == pytest.approx(metrics.probability_of_improvement(x, y), abs=1e-12)


# ----------------------------------------------------------------------------- headline, tables, units


@pytest.mark.slow
def test_headline_is_one_line_per_method_with_returns(paper_run: dict) -> None:
    content = build_content(load_run(paper_run["run"]))
    assert len(content.findings) == len(METHODS4)
    for line, m in zip(content.findings, METHODS4, strict=True):
        assert line.startswith(m) and "return" in line and all(e in line for e in ENVS4)
        assert "(energy estimated)" not in line and "complete seed(s)" not in line
    assert content.estimated and "ESTIMATED" in content.headline[0]  # said once, first
    assert dict(content.facts)["Device"] == "cpu"


@pytest.mark.slow
def test_units_and_decimals_are_consistent_per_column(paper_run: dict) -> None:
    tables = _tables(paper_run["html"])
    units: dict[str, set[str]] = {}
    for key, (heads, rows) in tables.items():
        if key in ("hyperparameters", "environment", "facts"):  # one setting per row, not a quantity per column
            continue
        for j, h in enumerate(heads):
            m = re.match(r"(Wall time|Energy|Avg power|Emissions|Time to target)\b[^(]*\(([^,)]+)", h)
            if m and "CodeCarbon" not in h:
                quantity = {"Time to target": "Wall time"}.get(m.group(1), m.group(1))
                units.setdefault(quantity, set()).add(m.group(2))
            cells = [r[j] for r in rows if j < len(r)]
            nums = [c for c in cells if re.fullmatch(r"-?[\d,]+\.?\d*", c.rstrip("†"))]
            if len(nums) > 1:
                decimals = {len(c.rstrip("†").split(".")[1]) if "." in c else 0 for c in nums}
                assert len(decimals) == 1, (h, nums)
        for row in rows:
            for c in row:
                assert not re.search(r"\d[eE][-+]?\d", c), c  # no scientific notation
    assert all(len(v) == 1 for v in units.values()), units
    iqm_col = [r[3] for r in tables["results-Hopper-v4"][1]]
    for cell in iqm_col:
        assert re.fullmatch(r"-?[\d,]+ \(-?[\d,]+–-?[\d,]+\)", cell), cell  # CI as low–high


@pytest.mark.slow
def test_spike_table_and_per_layer_chart(paper_run: dict) -> None:
    heads, rows = _tables(paper_run["html"])["spikes"]
    assert any("estimate" in h for h in heads) and len(rows) == len(METHODS4) * len(ENVS4)
    mlp = next(r for r in rows if r[0] == "mlp")
    assert mlp[3] == "—" and mlp[4] == "—" and mlp[5] == f"{17 * 256 + 256 * 256 + 256 * 6:,}"
    html = paper_run["html"]
    section = html[html.find('<section id="spikes">'):html.find('<section id="carbon">')]
    assert "0.9 pJ" in section and "4.6 pJ" in section and "Horowitz" in section
    assert section.count("<svg") == 1 and "hidden 1" in section and "encoder" in section


# ----------------------------------------------------------------------------- PDF, figures and exports


@pytest.mark.slow
def test_pdf_has_one_page_size_and_shared_table_pages(paper_run: dict) -> None:
    import pypdf

    reader = pypdf.PdfReader(str(paper_run["out"] / "report.pdf"))
    sizes = {(round(float(p.mediabox.width)), round(float(p.mediabox.height))) for p in reader.pages}
    assert sizes == {(792, 612)}, sizes  # US letter, landscape, every page
    texts = [p.extract_text() for p in reader.pages]
    shared = next(t for t in texts if "Where the energy numbers come from" in t)
    assert "What was run" in shared  # short tables share a page
    assert any("Hyperparameters per method" in t and "gamma" in t and "actor.hidden" in t for t in texts)
    assert not any(re.search(r'^\s*"?td3"?\s*[:=]', t, flags=re.M) for t in texts)  # no config dumps


@pytest.mark.slow
def test_exports_and_figure_files(paper_run: dict) -> None:
    out = paper_run["out"]
    figs = out / "figures"
    svgs = {p.stem for p in figs.glob("*.svg")}
    assert {"gpsup", "aggregates", "profiles", "spikes", "power", "equivalents"} <= svgs
    assert svgs == {p.stem for p in figs.glob("*.pdf")}
    for p in figs.glob("*.pdf"):
        assert p.read_bytes()[:5] == b"%PDF-"
    tex = (out / "report.tex").read_text(encoding="utf-8")
    assert tex.count(r"\toprule") >= len(ENVS4) + 2 and r"\begin{tabular}" in tex
    assert "Aggregates across envs" in tex and "--" in tex and "\u2013" not in tex
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert {"results-HalfCheetah-v4", "spikes", "aggregates", "hyperparameters"} <= set(data["tables"])
    assert data["activity_units"]["inference_energy_j_per_action_est"] == "J/action"


@pytest.mark.slow
def test_quadrant_labels_never_overlap_and_zoom_to_the_data(paper_run: dict) -> None:
    content = build_content(load_run(paper_run["run"]))
    chart = gpsup_chart(content.gpsup_points, content.baseline, {}, "test")
    try:
        fig = chart.figure
        ax = fig.axes[0]
        renderer = fig.canvas.get_renderer()
        labels = [t for t in ax.texts if t.get_gid() == "point-label"]
        assert len(labels) == 3 * len(ENVS4) + 1  # every point and the baseline, none left out
        from matplotlib.text import Text

        boxes = [Text.get_window_extent(t, renderer) for t in labels]  # the text boxes, not the leader lines
        for a, b in itertools.combinations(boxes, 2):
            assert not a.overlaps(b), (a, b)
        inside = ax.get_window_extent(renderer)
        assert all(inside.x0 <= b.x0 and b.x1 <= inside.x1 and inside.y0 <= b.y0 and b.y1 <= inside.y1 for b in boxes)
        pts = content.gpsup_points
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        share = max(np.log(pts["speedup"].max() / min(pts["speedup"].min(), 1)) / np.log(x1 / x0),
                    np.log(pts["powerup"].max() / min(pts["powerup"].min(), 1)) / np.log(y1 / y0))
        assert share > 0.35, f"points crowd into {share:.0%} of the axes"
    finally:
        chart.close()


@pytest.mark.slow
def test_learning_curve_and_power_legends_sit_outside_the_axes(paper_run: dict) -> None:
    from reports.charts import make_charts

    charts = make_charts(build_content(load_run(paper_run["run"])))
    try:
        assert len(charts["power"]) == 1  # one figure, one panel per env, one legend
        for chart in charts["curves"] + charts["power"]:
            fig = chart.figure
            fig.draw_without_rendering()
            assert not any(ax.get_legend() for ax in fig.axes) and len(fig.legends) == 1
            legend = fig.legends[0].get_window_extent()
            for ax in fig.axes:
                if ax.get_visible():
                    assert not legend.overlaps(ax.get_window_extent()), chart.key
    finally:
        for cs in charts.values():
            for c in cs:
                c.close()


# ----------------------------------------------------------------------------- while it runs, and after


def test_progress_line_shows_power_energy_and_sweep_eta() -> None:
    from bench.run.recorder import ProgressDisplay, SweepClock
    from spikerl.callbacks import ProgressEvent, RunInfo

    sweep = SweepClock(3, 1000)
    sweep.next_run()
    sweep.finish_run(1000, 10.0)
    sweep.next_run()
    energy = iter([100.0, 300.0])
    out = io.StringIO()
    d = ProgressDisplay("popsan Hopper-v4 s0", stream=out, force_plain=True, energy_probe=lambda: next(energy),
                        estimated_probe=lambda: True, sweep=sweep)
    d.on_train_start(RunInfo(run_dir=None, method="popsan", env_id="Hopper-v4", seed=0, total_steps=1000))
    d.on_progress(ProgressEvent(step=250, wall_s=2.0, episodes=1, train_return=5.0, sps=125.0))
    d.on_progress(ProgressEvent(step=500, wall_s=4.0, episodes=2, train_return=6.0, sps=125.0))
    lines = out.getvalue().splitlines()
    assert lines[-1].startswith("[run 2 of 3: popsan Hopper-v4 s0]")
    assert "100.0 W est." in lines[-1] and "300 J est. so far" in lines[-1]
    assert lines[-1].count("steps/s") == 1
    # 1,500 env steps done in 14 s; 1,500 left (500 of this run, one run of 1,000): 14 s
    assert "sweep ETA 0m14s" in lines[-1]


def test_ci_and_fixed_decimals_format() -> None:
    from reports.format import decimals_for, fmt_fixed, fmt_range

    assert fmt_range(4509.2, 5178.4, 0) == "4,509–5,178"
    assert fmt_range(-218.04, -32.61, 1) == "-218.0 to -32.6"  # a dash would read as a minus
    d = decimals_for([12.345, 0.5, 3.0])
    assert [fmt_fixed(v, d) for v in (12.345, 0.5, 3.0)] == ["12.3", "0.5", "3.0"]
