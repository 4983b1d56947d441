"""The report's meter section: per seed, how much of its window each component's meter covered,
each component's gross and idle-subtracted (dynamic) energy with the idle baseline behind it, the
meter verdict, and the meter problems (count, first and last time) from result.json; and for a
sweep of runs side by side, the machine's metered energy, what its runs were charged and the
remainder (RUN/machine_energy.json).

A seed whose measured component covers less than bench.energy.coverage.PARTIAL_BELOW of its window
is marked partial here; leaving it out of GPS-UP is the GPS-UP table's rule (it reads the same
columns)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.energy.coverage import PARTIAL_BELOW, is_partial
from bench.metrics.basis import finite_number as _num
from bench.run.machine_energy import read_windows
from reports.format import DASH, SEED_FILES, est_header, tagged
from reports.model import Cell, Table

METHODOLOGY_NOTE = ("Meters: software meters (NVML, RAPL, amdsmi, or the load-based estimate) read through this "
                    "suite; on this platform they are unvalidated against a wall meter.")


def _cov(v: object) -> Cell:
    f = _num(v)
    if f is None:
        return Cell(DASH)
    return Cell(f"{f:.3f}", "num red" if f < PARTIAL_BELOW else "num")


def _energy(gross: object, dynamic: object, mark: str) -> Cell:
    """'gross / dynamic' J, with the estimate mark where the column mixes measured and estimated
    seeds; the dynamic part absent without an idle baseline."""
    g, d = _num(gross), _num(dynamic)
    if g is None:
        return Cell(DASH)
    return Cell(tagged(f"{g:,.0f} / {d:,.0f}" if d is not None else f"{g:,.0f} / {DASH}", mark), "num")


def _estimated(flag: object) -> bool:
    """A *_estimated cell as read back (bool, numpy bool or absent): absent is not estimated."""
    return flag in (True,)


def _idle(r: pd.Series) -> Cell:
    window_s, where = _num(r.get("idle_window_s")), r.get("idle_baseline")
    if window_s is None:
        return Cell(DASH)
    return Cell(f"{where if isinstance(where, str) else 'run'}, {window_s:g} s")


def machine_energy_notes(run_dir: Path | None) -> list[str]:
    """One line per launch of a sweep of runs side by side: machine = runs + remainder."""
    if run_dir is None:
        return []
    out = []
    for w in read_windows(run_dir):
        machine_j, runs_j, rest_j = (_num(w.get(k)) for k in ("machine_j", "runs_j", "remainder_j"))
        if machine_j is None:
            continue
        runs = f"{runs_j:,.0f} J" if runs_j is not None else DASH
        rest = f"{rest_j:,.0f} J" if rest_j is not None else DASH
        missing = int(_num(w.get("runs_missing")) or 0)
        est = " (estimated)" if w.get("estimated") else ""
        window_s = _num(w.get("window_s"))
        over = f"{window_s:,.0f} s" if window_s is not None else DASH
        out.append(f"Runs side by side on {w.get('host') or 'this machine'}: its CPU and RAM metered "
                   f"{machine_j:,.0f} J{est} over {over} = the runs' charges "
                   f"{runs} + a remainder no run was charged {rest} (idle cores, other processes, start-up)"
                   + (f"; {missing} run(s) without a charge" if missing else "") + ". Source: machine_energy.json.")
    return out


def meters_table(seeds: pd.DataFrame, run_dir: Path | None = None) -> Table | None:
    """None when no seed recorded coverage (run folders from before meters recorded it)."""
    cols = ("gpu_coverage", "cpu_coverage", "ram_coverage", "meter_verdict", "meter_errors")
    if not any(c in seeds.columns and seeds[c].notna().any() for c in cols):
        return None
    rows = []
    partial = 0
    energy_heads, marks = [], {}
    for c in ("gpu", "cpu", "ram"):
        metered = seeds[seeds[f"{c}_energy_j"].map(_num).notna()] if f"{c}_energy_j" in seeds.columns else seeds[:0]
        flags = [_estimated(x) for x in metered.get(f"{c}_estimated", pd.Series(dtype=object))]
        head, marks[c] = est_header(f"{c.upper()} J gross / dynamic", flags)
        energy_heads.append(head)
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
                     *(_energy(r.get(f"{c}_energy_j"), r.get(f"{c}_dynamic_energy_j"),
                               marks[c] if _estimated(r.get(f"{c}_estimated")) else "") for c in ("gpu", "cpu", "ram")),
                     _idle(r),
                     Cell(str(r.get("meter_verdict")) if isinstance(r.get("meter_verdict"), str) else DASH),
                     Cell("partial: " + ", ".join(c.upper() for c in low), "red") if low else Cell("full"),
                     Cell(str(errors) if isinstance(errors, str) and errors else DASH)])
    notes = [f"Coverage = metered / window device-seconds over every segment of the run; a measured component "
             f"below {PARTIAL_BELOW:g} marks the seed partial ({partial} of {len(rows)} here). A counter that "
             f"recovered from failed reads still counted the energy over the gap, so its gap is metered.",
             "Energy is gross / dynamic: dynamic = gross - the idle baseline's power x metered time (its share "
             "for runs side by side); the baseline is the run's own idle window before training, or the sweep's "
             "one window before runs that train side by side.",
             *machine_energy_notes(run_dir), METHODOLOGY_NOTE]
    return Table(key="meters", title="Reproducibility appendix: meter coverage and problems",
                 headers=["Method", "Env", "Seed", "GPU coverage", "CPU coverage", "RAM coverage", "GPUs",
                          *energy_heads, "Idle baseline",
                          "Verdict", "Window", "Meter problems (count, first and last time)"],
                 rows=rows, source=f"Source: {SEED_FILES}result.json *_coverage, gpu_devices_metered, "
                                   f"*_energy_j, *_dynamic_energy_j, idle_window_s, idle_baseline, meter_verdict, "
                                   f"meter_errors.", notes=notes)
