"""`spikerl-bench status RUN` on synthetic run folders: every state, the ETA arithmetic on a hand-computed
case, malformed files (a row of "?" and a note, never a traceback) and the command's exit codes."""
import json
import os

import pytest

from bench import schema
from bench.cli import status as status_cli
from bench.cli.main import main
from bench.run import store
from bench.run.plan import Plan
from bench.run.status import STALE_MIN_S, Placement, read_status

NOW = 2_000_000_000.0
ENV = "HalfCheetah-v4"
PLACEMENT = {"host": "node7", "pid": 4242, "launcher": "slurm", "job_id": "55_3", "slot": 3, "cpus": None,
             "cuda_visible_devices": "1", "concurrent_runs": 4}


def make_run(root, methods=("mlp",), seeds=(0,), total_steps=10_000):
    plan = Plan(methods=tuple(methods), envs=(ENV,), seeds=tuple(seeds), profile="quick", total_steps=total_steps,
                device="cpu")
    root.mkdir(parents=True, exist_ok=True)
    store.write_json(root / schema.PLAN, plan.to_json())
    return root


def seed_folder(run, method, seed=0, *, config=True, total_steps=10_000, device="cpu", placement=None, age_s=5.0):
    folder = store.seed_dir(run, method, ENV, seed)
    folder.mkdir(parents=True)
    if config:
        data = {"method": method, "env": ENV, "seed": seed, "device": device,
                "td3": {"total_steps": total_steps, "log_every": 1000}}
        if placement is not None:
            data["placement"] = placement
        store.write_json(folder / schema.CONFIG, data)
        touch(folder / schema.CONFIG, age_s)
    return folder


def progress(folder, rows, age_s=5.0):
    """rows: (step, wall_s[, energy_j]); written with store.write_csv and aged by age_s before NOW."""
    path = folder / schema.PROGRESS
    store.write_csv(path, schema.PROGRESS_COLUMNS,
                    [{"step": r[0], "wall_s": r[1], "sps": 0.0, "energy_j": r[2] if len(r) > 2 else None}
                     for r in rows])
    touch(path, age_s)
    if (folder / schema.CONFIG).exists():  # written at the run's start, before its progress
        touch(folder / schema.CONFIG, age_s + 100)
    return path


def result(folder, status, age_s=1.0, **fields):
    store.write_json(folder / schema.RESULT, {"status": status, **fields})
    touch(folder / schema.RESULT, age_s)


def touch(path, age_s):
    os.utime(path, (NOW - age_s, NOW - age_s))


def by_key(st):
    return {(r.method, r.seed): r for r in st.runs}


# ---------------------------------------------------------------- states

def test_every_state(tmp_path):
    run = make_run(tmp_path / "run", methods=("mlp", "popsan", "dsrl", "spikerl"), seeds=(0, 1))
    result(seed_folder(run, "mlp", 0), "complete", steps=10_000, energy_j=12_345.0, estimated=True)
    result(seed_folder(run, "mlp", 1), "failed", error="RuntimeError: boom", steps=300)
    f = seed_folder(run, "popsan", 0)
    progress(f, [(1000, 10.0, 50.0), (2000, 20.0, 100.0)], age_s=3600)
    result(f, "interrupted", age_s=3500, steps=2000)
    progress(seed_folder(run, "popsan", 1), [(1000, 10.0), (2000, 20.0)], age_s=30)
    progress(seed_folder(run, "dsrl", 0), [(1000, 10.0), (2000, 20.0)], age_s=STALE_MIN_S + 60)
    # dsrl seed 1: no folder yet
    f = seed_folder(run, "spikerl", 0)
    (f / schema.RESULT).write_text("{not json")
    f = seed_folder(run, "spikerl", 1)  # resumed: an old interrupted result, progress written after it
    result(f, "interrupted", age_s=1000)
    progress(f, [(1000, 10.0), (3000, 30.0)], age_s=10)

    st = read_status(run, now=NOW)
    states = {k: r.state for k, r in by_key(st).items()}
    assert states == {("mlp", 0): "complete", ("mlp", 1): "failed", ("popsan", 0): "interrupted",
                      ("popsan", 1): "running", ("dsrl", 0): "stalled", ("dsrl", 1): "pending",
                      ("spikerl", 0): "corrupt", ("spikerl", 1): "running"}
    runs = by_key(st)
    assert runs[("mlp", 0)].energy_j == 12_345.0 and runs[("mlp", 0)].energy_estimated is True
    assert runs[("mlp", 1)].notes == ("RuntimeError: boom",) and runs[("mlp", 1)].steps == 300
    assert runs[("popsan", 0)].steps == 2000 and runs[("popsan", 0)].energy_j == 100.0
    assert runs[("dsrl", 0)].notes == ("stalled, last update 6 min ago",)
    assert runs[("spikerl", 0)].notes == ("unreadable result.json",)
    assert runs[("spikerl", 1)].notes == ("resumed after it was interrupted",) and runs[("spikerl", 1)].steps == 3000
    assert st.counts == {"complete": 1, "running": 2, "stalled": 1, "pending": 1, "failed": 1, "interrupted": 1,
                         "corrupt": 1}
    assert not st.finished

    text = status_cli.render(st)
    assert "1 complete, 2 running, 1 stalled, 1 pending, 1 failed, 1 interrupted, 1 corrupt; sweep ETA" in text
    assert f"spikerl-bench run --resume {run}" in text
    assert "12.3 kJ est." in text
    lines = text.splitlines()
    header = lines[1]
    for line in lines[2:10]:  # aligned: every row's state starts under the header's
        assert line[header.index("state"):].split()[0] in states.values()


def test_stale_window_is_ten_progress_intervals_when_longer_than_five_minutes(tmp_path):
    run = make_run(tmp_path / "run", seeds=(0, 1))
    slow = [(1000 * k, 100.0 * k) for k in range(1, 8)]  # a row every 100 s: stalled after 1000 s
    progress(seed_folder(run, "mlp", 0), slow, age_s=900)
    fast = [(1000 * k, 10.0 * k) for k in range(1, 8)]  # a row every 10 s: stalled after 300 s
    progress(seed_folder(run, "mlp", 1), fast, age_s=301)
    st = read_status(run, now=NOW)
    assert [r.state for r in st.runs] == ["running", "stalled"]
    assert read_status(run, now=NOW + 101).runs[0].state == "stalled"


def test_a_run_without_progress_rows_yet_is_running_until_it_is_silent_too_long(tmp_path):
    run = make_run(tmp_path / "run", seeds=(0, 1))
    seed_folder(run, "mlp", 0, age_s=10)
    seed_folder(run, "mlp", 1, age_s=STALE_MIN_S + 1)
    a, b = read_status(run, now=NOW).runs
    assert (a.state, a.steps, a.sps, a.eta_s) == ("running", 0, None, None)
    assert b.state == "stalled"
    assert "no sweep ETA yet: no running run has two progress rows" in status_cli.render(read_status(run, now=NOW))


# ---------------------------------------------------------------- ETA arithmetic

def test_eta_of_runs_and_sweep_by_hand(tmp_path):
    run = make_run(tmp_path / "run", methods=("mlp", "popsan", "dsrl"), seeds=(0, 1))
    # mlp 0: slow start, fast now. Last 5 intervals: steps 2000 -> 7000 in 200 -> 250 s = 100 steps/s
    # (since the start it would be 7000 / 250 = 28). ETA (10000 - 7000) / 100 = 30 s.
    rows = [(1000, 100.0), (2000, 200.0), (3000, 210.0), (4000, 220.0), (5000, 230.0), (6000, 240.0),
            (7000, 250.0, 7000.0)]
    progress(seed_folder(run, "mlp", 0, placement=PLACEMENT, device="cuda"), rows)
    # mlp 1: 500 -> 1000 steps in 10 s = 50 steps/s; ETA 9000 / 50 = 180 s.
    progress(seed_folder(run, "mlp", 1), [(500, 10.0), (1000, 20.0)])
    # popsan 0: pending, 10000 steps. popsan 1: complete (not counted). dsrl 0: stalled (not counted).
    result(seed_folder(run, "popsan", 1), "complete", steps=10_000)
    progress(seed_folder(run, "dsrl", 0), [(1000, 1.0), (2000, 2.0)], age_s=3600)
    # dsrl 1: pending, 10000 steps.
    st = read_status(run, now=NOW)
    runs = by_key(st)
    assert runs[("mlp", 0)].sps == pytest.approx(100.0) and runs[("mlp", 0)].eta_s == pytest.approx(30.0)
    assert runs[("mlp", 1)].sps == pytest.approx(50.0) and runs[("mlp", 1)].eta_s == pytest.approx(180.0)
    assert runs[("dsrl", 0)].sps is None and runs[("dsrl", 0)].eta_s is None
    # sweep: (3000 + 9000 + 10000 + 10000) steps left at 100 + 50 steps/s
    assert st.remaining_steps == 32_000 and st.throughput_sps == pytest.approx(150.0)
    assert st.eta_s == pytest.approx(32_000 / 150)
    text = status_cli.render(st)
    assert "sweep ETA 3m33s (32,000 steps left at 150.0 steps/s over 2 running runs)" in text
    row = next(line for line in text.splitlines() if "node7" in line)
    assert row.split()[3:10] == ["running", "7,000/10,000", "100.0", "0m30s", "node7", "cuda:1", "job"]
    assert row.endswith("job 55_3  7000 J attr.")  # one of 4 runs at once: a share of the machine's energy


def test_nothing_running_means_no_sweep_eta(tmp_path):
    run = make_run(tmp_path / "run", seeds=(0, 1))
    result(seed_folder(run, "mlp", 0), "complete", steps=10_000)
    st = read_status(run, now=NOW)
    assert st.eta_s is None and not st.finished
    assert "1 complete, 1 pending; no sweep ETA: nothing is running (1 pending wait" in status_cli.render(st)
    result(seed_folder(run, "mlp", 1), "complete", steps=10_000)
    st = read_status(run, now=NOW)
    assert st.finished and "2 complete; sweep finished" in status_cli.render(st)


# ---------------------------------------------------------------- malformed files

@pytest.mark.parametrize("text, note", [
    (b"step,wall_s\n1000,10\nabc,20\n", "corrupt progress.csv: malformed row"),
    (b"foo,bar\n1,2\n", "corrupt progress.csv: unexpected header"),
    (b"step,wall_s\n1000,10\n\xff\xfe,3\n", "corrupt progress.csv"),
    (b"step,wall_s\n2000,10\n1000,20\n", "corrupt progress.csv: malformed row"),  # steps go back
    (b"step,wall_s,energy_j\n1000,10,nan\n", "corrupt progress.csv: malformed row"),
    (b"step,wall_s,energy_j\n1000,10,-5\n", "corrupt progress.csv: malformed row"),
    (b"step,wall_s\n1000.5,10\n", "corrupt progress.csv: malformed row"),
    (b"step,wall_s\n1000,10,extra\n", "corrupt progress.csv: malformed row"),
])
def test_a_corrupt_progress_csv_shows_question_marks(tmp_path, text, note):
    run = make_run(tmp_path / "run", seeds=(0, 1))
    folder = seed_folder(run, "mlp", 0)
    (folder / schema.PROGRESS).write_bytes(text)
    touch(folder / schema.PROGRESS, 5)
    progress(seed_folder(run, "mlp", 1), [(500, 10.0), (1000, 20.0)])
    st = read_status(run, now=NOW)
    bad = st.runs[0]
    assert bad.state == "running" and bad.steps is None and bad.sps is None and bad.notes[0].startswith(note)
    assert st.remaining_steps is None and st.eta_s is None
    text = status_cli.render(st)
    assert "?/10,000" in text and "no sweep ETA: a running run's progress cannot be read" in text
    json.dumps(st.to_json())
    assert main(["status", str(run)]) == 0


def test_a_last_line_cut_mid_write_is_not_a_row_yet(tmp_path):
    run = make_run(tmp_path / "run")
    folder = seed_folder(run, "mlp", 0)
    (folder / schema.PROGRESS).write_bytes(b"step,wall_s,energy_j\n1000,10,5\n2000,20,10\n30")
    touch(folder / schema.PROGRESS, 5)
    r = read_status(run, now=NOW).runs[0]
    assert (r.state, r.steps, r.sps, r.energy_j, r.notes) == ("running", 2000, 100.0, 10.0, ())


def test_only_the_tail_of_a_long_progress_csv_is_read(tmp_path):
    run = make_run(tmp_path / "run", total_steps=10**9)
    folder = seed_folder(run, "mlp", 0, total_steps=10**9)
    progress(folder, [(k * 10, float(k)) for k in range(1, 30_001)])  # > TAIL_BYTES
    r = read_status(run, now=NOW).runs[0]
    assert (r.steps, r.sps, r.notes) == (300_000, pytest.approx(10.0), ())


@pytest.mark.parametrize("config, where, note", [
    ("{", "?", "corrupt config.json"),
    ("[1, 2]", "?", "corrupt config.json"),
    ('{"device": "cpu", "td3": {"total_steps": -3}}', "cpu",
     "config.json: no valid td3.total_steps (the plan's budget is used)"),
    ('{"device": "\\u001b[31mred", "td3": {"total_steps": 10000}}', "?", "config.json: invalid device"),
])
def test_a_corrupt_config_json(tmp_path, config, where, note):
    run = make_run(tmp_path / "run")
    folder = seed_folder(run, "mlp", 0, config=False)
    (folder / schema.CONFIG).write_text(config)
    touch(folder / schema.CONFIG, 5)
    progress(folder, [(500, 10.0), (1000, 20.0)])
    st = read_status(run, now=NOW)
    r = st.runs[0]
    assert r.notes == (note,) and status_cli.where(r) == where
    assert r.total_steps == 10_000 and r.eta_s == pytest.approx(9000 / 50)  # the plan's budget
    assert "\x1b" not in status_cli.render(st)


@pytest.mark.parametrize("change", [
    {"pid": "4242"}, {"pid": 0}, {"host": "node 7"}, {"host": "\x1b[2J"}, {"host": ""}, {"launcher": "pbs"},
    {"job_id": 55}, {"slot": -1}, {"cpus": [0, "1"]}, {"cpus": "0-3"}, {"cuda_visible_devices": 1},
    {"concurrent_runs": 0}, {"concurrent_runs": True},
])
def test_a_malformed_placement_shows_nothing(change):
    assert Placement.from_json(PLACEMENT) is not None
    assert Placement.from_json({**PLACEMENT, **change}) is None


def test_placement_in_the_where_column(tmp_path):
    run = make_run(tmp_path / "run", seeds=(0, 1, 2))
    progress(seed_folder(run, "mlp", 0, device="cuda", placement=PLACEMENT), [(1000, 10.0)])
    local = {**PLACEMENT, "host": "vm", "launcher": "local", "job_id": None, "cpus": [3, 0, 1, 2, 8],
             "cuda_visible_devices": None}
    progress(seed_folder(run, "mlp", 1, placement=local), [(1000, 10.0)])
    progress(seed_folder(run, "mlp", 2, placement={"host": "vm"}), [(1000, 10.0)])
    st = read_status(run, now=NOW)
    assert [status_cli.where(r) for r in st.runs] == ["node7 cuda:1 job 55_3", "vm cpu 0-3,8", "cpu"]
    assert st.to_json()["runs"][1]["placement"]["cpus"] == [3, 0, 1, 2, 8]


def test_a_result_json_with_an_unknown_status_is_corrupt(tmp_path):
    run = make_run(tmp_path / "run")
    result(seed_folder(run, "mlp", 0), "done")
    r = read_status(run, now=NOW).runs[0]
    assert (r.state, r.notes) == ("corrupt", ("unreadable result.json",))


# ---------------------------------------------------------------- the command

def test_not_a_run_folder_exits_2_with_one_line(tmp_path, capsys):
    assert main(["status", str(tmp_path / "missing")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["status", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "is not a folder" in err and "not a spikerl-bench run folder" in err
    bad = tmp_path / "bad"
    bad.mkdir()
    store.write_json(bad / schema.PLAN, {"methods": ["../etc"], "envs": [ENV], "seeds": [0], "total_steps": 10})
    assert main(["status", str(bad)]) == 2
    assert "methods has an invalid value" in capsys.readouterr().err


def test_bad_watch_seconds_is_a_usage_error(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    for argv in (["status", str(run), "--watch", "0"], ["status", "--watch", str(run)]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    assert "write RUN before --watch" in capsys.readouterr().err


def test_json_output(tmp_path, capsys):
    run = make_run(tmp_path / "run", seeds=(0, 1))
    progress(seed_folder(run, "mlp", 0, placement=PLACEMENT), [(500, 10.0, 20.0), (1000, 20.0, 40.0)], age_s=0)
    assert main(["status", str(run), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["counts"] == {"running": 1, "pending": 1} and out["remaining_steps"] == 19_000
    first = out["runs"][0]
    assert (first["state"], first["steps"], first["sps"], first["energy_j"]) == ("running", 1000, 50.0, 40.0)
    assert first["placement"]["job_id"] == "55_3" and out["runs"][1]["state"] == "pending"


def test_watch_redraws_until_every_run_has_finished(tmp_path, capsys, monkeypatch):
    run = make_run(tmp_path / "run")
    folder = seed_folder(run, "mlp", 0, age_s=0)
    progress(folder, [(500, 10.0), (1000, 20.0)], age_s=0)
    sleeps = []

    def sleep(seconds):  # the run finishes while status waits
        sleeps.append(seconds)
        result(folder, "complete", steps=10_000, age_s=0)
    monkeypatch.setattr(status_cli.time, "sleep", sleep)
    assert main(["status", str(run), "--watch", "0.5"]) == 0
    out = capsys.readouterr().out
    assert sleeps == [0.5] and out.count("status of") == 2
    assert "1 running; sweep ETA" in out and "(every 0.5 s; Ctrl-C stops)" in out
    assert "1 complete; sweep finished" in out


def test_watch_stops_on_ctrl_c_with_exit_0(tmp_path, capsys, monkeypatch):
    run = make_run(tmp_path / "run")
    progress(seed_folder(run, "mlp", 0, age_s=0), [(500, 10.0)], age_s=0)

    def interrupt(seconds):
        raise KeyboardInterrupt
    monkeypatch.setattr(status_cli.time, "sleep", interrupt)
    assert main(["status", str(run), "--watch", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["counts"] == {"running": 1}
