"""The reproducibility appendix's account of what resumes repaired or moved aside, per seed:
rows dropped from damaged logs (result.json's log_rows_dropped), time between power-trace
segments no row covers (unmetered_s) and earlier attempts kept in seed<k>.lost-<time> folders
(`run --resume --restart-seed`). Nothing a resume did is left for the reader to find alone."""
from __future__ import annotations

from bench.metrics.basis import finite_number
from reports.load import RunFolder
from reports.model import Cell, Table

LOST_GLOB = "seed*.lost-*"


def resume_rows(run: RunFolder) -> list[list[Cell]]:
    """One row per seed a resume repaired or restarted: ['resume: <seed folder>', what]."""
    rows = []
    for r in run.runs:
        said = []
        result = r.result if isinstance(r.result, dict) else {}
        dropped = result.get("log_rows_dropped")
        if isinstance(dropped, str) and dropped:
            said.append(f"log rows dropped while healing: {dropped[:400]}")
        gap = finite_number(result.get("unmetered_s"))
        if gap is not None and gap > 0:
            said.append(f"{gap:.3g} s between power-trace segments unmetered")
        if said:
            rows.append([Cell(f"resume: {r.rel_dir}"), Cell("; ".join(said))])
    for lost in sorted(run.path.glob(f"*/*/{LOST_GLOB}")):
        if lost.is_dir() and not lost.is_symlink():
            rel = lost.relative_to(run.path).as_posix()
            rows.append([Cell(f"resume: {rel}"), Cell("an attempt without a usable checkpoint, moved aside by "
                                                      "--restart-seed; the seed was retrained from step 0")])
    return rows


def with_resume_rows(table: Table, run: RunFolder) -> Table:
    """`table` (the environment appendix) with the resume rows after its own."""
    extra = resume_rows(run)
    if extra:
        table.rows.extend(extra)
        table.source = f"{table.source} Resume rows: result.json log_rows_dropped, unmetered_s; seed*.lost-* folders."
    return table
