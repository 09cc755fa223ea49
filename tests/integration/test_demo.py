"""greenml demo: the job the README runs, through the CLI and as a real process (it logs
into MLflow's local store, so it is no unit test)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from greenml.cli import main

pytestmark = pytest.mark.slow


def test_demo_with_simulated_gpus_reports_both_gpus_and_phases():
    result = CliRunner().invoke(
        main,
        ["demo", "--simulated-gpu", "--seconds", "1.2", "--pue", "1.1", "--format", "json"],
    )
    assert result.exit_code == 0, result.output
    fp = json.loads(result.stdout)
    gpus = [d for d in fp["devices"] if d["kind"] == "gpu"]
    assert [g["name"] for g in gpus] == ["NVIDIA H100 80GB HBM3"] * 2
    assert fp["measurement"] == "simulated"
    assert set(fp["phases"]) == {"train", "eval"}
    # The simulated GPUs draw between 200 W and 650 W each.
    it_j = fp["gpu_energy_kwh"] * 3.6e6
    assert 2 * 200.0 * fp["duration_s"] <= it_j <= 2 * 650.0 * fp["duration_s"]
    it_kwh = fp["gpu_energy_kwh"] + fp["cpu_energy_kwh"] + fp["ram_energy_kwh"]
    assert abs(fp["energy_kwh"] - it_kwh * 1.1) < 1e-12


def test_demo_logs_into_the_local_mlflow_store_and_says_how_to_open_it(plain_cwd):
    from mlflow import MlflowClient

    result = CliRunner().invoke(main, ["demo", "--simulated-gpu", "--seconds", "1"])
    assert result.exit_code == 0, result.output
    uri = f"sqlite:///{plain_cwd}/mlflow.db"
    assert f"mlflow ui --backend-store-uri {uri}" in result.output
    run_id = re.search(r"MLflow run ([0-9a-f]{32})", result.output).group(1)
    run = MlflowClient(uri).get_run(run_id)
    assert run.data.tags["greenml.measurement"] == "simulated"
    assert run.info.status == "FINISHED"
    written = json.loads((plain_cwd / "greenml-demo-footprint.json").read_text())
    assert written["energy_kwh"] == run.data.metrics["greenml/energy_kwh"]
    assert "footprint written to greenml-demo-footprint.json" in result.output
    # and the journey's end: the ESG report of this run, its figures the run's own
    report = plain_cwd / "greenml-demo-report.html"
    assert f"ESG report of this run written to {report}" in result.output
    html = report.read_text()
    assert run_id in html and "ESRS E1-5" in html and "<svg" in html
    from greenml.report.markdown import number  # the report's own number format

    energy_mwh = run.data.metrics["greenml/energy_kwh"] / 1000
    assert f"{number(energy_mwh)} MWh" in html  # the run's facility energy


def test_demo_rejects_a_bad_value_with_a_clear_message():
    result = CliRunner().invoke(main, ["demo", "--seconds", "1", "--pue", "0.5"])
    assert result.exit_code == 2
    assert "--pue 0.5 is invalid" in result.output and ">= 1.0" in result.output
    assert "pue=" not in result.output  # the flag the user typed, not a Python keyword


def test_demo_names_its_own_flags_and_shows_warnings_as_plain_lines():
    result = CliRunner().invoke(
        main,
        [
            "demo",
            *("--seconds", "0.3", "--location", "aws:eu-north-1"),
            *("--instance-type", "p4d.24xlarge", "--format", "json"),
        ],
    )
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    price = [x for x in lines if "no price for region 'eu-north-1'" in x]
    assert price == [
        "warning: --instance-type 'p4d.24xlarge': aws p4d.24xlarge has no price for region "
        "'eu-north-1'; it is sold in ap-northeast-1, ap-northeast-2, ap-south-1, "
        "ap-southeast-2, ca-central-1, eu-central-1, eu-west-1, us-east-1, us-east-2, "
        "us-west-2 (prices differ by region, so none is substituted). "
        "Give the price with --price-usd-per-hour <USD per hour>, or add a row to "
        "instance_prices.csv in --tables-dir. The run is measured without a cost (cost_usd "
        "is None, flagged no_price)."
    ]
    whole = [x for x in lines if "whole instance" in x]
    assert len(whole) == 1 and whole[0].endswith("give --instance-share <fraction>")
    assert "core.py" not in result.stderr  # no Python file and line for a CLI user
    fp = json.loads(result.stdout)
    assert fp["cost_usd"] is None and "no_price" in fp["flags"]


def test_cli_runs_as_a_real_subprocess():
    out = subprocess.run(
        [sys.executable, "-m", "greenml.cli", "demo", "--seconds", "0.5", "--simulated-gpu"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "GPU energy (IT)" in out and "measurement       simulated" in out
