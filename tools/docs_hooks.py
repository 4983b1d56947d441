"""MkDocs hooks (mkdocs.yml `hooks:`): fill the generated reference pages at build time.

Pages hold a marker (tools.docs_reference.CLI_MARKER or SCHEMA_MARKER) where the generated
Markdown goes, so the CLI reference is always the parser's and the schema always bench/schema.py's.
"""
from __future__ import annotations

import sys
from pathlib import Path

# MkDocs loads hooks by path and restores sys.path afterwards, so the checkout's root is put on it
# for good: the generators import bench (and through it baselines, spikerl) from this checkout.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tools.docs_reference import fill  # noqa: E402 - needs the root on sys.path first


def on_page_markdown(markdown, page, config, files):  # noqa: ARG001 - MkDocs' hook signature
    if _ROOT not in sys.path:  # MkDocs restored its sys.path after loading this module
        sys.path.insert(0, _ROOT)
    return fill(markdown)
