"""Every reader of a run-folder file, fed generated malformed variants of a real run's files
(issue 26, item 7): truncations, spliced and overwritten bytes, wrong encodings, wrong JSON
types, huge and non-finite numbers, deep nesting, garbage CSV rows. Each reader must answer
with one clear error of its kind (a one-line message) or a repair it records; never another
exception (a traceback for the user).

The default run is bounded (FUZZ_EXAMPLES examples per reader, 25 unless set); a longer run:
    FUZZ_EXAMPLES=2000 python -m pytest tests/test_fuzz_readers.py -q
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.run import store
from bench.run.plan import UsageError
from spikerl.checkpoint import CheckpointError
from tests.test_resume_lost import SEED, template  # noqa: F401  (module fixture)

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="FUZZ_SEED" not in os.environ,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

CLEAR = (store.RunFolderError, CheckpointError, UsageError)
"""The errors a reader may answer with: each is printed as one line with exit code 2."""


# ----------------------------------------------------------------------------- malformed bytes

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12)
NUMBER_TEXT = st.sampled_from(["nan", "inf", "-inf", "1e999", "-1e999", "1e308", "9" * 400, "0x1f", "", " ", "1,5",
                               "NaN", "Infinity", "-0", "1e-400", "١٢"])


def _splice(data: bytes, at: int, junk: bytes, overwrite: bool) -> bytes:
    at = min(at, len(data))
    return data[:at] + junk + data[at + (len(junk) if overwrite else 0):]


def _json_edit(data: bytes, draw) -> bytes:  # noqa: ANN001
    try:
        obj = json.loads(data)
    except ValueError:
        return data
    if isinstance(obj, dict) and obj:
        key = draw(st.sampled_from(sorted(obj)))
        obj[key] = draw(JSON_VALUES)
        if isinstance(obj.get("td3"), dict) and obj["td3"] and draw(st.booleans()):
            k = draw(st.sampled_from(sorted(obj["td3"])))
            obj["td3"][k] = draw(JSON_VALUES)
    else:
        obj = draw(JSON_VALUES)
    return json.dumps(obj, allow_nan=True).encode()


def _csv_edit(data: bytes, draw) -> bytes:  # noqa: ANN001
    lines = data.decode("utf-8", errors="replace").split("\n")
    i = draw(st.integers(0, max(0, len(lines) - 1)))
    cells = lines[i].split(",")
    j = draw(st.integers(0, max(0, len(cells) - 1)))
    how = draw(st.integers(0, 3))
    if how == 0:
        cells[j] = draw(NUMBER_TEXT)
    elif how == 1:
        cells = cells + [draw(NUMBER_TEXT)]
    elif how == 2:
        cells = cells[:j]
    else:
        cells = [draw(st.text(max_size=30))]
    lines[i] = ",".join(cells)
    return "\n".join(lines).encode("utf-8", errors="surrogatepass")


@st.composite
def malformed(draw, original: bytes, kind: str) -> bytes:  # noqa: ANN001
    how = draw(st.sampled_from(["truncate", "splice", "overwrite", "encoding", "random", "edit", "edit", "edit",
                                "nest", "huge", "bigfield"]))
    if how == "bigfield":  # one field past the csv module's 128 KiB limit, on a line of its own or in a row
        lines = original.split(b"\n")
        at = draw(st.integers(1, max(1, len(lines) - 1)))
        field = draw(st.sampled_from([b"9", b'"x', b"x"])) * draw(st.integers(131_073, 300_000))
        lines.insert(at, field if kind == "csv" else b'"' + field + b'"')
        return b"\n".join(lines)
    if how == "truncate":
        return original[:draw(st.integers(0, len(original)))]
    if how in ("splice", "overwrite"):
        return _splice(original, draw(st.integers(0, len(original))), draw(st.binary(min_size=1, max_size=48)),
                       how == "overwrite")
    if how == "encoding":
        codec = draw(st.sampled_from(["utf-16", "utf-32", "latin-1", "cp1252"]))
        text = original.decode("utf-8") + draw(st.text(alphabet="éß€\u00ff", max_size=4))
        return text.encode(codec, errors="replace")
    if how == "random":
        return draw(st.binary(max_size=300))
    if how == "nest":
        n = draw(st.integers(1, 200_000))
        return (b"[" * n + b"]" * n) if kind == "json" else b"t_s\n" + b'"' * n
    if how == "huge":
        return original.replace(b"0.", b"9" * draw(st.integers(300, 5000)) + b".", 3)
    return _json_edit(original, draw) if kind == "json" else _csv_edit(original, draw)


# ----------------------------------------------------------------------------- the readers


def _plan(run: Path) -> None:
    from bench.run.plan import Plan
    from bench.run.sweep import unfinished_runs
    from bench.run.validate import check_plan

    plan = Plan.from_json(store.load_plan(run), run / "plan.json")
    check_plan(plan)
    unfinished_runs(run, plan)


def _config(run: Path) -> None:
    from baselines.registry import get_method
    from bench.run.resume import load_run_config

    load_run_config(run / SEED, get_method("mlp"), "HalfCheetah-v4")


def _result(run: Path) -> None:
    from bench.run.resume import _is_finished
    from bench.run.summary import is_complete

    is_complete(run / SEED)
    _is_finished(run / SEED)


def _environment(run: Path) -> None:
    store.read_json(run / "environment.json")


def _log(name: str) -> Callable[[Path], None]:
    def read(run: Path) -> None:
        from bench.run import log_repairs
        from bench.run.resume import check_logs
        from bench.run.store import CsvLog
        from bench.run.summary import last_progress
        from bench.schema import EVAL_COLUMNS, PROGRESS_COLUMNS, REQUIRED_COLUMNS

        last_progress(run / SEED)
        check_logs(run / SEED)  # the resume reads it only once this passed
        columns = PROGRESS_COLUMNS if name == "progress.csv" else EVAL_COLUMNS
        log = CsvLog(run / SEED / name, columns, REQUIRED_COLUMNS[name])
        log.open(300)  # cut back to the checkpoint; garbage rows recorded
        log.close()
        log_repairs.summary(run / SEED)
    return read


def _power(run: Path) -> None:
    from bench.energy.power_csv import PowerCsv, last_segment
    from bench.energy.segments import unmetered_s
    from bench.run.resume import ResumePoint, check_logs, cut_power_csv

    path = run / SEED / "power.csv"
    unmetered_s(path)
    last_segment(path)
    check_logs(run / SEED)
    cut_power_csv(path, ResumePoint(step=300, wall_s=5.0, energy_j_by_device={"cpu": 50.0}))
    errors: list[str] = []
    out = PowerCsv(path, errors, 5.0)
    out.open()
    assert out.failure is None, out.failure
    out.write([("5.100", "cpu", "10.0", "51.0", "estimate", True)])
    out.close()
    unmetered_s(path)


def _log_repairs(run: Path) -> None:
    from bench.run import log_repairs

    assert isinstance(log_repairs.read(run / SEED), list)
    log_repairs.summary(run / SEED)
    log_repairs.record(run / SEED, "progress.csv", ["200"], 300)


def _report_reader(run: Path) -> None:
    from reports.load import load_run

    folder = load_run(run)  # every file of the folder; problems listed, never raised
    assert all("\n" not in str(p) for p in folder.problems)


def _sweep_status(run: Path) -> None:
    from bench.run.status import read_status

    read_status(run)


FILES = {
    "plan.json": ("json", [_plan, _sweep_status, _report_reader]),
    "config.json": ("json", [_config, _sweep_status, _report_reader]),
    "result.json": ("json", [_result, _sweep_status, _report_reader]),
    "environment.json": ("json", [_environment, _report_reader]),
    "progress.csv": ("csv", [_log("progress.csv"), _sweep_status, _report_reader]),
    "evals.csv": ("csv", [_log("evals.csv"), _report_reader]),
    "power.csv": ("csv", [_power, _report_reader]),
    "summary.csv": ("csv", [_report_reader, _sweep_status]),
    "log_repairs.json": ("json", [_log_repairs, _report_reader]),
}


def _where(run: Path, name: str) -> Path:
    return run / name if name in ("plan.json", "environment.json", "summary.csv") else run / SEED / name


@pytest.fixture(scope="module")
def sample(template):  # noqa: F811
    """The template run with a log_repairs.json of its own, every file present."""
    from bench.run import log_repairs

    log_repairs.record(template / SEED, "progress.csv", ["200", "line 7"], 300)
    return template


def _answer(reader: Callable[[Path], None], run: Path) -> None:
    try:
        reader(run)
    except CLEAR as exc:
        text = str(exc)
        assert text.strip() and len(text) < 4000, text
        # one line on stderr: bench.cli.main joins whitespace, so a message must say something
    except Exception as exc:  # noqa: BLE001 - the failure this test looks for
        pytest.fail(f"{reader.__name__} raised {type(exc).__name__}: {str(exc)[:300]}")


@pytest.mark.parametrize("name", sorted(FILES))
def test_every_reader_answers_malformed_files_clearly(name, sample):
    kind, readers = FILES[name]
    original = _where(sample, name).read_bytes()
    ran: list[int] = []

    @FUZZ
    @given(data=malformed(original, kind), which=st.integers(0, len(readers) - 1))
    def fuzz(data: bytes, which: int) -> None:
        work = Path(tempfile.mkdtemp(prefix="fuzz-"))
        try:
            run = work / "run"
            shutil.copytree(sample, run, ignore=shutil.ignore_patterns("checkpoint.pt", "report*", "figures"))
            _where(run, name).write_bytes(data)
            _answer(readers[which], run)
            ran.append(which)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    fuzz()
    print(f"{name}: {len(ran)} malformed variants answered clearly")  # shown with -s: the count of a long run


def test_a_plan_lacking_a_field_without_default_is_refused_in_one_line(tmp_path):
    """Found by the fuzz: a plan.json whose "device" key was mangled raised a TypeError."""
    from bench.run.plan import Plan

    plan = {"methods": ["mlp"], "envs": ["HalfCheetah-v4"], "seeds": [0], "profile": "smoke", "total_steps": 600}
    with pytest.raises(store.RunFolderError, match="lacks device"):
        Plan.from_json(plan, "plan.json")


def test_an_infinite_step_in_progress_is_no_traceback(tmp_path):
    """Found by the fuzz: the last progress row of a run that did not finish, step 'inf'."""
    from bench.run.summary import last_progress
    from bench.schema import PROGRESS_COLUMNS

    (tmp_path / "progress.csv").write_text(",".join(PROGRESS_COLUMNS) + "\ninf,1,1,1,1,1,1,1,1\n")
    assert last_progress(tmp_path) == {"steps": 0, "wall_s": None}
