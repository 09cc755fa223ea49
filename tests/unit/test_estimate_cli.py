"""`greenml estimate` and `greenml tables`: published figures reproduced, factors shown."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from greenml.cli import main


def run(*args):
    result = CliRunner().invoke(main, list(args))
    return result


def estimate_json(*args):
    result = run("estimate", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.parametrize(
    ("energy_kwh", "g_per_kwh", "tonnes"),
    [
        # BLOOM 176B (Luccioni et al., JMLR 2023): 433,196 kWh dynamic x 57 g/kWh = 24.69 t.
        (433_196, 57, 24.69),
        # Patterson et al. 2021 (energy already includes PUE): GPT-3 1,287 MWh x 0.429.
        (1_287_000, 429, 552),
        # ... and T5: 85.7 MWh x 0.545 kg/kWh = 46.7 t.
        (85_700, 545, 46.7),
    ],
)
def test_published_calculations_are_reproduced(energy_kwh, g_per_kwh, tonnes):
    out = estimate_json(
        "--energy-kwh", str(energy_kwh), "--pue", "1", "--grid-intensity", str(g_per_kwh)
    )
    digits = len(str(tonnes).split(".")[1]) if "." in str(tonnes) else 0
    assert round(out["co2e_kg"] / 1000, digits) == tonnes
    assert out["energy_kwh"] == energy_kwh and out["pue"] == 1.0
    names = {f["name"]: f for f in out["factors"]}
    assert names["grid_intensity"]["value"] == g_per_kwh
    assert names["grid_intensity"]["source"] == "user-supplied"


def test_cloud_estimate_with_instance_and_comparison():
    out = estimate_json(
        "--power-w",
        "400",
        "--count",
        "8",
        "--hours",
        "100",
        "--location",
        "aws:us-east-1",
        "--instance",
        "p4d.24xlarge",
        "--compare",
        "aws:eu-north-1,gcp:europe-west9",
    )
    # By hand: 8 x 400 W x 100 h = 320 kWh IT; x AWS PUE 1.14 = 364.8 kWh.
    assert out["it_energy_kwh"] == pytest.approx(320.0)
    assert out["energy_kwh"] == pytest.approx(364.8)
    assert out["cost_usd"] == pytest.approx(21.957642 * 100)  # the whole instance: 8 of 8 GPUs
    assert out["co2e_kg"] == pytest.approx(364.8 * out["grid_intensity_g_per_kwh"] / 1000)
    assert out["scope"] == "scope3-cat1"
    alts = {a["location"]: a for a in out["alternatives"]}
    assert set(alts) == {"aws:eu-north-1", "gcp:europe-west9"}
    for a in alts.values():
        assert set(a) >= {"energy_kwh", "co2e_kg", "co2e_market_kg", "cost_usd", "factors"}
        # The Swedish and French grids are far cleaner than Virginia's.
        assert a["co2e_kg"] < out["co2e_kg"] / 3
    # Neither region sells an instance carrying A100 SXM4 40GB: no cost, with the reason
    # naming the regions that do.
    assert alts["gcp:europe-west9"]["cost_usd"] is None
    (why,) = [r for r in alts["gcp:europe-west9"]["reasons"] if r.startswith("cost:")]
    assert "europe-west9" in why and "us-central1" in why
    gcp_grid = next(f for f in alts["gcp:europe-west9"]["factors"] if f["name"] == "grid_intensity")
    assert "Google" in gcp_grid["note"]


def test_text_output_names_the_greener_place():
    result = run(
        "estimate",
        "--power-w",
        "300",
        "--count",
        "4",
        "--hours",
        "10",
        "--location",
        "US-VA",
        "--compare",
        "SE-3",
    )
    assert result.exit_code == 0, result.output
    assert "lowest CO2e: SE-3" in result.output
    assert "eGRID" in result.output  # the factor's source is printed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--power-w", "300", "--location", "aws:us-east-7"], "us-east-1"),
        (
            ["--power-w", "300", "--location", "aws:us-east-1", "--instance", "p4d.24xlarg"],
            "did you mean p4d.24xlarge",
        ),
        (["--power-w", "300"], "location is unknown"),
        (["--power-w", "-5", "--location", "FR"], "--power-w -5.0 is invalid"),
        (["--energy-kwh", "10", "--location", "FR", "--pue", "0.9"], "--pue 0.9"),
    ],
)
def test_bad_input_is_a_usage_error(args, message):
    result = run("estimate", *args)
    assert result.exit_code == 2
    assert message in result.output


def test_tables_show_rows_with_provenance():
    grid = run("tables", "show", "grid", "--zone", "FR")
    assert grid.exit_code == 0 and "g/kWh" in grid.output and "CC BY 4.0" in grid.output
    regions = run("tables", "show", "regions", "--provider", "aws")
    assert "aws:us-east-1 -> US-VA" in regions.output
    prices = run("tables", "show", "prices")
    assert "p4d.24xlarge" in prices.output and "as of 2026-01-21" in prices.output
    listing = run("tables", "list")
    assert all(name in listing.output for name in ("grid", "regions", "pue", "prices"))


def test_embodied_carbon_is_reported_apart_from_co2e():
    out = estimate_json("--gpu", "A100", "--count", "8", "--hours", "100", "--location", "FR")
    # By hand: 8 x 400 W (A100 SXM4 board power) x 100 h = 320 kWh IT.
    assert out["it_energy_kwh"] == pytest.approx(320.0)
    # SCI: (1000 kg server + 8 x 150 kg GPUs) x 100 h / (4 y x 8760 h) = 6.2785 kg,
    # never added into the GHG-inventory co2e_kg.
    assert out["embodied_co2e_kg"] == pytest.approx(2200.0 * 100 / (4 * 8760))
    assert out["sci_co2e_kg"] == pytest.approx(out["co2e_kg"] + out["embodied_co2e_kg"])
    operational = out["energy_kwh"] * out["grid_intensity_g_per_kwh"] / 1000
    assert out["co2e_kg"] == pytest.approx(operational)
