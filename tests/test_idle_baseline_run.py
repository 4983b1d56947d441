"""The idle baseline wired into `spikerl-bench run` (bench.run.idle): the --idle-window-s flag and
its plan field, the window taken before training with dynamic = gross - idle power x metered time,
and who takes a window when runs train side by side (faked RAPL, fake clock)."""
from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from bench.cli.config_file import with_config_file
from bench.cli.main import build_parser, main
from bench.cli.run import new_plan
from bench.energy import PowerMeter
from bench.energy.baseline import SweepIdle
from bench.energy.callback import EnergyCallback
from bench.energy.rapl import open_rapl
from bench.run import store
from bench.run.idle import IDLE_ENV, idle_options, measure_sweep_idle
from bench.run.plan import Plan
from bench.run.runner import create_run_folder, extra_callbacks
from bench.run.store import RunFolderError
from spikerl.callbacks import EndEvent, RunInfo
from tests.fake_rapl import make_zone, set_energy_uj

INFO = RunInfo(run_dir=None, method="mlp", env_id="HalfCheetah-v4", seed=0, total_steps=10)


def plan_of(*argv: str) -> Plan:
    parser = build_parser()
    full = ["run", "--methods", "mlp", *argv]
    return new_plan(with_config_file(parser, full, parser.parse_args(full)))


# ----------------------------------------------------------------------------- the flag and the plan


def test_the_flag_and_the_profiles_set_the_plans_idle_window(tmp_path):
    assert plan_of().idle_window_s == 10.0  # quick, the default profile: the issue's >= 10 s
    assert plan_of("--profile", "paper").idle_window_s == 10.0
    assert plan_of("--profile", "smoke").idle_window_s == 0.0  # a pipeline check: none
    assert plan_of("--idle-window-s", "2.5").idle_window_s == 2.5
    assert plan_of("--profile", "smoke", "--idle-window-s", "12").idle_window_s == 12.0
    f = tmp_path / "sweep.toml"
    f.write_text('idle-window-s = 30\nprofile = "smoke"\n')
    plan = plan_of("--config", str(f))
    assert plan.idle_window_s == 30.0
    create_run_folder(tmp_path / "run", plan)
    assert json.loads((tmp_path / "run" / "plan.json").read_text())["idle_window_s"] == 30.0
    assert Plan.from_json(store.load_plan(tmp_path / "run")).idle_window_s == 30.0


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "ten", "3601"])
def test_a_bad_idle_window_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, value):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(["run", "--methods", "mlp", f"--idle-window-s={value}", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "--idle-window-s" in err[0] and not out.exists()


def test_plan_json_with_a_bad_or_without_an_idle_window(tmp_path):
    d = plan_of("--profile", "smoke").to_json()
    with pytest.raises(RunFolderError, match="idle_window_s"):
        Plan.from_json({**d, "idle_window_s": -3})
    del d["idle_window_s"]  # a run folder from before the baseline: its runs took none, a resume neither
    assert Plan.from_json(d).idle_window_s == 0.0


def test_a_resume_takes_the_plans_idle_window_not_a_flag(tmp_path, capsys):
    code = None
    try:
        code = main(["run", "--resume", str(tmp_path), "--idle-window-s", "5"])
    except SystemExit as exc:
        code = exc.code
    assert code == 2 and "drop --idle-window-s" in capsys.readouterr().err


def test_every_run_gets_the_plans_window():
    plan = plan_of("--idle-window-s", "7")
    (energy,), _ = extra_callbacks(plan)
    assert isinstance(energy, EnergyCallback) and energy.idle_window_s == 7.0 and energy.sweep_idle is None


# ----------------------------------------------------------------------------- the window, on fakes


class Machine:
    """A fake clock that moves one RAPL package at its current power."""

    def __init__(self, zone: Path) -> None:
        self.t, self.zone, self.package_w, self.uj = 50.0, zone, 15.0, 1_000_000

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds
        self.uj += int(round(self.package_w * seconds * 1e6))
        set_energy_uj(self.zone, self.uj)


@pytest.fixture
def machine(tmp_path):
    return Machine(make_zone(tmp_path / "powercap", "intel-rapl:0", "package-0", 1_000_000))


def _callback(machine: Machine, tmp_path: Path, slept: list, **kw) -> EnergyCallback:
    made: list[PowerMeter] = []

    def factory(**_kw) -> PowerMeter:
        rapl, reason = open_rapl(tmp_path / "powercap", clock=machine)
        assert rapl is not None, reason
        made.append(PowerMeter([rapl], interval_s=None, clock=machine))
        return made[-1]

    def sleep(seconds: float) -> None:
        slept.append((seconds, made[-1].open_windows()))
        machine.advance(seconds)

    return EnergyCallback(codecarbon=False, cpu="rapl", ram="none", meter_factory=factory, sleep_fn=sleep,
                          allocated_cpu_share=1.0, **kw)


def _train(cb: EnergyCallback, machine: Machine, seconds: float = 20.0, power_w: float = 65.0) -> dict:
    cb.on_train_start(INFO)
    machine.package_w = power_w  # training
    machine.advance(seconds)
    cb.on_train_end(EndEvent(step=10, wall_s=seconds, status="complete"))
    return cb.result_fields()


def test_a_run_alone_takes_its_window_before_training(machine, tmp_path):
    slept: list = []
    r = _train(_callback(machine, tmp_path, slept, idle_window_s=10.0), machine)
    assert slept == [(10.0, ["idle"])]  # the idle window, before the run's own windows opened
    assert r["idle_window_s"] == 10.0 and r["idle_baseline"] == "run"
    assert r["cpu_idle_power_w"] == pytest.approx(15.0)
    assert r["cpu_energy_j"] == pytest.approx(65.0 * 20.0)  # gross: the idle window is not the run's
    assert r["cpu_dynamic_energy_j"] == pytest.approx(65.0 * 20.0 - 15.0 * 20.0)  # gross - idle W x metered s


def test_runs_side_by_side_take_no_window_of_their_own(machine, tmp_path):
    slept: list = []
    r = _train(_callback(machine, tmp_path, slept, idle_window_s=10.0, concurrent_runs=2), machine)
    assert slept == []  # a window now would meter the sibling's training
    assert r["idle_window_s"] is None and r["cpu_dynamic_energy_j"] is None
    assert "idle baseline skipped: 2 runs of the sweep" in r["meter_errors"]


def test_runs_side_by_side_use_the_sweeps_idle_power_of_their_own_host(machine, tmp_path):
    slept: list = []
    sweep = SweepIdle(socket.gethostname(), 10.0, {"cpu-package-0": 12.0}, "2026-12-06T00:00:00+00:00")
    r = _train(_callback(machine, tmp_path, slept, idle_window_s=10.0, concurrent_runs=2, sweep_idle=sweep),
               machine)
    assert slept == []
    assert r["idle_baseline"] == "sweep" and r["idle_window_s"] == 10.0 and r["cpu_idle_power_w"] == 12.0
    # attributed with all the machine's CPUs allocated and an even CPU-time split (no probe samples)
    gross = r["cpu_energy_j"]
    assert r["cpu_dynamic_energy_j"] == pytest.approx(gross - 12.0 * 20.0)
    other = SweepIdle("another-node", 10.0, {"cpu-package-0": 12.0})
    r = _train(_callback(machine, tmp_path, [], idle_window_s=10.0, concurrent_runs=2, sweep_idle=other), machine)
    assert r["idle_baseline"] is None and r["cpu_idle_power_w"] is None
    assert "idle baseline of host another-node not used" in r["meter_errors"]


def test_the_sweeps_baseline_reaches_the_runs_through_the_environment(tmp_path, machine):
    plan = plan_of("--idle-window-s", "4")

    def factory(**kw) -> PowerMeter:
        rapl, _ = open_rapl(tmp_path / "powercap", clock=machine)
        meter = PowerMeter([rapl], interval_s=None, clock=machine)
        real_end = meter.end_window

        def end_window(name: str):
            machine.advance(4.0)  # the sleep happens in wall time; the fake clock stands in for it
            return real_end(name)
        meter.end_window = end_window  # type: ignore[method-assign]
        return meter

    plan = Plan(**{**plan.__dict__, "idle_window_s": 0.001})  # a real sleep of 1 ms
    idle = measure_sweep_idle(tmp_path, plan, "cpu", meter_factory=factory)
    assert idle is not None and idle.power_w == {"cpu-package-0": pytest.approx(15.0)}
    assert SweepIdle.from_json(json.loads((tmp_path / "idle_baseline.json").read_text())) == idle
    opts = idle_options(plan, {IDLE_ENV: json.dumps(idle.to_json())})
    assert opts == {"idle_window_s": 0.001, "sweep_idle": idle}
    assert idle_options(plan, {IDLE_ENV: "{not json"})["sweep_idle"] is None
    assert idle_options(plan, {})["sweep_idle"] is None
    assert measure_sweep_idle(tmp_path, Plan(**{**plan.__dict__, "idle_window_s": 0.0}), "cpu") is None
