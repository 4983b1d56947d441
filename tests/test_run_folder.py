"""The run folder's files read back: plan.json is validated before any path is built from it,
and every writer uses the one schema (bench.schema)."""
import csv
import json

import pytest

from bench import schema
from bench.cli import main
from bench.run import store
from bench.run.plan import Plan
from bench.run.store import RunFolderError


def _plan_json(**changes):
    plan = Plan(methods=("mlp",), envs=("HalfCheetah-v4",), seeds=(0,), profile="smoke", total_steps=1500,
                device="cpu").to_json()
    plan = json.loads(json.dumps(plan))
    plan.update(changes)
    return plan


@pytest.mark.parametrize("changes, needle", [
    ({"seeds": ["0/../../../../tmp/x"]}, "seeds"),
    ({"seeds": [-1]}, "seeds"),
    ({"seeds": [2**32]}, "seeds"),
    ({"seeds": [True]}, "seeds"),
    ({"seeds": [0, 0]}, "seeds"),
    ({"methods": ["../mlp"]}, "methods"),
    ({"methods": "mlp"}, "methods"),
    ({"envs": ["HalfCheetah-v4/../../x"]}, "envs"),
    ({"envs": [".hidden"]}, "envs"),
    ({"total_steps": "1500"}, "total_steps"),
    ({"total_steps": 0}, "total_steps"),
    ({"power_interval_s": float("inf")}, "power_interval_s"),
    ({"country": "../x"}, "country"),
    ({"nproc": -2}, "nproc"),
])
def test_plan_from_a_run_folder_is_validated(changes, needle):
    with pytest.raises(RunFolderError, match=needle):
        Plan.from_json(_plan_json(**changes))


def test_plan_round_trips():
    plan = Plan(methods=("mlp", "popsan"), envs=("Hopper-v5",), seeds=(0, 3), profile="quick", total_steps=9,
                device="auto", td3_overrides={"batch_size": 64}, threads=2, argv=("run",))
    assert Plan.from_json(json.loads(json.dumps(plan.to_json()))) == plan


def test_seed_dir_never_leaves_the_run_folder(tmp_path):
    assert store.seed_dir(tmp_path, "mlp", "HalfCheetah-v4", 3) == tmp_path / "mlp" / "HalfCheetah-v4" / "seed3"
    for method, env, seed in [("..", "e", 0), ("m", "a/b", 0), ("m", "e", "0/../x"), ("m", "e", -1)]:
        with pytest.raises(RunFolderError):
            store.seed_dir(tmp_path, method, env, seed)


@pytest.mark.slow
def test_resume_with_a_traversing_plan_writes_nothing_outside(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    escape = tmp_path / "escaped"
    (run / schema.PLAN).write_text(json.dumps(_plan_json(seeds=["0/../../../escaped"])))
    before = sorted(p.name for p in run.iterdir())
    code = main(["run", "--resume", str(run)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "seeds" in err[0], err
    assert not escape.exists()
    assert sorted(p.name for p in run.iterdir()) == before


def test_deeply_nested_json_is_one_error(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(RunFolderError, match="corrupt"):
        store.read_json(path)


def test_schema_names_are_unique_and_cover_the_summary():
    for cols in (schema.PROGRESS_COLUMNS, schema.EVAL_COLUMNS, schema.POWER_COLUMNS, schema.SUMMARY_COLUMNS):
        assert len(set(cols)) == len(cols)
    assert set(schema.RESULT_COLUMNS) <= set(schema.SUMMARY_COLUMNS)
    assert {s.value for s in schema.Status} >= {"complete", "interrupted", "failed", "running", "pending", "corrupt"}


def test_csv_log_writes_the_schema_header_and_cuts_back(tmp_path):
    log = store.CsvLog(tmp_path / schema.PROGRESS, schema.PROGRESS_COLUMNS)
    log.open(None)
    for step in (100, 200, 300):
        log.append({"step": step, "wall_s": step / 100})
    log.close()
    log.open(resume_step=200)
    log.close()
    rows = list(csv.DictReader(open(tmp_path / schema.PROGRESS)))
    assert tuple(rows[0]) == schema.PROGRESS_COLUMNS
    assert [int(r["step"]) for r in rows] == [100, 200]


def test_resume_drops_half_written_and_garbage_rows(tmp_path):
    path = tmp_path / schema.EVALS
    path.write_text("step,wall_s,return_mean,return_std,episodes,energy_j\n"
                    "500,1.0,-3.0,0.5,2,10.0\n"
                    "750,1.5,,,2,\n"          # return_mean missing: cut short
                    "x,1.7,1.0,0.0,2,11.0\n"  # garbage step
                    "1000,2.0,-2.0,0.5,2,20.0\n"
                    "1500,4")                 # killed mid-write: no newline
    log = store.CsvLog(path, schema.EVAL_COLUMNS, schema.REQUIRED_COLUMNS[schema.EVALS])
    log.open(resume_step=1500)
    log.append({"step": 1500, "wall_s": 3.0, "return_mean": -1.0})
    log.close()
    rows = list(csv.DictReader(open(path)))
    assert [r["step"] for r in rows] == ["500", "1000", "1500"]
    assert rows[-1]["return_mean"] == "-1.0"
