"""Grid intensity from CodeCarbon's shipped data, checked against the raw files by hand."""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path

import pytest

from greenml.errors import ConfigError
from greenml.factors import grid

DATA = Path(find_spec("codecarbon").origin).parent / "data" / "private_infra"


def raw(name):
    return json.loads((DATA / name).read_text())


@pytest.mark.parametrize("code", ["FR", "FRA", "fr"])
def test_country_alpha2_and_alpha3(code):
    g = grid.zone_intensity(code)
    row = raw("global_energy_mix.json")["FRA"]
    assert (g.zone, g.g_per_kwh, g.year, g.basis) == (
        "FRA",
        row["carbon_intensity"],
        row["year"],
        "lifecycle",
    )
    assert "CC BY 4.0" in g.licence and "global_energy_mix.json" in g.source
    # Sanity against Ember via Our World in Data, 2023 (REFERENCE-FACTS): France ~56.
    assert 40 < g.g_per_kwh < 70


def test_us_state_from_egrid_converted_by_hand():
    data = raw("2023/usa_emissions.json")
    lb = next(
        v["emissions"] for k, v in data.items() if not k.startswith("_") and v["regionCode"] == "VA"
    )
    g = grid.zone_intensity("US-VA")
    assert g.g_per_kwh == pytest.approx(lb * 453.59237 / 1000.0)
    assert (g.zone, g.year, g.basis) == ("US-VA", 2023, "combustion")
    assert "eGRID2023" in g.source and "public domain" in g.licence


def test_canadian_province_from_its_mix():
    row = raw("2023/canada_energy_mix.json")["alberta"]
    per = raw("carbon_intensity_per_source.json")
    want = (
        row["coal"] * per["coal"]
        + row["petroleum"] * per["petroleum"]
        + row["naturalGas"] * per["natural_gas"]
    ) / row["total"]
    g = grid.zone_intensity("CA-AB")
    assert g.g_per_kwh == pytest.approx(want)
    assert g.basis == "combustion" and "Alberta" in g.note
    assert grid.zone_intensity("CA-QC").g_per_kwh < 20  # hydro: Quebec is nearly carbon-free


def test_nordic_bidding_zone():
    g = grid.zone_intensity("SE-3")
    assert g.g_per_kwh == raw("nordic_emissions.json")["data"]["SE3"]["emission_factor"]
    assert g.year == 2025 and g.zone == "SE-3"


def test_chinese_province():
    g = grid.zone_intensity("CN-BJ")
    assert (
        g.g_per_kwh
        == raw("2023/china_provincial_emissions.json")["data"]["CN-BJ"]["emission_factor"]
    )
    assert "CO2 only" in g.note and g.year == 2023


def test_world_average_is_flagged_assumed():
    g = grid.world_average()
    assert g.assumed and g.g_per_kwh == raw("carbon_intensity_per_source.json")["world_average"]
    assert "ASSUMED" in g.factor().note


def test_factor_carries_provenance():
    f = grid.zone_intensity("DE").factor()
    assert (f.name, f.unit, f.year) == ("grid_intensity", "g/kWh", 2023)
    assert f.source and f.licence and "lifecycle" in f.note


@pytest.mark.parametrize(
    ("zone", "message"),
    [
        ("XX", "not an ISO 3166-1 country code"),
        ("DE-BY", "no sub-national grid data for 'DE-BY'"),
        ("US-ZZ", "no eGRID figure"),
        ("CN-XZ", "no official provincial factor"),
        ("CA-XX", "not a Canadian province"),
    ],
)
def test_unknown_zones_are_errors_not_guesses(zone, message):
    with pytest.raises(ConfigError, match=message):
        grid.zone_intensity(zone)


def test_misspelt_zones_get_suggestions():
    with pytest.raises(ConfigError, match=r"did you mean .*\bFRA\b"):
        grid.zone_intensity("FRR")
    with pytest.raises(ConfigError, match=r"did you mean .*US-TX"):
        grid.zone_intensity("US-CX")


def test_advice_names_the_option_where_the_user_is():
    from greenml.config import Voice

    with pytest.raises(ConfigError) as python:
        grid.zone_intensity("DE-BY")
    assert "location='DE'" in str(python.value)
    zone = Voice(flags={"location": "--zone"})
    with pytest.raises(ConfigError) as cli:
        grid.zone_intensity("DE-BY", voice=zone)
    assert "--zone DE" in str(cli.value) and "('DE')" not in str(cli.value)


def test_a_cloud_region_is_not_a_zone():
    with pytest.raises(ConfigError, match=r"'aws:us-east-1' is a cloud region.*regions"):
        grid.zone_intensity("aws:us-east-1")


def test_the_data_files_are_codecarbons_own():
    # read directly (no pandas), they are exactly what CodeCarbon's DataSource serves
    from codecarbon.input import DataSource

    from greenml.factors.codecarbon_data import DataFiles

    theirs, ours = DataSource(), DataFiles()
    assert ours.get_global_energy_mix_data() == theirs.get_global_energy_mix_data()
    assert ours.get_country_emissions_data("usa") == theirs.get_country_emissions_data("usa")
    assert ours.get_country_energy_mix_data("can") == theirs.get_country_energy_mix_data("can")
    for name in (
        "get_carbon_intensity_per_source_data",
        "get_nordic_country_energy_mix_data",
        "get_china_provincial_emissions_data",
    ):
        assert getattr(ours, name)() == getattr(theirs, name)(), name
