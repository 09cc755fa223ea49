"""greenml's MLflow names (docs/mlflow.md), computed from hand-built figures."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from greenml import schema as names
from greenml._version import __version__
from greenml.footprint import DeviceEnergy, Factor, Footprint
from greenml.sinks import mlflow as sink


def _footprint() -> Footprint:
    eval_phase = Footprint(
        duration_s=600.0,
        energy_kwh=0.2,
        gpu_energy_kwh=0.15,
        cpu_energy_kwh=0.02,
        ram_energy_kwh=0.01,
    )
    train_phase = Footprint(
        duration_s=1200.0,
        energy_kwh=0.4,
        gpu_energy_kwh=0.35,
        cpu_energy_kwh=0.03,
        ram_energy_kwh=0.02,
    )
    return Footprint(
        duration_s=1800.0,  # half an hour
        energy_kwh=0.6,
        gpu_energy_kwh=0.5,
        cpu_energy_kwh=0.05,
        ram_energy_kwh=0.03,
        pue=1.1,
        grid_intensity_g_per_kwh=250.0,
        co2e_kg=0.15,
        co2e_market_kg=0.05,
        cost_usd=None,  # no price: left out, never logged as 0
        phases=MappingProxyType({"train": train_phase, "eval": eval_phase}),
        devices=(
            DeviceEnergy("gpu:0", "gpu", "NVIDIA A100-SXM4-80GB", "counter", 0.3, index=0),
            DeviceEnergy("gpu:3", "gpu", "NVIDIA A100-SXM4-80GB", "counter", 0.2, index=3),
            DeviceEnergy("cpu:package-0", "cpu", "Xeon", "counter", 0.05),
            DeviceEnergy("ram", "ram", "RAM", "estimated", 0.03),
        ),
        measurement="counter",
        factors=(
            Factor("pue", 1.1, "ratio", source="Google", year=2024),
            Factor("grid_intensity", 250.0, "g/kWh", source="eGRID", year=2023),
        ),
        location="aws:us-east-1",
        instance_type=None,
        scope="scope3-cat1",
    )


def test_summary_metrics_use_design_names_and_mean_power() -> None:
    m = names.summary_metrics(_footprint())
    assert m == {
        "greenml/energy_kwh": 0.6,
        "greenml/co2e_kg": 0.15,
        "greenml/co2e_market_kg": 0.05,
        "greenml/duration_s": 1800.0,
        "greenml/gpu_energy_kwh": 0.5,
        "greenml/cpu_energy_kwh": 0.05,
        "greenml/ram_energy_kwh": 0.03,
        "greenml/gpu_0/energy_kwh": 0.3,
        "greenml/gpu_3/energy_kwh": 0.2,
        "greenml/phase/train/energy_kwh": 0.4,
        "greenml/phase/eval/energy_kwh": 0.2,
        # 0.5 kWh in half an hour = 1000 W; 0.3 kWh -> 600 W, 0.2 kWh -> 400 W
        "greenml/gpu_power_w": pytest.approx(1000.0),
        "greenml/gpu_0/power_w": pytest.approx(600.0),
        "greenml/gpu_3/power_w": pytest.approx(400.0),
    }
    assert "greenml/cost_usd" not in m


def test_timeseries_point_takes_interval_power() -> None:
    m = names.timeseries_values(_footprint(), {0: 310.0, 3: 290.0})
    assert m["greenml/gpu_power_w"] == 600.0
    assert m["greenml/gpu_0/power_w"] == 310.0 and m["greenml/gpu_3/power_w"] == 290.0
    assert m["greenml/energy_kwh"] == 0.6
    # the first point has no interval yet: no power metrics
    assert not any("power" in k for k in names.timeseries_values(_footprint(), {}))


def test_params_name_every_factor_and_unknowns_as_na() -> None:
    p = names.run_params(_footprint())
    assert p == {
        "greenml.location": "aws:us-east-1",
        "greenml.grid_intensity_g_per_kwh": "250.0",
        "greenml.grid_source": "eGRID, 2023",
        "greenml.pue": "1.1",
        "greenml.price_usd_per_hour": "n/a",
        "greenml.price_source": "n/a",
        "greenml.pricing": "n/a",
        "greenml.price_as_of": "n/a",
        "greenml.instance_type": "n/a",
        "greenml.gpu_model": "NVIDIA A100-SXM4-80GB",
        "greenml.gpu_count": "2",
    }
    assert "greenml.grid_intensity_g_per_kwh" not in names.run_params(
        _footprint(), with_intensity=False
    )


def test_hourly_price_param_and_source() -> None:
    import dataclasses

    fp = dataclasses.replace(
        _footprint(),
        factors=(Factor("price", 32.77, "USD/h", source="AWS Price List", year=2026),),
        instance_type="p4d.24xlarge",
    )
    p = names.run_params(fp)
    assert p["greenml.price_usd_per_hour"] == "32.77"
    assert p["greenml.price_source"] == "AWS Price List, 2026"
    assert p["greenml.instance_type"] == "p4d.24xlarge"
    assert (p["greenml.pricing"], p["greenml.price_as_of"]) == ("n/a", "n/a")  # not a table row


def test_a_table_price_names_its_pricing_and_date() -> None:
    import dataclasses

    from greenml.factors.prices import lookup_price

    row = lookup_price("aws", "p5.48xlarge", "us-east-1", pricing="spot")
    fp = dataclasses.replace(_footprint(), factors=(row.factor(),), instance_type="p5.48xlarge")
    p = names.run_params(fp)
    assert (p["greenml.pricing"], p["greenml.price_as_of"]) == ("spot", row.as_of.isoformat())
    user = Factor("price", 9.0, "USD/h", source="user-supplied")
    p = names.run_params(dataclasses.replace(_footprint(), factors=(user,)))
    assert (p["greenml.pricing"], p["greenml.price_as_of"]) == ("user-supplied", "n/a")


def test_tags() -> None:
    t = names.run_tags(_footprint(), node="node-7", greenml_run_id="abc")
    assert t == {
        "greenml.version": __version__,
        "greenml.scope": "scope3-cat1",
        "greenml.measurement": "counter",
        "greenml.node": "node-7",
        "greenml.run_id": "abc",
    }


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("https://alice:s3cret@mlflow.example.com:8443/x", "https://***@mlflow.example.com:8443/x"),
        ("http://token@host:5000", "http://***@host:5000"),
        ("https://host/api?token=abc&exp=1", "https://host/api?token=***&exp=1"),
        ("https://host/?sig=zz&AWSAccessKeyId=k", "https://host/?sig=***&AWSAccessKeyId=***"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("sqlite:////tmp/x/mlflow.db", "sqlite:////tmp/x/mlflow.db"),
        ("databricks", "databricks"),
    ],
)
def test_redact_uri(uri: str, shown: str) -> None:
    assert sink.redact_uri(uri) == shown
    assert "s3cret" not in sink.redact_uri(uri)


def test_local_store_uris_are_made_absolute(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert sink.absolute_uri("sqlite:///mlflow.db") == f"sqlite:///{tmp_path}/mlflow.db"
    assert sink.absolute_uri("sqlite:////abs/m.db") == "sqlite:////abs/m.db"
    assert sink.absolute_uri("mlruns") == f"file://{tmp_path}/mlruns"
    assert sink.absolute_uri("http://h:5000") == "http://h:5000"


def test_reachable_tells_a_closed_port_at_once() -> None:
    import socket
    import time

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    assert not sink.reachable(f"http://127.0.0.1:{port}")
    assert time.monotonic() - t0 < 1.0
    assert sink.reachable("sqlite:///whatever.db")  # local stores need no connection


# -- a later block in a run that has greenml figures already ------------------------------

# the run's totals after a first block of half an hour (the summary of _footprint())
BEFORE = {
    "greenml/energy_kwh": 0.6,
    "greenml/duration_s": 1800.0,
    "greenml/gpu_energy_kwh": 0.5,
    "greenml/gpu_0/energy_kwh": 0.3,
    "greenml/gpu_3/energy_kwh": 0.2,
    "greenml/phase/train/energy_kwh": 0.4,
}


def test_a_later_block_adds_its_figures_to_the_runs_totals() -> None:
    block = names.Block(number=2, step0=1801, base=BEFORE)
    # a second block: a quarter of an hour, GPU 0 only, at 1000 W
    own = {
        "greenml/energy_kwh": 0.3,
        "greenml/duration_s": 900.0,
        "greenml/gpu_energy_kwh": 0.25,
        "greenml/gpu_0/energy_kwh": 0.25,
        "greenml/gpu_power_w": 1000.0,
        "greenml/gpu_0/power_w": 1000.0,
    }
    summary = names.run_values(own, block, summary=True)
    assert summary == {
        "greenml/energy_kwh": pytest.approx(0.9),
        "greenml/duration_s": 2700.0,
        "greenml/gpu_energy_kwh": pytest.approx(0.75),
        "greenml/gpu_0/energy_kwh": pytest.approx(0.55),
        # means over both blocks: 0.75 kWh in 45 min = 1000 W; GPU 0: 0.55 kWh -> 733.3 W
        "greenml/gpu_power_w": pytest.approx(1000.0),
        "greenml/gpu_0/power_w": pytest.approx(733.333333, rel=1e-6),
    }
    # a time-series point: cumulative figures on top of the run's, power of its interval
    point = names.run_values({**own, "greenml/gpu_0/power_w": 980.0}, block, summary=False)
    assert point["greenml/energy_kwh"] == pytest.approx(0.9)
    assert point["greenml/gpu_0/power_w"] == 980.0 and point["greenml/gpu_power_w"] == 1000.0
    # the run's first block is sent as it is
    assert names.run_values(own, names.Block(), summary=True) == own


def test_each_block_has_its_own_artifacts_and_its_place_survives_the_journal() -> None:
    import json

    assert names.Block().footprint_artifact == "greenml/footprint.json"
    assert names.Block().timeseries_artifact == "greenml/timeseries.csv"
    third = names.Block(number=3, step0=42, base=BEFORE)
    assert third.footprint_artifact == "greenml/footprint-3.json"
    assert third.timeseries_artifact == "greenml/timeseries-3.csv"
    assert names.Block.from_record(json.loads(json.dumps(third.to_record()))) == third
    assert [k for k in BEFORE if names.is_cumulative(k)] == list(BEFORE)
    assert not names.is_cumulative("greenml/gpu_power_w")
    assert not names.is_cumulative("greenml/gpu_0/power_w")
    assert not names.is_cumulative("user/loss")
