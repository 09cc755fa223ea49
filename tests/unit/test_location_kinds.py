"""One hand-computed example per location kind: 1,000 kWh at PUE 1 -> CO2e from the raw data.

Expected figures are read from the data files themselves (CodeCarbon's JSON, the shipped
GCP CSV) and converted here by hand, not through greenml's lookup code.
"""

from __future__ import annotations

import csv
import json
from importlib.util import find_spec
from pathlib import Path

import pytest

from greenml.estimate import estimate

CC = Path(find_spec("codecarbon").origin).parent / "data" / "private_infra"
GCP = Path(find_spec("greenml").origin).parent / "factors" / "data" / "gcp_region_carbon.csv"


def country(a3):
    return json.loads((CC / "global_energy_mix.json").read_text())[a3]["carbon_intensity"]


def us_state(code):
    data = json.loads((CC / "2023/usa_emissions.json").read_text())
    lb = next(
        v["emissions"] for k, v in data.items() if not k.startswith("_") and v["regionCode"] == code
    )
    return lb * 453.59237 / 1000  # lb/MWh -> g/kWh


def gcp(region):
    with GCP.open() as f:
        return next(
            float(r["grid_intensity_g_per_kwh"]) for r in csv.DictReader(f) if r["region"] == region
        )


def nordic(key):
    return json.loads((CC / "nordic_emissions.json").read_text())["data"][key]["emission_factor"]


def china(code):
    return json.loads((CC / "2023/china_provincial_emissions.json").read_text())["data"][code][
        "emission_factor"
    ]


@pytest.mark.parametrize(
    ("location", "g_per_kwh"),
    [
        ("aws:us-east-1", lambda: us_state("VA")),  # Northern Virginia
        ("aws:eu-north-1", lambda: nordic("SE3")),  # Stockholm, bidding zone SE3
        ("azure:westeurope", lambda: country("NLD")),  # the Netherlands
        ("gcp:europe-west9", lambda: gcp("europe-west9")),  # Google's own figure for Paris
        ("gcp:us-central1", lambda: gcp("us-central1")),
        ("FR", lambda: country("FRA")),  # ISO 3166-1 alpha-2
        ("DEU", lambda: country("DEU")),  # ISO 3166-1 alpha-3
        ("US-CA", lambda: us_state("CA")),  # ISO 3166-2 subdivision
        ("CN-SC", lambda: china("CN-SC")),
        ("NO-4", lambda: nordic("NO4")),
    ],
)
def test_each_location_kind_by_hand(location, g_per_kwh):
    est = estimate(location=location, energy_kwh=1000.0, pue=1.0)
    assert est.footprint.co2e_kg == pytest.approx(1000.0 * g_per_kwh() / 1000.0)
    grid_f = next(f for f in est.footprint.factors if f.name == "grid_intensity")
    assert grid_f.source and grid_f.licence and grid_f.year


def test_canadian_province_by_hand():
    # Quebec's mix x CodeCarbon's fossil factors, worked out from the raw files.
    mix = json.loads((CC / "2023/canada_energy_mix.json").read_text())["quebec"]
    per = json.loads((CC / "carbon_intensity_per_source.json").read_text())
    g = (
        mix["coal"] * per["coal"]
        + mix["petroleum"] * per["petroleum"]
        + mix["naturalGas"] * per["natural_gas"]
    ) / mix["total"]
    est = estimate(location="CA-QC", energy_kwh=1000.0, pue=1.0)
    assert est.footprint.co2e_kg == pytest.approx(g)
