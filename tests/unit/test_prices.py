"""Instance prices: shipped table provenance, strict lookup, job share and cost.

Expected figures are typed by hand from the project's reference notes (AWS us-east-1
on-demand Linux, as of 2026-01-21; the SkyPilot catalog's snapshot holds the same figures,
some with more digits: p4d 21.957642, p4de 27.44705) and worked out by hand, not read back
from the code. Rows per cloud checked against the catalog's own text are in
test_skypilot_prices.py.
"""

from __future__ import annotations

import datetime
import warnings

import pytest

from greenml.errors import ConfigError
from greenml.factors.prices import (
    COLUMNS,
    InstancePrice,
    StalePriceWarning,
    cost_usd,
    job_share,
    load_prices,
    lookup_price,
)

BEFORE_STALE = datetime.date(2026, 6, 1)
HEADER = ",".join(COLUMNS)
GOOD_ROW = (
    "aws,p4d.24xlarge,us-east-1,A100-40GB,8,21.958,on-demand,2026-01-21,"
    "test source,public price list (facts),"
)


def write(tmp_path, *rows, header=HEADER, name="prices.csv"):
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


# --- the shipped table -------------------------------------------------------------


def test_every_shipped_row_has_provenance_and_positive_figures():
    table = load_prices()
    assert len(table) >= 16
    for p in table:
        assert p.as_of <= datetime.date.today(), p
        assert p.source.strip() and p.licence.strip(), p
        assert p.usd_per_hour > 0 and p.gpu_count >= 1, p
        assert p.pricing in ("on-demand", "spot"), p
    assert {p.provider for p in table} == {"aws", "azure", "gcp"}


def test_shipped_table_is_read_once():
    assert load_prices() is load_prices()


@pytest.mark.parametrize(
    ("instance", "usd", "gpus", "model"),
    [
        ("p4d.24xlarge", 21.957642, 8, "A100"),
        ("p4de.24xlarge", 27.44705, 8, "A100-80GB"),
        ("p5.48xlarge", 55.04, 8, "H100"),
        ("p5en.48xlarge", 63.296, 8, "H200"),
        ("p3.2xlarge", 3.06, 1, "V100"),
        ("g5.xlarge", 1.006, 1, "A10G"),
        ("g6.48xlarge", 13.3504, 8, "L4"),
        ("g4dn.xlarge", 0.526, 1, "T4"),
    ],
)
def test_spot_checks_against_reference_figures(instance, usd, gpus, model):
    p = lookup_price("aws", instance, "us-east-1", today=BEFORE_STALE)
    assert p.usd_per_hour == pytest.approx(usd, abs=1e-9)
    assert (p.gpu_count, p.gpu_model) == (gpus, model)
    assert p.as_of == datetime.date(2026, 1, 21)


def test_price_as_provenance_factor():
    f = lookup_price("aws", "p5.48xlarge", "us-east-1", today=BEFORE_STALE).factor()
    assert (f.name, f.value, f.unit, f.year) == ("price", 55.04, "USD/h", 2026)
    assert "2026-01-21" in f.note and f.source and f.licence


# --- cost and share ----------------------------------------------------------------


def test_hand_computed_cost_half_a_p4d():
    p = lookup_price("aws", "p4d.24xlarge", "us-east-1", today=BEFORE_STALE)
    # 100 h x 21.957642 USD/h x 4/8 = 1097.8821 USD
    assert cost_usd(p, 100.0, job_share(4, p.gpu_count)) == pytest.approx(1097.8821)


def test_hand_computed_cost_whole_g5_xlarge():
    p = lookup_price("aws", "g5.xlarge", "us-east-1", today=BEFORE_STALE)
    # 10 h x 1.006 USD/h x 1 = 10.06 USD
    assert cost_usd(p, 10, job_share(None, p.gpu_count)) == pytest.approx(10.06)


def test_job_share():
    assert job_share(2, 8) == 0.25
    assert job_share(8, 8) == 1.0
    assert job_share(16, 8) == 1.0  # capped: a job is charged at most the whole instance
    assert job_share(None, 4) == 1.0  # unknown use: charge the whole instance
    assert job_share(1, 8, override=0.5) == 0.5  # override wins


@pytest.mark.parametrize(
    ("gpus_used", "gpu_count", "override"),
    [
        (0, 8, None),
        (-1, 8, None),
        (1.5, 8, None),
        (True, 8, None),
        (1, 0, None),
        (1, 2.0, None),
        (1, 8, 0.0),
        (1, 8, 1.5),
        (1, 8, "half"),
    ],
)
def test_job_share_rejects_bad_arguments(gpus_used, gpu_count, override):
    with pytest.raises(ConfigError):
        job_share(gpus_used, gpu_count, override)


@pytest.mark.parametrize(("hours", "share"), [(-1.0, 0.5), (float("nan"), 0.5), (1.0, 0.0)])
def test_cost_rejects_bad_arguments(hours, share):
    p = lookup_price("aws", "g5.xlarge", "us-east-1", today=BEFORE_STALE)
    with pytest.raises(ConfigError):
        cost_usd(p, hours, share)


# --- strict lookup -----------------------------------------------------------------


def test_unknown_instance_type_suggests_close_names():
    with pytest.raises(ConfigError) as e:
        lookup_price("aws", "p4d.24xlarg", "us-east-1", today=BEFORE_STALE)
    assert "'p4d.24xlarg'" in str(e.value) and "p4d.24xlarge" in str(e.value)


def test_region_without_a_price_names_the_priced_regions():
    # the catalog lists p4d.24xlarge in ten regions, not in eu-north-1 (Stockholm)
    with pytest.raises(ConfigError) as e:
        lookup_price("aws", "p4d.24xlarge", "eu-north-1", today=BEFORE_STALE)
    text = str(e.value)
    assert "'eu-north-1'" in text and "none is substituted" in text
    assert "ap-northeast-1, ap-northeast-2, ap-south-1, ap-southeast-2, ca-central-1, " in text
    assert "eu-central-1, eu-west-1, us-east-1, us-east-2, us-west-2" in text


def test_missing_region_is_an_error_listing_regions():
    with pytest.raises(ConfigError, match="us-east-1"):
        lookup_price("aws", "p4d.24xlarge", today=BEFORE_STALE)


def test_unknown_provider():
    with pytest.raises(ConfigError, match="oracle"):
        lookup_price("oracle", "BM.GPU4.8", "us-ashburn-1", today=BEFORE_STALE)


def test_user_table_with_two_regions(tmp_path):
    other = GOOD_ROW.replace("us-east-1", "us-west-2").replace("21.958", "22.5")
    table = load_prices(write(tmp_path, GOOD_ROW, other))
    p = lookup_price("aws", "p4d.24xlarge", "us-west-2", table=table, today=BEFORE_STALE)
    assert p.usd_per_hour == 22.5
    with pytest.raises(ConfigError) as e:
        lookup_price("aws", "p4d.24xlarge", "eu-west-1", table=table, today=BEFORE_STALE)
    assert "us-east-1, us-west-2" in str(e.value)


# --- staleness -----------------------------------------------------------------------


def test_stale_price_warns_naming_instance_and_date():
    # as_of 2026-01-21 + 18 months = 2027-07-21
    with pytest.warns(StalePriceWarning) as record:
        lookup_price("aws", "p4d.24xlarge", "us-east-1", today=datetime.date(2027, 7, 22))
    message = str(record[0].message)
    assert "p4d.24xlarge" in message and "2026-01-21" in message


def test_price_at_the_18_month_boundary_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", StalePriceWarning)
        p = lookup_price("aws", "p4d.24xlarge", "us-east-1", today=datetime.date(2027, 7, 21))
    assert isinstance(p, InstancePrice)


def test_month_end_as_of_boundary(tmp_path):
    # 2024-08-31 + 18 months = 2026-02-28 (February has no 31st)
    table = load_prices(write(tmp_path, GOOD_ROW.replace("2026-01-21", "2024-08-31")))
    with warnings.catch_warnings():
        warnings.simplefilter("error", StalePriceWarning)
        lookup_price(
            "aws", "p4d.24xlarge", "us-east-1", table=table, today=datetime.date(2026, 2, 28)
        )
    with pytest.warns(StalePriceWarning):
        lookup_price(
            "aws", "p4d.24xlarge", "us-east-1", table=table, today=datetime.date(2026, 3, 1)
        )


# --- user-table validation -----------------------------------------------------------


def test_user_table_loads(tmp_path):
    (p,) = load_prices(write(tmp_path, GOOD_ROW))
    assert p == InstancePrice(
        "aws",
        "p4d.24xlarge",
        "us-east-1",
        "A100-40GB",
        8,
        21.958,
        "on-demand",
        datetime.date(2026, 1, 21),
        "test source",
        "public price list (facts)",
        "",
    )


def test_missing_column_names_file_and_column(tmp_path):
    header = HEADER.replace(",licence", "")
    row = GOOD_ROW.replace(",public price list (facts)", "")
    path = write(tmp_path, row, header=header, name="nolicence.csv")
    with pytest.raises(ConfigError) as e:
        load_prices(path)
    text = str(e.value)
    assert "nolicence.csv" in text and "row 1" in text and "licence" in text


@pytest.mark.parametrize(
    ("old", "new", "column"),
    [
        ("21.958", "-1.0", "usd_per_hour"),
        ("21.958", "abc", "usd_per_hour"),
        ("21.958", "0", "usd_per_hour"),
        (",8,", ",2.5,", "gpu_count"),
        (",8,", ",0,", "gpu_count"),
        ("2026-01-21", "21/01/2026", "as_of"),
        ("2026-01-21", "2026-13-01", "as_of"),
        ("aws,", "oracle,", "provider"),
        ("test source", "", "source"),
    ],
)
def test_bad_row_names_file_row_and_column(tmp_path, old, new, column):
    bad = GOOD_ROW.replace(old, new, 1)
    other = GOOD_ROW.replace("us-east-1", "us-west-2")
    path = write(tmp_path, other, bad, name="bad.csv")
    with pytest.raises(ConfigError) as e:
        load_prices(path)
    text = str(e.value)
    assert "bad.csv" in text and "row 3" in text and f"column {column!r}" in text


def test_duplicate_row_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"row 3.*row 2"):
        load_prices(write(tmp_path, GOOD_ROW, GOOD_ROW))
