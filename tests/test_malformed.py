"""A battery of malformed inputs across the whole command line (issue 12, point 6).

For each input: exit code 2, exactly one line on stderr, no traceback, and no file created or
changed anywhere under the test's folder (the tree, sizes, mtimes and contents are compared).
Most cases run the CLI in-process (`bench.cli.main.main`); a few go through a subprocess, as a
user's shell would.

Cases marked UNSAFE_ON_OLD would start absurd work (a fork per rank, terabyte allocations,
endless loops) on a version that does not refuse them; they are ordinary cases here.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.cli.main import main

REPO = Path(__file__).resolve().parents[1]
SEED = Path("mlp") / "HalfCheetah-v4" / "seed0"
TINY = ["--profile", "smoke", "--methods", "mlp", "--total-steps", "300", "--plain",
        "--set", "start_steps=100", "--set", "update_after=100", "--set", "eval_every=300",
        "--set", "eval_episodes=1", "--set", "checkpoint_every=300", "--set", "max_ep_len=100",
        "--set", "critic_hidden=16,16", "--set", "actor.hidden=16,16"]
"""A run small enough to finish in seconds should a malformed input slip through."""


# ----------------------------------------------------------------------------- the template run


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A one-seed run folder killed after its last checkpoint: result.json removed, so --resume
    would continue it. Each case copies it before changing one thing."""
    root = tmp_path_factory.mktemp("template")
    run = root / "run"
    cwd = os.getcwd()
    os.chdir(root)
    try:
        import bench.run.runner as runner

        finish, runner.finish_run_folder = runner.finish_run_folder, lambda *a: None  # no report: faster
        try:
            assert main(["run", *TINY, "--out", str(run)]) == 0
        finally:
            runner.finish_run_folder = finish
    finally:
        os.chdir(cwd)
    (run / SEED / "result.json").unlink()
    return run


# ----------------------------------------------------------------------------- folder edits


def _json_edit(rel, fn):
    def edit(run: Path) -> None:
        path = run / rel
        data = json.loads(path.read_text())
        fn(data)
        path.write_text(json.dumps(data))
    return edit


def _set(rel, key_path, value):
    def fn(d):
        *head, last = key_path
        for k in head:
            d = d[k]
        d[last] = value
    return _json_edit(rel, fn)


def _write(rel, content):
    def edit(run: Path) -> None:
        path = run / rel
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return edit


def _ckpt_edit(fn):
    def edit(run: Path) -> None:
        path = run / SEED / "checkpoint.pt"
        state = torch.load(path, weights_only=True)
        fn(state)
        torch.save(state, path)
    return edit


def _ckpt_set(key, value):
    def fn(state):
        state[key] = value
    return _ckpt_edit(fn)


def _ckpt_actor_wider(state):
    # a checkpoint whose labels say this run but whose actor has another shape
    sd = state["td3"]["actor"]
    k = next(k for k in sd if k.endswith("weight"))
    sd[k] = torch.zeros(sd[k].shape[0] + 3, sd[k].shape[1])


def _seed_path_is_a_file(run: Path) -> None:
    shutil.rmtree(run / SEED)
    (run / SEED).write_text("not a folder")


def _csv_header(rel, header):
    def edit(run: Path) -> None:
        path = run / rel
        lines = path.read_text().splitlines(keepends=True)
        path.write_text(header + "\n" + "".join(lines[1:]))
    return edit


DEEP = "[" * 100_000 + "]" * 100_000
BINARY = bytes(range(256)) * 4

PLAN = "plan.json"
CONFIG = str(SEED / "config.json")

RESUME_CASES = {
    # plan.json
    "plan-traversal-seed": _set(PLAN, ["seeds"], ["0/../../../../tmp/x"]),
    "plan-not-json": _write(PLAN, "{methods: mlp"),
    "plan-binary": _write(PLAN, BINARY),
    "plan-deeply-nested": _write(PLAN, DEEP),
    "plan-a-list": _write(PLAN, "[1, 2]"),
    "plan-total-steps-1e308": _set(PLAN, ["total_steps"], 1e308),
    "plan-power-interval-inf": _write(PLAN, "PLACEHOLDER"),  # replaced below (Infinity literal)
    "plan-unknown-method": _set(PLAN, ["methods"], ["nope"]),
    "plan-engine-unknown": _set(PLAN, ["engine"], "warp"),
    "plan-nproc-zero": _set(PLAN, ["nproc"], 0),
    "plan-unknown-env": _set(PLAN, ["envs"], ["Nope-v1"]),
    "plan-td3-override-garbage": _set(PLAN, ["td3_overrides"], {"lr_actor": "fast"}),
    "plan-td3-override-unknown": _set(PLAN, ["td3_overrides"], {"warp": 9}),
    "plan-actor-override-garbage": _set(PLAN, ["actor_overrides"], {"hidden": "wide"}),
    "plan-baseline-not-a-name": _set(PLAN, ["baseline"], 5),
    "plan-unknown-country": _set(PLAN, ["country"], "ZZZ"),
    "plan-total-steps-below-checkpoint": _set(PLAN, ["total_steps"], 200),
    "plan-target-return-string": _set(PLAN, ["target_return"], "high"),
    "plan-backend-nccl-without-cuda": _set(PLAN, ["backend"], "nccl"),
    "plan-method-overrides-not-a-table": _set(PLAN, ["method_overrides"], {"mlp": 5}),
    "plan-method-overrides-garbage": _set(PLAN, ["method_overrides"], {"mlp": {"td3": {"lr_actor": "fast"}}}),
    "plan-method-overrides-other-method": _set(PLAN, ["method_overrides"], {"popsan": {"td3": {"lr_actor": 0.1}}}),
    "plan-method-override-edited-lr": _set(PLAN, ["method_overrides"], {"mlp": {"td3": {"lr_actor": 0.5}}}),
    "plan-method-override-edited-actor": _set(PLAN, ["method_overrides"], {"mlp": {"actor": {"hidden": [32, 32]}}}),
    "plan-config-sha256-garbage": _set(PLAN, ["config_sha256"], "not a digest"),
    "plan-launcher-unknown": _set(PLAN, ["launcher"], "kubernetes"),
    "plan-jobs-zero": _set(PLAN, ["jobs"], 0),
    "plan-jobs-inline-parallel": _set(PLAN, ["jobs"], 4),
    "plan-slurm-injection": _set(PLAN, ["slurm"], {"extra": {"comment": "x\nrm -rf /"}}),
    "plan-slurm-without-slurm": _set(PLAN, ["slurm"], {"partition": "gpu"}),
    "plan-seed-batch-zero": _set(PLAN, ["seed_batch"], 0),
    "plan-seed-batch-string": _set(PLAN, ["seed_batch"], "2"),
    # config.json
    "config-edited-lr": _set(CONFIG, ["td3", "lr_actor"], 0.5),
    "config-engine-unknown": _set(CONFIG, ["engine"], "warp"),
    "config-total-steps-below-checkpoint": _set(CONFIG, ["td3", "total_steps"], 200),
    "config-lr-nan": _write(CONFIG, "PLACEHOLDER"),  # replaced below (NaN literal)
    "config-not-json": _write(CONFIG, "{"),
    "config-binary": _write(CONFIG, BINARY),
    "config-deeply-nested": _write(CONFIG, DEEP),
    "config-without-td3": _json_edit(CONFIG, lambda d: d.pop("td3")),
    "config-actor-hidden-edited": _set(CONFIG, ["actor", "hidden"], [64, 64]),
    "config-other-method": _set(CONFIG, ["method"], "popsan"),
    "config-critic-hidden-strings": _set(CONFIG, ["td3", "critic_hidden"], ["a", "b"]),
    # checkpoint.pt
    "checkpoint-garbage": _write(str(SEED / "checkpoint.pt"), b"garbage"),
    "checkpoint-other-method": _ckpt_set("method", "popsan"),
    "checkpoint-other-actor-params": _ckpt_set("actor_params", {"hidden": [64, 64]}),
    "checkpoint-other-config": _ckpt_edit(lambda s: s["config"].update(lr_actor=0.5)),
    "checkpoint-other-shape": _ckpt_edit(_ckpt_actor_wider),
    "checkpoint-other-seed": _ckpt_set("seed", 7),
    # CSV logs and the seed folder
    "progress-bad-header": _csv_header(str(SEED / "progress.csv"), "a,b,c"),
    "progress-binary": _write(str(SEED / "progress.csv"), BINARY),
    "evals-binary": _write(str(SEED / "evals.csv"), BINARY),
    "evals-bad-header": _csv_header(str(SEED / "evals.csv"), "step,return"),
    "power-binary": _write(str(SEED / "power.csv"), BINARY),
    "result-corrupt": _write(str(SEED / "result.json"), "{\"status\": "),
    "seed-path-is-a-file": _seed_path_is_a_file,
}


def _plan_inf(run: Path) -> None:
    text = (run / PLAN).read_text()
    data = json.loads(text)
    data["power_interval_s"] = float("inf")
    (run / PLAN).write_text(json.dumps(data))  # json writes Infinity


def _config_nan(run: Path) -> None:
    data = json.loads((run / CONFIG).read_text())
    data["td3"]["lr_actor"] = float("nan")
    (run / CONFIG).write_text(json.dumps(data))  # json writes NaN


RESUME_CASES["plan-power-interval-inf"] = _plan_inf
RESUME_CASES["config-lr-nan"] = _config_nan


# ----------------------------------------------------------------------------- command lines

# {out}: a run folder that does not exist yet; {tmp}: the case's folder; {file}: an existing file;
# {run}: a copy of the template run folder; {ckpt}: its checkpoint
NEW_RUN_CASES = {
    "out-under-a-file": ["--out", "{file}/run"],
    "out-in-proc": ["--out", "/proc/spikerl-bench-run"],
    "out-in-sys": ["--out", "/sys/spikerl-bench-run"],
    "out-nul-byte": ["--out", "{tmp}/a\0b"],
    "out-name-too-long": ["--out", "{tmp}/" + "x" * 300],
    "out-is-cwd": ["--out", ""],
    "set-lr-nan": ["--set", "lr_actor=nan"],
    "set-lr-inf": ["--set", "lr_actor=inf"],
    "set-lr-overflow": ["--set", "lr_critic=1e400"],
    "set-lr-negative": ["--set", "lr_actor=-1e-3"],
    "set-lr-zero": ["--set", "lr_critic=0"],
    "set-expl-noise-negative": ["--set", "expl_noise=-0.1"],
    "set-target-noise-nan": ["--set", "target_noise=nan"],
    "set-noise-clip-negative": ["--set", "noise_clip=-1"],
    "set-tau-nan": ["--set", "tau=nan"],
    "set-gamma-inf": ["--set", "gamma=inf"],
    "set-critic-hidden-zero": ["--set", "critic_hidden=0"],
    "set-critic-hidden-one-zero": ["--set", "critic_hidden=16,0"],
    "set-critic-hidden-empty": ["--set", "critic_hidden=,"],
    "set-critic-hidden-float": ["--set", "critic_hidden=16.5,16"],
    "set-batch-size-zero": ["--set", "batch_size=0"],
    "set-updates-per-step-nan": ["--set", "updates_per_step=nan"],
    "set-updates-per-step-zero": ["--set", "updates_per_step=0"],
    "set-precision-fp16": ["--set", "precision=fp16"],
    "set-bool-for-int": ["--set", "batch_size=yes"],
    "set-empty-key": ["--set", "=3"],
    "set-actor-hidden-zero": ["--set", "actor.hidden=0"],
    "set-actor-hidden-negative": ["--set", "actor.hidden=-5,3"],
    "set-actor-unknown": ["--set", "actor.colour=blue"],
    "set-popsan-timesteps-zero": ["--methods", "popsan", "--set", "actor.timesteps=0"],
    "set-popsan-encoding-unknown": ["--methods", "popsan", "--set", "actor.encoding=magic"],
    "set-popsan-std-nan": ["--methods", "popsan", "--set", "actor.std=nan"],
    "set-popsan-std-negative": ["--methods", "popsan", "--set", "actor.std=-1"],
    "set-popsan-pop-dim-one": ["--methods", "popsan", "--set", "actor.pop_dim=1"],
    "set-popsan-mean-range-reversed": ["--methods", "popsan", "--set", "actor.mean_range=3,-3"],
    "set-popsan-mean-range-three": ["--methods", "popsan", "--set", "actor.mean_range=1,2,3"],
    "set-popsan-mean-range-inf": ["--methods", "popsan", "--set", "actor.mean_range=-inf,3"],
    "set-dsrl-threshold-zero": ["--methods", "dsrl", "--set", "actor.threshold=0"],
    "set-dsrl-threshold-nan": ["--methods", "dsrl", "--set", "actor.threshold=nan"],
    "set-dsrl-one-hidden-layer": ["--methods", "dsrl", "--set", "actor.hidden=16"],
    "seeds-beyond-2-32": ["--seeds", "4294967296"],
    "seeds-range-beyond-2-32": ["--seeds", "4294967295-4294967296"],
    "seeds-huge-range": ["--seeds", "0-99999999999"],
    "power-interval-inf": ["--power-interval", "inf"],
    "engine-unknown": ["--engine", "warp"],
    "start-actions-unknown": ["--set", "start_actions=normal"],
    "start-noise-nan": ["--set", "start_noise=nan"],
    "start-noise-zero": ["--set", "start_noise=0"],
    "only-methods-outside-a-launch": ["--only-methods", "mlp"],
    "power-interval-nan": ["--power-interval", "nan"],
    "power-interval-tiny": ["--power-interval", "1e-9"],
    "methods-duplicate": ["--methods", "mlp,mlp"],
    "envs-duplicate": ["--envs", "HalfCheetah-v4,HalfCheetah-v4"],
    "seeds-duplicate": ["--seeds", "0,0"],
    "target-return-nan": ["--target-return", "nan"],
    "target-return-inf": ["--target-return=-inf"],
    "baseline-not-a-method": ["--baseline", "nope"],
    "country-unknown": ["--country", "ZZZ"],
    "country-not-iso3": ["--country", "France"],
    "backend-nccl-without-cuda": ["--backend", "nccl"],
    "backend-mpi-without-mpi": ["--backend", "mpi"],
    "env-pendulum-not-checkpointable": ["--envs", "Pendulum-v1"],
    "env-discrete": ["--envs", "CartPole-v1"],
    "env-unknown": ["--envs", "HalfCheetah-v99"],
    "threads-zero": ["--threads", "0"],
    "total-steps-negative": ["--total-steps", "-5"],
    "device-unknown": ["--device", "tpu"],
    "resume-with-methods": ["--resume", "{run}"],  # plus --methods from TINY: refused
    "set-method-not-in-plan": ["--set", "popsan:lr_actor=1e-4"],
    "set-method-lr-nan": ["--set", "mlp:lr_actor=nan"],
    "set-method-unknown-key": ["--set", "mlp:warp=1"],
    "set-method-actor-unknown": ["--set", "mlp:actor.timesteps=4"],
    "set-method-not-a-name": ["--set", "../x:lr_actor=1e-4"],
    "config-not-toml": ["--config", "{file}"],
    "config-binary": ["--config", "{ckpt}"],
    "config-missing": ["--config", "{tmp}/none.toml"],
    "config-a-folder": ["--config", "{tmp}/empty"],
    "config-with-resume": ["--config", "{file}", "--resume", "{run}"],
}

UNSAFE_ON_OLD = {
    "set-replay-size-absurd": ["--set", "replay_size=1e12"],
    "set-critic-hidden-absurd": ["--set", "critic_hidden=1000000000"],
    "set-eval-episodes-absurd": ["--set", "eval_episodes=1e9"],
    "set-updates-per-step-absurd": ["--set", "updates_per_step=1e6"],
    "set-popsan-timesteps-absurd": ["--methods", "popsan", "--set", "actor.timesteps=1e9"],
    "total-steps-absurd": ["--total-steps", "1e13"],
    "threads-absurd": ["--threads", "100000"],
    "nproc-absurd": ["--nproc", "100000"],
}

OTHER_CASES = {
    "perf-unknown-method": ["perf", "--methods", "foo"],
    "perf-no-method": ["perf", "--methods", ","],
    "perf-duplicate-method": ["perf", "--methods", "mlp,mlp"],
    "perf-loop-steps-negative": ["perf", "--loop-steps", "-5"],
    "perf-loop-steps-zero": ["perf", "--loop-steps", "0"],
    "perf-threads-zero": ["perf", "--threads", "0"],
    "perf-env-unknown": ["perf", "--env", "Foo-v1"],
    "perf-env-discrete": ["perf", "--env", "CartPole-v1"],
    "perf-checkpoint-missing": ["perf", "--checkpoint", "{tmp}/none.pt"],
    "perf-checkpoint-garbage": ["perf", "--checkpoint", "{file}"],
    "gpsup-underflow": ["gpsup", "1e-320", "1", "1", "1"],
    "gpsup-inf-output": ["gpsup", "1e308", "1", "1e-308", "1"],
    "gpsup-nan": ["gpsup", "nan", "1", "1", "1"],
    "gpsup-negative": ["gpsup", "1", "1", "-1", "1"],
    "gpsup-missing-arg": ["gpsup", "1", "1", "1"],
    "carbon-negative-zero": ["carbon", "--", "-0"],
    "carbon-inf-output": ["carbon", "1e308", "--car-kg-per-mile", "1e-308"],
    "carbon-inf": ["carbon", "inf"],
    "carbon-constant-zero": ["carbon", "1", "--tv-kg-per-hour", "0"],
    "carbon-constant-subnormal": ["carbon", "1", "--household-kg-per-week", "1e-320"],
    "carbon-word": ["carbon", "lots"],
    "methods-env-unknown": ["methods", "--env", "Foo-v1"],
    "methods-env-pendulum": ["methods", "--env", "Pendulum-v1"],
    "report-missing-folder": ["report", "{tmp}/nowhere"],
    "report-a-file": ["report", "{file}"],
    "report-empty-folder": ["report", "{tmp}/empty"],
    "report-unknown-format": ["report", "{run}", "--format", "docx"],
    "report-baseline-not-a-method": ["report", "{run}", "--baseline", "nope"],
    "report-out-is-a-file": ["report", "{run}", "--out", "{file}"],
    "report-out-in-proc": ["report", "{run}", "--out", "/proc/spikerl-report"],
    "unknown-command": ["fly"],
}

SUBPROCESS_CASES = {
    "sub-plan-traversal": ("plan-traversal-seed", None),
    "sub-out-in-proc": (None, ["run", *TINY, "--out", "/proc/spikerl-bench-run"]),
    "sub-carbon-negative-zero": (None, ["carbon", "--", "-0"]),
    "sub-perf-unknown-method": (None, ["perf", "--methods", "foo"]),
    "sub-set-lr-nan": (None, ["run", *TINY, "--set", "lr_actor=nan", "--out", "{out}"]),
    "sub-config-not-toml": (None, ["run", *TINY, "--config", "{file}", "--out", "{out}"]),
}


# ----------------------------------------------------------------------------- the checks


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root: type, size, mtime and content hash."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            digest = None
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            out[os.path.relpath(p, root)] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns, digest)
    return out


def _prepare(tmp_path: Path, template: Path, edit=None) -> dict[str, str]:
    run = tmp_path / "run"
    shutil.copytree(template, run)
    if edit is not None:
        edit(run)
    (tmp_path / "empty").mkdir()
    file = tmp_path / "a-file.txt"
    file.write_text("precious")
    return {"tmp": str(tmp_path), "run": str(run), "out": str(tmp_path / "out"), "file": str(file),
            "ckpt": str(run / SEED / "checkpoint.pt")}


def _fill(argv, ctx):
    return [a.format(**ctx) for a in argv]


def _in_process(capsys, argv):
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.err


def _assert_clean(code, err, before, after):
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert code == 2, (code, err)
    assert len(lines) == 1, lines
    assert after == before, "files were created or changed: " + ", ".join(
        sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)))


@pytest.mark.parametrize("case", sorted(RESUME_CASES))
@pytest.mark.slow
def test_malformed_run_folder_on_resume(case, template, tmp_path, capsys):
    ctx = _prepare(tmp_path, template, RESUME_CASES[case])
    before = snapshot(tmp_path)
    code, err = _in_process(capsys, ["run", "--resume", ctx["run"], "--plain"])
    _assert_clean(code, err, before, snapshot(tmp_path))


@pytest.mark.parametrize("case", sorted(NEW_RUN_CASES) + sorted(UNSAFE_ON_OLD))
@pytest.mark.slow
def test_malformed_new_run(case, template, tmp_path, capsys):
    ctx = _prepare(tmp_path, template)
    extra = {**NEW_RUN_CASES, **UNSAFE_ON_OLD}[case]
    argv = ["run", *TINY, "--out", ctx["out"], *_fill(extra, ctx)]
    before = snapshot(tmp_path)
    code, err = _in_process(capsys, argv)
    _assert_clean(code, err, before, snapshot(tmp_path))


@pytest.mark.parametrize("case", sorted(OTHER_CASES))
@pytest.mark.slow
def test_malformed_other_commands(case, template, tmp_path, capsys):
    ctx = _prepare(tmp_path, template)
    before = snapshot(tmp_path)
    code, err = _in_process(capsys, _fill(OTHER_CASES[case], ctx))
    _assert_clean(code, err, before, snapshot(tmp_path))


@pytest.mark.parametrize("case", sorted(SUBPROCESS_CASES))
@pytest.mark.slow
def test_malformed_through_the_console(case, template, tmp_path):
    edit_name, argv = SUBPROCESS_CASES[case]
    ctx = _prepare(tmp_path, template, RESUME_CASES.get(edit_name))
    argv = ["run", "--resume", ctx["run"]] if argv is None else _fill(argv, ctx)
    before = snapshot(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "bench.cli", *argv], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300, env=env)
    _assert_clean(proc.returncode, proc.stderr, before, snapshot(tmp_path))


def test_battery_is_large_enough():
    n = len(RESUME_CASES) + len(NEW_RUN_CASES) + len(UNSAFE_ON_OLD) + len(OTHER_CASES) + len(SUBPROCESS_CASES)
    assert n >= 60


# ----------------------------------------------------------------------------- report renders what it can

REPORT_DAMAGE = {
    "progress-bad-header": (SEED / "progress.csv", "a,b,c\n1,2,3\n"),
    "evals-garbage-rows": (SEED / "evals.csv", "step,wall_s,return_mean,return_std,episodes,energy_j\n"
                                                "x,y,z,,,\n1500,4,,,,\n\x01,2\n"),
    "power-binary": (SEED / "power.csv", BINARY),
    "config-deeply-nested": (SEED / "config.json", DEEP),
    "result-deeply-nested": (SEED / "result.json", DEEP),
    "result-1e308": (SEED / "result.json", json.dumps({"status": "complete", "energy_j": 1e308, "wall_s": 1e308,
                                                       "final_return_mean": 1e308, "emissions_kg": 1e308})),
    "result-inf": (SEED / "result.json", '{"status": "complete", "energy_j": Infinity, "wall_s": -Infinity, '
                                         '"final_return_mean": NaN}'),
    "progress-inf": (SEED / "progress.csv", "step,wall_s,episodes,train_return,sps,updates,loss_q,loss_pi,energy_j\n"
                                            "100,inf,1,1e308,1,1,1,1,inf\n200,1e308,1,-1e308,1,1,1,1,1e308\n"),
    "evals-1e308": (SEED / "evals.csv", "step,wall_s,return_mean,return_std,episodes,energy_j\n"
                                        "100,1,1e308,inf,1,1e308\n200,2,-1e308,1e308,1,inf\n"),
    "power-inf": (SEED / "power.csv", "t_s,device,power_w,energy_j,source,estimated\n0,cpu,1e308,1e308,estimate,True\n"
                                      "inf,cpu,inf,inf,estimate,True\n"),
    "summary-binary": (Path("summary.csv"), BINARY),
    "plan-deeply-nested": (Path("plan.json"), DEEP),
    "environment-binary": (Path("environment.json"), BINARY),
}


@pytest.mark.parametrize("case", sorted(REPORT_DAMAGE))
@pytest.mark.slow
def test_report_renders_what_is_readable_and_names_the_rest(case, template, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(template, run)
    rel, content = REPORT_DAMAGE[case]
    (run / rel).write_bytes(content if isinstance(content, bytes) else content.encode())
    capsys.readouterr()
    assert main(["report", str(run), "--format", "html"]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and not err.strip(), err
    html = (run / "report.html").read_text()
    assert rel.name in html  # the damaged file is named among the problems


# ----------------------------------------------------------------------------- valid input still passes


def test_float_tuples_can_be_set(capsys, tmp_path):
    from baselines.registry import get_method
    from bench.run.plan import Plan
    from bench.run.resolve import resolve_config

    plan = Plan(methods=("popsan",), envs=("HalfCheetah-v4",), seeds=(0,), profile="smoke", total_steps=1000,
                device="cpu", actor_overrides={"mean_range": "-3.5,3.5", "hidden": "64x32"})
    run = resolve_config(get_method("popsan"), "HalfCheetah-v4", plan, torch.device("cpu"))
    assert run.actor["mean_range"] == (-3.5, 3.5) and run.actor["hidden"] == (64, 32)


def test_every_td3_setting_has_a_range():
    from dataclasses import fields

    from spikerl.config import _RANGES, TD3Config

    assert {f.name for f in fields(TD3Config)} == set(_RANGES)
