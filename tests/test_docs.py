"""The documentation's generated reference cannot drift from the code.

The CLI reference is generated from the argparse parser and the run-folder reference from
bench/schema.py (tools/docs_reference.py, called by tools/docs_hooks.py when MkDocs builds). These
tests call the generators directly (no docs extra needed) and check that every subcommand, every
option and every field, including ones added later, appears; the last one builds the site itself in
strict mode and is skipped where the docs extra is not installed.
"""
from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

import bench.schema as schema
from bench.cli.main import build_parser
from tools import docs_reference
from tools.docs_reference import CLI_MARKER, SCHEMA_MARKER, cli_markdown, fill, schema_markdown

REPO = Path(__file__).resolve().parents[1]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("spikerl-bench has no subcommands")


def test_cli_reference_has_every_subcommand_and_option():
    text = cli_markdown()
    subs = _subparsers(build_parser())
    assert {"run", "compare", "report", "status", "methods", "perf"} <= set(subs)  # report is an entry point
    for name, sub in subs.items():
        assert f"## `{name}` {{ #{name} }}" in text, name
        assert f"usage: spikerl-bench {name}" in text, name
        for action in sub._actions:
            hidden = action.help == argparse.SUPPRESS
            if hidden or not action.option_strings or action.option_strings == ["-h", "--help"]:
                continue
            assert f"`{', '.join(action.option_strings)}" in text, (name, action.option_strings)
    assert "--only-runs" not in text  # hidden plumbing stays hidden, as in --help


def test_a_subcommand_added_later_appears_without_editing_a_page():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    later = sub.add_parser("calibrate", help="compare the meters with a wall meter")
    later.add_argument("--json", action="store_true", help="machine-readable")
    text = cli_markdown(parser)
    assert "| [`calibrate`](#calibrate) | compare the meters with a wall meter |" in text
    assert "## `calibrate` { #calibrate }" in text and "| `--json` | machine-readable |" in text


def test_cli_reference_expands_help_like_argparse_and_escapes_html():
    text = cli_markdown()
    assert "90% of the baseline" in text and "90%%" not in text
    assert "runs/&lt;UTC time&gt;" in text  # '<UTC time>' would vanish as an HTML tag


def test_schema_reference_has_every_summary_column_and_field():
    text = schema_markdown()
    for column in schema.SUMMARY_COLUMNS:
        assert f"| `{column}` |" in text, column
    for fields in (schema.PROGRESS_FIELDS, schema.EVAL_FIELDS, schema.POWER_FIELDS):
        for f in fields:
            assert f"| `{f.name}` | {f.unit} |" in text.replace("\\|", "|"), f.name
    columns = re.search(r"these columns: (.*)\.$", text, re.M).group(1)
    assert [c.strip("` ") for c in columns.split(",")] == list(schema.SUMMARY_COLUMNS)
    for status in schema.Status:
        assert f"| `{status.value}` |" in text


def test_fields_added_to_the_shared_tuples_appear_without_editing_a_page(monkeypatch):
    added = {"PHASE_FIELDS": schema.Field("train_wall_s", "s", doc="inside the training window"),
             "METER_FIELDS": schema.Field("gpu_coverage", "", doc="metered seconds / window seconds"),
             "RESUME_FIELDS": schema.Field("unmetered_s", "s", doc="gaps between segments")}
    for attr, field in added.items():
        monkeypatch.setattr(schema, attr, getattr(schema, attr) + (field,))
    monkeypatch.setattr(schema, "GPSUP_FIELDS", schema.GPSUP_FIELDS + (schema.Field("speedup_ci_low", "x"),))
    monkeypatch.setattr(schema, "DOCTOR_FIELDS", (schema.Field("verdict", kind="str"),), raising=False)
    text = schema_markdown()
    assert "| `train_wall_s` | s | float | inside the training window |" in text
    assert "| `gpu_coverage` |  | float | metered seconds / window seconds |" in text
    assert "| `unmetered_s` | s | float | gaps between segments |" in text
    assert "| `speedup_ci_low` | x | float |  |" in text
    assert "`DOCTOR_FIELDS`" in text and "| `verdict` |" in text  # a tuple nobody told the generator about


def test_the_reference_pages_and_the_build_are_wired_to_the_generators():
    assert CLI_MARKER in (REPO / "docs/reference/cli.md").read_text()
    assert SCHEMA_MARKER in (REPO / "docs/reference/run-folder.md").read_text()
    mkdocs_yml = (REPO / "mkdocs.yml").read_text()
    assert "tools/docs_hooks.py" in mkdocs_yml and "strict: true" in mkdocs_yml
    filled = fill(f"# CLI\n\n{CLI_MARKER}\n\n# Schema\n\n{SCHEMA_MARKER}\n")
    assert CLI_MARKER not in filled and SCHEMA_MARKER not in filled
    assert "## `run` { #run }" in filled and "| `energy_j` | J |" in filled
    assert docs_reference.main(["nonsense"]) == 2


def test_every_nav_page_exists_and_every_page_is_in_the_nav():
    nav_pages = set(re.findall(r":\s*([\w/.-]+\.md)\s*$", (REPO / "mkdocs.yml").read_text(), re.M))
    pages = {str(p.relative_to(REPO / "docs")) for p in (REPO / "docs").rglob("*.md")}
    assert nav_pages <= pages, nav_pages - pages
    assert pages == nav_pages, pages - nav_pages


def test_the_readme_is_a_front_door_whose_links_lead_into_the_docs():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    # the two commands, word for word: CI and newcomers run the second one
    assert ('python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 -e . && spikerl-bench run'
            in readme)
    assert ('python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 -e ".[test]" '
            '&& python -m pytest' in readme)
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if not t.startswith(("http://", "https://"))]
    assert any(t.endswith(".png") for t in local), "the README shows one picture of a report"
    nav_pages = set(re.findall(r":\s*([\w/.-]+\.md)\s*$", (REPO / "mkdocs.yml").read_text(), re.M))
    for target in local:
        assert (REPO / target).is_file(), target
        if target.endswith(".md"):
            assert target.startswith("docs/") and target.removeprefix("docs/") in nav_pages, target


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None,
                    reason='the docs extra is not installed: pip install -e ".[docs]" to build the site')
def test_the_site_builds_strictly_with_every_subcommand_and_column(tmp_path):
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)],
                          cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    cli_html = (site / "reference/cli/index.html").read_text()
    for name in _subparsers(build_parser()):
        assert f'id="{name}"' in cli_html, name
    schema_html = (site / "reference/run-folder/index.html").read_text()
    for column in schema.SUMMARY_COLUMNS:
        assert f"<code>{column}</code>" in schema_html, column
    api_html = (site / "reference/python-api/index.html").read_text()
    assert "EnergyMonitor" in api_html and "MethodSpec" in api_html and "load_run" in api_html
