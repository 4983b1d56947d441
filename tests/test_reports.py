"""Report tests: HTML and PDF contents, escaping, self-containment, partial runs, the CLI and
a real headless-browser rendering.

Most tests read `run_dir`, which runs them twice: on a REAL smoke run made by `spikerl-bench run`
(two methods, two seeds, tiny budget) and on the synthetic test fixture of tests/report_fixtures.py
(which also holds interrupted and running seeds). SPIKERL_REPORT_RUN_DIR names another existing run
folder to test instead. Tests that need something only the fixture has (an interrupted and a
running seed, injected strings) build their own folder with `make_fixture_run`.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reports import stats
from reports.build import build_report
from reports.cli import main as report_main
from reports.format import decimals_for, fmt_fixed
from reports.load import NotARunFolder, load_run
from reports.model import ReportError
from reports.quadrant import gpsup_chart
from tests.report_fixtures import DEFAULT_STATUSES, fixture_run_dir, make_fixture_run  # noqa: F401

CHROMIUM = Path("/usr/bin/chromium")
SECTIONS = ["run", "results", "gpsup", "curves", "power", "carbon", "appendix"]
FIGURE_SECTIONS = ["gpsup", "curves", "power", "carbon"]
INJECT = "<script>alert(1)</script>"
INJECT_DIR = "<img src=x onerror=alert(1)>"  # a method folder name can hold no '/'


@pytest.fixture(scope="session")
def real_smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run folder: `spikerl-bench run` end to end with every meter, on a tiny budget."""
    import sys

    work = tmp_path_factory.mktemp("smoke")
    run = work / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", "--profile", "smoke", "--methods", "popsan,mlp", "--seeds", "0,1",
         "--total-steps", "800", "--set", "start_steps=300", "--set", "update_after=300", "--set", "eval_every=400",
         "--set", "checkpoint_every=400", "--set", "critic_hidden=64,64", "--set", "actor.hidden=64,64",
         "--out", str(run), "--plain"], cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    (work / "output.txt").write_text(proc.stdout, encoding="utf-8")  # stdout and stderr, in order
    return run


@pytest.fixture(scope="session", params=[pytest.param("real-smoke-run", marks=pytest.mark.slow),
                                          pytest.param("fixture", marks=pytest.mark.slow)])  # full report builds
def run_dir(request: pytest.FixtureRequest) -> Path:
    """The run folder under test; SPIKERL_REPORT_RUN_DIR names an existing one to test instead
    (it is only read: reports go to tmp)."""
    other = os.environ.get("SPIKERL_REPORT_RUN_DIR")
    if other:
        return Path(other)
    name = "real_smoke_run" if request.param == "real-smoke-run" else "fixture_run_dir"
    return request.getfixturevalue(name)


@pytest.fixture(scope="session")
def built(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Build the report once (HTML + PDF) into a copy-free output folder."""
    out = tmp_path_factory.mktemp("report")
    paths = build_report(run_dir, out_dir=out)
    html = (out / "report.html").read_text(encoding="utf-8")
    return {"out": out, "paths": paths, "html": html, "pdf": out / "report.pdf"}


def _section(html: str, sid: str) -> str:
    m = re.search(rf'<section id="{sid}">(.*?)</section>', html, flags=re.S)
    assert m, f"section {sid} missing"
    return m.group(1)


def _results(run_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(run_dir.glob("*/*/seed*/result.json"))]


# ----------------------------------------------------------------------------- contents


def test_every_section_present_in_order_with_figures(built: dict) -> None:
    html = built["html"]
    positions = [html.find(f'<section id="{s}">') for s in SECTIONS]
    assert all(p > 0 for p in positions), dict(zip(SECTIONS, positions, strict=True))
    assert positions == sorted(positions), "sections out of order"
    assert html.find('id="headline"') < positions[0], "the headline comes before the sections"
    for sid in FIGURE_SECTIONS:
        body = _section(html, sid)
        svgs = re.findall(r"<svg\b.*?</svg>", body, flags=re.S)
        assert svgs, f"no figure in {sid}"
        for svg in svgs:
            assert len(re.findall(r"<path\b", svg)) >= 5, f"empty figure in {sid}"
        assert 'class="source"' in body, f"{sid}: no source line"
    results = _section(html, "results")
    for col in ("Return mean ± std", "Return IQM (95 % CI)", "Wall time", "Energy", "Avg power",
                "Emissions", "Speedup", "Powerup", "Greenup", "Category", "Energy to target"):
        assert col in results, col
    carbon = _section(html, "carbon")
    for col in ("household-week", "Gasoline car", "LCD TV"):
        assert col in carbon, col
    appendix = _section(html, "appendix")
    assert "Command line" in appendix and "git_commit" in appendix and "config.json" in appendix


def test_reproducibility_appendix_traces_run_folder(built: dict, run_dir: Path) -> None:
    import html as html_lib

    appendix = html_lib.unescape(_section(built["html"], "appendix"))
    plan = json.loads((run_dir / "plan.json").read_text())
    env = json.loads((run_dir / "environment.json").read_text())
    assert plan["command"] in appendix
    assert "git_commit" in appendix
    if env.get("git_commit"):
        assert str(env["git_commit"]) in appendix
    for method in plan["methods"]:
        assert f"{method} / " in appendix  # one config block per method × env


def test_every_table_and_figure_names_its_source(built: dict) -> None:
    html = built["html"]
    n_tables = len(re.findall(r"<table\b", html))
    n_figures = len(re.findall(r"<figure\b", html))
    n_sources = len(re.findall(r'class="source"', html))
    assert n_sources >= n_tables + n_figures
    assert "result.json" in html and "evals.csv" in html and "power.csv" in html


def test_svgs_have_viewbox_and_nonzero_size(built: dict) -> None:
    tags = re.findall(r"<svg\b[^>]*>", built["html"])
    assert len(tags) >= 4
    for tag in tags:
        vb = re.search(r'viewBox="([^"]+)"', tag)
        w = re.search(r'\bwidth="([\d.]+)(pt|px)?"', tag)
        h = re.search(r'\bheight="([\d.]+)(pt|px)?"', tag)
        assert vb and w and h, tag
        x0, y0, vw, vh = map(float, vb.group(1).split())
        assert vw > 50 and vh > 50 and float(w.group(1)) > 50 and float(h.group(1)) > 50, tag


def test_figure_files_written(built: dict) -> None:
    import xml.etree.ElementTree as ET

    figs = sorted((built["out"] / "figures").glob("*.svg"))
    assert {"gpsup.svg", "equivalents.svg"} <= {f.name for f in figs}
    assert any(f.name.startswith("curves-") for f in figs) and any(f.name.startswith("power") for f in figs)
    for f in figs:
        assert ET.parse(f).getroot().tag.endswith("svg")
    assert not list(built["out"].glob(".*.tmp")), "temporary files left behind"


def test_html_is_self_contained(built: dict) -> None:
    low = built["html"].lower()
    for bad in ("http:", "https:", "//cdn", "<link", "<script", " src=", "@import", "url(http"):
        assert bad not in low, bad
    assert "<style>" in low


def test_estimated_energy_is_labelled(built: dict, run_dir: Path) -> None:
    html = built["html"]
    head = html[:html.find('<section id="run">')]
    estimated = any(r.get("estimated") for r in _results(run_dir))
    if not estimated:
        assert "ESTIMATED" not in head
        return
    assert "Energy is ESTIMATED (no NVML/RAPL)" in head
    results = _section(html, "results")
    assert re.search(r"Energy \([^)]*estimated\)", results)
    assert re.search(r"Avg power \([^)]*estimated\)", results)
    assert re.search(r"Greenup \([^)]*estimated\)", results)
    assert "estimated" in _section(html, "carbon")
    # The energy axis of the learning curves says so too (SVG text is kept as text).
    assert re.search(r"Energy \([^)]*estimated\)", _section(html, "curves"))


def test_pdf_opens_and_holds_the_tables(built: dict, run_dir: Path) -> None:
    import pypdf

    reader = pypdf.PdfReader(str(built["pdf"]))
    assert len(reader.pages) >= 8
    text = "\n".join(page.extract_text() for page in reader.pages)
    plan = json.loads((run_dir / "plan.json").read_text())
    for method in plan["methods"]:
        assert method in text
    for env in plan["envs"]:
        assert f"Results on {env}" in text
    folder = load_run(run_dir)
    for env in folder.envs:  # the per-seed table: one number of decimals per column
        on_env = folder.seeds[folder.seeds["env"] == env]
        d = decimals_for(list(on_env["final_return_mean"]) + list(on_env["best_return_mean"]), sig=4, most=2)
        for r in _results(run_dir):
            if r["env"] == env:
                assert fmt_fixed(r["final_return_mean"], d) in text, r["final_return_mean"]
    for word in ("Speedup", "Greenup", "Carbon equivalents", "Reproducibility appendix", "Return IQM"):
        assert word in text
    if any(r.get("estimated") for r in _results(run_dir)):
        assert "ESTIMATED" in text


# ----------------------------------------------------------------------------- partial runs and statuses


def test_partial_run_statuses_shown_not_zeros(built: dict, run_dir: Path) -> None:
    html = built["html"]
    folder = load_run(run_dir)
    assert len(folder.seeds) == len(list(run_dir.glob("*/*/seed*")))
    for rec in folder.seeds.to_dict("records"):
        assert rec["status"] in html
    for status in set(folder.seeds["status"]):
        assert re.search(rf'class="badge status-{status}">{status}<', html), status
    for env in folder.envs:
        seeds = re.search(rf'<table id="seeds-{re.escape(env)}">(.*?)</table>', html, flags=re.S).group(1)
        rows = re.findall(r"<tr>(.*?)</tr>", seeds, flags=re.S)
        for row in rows:
            if ">running<" in row:  # no result.json: power and emissions unknown, so a dash
                cells = re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)
                assert "—" in cells and "0" not in cells and "still running" in row
            if ">interrupted<" in row:
                assert "stopped at" in row
    if (folder.seeds["status"] != "complete").any():
        assert "Partial run" in html


@pytest.mark.slow
def test_corrupt_and_missing_files_are_named(tmp_path: Path) -> None:
    run = make_fixture_run(tmp_path / "run", statuses=DEFAULT_STATUSES)
    seed = run / "spikerl" / "HalfCheetah-v4" / "seed0"
    (seed / "evals.csv").write_bytes(b"\x00\xff garbage,,,\n\"unterminated")
    (seed / "result.json").write_text('{"status": "compl', encoding="utf-8")
    (seed / "power.csv").unlink()
    (run / "environment.json").unlink()
    folder = load_run(run)
    problems = {p.path: p.message for p in folder.problems}
    assert "environment.json" in problems
    assert "spikerl/HalfCheetah-v4/seed0/result.json" in problems
    assert problems["spikerl/HalfCheetah-v4/seed0/power.csv"] == "missing"
    assert "spikerl/HalfCheetah-v4/seed0/evals.csv" in problems
    html = build_report(run, formats="html")[0].read_text(encoding="utf-8")
    assert "Missing or unreadable files" in html
    assert "spikerl/HalfCheetah-v4/seed0/power.csv" in html


def test_not_a_run_folder(tmp_path: Path) -> None:
    with pytest.raises(NotARunFolder):
        load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotARunFolder, match="not a run folder"):
        load_run(tmp_path / "empty")


# ----------------------------------------------------------------------------- escaping


@pytest.mark.slow
def test_injected_markup_comes_out_escaped_and_failed_seeds_shown(tmp_path: Path) -> None:
    run = make_fixture_run(tmp_path / "run", methods=(INJECT_DIR, "popsan"), seeds=(0, 1),
                           statuses={(INJECT_DIR, 1): "failed"},
                           command=f"spikerl-bench run --tag '{INJECT}'",
                           config_extra={"note": INJECT})
    plan = json.loads((run / "plan.json").read_text())
    plan["methods"].append(INJECT)  # a method name that reaches the report through summary.csv
    (run / "plan.json").write_text(json.dumps(plan))
    summary = pd.read_csv(run / "summary.csv")
    extra = summary[(summary["method"] == "popsan") & (summary["seed"] == 0)].copy()
    extra["method"] = INJECT
    extra["status"] = "failed"
    extra[["wall_s", "energy_j", "final_return_mean", "emissions_kg", "avg_power_w"]] = np.nan
    pd.concat([summary, extra]).to_csv(run / "summary.csv", index=False)
    html = build_report(run, formats="html")[0].read_text(encoding="utf-8")
    low = html.lower()
    assert "<script" not in low and "<img" not in low
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 3  # method, config, command
    assert INJECT_DIR.replace("<", "&lt;").replace(">", "&gt;") in _section(html, "gpsup")  # SVG text
    # Failed seeds show as failed with their error; the summary-only method's aggregate (no
    # complete seed) is dashes, never zeros, and its missing folder is named.
    assert re.search(r'class="badge status-failed">failed<', html)
    assert "CUDA out of memory (fixture)" in html
    agg = re.search(r'<table id="results-HalfCheetah-v4">(.*?)</table>', html, flags=re.S).group(1)
    row = next(r for r in re.findall(r"<tr>(.*?)</tr>", agg, flags=re.S) if "&lt;script&gt;" in r)
    assert "0/1 · 1 failed" in row and ">0<" not in row and row.count("—") >= 8
    assert "seed folder missing: values from summary.csv" in html


# ----------------------------------------------------------------------------- statistics and GPS-UP chart


def test_stats_iqm_and_bootstrap() -> None:
    from scipy.stats import trim_mean

    one = stats.describe([5.0])
    assert one.n == 1 and one.mean == 5.0 and not one.has_ci and "no CI" in one.note
    x = [1.0, 2.0, 3.0, 4.0, 100.0, 3.5, 2.5, 1.5]
    s = stats.describe(x)
    assert s.iqm == pytest.approx(trim_mean(x, 0.25)) and s.iqm < s.mean
    assert s.has_ci and s.ci_low <= s.iqm <= s.ci_high
    assert stats.describe([float("nan"), 2.0]).n == 1
    assert stats.describe([]).n == 0


def test_curve_over_seeds_aligns_steps() -> None:
    a = pd.DataFrame({"step": [0, 10, 20], "wall_s": [0, 1, 2], "return_mean": [0.0, 1.0, 2.0]})
    b = pd.DataFrame({"step": [0, 10], "wall_s": [0, 3], "return_mean": [2.0, 3.0]})
    cur = stats.curve_over_seeds([a, b], "wall_s")
    assert list(cur["n"]) == [2, 2, 1]
    assert list(cur["y_mean"]) == [1.0, 2.0, 2.0] and list(cur["x_mean"]) == [0.0, 2.0, 2.0]


def test_gpsup_chart_error_bars_and_limits() -> None:
    points = pd.DataFrame([
        dict(method="popsan", env="E", speedup=1.0, powerup=1.0, greenup=1.0, gpsup_category=np.nan,
             s_lo=1.0, s_hi=1.0, p_lo=1.0, p_hi=1.0, n_seeds=3, estimated=False),
        dict(method="fast", env="E", speedup=6.0, powerup=1.5, greenup=4.0, gpsup_category=3,
             s_lo=5.0, s_hi=7.0, p_lo=1.4, p_hi=1.6, n_seeds=3, estimated=False),
        dict(method="slow", env="E", speedup=0.5, powerup=0.9, greenup=0.55, gpsup_category=6,
             s_lo=0.5, s_hi=0.5, p_lo=0.9, p_hi=0.9, n_seeds=1, estimated=False),
    ])
    chart = gpsup_chart(points, "popsan", {"fast": "#1f77b4", "slow": "#ff7f0e"}, "test")
    try:
        ax = chart.figure.axes[0]
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        (lo, hi), (ylo, yhi) = ax.get_xlim(), ax.get_ylim()
        assert lo < 0.5 and hi > 7.0 * 1.1 and ylo < 0.9 and yhi > 1.6
        assert np.log(hi / lo) == pytest.approx(np.log(yhi / ylo))  # equal spans: the diagonal stays at 45°
        caps = [c for c in ax.containers if hasattr(c, "has_xerr")]
        assert any(c.has_xerr and c.has_yerr for c in caps), "seed spread drawn as error bars"
        texts = {t.get_text() for t in ax.texts}
        assert len({str(k) for k in range(1, 9)} & texts) >= 2, "category numbers drawn"
        assert any("GPS-UP categories" in t for t in texts)
        svg = chart.svg()
        assert svg.startswith("<svg") and "http" not in svg and 'viewBox="' in svg
    finally:
        chart.close()


# ----------------------------------------------------------------------------- CLI and atomic writes


def test_cli_errors_exit_2_and_overwrite_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert report_main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("spikerl-bench report: error:") and "\n" not in err
    run = make_fixture_run(tmp_path / "run", seeds=(0,))
    (run / "report.html").write_text("OLD", encoding="utf-8")
    assert report_main(["report", str(run), "--format", "html,docx"]) == 2
    assert "docx" in capsys.readouterr().err
    assert report_main(["report", str(run), "--baseline", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert (run / "report.html").read_text(encoding="utf-8") == "OLD"
    assert not (run / "figures").exists()


@pytest.mark.slow
def test_cli_writes_html_to_out(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = make_fixture_run(tmp_path / "run", seeds=(0,))
    out = tmp_path / "out"
    assert report_main(["report", str(run), "--format", "html", "--out", str(out),
                        "--baseline", "spikerl"]) == 0
    assert (out / "report.html").is_file() and not (out / "report.pdf").exists()
    assert not (run / "report.html").exists()
    assert str(out / "report.html") in capsys.readouterr().out
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "spikerl (baseline)" in html


@pytest.mark.slow
def test_failed_build_leaves_previous_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_fixture_run(tmp_path / "run", methods=("popsan",), seeds=(0,))
    (run / "report.html").write_text("OLD", encoding="utf-8")

    def boom(*_a, **_k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("reports.build.write_pdf", boom)
    with pytest.raises(RuntimeError):
        build_report(run)
    assert (run / "report.html").read_text(encoding="utf-8") == "OLD"
    assert not list(run.rglob("*.tmp"))


def test_unknown_baseline_is_a_report_error(run_dir: Path) -> None:
    with pytest.raises(ReportError):
        build_report(run_dir, baseline="no-such-method", out_dir=run_dir / "never")


# ----------------------------------------------------------------------------- real browser


def test_renders_in_headless_chromium(built: dict, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (Debian package 'chromium'); "
                    "the browser rendering check needs it")
    from PIL import Image

    png = tmp_path / "report.png"
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--no-first-run",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}", "--window-size=1280,4000",
           (built["out"] / "report.html").as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert png.is_file(), f"chromium wrote no screenshot (rc {proc.returncode}): {proc.stderr[-2000:]}"
    img = np.asarray(Image.open(png).convert("RGB"))
    assert img.shape[:2] == (4000, 1280)
    non_white = (img.min(axis=2) < 245).mean()
    colours = len(np.unique(img.reshape(-1, 3)[::7], axis=0))
    assert non_white > 0.05, f"screenshot nearly blank ({non_white:.1%} non-white)"
    assert colours > 200, f"only {colours} distinct colours"

    def near(rgb: tuple[int, int, int]) -> int:
        return int((np.abs(img.astype(int) - rgb).sum(axis=2) < 12).sum())

    # The GPS-UP half-planes and the estimated-energy banner are visibly painted.
    assert near((0xDF, 0xF3, 0xE4)) > 5000 and near((0xFB, 0xE3, 0xE1)) > 5000
    if "Energy is ESTIMATED" in built["html"]:
        assert near((0xFF, 0xF8, 0xC5)) > 5000


@pytest.mark.slow
def test_real_run_accounting_is_consistent(real_smoke_run: Path) -> None:
    """summary.csv of a real run: energy = power x time, greenup = speedup / powerup, the
    baseline at exactly (1, 1, 1), estimates labelled, and CSV energy columns cumulative."""
    summary = pd.read_csv(real_smoke_run / "summary.csv")
    assert (summary["status"] == "complete").all() and len(summary) == 4
    np.testing.assert_allclose(summary["energy_j"], summary["avg_power_w"] * summary["wall_s"], rtol=1e-9)
    np.testing.assert_allclose(summary["greenup"], summary["speedup"] / summary["powerup"], rtol=1e-9)
    base = summary[summary["method"] == "popsan"]
    assert (base[["speedup", "powerup", "greenup"]] == 1.0).all().all()
    assert summary["estimated"].all() and (summary["energy_source"] == "estimate").all()
    parts = summary["train_energy_j"] + summary["eval_energy_j"] + summary["other_energy_j"]
    np.testing.assert_allclose(parts, summary["energy_j"], rtol=1e-9)
    np.testing.assert_allclose(summary["train_wall_s"] + summary["eval_wall_s"] + summary["other_wall_s"],
                               summary["wall_s"], rtol=1e-9)
    for _, row in summary.iterrows():
        seed = real_smoke_run / row["method"] / row["env"] / f"seed{row['seed']}"
        for name in ("progress.csv", "evals.csv"):
            energy = pd.read_csv(seed / name)["energy_j"]
            assert energy.notna().all() and (energy.diff().dropna() >= 0).all(), f"{name} energy not cumulative"
        power = pd.read_csv(seed / "power.csv")
        assert {"t_s", "device", "power_w", "energy_j", "source", "estimated"} <= set(power.columns)
        assert (power["source"] == "estimate").all() and power["estimated"].all()


@pytest.mark.slow
def test_real_run_has_one_energy_account(real_smoke_run: Path):
    """Every row: emissions follow from energy_j and the grid intensity, energy_j is the sum of its
    components, CodeCarbon's figures sit beside ours, and the spiking method ran a native engine."""
    import csv

    with (real_smoke_run / "summary.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows
    for col in ("ram_energy_j", "carbon_intensity_g_per_kwh", "codecarbon_emissions_kg", "foreign_cpu_share",
                "engine", "cpu_power_model", "ram_power_model"):
        assert col in rows[0], col

    def num(r: dict, col: str) -> float | None:
        return float(r[col]) if r[col] not in ("", None) else None

    for r in rows:
        energy, intensity = num(r, "energy_j"), num(r, "carbon_intensity_g_per_kwh")
        assert energy and energy > 0 and intensity and intensity > 0
        assert num(r, "emissions_kg") == pytest.approx(energy / 3.6e6 * intensity / 1000, rel=1e-9)
        parts = [num(r, c) for c in ("gpu_energy_j", "cpu_energy_j", "ram_energy_j")]
        assert parts[0] is None  # no GPU on this machine: empty, never 0
        assert energy == pytest.approx(sum(p for p in parts if p is not None), rel=1e-9)
        assert r["ram_source"] in ("rapl", "estimate") and r["cpu_source"] in ("rapl", "estimate")
        # CodeCarbon's own figures use the same intensity: their ratio is ours
        cc_kg, cc_kwh = num(r, "codecarbon_emissions_kg"), num(r, "codecarbon_energy_kwh")
        assert cc_kg and cc_kwh and cc_kg / cc_kwh * 1000 == pytest.approx(intensity, rel=1e-3)
        assert num(r, "codecarbon_energy_ratio") == pytest.approx(cc_kwh * 3.6e6 / energy, rel=1e-9)
        assert 0.0 <= num(r, "foreign_cpu_share") <= 1.0
        assert r["engine"] == ("torch" if r["method"] == "mlp" else "native")
        # the carbon equivalents derive from the same emissions
        assert float(r["car_miles"]) == pytest.approx(num(r, "emissions_kg") / 0.409, rel=1e-9)


def test_report_shows_the_account_and_component_sources(built: dict):
    run_section = _section(built["html"], "run")
    assert "Energy account: ours against CodeCarbon" in run_section
    assert "Where the energy numbers come from" in run_section and "Component" in run_section


@pytest.mark.slow
def test_real_run_has_spike_columns_in_hand_computed_ranges(real_smoke_run: Path) -> None:
    """popsan and mlp at hidden 64-64 on HalfCheetah (obs 17, act 6), T = 5:
    MLP MACs = 17·64 + 64·64 + 64·6 = 5,568; PopSAN MACs = 17·10 receptive fields + 6·10 decoder
    weights = 230, SynOps at most 170·5·64 + 64·5·64 + 64·5·60 = 94,080."""
    summary = pd.read_csv(real_smoke_run / "summary.csv")
    for col in ("spike_rate", "synops_per_action", "macs_per_action", "inference_energy_j_per_action_est"):
        assert col in summary.columns, col
    mlp, pop = summary[summary["method"] == "mlp"], summary[summary["method"] == "popsan"]
    assert (mlp["macs_per_action"] == 5568).all() and mlp["spike_rate"].isna().all()
    assert (pop["macs_per_action"] == 230).all()
    assert ((pop["synops_per_action"] > 0) & (pop["synops_per_action"] < 94_080)).all()
    assert ((pop["spike_rate"] > 0) & (pop["spike_rate"] < 1)).all()
    np.testing.assert_allclose(pop["inference_energy_j_per_action_est"],
                               pop["synops_per_action"] * 0.9e-12 + 230 * 4.6e-12, rtol=1e-9)
    np.testing.assert_allclose(mlp["inference_energy_j_per_action_est"], 5568 * 4.6e-12, rtol=1e-9)
    result = json.loads((real_smoke_run / "popsan" / "HalfCheetah-v4" / "seed0" / "result.json").read_text())
    names = [layer["name"] for layer in result["activity"]["layers"]]
    assert names == ["encoder", "hidden 1", "hidden 2", "output"]
    output = (real_smoke_run.parent / "output.txt").read_text(encoding="utf-8")
    assert "run 1 of 4" in output and "so far" in output
    table, report = output.find("results (complete seeds"), output.find("report: ")
    assert 0 <= table < report, "the results table comes before the report paths"


def test_power_chart_fits_the_axis_to_every_trace_and_names_each_device_source() -> None:
    """A seed that was never resumed still sets the y axis (headroom above its peak, not the 1 W
    floor that clips the traces) and its device's source in the legend."""
    from reports.charts import power_traces
    from reports.format import Unit
    from reports.model import DeviceTrace, PowerTraces, SeedPower

    trace = DeviceTrace("gpu0", np.array([0.0, 1.0, 2.0]), np.array([150.0, 250.0, 200.0]), "nvml counter")
    chart = power_traces([PowerTraces("Hopper-v4", Unit("s", 1.0), {"spikerl": [SeedPower(0, [trace])]})],
                         {"spikerl": "#1f77b4"}, "caption")
    ax = chart.figure.axes[0]
    assert ax.get_ylim() == pytest.approx((0.0, 250.0 * 1.18))
    labels = [t.get_text() for t in chart.figure.legends[0].get_texts()]
    assert "gpu0 (nvml counter)" in labels
