"""``greenml import codecarbon``: CodeCarbon's emissions.csv into a real local MLflow store.

Every expected figure is computed here from the CSV's own cells (read with :mod:`csv`) and
every expected grid factor from the data files themselves (CodeCarbon's JSON, greenml's
shipped GCP table), not read back from the importer. The fixtures are described in
tests/fixtures/codecarbon/README.md.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from mlflow.entities import ViewType

from greenml._version import __version__
from greenml.cli import main
from greenml.importers.codecarbon import (
    PARAM_IMPORTED_GRID_INTENSITY,
    TAG_IMPORTED_FROM,
    TAG_IMPORTED_RECOMPUTED,
    TAG_IMPORTED_RUN_ID,
    TAG_IMPORTED_TIMESTAMP,
)
from greenml.schema import (
    FIGURE_METRICS,
    METRIC_COST_USD,
    METRIC_ENERGY_KWH,
    NA,
    PARAM_GPU_COUNT,
    PARAM_GPU_MODEL,
    PARAM_GRID_INTENSITY,
    PARAM_GRID_SOURCE,
    PARAM_LOCATION,
    PARAM_PUE,
    TAG_MEASUREMENT,
    TAG_SCOPE,
    TAG_STATUS,
    TAG_VERSION,
)

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "codecarbon"
GENUINE = FIXTURES / "emissions_3.3.2.csv"
HANDMADE = FIXTURES / "history_handmade.csv"
OLD = FIXTURES / "codecarbon_2.1_columns.csv"
LB_PER_MWH_TO_G_PER_KWH = 453.59237 / 1000.0


# -- independent expectations -------------------------------------------------------------


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _cc_json(relative: str) -> Any:
    spec = importlib.util.find_spec("codecarbon")
    assert spec is not None and spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations)))
    return json.loads((folder / "data" / "private_infra" / relative).read_text("utf-8"))


def _country_g_per_kwh(alpha3: str) -> float:
    return float(_cc_json("global_energy_mix.json")[alpha3]["carbon_intensity"])


def _us_state_g_per_kwh(state: str) -> float:
    return float(_cc_json("2023/usa_emissions.json")[state]["emissions"]) * (
        LB_PER_MWH_TO_G_PER_KWH
    )


def _quebec_g_per_kwh() -> float:
    mix = _cc_json("2023/canada_energy_mix.json")["quebec"]
    per_source = _cc_json("carbon_intensity_per_source.json")
    fossil = {"coal": "coal", "petroleum": "petroleum", "naturalGas": "natural_gas"}
    return sum(mix.get(k, 0.0) / mix["total"] * per_source[s] for k, s in fossil.items())


def _gcp_g_per_kwh(region: str) -> float:
    import greenml

    table = Path(greenml.__file__).parent / "factors" / "data" / "gcp_region_carbon.csv"
    (row,) = [r for r in _rows(table) if r["region"] == region]
    return float(row["grid_intensity_g_per_kwh"])


def _end_ms(timestamp: str) -> int:
    """The row's time in ms since the epoch; timestamps without an offset are UTC here
    (the tests pass --timezone UTC; the genuine file was written on a UTC machine)."""
    when = datetime.fromisoformat(timestamp)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return round(when.timestamp() * 1000)


def _expected_metrics(row: dict[str, str]) -> dict[str, float]:
    """greenml's metrics of a row, straight from its cells: device energies back to IT
    energy (CodeCarbon multiplies each by its PUE), no market-based factor, no cost."""
    pue = float(row["pue"]) if row.get("pue") else 1.0
    out = {
        FIGURE_METRICS["energy_kwh"]: float(row["energy_consumed"]),
        FIGURE_METRICS["co2e_kg"]: float(row["emissions"]),
        FIGURE_METRICS["co2e_market_kg"]: float(row["emissions"]),
        FIGURE_METRICS["duration_s"]: float(row["duration"]),
    }
    for device in ("gpu", "cpu", "ram"):
        out[FIGURE_METRICS[f"{device}_energy_kwh"]] = float(row[f"{device}_energy"]) / pue
    return out


# -- helpers ------------------------------------------------------------------------------


def _uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _import(*args: str) -> Any:
    return CliRunner().invoke(main, ["import", "codecarbon", *args], catch_exceptions=False)


def _all_runs(uri: str) -> list[Any]:
    client = MlflowClient(tracking_uri=uri)
    ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    return list(client.search_runs(ids, run_view_type=ViewType.ALL)) if ids else []


def _by_cc_run_id(uri: str) -> dict[str, Any]:
    runs = _all_runs(uri)
    out = {r.data.tags[TAG_IMPORTED_RUN_ID]: r for r in runs}
    assert len(out) == len(runs), "one MLflow run per CodeCarbon run"
    return out


def _experiment_name(uri: str, run: Any) -> str:
    return MlflowClient(tracking_uri=uri).get_experiment(run.info.experiment_id).name


def _assert_run_matches_row(run: Any, row: dict[str, str], *, file: Path, version: str) -> None:
    m = run.data.metrics
    for key, value in _expected_metrics(row).items():
        assert m[key] == pytest.approx(value, rel=1e-12), key
    assert METRIC_COST_USD not in m  # nothing in the file prices the run: left out, never 0
    assert run.info.end_time == _end_ms(row["timestamp"])
    assert run.info.start_time == pytest.approx(
        _end_ms(row["timestamp"]) - float(row["duration"]) * 1000, abs=1
    )
    assert run.info.status == "FINISHED"
    assert run.info.run_name == f"{row['project_name']}-{row['run_id']}"
    t = run.data.tags
    assert t[TAG_MEASUREMENT] == "imported"
    assert t[TAG_VERSION] == __version__
    assert t[TAG_STATUS] == "finished"
    assert t[TAG_IMPORTED_FROM] == f"codecarbon {version} {file.name}"
    assert t[TAG_IMPORTED_RUN_ID] == row["run_id"]
    assert t[TAG_IMPORTED_TIMESTAMP] == row["timestamp"]
    p = run.data.params
    implied = float(row["emissions"]) * 1000 / float(row["energy_consumed"])
    assert float(p[PARAM_IMPORTED_GRID_INTENSITY]) == pytest.approx(implied, rel=1e-9)
    assert float(p[PARAM_PUE]) == (float(row["pue"]) if row.get("pue") else 1.0)


# -- the genuine file ---------------------------------------------------------------------


def test_genuine_codecarbon_file_becomes_one_run_per_codecarbon_run(tmp_path: Path) -> None:
    uri = _uri(tmp_path)
    out = _import(str(GENUINE), "--tracking-uri", uri, "--timezone", "UTC")
    assert out.exit_code == 0, out.output
    rows = _rows(GENUINE)
    assert len(rows) == 4 and rows[0]["run_id"] == rows[1]["run_id"]  # a flush, then stop
    runs = _by_cc_run_id(uri)
    assert set(runs) == {r["run_id"] for r in rows}  # 3 runs, not 4: rows 2-3 are one run

    # France, flushed once: the run's figures are its last row's (the totals), not a sum
    flushed, last = rows[0], rows[1]
    fr = runs[last["run_id"]]
    _assert_run_matches_row(fr, last, file=GENUINE, version="3.3.2")
    client = MlflowClient(tracking_uri=uri)
    history = sorted(
        client.get_metric_history(fr.info.run_id, METRIC_ENERGY_KWH), key=lambda x: x.step
    )
    assert [(h.step, h.value) for h in history] == [
        (int(float(flushed["duration"])), float(flushed["energy_consumed"])),
        (int(float(last["duration"])), float(last["energy_consumed"])),
    ]
    assert [h.timestamp for h in history] == [
        _end_ms(flushed["timestamp"]),
        _end_ms(last["timestamp"]),
    ]
    p, t = fr.data.params, fr.data.tags
    assert p[PARAM_LOCATION] == "FR"
    assert float(p[PARAM_GRID_INTENSITY]) == _country_g_per_kwh("FRA")
    assert "global_energy_mix.json" in p[PARAM_GRID_SOURCE]
    assert (p[PARAM_GPU_MODEL], p[PARAM_GPU_COUNT]) == ("none", "0")
    assert t[TAG_SCOPE] == "scope2"
    assert t[TAG_IMPORTED_RECOMPUTED].split(",") == [PARAM_GRID_INTENSITY, PARAM_GRID_SOURCE]
    assert _experiment_name(uri, fr) == "bert-finetune"  # CodeCarbon's project_name

    # Virginia: the state's eGRID factor, as CodeCarbon used it
    va_row = rows[2]
    va = runs[va_row["run_id"]]
    _assert_run_matches_row(va, va_row, file=GENUINE, version="3.3.2")
    assert va.data.params[PARAM_LOCATION] == "US-VA"
    assert float(va.data.params[PARAM_GRID_INTENSITY]) == pytest.approx(
        _us_state_g_per_kwh("virginia"), rel=1e-12
    )
    assert _experiment_name(uri, va) == "llama-eval"

    # GCP europe-west1, PUE 1.1: a cloud run (Scope 3 cat. 1), device energies before PUE
    gcp_row = rows[3]
    gcp = runs[gcp_row["run_id"]]
    _assert_run_matches_row(gcp, gcp_row, file=GENUINE, version="3.3.2")
    assert gcp.data.params[PARAM_LOCATION] == "gcp:europe-west1"
    assert gcp.data.tags[TAG_SCOPE] == "scope3-cat1"
    assert float(gcp.data.params[PARAM_GRID_INTENSITY]) == _gcp_g_per_kwh("europe-west1")
    assert gcp.data.metrics[FIGURE_METRICS["ram_energy_kwh"]] == pytest.approx(
        float(gcp_row["ram_energy"]) / 1.1, rel=1e-12
    )

    assert "3 run(s) created, 0 already there" in out.output
    assert "1 row(s) are earlier totals (flushes) of a run" in out.output


def test_importing_again_creates_nothing(tmp_path: Path) -> None:
    uri = _uri(tmp_path)
    for path in (GENUINE, HANDMADE):
        assert _import(str(path), "--tracking-uri", uri, "--timezone", "UTC").exit_code == 0
    before = {r.info.run_id: r.data.metrics for r in _all_runs(uri)}
    assert len(before) == 6
    for path in (GENUINE, HANDMADE):
        again = _import(str(path), "--tracking-uri", uri, "--timezone", "UTC")
        assert again.exit_code == 0, again.output
        assert "0 run(s) created, 3 already there" in again.output
    # another experiment name or time zone does not make the same runs new
    other = _import(str(GENUINE), "--tracking-uri", uri, "--experiment", "elsewhere")
    assert other.exit_code == 0 and "0 run(s) created, 3 already there" in other.output
    after = {r.info.run_id: r.data.metrics for r in _all_runs(uri)}
    assert after == before


def test_a_run_deleted_in_mlflow_is_imported_again(tmp_path: Path) -> None:
    uri = _uri(tmp_path)
    assert _import(str(HANDMADE), "--tracking-uri", uri, "--timezone", "UTC").exit_code == 0
    client = MlflowClient(tracking_uri=uri)
    gone = _by_cc_run_id(uri)["4f1e2d3c-5b6a-4798-8a9b-0c1d2e3f4a5b"]
    client.delete_run(gone.info.run_id)
    out = _import(str(HANDMADE), "--tracking-uri", uri, "--timezone", "UTC")
    assert "1 run(s) created, 2 already there" in out.output
    active = [r for r in _all_runs(uri) if r.info.lifecycle_stage == "active"]
    assert len(active) == 3


def test_a_run_imported_before_it_ended_is_reported_not_imported_twice(tmp_path: Path) -> None:
    """The file was imported after the run's flush, before its stop: importing the grown
    file does not add a second copy of the run (the report would count it twice)."""
    uri = _uri(tmp_path)
    lines = GENUINE.read_text("utf-8").splitlines(keepends=True)
    early = tmp_path / "emissions.csv"
    early.write_text(lines[0] + lines[1], "utf-8")  # only the flush of the French run
    assert _import(str(early), "--tracking-uri", uri, "--timezone", "UTC").exit_code == 0
    (first,) = _all_runs(uri)
    out = _import(str(GENUINE), "--tracking-uri", uri, "--timezone", "UTC")
    assert out.exit_code == 0, out.output
    rows = _rows(GENUINE)
    assert (
        f"NOT imported: run {first.info.run_id} holds this run as of {rows[0]['timestamp']}"
        in out.output
    )
    assert f"this file has it up to {rows[1]['timestamp']}" in out.output
    assert "2 run(s) created, 0 already there, 1 out of date" in out.output
    runs = _all_runs(uri)
    assert len(runs) == 3
    assert len([r for r in runs if r.data.tags[TAG_IMPORTED_RUN_ID] == rows[0]["run_id"]]) == 1


# -- hand-made rows: a cloud run with GPUs, on-prem runs ----------------------------------


def test_handmade_cloud_and_on_prem_rows(tmp_path: Path) -> None:
    uri = _uri(tmp_path)
    out = _import(str(HANDMADE), "--tracking-uri", uri, "--timezone", "UTC", "--experiment", "hist")
    assert out.exit_code == 0, out.output
    rows = {r["run_id"]: r for r in _rows(HANDMADE)}
    runs = _by_cc_run_id(uri)
    assert set(runs) == set(rows)
    assert {_experiment_name(uri, r) for r in runs.values()} == {"hist"}

    aws_row = rows["0b6c1a52-7d1e-4f55-9a7e-3c2f1d9e8a01"]
    aws = runs[aws_row["run_id"]]
    _assert_run_matches_row(aws, aws_row, file=HANDMADE, version="3.2.0")
    m, p = aws.data.metrics, aws.data.params
    # 4 A100s, PUE 1.2: 2.4 kWh of GPU energy with PUE is 2.0 kWh of IT energy
    assert m[FIGURE_METRICS["gpu_energy_kwh"]] == pytest.approx(2.0, rel=1e-12)
    it = sum(m[FIGURE_METRICS[f"{d}_energy_kwh"]] for d in ("gpu", "cpu", "ram"))
    assert it * 1.2 == pytest.approx(m[METRIC_ENERGY_KWH], rel=1e-12)  # facility = IT x PUE
    assert p[PARAM_LOCATION] == "aws:us-east-1"
    assert (p[PARAM_GPU_MODEL], p[PARAM_GPU_COUNT]) == ("NVIDIA A100-SXM4-40GB", "4")
    assert float(p[PARAM_GRID_INTENSITY]) == pytest.approx(
        _us_state_g_per_kwh("virginia"), rel=1e-12
    )  # us-east-1 draws from Virginia's grid
    assert aws.data.tags[TAG_SCOPE] == "scope3-cat1"
    # naive 2025-03-31T23:30:00 read as UTC; the run took 2 h
    assert aws.info.end_time == round(
        datetime(2025, 3, 31, 23, 30, tzinfo=timezone.utc).timestamp() * 1000
    )
    assert aws.info.start_time == aws.info.end_time - 7_200_000

    de_row = rows["4f1e2d3c-5b6a-4798-8a9b-0c1d2e3f4a5b"]
    de = runs[de_row["run_id"]]
    _assert_run_matches_row(de, de_row, file=HANDMADE, version="3.3.2")
    assert de.data.params[PARAM_LOCATION] == "DE"
    assert float(de.data.params[PARAM_GRID_INTENSITY]) == _country_g_per_kwh("DEU")
    assert (de.data.params[PARAM_GPU_MODEL], de.data.params[PARAM_GPU_COUNT]) == (
        "NVIDIA RTX A5000",
        "1",
    )
    assert de.data.tags[TAG_SCOPE] == "scope2"
    # 2025-04-01T01:30:00+02:00 is 2025-03-31T23:30Z: the offset is honoured
    assert de.info.end_time == round(
        datetime(2025, 3, 31, 23, 30, tzinfo=timezone.utc).timestamp() * 1000
    )

    qc_row = rows["9a8b7c6d-5e4f-4321-8765-43210fedcba9"]
    qc = runs[qc_row["run_id"]]
    _assert_run_matches_row(qc, qc_row, file=HANDMADE, version="3.3.2")
    assert qc.data.params[PARAM_LOCATION] == "CA-QC"
    assert float(qc.data.params[PARAM_GRID_INTENSITY]) == pytest.approx(
        _quebec_g_per_kwh(), rel=1e-12
    )
    assert float(qc.data.params[PARAM_PUE]) == 1.5


def test_timestamps_without_offset_are_read_in_the_given_time_zone(tmp_path: Path) -> None:
    uri = _uri(tmp_path)
    out = _import(str(HANDMADE), "--tracking-uri", uri, "--timezone", "America/New_York")
    assert out.exit_code == 0, out.output
    assert "timestamps without a UTC offset read as America/New_York" in out.output
    runs = _by_cc_run_id(uri)
    aws = runs["0b6c1a52-7d1e-4f55-9a7e-3c2f1d9e8a01"]  # 2025-03-31T23:30, EDT (UTC-4)
    assert aws.info.end_time == round(
        (datetime(2025, 3, 31, 23, 30, tzinfo=timezone.utc) + timedelta(hours=4)).timestamp() * 1000
    )
    de = runs["4f1e2d3c-5b6a-4798-8a9b-0c1d2e3f4a5b"]  # has its own offset: unchanged
    assert de.info.end_time == round(
        datetime(2025, 3, 31, 23, 30, tzinfo=timezone.utc).timestamp() * 1000
    )


def test_old_codecarbon_columns(tmp_path: Path) -> None:
    """CodeCarbon 2.1's file: no pue column (PUE 1.0, CodeCarbon's default, said to be
    filled in), no version column, no GPU recorded."""
    uri = _uri(tmp_path)
    out = _import(str(OLD), "--tracking-uri", uri, "--timezone", "UTC")
    assert out.exit_code == 0, out.output
    (row,) = _rows(OLD)
    (run,) = _all_runs(uri)
    _assert_run_matches_row(run, row, file=OLD, version="version-unknown")
    p = run.data.params
    assert p[PARAM_LOCATION] == "ES"  # 'catalonia' is no grid zone greenml has: the country
    assert float(p[PARAM_GRID_INTENSITY]) == _country_g_per_kwh("ESP")
    assert (p[PARAM_GPU_MODEL], p[PARAM_GPU_COUNT]) == (NA, NA)
    assert PARAM_PUE in run.data.tags[TAG_IMPORTED_RECOMPUTED].split(",")
    assert _experiment_name(uri, run) == "codecarbon"


def test_places_greenml_cannot_narrow_or_has_no_figure_for(tmp_path: Path) -> None:
    """A US region greenml cannot place: the country, said. A country without a figure in
    greenml's tables (Antarctica): imported, its grid params n/a, said; the CO2e is the
    file's either way."""
    uri = _uri(tmp_path / "store")
    (tmp_path / "store").mkdir()
    path = _edited(tmp_path, 4, region="atlantis")
    out = _import(str(path), "--tracking-uri", uri, "--timezone", "UTC")
    assert out.exit_code == 0, out.output
    assert "note: region 'atlantis' is no grid zone greenml has for USA" in out.output
    rows = _rows(GENUINE)
    us = _by_cc_run_id(uri)[rows[2]["run_id"]]
    assert us.data.params[PARAM_LOCATION] == "US"
    assert float(us.data.params[PARAM_GRID_INTENSITY]) == _country_g_per_kwh("USA")

    uri = _uri(tmp_path)
    path = _edited(tmp_path, 4, country_iso_code="ATA", region="")
    out = _import(str(path), "--tracking-uri", uri, "--timezone", "UTC")
    assert out.exit_code == 0, out.output
    assert "note: greenml's grid table has no intensity for AQ" in out.output
    aq = _by_cc_run_id(uri)[rows[2]["run_id"]]
    _assert_run_matches_row(aq, rows[2], file=path, version="3.3.2")
    p = aq.data.params
    assert (p[PARAM_LOCATION], p[PARAM_GRID_INTENSITY], p[PARAM_GRID_SOURCE]) == ("AQ", NA, NA)
    assert aq.data.tags[TAG_IMPORTED_RECOMPUTED] == ""


# -- the default store, and a real process ------------------------------------------------


def test_default_store_is_mlflows_local_one(plain_cwd: Path) -> None:
    out = _import(str(HANDMADE), "--timezone", "UTC")
    assert out.exit_code == 0, out.output
    assert (plain_cwd / "mlflow.db").is_file()
    assert len(_all_runs(f"sqlite:///{plain_cwd / 'mlflow.db'}")) == 3


def _subprocess_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "GREENML_"))}


def test_real_process(tmp_path: Path) -> None:
    uri = _uri(tmp_path)
    cmd = [sys.executable, "-m", "greenml.cli", "import", "codecarbon"]
    done = subprocess.run(
        [*cmd, str(GENUINE), "--tracking-uri", uri, "--timezone", "UTC"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_subprocess_env(),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "3 run(s) created, 0 already there" in done.stdout
    assert len(_all_runs(uri)) == 3
    bad = subprocess.run(
        [*cmd, str(FIXTURES / "bad_energy.csv"), "--tracking-uri", uri],
        capture_output=True,
        text=True,
        timeout=120,
        env=_subprocess_env(),
        cwd=tmp_path,
    )
    assert bad.returncode == 1
    assert "line 3, column 'energy_consumed': '0.5kWh' is not a number" in bad.stderr
    assert "Traceback" not in bad.stderr + bad.stdout
    assert len(_all_runs(uri)) == 3


# -- bad input: a clear message, a non-zero exit, nothing imported ------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "not_codecarbon.csv",
            [
                "not_codecarbon.csv: not a CodeCarbon emissions.csv",
                "header (line 1) lacks the column(s) project_name, duration, emissions, "
                "energy_consumed, country_iso_code",
            ],
        ),
        (
            "bad_energy.csv",
            ["bad_energy.csv: line 3, column 'energy_consumed': '0.5kWh' is not a number"],
        ),
        (
            "unknown_country.csv",
            [
                "unknown_country.csv: line 2, column 'country_iso_code':",
                "'XYZ' is not an ISO 3166-1 country code",
            ],
        ),
        ("no_such_file.csv", ["no_such_file.csv: no such file"]),
    ],
)
def test_bad_files(tmp_path: Path, name: str, expected: list[str]) -> None:
    uri = _uri(tmp_path)
    out = CliRunner().invoke(
        main, ["import", "codecarbon", str(FIXTURES / name), "--tracking-uri", uri]
    )
    assert out.exit_code == 1, out.output
    for text in expected:
        assert text in out.output
    assert out.output.startswith("Error: ")
    assert "Traceback" not in out.output and isinstance(out.exception, SystemExit)
    assert not (tmp_path / "mlflow.db").exists()  # nothing imported: the store not touched


def _edited(tmp_path: Path, line: int, **cells: str) -> Path:
    """The genuine file with cells of one line (the header is line 1) replaced."""
    with open(GENUINE, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    for column, value in cells.items():
        rows[line - 1][header.index(column)] = value
    path = tmp_path / "emissions.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    return path


@pytest.mark.parametrize(
    ("line", "cells", "expected"),
    [
        (4, {"timestamp": "yesterday"}, "line 4, column 'timestamp': 'yesterday' is not a date"),
        (
            5,
            {"cloud_region": "mars-1"},
            "line 5, column 'cloud_region': location 'gcp:mars-1': unknown gcp region",
        ),
        (5, {"cloud_provider": "ovh"}, "column 'cloud_provider': 'ovh' is not a cloud"),
        (4, {"country_iso_code": ""}, "line 4, column 'country_iso_code': is empty"),
        (2, {"duration": "-3"}, "line 2, column 'duration': '-3' is negative"),
        (3, {"emissions": "nan"}, "line 3, column 'emissions': 'nan' is not a finite number"),
        (5, {"pue": "0.8"}, "line 5, column 'pue': 0.8 is not a PUE"),
        (4, {"run_id": "x' OR '1'='1"}, "line 4, column 'run_id'"),
        # the flush after the stop: the run's totals would go down
        (2, {"timestamp": "2026-12-01T21:00:07"}, "lines 3 and 2 share CodeCarbon run_id"),
    ],
)
def test_bad_rows_stop_the_whole_import(
    tmp_path: Path, line: int, cells: dict[str, str], expected: str
) -> None:
    uri = _uri(tmp_path / "store")
    (tmp_path / "store").mkdir()
    path = _edited(tmp_path, line, **cells)
    out = CliRunner().invoke(
        main, ["import", "codecarbon", str(path), "--tracking-uri", uri, "--timezone", "UTC"]
    )
    assert out.exit_code == 1, out.output
    assert expected in out.output and str(path) in out.output
    assert "Traceback" not in out.output
    assert not (tmp_path / "store" / "mlflow.db").exists()  # the good rows were not imported


def test_bad_time_zone_and_experiment(tmp_path: Path) -> None:
    uri = _uri(tmp_path)
    out = CliRunner().invoke(
        main, ["import", "codecarbon", str(GENUINE), "--tracking-uri", uri, "--timezone", "Mars/X"]
    )
    assert out.exit_code == 2
    assert "--timezone" in out.output and "'Mars/X' is not an IANA time zone" in out.output
    out = CliRunner().invoke(
        main, ["import", "codecarbon", str(GENUINE), "--tracking-uri", uri, "--experiment", " "]
    )
    assert out.exit_code == 1 and "experiment ' ' is empty" in out.output


def test_deleted_experiment_is_refused_before_anything_is_created(tmp_path: Path) -> None:
    uri = _uri(tmp_path)
    client = MlflowClient(tracking_uri=uri)
    client.delete_experiment(client.create_experiment("llama-eval"))
    out = _import(str(GENUINE), "--tracking-uri", uri, "--timezone", "UTC")
    assert out.exit_code == 1
    assert "experiment 'llama-eval' is deleted" in out.output
    assert "mlflow experiments restore" in out.output
    assert _all_runs(uri) == []


def test_unreachable_store(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = CliRunner().invoke(
        main,
        [
            "import",
            "codecarbon",
            str(GENUINE),
            "--tracking-uri",
            f"http://user:s3cret@127.0.0.1:{port}",
        ],
    )
    assert out.exit_code == 1
    assert f"the tracking store http://***@127.0.0.1:{port} does not accept connections" in (
        out.output
    )
    assert "s3cret" not in out.output


def test_codecarbon_still_writes_the_columns_the_importer_reads() -> None:
    """The columns the importer requires and reads are fields of the installed CodeCarbon's
    EmissionsData (what it writes today), as they are of the genuine fixture."""
    import dataclasses

    from codecarbon.output_methods.emissions_data import EmissionsData

    from greenml.importers.codecarbon import REQUIRED_COLUMNS

    read = {*REQUIRED_COLUMNS, "gpu_energy", "cpu_energy", "ram_energy", "pue", "gpu_count"}
    read |= {"gpu_model", "cloud_provider", "cloud_region", "region", "codecarbon_version"}
    fields = {f.name for f in dataclasses.fields(EmissionsData)}
    assert read <= fields
    assert read <= set(GENUINE.read_text("utf-8").splitlines()[0].split(","))
