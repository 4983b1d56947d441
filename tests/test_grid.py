"""Carbon inputs a user can correct (bench.energy.grid): PUE, their own intensity, a region's."""
from __future__ import annotations

import pytest

from bench.cli.main import main
from bench.energy.carbon import carbon_intensity_g_per_kwh
from bench.energy.grid import G_PER_LB, GridInputs, grid_inputs, region_intensity_g_per_kwh


def test_emissions_are_it_energy_times_pue_times_intensity():
    g = GridInputs(400.0, "user", None, 1.5)
    # 7.2 MJ = 2 kWh of IT energy; x 1.5 = 3 kWh at the meter of the facility; x 400 g = 1.2 kg
    assert g.emissions_kg(7.2e6) == pytest.approx(1.2, rel=1e-12)
    assert g.emissions_kg(None) is None and GridInputs(None, "codecarbon-country").emissions_kg(1.0) is None
    assert g.result_fields() == {"carbon_intensity_g_per_kwh": 400.0, "carbon_intensity_source": "user",
                                 "region": None, "pue": 1.5}


def test_where_the_intensity_comes_from():
    assert grid_inputs("USA", intensity_g_per_kwh=120.0) == GridInputs(120.0, "user", None, 1.0)
    assert grid_inputs("FRA", pue=1.2) == GridInputs(carbon_intensity_g_per_kwh("FRA"), "codecarbon-country", None, 1.2)
    ca = grid_inputs("USA", region="California")
    # EPA eGRID 2023 in CodeCarbon's data: California 394.769 lbs/MWh
    assert (ca.source, ca.region) == ("codecarbon-region", "california")
    assert ca.intensity_g_per_kwh == pytest.approx(394.769 * G_PER_LB / 1000, rel=1e-9)
    # a province's energy mix weighted by the fossil factors: mostly hydro and nuclear, so low
    assert 0 < region_intensity_g_per_kwh("CAN", "quebec") < region_intensity_g_per_kwh("CAN", "alberta")


@pytest.mark.parametrize("argv, needle", [
    (["--pue", "0.9"], "--pue must be 1.0 to 3.0"),
    (["--pue", "4"], "--pue must be 1.0 to 3.0"),
    (["--carbon-intensity", "0"], "--carbon-intensity must be"),
    (["--carbon-intensity", "5000"], "--carbon-intensity must be"),
    (["--carbon-intensity", "lots"], "expected a number"),
    (["--region", "atlantis"], "--region 'atlantis': not a US state"),
    (["--country", "FRA", "--region", "bretagne"], "--region needs --country USA or CAN"),
    (["--region", "texas", "--carbon-intensity", "300"], "pass one"),
])
def test_bad_carbon_inputs_are_one_line_exit_2_and_write_nothing(capsys, tmp_path, argv, needle):
    out = tmp_path / "new"
    try:
        code = main(["run", "--methods", "mlp", *argv, "--out", str(out)])
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not out.exists()


def test_a_run_records_its_carbon_inputs_and_charges_pue(tmp_path):
    import json

    run = tmp_path / "run"
    assert main(["run", "--methods", "mlp", "--total-steps", "300", "--set", "start_steps=100",
                 "--set", "update_after=100", "--set", "eval_every=300", "--set", "eval_episodes=1",
                 "--set", "critic_hidden=16,16", "--set", "actor.hidden=16,16", "--set", "max_ep_len=100",
                 "--pue", "1.5", "--carbon-intensity", "100", "--out", str(run), "--plain",
                 "--idle-window-s", "0"]) == 0
    r = json.loads((run / "mlp" / "HalfCheetah-v4" / "seed0" / "result.json").read_text())
    assert (r["pue"], r["carbon_intensity_g_per_kwh"], r["carbon_intensity_source"], r["region"]) == \
        (1.5, 100.0, "user", None)
    assert r["emissions_kg"] == pytest.approx(r["energy_j"] / 3.6e6 * 1.5 * 100.0 / 1000, rel=1e-12)
    assert json.loads((run / "plan.json").read_text())["pue"] == 1.5
