"""Hourly intensity weighting and market-based factors, worked by hand."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from greenml.errors import ConfigError
from greenml.factors.hourly import load_hourly_csv, market_intensity
from greenml.factors.provenance import Factor

T0 = datetime(2026, 3, 1, 10, tzinfo=timezone.utc).timestamp()  # 10:00 UTC


def write(tmp_path, text, name="hourly.csv"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_energy_is_weighted_by_the_hour_it_was_used(tmp_path):
    f = write(
        tmp_path,
        "timestamp,g_per_kwh\n"
        "2026-03-01T10:00:00Z,100\n2026-03-01T11:00:00Z,400\n2026-03-01T12:00:00+00:00,50\n",
    )
    h = load_hourly_csv(f)
    # 1 kWh evenly over 10:30-11:30: half at 100, half at 400 -> 250 g/kWh.
    assert h.weighted([(T0 + 1800, T0 + 5400, 3.6e6)]) == pytest.approx(250.0)
    # Two runs: 3 kWh at 11:xx and 1 kWh at 12:xx -> (3 x 400 + 1 x 50) / 4 = 312.5.
    intervals = [(T0 + 3600, T0 + 7200, 3 * 3.6e6), (T0 + 7200, T0 + 9000, 3.6e6)]
    assert h.weighted(intervals) == pytest.approx(312.5)
    # Same energy in a different hour changes the answer, as it should.
    assert h.weighted([(T0, T0 + 3600, 3.6e6)]) == pytest.approx(100.0)


def test_electricity_maps_export_prefers_lifecycle(tmp_path):
    f = write(
        tmp_path,
        "Datetime (UTC),Country,Carbon Intensity gCO₂eq/kWh (direct),"
        "Carbon Intensity gCO₂eq/kWh (LCA)\n2026-03-01 10:00:00,France,20,45\n",
    )
    h = load_hourly_csv(f)
    assert h.column.endswith("(LCA)") and h.at(T0 + 10) == 45.0


def test_pounds_per_mwh_are_converted(tmp_path):
    f = write(tmp_path, "point_time,value\n2026-03-01T10:00:00Z,1000\n")
    assert load_hourly_csv(f, unit="lb/MWh").at(T0) == pytest.approx(453.59237)


def test_energy_outside_the_file_is_an_error(tmp_path):
    h = load_hourly_csv(write(tmp_path, "timestamp,g_per_kwh\n2026-03-01T10:00:00Z,100\n"))
    with pytest.raises(ConfigError, match="no hourly intensity for 2026-03-01T11:00"):
        h.weighted([(T0 + 3000, T0 + 4000, 1000.0)])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("time,ci\n", "needs a time column"),
        ("timestamp,g_per_kwh\nyesterday,5\n", r"row 2, column 'timestamp'.*ISO 8601"),
        ("timestamp,g_per_kwh\n2026-03-01T10:00:00Z,-5\n", r"row 2, column 'g_per_kwh'.*>= 0"),
        ("timestamp,g_per_kwh\n2026-03-01T10:00:00Z,abc\n", "not a number"),
    ],
)
def test_bad_files_name_file_row_and_column(tmp_path, body, message):
    with pytest.raises(ConfigError, match=message):
        load_hourly_csv(write(tmp_path, body))


LOCATION = Factor("grid_intensity", 400.0, "g/kWh", source="test grid", year=2023)


def test_full_renewable_coverage_gives_zero():
    assert market_intensity(LOCATION, renewable_share=1.0).value == 0.0


def test_partial_coverage_with_residual_mix():
    f = market_intensity(LOCATION, renewable_share=0.25, residual_mix_g_per_kwh=500.0)
    assert f.value == pytest.approx(0.75 * 500.0)


def test_supplier_rate():
    assert market_intensity(LOCATION, supplier_g_per_kwh=120.0).value == 120.0


def test_without_instruments_market_equals_location_and_says_so():
    f = market_intensity(LOCATION)
    assert f.value == 400.0 and "equals location-based" in f.note


@pytest.mark.parametrize(
    "kwargs",
    [
        {"renewable_share": 1.5},
        {"supplier_g_per_kwh": -1.0},
        {"supplier_g_per_kwh": 1.0, "renewable_share": 0.5},
    ],
)
def test_bad_market_inputs(kwargs):
    with pytest.raises(ConfigError):
        market_intensity(LOCATION, **kwargs)
