"""docs/planning.md: its commands run, and the figures it quotes are what they print.

The MFU of the GPT-4 example is worked out by hand in the doc: 2.1e25 / (25,000 x 312e12 x
95 x 86,400) = 0.328; the Gemini example's GPU count is 5e25 / (989.5e12 x 0.4 x 2,400 x
3,600) = 14,621.1, rounded up.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from greenml.cli import main

DOC = (Path(__file__).resolve().parents[2] / "docs" / "planning.md").read_text(encoding="utf-8")


def run(*args):
    result = CliRunner().invoke(main, ["estimate", *args])
    assert result.exit_code == 0, result.output
    return result


def as_json(*args):
    return json.loads(run(*args, "--format", "json").stdout)


def option(out, place):
    (found,) = [o for o in out["options"] if o["location"] == place]
    return found


def test_the_implied_gpt4_mfu():
    mfu = 2.1e25 / (25_000 * 312e12 * 95 * 86_400)
    assert round(mfu, 3) == 0.328
    assert "= 0.328" in DOC


def test_gpt4_example():
    args = ["--flops", "2.1e25", "--gpu", "A100", "--count", "25000", "--mfu", "0.328"]
    text = run(*args).output
    for line in (
        "plan: 2.1e+25 FLOP on 25,000 x A100 SXM4 40GB",
        "  time             95.0 days (2,280.1 h)",
        "  GPU-hours        57,001,772",
        "  IT energy        22,800,708.776 kWh (22,800.7 MWh) (before PUE)",
    ):
        assert line in text and line in DOC, line
    everywhere = as_json(*args)
    assert f"{option(everywhere, 'aws:ca-central-1')['co2e_kg'] / 1000:,.0f} t" == "102 t"
    assert f"{option(everywhere, 'aws:us-east-2')['co2e_kg'] / 1000:,.0f} t" == "12,595 t"
    assert "102 t at AWS's ca-central-1" in DOC and "12,595 t at\n  us-east-2" in DOC
    east = as_json(*args, "--location", "azure:eastus")
    assert east["pue"] == 1.18 and round(east["grid_intensity_g_per_kwh"]) == 245
    assert f"{east['energy_kwh'] / 1e6:.1f} GWh" == "26.9 GWh" and "26.9 GWh" in DOC
    assert f"{east['co2e_kg'] / 1000:,.0f} t CO2e" == "6,585 t CO2e"
    assert "**6,585 t CO2e**" in DOC
    assert east["hardware"]["instances"] == 3125
    assert east["hardware"]["instance_type"] == "Standard_ND96asr_v4"
    assert f"${east['cost_usd'] / 1e6:.0f}" == "$194" and "$194\n  million" in DOC


def test_gemini_example():
    args = ["--flops", "5e25", "--gpu", "H100", "--hours", "2400"]
    text = run(*args).output
    for line in (
        "plan: 5e+25 FLOP on 14,622 x H100 SXM",
        "  time             100.0 days (2,399.9 h)",
        "  GPU power        10.2 MW (14,622 x 700 W, before PUE)",
        "  note: 14,621.1 GPUs finish in 2400 h; 14,622 whole GPUs take 2,399.9 h",
    ):
        assert line in text and line in DOC, line
    out = as_json(*args)
    assert out["it_energy_kwh"] == pytest.approx(14_622 * 0.7 * out["hours"])
    assert f"{out['it_energy_kwh'] / 1e6:.1f} GWh" == "24.6 GWh" and "24.6 GWh" in DOC
    assert f"{option(out, 'aws:ca-central-1')['co2e_kg'] / 1000:,.0f} t" == "110 t"
    assert f"{option(out, 'gcp:asia-south1')['co2e_kg'] / 1000:,.0f} t" == "16,170 t"
    assert f"${option(out, 'aws:us-east-1')['cost_usd'] / 1e6:.0f} million" == "$241 million"
    assert "$241 million" in DOC


def test_the_eight_h100_example():
    out = as_json("--gpu", "H100", "--count", "8", "--hours", "10")
    for place, usd, kg in (
        ("aws:us-east-1", "550.40", "15.625"),
        ("azure:eastus", "983.20", "16.174"),
        ("gcp:us-east4", "878.32", "21.158"),
    ):
        o = option(out, place)
        assert (f"{o['cost_usd']:,.2f}", f"{o['co2e_kg']:,.3f}") == (usd, kg)
        assert f"{usd} USD    {kg} kg CO2e" in DOC
    assert "lowest CO2e: aws:ca-central-1 (1 x p5.48xlarge), 0.251 kg" in DOC
    assert f"{option(out, 'aws:ca-central-1')['co2e_kg']:.3f}" == "0.251"


def test_the_six_n_d_example():
    text = run(
        "--params", "7e9", "--tokens", "2e12", "--gpu", "H100", "--count", "64",
        "--location", "gcp:us-east4",
    ).output  # fmt: skip
    for line in (
        "plan: 8.4e+22 FLOP (6 x 7e+09 parameters x 2e+12 tokens) on 64 x H100 SXM",
        "  throughput       989.5 TFLOP/s bf16 peak per GPU x MFU 0.4",
        "  time             38.4 days (921.1 h)",
        "  GPU-hours        58,952",
        "  GPU power        44.8 kW (64 x 700 W, before PUE)",
    ):
        assert line in text and line in DOC, line
