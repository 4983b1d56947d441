"""Every method by name: the built-ins of baselines/, then third-party plugins.

Adding a built-in method is one file in baselines/ plus one line in BUILTIN_METHODS.

Another package adds a method without touching this repository through an entry point in the
group `spikerl_bench.methods`, named like the method, whose object is a
`spikerl.method.MethodSpec` of that same name:

    [project.entry-points."spikerl_bench.methods"]
    tiny = "tinyplugin.method:TINY"

Plugins are loaded when this module is first imported, so they appear wherever METHODS is used
(`spikerl-bench methods`, `run --methods`). A plugin is skipped, with one PluginWarning that
names it and says why, when it fails to load, is not a MethodSpec, its two names differ, or its
name is already taken by a built-in or by an earlier plugin (in sys.path order): run folders and
results are labelled by name, so a name must never quietly stand for another model. A broken
plugin never stops the command line; asking for it by name raises a KeyError that says why it
was skipped.
"""
from __future__ import annotations

import re
import warnings
from importlib.metadata import EntryPoint, entry_points
from typing import NamedTuple

from baselines.dsrl import DSRL
from baselines.mlp import MLP
from baselines.popsan import POPSAN
from baselines.spikerl import SPIKERL
from spikerl.method import MethodSpec

ENTRY_POINT_GROUP = "spikerl_bench.methods"
BUILTIN_METHODS: tuple[MethodSpec, ...] = (SPIKERL, POPSAN, DSRL, MLP)

# Names become run-folder names and items of comma-separated --methods lists.
_VALID_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class PluginWarning(UserWarning):
    """A method plugin was skipped; the message names it and says why."""


class Registry(NamedTuple):
    methods: dict[str, MethodSpec]
    """Method by name: built-ins first, then plugins in discovery order."""
    skipped: dict[str, str]
    """Entry-point name of each skipped plugin -> why it was skipped."""


class _Skipped(Exception):
    pass


def discover_methods() -> Registry:
    """The built-in methods plus every usable `spikerl_bench.methods` plugin on sys.path."""
    methods = {spec.name: spec for spec in BUILTIN_METHODS}
    skipped: dict[str, str] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            spec = _load_plugin(ep, methods)
        except _Skipped as exc:
            skipped.setdefault(ep.name, str(exc))
            warnings.warn(f"method plugin {_origin(ep)} skipped: {exc}", PluginWarning, stacklevel=2)
        else:
            methods[spec.name] = spec
    return Registry(methods, skipped)


def _load_plugin(ep: EntryPoint, taken: dict[str, MethodSpec]) -> MethodSpec:
    if ep.name in taken:  # checked before loading: a refused plugin's code never runs
        owner = "a built-in method" if any(ep.name == s.name for s in BUILTIN_METHODS) else "an earlier plugin"
        raise _Skipped(f"the name {ep.name!r} is already taken by {owner}")
    if not _VALID_NAME.fullmatch(ep.name):
        raise _Skipped(f"{ep.name!r} is not a valid method name (letters, digits, '_', '-', '.')")
    try:
        spec = ep.load()
    except Exception as exc:  # noqa: BLE001 - a third party's bug must not break every command
        raise _Skipped(f"loading it raised {type(exc).__name__}: {exc}") from None
    if not isinstance(spec, MethodSpec):
        raise _Skipped(f"{ep.value} is a {type(spec).__name__}, not a spikerl.method.MethodSpec")
    if spec.name != ep.name:
        raise _Skipped(f"its MethodSpec is named {spec.name!r}; the entry point must be named the same")
    return spec


def _origin(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    source = f", from {dist.name} {dist.version}" if dist is not None else ""
    return f"{ep.name!r} ({ep.value}{source})"


_REGISTRY = discover_methods()
METHODS: dict[str, MethodSpec] = _REGISTRY.methods
SKIPPED_PLUGINS: dict[str, str] = _REGISTRY.skipped


def get_method(name: str) -> MethodSpec:
    try:
        return METHODS[name]
    except KeyError:
        why = f" (its plugin was skipped: {SKIPPED_PLUGINS[name]})" if name in SKIPPED_PLUGINS else ""
        raise KeyError(f"unknown method {name!r}{why}; known methods: {', '.join(METHODS)}") from None
