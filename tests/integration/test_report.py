"""greenml report on a real MLflow store holding runs of known footprints: every total, the
ESRS E1-5 split and every breakdown against sums computed here, the formats, and the errors.

The runs are logged with greenml's own payload builders (greenml.schema) from hand-built
footprints, with start times spread over months, so the expected figures are the numbers
written below, added up by hand."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import subprocess
import sys

import pytest

from greenml import schema
from greenml.factors.prices import lookup_price
from greenml.footprint import DeviceEnergy, Footprint
from greenml.report import load_runs, render, summarize
from greenml.report.command import report

pytestmark = pytest.mark.slow

H100 = "NVIDIA H100 80GB HBM3"
# generation mix, CodeCarbon 3.3.2 global_energy_mix.json (Ember / OWID 2023), TWh
MIX = {"FR": (43.3, 335.65, 135.16), "US": (2510.32, 775.35, 963.38)}  # fossil, nuclear, ren.


P5_SPOT = lookup_price("aws", "p5.48xlarge", "us-east-1", pricing="spot", today=dt.date(2026, 2, 1))


def footprint(
    energy, co2e, market, cost, *, location, scope, gpus=1, hours=1.0, measurement="counter"
):
    it = energy / 1.2
    devices = tuple(
        DeviceEnergy(f"gpu:{i}", "gpu", H100, measurement, it / gpus, index=i) for i in range(gpus)
    )
    return Footprint(
        duration_s=hours * 3600, energy_kwh=energy, gpu_energy_kwh=it, cpu_energy_kwh=0.0,
        ram_energy_kwh=0.0, pue=1.2, grid_intensity_g_per_kwh=co2e / energy * 1000,
        co2e_kg=co2e, co2e_market_kg=market, cost_usd=cost, devices=devices,
        measurement="simulated" if measurement == "simulated" else measurement,
        location=location, scope=scope,
    )  # fmt: skip


def log_run(client, exp_id, day, fp, *, name, nodes=(), user_tags=None):
    start = int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc).timestamp() * 1000)
    run = client.create_run(exp_id, start_time=start, run_name=name, tags=user_tags or {})
    rid = run.info.run_id
    from mlflow.entities import Metric, Param, RunTag

    values = schema.summary_metrics(fp)
    for host, share in nodes:  # a multi-host job: each host's figures, and the job totals
        values.update({schema.node_metric(host, k): v * share for k, v in values.items()})
    tags = schema.run_tags(fp, node="h", greenml_run_id=rid, status="FINISHED")
    client.log_batch(
        rid,
        metrics=[Metric(k, v, start + 1000, 0) for k, v in values.items()],
        params=[Param(k, v) for k, v in schema.run_params(fp).items()],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )
    client.set_terminated(rid, "FINISHED", end_time=start + int(fp.duration_s * 1000))
    return rid


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri)
    bert, llama = c.create_experiment("bert"), c.create_experiment("llama")
    hostile = c.create_experiment('=HYPERLINK("http://evil.example")')
    ids = {
        "fr": log_run(
            c,
            bert,
            "2026-01-15T10:00:00",
            footprint(10.0, 0.56, 0.56, None, location="FR", scope="scope2"),
            name="fr",
            user_tags={"team": "nlp"},
        ),
        "aws": log_run(
            c,
            bert,
            "2026-02-10T10:00:00",
            dataclasses.replace(
                footprint(
                    20.0,
                    7.0,
                    3.0,
                    100.0,
                    location="aws:us-east-1",
                    scope="scope3-cat1",
                    gpus=8,
                    hours=2.0,
                ),
                factors=(P5_SPOT.factor(),),  # the table's spot price, with its date
                instance_type="p5.48xlarge",
            ),
            name="aws",
            user_tags={"team": "nlp"},
        ),
        "ca": log_run(
            c,
            llama,
            "2026-02-20T10:00:00",
            footprint(5.0, 1.2, 1.2, 30.0, location="US-CA", scope="scope2", gpus=2),
            name="ca",
        ),
        "gcp": log_run(
            c,
            llama,
            "2026-03-05T10:00:00",
            footprint(
                40.0,
                0.6,
                0.6,
                200.0,
                location="gcp:europe-west9",
                scope="scope3-cat1",
                gpus=16,
                hours=3.0,
            ),
            name="multi-host",
            nodes=[("node-a", 0.25), ("node-b", 0.75)],
        ),
        "sim": log_run(
            c,
            bert,
            "2026-03-06T10:00:00",
            footprint(100.0, 5.0, 5.0, 1.0, location="FR", scope="scope2", measurement="simulated"),
            name="sim",
        ),
        "evil": log_run(
            c,
            hostile,
            "2026-03-07T10:00:00",
            footprint(1.0, 0.05, 0.05, None, location="FR", scope="scope2"),
            name="<script>alert(1)</script>",
        ),
        "old": log_run(
            c,
            bert,
            "2025-12-31T10:00:00",
            footprint(7.0, 1.0, 1.0, 1.0, location="FR", scope="scope2"),
            name="old",
        ),
    }
    plain = c.create_run(bert, start_time=ids_ms("2026-01-20"), run_name="no-greenml").info.run_id
    from mlflow.entities import Metric

    c.log_batch(plain, metrics=[Metric("loss", 0.5, ids_ms("2026-01-20"), 0)])
    ids["plain"] = plain
    return uri, ids


def ids_ms(day):
    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc).timestamp() * 1000)


def report_of(store, **kw):
    uri, _ = store
    runs = load_runs(uri, since="2026-01-01", until="2026-12-31")
    return runs, summarize(runs, generated=dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc), **kw)


INCLUDED = {  # run -> (energy kWh, co2e kg, market kg, cost USD, GPU-hours, zone, basis)
    "fr": (10.0, 0.56, 0.56, None, 1.0, "FR", "lifecycle"),
    "aws": (20.0, 7.0, 3.0, 100.0, 16.0, "US", "combustion"),
    "ca": (5.0, 1.2, 1.2, 30.0, 2.0, "US", "combustion"),
    "gcp": (40.0, 0.6, 0.6, 200.0, 48.0, "FR", "combustion"),
    "evil": (1.0, 0.05, 0.05, None, 1.0, "FR", "lifecycle"),
}


def test_totals_count_each_included_run_once(store):
    runs, s = report_of(store)
    assert len(runs) == 7  # the 2025 run is outside the period; the plain run is listed
    t = s["totals"]
    assert t["runs"] == 5  # not the simulated run, not the run without greenml data
    assert t["energy_kwh"] == pytest.approx(76.0)  # the multi-host job once, not its hosts
    assert t["energy_mwh"] == pytest.approx(0.076)
    assert t["co2e_t"] == pytest.approx((0.56 + 7.0 + 1.2 + 0.6 + 0.05) / 1000)
    assert t["co2e_market_t"] == pytest.approx((0.56 + 3.0 + 1.2 + 0.6 + 0.05) / 1000)
    assert t["cost_usd"] == pytest.approx(330.0) and t["runs_without_price"] == 2
    assert t["gpu_hours"] == pytest.approx(1 + 16 + 2 + 48 + 1)
    assert t["it_energy_mwh"] == pytest.approx(76.0 / 1.2 / 1000)
    assert s["header"]["runs"] == 5 and s["schema_version"] == 1


def test_simulated_runs_join_the_totals_only_when_asked(store):
    _, s = report_of(store, include_simulated=True)
    assert s["totals"]["runs"] == 6 and s["totals"]["energy_kwh"] == pytest.approx(176.0)
    _, s = report_of(store)
    _, ids = store
    assert (
        s["data_quality"]["simulated"] == [ids["sim"]] and s["data_quality"]["simulated_excluded"]
    )


def test_esrs_e1_5_splits_energy_by_each_zones_generation_mix(store):
    _, s = report_of(store)
    e = s["esrs_e1_5"]
    expected = [0.0, 0.0, 0.0]
    for energy, _, _, _, _, country, _ in INCLUDED.values():
        mix = MIX[country]
        for i in range(3):
            expected[i] += energy / 1000 * mix[i] / sum(mix)
    assert [e["fossil_mwh"], e["nuclear_mwh"], e["renewable_mwh"]] == pytest.approx(expected)
    assert e["fossil_mwh"] + e["nuclear_mwh"] + e["renewable_mwh"] == pytest.approx(0.076)
    assert e["unknown_mwh"] == 0.0
    assert e["zones_without_own_mix"] == ["US-CA", "US-VA"]  # their country's mix is used
    _, ids = store
    assert [m["run_id"] for m in e["market_instruments"]] == [ids["aws"]]


def test_scopes_and_bases_are_split_and_add_up(store):
    _, s = report_of(store)
    scopes = {x["scope"]: x for x in s["scopes"]}
    assert scopes["scope2"]["co2e_t"] == pytest.approx((0.56 + 1.2 + 0.05) / 1000)
    assert scopes["scope3-cat1"]["co2e_t"] == pytest.approx((7.0 + 0.6) / 1000)
    assert scopes["scope3-cat1"]["co2e_market_t"] == pytest.approx((3.0 + 0.6) / 1000)
    basis = {x["basis"]: x for x in s["basis"]}
    assert basis["lifecycle"]["co2e_t"] == pytest.approx((0.56 + 0.05) / 1000)
    assert basis["combustion"]["co2e_t"] == pytest.approx((7.0 + 1.2 + 0.6) / 1000)
    assert "Scope 2 inventory" in s["basis_note"]


def test_breakdowns_by_group_month_and_the_top_runs(store):
    _, s = report_of(store)
    groups = {g["group"]: g for g in s["groups"]}
    assert groups["bert"]["energy_mwh"] == pytest.approx(0.030)
    assert groups["llama"]["co2e_t"] == pytest.approx(0.0018)
    assert s["groups"][0]["group"] == "bert"  # the largest CO2e first
    months = {m["month"]: m for m in s["months"]}
    assert list(months) == ["2026-01", "2026-02", "2026-03"]
    assert months["2026-02"]["co2e_t_by_location"] == pytest.approx(
        {"aws:us-east-1": 0.007, "US-CA": 0.0012}
    )
    _, ids = store
    assert [r["run_id"] for r in s["top_co2e"]][:2] == [ids["aws"], ids["ca"]]
    assert [r["run_id"] for r in s["top_cost"]] == [ids["gcp"], ids["aws"], ids["ca"]]
    _, by_tag = report_of(store, group_by="tag:team")
    assert {g["group"]: g["runs"] for g in by_tag["groups"]} == {"nlp": 2, "(no tag)": 3}


def test_data_quality_lists_what_is_missing(store):
    _, s = report_of(store)
    _, ids = store
    dq = s["data_quality"]
    assert sorted(dq["missing_price"]) == sorted([ids["fr"], ids["evil"]])
    assert [r["run_id"] for r in dq["without_greenml"]] == [ids["plain"]]
    assert dq["energy_share"]["counter"] == pytest.approx(1.0)
    assert dq["assumptions"] and "0.5 %" in dq["uncertainty"]


def test_what_if_and_sources(store):
    _, s = report_of(store)
    _, ids = store
    what_if = {w["run_id"]: w for w in s["what_if"]}
    assert ids["aws"] in what_if and not {ids["fr"], ids["ca"]} & set(what_if)  # clouds only
    for w in what_if.values():  # the same energy at the lowest intensity the provider offers
        assert w["best_location"].split(":")[0] == w["provider"]
        assert w["best_co2e_t"] < w["co2e_t"]
    assert "HYPOTHETICAL" in s["what_if_note"]
    grid = [x for x in s["sources"] if x["factor"] == "grid_intensity"]
    assert {x["zone"] for x in grid} == {"FR", "US-VA", "US-CA"}
    fr = [x for x in grid if x["zone"] == "FR"]
    assert sorted(r for x in fr for r in x["runs"]) == sorted([ids["fr"], ids["evil"], ids["gcp"]])
    (price,) = [x for x in s["sources"] if x["factor"] == "price"]
    assert price["runs"] == [ids["aws"]] and price["value"] == pytest.approx(P5_SPOT.usd_per_hour)
    assert (price["basis"], price["as_of"]) == ("spot", P5_SPOT.as_of.isoformat())
    assert price["year"] == P5_SPOT.as_of.year and "SkyPilot catalog" in price["source"]


def test_formats_carry_the_same_figures_and_neutralise_user_text(store):
    _, s = report_of(store)
    doc = json.loads(render(s, "json"))
    assert doc["totals"]["energy_kwh"] == pytest.approx(76.0)
    assert {"run_id", "energy_kwh", "co2e_kg", "co2e_market_kg", "cost_usd", "gpu_hours"} <= set(
        doc["runs"][0]
    )
    rows = list(csv.DictReader(io.StringIO(render(s, "csv"))))
    assert len(rows) == 7
    evil = next(r for r in rows if r["run_name"] == "<script>alert(1)</script>")
    assert evil["experiment"].startswith("'=HYPERLINK")  # never a formula in a spreadsheet
    assert sum(float(r["energy_kwh"]) for r in rows if r["included"] == "true") == pytest.approx(76)


def test_html_and_markdown_of_the_store_escape_its_hostile_names(store):
    _, s = report_of(store)
    html, md = render(s, "html"), render(s, "md")
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)" in html
    assert "<script>" not in md
    for text in (html, md):
        assert "0.076" in text  # the facility energy in MWh
        assert "HYPOTHETICAL" in text


def test_the_inputs_hash_changes_with_the_figures(store):
    _, a = report_of(store)
    _, b = report_of(store)
    assert a["header"]["inputs_sha256"] == b["header"]["inputs_sha256"]
    _, c = report_of(store, include_simulated=True)
    assert c["header"]["inputs_sha256"] != a["header"]["inputs_sha256"]


def test_the_command_writes_the_report_and_says_what_is_wrong(store, tmp_path):
    from click.testing import CliRunner

    uri, _ = store
    out = tmp_path / "r.json"
    args = ["--tracking-uri", uri, "--year", "2026", "--format", "json", "-o", str(out)]
    result = CliRunner().invoke(report, args)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["totals"]["runs"] == 5
    assert "5 run(s) in the totals" in result.output
    for bad, message, code in (
        (["--since", "2026-02-30"], "--since '2026-02-30' is not a date", 2),
        (["--since", "2026-05-01", "--until", "2026-01-01"], "is after --until", 2),
        (["--experiment", "gpt"], "no experiment named 'gpt'", 1),
        (["--group-by", "colour"], "use one of experiment, month", 2),
        (["--year", "2026", "--since", "2026-01-01"], "not both", 2),
        (["--format", "pdf"], "'pdf' is not one of", 2),
    ):
        r = CliRunner().invoke(report, ["--tracking-uri", uri, *bad])
        assert r.exit_code == code and message in r.output, (bad, r.output)
        assert "Traceback" not in r.output


def test_no_store_in_the_folder_is_said_and_none_is_created(plain_cwd):
    from click.testing import CliRunner

    r = CliRunner().invoke(report, [])
    assert r.exit_code == 1 and "there is no MLflow store at sqlite:///" in r.output
    assert not (plain_cwd / "mlflow.db").exists()


def test_the_command_as_a_subprocess_against_a_server(mlflow_server, tmp_path, plain_cwd):
    out = subprocess.run(
        [sys.executable, "-m", "greenml.cli", "report", "--tracking-uri", mlflow_server.uri,
         "--format", "csv", "-o", "-"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("run_id,run_name,experiment")
    assert "run(s) in the totals" in out.stderr


def test_the_model_card_sums_a_pre_training_and_its_fine_tune(store):
    from click.testing import CliRunner

    uri, ids = store
    r = CliRunner().invoke(report, ["--tracking-uri", uri, "--model-card", ids["fr"], ids["aws"]])
    assert r.exit_code == 0, r.output
    text = r.output
    assert "co2_eq_emissions:\n  emissions: 7560.0\n" in text  # grams: (0.56 + 7.0) kg
    assert '  training_type: "pre-training and fine-tuning"' in text
    assert '  geographical_location: "FR, aws:us-east-1"' in text
    assert f'  hardware_used: "1 x {H100}, 8 x {H100}"' in text
    assert "- **Hours used:** 3.00 h wall-clock (17.0 GPU-hours)" in text
    assert "- **Energy:** 30 kWh facility energy" in text
    assert "EU AI Act, Annex XI, section 1, point 2 (d)-(e)" in text
    assert "not recorded (the training did not log greenml/flops)" in text
    assert "known: measured" in text
    bad = CliRunner().invoke(report, ["--tracking-uri", uri, "--model-card", "nope"])
    assert bad.exit_code == 1 and "run 'nope' is not in the tracking store" in bad.output
    plain = CliRunner().invoke(report, ["--tracking-uri", uri, "--model-card", ids["plain"]])
    assert plain.exit_code == 1 and "has no greenml figures" in plain.output
    alone = CliRunner().invoke(report, ["--tracking-uri", uri, "--model-card"])
    assert alone.exit_code == 2 and "needs the MLflow run ids" in alone.output


def test_log_to_mlflow_keeps_the_report_as_an_artifact(store, tmp_path):
    from click.testing import CliRunner
    from mlflow import MlflowClient

    uri, _ = store
    out = tmp_path / "r.csv"
    args = ["--tracking-uri", uri, "--year", "2026", "--format", "csv", "-o", str(out)]
    r = CliRunner().invoke(report, [*args, "--log-to-mlflow"])
    assert r.exit_code == 0, r.output
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("greenml-reports")
    (run,) = client.search_runs([exp.experiment_id])
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["r.csv"]
    # a report never reports on the reports
    again = CliRunner().invoke(report, [*args])
    assert "5 run(s) in the totals" in again.output
