"""Resume loses nothing silently (issue 26): a seed with logs but no checkpoint is refused
(or, with --restart-seed, moved aside and retrained), dropped log rows are recorded, stale
temporary files go, a full disk stops the run naming the file and the resume after it is
exact, the power trace is labelled by segment, and usage errors go to stderr."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import time
from itertools import pairwise
from pathlib import Path

import pytest

from bench.cli.main import main
from spikerl.callbacks import Callback

SEED = Path("mlp") / "HalfCheetah-v4" / "seed0"
TINY = ["--profile", "smoke", "--methods", "mlp", "--total-steps", "600", "--plain",
        "--set", "start_steps=100", "--set", "update_after=100", "--set", "eval_every=300",
        "--set", "eval_episodes=1", "--set", "checkpoint_every=300", "--set", "log_every=100",
        "--set", "max_ep_len=100", "--set", "critic_hidden=16,16", "--set", "actor.hidden=16,16"]
STOP_AT = 500
"""The template is stopped here: checkpoint at 300, progress rows to 500."""


class _StopAt(Callback):
    key = "stop_at"

    def on_progress(self, event):  # noqa: ANN001
        if event.step >= STOP_AT:
            raise KeyboardInterrupt


@pytest.fixture()
def no_report(monkeypatch):
    import bench.run.runner as runner

    monkeypatch.setattr(runner, "finish_run_folder", lambda *a: None)  # no report: faster


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A one-seed run stopped at step 500 (as a kill would leave it, with result.json saying
    interrupted): its checkpoint is at 300, progress.csv and power.csv go past it."""
    import bench.run.runner as runner

    root = tmp_path_factory.mktemp("template")
    run = root / "run"
    finish, extra = runner.finish_run_folder, runner.extra_callbacks
    runner.finish_run_folder = lambda *a: None

    def with_stop(plan):
        cbs, probe = extra(plan)
        return [*cbs, _StopAt()], probe

    runner.extra_callbacks = with_stop
    try:
        assert main(["run", *TINY, "--out", str(run)]) == 130
    finally:
        runner.finish_run_folder, runner.extra_callbacks = finish, extra
    assert (run / SEED / "checkpoint.pt").exists()
    return run


@pytest.fixture(scope="module")
def reference(template, tmp_path_factory):
    """The template resumed to the end untouched: the result every repaired resume must match."""
    import bench.run.runner as runner

    run = tmp_path_factory.mktemp("reference") / "run"
    shutil.copytree(template, run)
    finish, runner.finish_run_folder = runner.finish_run_folder, lambda *a: None
    try:
        assert main(["run", "--resume", str(run), "--plain"]) == 0
    finally:
        runner.finish_run_folder = finish
    return json.loads((run / SEED / "result.json").read_text())


def _copy(template: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(template, run)
    return run


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# ----------------------------------------------------------------------------- 5: usage errors


def test_no_command_is_a_usage_error_on_stderr(capsys):
    assert main([]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "error: a command is required" in err and "run" in err


def test_restart_seed_needs_resume(tmp_path, capsys):
    assert main(["run", *TINY, "--restart-seed", "--out", str(tmp_path / "x")]) == 2
    assert "--restart-seed goes with --resume" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------- 1: no checkpoint


def test_resume_refuses_a_seed_with_logs_but_no_checkpoint(template, tmp_path, capsys):
    run = _copy(template, tmp_path)
    (run / SEED / "checkpoint.pt").unlink()
    before = _snapshot(run)
    assert main(["run", "--resume", str(run), "--plain"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "seed 0 of mlp on HalfCheetah-v4" in line and "no checkpoint" in line and "--restart-seed" in line
    assert _snapshot(run) == before  # nothing written until told


def test_resume_refuses_a_seed_whose_checkpoint_is_corrupt_and_offers_a_restart(template, tmp_path, capsys):
    run = _copy(template, tmp_path)
    ckpt = run / SEED / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    before = _snapshot(run)
    assert main(["run", "--resume", str(run), "--plain"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "no usable checkpoint" in line and "--restart-seed" in line
    assert _snapshot(run) == before


def test_restart_seed_moves_the_old_files_aside_and_retrains_from_zero(template, reference, tmp_path, capsys,
                                                                       no_report):
    run = _copy(template, tmp_path)
    (run / SEED / "checkpoint.pt").unlink()
    old_progress = (run / SEED / "progress.csv").read_bytes()
    assert main(["run", "--resume", str(run), "--plain", "--restart-seed"]) == 0
    lost = list((run / SEED).parent.glob("seed0.lost-*"))
    assert len(lost) == 1 and (lost[0] / "progress.csv").read_bytes() == old_progress
    assert "moved to" in capsys.readouterr().err
    result = json.loads((run / SEED / "result.json").read_text())
    assert result["status"] == "complete" and result["steps"] == 600
    # from step 0 with the same seed: the same weights as the run that was never restarted
    assert result["param_sha256_by_rank"] == reference["param_sha256_by_rank"]
    with open(run / SEED / "progress.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [100, 200, 300, 400, 500, 600]


def test_restart_seed_moves_nothing_when_another_seed_is_refused(template, tmp_path, capsys):
    """--restart-seed finds the lost seeds, runs every other resume check, and only then moves them:
    a refusal of another seed leaves the folder exactly as it was."""
    run = _copy(template, tmp_path)
    plan = json.loads((run / "plan.json").read_text())
    plan["seeds"] = [0, 1]
    (run / "plan.json").write_text(json.dumps(plan))
    shutil.copytree(run / SEED, run / SEED.parent / "seed1")  # seed 1 holds seed 0's files: refused
    (run / SEED / "checkpoint.pt").unlink()  # seed 0 is lost
    before = _snapshot(run)
    assert main(["run", "--resume", str(run), "--plain", "--restart-seed"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "seed1" in line and "moved to" not in line
    assert _snapshot(run) == before
    assert not list((run / SEED).parent.glob("seed0.lost-*"))


# ----------------------------------------------------------------------------- 2: dropped rows


def _replace_line(path: Path, starts: str, new: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    i = next(i for i, ln in enumerate(lines) if ln.startswith(starts))
    lines[i] = new
    path.write_text("".join(lines))


def test_rows_dropped_while_healing_logs_are_recorded_in_the_result(template, reference, tmp_path, no_report):
    run = _copy(template, tmp_path)
    seed = run / SEED
    _replace_line(seed / "progress.csv", "200,", "200,garbage\n")  # wrong width: dropped, step known
    with open(seed / "evals.csv", "a") as f:
        f.write("\x00junk\n")  # unreadable step: by line number
    lines = (seed / "power.csv").read_text().splitlines(keepends=True)
    lines.insert(2, "not,a,row\n")
    (seed / "power.csv").write_text("".join(lines))
    assert main(["run", "--resume", str(run), "--plain"]) == 0
    result = json.loads((seed / "result.json").read_text())
    parts = dict(p.split(":", 1) for p in result["log_rows_dropped"].split("; "))
    assert parts == {"progress.csv": "200", "evals.csv": "line 3", "power.csv": "line 3"}
    assert result["param_sha256_by_rank"] == reference["param_sha256_by_rank"]  # logs only: training exact
    repairs = json.loads((seed / "log_repairs.json").read_text())
    assert {r["file"] for r in repairs} == {"progress.csv", "evals.csv", "power.csv"}


def test_a_clean_resume_records_no_dropped_rows(reference):
    assert reference["log_rows_dropped"] is None


def test_rows_cut_by_a_kill_past_the_checkpoint_are_not_losses(tmp_path):
    from bench.run.store import CsvLog
    from bench.schema import PROGRESS_COLUMNS

    path = tmp_path / "progress.csv"
    row = ",1.0,1,2.0,3.0,4,0.1,0.2,5.0\n"
    path.write_text(",".join(PROGRESS_COLUMNS) + "\n" + "".join(f"{s}{row}" for s in (100, 200, 300))
                    + "400,garbage\n" + "500,1.0,1")  # a garbage row past the checkpoint, a cut last line
    log = CsvLog(path, PROGRESS_COLUMNS, ("step", "wall_s"))
    log.open(300)
    log.close()
    assert not (tmp_path / "log_repairs.json").exists()
    assert [ln.split(",")[0] for ln in path.read_text().splitlines()[1:]] == ["100", "200", "300"]


# ----------------------------------------------------------------------------- 4: stale temporaries


def _aged(path: Path, content: bytes = b"x") -> Path:
    path.write_bytes(content)
    old = time.time() - 3600
    os.utime(path, (old, old))
    return path


def test_only_our_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    from spikerl.atomic import remove_stale_temps

    dead = _aged(tmp_path / ".report.pdf.4194303999-abcd1234.tmp")  # no such pid
    legacy = _aged(tmp_path / ".checkpoint.pt.k2j4h5g6.tmp")  # before writers named themselves
    live = _aged(tmp_path / f".summary.csv.{os.getppid()}-abcd1234.tmp")  # its writer still runs
    fresh = tmp_path / ".result.json.4194303999-zzzz1234.tmp"
    fresh.write_bytes(b"x")  # written after this process started
    theirs = [_aged(tmp_path / n) for n in (".notes.tmp", "report.pdf.abcd1234.tmp", ".x.abc.tmp", "a.tmp")]
    removed = remove_stale_temps(tmp_path, started_at=time.time() - 60)
    assert sorted(removed) == sorted([dead, legacy])
    assert all(p.exists() for p in (live, fresh, *theirs))


def test_resume_and_report_remove_stale_temporaries(template, tmp_path, no_report):
    run = _copy(template, tmp_path)
    in_run = _aged(run / ".report.pdf.4194303999-abcd1234.tmp")
    in_seed = _aged(run / SEED / ".checkpoint.pt.4194303999-abcd1234.tmp")
    assert main(["run", "--resume", str(run), "--plain"]) == 0
    assert not in_run.exists() and not in_seed.exists()
    from reports.load import load_run

    again = _aged(run / ".report.html.4194303999-abcd1234.tmp")
    load_run(run)
    assert not again.exists()


def test_atomic_writes_name_their_writer(tmp_path, monkeypatch):
    from spikerl import atomic

    seen = []
    real = atomic.tempfile.mkstemp

    def spy(**kw):
        fd, name = real(**kw)
        seen.append(Path(name).name)
        return fd, name

    monkeypatch.setattr(atomic.tempfile, "mkstemp", spy)
    with atomic.atomic_open(tmp_path / "a.json") as f:
        f.write("{}")
    assert seen[0].startswith(f".a.json.{os.getpid()}-") and atomic._TMP_NAME.match(seen[0])


# ----------------------------------------------------------------------------- 3: power segments


def _power_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_power_csv_rows_carry_their_segment_and_its_start(tmp_path):
    from bench.energy.power_csv import PowerCsv
    from bench.energy.segments import read_segments, unmetered_s

    path = tmp_path / "power.csv"
    first = PowerCsv(path, [], 0.0)
    first.open()
    first.write([("0.100", "cpu", "10.0", "1.0", "estimate", True), ("0.200", "cpu", "10.0", "2.0", "estimate", True)])
    first.close()
    second = PowerCsv(path, [], 0.5)  # resumed from a checkpoint at 0.5 s: 0.3 s no row covers
    second.open()
    second.write([("0.600", "cpu", "10.0", "6.0", "estimate", True)])
    second.close()
    third = PowerCsv(path, [], 0.7)  # 0.1 s more
    third.open()
    third.write([("0.800", "cpu", "10.0", "8.0", "estimate", True)])
    third.close()
    rows = _power_rows(path)
    assert [(r["segment"], r["segment_start_s"]) for r in rows] == [("0", "0.000"), ("0", "0.000"),
                                                                    ("1", "0.500"), ("2", "0.700")]
    assert [s.index for s in read_segments(path)] == [0, 1, 2]
    assert unmetered_s(path) == pytest.approx(0.3 + 0.1)


def test_a_power_csv_from_before_segments_is_continued_not_moved_aside(tmp_path):
    from bench.energy.power_csv import PowerCsv
    from bench.energy.segments import unmetered_s
    from bench.schema import POWER_COLUMNS, POWER_COLUMNS_BEFORE_SEGMENTS

    path = tmp_path / "power.csv"
    path.write_text(",".join(POWER_COLUMNS_BEFORE_SEGMENTS) + "\n0.100,cpu,10.0,1.0,estimate,True\n")
    errors: list[str] = []
    meter_csv = PowerCsv(path, errors, 0.4)
    meter_csv.open()
    meter_csv.write([("0.500", "cpu", "10.0", "5.0", "estimate", True)])
    meter_csv.close()
    assert errors == [] and not list(tmp_path.glob("*.bak*"))
    lines = path.read_text().splitlines()
    assert lines == [",".join(POWER_COLUMNS), "0.100,cpu,10.0,1.0,estimate,True,,",
                     "0.500,cpu,10.0,5.0,estimate,True,1,0.400"]
    assert unmetered_s(path) == pytest.approx(0.3)


def test_a_resumed_trace_has_two_segments_and_records_the_time_between(template, tmp_path):
    import torch

    from bench.energy.segments import read_segments, unmetered_s

    run = _copy(template, tmp_path)
    state = torch.load(run / SEED / "checkpoint.pt", weights_only=True)
    power_t_s = state["callbacks"]["energy"]["power_t_s"]  # the trace's clock at the checkpoint
    # (not the loop's wall_s: the meter starts at its own moment; resuming the trace at wall_s left
    # a gap of their difference at every resume, ~1.5-2 s in a kill series)
    import bench.run.runner as runner

    finish, runner.finish_run_folder = runner.finish_run_folder, lambda *a: None
    try:
        assert main(["run", "--resume", str(run), "--plain"]) == 0
    finally:
        runner.finish_run_folder = finish
    power = run / SEED / "power.csv"
    segs = read_segments(power)
    assert [s.index for s in segs] == [0, 1]
    assert segs[1].start_s == pytest.approx(power_t_s, abs=1e-3) and segs[0].last_t_s <= power_t_s
    t = [float(r["t_s"]) for r in _power_rows(power)]
    assert all(a <= b for a, b in pairwise(t))
    result = json.loads((run / SEED / "result.json").read_text())
    assert result["unmetered_s"] == unmetered_s(power)
    # rows are flushed at the checkpoint: what no row covers is about one sampling interval (0.1 s)
    assert 0 <= result["unmetered_s"] < 0.5


def test_the_power_chart_breaks_lines_at_segment_starts():
    from reports.charts import _broken_at

    t, p = _broken_at([0.1, 0.2, 0.6, 0.7], [1.0, 2.0, 3.0, 4.0], [0.5])
    assert [x for x in t[:2]] == [0.1, 0.2] and math_isnan(t[2]) and list(t[3:]) == [0.6, 0.7]
    t, p = _broken_at([0.1, 0.2], [1.0, 2.0], [])
    assert list(t) == [0.1, 0.2]


def math_isnan(x: float) -> bool:
    return x != x


def test_the_appendix_lists_what_a_resume_repaired(template, tmp_path, no_report):
    from reports.load import load_run, power_segment_starts
    from reports.resume_notes import resume_rows

    run = _copy(template, tmp_path)
    _replace_line(run / SEED / "progress.csv", "200,", "200,garbage\n")
    lost = run / SEED.parent / "seed0.lost-20260101T000000Z"
    lost.mkdir()
    assert main(["run", "--resume", str(run), "--plain"]) == 0
    folder = load_run(run)
    rows = {r[0].text: r[1].text for r in resume_rows(folder)}
    assert "log rows dropped while healing: progress.csv:200" in rows[f"resume: {SEED.as_posix()}"]
    assert "--restart-seed" in rows[f"resume: {(SEED.parent / lost.name).as_posix()}"]
    seed = next(r for r in folder.runs if r.seed == 0)
    assert len(power_segment_starts(seed.power)) == 1


def test_a_trace_whose_first_process_wrote_no_row_counts_the_time_before_its_first_segment(tmp_path):
    from bench.energy.power_csv import PowerCsv
    from bench.energy.segments import unmetered_s

    path = tmp_path / "power.csv"
    killed = PowerCsv(path, [], 0.0)  # killed before its first batch of rows
    killed.open()
    killed.close()
    resumed = PowerCsv(path, [], 2.25)
    resumed.open()
    resumed.write([("2.350", "cpu", "10.0", "23.5", "estimate", True)])
    resumed.close()
    assert [r["segment_start_s"] for r in _power_rows(path)] == ["2.250"]
    assert unmetered_s(path) == pytest.approx(2.25)
