"""Every error path of `greenml estimate`: the flag, the bad value and what is valid, in the
command line's own terms (never a Python keyword), exit code 2, no traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from greenml.cli import main

FR = ["--location", "FR"]
AWS = ["--location", "aws:us-east-1"]
# What a command-line user cannot type: Python keywords and calls.
PYTHON_SPEAK = (
    "location=",
    "allow_assumed_location=True",
    "load_gpus(",
    "reserved_hours",
    "table=",
    "tables_dir=",
    "instance_type=",
    "grid_intensity_g_per_kwh",
    "price_usd_per_hour=",
    "power_w=",
    "energy_kwh=",
    "pue=",
)


def check_usage_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for fragment in fragments:
        assert fragment in result.output, (fragment, result.output)
    for python in PYTHON_SPEAK:
        assert python not in result.output, (python, result.output)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--gpu", "A10", *FR], ["--gpu 'A10'", "did you mean", "--power-w", "gpus.csv"]),
        (["--gpu", "A100", "--hours", "inf", *FR], ["--hours inf", "finite", "> 0"]),
        (["--gpu", "A100", "--hours", "nan", *FR], ["--hours nan", "> 0"]),
        (["--gpu", "A100", "--hours", "-1", *FR], ["--hours -1", "> 0"]),
        (["--gpu", "A100", "--hours", "0", *FR], ["--hours 0", "> 0"]),
        (["--gpu", "A100", "--count", "0", *FR], ["--count 0", ">= 1"]),
        (["--gpu", "A100", "--count", "-3", *FR], ["--count -3", ">= 1"]),
        (["--power-w", "0", *FR], ["--power-w 0", "> 0"]),
        (["--power-w", "inf", *FR], ["--power-w inf", "finite"]),
        (["--energy-kwh", "-1", *FR], ["--energy-kwh -1", ">= 0"]),
        (["--energy-kwh", "nan", *FR], ["--energy-kwh nan", "finite"]),
        (["--gpu", "A100", "--pue", "0.5", *FR], ["--pue 0.5", ">= 1"]),
        (["--gpu", "A100", "--pue", "inf", *FR], ["--pue inf", "finite"]),
        (["--gpu", "A100", "--grid-intensity", "-1", *FR], ["--grid-intensity -1", ">= 0"]),
        (["--gpu", "A100", "--price-usd-per-hour", "-3", *FR], ["--price-usd-per-hour -3"]),
        (["--gpu", "A100", "--location", "Narnia"], ["--location 'Narnia'", "aws:<region>"]),
        (["--power-w", "300"], ["--location", "--allow-assumed-location", "--grid-intensity"]),
        (["--instance", "p4d.24xlarge"], ["--location", "--allow-assumed-location"]),
        (["--gpu", "A100", *FR, "--compare", "DE,Narnia"], ["--compare 'Narnia'", "aws:<region>"]),
        (FR, ["--gpu", "--power-w", "--energy-kwh", "--instance"]),
        (["--instance", "p9.24xlarge", *AWS], ["--instance 'p9.24xlarge'", "p4d.24xlarge"]),
        (
            ["--gpu", "A100", "--instance", "p4d.24xlarge", "--location", "aws:eu-north-1"],
            ["p4d.24xlarge", "'eu-north-1'", "us-east-1", "--price-usd-per-hour"],
        ),
    ],
)
def test_estimate_errors_speak_the_command_line(args, fragments):
    check_usage_error(CliRunner().invoke(main, ["estimate", *args]), *fragments)


def test_tables_dir_that_does_not_exist(tmp_path):
    missing = str(tmp_path / "typo")
    result = CliRunner().invoke(main, ["estimate", "--gpu", "A100", *FR, "--tables-dir", missing])
    check_usage_error(result, f"--tables-dir {missing!r}", "not a folder", "gpus.csv")


def test_empty_tables_dir_is_not_the_current_folder():
    result = CliRunner().invoke(main, ["estimate", "--gpu", "A100", *FR, "--tables-dir", ""])
    check_usage_error(result, "--tables-dir ''", "empty")


def test_tables_dir_with_a_misnamed_file(tmp_path):
    (tmp_path / "gpu.csv").write_text("model\n")
    result = CliRunner().invoke(
        main, ["estimate", "--gpu", "A100", *FR, "--tables-dir", str(tmp_path)]
    )
    check_usage_error(result, "gpu.csv", "did you mean 'gpus.csv'", "instance_prices.csv")


def test_tables_dir_with_only_a_readme(tmp_path):
    (tmp_path / "readme.txt").write_text("my tables\n")
    result = CliRunner().invoke(
        main, ["estimate", "--gpu", "A100", *FR, "--tables-dir", str(tmp_path)]
    )
    check_usage_error(result, "readme.txt", "cloud_regions.csv")


# Messages raised while resolving the factors (resolve.py, prices.py, grid.py, pue.py).


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--gpu", "A100", "--location", "DE-BY"], ["--location 'DE-BY'", "--location DE"]),
        (["--gpu", "A100", "--location", "AQ"], ["--location 'AQ'", "--grid-intensity <g/kWh>"]),
        (["--gpu", "A100", "--location", "US-XX"], ["--location 'US-XX'", "US-TX"]),
        (
            ["--gpu", "A100", "--instance", "p4d.24xlarge", "--location", "aws:eu-north-1"],
            ["--instance 'p4d.24xlarge'", "instance_prices.csv in --tables-dir"],
        ),
        (
            ["--gpu", "A100", "--instance", "p4d.24xlarge", "--location", "gcp:us-central1"],
            ["--instance 'p4d.24xlarge'", "instance_prices.csv in --tables-dir"],
        ),
    ],
)
def test_errors_raised_while_resolving_factors_speak_the_command_line(args, fragments):
    check_usage_error(CliRunner().invoke(main, ["estimate", *args]), *fragments)


def test_own_pue_table_without_the_row_names_the_pue_flag(tmp_path):
    (tmp_path / "pue.csv").write_text(
        "provider,region,pue,year,source,licence,note\naws,*,1.2,2026,audit,internal,\n"
    )
    result = CliRunner().invoke(
        main, ["estimate", "--gpu", "A100", *FR, "--tables-dir", str(tmp_path)]
    )
    check_usage_error(result, "'onprem'", "--pue <ratio>")
