"""Instance prices from the SkyPilot catalog: the shipped table against the catalog's own
text, the importer on small catalog files, `greenml tables import-prices`, and lookups.

The catalog lines below are verbatim rows of the pinned catalog files (GpuInfo emptied):
AWS catalogs/v8/aws/vms.csv @e385a0d3, Google Cloud catalogs/v8/gcp/vms.csv @8427bbff, Azure
catalogs/v6/azure/vms.csv @098741e7. Each expected figure is worked out in the test from
those lines (the arithmetic is in a comment), never read back from the code under test.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import os
import time
import warnings

import pytest
from click.testing import CliRunner

from greenml import config
from greenml.cli import main
from greenml.errors import ConfigError
from greenml.factors.prices import StalePriceWarning, load_prices, lookup_price
from greenml.factors.skypilot import price_rows, read_offers, screen_gpu_prices

AWS_HEADER = (
    "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,"
    "Region,AvailabilityZone,Arch"
)
GCP_HEADER = (
    "InstanceType,vCPUs,MemoryGiB,AcceleratorName,AcceleratorCount,GpuInfo,Region,"
    "AvailabilityZone,Price,SpotPrice"
)
AZURE_HEADER = (
    "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,"
    "Region,Generation"
)
AS_OF = datetime.date(2026, 11, 20)


def catalog(header: str, *lines: str) -> list[dict[str, str]]:
    """Catalog lines (text) as rows by column, read with the csv module."""
    return list(csv.DictReader(io.StringIO("\n".join([header, *lines]))))


def shipped(provider, instance, region, pricing="on-demand"):
    """A row of the shipped table; staleness is not what these tests are about."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StalePriceWarning)
        return lookup_price(provider, instance, region, pricing=pricing)


def write(folder, header, *lines, name="vms.csv"):
    path = folder / name
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def imported(tmp_path, header, *lines, families=None):
    """price_rows of a small catalog file, by (instance, region, pricing)."""
    provider, offers = read_offers(write(tmp_path, header, *lines))
    made = price_rows(provider, offers, as_of=AS_OF, source="test catalog", families=families)
    return made, {(r["instance_type"], r["region"], r["pricing"]): r for r in made.rows}


# --- A. the shipped table against the catalog's own text ---------------------------------

P5_US_EAST_1 = (
    "p5.48xlarge,H100,8.0,192.0,2048.0,,55.04,55.040000,us-east-1,use1-az1,x86_64",
    "p5.48xlarge,H100,8.0,192.0,2048.0,,55.04,47.205400,us-east-1,use1-az2,x86_64",
    "p5.48xlarge,H100,8.0,192.0,2048.0,,55.04,14.582000,us-east-1,use1-az3,x86_64",
    "p5.48xlarge,H100,8.0,192.0,2048.0,,55.04,55.040000,us-east-1,use1-az4,x86_64",
    "p5.48xlarge,H100,8.0,192.0,2048.0,,55.04,14.246000,us-east-1,use1-az5,x86_64",
    "p5.48xlarge,H100,8.0,192.0,2048.0,,55.04,14.868600,us-east-1,use1-az6,x86_64",
)
# eu-north-1: two zones without a spot price
P5_EU_NORTH_1 = (
    "p5.48xlarge,H100,8.0,192.0,2048.0,,58.8928,,eu-north-1,eun1-az1,x86_64",
    "p5.48xlarge,H100,8.0,192.0,2048.0,,58.8928,,eu-north-1,eun1-az2,x86_64",
    "p5.48xlarge,H100,8.0,192.0,2048.0,,58.8928,20.243900,eu-north-1,eun1-az3,x86_64",
)
# af-south-1 (an opt-in region): spot exactly a tenth of on-demand, a stand-in
G4DN_AF_SOUTH_1 = (
    "g4dn.12xlarge,T4,4.0,48.0,192.0,,5.19,0.519000,af-south-1,afs1-az2,x86_64",
    "g4dn.12xlarge,T4,4.0,48.0,192.0,,5.19,0.519000,af-south-1,afs1-az3,x86_64",
)
A2_HIGHGPU_1G = (
    "a2-highgpu-1g,12.0,85.0,,,,us-central1,us-central1-a,0.73948,0.36975",
    ",,,A100,1,,us-central1,us-central1-a,2.93391,1.4341",
)
G2_STANDARD_4 = (
    "g2-standard-4,4.0,16.0,,,,us-central1,us-central1-a,0.14679,0.05874",
    ",,,L4,1,,us-central1,us-central1-a,0.56004,0.2231",
)
N1_STANDARD_8_T4 = (
    "n1-standard-8,8.0,30.0,,,,us-central1,us-central1-a,0.38,0.11605",
    ",,,T4,1,,us-central1,us-central1-a,0.35,0.175",
)
NC24ADS_A100_V4 = "Standard_NC24ads_A100_v4,A100-80GB,1,24.0,220,,3.673,0.444433,eastus,V2"
ND96ISR_H100_V5 = "Standard_ND96isr_H100_v5,H100,12,96.0,1900,,98.32,98.32,eastus,V2"

SOURCES = {
    "aws": ("catalogs/v8/aws/vms.csv", "e385a0d3"),
    "gcp": ("catalogs/v8/gcp/vms.csv", "8427bbff"),
    "azure": ("catalogs/v6/azure/vms.csv", "098741e7"),
}


def test_aws_p5_on_demand_is_the_catalog_price():
    zones = catalog(AWS_HEADER, *P5_US_EAST_1)
    (price,) = {float(z["Price"]) for z in zones}  # every zone says 55.04
    p = shipped("aws", "p5.48xlarge", "us-east-1")
    assert p.usd_per_hour == pytest.approx(price, abs=1e-9)
    assert (p.gpu_count, p.gpu_model) == (int(float(zones[0]["AcceleratorCount"])), "H100")


def test_aws_p5_spot_is_the_median_of_the_zones_with_a_real_spot_price():
    zones = catalog(AWS_HEADER, *P5_US_EAST_1)
    # az1 and az4 repeat the on-demand 55.04 (stand-ins); the others, sorted:
    # 14.246, 14.582, 14.8686, 47.2054 -> median (14.582 + 14.8686) / 2 = 14.7253
    real = sorted(
        float(z["SpotPrice"]) for z in zones if float(z["SpotPrice"]) != float(z["Price"])
    )
    assert len(real) == 4
    expected = (real[1] + real[2]) / 2
    assert expected == pytest.approx(14.7253)
    p = shipped("aws", "p5.48xlarge", "us-east-1", "spot")
    assert p.usd_per_hour == pytest.approx(expected, abs=1e-9)
    assert "14.246-47.2054" in p.note  # the zones' range
    assert p.gpu_count == 8


def test_aws_zones_without_a_spot_price_are_left_out_of_the_median():
    zones = catalog(AWS_HEADER, *P5_EU_NORTH_1)
    # only eun1-az3 has a spot price: 20.2439 (no median over the empty zones)
    (spot,) = [float(z["SpotPrice"]) for z in zones if z["SpotPrice"]]
    assert shipped("aws", "p5.48xlarge", "eu-north-1", "spot").usd_per_hour == pytest.approx(spot)
    assert shipped("aws", "p5.48xlarge", "eu-north-1").usd_per_hour == pytest.approx(58.8928)


def test_aws_spot_of_exactly_a_tenth_is_not_shipped():
    zones = catalog(AWS_HEADER, *G4DN_AF_SOUTH_1)
    # 5.19 / 10 = 0.519: the catalog's stand-in where AWS lists no spot price
    assert all(float(z["SpotPrice"]) * 10 == pytest.approx(float(z["Price"])) for z in zones)
    assert shipped("aws", "g4dn.12xlarge", "af-south-1").usd_per_hour == pytest.approx(5.19)
    with pytest.raises(ConfigError, match="no spot price"):
        shipped("aws", "g4dn.12xlarge", "af-south-1", "spot")


def gcp_sum(lines, column):
    vm, gpu = catalog(GCP_HEADER, *lines)
    return float(vm[column]) + float(gpu[column])


@pytest.mark.parametrize(
    ("lines", "instance", "sums", "gpu"),
    [
        # on-demand 0.73948 + 2.93391 = 3.67339; spot 0.36975 + 1.4341 = 1.80385
        (A2_HIGHGPU_1G, "a2-highgpu-1g", (3.67339, 1.80385), "A100"),
        # on-demand 0.14679 + 0.56004 = 0.70683; spot 0.05874 + 0.2231 = 0.28184
        (G2_STANDARD_4, "g2-standard-4", (0.70683, 0.28184), "L4"),
        # on-demand 0.38 + 0.35 = 0.73; spot 0.11605 + 0.175 = 0.29105 (VM + attached T4)
        (N1_STANDARD_8_T4, "n1-standard-8+T4:1", (0.73, 0.29105), "T4"),
    ],
)
def test_a_gcp_machine_is_its_vm_row_plus_its_gpu_row(lines, instance, sums, gpu):
    on_demand, spot = gcp_sum(lines, "Price"), gcp_sum(lines, "SpotPrice")
    assert (on_demand, spot) == (pytest.approx(sums[0]), pytest.approx(sums[1]))
    p = shipped("gcp", instance, "us-central1")
    assert p.usd_per_hour == pytest.approx(on_demand, abs=1e-9)
    assert (p.gpu_count, p.gpu_model) == (1, gpu)
    s = shipped("gcp", instance, "us-central1", "spot")
    assert s.usd_per_hour == pytest.approx(spot, abs=1e-9)


def test_a2_highgpu_1g_is_googles_published_price():
    assert shipped("gcp", "a2-highgpu-1g", "us-central1").usd_per_hour == pytest.approx(
        3.673385, abs=1e-5
    )


def test_azure_nc24ads_a100_v4_with_the_board_azure_documents():
    (row,) = catalog(AZURE_HEADER, NC24ADS_A100_V4)
    p = shipped("azure", "Standard_NC24ads_A100_v4", "eastus")
    assert p.usd_per_hour == pytest.approx(float(row["Price"]), abs=1e-9)  # 3.673
    # the catalog says A100-80GB; Azure's NC A100 v4 documentation: the PCIe 80GB board
    assert (p.gpu_count, p.gpu_model) == (int(row["AcceleratorCount"]), "A100-PCIE-80GB")
    s = shipped("azure", "Standard_NC24ads_A100_v4", "eastus", "spot")
    assert s.usd_per_hour == pytest.approx(float(row["SpotPrice"]), abs=1e-9)  # 0.444433


def test_azure_nd96isr_h100_v5_has_eight_gpus_and_no_spot_stand_in():
    (row,) = catalog(AZURE_HEADER, ND96ISR_H100_V5)
    assert row["AcceleratorCount"] == "12" and row["SpotPrice"] == row["Price"]
    p = shipped("azure", "Standard_ND96isr_H100_v5", "eastus")
    assert p.usd_per_hour == pytest.approx(float(row["Price"]), abs=1e-9)  # 98.32
    assert (p.gpu_count, p.gpu_model) == (8, "H100")  # Azure's ND H100 v5 documentation
    assert "12" in p.note  # says what the catalog had
    with pytest.raises(ConfigError, match="no spot price"):
        shipped("azure", "Standard_ND96isr_H100_v5", "eastus", "spot")


@pytest.mark.parametrize(
    ("provider", "instance", "region"),
    [
        ("aws", "p5.48xlarge", "us-east-1"),
        ("gcp", "a2-highgpu-1g", "us-central1"),
        ("azure", "Standard_NC24ads_A100_v4", "eastus"),
    ],
)
def test_shipped_rows_cite_the_catalog_file_and_commit(provider, instance, region):
    path, commit = SOURCES[provider]
    for pricing in ("on-demand", "spot"):
        p = shipped(provider, instance, region, pricing)
        assert path in p.source and commit in p.source, p.source
        assert "Apache-2.0" in p.licence


# --- B. read_offers and price_rows on small catalog files ---------------------------------


@pytest.mark.parametrize(
    ("header", "provider"), [(AWS_HEADER, "aws"), (GCP_HEADER, "gcp"), (AZURE_HEADER, "azure")]
)
def test_provider_is_told_from_the_header(tmp_path, header, provider):
    assert read_offers(write(tmp_path, header))[0] == provider


def test_an_unknown_header_asks_for_the_provider(tmp_path):
    header = AZURE_HEADER.replace(",Generation", "")
    line = "Standard_NC24ads_A100_v4,A100-80GB,1,24.0,220,,3.673,0.444433,eastus"
    path = write(tmp_path, header, line, name="mystery.csv")
    with pytest.raises(ConfigError) as e:
        read_offers(path)
    assert "mystery.csv" in str(e.value) and "--provider" in str(e.value)
    # told, the file reads
    provider, offers = read_offers(path, "azure")
    assert provider == "azure" and offers[0].price == 3.673


def test_gcp_machine_is_vm_plus_gpus_in_the_same_zone(tmp_path):
    _, rows = imported(
        tmp_path,
        GCP_HEADER,
        "a2-highgpu-2g,24.0,170.0,,,,us-central1,us-central1-a,1.47896,0.7395",
        ",,,A100,1,,us-central1,us-central1-a,2.93391,1.4341",
        ",,,A100,2,,us-central1,us-central1-a,5.86782,2.8682",
    )
    # a2-highgpu-2g carries two A100: 1.47896 + 5.86782 = 7.34678; spot 0.7395 + 2.8682 = 3.6077
    row = rows[("a2-highgpu-2g", "us-central1", "on-demand")]
    assert float(row["usd_per_hour"]) == pytest.approx(7.34678)
    assert (row["gpu_model"], row["gpu_count"]) == ("A100", "2")
    assert float(rows[("a2-highgpu-2g", "us-central1", "spot")]["usd_per_hour"]) == (
        pytest.approx(3.6077)
    )


def test_gcp_zone_listing_the_vm_without_its_gpus_does_not_sell_it(tmp_path):
    made, rows = imported(
        tmp_path,
        GCP_HEADER,
        "g2-standard-4,4.0,16.0,,,,us-central1,us-central1-a,0.14679,0.05874",
        "g2-standard-4,4.0,16.0,,,,us-central1,us-central1-b,0.2,0.1",
        "g2-standard-4,4.0,16.0,,,,europe-west4,europe-west4-a,0.16,0.06",
        ",,,L4,1,,us-central1,us-central1-a,0.56004,0.2231",
    )
    assert {(i, r) for i, r, _ in rows} == {("g2-standard-4", "us-central1")}
    # only zone a counts: 0.14679 + 0.56004 = 0.70683 (zone b's VM-only 0.2 is not sold)
    row = rows[("g2-standard-4", "us-central1", "on-demand")]
    assert float(row["usd_per_hour"]) == pytest.approx(0.70683)
    assert "median" not in row["note"]
    assert sum(made.skipped.values()) >= 2


def test_gcp_a4_vm_priced_zero_takes_the_b200_rows_price(tmp_path):
    _, rows = imported(
        tmp_path,
        GCP_HEADER,
        "a4-highgpu-8g,224.0,3968.0,,,,us-east4,us-east4-b,0.0,0.0",
        ",,,B200,8,,us-east4,us-east4-b,64.44,25.0",
    )
    # 0.0 + 64.44 = 64.44; spot 0.0 + 25.0 = 25.0
    assert float(rows[("a4-highgpu-8g", "us-east4", "on-demand")]["usd_per_hour"]) == 64.44
    assert float(rows[("a4-highgpu-8g", "us-east4", "spot")]["usd_per_hour"]) == 25.0
    assert rows[("a4-highgpu-8g", "us-east4", "on-demand")]["gpu_count"] == "8"


def test_gcp_n1_rows_for_each_gpu_count_listed(tmp_path):
    _, rows = imported(
        tmp_path,
        GCP_HEADER,
        "n1-standard-8,8.0,30.0,,,,us-central1,us-central1-a,0.38,0.11605",
        ",,,T4,1,,us-central1,us-central1-a,0.35,0.175",
        ",,,T4,2,,us-central1,us-central1-a,0.7,0.35",
        ",,,T4,4,,us-central1,us-central1-a,1.4,0.7",
    )
    on_demand = {i: float(r["usd_per_hour"]) for (i, _, k), r in rows.items() if k == "on-demand"}
    # 0.38 + 0.35 = 0.73; 0.38 + 0.7 = 1.08; 0.38 + 1.4 = 1.78
    assert on_demand == {
        "n1-standard-8+T4:1": pytest.approx(0.73),
        "n1-standard-8+T4:2": pytest.approx(1.08),
        "n1-standard-8+T4:4": pytest.approx(1.78),
    }
    assert rows[("n1-standard-8+T4:4", "us-central1", "spot")]["gpu_count"] == "4"


def test_placeholder_price_is_left_out_and_counted(tmp_path):
    made, rows = imported(
        tmp_path,
        AWS_HEADER,
        "p5.48xlarge,H100,8.0,192.0,2048.0,,700.0,,us-east-1,use1-az1,x86_64",
        "p5.48xlarge,H100,8.0,192.0,2048.0,,55.04,14.582,us-west-2,usw2-az1,x86_64",
    )
    assert ("p5.48xlarge", "us-east-1", "on-demand") not in rows
    assert ("p5.48xlarge", "us-west-2", "on-demand") in rows
    assert any("placeholder" in reason and n == 1 for reason, n in made.skipped.items())


def test_empty_price_is_left_out(tmp_path):
    _, rows = imported(
        tmp_path,
        AWS_HEADER,
        "p5e.48xlarge,H200,8.0,192.0,2048.0,,,,eu-north-1,eun1-az1,x86_64",
        "p5e.48xlarge,H200,8.0,192.0,2048.0,,,17.4812,us-east-2,use2-az3,x86_64",
    )
    # no on-demand price anywhere; the one spot price is kept (it is a real one)
    assert list(rows) == [("p5e.48xlarge", "us-east-2", "spot")]


@pytest.mark.parametrize(
    ("spot", "why"),
    [
        ("50.0", "equal to on-demand"),
        ("50.004", "on-demand to 0.01 %"),
        ("60.0", "above on-demand"),
        ("5.0", "exactly a tenth of on-demand"),
    ],
)
def test_spot_stand_ins_are_not_shipped_as_spot(tmp_path, spot, why):
    made, rows = imported(
        tmp_path, AWS_HEADER, f"p5.48xlarge,H100,8.0,192.0,2048.0,,50.0,{spot},r1,r1-az1,x86_64"
    )
    assert set(rows) == {("p5.48xlarge", "r1", "on-demand")}, why
    assert any("stand-in" in reason for reason in made.skipped), why


@pytest.mark.parametrize("spot", ["5.2", "4.8", "49.9"])
def test_spot_near_the_stand_in_values_is_a_real_spot_price(tmp_path, spot):
    # 5.2 and 4.8 are 4 % off a tenth of 50; 49.9 is 0.2 % below on-demand
    _, rows = imported(
        tmp_path, AWS_HEADER, f"p5.48xlarge,H100,8.0,192.0,2048.0,,50.0,{spot},r1,r1-az1,x86_64"
    )
    assert float(rows[("p5.48xlarge", "r1", "spot")]["usd_per_hour"]) == float(spot)


def test_fractional_gpus_are_left_out(tmp_path):
    made, rows = imported(
        tmp_path,
        AZURE_HEADER,
        "Standard_NV6ads_A10_v5,A10,0.166667,6.0,55,,0.454,0.0454,eastus,V2",
        "Standard_NV9ads_A10_v5,A10,0.25,9.0,110,,0.908,0.2,eastus,V2",
        "Standard_NV36ads_A10_v5,A10,1,36.0,440,,3.2,0.9,eastus,V2",
    )
    assert {i for i, _, _ in rows} == {"Standard_NV36ads_A10_v5"}
    assert any("fractional" in reason and n == 2 for reason, n in made.skipped.items())


def test_zones_with_different_spot_prices_give_the_median_and_the_range(tmp_path):
    _, rows = imported(
        tmp_path,
        AWS_HEADER,
        "g5.xlarge,A10G,1.0,4.0,16.0,,1.006,0.30,us-east-1,use1-az1,x86_64",
        "g5.xlarge,A10G,1.0,4.0,16.0,,1.006,0.45,us-east-1,use1-az2,x86_64",
        "g5.xlarge,A10G,1.0,4.0,16.0,,1.006,0.36,us-east-1,use1-az4,x86_64",
    )
    # sorted 0.30, 0.36, 0.45 -> median 0.36, range 0.3-0.45
    row = rows[("g5.xlarge", "us-east-1", "spot")]
    assert float(row["usd_per_hour"]) == pytest.approx(0.36)
    assert "median of 3 zones" in row["note"] and "0.3-0.45" in row["note"]
    on_demand = rows[("g5.xlarge", "us-east-1", "on-demand")]
    assert float(on_demand["usd_per_hour"]) == 1.006 and on_demand["note"] == ""


def test_a_non_number_price_names_file_row_and_column(tmp_path):
    path = write(
        tmp_path,
        AZURE_HEADER,
        "Standard_NC24ads_A100_v4,A100-80GB,1,24.0,220,,3.673,0.444433,eastus,V2",
        "Standard_NC24ads_A100_v4,A100-80GB,1,24.0,220,,n/a,0.47749,eastus2,V2",
        name="azure_vms.csv",
    )
    with pytest.raises(ConfigError) as e:
        read_offers(path)
    text = str(e.value)
    assert "azure_vms.csv" in text and "row 3" in text and "column 'Price'" in text
    assert "'n/a'" in text


def test_a_missing_region_column_is_named(tmp_path):
    header = AWS_HEADER.replace("Region,", "")
    path = write(tmp_path, header, "g5.xlarge,A10G,1.0,4.0,16.0,,1.006,0.30,use1-az1,x86_64")
    with pytest.raises(ConfigError, match="Region"):
        read_offers(path)


@pytest.mark.parametrize("text", ["", "\n"])
def test_an_empty_file_is_an_error(tmp_path, text):
    path = tmp_path / "empty.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"empty\.csv.*empty"):
        read_offers(path)


def test_an_accelerator_without_a_count_is_an_error(tmp_path):
    path = write(
        tmp_path, AWS_HEADER, "g5.xlarge,A10G,,4.0,16.0,,1.006,0.30,us-east-1,use1-az1,x86_64"
    )
    with pytest.raises(ConfigError) as e:
        read_offers(path)
    assert "row 2" in str(e.value) and "AcceleratorCount" in str(e.value)


def test_a_family_is_a_prefix_up_to_a_separator(tmp_path):
    _, rows = imported(
        tmp_path,
        AWS_HEADER,
        "g5.xlarge,A10G,1.0,4.0,16.0,,1.006,0.30,us-east-1,use1-az1,x86_64",
        "g5g.xlarge,T4g,1.0,4.0,8.0,,0.42,0.15,us-east-1,use1-az1,arm64",
        "p5.48xlarge,H100,8.0,192.0,2048.0,,55.04,14.582,us-east-1,use1-az3,x86_64",
        families=["g5"],
    )
    assert {i for i, _, _ in rows} == {"g5.xlarge"}


def test_azure_family_takes_every_size_of_the_series(tmp_path):
    _, rows = imported(
        tmp_path,
        AZURE_HEADER,
        ND96ISR_H100_V5,
        NC24ADS_A100_V4,
        "Standard_ND40rs_v2,V100-32GB,8,40.0,672,,22.032,2.42352,eastus,V2",
        families=["Standard_ND"],
    )
    assert {i for i, _, _ in rows} == {"Standard_ND96isr_H100_v5", "Standard_ND40rs_v2"}


def test_azure_family_in_lower_case(tmp_path):
    _, rows = imported(
        tmp_path, AZURE_HEADER, ND96ISR_H100_V5, NC24ADS_A100_V4, families=["standard_nd"]
    )
    assert {i for i, _, _ in rows} == {"Standard_ND96isr_H100_v5"}


def test_azure_gpus_are_corrected_from_azures_documentation(tmp_path):
    _, rows = imported(tmp_path, AZURE_HEADER, ND96ISR_H100_V5, NC24ADS_A100_V4)
    nd = rows[("Standard_ND96isr_H100_v5", "eastus", "on-demand")]
    # the catalog's 12 H100 are 8 in Azure's ND H100 v5 documentation; price unchanged
    assert (nd["gpu_model"], nd["gpu_count"], float(nd["usd_per_hour"])) == ("H100", "8", 98.32)
    assert "12" in nd["note"]
    nc = rows[("Standard_NC24ads_A100_v4", "eastus", "on-demand")]
    assert (nc["gpu_model"], nc["gpu_count"]) == ("A100-PCIE-80GB", "1")
    assert "A100-80GB" in nc["note"]


def test_gcp_h100_mega_is_named_h100_and_the_note_says_so(tmp_path):
    _, rows = imported(
        tmp_path,
        GCP_HEADER,
        "a3-megagpu-8g,208.0,1872.0,,,,us-east4,us-east4-a,11.0,2.5",
        ",,,H100-MEGA,8,,us-east4,us-east4-a,80.0,20.0",
    )
    # 11.0 + 80.0 = 91.0
    row = rows[("a3-megagpu-8g", "us-east4", "on-demand")]
    assert (row["gpu_model"], row["gpu_count"], float(row["usd_per_hour"])) == ("H100", "8", 91.0)
    assert "H100-MEGA" in row["note"]


def test_an_instance_without_a_gpu_is_left_out(tmp_path):
    made, rows = imported(
        tmp_path,
        AWS_HEADER,
        "m5.xlarge,,,4.0,16.0,,0.192,0.08,us-east-1,use1-az1,x86_64",
        "g5.xlarge,A10G,1.0,4.0,16.0,,1.006,0.30,us-east-1,use1-az1,x86_64",
    )
    assert {i for i, _, _ in rows} == {"g5.xlarge"}
    assert any("without a GPU" in reason for reason in made.skipped)


GPU_ROWS = (
    # A100: confirmed 2.93391 per GPU-hour; the band is 0.6x..1/0.6x = 1.7603..4.8899
    ",,,A100,1,,us-central1,us-central1-a,2.93391,1.4341",
    ",,,A100,2,,europe-west4,europe-west4-a,6.0,3.0",  # 3.0 per GPU: kept
    ",,,A100,1,,asia-east1,asia-east1-a,1.5,0.7",  # 1.5 < 1.7603: dropped
    # T4: no confirmed price; 0.7 / 0.35 = 2.0 x > 1.7 x: every T4 row dropped
    ",,,T4,1,,us-central1,us-central1-a,0.35,0.175",
    ",,,T4,1,,us-west1,us-west1-a,0.7,0.35",
    # L4: no confirmed price; 0.6 / 0.56004 = 1.07 x: kept
    ",,,L4,1,,us-central1,us-central1-a,0.56004,0.2231",
    ",,,L4,1,,us-west1,us-west1-a,0.6,0.25",
    "a2-highgpu-1g,12.0,85.0,,,,asia-east1,asia-east1-a,0.8,0.4",
)


def test_screen_keeps_regions_near_the_confirmed_price(tmp_path):
    _, offers = read_offers(write(tmp_path, GCP_HEADER, *GPU_ROWS))
    kept, skipped = screen_gpu_prices(offers, {"A100": 2.93391})
    gpus = {(o.gpu, o.region) for o in kept if not o.instance}
    assert ("A100", "us-central1") in gpus and ("A100", "europe-west4") in gpus
    assert ("A100", "asia-east1") not in gpus
    assert any(o.instance == "a2-highgpu-1g" for o in kept)  # VM rows are not screened
    assert sum(n for reason, n in skipped.items() if "A100" in reason) == 1


def test_screen_drops_a_gpu_without_reference_whose_regions_disagree(tmp_path):
    _, offers = read_offers(write(tmp_path, GCP_HEADER, *GPU_ROWS))
    kept, skipped = screen_gpu_prices(offers, {"A100": 2.93391})
    gpus = {(o.gpu, o.region) for o in kept if not o.instance}
    assert not any(gpu == "T4" for gpu, _ in gpus)
    assert {r for g, r in gpus if g == "L4"} == {"us-central1", "us-west1"}
    assert sum(n for reason, n in skipped.items() if "T4" in reason) == 2
    # the screened A100 of asia-east1 no longer prices the a2-highgpu-1g there
    made = price_rows("gcp", kept, as_of=AS_OF, source="test")
    assert not any(r["region"] == "asia-east1" for r in made.rows)


# --- C. greenml tables import-prices ------------------------------------------------------

P5_SMALL = (
    "p5.48xlarge,H100,8.0,192.0,2048.0,,40.0,12.0,us-east-1,use1-az1,x86_64",
    "p5.48xlarge,H100,8.0,192.0,2048.0,,40.0,16.0,us-east-1,use1-az2,x86_64",
    "p5.48xlarge,H100,8.0,192.0,2048.0,,42.0,15.0,us-west-2,usw2-az1,x86_64",
    "p5en.48xlarge,H200,8.0,192.0,2048.0,,60.0,20.0,us-east-1,use1-az1,x86_64",
    "g5.xlarge,A10G,1.0,4.0,16.0,,1.0,0.4,us-east-1,use1-az1,x86_64",
)


def import_prices(*args):
    return CliRunner().invoke(main, ["tables", "import-prices", "skypilot", *map(str, args)])


@pytest.fixture
def place(tmp_path):
    """A tables folder and a folder for downloaded catalog files."""
    (tmp_path / "tables").mkdir()
    (tmp_path / "downloads").mkdir()
    return tmp_path


def table_of(place):
    return load_prices(place / "tables" / "instance_prices.csv")


def price_in(table, provider, instance, region, pricing="on-demand"):
    return lookup_price(provider, instance, region, pricing=pricing, table=table, today=AS_OF)


def estimate_cost(place, *args):
    """cost_usd of 3 h on a p5.48xlarge in aws:us-east-1, priced from place's tables."""
    result = CliRunner().invoke(
        main,
        [
            "estimate",
            *("--tables-dir", str(place / "tables"), "--instance", "p5.48xlarge"),
            *("--location", "aws:us-east-1", "--hours", "3", "--format", "json", *args),
        ],
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["cost_usd"]


def test_import_writes_the_table_and_estimate_prices_from_it(place):
    aws = write(place / "downloads", AWS_HEADER, *P5_SMALL, name="aws.csv")
    result = import_prices(aws, "--tables-dir", place / "tables", "--as-of", "2026-11-20")
    assert result.exit_code == 0, result.output
    assert (place / "tables" / "instance_prices.csv").is_file()
    # on-demand: p5 in 2 regions, p5en, g5 = 4; spot the same 4
    assert "4 on-demand and 4 spot aws prices" in result.output
    assert "as of 2026-11-20" in result.output
    # 3 h x 40 USD/h = 120 USD
    assert estimate_cost(place, "--pricing", "on-demand") == pytest.approx(3 * 40.0)
    # spot: median of 12.0 and 16.0 = 14.0; 3 h x 14 USD/h = 42 USD
    assert estimate_cost(place, "--pricing", "spot") == pytest.approx(3 * 14.0)


def test_a_new_file_keeps_the_shipped_tables_other_providers(place):
    azure = write(place / "downloads", AZURE_HEADER, NC24ADS_A100_V4, name="azure.csv")
    result = import_prices(azure, "--tables-dir", place / "tables", "--as-of", "2026-11-20")
    assert result.exit_code == 0, result.output
    table = table_of(place)
    # AWS and Google Cloud rows come along from the shipped table
    assert price_in(table, "aws", "p5.48xlarge", "us-east-1").usd_per_hour == 55.04
    assert price_in(table, "gcp", "a2-highgpu-1g", "us-central1").usd_per_hour == 3.67339
    # Azure's are the file's: the shipped ND96isr H100 v5 is gone, NC24ads is the file's
    assert {p.instance_type for p in table if p.provider == "azure"} == {"Standard_NC24ads_A100_v4"}
    assert price_in(table, "azure", "Standard_NC24ads_A100_v4", "eastus").as_of == AS_OF


def test_a_second_import_replaces_the_first_and_keeps_your_own_rows(place):
    header = (
        "provider,instance_type,region,gpu_model,gpu_count,usd_per_hour,pricing,as_of,"
        "source,licence,note"
    )
    mine = (
        "aws,p5.48xlarge,us-east-1,H100,8,30.5,on-demand,2026-10-01,our 3-year reservation,"
        "internal,negotiated"
    )
    write(place / "tables", header, mine, name="instance_prices.csv")
    first = write(place / "downloads", AWS_HEADER, *P5_SMALL, name="aws.csv")
    result = import_prices(first, "--tables-dir", place / "tables", "--as-of", "2026-11-01")
    assert result.exit_code == 0, result.output
    assert "1 of your own rows were kept" in result.output
    table = table_of(place)
    assert price_in(table, "aws", "p5.48xlarge", "us-east-1").usd_per_hour == 30.5
    assert price_in(table, "aws", "g5.xlarge", "us-east-1").usd_per_hour == 1.0
    # the next download no longer lists g5.xlarge, and p5 in us-west-2 costs more
    second = write(
        place / "downloads",
        AWS_HEADER,
        *[line.replace(",42.0,", ",43.0,") for line in P5_SMALL if "g5." not in line],
        name="aws2.csv",
    )
    result = import_prices(second, "--tables-dir", place / "tables", "--as-of", "2026-11-20")
    assert result.exit_code == 0, result.output
    table = table_of(place)
    assert not any(p.instance_type == "g5.xlarge" for p in table)
    assert price_in(table, "aws", "p5.48xlarge", "us-west-2").usd_per_hour == 43.0
    mine_row = price_in(table, "aws", "p5.48xlarge", "us-east-1")
    assert (mine_row.usd_per_hour, mine_row.source) == (30.5, "our 3-year reservation")
    assert price_in(table, "aws", "p5.48xlarge", "us-east-1", "spot").usd_per_hour == 14.0
    assert len([p for p in table if p.provider == "aws"]) == 6  # 3 x 2 pricings, no doubles


def test_as_of_sets_the_date(place):
    aws = write(place / "downloads", AWS_HEADER, *P5_SMALL, name="aws.csv")
    result = import_prices(aws, "--tables-dir", place / "tables", "--as-of", "2026-10-05")
    assert result.exit_code == 0, result.output
    assert {p.as_of for p in table_of(place) if p.provider == "aws"} == {datetime.date(2026, 10, 5)}


@pytest.mark.parametrize("bad", ["2026-13-01", "05/10/2026", "yesterday"])
def test_a_bad_as_of_is_a_usage_error_naming_it(place, bad):
    aws = write(place / "downloads", AWS_HEADER, *P5_SMALL, name="aws.csv")
    result = import_prices(aws, "--tables-dir", place / "tables", "--as-of", bad)
    assert result.exit_code == 2, result.output
    assert "--as-of" in result.output and bad in result.output
    assert not (place / "tables" / "instance_prices.csv").exists()


def test_without_as_of_the_date_is_the_files_modification_date(place):
    aws = write(place / "downloads", AWS_HEADER, *P5_SMALL, name="aws.csv")
    noon = time.mktime(datetime.datetime(2026, 3, 15, 12, 0).timetuple())  # local noon
    os.utime(aws, (noon, noon))
    result = import_prices(aws, "--tables-dir", place / "tables")
    assert result.exit_code == 0, result.output
    assert "as of 2026-03-15" in result.output
    assert {p.as_of for p in table_of(place) if p.provider == "aws"} == {datetime.date(2026, 3, 15)}


def test_provider_names_a_file_whose_header_does_not(place):
    # an Azure file without its Generation column: no column tells the cloud
    header = AZURE_HEADER.replace(",Generation", "")
    line = "Standard_NC24ads_A100_v4,A100-80GB,1,24.0,220,,3.5,0.4,eastus"
    azure = write(place / "downloads", header, line, name="azure.csv")
    result = import_prices(azure, "--tables-dir", place / "tables", "--as-of", "2026-11-20")
    assert result.exit_code == 2, result.output
    assert "--provider" in result.output and "azure.csv" in result.output
    assert not (place / "tables" / "instance_prices.csv").exists()
    result = import_prices(
        azure, "--tables-dir", place / "tables", "--as-of", "2026-11-20", "--provider", "azure"
    )
    assert result.exit_code == 0, result.output
    table = table_of(place)
    assert price_in(table, "azure", "Standard_NC24ads_A100_v4", "eastus").usd_per_hour == 3.5


def test_provider_gcp_on_an_aws_file_is_an_error_and_writes_nothing(place):
    aws = write(place / "downloads", AWS_HEADER, *P5_SMALL, name="aws.csv")
    result = import_prices(aws, "--tables-dir", place / "tables", "--provider", "gcp")
    assert result.exit_code == 2, result.output
    assert "aws.csv" in result.output and "Traceback" not in result.output
    assert not (place / "tables" / "instance_prices.csv").exists()


def test_provider_contradicting_the_header_is_an_error(place):
    aws = write(place / "downloads", AWS_HEADER, *P5_SMALL, name="aws.csv")
    result = import_prices(
        aws, "--tables-dir", place / "tables", "--provider", "azure", "--as-of", "2026-11-20"
    )
    written = place / "tables" / "instance_prices.csv"
    azure = [p for p in table_of(place) if p.provider == "azure"] if written.exists() else []
    assert not any(p.instance_type == "p5.48xlarge" for p in azure)
    assert result.exit_code == 2, result.output
    assert "--provider azure does not match" in result.output
    assert "--provider aws" in result.output and "aws.csv" in result.output


def test_an_aws_file_without_its_arch_column_asks_for_the_provider(place):
    header = AWS_HEADER.replace(",Arch", "")
    rows = [r.rsplit(",", 1)[0] for r in P5_SMALL]
    aws = write(place / "downloads", header, *rows, name="aws.csv")
    result = import_prices(aws, "--tables-dir", place / "tables")
    assert result.exit_code == 2, result.output
    assert "give --provider aws, gcp or azure" in result.output
    ok = import_prices(aws, "--tables-dir", place / "tables", "--provider", "aws")
    assert ok.exit_code == 0, ok.output


def test_no_tables_dir_is_a_usage_error_naming_the_option(place, monkeypatch):
    monkeypatch.delenv("GREENML_TABLES_DIR", raising=False)
    work = place / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    aws = write(place / "downloads", AWS_HEADER, *P5_SMALL, name="aws.csv")
    result = import_prices(aws)
    assert result.exit_code == 2, result.output
    assert "--tables-dir" in result.output and "Traceback" not in result.output
    assert list(work.iterdir()) == []


def test_the_tables_dir_setting_is_used_without_the_option(place, monkeypatch):
    monkeypatch.setenv("GREENML_TABLES_DIR", str(place / "tables"))
    aws = write(place / "downloads", AWS_HEADER, *P5_SMALL, name="aws.csv")
    result = import_prices(aws, "--as-of", "2026-11-20")
    assert result.exit_code == 0, result.output
    assert price_in(table_of(place), "aws", "g5.xlarge", "us-east-1").usd_per_hour == 1.0


def test_a_tables_dir_that_does_not_exist_is_made_once_the_catalog_parses(place):
    aws = write(place / "downloads", AWS_HEADER, *P5_SMALL, name="aws.csv")
    missing = place / "new" / "tables"
    result = import_prices(aws, "--tables-dir", missing, "--as-of", "2026-11-20")
    assert result.exit_code == 0, result.output
    assert os.listdir(missing) == ["instance_prices.csv"]


def test_a_tables_dir_is_not_made_for_a_malformed_catalog(place):
    bad = write(place / "downloads", AWS_HEADER, "g5.xlarge,A10G,,4,16,,1.0,0.4,r1,r1-a,x86_64")
    missing = place / "new"
    result = import_prices(bad, "--tables-dir", missing)
    assert result.exit_code == 2, result.output
    assert "AcceleratorCount" in result.output and not missing.exists()


def test_a_tables_dir_that_is_a_file_is_named(place):
    aws = write(place / "downloads", AWS_HEADER, *P5_SMALL, name="aws.csv")
    a_file = place / "downloads" / "notes.txt"
    a_file.write_text("not a folder\n")
    result = import_prices(aws, "--tables-dir", a_file)
    assert result.exit_code == 2, result.output
    assert str(a_file) in result.output and "Traceback" not in result.output
    assert a_file.read_text() == "not a folder\n"


def test_a_malformed_catalog_leaves_the_table_unchanged(place):
    good = write(place / "downloads", AWS_HEADER, *P5_SMALL, name="aws.csv")
    assert (
        import_prices(good, "--tables-dir", place / "tables", "--as-of", "2026-11-20").exit_code
        == 0
    )
    before = (place / "tables" / "instance_prices.csv").read_bytes()
    bad = write(
        place / "downloads",
        AWS_HEADER,
        P5_SMALL[0],
        P5_SMALL[1].replace(",40.0,", ",forty,"),
        name="bad.csv",
    )
    result = import_prices(bad, "--tables-dir", place / "tables")
    assert result.exit_code == 2, result.output
    assert "bad.csv" in result.output and "row 3" in result.output
    assert "'Price'" in result.output and "Traceback" not in result.output
    assert (place / "tables" / "instance_prices.csv").read_bytes() == before
    assert sorted(os.listdir(place / "tables")) == ["instance_prices.csv"]  # no leftover


def test_family_keeps_only_that_family(place):
    aws = write(place / "downloads", AWS_HEADER, *P5_SMALL, name="aws.csv")
    result = import_prices(
        aws, "--tables-dir", place / "tables", "--family", "p5", "--as-of", "2026-11-20"
    )
    assert result.exit_code == 0, result.output
    # p5.48xlarge in us-east-1 and us-west-2; not p5en, not g5
    assert "2 on-demand and 2 spot aws prices" in result.output
    assert {p.instance_type for p in table_of(place) if p.provider == "aws"} == {"p5.48xlarge"}


# --- D. lookup_price with the shipped table -------------------------------------------------

AWS_DAY = datetime.date(2026, 1, 21)  # the AWS snapshot's as_of


def test_azure_names_match_in_any_case():
    p = shipped("azure", "standard_nd96isr_h100_v5", "eastus")
    assert (p.instance_type, p.usd_per_hour) == ("Standard_ND96isr_H100_v5", 98.32)


@pytest.mark.parametrize(
    ("provider", "typo", "region", "meant"),
    [
        ("aws", "p5.48xlarg", "us-east-1", "did you mean p5.48xlarge"),
        ("gcp", "a3-highgpu-8", "us-east4", "did you mean a3-highgpu-8g"),
        ("azure", "Standard_NC24ads_A100", "eastus", "Standard_NC24ads_A100_v4"),
    ],
)
def test_an_unknown_instance_suggests_close_names(provider, typo, region, meant):
    with pytest.raises(ConfigError) as e:
        shipped(provider, typo, region)
    assert repr(typo) in str(e.value) and meant in str(e.value)


def test_an_instance_not_sold_in_the_region_names_where_it_is_sold():
    with pytest.raises(ConfigError) as e:
        shipped("gcp", "a2-highgpu-1g", "mars-central1")
    text = str(e.value)
    assert "'mars-central1'" in text and "none is substituted" in text
    assert "us-central1" in text  # one of the regions where it is sold


def test_spot_where_only_on_demand_is_listed_names_where_spot_is():
    with pytest.raises(ConfigError) as e:
        lookup_price("aws", "g4dn.12xlarge", "af-south-1", pricing="spot", today=AWS_DAY)
    text = str(e.value)
    assert "on-demand only" in text and "no spot price" in text
    assert "spot prices for it are listed in" in text and "us-east-1" in text


def test_reserved_pricing_names_the_value_and_the_valid_ones():
    with pytest.raises(ConfigError) as e:
        lookup_price("aws", "p5.48xlarge", "us-east-1", pricing="reserved", today=AWS_DAY)
    text = str(e.value)
    assert "'reserved'" in text and "'on-demand'" in text and "'spot'" in text


def test_a_spot_price_older_than_30_days_warns():
    # as_of 2026-01-21 to 2026-03-01: 10 + 28 + 1 = 39 days
    with pytest.warns(StalePriceWarning) as record:
        lookup_price(
            "aws", "p5.48xlarge", "us-east-1", pricing="spot", today=datetime.date(2026, 3, 1)
        )
    message = str(record[0].message)
    assert "spot" in message and "2026-01-21" in message and "39 days" in message


@pytest.mark.parametrize(
    ("pricing", "today"),
    [
        ("spot", datetime.date(2026, 1, 31)),  # 10 days
        ("spot", datetime.date(2026, 2, 20)),  # 30 days: not more than 30
        ("on-demand", datetime.date(2026, 11, 21)),  # 10 months
    ],
)
def test_recent_prices_do_not_warn(pricing, today):
    with warnings.catch_warnings():
        warnings.simplefilter("error", StalePriceWarning)
        p = lookup_price("aws", "p5.48xlarge", "us-east-1", pricing=pricing, today=today)
    assert p.pricing == pricing


def test_pricing_setting_from_the_environment_is_checked():
    with pytest.raises(ConfigError, match="GREENML_PRICING"):
        config.resolve({}, environ={"GREENML_PRICING": "bogus"})
    assert config.resolve({}, environ={"GREENML_PRICING": "spot"}).pricing == "spot"


def test_track_with_spot_pricing_takes_the_spot_row():
    import greenml

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StalePriceWarning)
        run = greenml.track(
            pricing="spot", instance_type="p5.48xlarge", location="aws:us-east-1", meters=[]
        )
    price = run.run_factors.price_per_hour
    # (14.582 + 14.8686) / 2 = 14.7253, as in the catalog test above
    assert (price.value, price.basis) == (pytest.approx(14.7253), "spot")
    with pytest.raises(ConfigError, match="reserved"):
        greenml.track(pricing="reserved", location="aws:us-east-1", meters=[])


def test_import_warns_of_a_gcp_gpu_whose_regions_disagree(place):
    # H100:1 at 4.2 in us-central1 and 9.8 in us-east4: 2.3 x apart, more than 1.7 x
    gcp = write(
        place / "downloads",
        GCP_HEADER,
        "a3-highgpu-1g,26.0,234.0,,,,us-central1,us-central1-a,1.2,0.3",
        ",,,H100,1,,us-central1,us-central1-a,4.2,2.8",
        "a3-highgpu-1g,26.0,234.0,,,,us-east4,us-east4-a,1.2,0.3",
        ",,,H100,1,,us-east4,us-east4-a,9.8,2.1",
        name="gcp.csv",
    )
    result = import_prices(gcp, "--tables-dir", place / "tables")
    assert result.exit_code == 0, result.output
    assert "warning: H100: 4.2 to 9.8 USD per GPU-hour across regions (2.3 x)" in result.stderr
    assert "(us-central1)" in result.stderr
    # imported all the same: the user decides
    prices = {(p.region, p.pricing): p.usd_per_hour for p in table_of(place) if p.provider == "gcp"}
    assert prices[("us-central1", "on-demand")] == pytest.approx(1.2 + 4.2)
