"""The report's meter section: per seed, how much of its window each component's meter covered,
the meter verdict, and the meter problems (count, first and last time) from result.json.

A seed whose measured component covers less than bench.energy.coverage.PARTIAL_BELOW of its window
is marked partial here; leaving it out of GPS-UP is the GPS-UP table's rule (it reads the same
columns)."""
from __future__ import annotations

import math

import pandas as pd

from bench.energy.coverage import PARTIAL_BELOW, is_partial
from reports.format import DASH, SEED_FILES
from reports.model import Cell, Table

METHODOLOGY_NOTE = ("Meters: software meters (NVML, RAPL, amdsmi, or the load-based estimate) read through this "
                    "suite; on this platform they are unvalidated against a wall meter.")


def _num(v: object) -> float | None:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _cov(v: object) -> Cell:
    f = _num(v)
    if f is None:
        return Cell(DASH)
    return Cell(f"{f:.3f}", "num red" if f < PARTIAL_BELOW else "num")


def meters_table(seeds: pd.DataFrame) -> Table | None:
    """None when no seed recorded coverage (run folders from before meters recorded it)."""
    cols = ("gpu_coverage", "cpu_coverage", "ram_coverage", "meter_verdict", "meter_errors")
    if not any(c in seeds.columns and seeds[c].notna().any() for c in cols):
        return None
    rows = []
    partial = 0
    for _, r in seeds.sort_values(["method", "env", "seed"]).iterrows():
        fields = {k: r.get(k) for k in r.index}
        for k, v in list(fields.items()):
            if k.endswith("_coverage"):
                fields[k] = _num(v)
        low = is_partial(fields)
        partial += bool(low)
        errors = r.get("meter_errors")
        rows.append([Cell(str(r["method"])), Cell(str(r["env"])), Cell(str(int(r["seed"])), "num"),
                     *(_cov(r.get(f"{c}_coverage")) for c in ("gpu", "cpu", "ram")),
                     Cell(str(int(_num(r.get("gpu_devices_metered")) or 0)) if _num(r.get("gpu_devices_metered"))
                          is not None else DASH, "num"),
                     Cell(str(r.get("meter_verdict")) if isinstance(r.get("meter_verdict"), str) else DASH),
                     Cell("partial: " + ", ".join(c.upper() for c in low), "red") if low else Cell("full"),
                     Cell(str(errors) if isinstance(errors, str) and errors else DASH)])
    notes = [f"Coverage = metered / window device-seconds over every segment of the run; a measured component "
             f"below {PARTIAL_BELOW:g} marks the seed partial ({partial} of {len(rows)} here). A counter that "
             f"recovered from failed reads still counted the energy over the gap, so its gap is metered.",
             METHODOLOGY_NOTE]
    return Table(key="meters", title="Reproducibility appendix: meter coverage and problems",
                 headers=["Method", "Env", "Seed", "GPU coverage", "CPU coverage", "RAM coverage", "GPUs",
                          "Verdict", "Window", "Meter problems (count, first and last time)"],
                 rows=rows, source=f"Source: {SEED_FILES}result.json *_coverage, gpu_devices_metered, "
                                   f"meter_verdict, meter_errors.", notes=notes)
