"""`spikerl-bench run --config FILE`: a sweep in one reviewed TOML file.

The file's keys are the long names of the command's flags without the dashes (`total-steps` or
`total_steps`); a table groups flags that share a prefix (`[slurm] partition` is
`--slurm-partition`). Every value goes through the same argparse action as its flag (its type
function and its choices), so a file takes exactly what the command line takes, and a flag added
later works in files without a line here. The converted values become the parser's defaults and
the command line is parsed again: a flag given beside the file overrides it, even one equal to
its default, and a repeatable flag (`--set`, `--slurm-opt`) adds its items after the file's, the
later winning per key.
"""
from __future__ import annotations

import argparse
import datetime as dt
import difflib
import hashlib
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from bench.run.plan import UsageError

MAX_FILE_BYTES = 1 << 20
"""A sweep file is a page of settings; anything larger is the wrong file."""

REFUSED_KEYS = {
    "config": "a sweep file cannot name another one",
    "resume": "a resume takes its plan from the run folder: run --resume RUN_DIR without --config",
    "help": "not a setting",
}
SET_KEY = "set"
"""The flag whose table also takes `[set.METHOD]` (`--set METHOD:KEY=VALUE`)."""


def with_config_file(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
                     args: argparse.Namespace) -> argparse.Namespace:
    """`args` with the values of its `--config` file merged under the command line's; `args`
    itself when no file was given. UsageError (one line naming the file and key) for a file
    that cannot be read or holds anything its flag would refuse."""
    path = getattr(args, "config", None)
    if path is None:
        return args
    if getattr(args, "resume", None) is not None:
        raise UsageError("--config with --resume: a resume takes its plan from the run folder; drop --config")
    data, digest = read_config_file(path)
    sub = _subcommand_parser(parser, args.command)
    defaults = file_defaults(sub, data, str(path))
    if getattr(args, "launcher", None) not in (None, "slurm"):
        # `--launcher local` beside a cluster's file: its [slurm] table has nowhere to go
        dropped = [d for d in defaults if d.startswith("slurm_")]
        for dest in dropped:
            del defaults[dest]
        if dropped:
            print(f"note: --launcher {args.launcher}: the [slurm] options of {path} are not used", file=sys.stderr)
    sub.set_defaults(**defaults)  # this invocation's own parser (build_parser)
    merged = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    merged.config_sha256 = digest
    return merged


def read_config_file(path: Path) -> tuple[dict[str, Any], str]:
    """The parsed TOML table and the SHA-256 of the bytes it was parsed from."""
    try:
        if not path.is_file():  # a FIFO or a device would block or never end
            raise UsageError(f"--config {path}: no such file" if not path.exists() else
                             f"--config {path}: not a regular file")
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        raise UsageError(f"--config {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise UsageError(f"--config {path}: larger than {MAX_FILE_BYTES // 2**20} MiB; a sweep file is a page of "
                         "settings")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:
        raise UsageError(f"{path}: invalid TOML: nested too deeply") from None
    return data, hashlib.sha256(raw).hexdigest()


def file_defaults(parser: argparse.ArgumentParser, data: dict[str, Any], source: str) -> dict[str, Any]:
    """{dest: value} for `parser.set_defaults`, each value converted by its flag's action."""
    options = file_options(parser)
    out: dict[str, Any] = {}
    written: dict[str, str] = {}
    for label, name, value in _entries(data, options, source):
        action = options[name]
        if action.dest in written:
            raise UsageError(f"{source}: {label} given twice (also as {written[action.dest]})")
        written[action.dest] = label
        out[action.dest] = _convert(parser, action, label, name, value, source)
    return out


def file_options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The flags a file may set, by name without dashes: every long option except help, those
    hidden from --help (set by the launcher for its ranks) and REFUSED_KEYS."""
    options: dict[str, argparse.Action] = {}
    for action in parser._actions:  # argparse keeps no public list of a parser's flags
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        for opt in action.option_strings:
            name = _name(opt[2:]) if opt.startswith("--") else ""
            if name and name not in REFUSED_KEYS:
                options[name] = action
    return options


def _name(key: str) -> str:
    return key.replace("_", "-")


def _entries(data: dict[str, Any], options: dict[str, argparse.Action],
             source: str) -> Iterator[tuple[str, str, Any]]:
    """(key as written, flag name, value) of every setting, group tables opened."""
    for key, value in data.items():
        name = _name(key)
        if name in REFUSED_KEYS:
            raise UsageError(f"{source}: key {key!r} is not allowed in a sweep file: {REFUSED_KEYS[name]}")
        if name in options:
            yield key, name, value
        elif isinstance(value, dict) and any(o.startswith(name + "-") for o in options):
            group = {o[len(name) + 1:]: o for o in options if o.startswith(name + "-")}
            for sub_key, sub_value in value.items():
                label = f"{key}.{sub_key}"
                if _name(sub_key) not in group:
                    raise UsageError(f"{source}: unknown key {label!r}{_nearest(_name(sub_key), group, key + '.')}")
                yield label, group[_name(sub_key)], sub_value
        else:
            raise UsageError(f"{source}: unknown key {key!r}{_nearest(name, options, '')}; keys are the flags of "
                             "`spikerl-bench run --help` without the dashes")


def _nearest(name: str, known: Iterable[str], prefix: str) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {prefix + close[0]!r}?)" if close else ""


def _convert(parser: argparse.ArgumentParser, action: argparse.Action, label: str, name: str, value: Any,
             source: str) -> Any:
    where = f"{source}: {label}"
    if isinstance(action, (argparse._StoreConstAction, argparse.BooleanOptionalAction)) and action.nargs == 0:
        if type(value) is not bool:
            raise UsageError(f"{where}: expected true or false, got {_show(value)}")
        if isinstance(action, argparse.BooleanOptionalAction):
            return value
        return action.const if value else action.default
    if type(action) is argparse._AppendAction and action.nargs is None:
        items = _items(value, where, name, keyed=action.metavar == "KEY=VALUE")
        return [_parse(parser, action, item, where) for item in items]
    if type(action) is argparse._StoreAction and action.nargs is None:
        text = _text(value, where)
        converted = _parse(parser, action, text, where)
        if isinstance(value, list) and not isinstance(converted, (tuple, list)):
            raise UsageError(f"{where}: takes one value, not a list")
        if _has_number(value) and isinstance(converted, (tuple, list)) and not all(map(_is_number, converted)):
            raise UsageError(f"{where}: expected text (names), got {_show(value)}")
        # argparse converts a text default once more when the flag is not given: hand it the text,
        # so that the value goes through the flag's type exactly once either way
        return text if isinstance(converted, str) else converted
    raise UsageError(f"{where}: --{name} cannot be set in a sweep file")


def _parse(parser: argparse.ArgumentParser, action: argparse.Action, text: str, where: str) -> Any:
    """argparse's own conversion and choice check of one command-line value, so that a file and a
    flag can never disagree about what is valid."""
    try:
        value = parser._get_value(action, text)
        parser._check_value(action, value)
    except argparse.ArgumentError as exc:
        raise UsageError(f"{where}: {exc.message}") from None
    return value


def _text(value: Any, where: str) -> str:
    """A value as the command line would spell it: a list comma-separated, a number as digits."""
    if isinstance(value, list):
        parts = [_scalar_text(v, where) for v in value]
        if any("," in p for p in parts):
            raise UsageError(f"{where}: a list item holds a comma, got {_show(value)}")
        return ",".join(parts)
    return _scalar_text(value, where)


def _scalar_text(value: Any, where: str, *, booleans: bool = False) -> str:
    if isinstance(value, bool):
        if booleans:
            return "true" if value else "false"
        raise UsageError(f"{where}: expected text or a number, got {_show(value)}")
    if isinstance(value, (str, int, float)):
        return str(value)
    if isinstance(value, dict):
        raise UsageError(f"{where}: expected a value, got a table")
    if isinstance(value, list):
        raise UsageError(f"{where}: expected a value, got a nested list")
    raise UsageError(f"{where}: expected text or a number, got {_show(value)}")  # TOML dates and times


def _items(value: Any, where: str, name: str, *, keyed: bool) -> list[str]:
    """The items of a repeatable flag: a list of them, one of them, or for a KEY=VALUE flag a table."""
    if isinstance(value, list):
        return [_scalar_text(v, where) for v in value]
    if not isinstance(value, dict) or not keyed:
        return [_scalar_text(value, where)]
    items = []
    for key, sub in value.items():
        if name == SET_KEY and isinstance(sub, dict) and key != "actor":
            # [set.METHOD]: for that method only; `actor` is no method but the prefix of the actor
            # settings, which TOML reads as a table from `actor.timesteps = 5`
            items += [f"{key}:{k}={_item_text(v, f'{where}.{key}.{k}')}" for k, v in _dotted(sub)]
        else:
            items += [f"{k}={_item_text(v, f'{where}.{k}')}" for k, v in _dotted({key: sub})]
    return items


def _dotted(table: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """A table's entries with nested tables spelt as dotted keys, as TOML reads them."""
    for key, value in table.items():
        if isinstance(value, dict):
            yield from _dotted(value, f"{prefix}{key}.")
        else:
            yield prefix + key, value


def _item_text(value: Any, where: str) -> str:
    if isinstance(value, list):  # critic_hidden = [400, 300] is critic_hidden=400,300
        return ",".join(_scalar_text(v, where, booleans=True) for v in value)
    return _scalar_text(value, where, booleans=True)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _has_number(value: Any) -> bool:
    return _is_number(value) or (isinstance(value, list) and any(map(_is_number, value)))


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (dt.date, dt.time)):
        return f"the TOML date or time {value.isoformat()} (quote it to pass it as text)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _subcommand_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    raise LookupError(f"no subcommand {command!r}")
