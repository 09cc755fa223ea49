"""What `greenml estimate` prints: every figure of its JSON in the text too, figures without
binary noise, and comparisons that claim only what they compared."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from greenml.cli import main


def run(*args):
    result = CliRunner().invoke(main, ["estimate", *args])
    assert result.exit_code == 0, result.output
    return result


def test_text_shows_embodied_and_sci_like_the_json():
    args = ["--gpu", "A100", "--count", "8", "--hours", "100", "--location", "FR"]
    args += ["--pue", "1.5", "--grid-intensity", "50"]
    out = json.loads(run(*args, "--format", "json").stdout)
    # By hand: 8 x 400 W x 100 h = 320 kWh IT; x 1.5 = 480 kWh; x 50 g/kWh = 24.000 kg.
    # Embodied: (1000 + 8 x 150) kg x 100 h / 35,040 h = 6.279 kg; SCI = 30.279 kg.
    assert out["co2e_kg"] == pytest.approx(24.0)
    assert out["embodied_co2e_kg"] == pytest.approx(6.2785, abs=1e-4)
    assert out["sci_co2e_kg"] == pytest.approx(30.2785, abs=1e-4)
    text = run(*args).output
    assert "24.000 kg" in text
    assert "embodied" in text and "6.279 kg" in text
    assert "SCI" in text and "30.279 kg" in text
    assert "8 x A100 SXM4 40GB" in text  # the hardware modelled


def test_json_figures_carry_no_binary_noise():
    raw = run(
        "--power-w", "400", "--count", "8", "--hours", "100", "--location", "aws:us-east-1",
        "--format", "json",
    ).stdout  # fmt: skip
    # 8 x 400 W x 100 h x 1.14 = 364.8 kWh, which float arithmetic makes 364.79999999999995
    assert '"energy_kwh": 364.8,' in raw
    assert "99999999" not in raw and "00000001" not in raw


def test_the_json_has_the_hardware_behind_the_power_model():
    out = json.loads(
        run(
            "--gpu", "T4", "--count", "2", "--hours", "3", "--location", "FR", "--format", "json"
        ).stdout
    )
    assert out["hardware"]["gpu_model"] == "T4"
    assert out["hardware"]["gpu_count"] == 2
    assert out["hardware"]["gpu_power_w"] == 70
    assert out["it_energy_kwh"] == pytest.approx(2 * 70 * 3 / 1000)  # 0.42 kWh


def test_one_priced_place_is_not_called_the_cheapest():
    text = run(
        "--gpu", "A100", "--count", "8", "--location", "aws:us-east-1",
        "--instance", "p4d.24xlarge", "--compare", "aws:eu-north-1",
    ).output  # fmt: skip
    assert "lowest cost" not in text
    assert "only aws:us-east-1 is priced" in text


def test_equal_costs_name_no_cheapest():
    text = run(
        "--gpu", "A100", "--count", "8", "--location", "aws:us-east-1",
        "--instance", "p4d.24xlarge", "--compare", "aws:eu-north-1,FR",
        "--price-usd-per-hour", "20",
    ).output  # fmt: skip
    # one price everywhere: no place is cheaper
    assert "lowest cost" not in text and "same cost in every place" in text


def test_a_zero_carbon_place_is_the_lowest():
    text = run(
        "--power-w", "300", "--location", "US-VA", "--grid-intensity", "0", "--compare", "SE-3"
    ).output
    assert "lowest CO2e: US-VA" in text


def test_the_cheapest_of_several_priced_places(tmp_path):
    (tmp_path / "instance_prices.csv").write_text(
        "provider,instance_type,region,gpu_model,gpu_count,usd_per_hour,pricing,as_of,source,"
        "licence,note\n"
        "aws,p4d.24xlarge,us-east-1,A100-40GB,8,21.958,on-demand,2026-01-21,list,facts,\n"
        "aws,p4d.24xlarge,eu-north-1,A100-40GB,8,20.0,on-demand,2026-01-21,list,facts,\n"
    )
    text = run(
        "--instance", "p4d.24xlarge", "--location", "aws:us-east-1",
        "--compare", "aws:eu-north-1", "--tables-dir", str(tmp_path),
    ).output  # fmt: skip
    assert "lowest cost: aws:eu-north-1" in text
