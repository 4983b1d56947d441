"""The command line: bad input is one line and exit code 2; nothing existing is overwritten."""
import json
import subprocess
import sys

import pytest

from bench.cli import main
from bench.cli.args import seed_list, step_count


def run_cli(capsys, *argv):
    """main() as the console script sees it: argparse errors arrive as SystemExit."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


@pytest.mark.parametrize("argv, needle", [
    (["run", "--methods", "spikerl,nope"], "unknown method 'nope'"),
    (["run", "--envs", "HalfCheetah-v99"], "unknown env 'HalfCheetah-v99'"),
    (["run", "--envs", "CartPole-v1"], "continuous Box"),
    (["run", "--seeds", "1,x"], "malformed seeds"),
    (["run", "--seeds", "3-1"], "malformed seeds"),
    (["run", "--total-steps", "-5"], "positive integer"),
    (["run", "--total-steps", "lots"], "malformed step count"),
    (["run", "--set", "gamma"], "key=value"),
    (["run", "--set", "warp=9"], "unknown setting 'warp'"),
    (["run", "--set", "batch_size=1.5"], "expected an integer"),
    (["run", "--methods", "mlp", "--set", "actor.timesteps=4"], "no actor setting 'timesteps'"),
    (["run", "--country", "France"], "ISO-3"),
    (["run", "--device", "gpu"], "invalid choice"),
])
def test_bad_input_is_one_line_exit_2(capsys, tmp_path, argv, needle):
    out = tmp_path / "new"
    code, err = run_cli(capsys, *argv, "--out", str(out))
    assert code == 2
    assert len(err) == 1 and needle in err[0], err
    assert not out.exists(), "a refused run must not create its folder"


def test_existing_folder_is_never_written(capsys, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    code, err = run_cli(capsys, "run", "--methods", "mlp", "--out", str(out))
    assert code == 2 and "already exists" in err[0]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_resume_of_a_folder_that_is_not_a_run(capsys, tmp_path):
    code, err = run_cli(capsys, "run", "--resume", str(tmp_path))
    assert code == 2 and "not a spikerl-bench run folder" in err[0]
    code, err = run_cli(capsys, "run", "--resume", str(tmp_path / "missing"))
    assert code == 2 and len(err) == 1


@pytest.mark.slow
def test_resume_with_corrupt_checkpoint_leaves_files_alone(capsys, tmp_path):
    run = tmp_path / "run"
    code = main(["run", "--methods", "mlp", "--total-steps", "600", "--set", "start_steps=200",
                 "--set", "update_after=200", "--set", "eval_every=300", "--set", "eval_episodes=1",
                 "--set", "checkpoint_every=300", "--set", "critic_hidden=16,16", "--set", "actor.hidden=16,16",
                 "--set", "max_ep_len=100", "--out", str(run), "--plain", "--idle-window-s", "0"])
    assert code == 0
    seed = run / "mlp" / "HalfCheetah-v4" / "seed0"
    result = json.loads((seed / "result.json").read_text())
    result["status"] = "interrupted"
    (seed / "result.json").write_text(json.dumps(result))
    (seed / "checkpoint.pt").write_bytes(b"garbage")
    before = {p.name: p.read_bytes() for p in seed.iterdir()}
    capsys.readouterr()
    code, err = run_cli(capsys, "run", "--resume", str(run))
    assert code == 2 and len(err) == 1 and "corrupt checkpoint" in err[0]
    assert {p.name: p.read_bytes() for p in seed.iterdir()} == before


@pytest.mark.slow
def test_console_script_prints_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--methods", "bogus"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "spikerl-bench: error: unknown method 'bogus'; known methods: spikerl, popsan, dsrl, mlp"]


def test_parsers():
    assert seed_list("0-2,7") == (0, 1, 2, 7)
    assert step_count("50k") == 50_000 and step_count("1e6") == 1_000_000 and step_count("2_500") == 2_500


def test_methods_lists_every_recipe(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in ("spikerl", "popsan", "dsrl", "mlp"):
        assert f"{name}:" in out


@pytest.mark.slow
def test_perf_times_a_trained_checkpoint_and_rejects_bad_ones(capsys, tmp_path):
    run = tmp_path / "run"
    code = main(["run", "--methods", "popsan", "--total-steps", "400", "--set", "start_steps=200",
                 "--set", "update_after=200", "--set", "eval_every=400", "--set", "eval_episodes=1",
                 "--set", "checkpoint_every=400", "--set", "max_ep_len=100", "--out", str(run), "--plain",
                 "--idle-window-s", "0"])
    assert code == 0
    ckpt = run / "popsan" / "HalfCheetah-v4" / "seed0" / "checkpoint.pt"
    capsys.readouterr()
    assert main(["perf", "--checkpoint", str(ckpt), "--json"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["method"] == "popsan" and line["update_ms"] > 0 and line["action_ms"] > 0
    assert line["spiking_kernels"]  # which path ran is recorded
    code, err = run_cli(capsys, "perf", "--checkpoint", str(tmp_path / "none.pt"))
    assert code == 2 and len(err) == 1 and "no checkpoint" in err[0]

    from spikerl import native
    from tools import kernel_profile

    if native.library() is not None:  # the same checkpoint's spike lists, layer by layer
        assert kernel_profile.main(["--checkpoint", str(ckpt), "--batch", "20"]) == 0
        layers = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("layer")]
        assert len(layers) == 3
        for line in layers:
            plain = float(line.split("listed ")[1].split()[0])
            changed = float(line.split("-> ")[2].split()[0])
            assert 0 <= changed <= plain <= 0.5  # each row takes the shortest of its lists
        assert kernel_profile.main(["--checkpoint", str(tmp_path / "none.pt")]) == 2
