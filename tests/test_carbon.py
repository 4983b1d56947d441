"""CodeCarbon wrapper: offline only, never raises, emissions empty (not zero) on failure."""
from __future__ import annotations

import csv
import time

import pytest

from bench.energy import PowerMeter
from bench.energy.callback import EnergyCallback
from bench.energy.carbon import CarbonTracker, carbon_intensity_g_per_kwh, parse_emissions_csv, validate_country
from bench.energy.estimate import EstimateSource
from spikerl.callbacks import EndEvent, EvalEvent, RunInfo


class FakeTracker:
    """Stands in for OfflineEmissionsTracker; records its kwargs and fails on request."""

    instances: list["FakeTracker"] = []

    def __init__(self, *, fail_start: bool = False, fail_stop: bool = False, stop_returns=1.0e-3, **kwargs):
        self.kwargs = kwargs
        self.fail_start, self.fail_stop, self.stop_returns = fail_start, fail_stop, stop_returns
        self.run_id = "run-under-test"
        FakeTracker.instances.append(self)

    def start(self) -> None:
        if self.fail_start:
            raise RuntimeError("RAM probe exploded")

    def flush(self) -> float:
        return 5e-4

    def stop(self):
        if self.fail_stop:
            raise OSError("disk full")
        return self.stop_returns


def factory(**behaviour):
    return lambda **kwargs: FakeTracker(**behaviour, **kwargs)


# ----------------------------------------------------------------------------- country


def test_country_is_validated_and_normalised():
    assert validate_country("usa") == "USA"
    assert validate_country(" fra ") == "FRA"
    for bad in ("US", "USAA", "U1A", ""):
        with pytest.raises(ValueError, match="alpha-3"):
            validate_country(bad)
    with pytest.raises(ValueError, match="no grid carbon intensity"):
        validate_country("ZZZ")
    with pytest.raises(ValueError):
        CarbonTracker(None, country_iso_code="Québec")


def test_carbon_intensity_matches_design_examples():
    assert carbon_intensity_g_per_kwh("USA") == pytest.approx(369.5, abs=0.1)
    assert carbon_intensity_g_per_kwh("FRA") == pytest.approx(56.0, abs=0.1)


# ----------------------------------------------------------------------------- failures never raise


def test_tracker_that_fails_to_start_leaves_emissions_empty(tmp_path):
    tracker = CarbonTracker(tmp_path, tracker_factory=factory(fail_start=True))
    tracker.start()
    result = tracker.stop()
    assert result.emissions_kg is None and result.energy_kwh is None
    assert "failed to start" in result.error and "RAM probe exploded" in result.error


def test_tracker_that_fails_to_stop_leaves_emissions_empty(tmp_path):
    with CarbonTracker(tmp_path, tracker_factory=factory(fail_stop=True)) as tracker:
        pass
    assert tracker.result.emissions_kg is None
    assert "failed to stop" in tracker.result.error and "disk full" in tracker.result.error


def test_constructor_failure_and_silent_none_are_errors(tmp_path):
    def boom(**kwargs):
        raise ImportError("no codecarbon")

    tracker = CarbonTracker(tmp_path, tracker_factory=boom)
    tracker.start()
    assert "no codecarbon" in tracker.stop().error
    # CodeCarbon's stop() swallows its exceptions and returns None: that is missing, not zero.
    tracker = CarbonTracker(tmp_path, tracker_factory=factory(stop_returns=None))
    tracker.start()
    result = tracker.stop()
    assert result.emissions_kg is None and "returned no emissions" in result.error


def test_offline_tracker_arguments(tmp_path):
    FakeTracker.instances.clear()
    tracker = CarbonTracker(tmp_path / "seed0", country_iso_code="deu", measure_power_secs=5,
                            gpu_ids=[0, 1], tracker_factory=factory())
    tracker.start()
    kw = FakeTracker.instances[-1].kwargs
    assert kw["country_iso_code"] == "DEU" and kw["measure_power_secs"] == 5
    assert kw["output_dir"] == str(tmp_path / "seed0") and kw["save_to_file"] is True
    assert kw["log_level"] == "error" and kw["gpu_ids"] == [0, 1]
    assert (tmp_path / "seed0").is_dir()
    assert tracker.stop().emissions_kg == pytest.approx(1e-3)  # no CSV row: stop()'s value


def test_parse_emissions_csv_by_column_name_and_run_id(tmp_path):
    path = tmp_path / "emissions.csv"
    cols = ["run_id", "energy_consumed", "duration", "emissions", "cpu_energy", "gpu_energy", "ram_energy", "x"]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        w.writerow(["old", "9", "9", "9", "9", "9", "9", "a"])
        w.writerow(["mine", "0.5", "12.5", "0.2", "0.1", "0.3", "0.1", "b"])
        w.writerow(["later", "7", "7", "7", "7", "7", "7", "c"])
    row = parse_emissions_csv(path, "mine")
    assert row == {"emissions_kg": 0.2, "energy_kwh": 0.5, "cpu_energy_kwh": 0.1, "gpu_energy_kwh": 0.3,
                   "ram_energy_kwh": 0.1, "duration_s": 12.5}
    assert parse_emissions_csv(path, "absent") is None  # never another run's row
    assert parse_emissions_csv(path)["emissions_kg"] == 7.0
    assert parse_emissions_csv(tmp_path / "nope.csv") is None


# ----------------------------------------------------------------------------- the run still completes


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize("behaviour, message", [({"fail_start": True}, "failed to start"),
                                                 ({"fail_stop": True}, "failed to stop")])
def test_run_completes_when_codecarbon_fails(tmp_path, behaviour, message):
    clock = _Clock()

    def meter(**kw):
        src = EstimateSource(tdp_w=50.0, load_fn=lambda: 1.0, clock=clock)
        return PowerMeter([src], interval_s=None, clock=clock, csv_path=kw["csv_path"])

    cb = EnergyCallback(meter_factory=meter, tracker_factory=lambda out, **kw: CarbonTracker(
        out, tracker_factory=factory(**behaviour), **kw))
    cb.on_train_start(RunInfo(run_dir=tmp_path, method="dsrl", env_id="Hopper-v4", seed=1, total_steps=10))
    clock.t += 2.0
    cb.on_eval_start(5, 2.0)
    cb.on_eval_end(EvalEvent(step=5, wall_s=2.0, return_mean=0.0, return_std=0.0, episodes=1))
    cb.on_train_end(EndEvent(step=10, wall_s=2.0, status="complete"))
    r = cb.result_fields()
    assert r["energy_j"] == pytest.approx(100.0) and r["estimated"] is True
    # our emissions come from our energy; only CodeCarbon's cross-check is missing, and says why
    assert r["emissions_kg"] == pytest.approx(100.0 / 3.6e6 * r["carbon_intensity_g_per_kwh"] / 1000)
    assert r["codecarbon_emissions_kg"] is None and r["codecarbon_energy_kwh"] is None
    assert r["codecarbon_energy_ratio"] is None and r["emissions_error"] is None
    assert message in r["codecarbon_error"]


# ----------------------------------------------------------------------------- the real thing, offline


def test_real_offline_tracker_writes_emissions_csv(tmp_path):
    with CarbonTracker(tmp_path, country_iso_code="FRA", measure_power_secs=1) as tracker:
        t_end = time.perf_counter() + 1.2
        while time.perf_counter() < t_end:
            sum(range(1000))
    result = tracker.result
    assert result.error is None
    assert (tmp_path / "emissions.csv").is_file()
    with (tmp_path / "emissions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["country_iso_code"] == "FRA"
    assert result.emissions_kg == pytest.approx(float(rows[0]["emissions"]))
    assert result.energy_kwh == pytest.approx(float(rows[0]["energy_consumed"]))
    assert result.emissions_kg > 0 and result.energy_kwh > 0
    assert result.duration_s == pytest.approx(1.2, abs=1.0)
    # emissions = energy x France's grid intensity (56 g/kWh), PUE 1
    assert result.emissions_kg / result.energy_kwh == pytest.approx(0.056, rel=0.01)
