"""`greenml estimate --flops` / `--params --tokens`: a training run planned from its size.

Expected figures by hand: hours = FLOPs / (GPUs x dense peak x MFU) / 3600, with the dense
BF16 peaks of the GPU table (H100 SXM 989.5 TFLOP/s, A100 SXM4 312; FP8 on H100 1,979) and
board powers (H100 SXM 700 W, A100 SXM4 400 W).
"""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from greenml.cli import main
from greenml.errors import ConfigError
from greenml.estimate import estimate

FR = ["--location", "FR"]


def run(*args):
    return CliRunner().invoke(main, ["estimate", *args])


def plan_json(*args):
    result = run(*args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_hours_are_flops_over_gpus_peak_and_mfu():
    out = plan_json("--flops", "1e21", "--gpu", "H100", "--count", "8", "--mfu", "0.5", *FR)
    hours = 1e21 / (8 * 989.5e12 * 0.5) / 3600  # 70.18 h
    assert out["plan"]["hours"] == pytest.approx(hours)
    assert out["hours"] == pytest.approx(hours)
    assert out["plan"]["gpu_hours"] == pytest.approx(8 * hours)
    assert out["plan"]["days"] == pytest.approx(hours / 24)
    assert out["plan"]["peak_flops_per_gpu"] == pytest.approx(989.5e12)
    assert out["it_energy_kwh"] == pytest.approx(8 * 700 * hours / 1000)  # 393 kWh
    names = {f["name"] for f in out["factors"]}
    assert {"training_flops", "mfu", "gpu_peak_flops", "gpu_power"} <= names


def test_six_n_d_and_the_default_mfu_with_its_source():
    out = plan_json("--params", "7e9", "--tokens", "2e12", "--gpu", "A100", "--count", "64", *FR)
    flops = 6 * 7e9 * 2e12  # 8.4e22
    assert out["plan"]["flops"] == pytest.approx(flops)
    assert "6 x parameters x tokens" in out["plan"]["flops_rule"]
    assert out["plan"]["mfu"] == 0.4
    hours = flops / (64 * 312e12 * 0.4) / 3600  # 2,920.9 h
    assert out["plan"]["hours"] == pytest.approx(hours)
    mfu = next(f for f in out["factors"] if f["name"] == "mfu")
    assert "Llama 3" in mfu["source"] and mfu["year"] == 2024
    text = run("--params", "7e9", "--tokens", "2e12", "--gpu", "A100", "--count", "64", *FR)
    assert "MFU 0.4 is greenml's default" in text.output
    assert f"{hours / 24:,.1f} days" in text.output


def test_a_deadline_gives_the_gpus_rounded_up():
    out = plan_json("--flops", "1e22", "--gpu", "A100", "--hours", "100", *FR)
    needed = 1e22 / (312e12 * 0.4 * 100 * 3600)  # 222.58 GPUs
    assert out["plan"]["gpu_count"] == math.ceil(needed) == 223
    assert out["hardware"]["gpu_count"] == 223
    assert out["plan"]["hours"] == pytest.approx(1e22 / (223 * 312e12 * 0.4) / 3600)  # 99.8 h
    assert out["plan"]["hours"] <= 100
    assert any("222.6 GPUs finish in 100 h" in n for n in out["plan"]["notes"])


def test_the_instance_gives_the_gpus_and_their_peak():
    out = plan_json("--flops", "1e21", "--instance", "p5.48xlarge", "--location", "aws:us-east-1")
    hours = 1e21 / (8 * 989.5e12 * 0.4) / 3600
    assert out["plan"]["gpu_count"] == 8 and out["plan"]["gpu_model"] == "H100 SXM"
    assert out["cost_usd"] == pytest.approx(55.04 * hours)  # one p5.48xlarge for the time


@pytest.mark.parametrize(
    ("params", "tokens"),
    [("7B", "2T"), ("7e9", "2e12"), ("7000M", "2000b"), ("7_000_000_000", "2T")],
)
def test_counts_as_articles_write_them(params, tokens):
    out = plan_json("--params", params, "--tokens", tokens, "--gpu", "H100", "--count", "8", *FR)
    assert out["plan"]["flops"] == pytest.approx(6 * 7e9 * 2e12)


def test_a_count_that_is_not_a_number_says_how_to_write_one():
    result = run("--params", "7X", "--tokens", "2T", "--gpu", "H100", "--count", "8", *FR)
    assert result.exit_code == 2
    assert "'7X' is not a number: give e.g. 7e9 or 7B" in result.output


def test_fp8_uses_the_fp8_peak():
    out = plan_json("--flops", "1e21", "--gpu", "H100", "--count", "8", "--precision", "fp8", *FR)
    assert out["plan"]["hours"] == pytest.approx(1e21 / (8 * 1979e12 * 0.4) / 3600)


def test_the_api_takes_the_same_inputs():
    est = estimate(location="FR", gpu="H100", count=16, flops=3e21, mfu=0.3)
    assert est.plan is not None
    assert est.hours == pytest.approx(3e21 / (16 * 989.5e12 * 0.3) / 3600)
    assert est.it_energy_kwh == pytest.approx(16 * 700 * est.hours / 1000)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--flops", "1e21", "--gpu", "H100", "--count", "8", "--mfu", "0"], ["--mfu 0", "(0, 1]"]),
        (["--flops", "1e21", "--gpu", "H100", "--count", "8", "--mfu", "1.5"], ["--mfu 1.5"]),
        (["--flops", "1e21", "--gpu", "H100", "--count", "8", "--mfu", "nan"], ["--mfu nan"]),
        (["--flops", "-1", "--gpu", "H100", "--count", "8"], ["--flops -1", "> 0"]),
        (["--flops", "0", "--gpu", "H100", "--count", "8"], ["--flops 0", "> 0"]),
        (["--flops", "inf", "--gpu", "H100", "--count", "8"], ["--flops inf"]),
        (["--params", "0", "--tokens", "1e12", "--gpu", "H100"], ["--params 0", "> 0"]),
        (["--params", "7e9", "--tokens", "-5", "--gpu", "H100"], ["--tokens -5", "> 0"]),
        (
            ["--flops", "1e21", "--params", "7e9", "--tokens", "1e12", "--gpu", "H100"],
            ["--flops 1e+21", "--params", "--tokens", "give --flops alone"],
        ),
        (["--params", "7e9", "--gpu", "H100", "--count", "8"], ["--params 7000000000", "--tokens"]),
        (["--tokens", "2e12", "--gpu", "H100", "--count", "8"], ["--tokens", "--params"]),
        (["--mfu", "0.4", "--gpu", "H100"], ["--mfu 0.4", "--flops", "--params"]),
        (
            ["--flops", "1e21", "--gpu", "H100", "--count", "8", "--hours", "10"],
            ["--count 8", "--hours 10", "not both"],
        ),
        (["--flops", "1e21"], ["--gpu", "--instance", "peak"]),
        (["--flops", "1e21", "--gpu", "H100"], ["--count", "--hours"]),
        (
            ["--flops", "1e21", "--gpu", "A100", "--count", "8", "--precision", "fp8"],
            ["no fp8 peak for A100 SXM4 40GB", "H100 SXM"],
        ),
        (
            ["--flops", "1e21", "--gpu", "H100", "--count", "8", "--energy-kwh", "5"],
            ["--energy-kwh 5", "leave one out"],
        ),
        (
            ["--flops", "1e21", "--instance", "p6-b200.48xlarge"],
            ["--instance 'p6-b200.48xlarge'", "B200", "--gpu"],
        ),
    ],
)
def test_bad_plans_name_the_value_and_what_is_valid(args, fragments):
    result = run(*args, *FR)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, (fragment, result.output)


def test_a_board_without_a_peak_in_your_gpu_table(tmp_path):
    import csv
    import io
    from pathlib import Path

    import greenml.factors

    shipped = Path(greenml.factors.__file__).parent / "data" / "gpus.csv"
    rows = list(csv.DictReader(io.StringIO(shipped.read_text(encoding="utf-8"))))
    for row in rows:
        if row["model"] == "T4":
            row["fp16_dense_tflops"] = ""  # a board whose peak the user does not know
    with open(tmp_path / "gpus.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = run(
        "--flops", "1e21", "--gpu", "T4", "--count", "8", *FR, "--tables-dir", str(tmp_path)
    )
    assert result.exit_code == 2, result.output
    for fragment in ("--gpu 'T4'", "no bf16 peak for T4", "H100 SXM", "bf16_dense_tflops"):
        assert fragment in result.output, (fragment, result.output)


def test_a_board_without_bf16_is_planned_at_its_fp16_peak_and_says_so():
    out = plan_json("--flops", "1e20", "--gpu", "V100", "--count", "8", *FR)
    assert out["plan"]["hours"] == pytest.approx(1e20 / (8 * 125e12 * 0.4) / 3600)
    assert out["plan"]["precision"] == "fp16"
    text = run("--flops", "1e20", "--gpu", "V100", "--count", "8", *FR).output
    assert "125 TFLOP/s fp16 peak" in text


def test_bad_precision_is_a_choice_error():
    result = run("--flops", "1e21", "--gpu", "H100", "--count", "8", "--precision", "tf32", *FR)
    assert result.exit_code == 2 and "'tf32' is not one of" in result.output


def test_the_api_names_keywords_in_its_errors():
    with pytest.raises(ConfigError, match=r"mfu=2"):
        estimate(location="FR", gpu="H100", count=8, flops=1e21, mfu=2)
    with pytest.raises(ConfigError, match=r"precision='int8'"):
        estimate(location="FR", gpu="H100", count=8, flops=1e21, precision="int8")
