"""A local sweep's runs side by side plus the remainder add up to the machine's metered energy
(RUN/machine_energy.json, bench.run.machine_energy), on a faked RAPL tree with two runs."""
from __future__ import annotations

import pytest

from bench import schema
from bench.energy import PowerMeter
from bench.energy.estimate import RamEstimateSource
from bench.energy.rapl import open_rapl
from bench.run import store
from bench.run.machine_energy import SweepMeter, append_window, read_windows, run_charges, window_account
from bench.run.plan import Plan
from reports.meters import machine_energy_notes
from spikerl.callbacks import EndEvent, ProgressEvent, RunInfo
from tests.fake_rapl import make_zone, set_energy_uj
from tests.test_attribution import RAM_W, Clock, _run

PLAN = Plan(methods=("mlp", "popsan"), envs=("HalfCheetah-v4",), seeds=(0,), profile="smoke", total_steps=10,
            device="cpu")


def test_two_runs_side_by_side_plus_the_remainder_are_the_machines_energy(tmp_path):
    powercap = tmp_path / "powercap"
    zone = make_zone(powercap, "intel-rapl:0", "package-0", 1_000_000)
    clock = Clock()
    uj = [1_000_000]

    def advance(seconds: float, package_w: float) -> None:
        clock.t += seconds
        uj[0] += int(round(package_w * seconds * 1e6))
        set_energy_uj(zone, uj[0])

    def machine_factory(**kw) -> PowerMeter:
        rapl, reason = open_rapl(powercap, clock=clock)
        assert rapl is not None, reason
        return PowerMeter([rapl, RamEstimateSource(power_w=RAM_W, clock=clock)], interval_s=None, clock=clock)

    machine = SweepMeter(PLAN, meter_factory=machine_factory)
    machine.start()
    advance(5.0, 20.0)  # the sweep's idle baseline and the runs' start-up: nobody's
    heavy, light = _run(powercap, clock, 3.0), _run(powercap, clock, 1.0)
    info = RunInfo(run_dir=None, method="mlp", env_id="HalfCheetah-v4", seed=0, total_steps=10)
    for cb in (heavy, light):
        cb.on_train_start(info)
    for k in range(1, 11):  # side by side: 10 s at 100 W on the package
        advance(1.0, 100.0)
        for cb in (heavy, light):
            cb.on_progress(ProgressEvent(step=k, wall_s=float(k), episodes=0, train_return=None, sps=1.0,
                                         updates=0, losses={}))
    for cb in (heavy, light):
        cb.on_train_end(EndEvent(step=10, wall_s=10.0, status="complete"))
    advance(3.0, 20.0)  # after the last run: the launcher summarising
    window = machine.stop()
    assert window is not None and window["cpu_source"] == "rapl" and window["window_s"] == pytest.approx(18.0)

    for method, cb in (("mlp", heavy), ("popsan", light)):
        folder = store.seed_dir(tmp_path, method, "HalfCheetah-v4", 0)
        folder.mkdir(parents=True)
        store.write_json(folder / schema.RESULT, {"status": "complete", **cb.result_fields()})
    runs = [("mlp", "HalfCheetah-v4", 0), ("popsan", "HalfCheetah-v4", 0), ("dsrl", "HalfCheetah-v4", 0)]
    account = window_account(window, run_charges(tmp_path, runs))  # dsrl never wrote a result
    append_window(tmp_path, account)
    (saved,) = read_windows(tmp_path)
    assert saved == account and tuple(k for k in saved if k != "runs") == schema.MACHINE_ENERGY_COLUMNS

    # the machine: package 5 s x 20 W + 10 s x 100 W + 3 s x 20 W = 1,160 J; RAM 18 s x 12 W = 216 J
    assert saved["machine_cpu_j"] == pytest.approx(1160.0) and saved["machine_ram_j"] == pytest.approx(216.0)
    assert saved["machine_j"] == pytest.approx(1376.0)
    # the runs were charged 530 + 30 (heavy) and 210 + 30 (light): 800 J
    assert saved["runs_j"] == pytest.approx(800.0) and saved["runs_cpu_j"] == pytest.approx(740.0)
    assert saved["remainder_j"] == pytest.approx(576.0)
    assert saved["runs_j"] + saved["remainder_j"] == pytest.approx(saved["machine_j"], rel=1e-12)
    # over their own windows the runs' unattributed parts are 320 J; the other 256 J fell outside them
    assert saved["runs_unattributed_j"] == pytest.approx(320.0)
    assert saved["runs_missing"] == 1 and saved["runs"][2]["cpu_energy_j"] is None  # absent, not zero
    notes = machine_energy_notes(tmp_path)
    assert len(notes) == 1 and "1,376 J" in notes[0] and "800 J" in notes[0] and "576 J" in notes[0]


def test_a_second_launch_appends_its_window_and_a_damaged_file_starts_afresh(tmp_path):
    (tmp_path / schema.MACHINE_ENERGY).write_text("{broken")
    assert read_windows(tmp_path) == [] and machine_energy_notes(tmp_path) == []
    w = window_account({"host": "h", "window_s": 1.0, "machine_cpu_j": 10.0, "machine_ram_j": None}, [])
    assert w["runs_j"] is None and w["remainder_j"] is None and w["machine_j"] == 10.0
    append_window(tmp_path, w)
    append_window(tmp_path, w)
    assert len(read_windows(tmp_path)) == 2


def test_a_meter_that_cannot_start_leaves_no_window(capsys):
    def broken(**kw):
        raise OSError("no powercap")

    m = SweepMeter(PLAN, meter_factory=broken)
    m.start()
    assert m.stop() is None and "not metered (OSError: no powercap)" in capsys.readouterr().err


@pytest.mark.slow
def test_a_local_sweep_side_by_side_records_its_idle_baseline_and_machine_energy(tmp_path):
    """End to end: two runs at once through submitit; one idle window before both, each run using
    it; machine_energy.json adding up, and the report saying so."""
    import os

    from bench.cli.main import main
    from tests.test_sweep import TINY

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("two runs side by side need two cores")
    run = tmp_path / "run"
    assert main(["run", *TINY, "--seeds", "0,1", "--out", str(run), "--launcher", "local", "--jobs", "2",
                 "--idle-window-s", "1"]) == 0
    idle = store.read_json(run / schema.IDLE_BASELINE)
    assert idle["idle_window_s"] == 1.0 and idle["power_w"]
    for seed in (0, 1):
        r = store.read_json(store.seed_dir(run, "mlp", "HalfCheetah-v4", seed) / schema.RESULT)
        assert r["idle_baseline"] == "sweep" and r["idle_window_s"] == 1.0
        assert r["cpu_idle_power_w"] is not None and r["cpu_dynamic_energy_j"] is not None
    (w,) = read_windows(run)
    assert w["runs_missing"] == 0 and w["machine_j"] > w["runs_j"] > 0
    assert w["runs_j"] + w["remainder_j"] == pytest.approx(w["machine_j"], rel=1e-9)
    print(f"machine {w['machine_j']:.1f} J = runs {w['runs_j']:.1f} J + remainder {w['remainder_j']:.1f} J "
          f"(runs' own unattributed {w['runs_unattributed_j']:.1f} J) over {w['window_s']:.1f} s")
    report = (run / "report.html").read_text(encoding="utf-8")
    assert "Source: machine_energy.json" in report and "sweep, 1 s" in report
