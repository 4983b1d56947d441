"""A sweep in a file (`run --config sweep.toml`) and settings for one method (`--set METHOD:KEY=VALUE`).

Plans are built through the real parser and `new_plan`, as `spikerl-bench run` builds them; bad
files go through `main` and must exit 2 with one line before anything is written. No training.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from baselines.registry import get_method
from bench.cli.config_file import MAX_FILE_BYTES, with_config_file
from bench.cli.main import build_parser, main
from bench.cli.run import new_plan
from bench.run import store
from bench.run.plan import Plan
from bench.run.resolve import resolve_config
from bench.run.runner import create_run_folder
from bench.run.store import RunFolderError
from bench.run.validate import check_plan

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")

SWEEP = """
profile = "paper"
methods = ["spikerl", "popsan", "dsrl", "mlp"]
envs = ["HalfCheetah-v4", "Hopper-v4"]
seeds = "0-9"
total-steps = "1M"
baseline = "popsan"
country = "FRA"
launcher = "slurm"
jobs = 64
[set]
batch_size = 128
actor.hidden = [64, 64]
[set.popsan]
lr_actor = 2e-4
"actor.timesteps" = 3
[set.dsrl]
actor.timesteps = 6
[slurm]
partition = "gpu"
time = "2-00:00:00"
gpus-per-task = 1
opt = { constraint = "a100" }
"""


def args_of(*argv: str):
    parser = build_parser()
    full = ["run", *argv]
    return with_config_file(parser, full, parser.parse_args(full))


def plan_of(*argv: str) -> Plan:
    return new_plan(args_of(*argv))


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def run_cli(capsys, *argv: str) -> tuple[int, list[str]]:
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err.strip().splitlines()


# ----------------------------------------------------------------------------- the file's values


def test_a_file_takes_what_the_flags_take(tmp_path):
    f = write(tmp_path / "sweep.toml", SWEEP)
    plan = plan_of("--config", str(f))
    assert plan.profile == "paper" and plan.methods == ("spikerl", "popsan", "dsrl", "mlp")
    assert plan.envs == ("HalfCheetah-v4", "Hopper-v4") and plan.seeds == tuple(range(10))
    assert plan.total_steps == 1_000_000 and plan.baseline == "popsan" and plan.country == "FRA"
    assert plan.launcher == "slurm" and plan.jobs == 64
    assert plan.slurm == {"partition": "gpu", "time_min": 2 * 24 * 60, "gpus_per_task": 1,
                          "extra": {"constraint": "a100"}}
    assert plan.td3_overrides == {"batch_size": 128} and plan.actor_overrides == {"hidden": "64,64"}
    assert plan.method_overrides == {"popsan": {"td3": {"lr_actor": 2e-4}, "actor": {"timesteps": "3"}},
                                     "dsrl": {"td3": {}, "actor": {"timesteps": "6"}}}
    assert plan.config_file == str(f)
    assert plan.config_sha256 == hashlib.sha256(f.read_bytes()).hexdigest()
    assert plan.device == "auto" and plan.precision is None  # not in the file: the flags' defaults


def test_plan_json_records_the_merged_plan_and_the_file(tmp_path):
    f = write(tmp_path / "sweep.toml", SWEEP)
    plan = plan_of("--config", str(f), "--seeds", "4")
    create_run_folder(tmp_path / "run", plan)  # the checks, then plan.json; no training
    stored = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert stored["seeds"] == [4] and stored["envs"] == ["HalfCheetah-v4", "Hopper-v4"]
    assert stored["config_file"] == str(f) and stored["config_sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    assert stored["method_overrides"]["popsan"] == {"td3": {"lr_actor": 2e-4}, "actor": {"timesteps": "3"}}
    assert stored["overrides"]["methods"] == stored["method_overrides"]
    assert Plan.from_json(store.load_plan(tmp_path / "run")) == plan


def test_flags_beside_the_file_override_it(tmp_path):
    f = write(tmp_path / "sweep.toml", 'methods = ["popsan", "mlp"]\nseeds = "0-9"\ntotal-steps = 5000\n'
                                        'country = "FRA"\nthreads = 2\n')
    plan = plan_of("--config", str(f), "--seeds", "3")
    assert plan.seeds == (3,)
    assert plan.methods == ("popsan", "mlp") and plan.total_steps == 5000 and plan.country == "FRA"
    assert plan.threads == 2
    plan = plan_of("--seeds", "3", "--config", str(f))  # wherever the flag stands
    assert plan.seeds == (3,) and plan.total_steps == 5000


def test_a_flag_equal_to_its_default_still_overrides_the_file(tmp_path):
    f = write(tmp_path / "sweep.toml", 'profile = "smoke"\ncountry = "FRA"\npower-interval = 0.5\n'
                                        'device = "cpu"\nplain = true\n')
    plan = plan_of("--config", str(f))
    assert (plan.profile, plan.country, plan.power_interval_s, plan.device) == ("smoke", "FRA", 0.5, "cpu")
    plan = plan_of("--config", str(f), "--profile", "quick", "--country", "USA", "--power-interval", "0.1",
                   "--device", "auto")
    assert (plan.profile, plan.country, plan.power_interval_s, plan.device) == ("quick", "USA", 0.1, "auto")
    assert args_of("--config", str(f)).plain is True


def test_repeatable_flags_add_to_the_file_and_the_command_line_wins_per_key(tmp_path):
    f = write(tmp_path / "sweep.toml", 'methods = ["popsan", "mlp"]\nlauncher = "slurm"\n'
                                        '[set]\nbatch_size = 100\neval_episodes = 2\n'
                                        '[set.popsan]\nlr_actor = 2e-4\n'
                                        '[slurm]\nopt = { constraint = "a100" }\n')
    plan = plan_of("--config", str(f), "--set", "batch_size=64", "--set", "popsan:lr_actor=5e-4",
                   "--slurm-opt", "mail-type=END")
    assert plan.td3_overrides == {"batch_size": 64, "eval_episodes": 2}
    assert plan.method_overrides["popsan"]["td3"] == {"lr_actor": 5e-4}
    assert plan.slurm["extra"] == {"constraint": "a100", "mail-type": "END"}


def test_values_as_text_numbers_lists_and_both_spellings_of_a_key(tmp_path):
    f = write(tmp_path / "sweep.toml", 'methods = "popsan,mlp"\nseeds = [0, "3-4"]\ntotal_steps = 1e6\n'
                                        'target_return = 3000\nslurm_time = 90\nlauncher = "slurm"\n'
                                        '[set]\ncritic_hidden = [400, 300]\nlr_critic = 5e-4\n')
    plan = plan_of("--config", str(f))
    assert plan.methods == ("popsan", "mlp") and plan.seeds == (0, 3, 4) and plan.total_steps == 1_000_000
    assert plan.target_return == 3000.0 and plan.slurm == {"time_min": 90}
    assert plan.td3_overrides == {"critic_hidden": (400, 300), "lr_critic": 5e-4}


def test_every_example_sweep_goes_through_the_real_parser():
    files = sorted((REPO / "examples" / "sweeps").glob("*.toml"))
    assert {f.name for f in files} >= {"paper.toml", "smoke-local.toml"}
    for f in files:
        plan = plan_of("--config", str(f), "--device", "cpu")  # the paper's cuda is not here
        check_plan(plan)
        assert plan.config_file == str(f) and plan.config_sha256 is not None


def test_the_slurm_guide_shows_the_paper_sweep_file():
    guide = (REPO / "docs" / "guides" / "slurm.md").read_text()
    paper = (REPO / "examples" / "sweeps" / "paper.toml").read_text()
    settings = [line for line in paper.splitlines() if line and not line.startswith("#")]
    assert all(line in guide for line in settings), "the SLURM guide shows another paper sweep than paper.toml"


# ----------------------------------------------------------------------------- --set METHOD:KEY=VALUE


def test_a_method_override_reaches_that_method_only():
    plan = plan_of("--methods", "popsan,dsrl,mlp", "--set", "lr_critic=5e-4", "--set", "popsan:lr_actor=2e-4",
                   "--set", "dsrl:lr_critic=2e-3", "--set", "dsrl:actor.timesteps=6",
                   "--set", "popsan:actor.pop_dim=7")
    run = {m: resolve_config(get_method(m), "HalfCheetah-v4", plan, CPU) for m in plan.methods}
    assert run["popsan"].td3.lr_actor == 2e-4
    assert run["dsrl"].td3.lr_actor == 1e-3 and run["mlp"].td3.lr_actor == 3e-4  # their recipes
    assert run["popsan"].td3.lr_critic == 5e-4 and run["mlp"].td3.lr_critic == 5e-4  # the global --set
    assert run["dsrl"].td3.lr_critic == 2e-3  # one method's setting beats the global one
    assert run["dsrl"].actor["timesteps"] == 6 and run["popsan"].actor["timesteps"] == 5
    assert run["popsan"].actor["pop_dim"] == 7 and "pop_dim" not in run["mlp"].actor  # mlp has none: no error
    check_plan(plan)


def test_a_method_precision_beats_the_global_flag():
    plan = plan_of("--methods", "popsan,mlp", "--precision", "fp32", "--set", "popsan:precision=bf16")
    assert resolve_config(get_method("popsan"), "HalfCheetah-v4", plan, CPU).td3.precision == "bf16"
    assert resolve_config(get_method("mlp"), "HalfCheetah-v4", plan, CPU).td3.precision == "fp32"


# ----------------------------------------------------------------------------- refused, nothing written

BAD_FILES = {
    "unknown-key": ('total-step = 5000\n', ["unknown key 'total-step'", "did you mean 'total-steps'"]),
    "unknown-group-key": ('launcher = "slurm"\n[slurm]\npartitio = "gpu"\n',
                          ["unknown key 'slurm.partitio'", "did you mean 'slurm.partition'"]),
    "unknown-table": ('[gpu]\ncount = 2\n', ["unknown key 'gpu'"]),
    "hidden-flag": ('only-methods = "mlp"\n', ["unknown key 'only-methods'"]),
    "resume-key": ('resume = "runs/x"\n', ["'resume' is not allowed"]),
    "config-key": ('config = "other.toml"\n', ["'config' is not allowed"]),
    "jobs-word": ('launcher = "local"\njobs = "many"\n', ["jobs: invalid int value: 'many'"]),
    "jobs-bool": ('jobs = true\n', ["jobs: expected text or a number, got true"]),
    "jobs-table": ('[jobs]\nn = 2\n', ["jobs: expected a value, got a table"]),
    "methods-number": ('methods = 3\n', ["methods: expected text"]),
    "methods-numbers": ('methods = [1, 2]\n', ["methods: expected text"]),
    "total-steps-list": ('total-steps = [1000]\n', ["total-steps: takes one value, not a list"]),
    "list-item-with-comma": ('methods = ["mlp,popsan"]\n', ["methods: a list item holds a comma"]),
    "seeds-out-of-range": ('seeds = "0-99999999999"\n', ["seeds: at most 10000 seeds"]),
    "seeds-negative": ('seeds = [-1]\n', ["seeds: seeds must be distinct non-negative"]),
    "profile-unknown": ('profile = "huge"\n', ["profile: invalid choice: 'huge'"]),
    "power-interval-tiny": ('power-interval = 1e-9\n', ["power-interval: power sampling interval must be"]),
    "target-return-inf": ('target-return = inf\n', ["target-return: expected a finite number"]),
    "plain-word": ('plain = "yes"\n', ["plain: expected true or false"]),
    "country-a-date": ('country = 1979-05-27\n', ["country: expected text or a number"]),
    "given-twice": ('total_steps = 100\ntotal-steps = 200\n', ["given twice"]),
    "given-twice-in-a-group": ('slurm-partition = "a"\n[slurm]\npartition = "b"\n', ["given twice"]),
    "set-unknown": ('[set]\nwarp = 9\n', ["unknown setting 'warp'"]),
    "set-garbage": ('[set]\nbatch_size = "lots"\n', ["--set batch_size"]),
    "set-method-garbage": ('methods = ["popsan"]\n[set.popsan]\nlr_actor = "fast"\n', ["--set popsan:lr_actor"]),
    "set-method-not-in-plan": ('methods = ["mlp"]\n[set.popsan]\nlr_actor = 1e-4\n', ["'popsan' is not among"]),
    "set-method-actor-unknown": ('methods = ["mlp"]\n[set.mlp]\nactor.timesteps = 4\n',
                                 ["--set mlp:actor.timesteps", "no actor setting 'timesteps'"]),
    "slurm-without-slurm": ('[slurm]\npartition = "gpu"\n', ["need --launcher slurm"]),
    "slurm-opt-two-words": ('launcher = "slurm"\n[slurm]\nopt = { constraint = "a b" }\n', ["--slurm-opt constraint"]),
    "country-number": ('country = 123\n', ["--country must be an ISO-3"]),
    "not-toml": ('methods = [mlp\n', ["invalid TOML", "line 1"]),
    "not-toml-line-3": ('methods = ["mlp"]\n\nseeds = = 3\n', ["invalid TOML", "line 3"]),
    "deeply-nested": ("seeds = " + "[" * 100_000 + "]" * 100_000 + "\n", ["invalid TOML"]),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_file_is_one_line_exit_2_and_writes_nothing(case, tmp_path, capsys):
    text, needles = BAD_FILES[case]
    f = write(tmp_path / "sweep.toml", text)
    out = tmp_path / "out"
    code, err = run_cli(capsys, "run", "--config", str(f), "--out", str(out))
    assert code == 2 and len(err) == 1, err
    assert all(n in err[0] for n in needles), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.toml"], "a refused sweep wrote something"


def test_file_errors_name_the_file(tmp_path, capsys):
    f = write(tmp_path / "my-sweep.toml", 'jobs = "many"\n')
    code, err = run_cli(capsys, "run", "--config", str(f), "--out", str(tmp_path / "out"))
    assert code == 2 and str(f) in err[0]


def test_unreadable_files(tmp_path, capsys):
    big = tmp_path / "big.toml"
    big.write_text("# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    binary = tmp_path / "binary.toml"
    binary.write_bytes(bytes(range(256)))
    (tmp_path / "folder.toml").mkdir()
    cases = {"missing.toml": "no such file", "folder.toml": "not a regular file", "big.toml": "larger than 1 MiB",
             "binary.toml": "not UTF-8"}
    for name, needle in cases.items():
        code, err = run_cli(capsys, "run", "--config", str(tmp_path / name), "--out", str(tmp_path / "out"))
        assert code == 2 and len(err) == 1 and needle in err[0], (name, err)
    assert not (tmp_path / "out").exists()


def test_resume_with_a_config_is_refused(tmp_path, capsys):
    f = write(tmp_path / "sweep.toml", 'methods = ["mlp"]\n')
    code, err = run_cli(capsys, "run", "--resume", str(tmp_path), "--config", str(f))
    assert code == 2 and len(err) == 1 and "drop --config" in err[0]


@pytest.mark.parametrize("item, needle", [
    ("popsan:lr_actor=1e-4", "'popsan' is not among the methods (mlp)"),
    ("mlp:warp=1", "unknown setting 'mlp:warp'"),
    ("mlp:lr_actor=fast", "--set mlp:lr_actor"),
    ("mlp:lr_actor=nan", "lr_actor"),
    ("mlp:actor.timesteps=4", "--set mlp:actor.timesteps"),
    ("../x:lr_actor=1", "METHOD:KEY=VALUE"),
    ("mlp:", "key=value"),
])
def test_bad_method_settings_from_flags(item, needle, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = run_cli(capsys, "run", "--methods", "mlp", "--set", item, "--out", str(out))
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not out.exists()


@pytest.mark.parametrize("value", [
    {"mlp": 5}, {"mlp": {"td3": 5}}, {"mlp": {"weights": {}}}, {"../x": {"td3": {}}}, [1], {"mlp": {"td3": {1: 2}}},
])
def test_plan_json_method_overrides_are_not_trusted(value):
    d = Plan(methods=("mlp",), envs=("HalfCheetah-v4",), seeds=(0,), profile="smoke", total_steps=1000,
             device="cpu").to_json()
    d["method_overrides"] = value
    with pytest.raises(RunFolderError, match="method_overrides"):
        Plan.from_json(d)


@pytest.mark.parametrize("key, value", [("config_sha256", "xyz"), ("config_sha256", "A" * 64), ("config_file", 5),
                                        ("config_file", "")])
def test_plan_json_config_fields_are_not_trusted(key, value):
    d = Plan(methods=("mlp",), envs=("HalfCheetah-v4",), seeds=(0,), profile="smoke", total_steps=1000,
             device="cpu").to_json()
    d[key] = value
    with pytest.raises(RunFolderError, match=key):
        Plan.from_json(d)


def test_a_clusters_file_runs_locally_without_its_slurm_table(tmp_path, capsys):
    path = write(tmp_path / "sweep.toml", SWEEP)
    plan = plan_of("--config", str(path), "--launcher", "local", "--jobs", "2")
    assert (plan.launcher, plan.jobs, plan.slurm) == ("local", 2, {})
    assert "[slurm] options of" in capsys.readouterr().err
    # given on the command line, a SLURM option without --launcher slurm is still a contradiction
    code, lines = run_cli(capsys, "run", "--config", str(path), "--launcher", "local", "--slurm-qos", "high",
                          "--out", str(tmp_path / "run"))
    assert code == 2 and "need --launcher slurm" in lines[-1] and not (tmp_path / "run").exists()
