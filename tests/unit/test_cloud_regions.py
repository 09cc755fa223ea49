"""The cloud region table, Google's per-region carbon table, and their loaders.

Spot checks are written by hand from the providers' own region lists, not read back from
the shipped CSV.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from greenml.errors import ConfigError
from greenml.factors.regions import (
    GCP_CARBON_COLUMNS,
    REGION_COLUMNS,
    CloudRegion,
    GcpRegionCarbon,
    load_cloud_regions,
    load_gcp_region_carbon,
    lookup_region,
)

ISO_LIKE = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")


@pytest.fixture(scope="module")
def regions() -> dict[tuple[str, str], CloudRegion]:
    return load_cloud_regions()


@pytest.fixture(scope="module")
def gcp_carbon() -> dict[str, GcpRegionCarbon]:
    return load_gcp_region_carbon()


# ---------------------------------------------------------------- shipped region table


def test_every_row_carries_provenance(regions):
    assert regions
    for row in regions.values():
        assert row.source.strip(), row
        assert row.licence.strip(), row
        assert 2020 <= row.source_year <= 2030, row
        assert row.name.strip(), row


def test_every_provider_present_with_a_plausible_count(regions):
    counts = Counter(provider for provider, _ in regions)
    assert counts["aws"] >= 30
    assert counts["azure"] >= 50
    assert counts["gcp"] >= 35
    assert set(counts) == {"aws", "azure", "gcp"}


@pytest.mark.parametrize(
    ("provider", "region", "zone", "country"),
    [
        ("aws", "us-east-1", "US-VA", "US"),  # Northern Virginia
        ("aws", "us-east-2", "US-OH", "US"),  # Ohio
        ("aws", "us-west-1", "US-CA", "US"),  # Northern California
        ("aws", "us-west-2", "US-OR", "US"),  # Oregon
        ("aws", "eu-north-1", "SE-3", "SE"),  # Stockholm
        ("aws", "ca-central-1", "CA-QC", "CA"),  # Montréal
        ("aws", "cn-northwest-1", "CN-NX", "CN"),  # Ningxia
        ("aws", "eu-west-3", "FR", "FR"),  # Paris
        ("azure", "eastus", "US-VA", "US"),  # Virginia
        ("azure", "eastus2", "US-VA", "US"),  # Virginia
        ("azure", "westus2", "US-WA", "US"),  # Washington
        ("azure", "centralus", "US-IA", "US"),  # Iowa
        ("azure", "southcentralus", "US-TX", "US"),  # Texas
        ("azure", "canadacentral", "CA-ON", "CA"),  # Toronto
        ("azure", "norwayeast", "NO-1", "NO"),  # Oslo
        ("gcp", "us-central1", "US-IA", "US"),  # Council Bluffs, Iowa
        ("gcp", "us-east4", "US-VA", "US"),  # Ashburn, Virginia
        ("gcp", "us-west1", "US-OR", "US"),  # The Dalles, Oregon
        ("gcp", "europe-north1", "FI", "FI"),  # Hamina, Finland
        ("gcp", "europe-north2", "SE-3", "SE"),  # Stockholm
        ("gcp", "northamerica-northeast1", "CA-QC", "CA"),  # Montréal
        ("gcp", "europe-west4", "NL", "NL"),  # Eemshaven
    ],
)
def test_spot_checks(regions, provider, region, zone, country):
    row = lookup_region(provider, region, regions)
    assert (row.zone, row.country) == (zone, country)


def test_zones_and_countries_are_iso_like(regions):
    for row in regions.values():
        assert ISO_LIKE.match(row.zone), row
        assert re.fullmatch(r"[A-Z]{2}", row.country), row
        assert row.zone.startswith(row.country), row


def test_no_duplicates_in_the_shipped_file():
    from importlib import resources

    text = resources.files("greenml.factors").joinpath("data/cloud_regions.csv").read_text()
    lines = text.splitlines()
    assert lines[0] == ",".join(REGION_COLUMNS)
    keys = [tuple(line.split(",", 2)[:2]) for line in lines[1:]]
    assert len(keys) == len(set(keys))
    assert len(keys) == len(load_cloud_regions())


def test_shipped_table_is_cached_but_callers_get_their_own_dict():
    first = load_cloud_regions()
    first.clear()
    assert load_cloud_regions()  # the cache was not emptied by a caller


def test_every_zone_has_a_grid_factor(regions):
    """A region whose zone has no grid data would fail at lookup time; catch it here."""
    from greenml.factors.grid import zone_intensity

    for zone in sorted({row.zone for row in regions.values()}):
        factor = zone_intensity(zone)
        assert factor.g_per_kwh >= 0, zone


# ---------------------------------------------------------------- Google's carbon table


def test_gcp_carbon_regions_exist_in_region_table(regions, gcp_carbon):
    assert gcp_carbon
    missing = sorted(r for r in gcp_carbon if ("gcp", r) not in regions)
    assert missing == []


def test_gcp_carbon_rows_are_sane_and_sourced(gcp_carbon):
    years = {row.year for row in gcp_carbon.values()}
    assert len(years) == 1  # one published year, recorded
    for row in gcp_carbon.values():
        assert 0 <= row.grid_intensity_g_per_kwh < 1000, row
        assert 0 <= row.cfe_percent <= 100, row
        assert "region-carbon-info" in row.source
        assert row.licence == "Apache-2.0"


def test_gcp_carbon_orders_of_magnitude(gcp_carbon):
    # Hydro/nuclear grids are far cleaner than Iowa's (REFERENCE-FACTS: Google's data).
    assert gcp_carbon["northamerica-northeast1"].grid_intensity_g_per_kwh < 50
    assert gcp_carbon["europe-west9"].grid_intensity_g_per_kwh < 50
    assert 300 < gcp_carbon["us-central1"].grid_intensity_g_per_kwh < 600


# ---------------------------------------------------------------- unknown regions


def test_unknown_region_names_it_and_suggests_close_ones(regions):
    with pytest.raises(ConfigError) as e:
        lookup_region("aws", "us-east-7", regions)
    msg = str(e.value)
    assert msg.startswith("unknown aws region 'us-east-7'; did you mean ")
    assert "'us-east-1'" in msg
    assert "'us-east-2'" in msg
    assert msg.endswith("(greenml tables show regions --provider aws lists them)")


def test_suggestions_stay_within_the_provider(regions):
    with pytest.raises(ConfigError) as e:
        lookup_region("gcp", "us-east-1", regions)
    assert "'us-east1'" in str(e.value)
    assert "'us-east-2'" not in str(e.value)  # an AWS id, not a GCP one


def test_unknown_region_with_nothing_close(regions):
    with pytest.raises(ConfigError, match=r"unknown azure region 'zzzz'; \(greenml tables"):
        lookup_region("azure", "zzzz", regions)


# ---------------------------------------------------------------- user tables

GOOD_ROW = "aws,us-east-1,US East (N. Virginia),US,US-VA,,AWS docs,2025,facts,"


def write(tmp_path, body: str, name: str = "regions.csv"):
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def test_user_region_table_loads(tmp_path):
    header = ",".join(REGION_COLUMNS)
    path = write(tmp_path, f"{header}\n{GOOD_ROW}\n")
    table = load_cloud_regions(path)
    assert table == {
        ("aws", "us-east-1"): CloudRegion(
            "aws", "us-east-1", "US East (N. Virginia)", "US", "US-VA", "", "AWS docs", 2025,
            "facts", "",
        )
    }  # fmt: skip


def test_missing_column_names_file_row_and_column(tmp_path):
    header = ",".join(c for c in REGION_COLUMNS if c != "zone")
    path = write(tmp_path, f"{header}\naws,us-east-1,x,US,,src,2025,lic,\n")
    with pytest.raises(ConfigError) as e:
        load_cloud_regions(path)
    msg = str(e.value)
    assert str(path) in msg
    assert "row 1" in msg
    assert "'zone'" in msg


@pytest.mark.parametrize(
    ("row", "column", "fragment"),
    [
        ("aws,us-east-1,x,US,US-VA,,src,twenty,lic,", "source_year", "'twenty'"),
        ("aws,us-east-1,x,US,US-VA,,src,2025.5,lic,", "source_year", "'2025.5'"),
        ("aws,us-east-1,x,US,Virginia,,src,2025,lic,", "zone", "'Virginia'"),
        ("aws,us-east-1,x,US,us-va,,src,2025,lic,", "zone", "'us-va'"),
        ("aws,us-east-1,x,US,FR,,src,2025,lic,", "zone", "'FR'"),
        ("aws,us-east-1,x,USA,US-VA,,src,2025,lic,", "country", "'USA'"),
        ("ibm,us-south,x,US,US-TX,,src,2025,lic,", "provider", "'ibm'"),
        ("aws,us-east-1,x,US,US-VA,,,2025,lic,", "source", "empty"),
        ("aws,us-east-1,x,US,US-VA,,src,2025,,", "licence", "empty"),
        ("aws,,x,US,US-VA,,src,2025,lic,", "region", "empty"),
        ("aws,us-east-1,x,US,US-VA,,src,,lic,", "source_year", "empty"),
    ],
)
def test_bad_cell_names_file_row_and_column(tmp_path, row, column, fragment):
    header = ",".join(REGION_COLUMNS)
    path = write(tmp_path, f"{header}\n{GOOD_ROW.replace('us-east-1', 'us-west-2')}\n{row}\n")
    with pytest.raises(ConfigError) as e:
        load_cloud_regions(path)
    msg = str(e.value)
    assert str(path) in msg
    assert "row 3" in msg
    assert f"column {column!r}" in msg
    assert fragment in msg


def test_duplicate_region_names_file_row_and_column(tmp_path):
    header = ",".join(REGION_COLUMNS)
    path = write(tmp_path, f"{header}\n{GOOD_ROW}\n{GOOD_ROW}\n")
    with pytest.raises(ConfigError) as e:
        load_cloud_regions(path)
    msg = str(e.value)
    assert str(path) in msg
    assert "row 3" in msg
    assert "column 'region'" in msg
    assert "duplicate" in msg
    assert "first at row 2" in msg


def test_same_region_id_under_two_providers_is_not_a_duplicate(tmp_path):
    header = ",".join(REGION_COLUMNS)
    other = GOOD_ROW.replace("aws,", "gcp,", 1)
    path = write(tmp_path, f"{header}\n{GOOD_ROW}\n{other}\n")
    assert len(load_cloud_regions(path)) == 2


def test_unreadable_user_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_cloud_regions(tmp_path / "absent.csv")


# ---------------------------------------------------------------- user GCP carbon tables

GCP_GOOD = "us-central1,2024,412.72,87,region-carbon-info,Apache-2.0"


def test_user_gcp_carbon_table_loads(tmp_path):
    path = write(tmp_path, ",".join(GCP_CARBON_COLUMNS) + f"\n{GCP_GOOD}\n", "gcp.csv")
    row = load_gcp_region_carbon(path)["us-central1"]
    assert (row.year, row.grid_intensity_g_per_kwh, row.cfe_percent) == (2024, 412.72, 87.0)


@pytest.mark.parametrize(
    ("row", "column", "fragment"),
    [
        ("us-east1,2024,-1,50,src,lic", "grid_intensity_g_per_kwh", "negative"),
        ("us-east1,2024,lots,50,src,lic", "grid_intensity_g_per_kwh", "'lots'"),
        ("us-east1,2024,nan,50,src,lic", "grid_intensity_g_per_kwh", "finite"),
        ("us-east1,2024,500,101,src,lic", "cfe_percent", "outside 0..100"),
        ("us-east1,2024,500,-0.5,src,lic", "cfe_percent", "outside 0..100"),
        ("us-east1,last,500,50,src,lic", "year", "'last'"),
        ("us-east1,2024,500,50,,lic", "source", "empty"),
        ("us-central1,2024,500,50,src,lic", "region", "duplicate"),
    ],
)
def test_bad_gcp_carbon_cell_names_file_row_and_column(tmp_path, row, column, fragment):
    path = write(tmp_path, ",".join(GCP_CARBON_COLUMNS) + f"\n{GCP_GOOD}\n{row}\n", "gcp.csv")
    with pytest.raises(ConfigError) as e:
        load_gcp_region_carbon(path)
    msg = str(e.value)
    assert str(path) in msg
    assert "row 3" in msg
    assert f"column {column!r}" in msg
    assert fragment in msg


def test_gcp_carbon_missing_column(tmp_path):
    header = ",".join(c for c in GCP_CARBON_COLUMNS if c != "cfe_percent")
    path = write(tmp_path, f"{header}\nus-east1,2024,500,src,lic\n", "gcp.csv")
    with pytest.raises(ConfigError, match=r"row 1: missing column\(s\) 'cfe_percent'"):
        load_gcp_region_carbon(path)
