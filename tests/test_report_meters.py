"""The report's meter section (reports.meters): coverage per component, partial seeds marked, gross
and dynamic energy with the idle baseline, the meter problems and the 'unvalidated' methodology note."""
import pandas as pd

from reports.meters import METHODOLOGY_NOTE, meters_table


def test_partial_seed_is_marked_and_meter_errors_are_shown():
    seeds = pd.DataFrame([
        {"method": "popsan", "env": "Hopper-v4", "seed": 0, "gpu_coverage": 0.725, "gpu_estimated": False,
         "cpu_coverage": 1.0, "cpu_estimated": False, "ram_coverage": None, "gpu_devices_metered": 2,
         "meter_verdict": "measured", "meter_errors": "t=2.0s nvml-counter gpu1: GPU is lost (x5, last t=4.0s)",
         "gpu_energy_j": 3100.0, "gpu_dynamic_energy_j": 2270.0, "cpu_energy_j": 1000.0,
         "cpu_dynamic_energy_j": 800.0, "idle_window_s": 10.0, "idle_baseline": "sweep"},
        {"method": "mlp", "env": "Hopper-v4", "seed": 0, "gpu_coverage": None, "cpu_coverage": 0.5,
         "cpu_estimated": True, "ram_coverage": 1.0, "ram_estimated": True, "gpu_devices_metered": None,
         "meter_verdict": "estimated", "meter_errors": None},
    ])
    t = meters_table(seeds)
    assert t is not None
    by_method = {row[0].text: [c.text for c in row] for row in t.rows}
    assert by_method["popsan"][3] == "0.725" and by_method["popsan"][12] == "partial: GPU"
    assert "GPU is lost (x5, last t=4.0s)" in by_method["popsan"][13]
    assert by_method["mlp"][12] == "full"  # an estimated component's coverage does not make it partial
    # gross / dynamic per component, and where the idle power came from
    assert by_method["popsan"][7:11] == ["3,100 / 2,270", "1,000 / 800", "—", "sweep, 10 s"]
    assert by_method["mlp"][7:11] == ["—", "—", "—", "—"]  # no energy, no baseline: absent, not zero
    assert METHODOLOGY_NOTE in t.notes and "unvalidated" in METHODOLOGY_NOTE
    assert "1 of 2" in t.notes[0]


def test_old_run_folders_without_coverage_get_no_table():
    assert meters_table(pd.DataFrame([{"method": "mlp", "env": "x", "seed": 0, "energy_j": 1.0}])) is None
