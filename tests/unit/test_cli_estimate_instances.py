"""`greenml estimate` with --instance: machines, shares and GPUs agree with the price table.

Figures by hand from the shipped tables: p4d.24xlarge is 8 x A100 at 21.957642 USD/h in
us-east-1 (the SkyPilot catalog's figure); the A100 SXM4 board is 400 W; AWS's PUE is 1.14;
embodied carbon is 1,000 kg per server + 150 kg per GPU over 4 x 8,760 h = 35,040 h.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from greenml.cli import main

AWS = ["--location", "aws:us-east-1"]
P4D = 21.957642  # USD/h, p4d.24xlarge in us-east-1


def run(*args):
    return CliRunner().invoke(main, ["estimate", *args])


def estimate_json(*args):
    result = run(*args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_sixteen_gpus_on_eight_gpu_machines_cost_two_machines():
    args = ["--gpu", "A100", "--count", "16", "--instance", "p4d.24xlarge", "--hours", "100"]
    out = estimate_json(*args, *AWS)
    assert out["it_energy_kwh"] == pytest.approx(16 * 400 * 100 / 1000)  # 640 kWh
    assert out["energy_kwh"] == pytest.approx(640 * 1.14)  # 729.6 kWh
    assert out["cost_usd"] == pytest.approx(2 * 100 * P4D)  # 4,391.53 USD, not 2,195.76
    # two servers of 8 GPUs each: 2 x (1000 + 8 x 150) kg x 100 h / 35,040 h = 12.557 kg
    assert out["embodied_co2e_kg"] == pytest.approx(2 * 2200 * 100 / 35040)
    assert out["hardware"]["instances"] == 2
    assert out["hardware"]["gpus_per_instance"] == 8
    text = run(*args, *AWS)
    assert text.exit_code == 0, text.output
    assert "2 x p4d.24xlarge" in text.output
    assert "4,391.53 USD" in text.output


def test_twelve_gpus_take_two_whole_machines():
    out = estimate_json(
        "--gpu", "A100", "--count", "12", "--instance", "p4d.24xlarge", "--hours", "10", *AWS
    )
    assert out["it_energy_kwh"] == pytest.approx(12 * 400 * 10 / 1000)  # 48 kWh: 12 GPUs busy
    assert out["cost_usd"] == pytest.approx(2 * 10 * P4D)  # 439.15 USD: 2 machines rented


def test_a_gpu_the_instance_does_not_carry_is_an_error_naming_the_instances_gpu():
    result = run("--gpu", "H100", "--count", "8", "--instance", "p4d.24xlarge", *AWS)
    assert result.exit_code == 2, result.output
    assert "--gpu 'H100'" in result.output
    assert "p4d.24xlarge" in result.output and "8 x A100" in result.output
    assert "Traceback" not in result.output


def test_a_bare_family_name_is_the_instances_board_of_that_family():
    # p4de carries A100 80GB boards; a bare "A100" alone would mean the 40 GB board.
    out = estimate_json("--gpu", "A100", "--instance", "p4de.24xlarge", *AWS)
    assert out["hardware"]["gpu_model"] == "A100 SXM4 80GB"
    assert out["cost_usd"] == pytest.approx(27.44705)  # 8 of 8 GPUs, 1 h


def test_a_sibling_board_of_the_same_family_is_a_warning_naming_the_instances_gpu():
    # p5 carries H100 SXM boards (700 W); the PCIe board draws 350 W.
    result = run("--gpu", "H100-PCIE", "--instance", "p5.48xlarge", "--hours", "1", *AWS)
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "8 x H100" in result.stderr
    assert "H100 SXM, 700 W" in result.stderr
    out = estimate_json("--gpu", "H100-PCIE", "--instance", "p5.48xlarge", *AWS)
    assert out["it_energy_kwh"] == pytest.approx(8 * 350 / 1000)  # the board asked for
    assert "Traceback" not in result.output


def test_the_instance_alone_gives_the_gpu_model_and_count():
    out = estimate_json("--instance", "p4d.24xlarge", "--hours", "10", *AWS)
    assert out["it_energy_kwh"] == pytest.approx(8 * 400 * 10 / 1000)  # 32 kWh
    assert out["cost_usd"] == pytest.approx(10 * P4D)  # 219.58 USD, the whole machine
    power = next(f for f in out["factors"] if f["name"] == "gpu_power")
    assert power["value"] == 400 and "A100 SXM4 40GB" in power["note"]
    assert out["hardware"]["gpu_count"] == 8
    assert out["hardware"]["gpu_model"] == "A100 SXM4 40GB"


def test_count_defaults_to_the_instances_gpus():
    out = estimate_json("--gpu", "A100", "--instance", "p4d.24xlarge", "--hours", "10", *AWS)
    assert out["it_energy_kwh"] == pytest.approx(32.0)  # 8 x 400 W x 10 h, not 1 GPU
    assert out["cost_usd"] == pytest.approx(10 * P4D)  # the whole box, not 1/8 of it


def test_fewer_gpus_than_the_instance_says_which_share_is_charged():
    args = ["--gpu", "A100", "--count", "4", "--instance", "p4d.24xlarge", "--hours", "10"]
    out = estimate_json(*args, *AWS)
    assert out["it_energy_kwh"] == pytest.approx(16.0)  # 4 x 400 W x 10 h
    assert out["cost_usd"] == pytest.approx(0.5 * 10 * P4D)  # 4/8 of the machine
    assert out["embodied_co2e_kg"] == pytest.approx(0.5 * 2200 * 10 / 35040)
    assert out["hardware"]["instance_share"] == 0.5
    text = run(*args, *AWS)
    assert "4/8 of one p4d.24xlarge" in text.output
    assert "--count 8" in text.output  # how to charge the whole machine


def test_power_w_with_an_instance_whose_board_greenml_does_not_list():
    # p6-b200 carries 8 x B200; gpus.csv has no citable B200 figure.
    missing = run("--instance", "p6-b200.48xlarge", *AWS)
    assert missing.exit_code == 2, missing.output
    assert "B200" in missing.output and "--power-w" in missing.output
    out = estimate_json("--instance", "p6-b200.48xlarge", "--power-w", "1000", *AWS)
    assert out["it_energy_kwh"] == pytest.approx(8 * 1000 * 1 / 1000)  # 8 kWh
    assert out["cost_usd"] == pytest.approx(113.9328)


def test_compare_keeps_the_instances_hardware_where_nothing_carries_its_gpus():
    # eu-north-1 sells no p4d, and no other AWS instance there carries A100 SXM4 40GB
    out = estimate_json(
        "--instance", "p4d.24xlarge", "--hours", "10", *AWS, "--compare", "aws:eu-north-1"
    )
    (alt,) = out["alternatives"]
    assert alt["it_energy_kwh"] == pytest.approx(32.0)  # the same 8 GPUs
    assert alt["embodied_co2e_kg"] == pytest.approx(2200 * 10 / 35040)
    assert alt["cost_usd"] is None
    (reason,) = [r for r in alt["reasons"] if r.startswith("cost:")]
    assert "eu-north-1" in reason and "A100 SXM4 40GB" in reason and "us-east-1" in reason


def test_own_price_for_an_instance_applies_per_machine():
    out = estimate_json(
        "--gpu", "A100", "--count", "16", "--instance", "p4d.24xlarge", "--hours", "10",
        "--price-usd-per-hour", "15", *AWS,
    )  # fmt: skip
    assert out["cost_usd"] == pytest.approx(2 * 15 * 10)  # 300 USD: two machines at 15 USD/h
