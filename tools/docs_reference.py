"""The documentation's generated reference pages: the command line from the argparse parser
and the run-folder schema from bench/schema.py.

The docs site (mkdocs.yml) calls these at build time through tools/docs_hooks.py, so the
reference cannot drift from `spikerl-bench --help` or from the schema: a subcommand registered
on the parser (by bench.cli or by an entry point such as reports' `report`) and a Field added
to any tuple of bench/schema.py appear without anyone editing a page. tests/test_docs.py checks
that every subcommand and every summary.csv column is in the output.

    python -m tools.docs_reference cli       # print the CLI reference as Markdown
    python -m tools.docs_reference schema    # print the run-folder schema as Markdown
"""
from __future__ import annotations

import argparse
import sys

CLI_MARKER = "<!-- generated: cli -->"
SCHEMA_MARKER = "<!-- generated: schema -->"

# The schema's tuples in the order a reader meets them, with the file each describes. A tuple
# not named here (one added later) is still listed, under its own name, by _schema_groups.
_SCHEMA_TUPLES = (
    ("PROGRESS_FIELDS", "progress.csv", "one row every `log_every` env steps"),
    ("EVAL_FIELDS", "evals.csv", "one row per evaluation"),
    ("POWER_FIELDS", "power.csv", "the power sampler's trace, one row per device per sample"),
    ("RUN_FIELDS", "result.json and summary.csv", "what ran, where, and how it ended"),
    ("ENERGY_FIELDS", "result.json and summary.csv", "the energy account, carbon and the CodeCarbon cross-check"),
    ("PHASE_FIELDS", "result.json and summary.csv", "time and energy per phase, GPS-UP basis, carbon inputs"),
    ("METER_FIELDS", "result.json and summary.csv", "meter coverage, idle baseline, counter cross-check"),
    ("RESUME_FIELDS", "result.json and summary.csv", "what a resume lost or could not meter"),
    ("ACTIVITY_FIELDS", "result.json and summary.csv", "spike activity of the final actor (an estimate)"),
    ("GPSUP_FIELDS", "summary.csv", "GPS-UP against the baseline method"),
    ("TARGET_FIELDS", "summary.csv", "energy and time to the target return"),
    ("EQUIVALENT_FIELDS", "summary.csv", "carbon equivalents of emissions_kg"),
)


def _cell(text: object) -> str:
    """Text safe inside one Markdown table cell."""
    # '<UTC time>' in a help text would otherwise be swallowed as an HTML tag
    return " ".join(str(text).split()).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _code(text: str) -> str:
    return f"`{text}`" if text else ""


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, tuple[argparse.ArgumentParser, str]]:
    """Each subcommand's parser and its one-line help, in the order they were registered."""
    for action in parser._actions:  # argparse has no public accessor for its subparsers
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return {name: (sub, helps.get(name, "")) for name, sub in action.choices.items()}
    return {}


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help text as --help prints it (argparse expands %(default)s and %% in it)."""
    if not action.help:
        return ""
    try:
        return parser._get_formatter()._expand_help(action)
    except (KeyError, TypeError, ValueError):
        return action.help


def _option_rows(parser: argparse.ArgumentParser) -> list[str]:
    rows = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        # argparse allows a tuple metavar (one name per argument of nargs=N); --help joins them with spaces
        metavar = " ".join(action.metavar) if isinstance(action.metavar, tuple) else action.metavar
        if action.option_strings:
            name = ", ".join(action.option_strings)
            if action.nargs != 0:
                name += " " + (metavar or action.dest.upper())
        else:
            name = metavar or action.dest
        default = ""
        if action.option_strings and action.nargs != 0 and action.default not in (None, [], argparse.SUPPRESS):
            default = str(action.default)
        choices = ", ".join(map(str, action.choices)) if action.choices else ""
        default_md = _code(" ".join(default.split()).replace("|", "\\|"))
        rows.append(f"| {_code(name)} | {_cell(_help(parser, action))} | {_cell(choices)} | {default_md} |")
    return rows


def cli_markdown(parser: argparse.ArgumentParser | None = None) -> str:
    """The CLI reference: every subcommand of `spikerl-bench` with its usage, description, options
    (help, choices, default) and worked examples, read from the parser itself."""
    if parser is None:
        from bench.cli.main import build_parser

        parser = build_parser()
    parser.prog = "spikerl-bench"  # a test runner's argv[0] must not leak into the page
    subs = _subcommands(parser)
    out = ["| command | what it does |", "|---|---|"]
    out += [f"| [`{name}`](#{name}) | {_cell(helptext)} |" for name, (_, helptext) in subs.items()]
    for name, (sub, helptext) in subs.items():
        sub.prog = f"spikerl-bench {name}"
        out += ["", f"## `{name}` {{ #{name} }}", "", _cell(sub.description or helptext), ""]
        out += ["```text", sub.format_usage().strip(), "```", ""]
        rows = _option_rows(sub)
        if rows:
            out += ["| argument | meaning | choices | default |", "|---|---|---|---|", *rows]
        if sub.epilog:
            out += ["", "```text", sub.epilog.strip("\n"), "```"]
    return "\n".join(out) + "\n"


def _schema_groups():
    import bench.schema as schema

    named = [(attr, where, what) for attr, where, what in _SCHEMA_TUPLES if hasattr(schema, attr)]
    known = {attr for attr, _, _ in named}
    # A tuple of Fields added to the schema later is listed too, so nothing can be left out.
    for attr, value in vars(schema).items():
        if (attr.endswith("_FIELDS") and attr not in known and attr not in ("RESULT_FIELDS", "SUMMARY_FIELDS")
                and isinstance(value, tuple) and all(isinstance(f, schema.Field) for f in value)):
            named.append((attr, "result.json and summary.csv" if value and set(value) <= set(schema.SUMMARY_FIELDS)
                          else "(see bench/schema.py)", ""))
    return schema, [(attr, where, what, getattr(schema, attr)) for attr, where, what in named]


def schema_markdown() -> str:
    """The run-folder schema: file names, the statuses, and every field of every tuple of
    bench/schema.py with its unit, kind and description."""
    schema, groups = _schema_groups()
    files = [(n, getattr(schema, n)) for n in ("PLAN", "ENVIRONMENT", "SUMMARY", "CONFIG", "PROGRESS", "EVALS",
                                               "POWER", "RESULT", "EMISSIONS") if hasattr(schema, n)]
    out = ["## Files", "", "| constant | file name |", "|---|---|"]
    out += [f"| `{n}` | `{v}` |" for n, v in files]
    out += ["", "## Run statuses", "", "| status | final |", "|---|---|"]
    out += [f"| `{s.value}` | {'yes' if s in schema.FINAL_STATUSES else 'no'} |" for s in schema.Status]
    for attr, where, what, fields in groups:
        out += ["", f"## {where}: `{attr}`", ""]
        if what:
            out += [what[0].upper() + what[1:] + ".", ""]
        if not fields:
            out += ["*No fields yet.*"]
            continue
        out += ["| field | unit | kind | meaning |", "|---|---|---|---|"]
        out += [f"| `{f.name}` | {_cell(f.unit)} | {f.kind} | {_cell(f.doc)} |" for f in fields]
    out += ["", "## summary.csv columns, in order", "",
            "`summary.csv` has one row per method × env × seed and these columns: "
            + ", ".join(f"`{c}`" for c in schema.SUMMARY_COLUMNS) + "."]
    return "\n".join(out) + "\n"


def fill(markdown: str) -> str:
    """A page's Markdown with each generated marker replaced by its content."""
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_markdown())
    if SCHEMA_MARKER in markdown:
        markdown = markdown.replace(SCHEMA_MARKER, schema_markdown())
    return markdown


def main(argv: list[str] | None = None) -> int:
    which = (argv if argv is not None else sys.argv[1:]) or ["cli"]
    if which[0] not in ("cli", "schema"):
        print("usage: python -m tools.docs_reference cli|schema", file=sys.stderr)
        return 2
    print(cli_markdown() if which[0] == "cli" else schema_markdown(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
