"""A full disk loses nothing, and says so (issue 26, item 6): a write of a checkpoint, a log
row, a power row or the report that fails with ENOSPC stops the run with one line naming the
file; the previous checkpoint and every complete row stay whole; --resume after space is freed
finishes bit-exactly. Each write site gets an injected OSError here; a real full tmpfs is
tools/full_disk_check.py (it needs root to mount one)."""
from __future__ import annotations

import csv
import errno
import json
import shutil
from pathlib import Path

import pytest

from bench.cli.main import main
from tests.test_resume_lost import SEED, reference, template  # noqa: F401  (module fixtures)

ENOSPC = OSError(errno.ENOSPC, "No space left on device")


class _FailingWriter:
    """A csv writer on a disk that fills mid-row: part of the row lands, then ENOSPC."""

    def __init__(self, f):
        self.f = f

    def _fail(self, *rows):
        self.f.write("4")
        self.f.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    writerow = writerows = _fail


def _fail_log(monkeypatch, name: str, at_step: int) -> None:
    from bench.run.store import CsvLog

    append = CsvLog.append

    def failing(self, row):
        if self.path.name == name and row.get("step") == at_step:
            self._w = _FailingWriter(self._f)
        return append(self, row)

    monkeypatch.setattr(CsvLog, "append", failing)


def _fail_power(monkeypatch) -> None:
    from bench.energy.power_csv import PowerCsv

    write = PowerCsv.write

    def failing(self, rows):
        if self.segment == 1 and rows:  # the resumed process's first batch of rows
            self._writer = _FailingWriter(self._file)
        return write(self, rows)

    monkeypatch.setattr(PowerCsv, "write", failing)


def _fail_checkpoint(monkeypatch) -> None:
    import spikerl.checkpoint as ckpt

    def failing(obj, f, *a, **kw):
        f.write(b"PK" * 1000)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 2058112 vs 2058000")

    monkeypatch.setattr(ckpt.torch, "save", failing)


def _fail_report(monkeypatch) -> None:
    import reports.build as build

    def failing(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(build, "_stage", failing)


SITES = {
    "checkpoint.pt": _fail_checkpoint,
    "progress.csv": lambda mp: _fail_log(mp, "progress.csv", 400),
    "evals.csv": lambda mp: _fail_log(mp, "evals.csv", 600),
    "power.csv": _fail_power,
    "report": _fail_report,
}


def _whole_rows(path: Path) -> list[str]:
    lines = path.read_text().split("\n")
    return lines[1:-1]  # past the header; the piece after the last newline is not a row


@pytest.mark.parametrize("site", sorted(SITES))
def test_a_failed_write_stops_the_run_naming_the_file_and_the_resume_is_exact(
        site, template, reference,  # noqa: F811  (test_resume_lost's fixtures, injected by name: pyflakes cannot see it)
        tmp_path, monkeypatch, capsys):
    import bench.run.runner as runner

    run = tmp_path / "run"
    shutil.copytree(template, run)
    seed = run / SEED
    checkpoint = (seed / "checkpoint.pt").read_bytes()
    if site != "report":
        monkeypatch.setattr(runner, "finish_run_folder", lambda *a: None)
    with monkeypatch.context() as mp:
        SITES[site](mp)
        assert main(["run", "--resume", str(run), "--plain"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [ln for ln in err.splitlines() if ln.startswith("spikerl-bench: error:")]
    assert len(errors) == 1, err
    # torch's zip writer says "unexpected pos" where the disk is full (named so where statvfs agrees)
    assert "could not write" in errors[0] and ("No space left on device" in errors[0] or
                                               site == "checkpoint.pt" and "unexpected pos" in errors[0])
    named = (site,) if site != "report" else (f"{run}/report.", f"{run}/figures/")  # its first staged file
    assert any(n in errors[0] for n in named) and f"--resume {run}" in errors[0]
    assert not list(run.rglob(".*.tmp")), "a temporary file was left behind"
    if site == "checkpoint.pt":
        assert (seed / "checkpoint.pt").read_bytes() == checkpoint  # the previous one, whole
    for log in ("progress.csv", "evals.csv"):
        for row in _whole_rows(seed / log):
            assert len(next(csv.reader([row]))) > 5, f"a broken row in {log}: {row!r}"

    assert main(["run", "--resume", str(run), "--plain"]) == 0  # space freed
    result = json.loads((seed / "result.json").read_text())
    assert result["status"] == "complete"
    assert result["param_sha256_by_rank"] == reference["param_sha256_by_rank"]
    assert result["final_return_mean"] == reference["final_return_mean"]
    with open(seed / "progress.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [100, 200, 300, 400, 500, 600]
    if site == "report":
        assert (run / "report.html").exists()


def test_a_checkpoint_that_fails_to_save_leaves_the_previous_one(tmp_path, monkeypatch):
    import spikerl.checkpoint as ckpt
    from spikerl.atomic import WriteError

    path = tmp_path / "checkpoint.pt"
    ckpt.save_checkpoint(path, {"x": 1})
    before = path.read_bytes()
    _fail_checkpoint(monkeypatch)
    with pytest.raises(WriteError) as info:
        ckpt.save_checkpoint(path, {"x": 2})
    assert str(path) in str(info.value)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_a_torch_error_that_is_not_a_write_is_not_called_one(tmp_path, monkeypatch):
    import spikerl.checkpoint as ckpt

    def bad(obj, f, *a, **kw):
        raise RuntimeError("cannot pickle 'generator' object")

    monkeypatch.setattr(ckpt.torch, "save", bad)
    with pytest.raises(RuntimeError, match="pickle"):
        ckpt.save_checkpoint(tmp_path / "c.pt", {"x": 1})
