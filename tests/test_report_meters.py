"""The report's meter section (reports.meters): coverage per component, partial seeds marked, the
meter problems and the 'unvalidated' methodology note."""
import pandas as pd

from reports.meters import METHODOLOGY_NOTE, meters_table


def test_partial_seed_is_marked_and_meter_errors_are_shown():
    seeds = pd.DataFrame([
        {"method": "popsan", "env": "Hopper-v4", "seed": 0, "gpu_coverage": 0.725, "gpu_estimated": False,
         "cpu_coverage": 1.0, "cpu_estimated": False, "ram_coverage": None, "gpu_devices_metered": 2,
         "meter_verdict": "measured", "meter_errors": "t=2.0s nvml-counter gpu1: GPU is lost (x5, last t=4.0s)"},
        {"method": "mlp", "env": "Hopper-v4", "seed": 0, "gpu_coverage": None, "cpu_coverage": 0.5,
         "cpu_estimated": True, "ram_coverage": 1.0, "ram_estimated": True, "gpu_devices_metered": None,
         "meter_verdict": "estimated", "meter_errors": None},
    ])
    t = meters_table(seeds)
    assert t is not None
    by_method = {row[0].text: [c.text for c in row] for row in t.rows}
    assert by_method["popsan"][3] == "0.725" and by_method["popsan"][8] == "partial: GPU"
    assert "GPU is lost (x5, last t=4.0s)" in by_method["popsan"][9]
    assert by_method["mlp"][8] == "full"  # an estimated component's coverage does not make it partial
    assert METHODOLOGY_NOTE in t.notes and "unvalidated" in METHODOLOGY_NOTE
    assert "1 of 2" in t.notes[0]


def test_old_run_folders_without_coverage_get_no_table():
    assert meters_table(pd.DataFrame([{"method": "mlp", "env": "x", "seed": 0, "energy_j": 1.0}])) is None
