"""`greenml tables`: every table the docs describe, options that mean something, and an
explicit answer (rows, "no rows", or an error naming the option) for every query."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from greenml.cli import main

PRICE_HEADER = (
    "provider,instance_type,region,gpu_model,gpu_count,usd_per_hour,pricing,as_of,source,"
    "licence,note\n"
)


def show(*args):
    return CliRunner().invoke(main, ["tables", "show", *args])


def test_list_names_every_table_of_the_docs():
    listing = CliRunner().invoke(main, ["tables", "list"])
    assert listing.exit_code == 0
    names = {line.split()[0] for line in listing.output.splitlines() if line.strip()}
    assert names == {"grid", "regions", "gcp-carbon", "pue", "prices", "gpus", "embodied"}


def test_show_gpus_with_board_power_and_source():
    result = show("gpus")
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("A100 SXM4 40GB"))
    assert "400 W" in line and "NVIDIA A100 Tensor Core GPU datasheet" in line
    assert "T4" in result.output and "70 W" in result.output


def test_show_embodied_with_lifetimes_and_source():
    result = show("embodied")
    assert result.exit_code == 0, result.output
    assert "server_base: 1000 kgCO2e" in result.output
    assert "gpu: 150 kgCO2e" in result.output
    assert "4 years" in result.output and "Cloud Carbon Footprint" in result.output


def test_a_provider_with_no_prices_says_so(tmp_path):
    (tmp_path / "instance_prices.csv").write_text(
        PRICE_HEADER + "aws,p4d.24xlarge,us-east-1,A100,8,12.5,on-demand,2026-06-01,"
        "our 3-year reservation,internal,negotiated\n"
    )
    result = show("prices", "--provider", "gcp", "--tables-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "no gcp rows" in result.output


def test_an_unknown_provider_is_an_error_listing_the_valid_ones():
    result = show("regions", "--provider", "oracle")
    assert result.exit_code == 2, result.output
    assert "--provider 'oracle'" in result.output and "aws, azure, gcp" in result.output


def test_pue_rows_of_one_provider():
    result = show("pue", "--provider", "onprem")
    assert result.exit_code == 0, result.output
    assert [x.split()[0] for x in result.output.splitlines()] == ["onprem"]
    assert "1.56" in result.output


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["pue", "--zone", "FR"], "--zone"),
        (["prices", "--zone", "FR"], "--zone"),
        (["gpus", "--provider", "aws"], "--provider"),
        (["grid", "--zone", "FR", "--provider", "aws"], "--provider"),
        (["gcp-carbon", "--zone", "FR"], "--zone"),
    ],
)
def test_an_option_the_table_does_not_take_is_an_error(args, option):
    result = show(*args)
    assert result.exit_code == 2, result.output
    assert option in result.output and "does not apply" in result.output


def test_grid_of_a_cloud_region_is_its_zones():
    result = show("grid", "--zone", "aws:us-east-1")
    assert result.exit_code == 0, result.output
    assert "aws:us-east-1 draws from grid zone US-VA" in result.output
    assert "US-VA:" in result.output and "g/kWh" in result.output and "eGRID" in result.output


def test_grid_of_a_gcp_region_shows_googles_own_figure_too():
    result = show("grid", "--zone", "gcp:europe-west9")
    assert result.exit_code == 0, result.output
    assert "grid zone FR" in result.output
    assert "gcp:europe-west9:" in result.output and "CFE" in result.output


@pytest.mark.parametrize(
    ("zone", "fragments"),
    [
        ("aws:us-east-7", ["--zone 'aws:us-east-7'", "did you mean"]),
        ("DE-BY", ["'DE-BY'", "--zone DE"]),
    ],
)
def test_grid_errors_name_the_zone_option(zone, fragments):
    result = show("grid", "--zone", zone)
    assert result.exit_code == 2, result.output
    for fragment in fragments:
        assert fragment in result.output
    assert "location=" not in result.output and "('DE')" not in result.output


def test_show_reads_your_own_tables(tmp_path):
    (tmp_path / "instance_prices.csv").write_text(
        PRICE_HEADER + "aws,p4d.24xlarge,us-east-1,A100-40GB,8,12.5,on-demand,2026-06-01,"
        "our 3-year reservation,internal,negotiated\n"
    )
    result = show("prices", "--tables-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert result.output.count("p4d.24xlarge") == 1 and "12.5 USD/h" in result.output
    assert "our 3-year reservation" in result.output


def test_show_with_a_bad_tables_dir(tmp_path):
    (tmp_path / "price.csv").write_text("x\n")
    result = show("prices", "--tables-dir", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert "price.csv" in result.output and "--tables-dir" in result.output


def test_list_gives_the_file_name_of_each_table():
    listing = CliRunner().invoke(main, ["tables", "list"]).output
    rows = {line.split()[0]: line.split()[1] for line in listing.splitlines() if line.strip()}
    assert rows["gpus"] == "gpus.csv" and rows["prices"] == "instance_prices.csv"
    assert rows["regions"] == "cloud_regions.csv" and rows["gcp-carbon"] == "gcp_region_carbon.csv"
