"""Users' own factor tables (tables_dir) replace the shipped ones, validated up front."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import greenml
from greenml.cli import main
from greenml.config import Settings
from greenml.errors import ConfigError
from greenml.factors.resolve import resolve_run_factors

PRICE_HEADER = (
    "provider,instance_type,region,gpu_model,gpu_count,usd_per_hour,pricing,as_of,source,"
    "licence,note\n"
)
PUE_HEADER = "provider,region,pue,year,source,licence,note\n"


def factors(tmp_path, **kw):
    args = dict(
        location="aws:us-east-1",
        allow_assumed_location=False,
        grid_intensity_g_per_kwh=None,
        hourly_intensity_csv=None,
        pue=None,
        price_usd_per_hour=None,
        usd_per_kwh=None,
        instance_type=None,
        instance_share=None,
        scope=None,
        tables_dir=str(tmp_path),
        environ={},
    )
    args.update(kw)
    environ = args.pop("environ")
    return resolve_run_factors(Settings(**args), environ=environ)


def test_own_price_and_pue_tables_replace_the_shipped_ones(tmp_path):
    (tmp_path / "instance_prices.csv").write_text(
        PRICE_HEADER + "aws,p4d.24xlarge,us-east-1,A100-40GB,8,12.5,on-demand,2026-06-01,"
        "our 3-year reservation,internal,negotiated\n"
    )
    (tmp_path / "pue.csv").write_text(
        PUE_HEADER + "aws,*,1.2,2026,our facility audit,internal,\n"
        "onprem,*,1.4,2026,our facility audit,internal,\n"
    )
    rf = factors(tmp_path, instance_type="p4d.24xlarge")
    assert (rf.price_per_hour.value, rf.price_per_hour.source) == (12.5, "our 3-year reservation")
    assert (rf.pue.value, rf.pue.source) == (1.2, "our facility audit")
    assert {"user_table:instance_prices.csv", "user_table:pue.csv"} <= set(rf.flags)


def test_a_bad_row_stops_the_run_before_it_starts_naming_file_row_and_column(tmp_path):
    (tmp_path / "pue.csv").write_text(PUE_HEADER + "aws,*,0.9,2026,audit,internal,\n")
    with pytest.raises(ConfigError, match=r"pue.csv, row 2, column 'pue'"):
        greenml.track(location="FR", tables_dir=str(tmp_path), environ={})


def test_missing_column_is_named(tmp_path):
    (tmp_path / "pue.csv").write_text("provider,region,pue\naws,*,1.2\n")
    with pytest.raises(ConfigError, match=r"pue.csv, row 1: missing column\(s\) 'year'"):
        factors(tmp_path)


def test_tables_dir_must_be_a_folder(tmp_path):
    with pytest.raises(ConfigError, match=r"tables_dir=.*is not a folder"):
        factors(tmp_path / "nope")


def test_estimate_cli_uses_own_tables(tmp_path):
    (tmp_path / "pue.csv").write_text(PUE_HEADER + "onprem,*,1.3,2026,site meter,internal,\n")
    result = CliRunner().invoke(
        main,
        [
            "estimate",
            "--power-w",
            "250",
            "--count",
            "4",
            "--hours",
            "10",
            "--location",
            "DE",
            "--tables-dir",
            str(tmp_path),
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["pue"] == 1.3 and out["energy_kwh"] == pytest.approx(4 * 0.25 * 10 * 1.3)


def test_a_misnamed_file_is_an_error_with_the_right_name_suggested(tmp_path):
    # gpu.csv would be silently ignored, and the shipped GPU table used instead.
    (tmp_path / "gpu.csv").write_text("model\n")
    with pytest.raises(ConfigError) as info:
        greenml.track(location="FR", tables_dir=str(tmp_path), environ={})
    message = str(info.value)
    assert "gpu.csv" in message and "did you mean 'gpus.csv'" in message
    assert "tables_dir=" in message
    for name in ("cloud_regions.csv", "instance_prices.csv", "embodied.csv"):
        assert name in message


def test_a_folder_with_only_a_readme_is_an_error(tmp_path):
    (tmp_path / "readme.txt").write_text("our tables\n")
    with pytest.raises(ConfigError, match=r"readme.txt.*not a table"):
        factors(tmp_path)


def test_an_empty_folder_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"holds none of the table files"):
        factors(tmp_path)


def test_hidden_files_are_not_tables(tmp_path):
    (tmp_path / ".DS_Store").write_bytes(b"\0\1")
    (tmp_path / "pue.csv").write_text(PUE_HEADER + "aws,*,1.2,2026,our facility audit,internal,\n")
    assert factors(tmp_path).pue.value == 1.2


@pytest.mark.parametrize("blank", ["", "   "])
def test_an_empty_string_is_not_the_current_folder(blank):
    from greenml.factors.tables import tables

    with pytest.raises(ConfigError, match=r"tables_dir=.* is empty"):
        tables(blank)


def test_the_command_line_names_its_flag(tmp_path):
    from greenml.config import Voice
    from greenml.factors.tables import tables

    cli = Voice(flags={})
    with pytest.raises(ConfigError, match=r"^--tables-dir '.*nope' is not a folder"):
        tables(str(tmp_path / "nope"), voice=cli)
    (tmp_path / "pue.CSV").write_text(PUE_HEADER)
    with pytest.raises(ConfigError, match=r"^--tables-dir '.*': pue.CSV .* did you mean 'pue.csv'"):
        tables(str(tmp_path), voice=cli).validate()


def test_own_pue_table_without_the_providers_row_says_what_to_give(tmp_path):
    from greenml.config import Voice
    from greenml.factors.pue import default_pue, load_pue_table

    (tmp_path / "pue.csv").write_text(PUE_HEADER + "aws,*,1.2,2026,our facility audit,internal,\n")
    table = load_pue_table(tmp_path / "pue.csv")
    with pytest.raises(ConfigError, match=r"no fleet-wide row for 'onprem'.*pue=<ratio>"):
        default_pue(None, table=table)
    with pytest.raises(ConfigError, match=r"no fleet-wide row for 'onprem'.*--pue <ratio>$"):
        default_pue(None, table=table, voice=Voice(flags={}))
