"""Which settings of BASE and NEW differ. A comparison is meant to isolate a code change, so
everything else must match: budgets and schedule (config.json's td3.*), the method's actor
recipe (actor.*), precision, thread count, device and world size, the energy source (and whether
it is estimated), the machine (CPU model and count, GPUs, spiking kernel path), and any column a
newer writer adds that says how a run ran (string and boolean result fields, e.g. an engine).

A setting that only one side records (an older run folder lacking a newer column, or a
summary.csv that has no config.json) is not a difference: there is nothing to compare it with.
"""
from __future__ import annotations

from typing import Any

from bench import schema
from bench.compare.load import ENV, METHOD, STATUS, RunData, Side

_NOT_CONFIG = {METHOD, ENV, STATUS, "error", "emissions_error", "meter_errors"}
RECORD_CONFIG_FIELDS = tuple(
    f.name for f in schema.RESULT_FIELDS if f.kind in ("str", "bool") and f.name not in _NOT_CONFIG
) + tuple(f.name for f in schema.RESULT_FIELDS if f.name in ("world_size", "steps", "seed_batch"))
"""Result fields that describe how a run ran; every string or boolean field of the schema
(a new one such as `engine` joins automatically), plus world size and the step budget."""


ABSENT_MEANS = {"seed_batch": 1}
"""Fields whose absence (a folder from before they existed) says how the run ran: one seed per process."""


def _record_config(run: RunData) -> dict[str, Any]:
    out = {k: run.record.get(k) for k in RECORD_CONFIG_FIELDS}
    for k, v in ABSENT_MEANS.items():
        if out.get(k) is None:
            out[k] = v
    # columns a newer writer added that the schema here does not know yet, of the same kinds
    known = {f.name for f in schema.SUMMARY_FIELDS}
    out.update({k: v for k, v in run.record.items()
                if k not in known and k not in _NOT_CONFIG and isinstance(v, (str, bool))})
    return {k: v for k, v in out.items() if v is not None}


def _show(v: Any) -> str:
    text = str(v)
    return text if len(text) <= 40 else text[:37] + "..."


def config_differences(base: Side, new: Side) -> list[str]:
    """One line per differing setting, with where it differs; [] when the configurations match."""
    diffs: dict[tuple[str, str, str], list[str]] = {}
    for k in sorted(set(base.setup) & set(new.setup)):
        if base.setup[k] != new.setup[k]:
            where = schema.PLAN if k.startswith("plan.") else schema.ENVIRONMENT
            diffs.setdefault((k, _show(base.setup[k]), _show(new.setup[k])), []).append(where)
    for key in sorted(set(base.runs) & set(new.runs)):
        b_runs, n_runs = base.runs[key], new.runs[key]
        where = "/".join((key[0], key[1], f"{schema.SEED_DIR_PREFIX}{key[2]}"))
        for b in b_runs:
            for n in n_runs:
                for settings_b, settings_n in ((_record_config(b), _record_config(n)), (b.config, n.config)):
                    for k in sorted(set(settings_b) & set(settings_n)):
                        if settings_b[k] != settings_n[k]:
                            diffs.setdefault((k, _show(settings_b[k]), _show(settings_n[k])), []).append(where)
    lines = []
    for (k, vb, vn), places in diffs.items():
        places = list(dict.fromkeys(places))
        more = f" and {len(places) - 1} more" if len(places) > 1 else ""
        lines.append(f"{k}: {vb} in BASE, {vn} in NEW ({places[0]}{more})")
    return lines
