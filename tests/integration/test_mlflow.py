"""greenml against a real ``mlflow server`` (sqlite backend, temporary folders) and
MLflow's local default store: names and values, composition with the user's runs, the
journal when the server is away, ``greenml sync``, SIGKILL and SIGTERM."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner
from history import journal_points as _journal_points
from history import mlflow_points as _points
from mlflow import MlflowClient

import greenml
from greenml._version import __version__
from greenml.cli import main
from greenml.errors import ConfigError, GreenMLWarning
from greenml.footprint import Footprint
from greenml.sinks import journal as jr
from greenml.testing import SimGPU, SimulatedNVML, traces

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _greenml_defaults(plain_cwd: Path) -> Path:
    """These tests check greenml's defaults: MLflow logging and the journal are on."""
    return plain_cwd


def _closed_port_uri(user: str = "") -> str:
    with socket.socket() as s:  # free a moment ago; nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://{user}127.0.0.1:{port}"


def _sim() -> SimulatedNVML:
    return SimulatedNVML(
        [SimGPU(trace=traces.constant(300.0)), SimGPU(trace=traces.constant(450.0))]
    )


def _only_journal(folder: Path) -> Path:
    files = jr.journal_files(folder)
    assert len(files) == 1, files
    return files[0]


def _warned(record: pytest.WarningsRecorder) -> str:
    """The text of the GreenMLWarnings recorded, one a line."""
    return "\n".join(str(w.message) for w in record if issubclass(w.category, GreenMLWarning))


def _greenml_threads() -> set[threading.Thread]:
    """greenml's live threads (a test compares before and after: a sender of an earlier
    test may still sit in MLflow's retries against a server that was stopped)."""
    return {t for t in threading.enumerate() if t.name.startswith("greenml-")}


# -- names and values -------------------------------------------------------------------


def test_every_design_name_lands_with_the_footprint_values(mlflow_server, tmp_path):
    threads_before = _greenml_threads()
    with (
        _sim(),
        greenml.track(
            tracking_uri=mlflow_server.uri,
            experiment=f"names-{uuid.uuid4().hex[:8]}",
            run_name="names",
            location="aws:us-east-1",
            instance_type="p5.48xlarge",
            log_interval_s=0.3,
            log_to_mlflow=True,
            journal=True,
            journal_dir=str(tmp_path / "journal"),
        ) as run,
    ):
        time.sleep(1.0)
        with run.phase("eval"):
            time.sleep(0.5)
    fp = run.footprint
    where = run.mlflow
    assert where is not None and where.delivered and where.run_id
    client = MlflowClient(mlflow_server.uri)
    r = client.get_run(where.run_id)
    assert r.info.status == "FINISHED" and r.info.run_name == "names"

    m = r.data.metrics
    assert m["greenml/energy_kwh"] == pytest.approx(fp.energy_kwh, rel=1e-12)
    assert m["greenml/co2e_kg"] == pytest.approx(fp.co2e_kg, rel=1e-12)
    assert m["greenml/co2e_market_kg"] == pytest.approx(fp.co2e_market_kg, rel=1e-12)
    assert m["greenml/cost_usd"] == pytest.approx(fp.cost_usd, rel=1e-12)
    assert m["greenml/duration_s"] == pytest.approx(fp.duration_s, rel=1e-12)
    for kind in ("gpu", "cpu", "ram"):
        assert m[f"greenml/{kind}_energy_kwh"] == pytest.approx(getattr(fp, f"{kind}_energy_kwh"))
    gpus = {d.index: d.energy_kwh for d in fp.devices if d.kind == "gpu"}
    assert sorted(gpus) == [0, 1]
    for i, kwh in gpus.items():
        assert m[f"greenml/gpu_{i}/energy_kwh"] == pytest.approx(kwh)
        assert m[f"greenml/gpu_{i}/power_w"] == pytest.approx(kwh * 3.6e6 / fp.duration_s)
    # the simulated GPUs draw 300 W and 450 W: the run's mean power says so
    assert m["greenml/gpu_0/power_w"] == pytest.approx(300.0, rel=0.02)
    assert m["greenml/gpu_1/power_w"] == pytest.approx(450.0, rel=0.02)
    assert m["greenml/gpu_power_w"] == pytest.approx(750.0, rel=0.02)
    for name, phase in fp.phases.items():
        assert m[f"greenml/phase/{name}/energy_kwh"] == pytest.approx(phase.energy_kwh)
    assert set(fp.phases) == {"train", "eval"}

    p = r.data.params
    factors = {f.name: f for f in fp.factors}
    assert p["greenml.location"] == "aws:us-east-1"
    assert float(p["greenml.grid_intensity_g_per_kwh"]) == fp.grid_intensity_g_per_kwh
    assert p["greenml.grid_source"].startswith(factors["grid_intensity"].source)
    assert float(p["greenml.pue"]) == fp.pue == 1.14
    assert float(p["greenml.price_usd_per_hour"]) == factors["price"].value
    assert p["greenml.price_source"].startswith(factors["price"].source)
    assert p["greenml.instance_type"] == "p5.48xlarge"
    assert p["greenml.gpu_model"] == "NVIDIA H100 80GB HBM3"
    assert p["greenml.gpu_count"] == "2"

    t = r.data.tags
    assert t["greenml.version"] == __version__
    assert t["greenml.scope"] == "scope3-cat1"
    assert t["greenml.measurement"] == "simulated"
    assert t["greenml.node"] == socket.gethostname()
    assert t["greenml.run_id"] == run.greenml_run_id
    assert t["greenml.status"] == "finished"

    art = tmp_path / "art"
    doc = json.loads(
        Path(
            client.download_artifacts(r.info.run_id, "greenml/footprint.json", str(art))
        ).read_text()
    )
    assert doc["greenml_version"] == __version__
    assert doc["energy_kwh"] == pytest.approx(fp.energy_kwh)
    assert {f["name"] for f in doc["factors"]} >= {"pue", "grid_intensity", "price"}
    assert all(f["source"] and "year" in f and "licence" in f for f in doc["factors"])
    assert Footprint.from_dict(doc) == fp  # footprint.json reads back as the run's footprint

    rows = list(
        csv.DictReader(
            io.StringIO(
                Path(
                    client.download_artifacts(r.info.run_id, "greenml/timeseries.csv", str(art))
                ).read_text()
            )
        )
    )
    assert len(rows) >= 4  # a point every 0.3 s over 1.5 s, and the end
    assert float(rows[-1]["energy_kwh"]) == pytest.approx(fp.energy_kwh, rel=1e-6)
    assert float(rows[-1]["elapsed_s"]) == pytest.approx(fp.duration_s, abs=1e-3)
    # mean power between points, from the cumulative columns: 300 W and 450 W
    # mean power between rows, 0.3 s apart, from the GPUs' joules brought up to each row
    # a GPU whose counter has no rate yet gets no power (never 0 W): under load that can
    # last past the first row; from its first power on, every row has one
    first = next(i for i, row in enumerate(rows) if i > 0 and row["gpu_0_power_w"])
    assert first <= 3 and len(rows) - first >= 3
    for row in rows[first:]:
        assert float(row["gpu_0_power_w"]) == pytest.approx(300.0, rel=0.05)
        assert float(row["gpu_1_power_w"]) == pytest.approx(450.0, rel=0.05)

    series = _points(client, r.info.run_id, "greenml/energy_kwh")
    assert len(series) >= 5 and series[0][2] == 0.0
    assert [v for _, _, v in series] == sorted(v for _, _, v in series)  # cumulative
    power = _points(client, r.info.run_id, "greenml/gpu_0/power_w")
    assert all(v == pytest.approx(300.0, rel=0.05) for _, _, v in power)
    assert _greenml_threads() == threads_before  # the run's threads are gone


def test_composes_with_the_users_run(mlflow_server, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    client = MlflowClient(mlflow_server.uri)
    exp = client.create_experiment(f"outer-{uuid.uuid4().hex[:8]}")
    with mlflow.start_run(experiment_id=exp) as outer:
        mlflow.log_param("lr", 0.1)
        with (
            _sim(),
            greenml.track(
                location="FR", log_interval_s=0.3, log_to_mlflow=True, journal_dir=str(tmp_path)
            ) as run,
        ):
            mlflow.log_metric("user/loss", 0.5)
            time.sleep(0.5)
        assert mlflow.active_run().info.run_id == outer.info.run_id  # still the user's
        assert client.get_run(outer.info.run_id).info.status == "RUNNING"  # not ended by us
        with (
            mlflow.start_run(nested=True, experiment_id=exp) as child,
            greenml.track(location="FR", log_to_mlflow=True, journal=False) as inner,
        ):
            time.sleep(0.1)
    assert run.mlflow.run_id == outer.info.run_id
    assert inner.mlflow.run_id == child.info.run_id
    r = client.get_run(outer.info.run_id)
    assert r.info.status == "FINISHED"  # ended by the user's with-block
    assert r.data.params["lr"] == "0.1" and r.data.metrics["user/loss"] == 0.5
    assert r.data.metrics["greenml/energy_kwh"] == pytest.approx(run.footprint.energy_kwh)
    assert r.data.tags["greenml.status"] == "finished"
    assert "greenml/energy_kwh" in client.get_run(child.info.run_id).data.metrics
    assert len(client.search_runs([exp])) == 2  # the user's two runs, none of greenml's own


def test_two_tracked_blocks_in_one_run_keep_the_first_params(plain_cwd, tmp_path):
    with mlflow.start_run() as outer:
        with greenml.track(location="FR", pue=1.1) as first:
            time.sleep(0.05)
        with (
            pytest.warns(GreenMLWarning, match=r"already had greenml\.pue='1\.1'") as record,
            greenml.track(location="FR", pue=1.3) as second,
        ):
            time.sleep(0.05)
    client = MlflowClient(f"sqlite:///{plain_cwd}/mlflow.db")
    r = client.get_run(outer.info.run_id)
    assert r.data.params["greenml.pue"] == "1.1"  # MLflow params never change
    # the warning names where the second block's own value is
    assert "this job's greenml.pue='1.3' is in greenml/footprint-2.json" in _warned(record)
    doc = json.loads(
        Path(
            client.download_artifacts(r.info.run_id, "greenml/footprint-2.json", str(tmp_path))
        ).read_text()
    )
    assert doc["pue"] == 1.3 and doc["greenml_run_id"] == second.greenml_run_id
    # the second block's metrics and summary still arrived, on top of the first's
    assert second.mlflow.delivered and first.mlflow.delivered
    total = first.footprint.energy_kwh + second.footprint.energy_kwh
    assert r.data.metrics["greenml/energy_kwh"] == pytest.approx(total, rel=1e-12)


# -- several tracked blocks in one run ----------------------------------------------------

SUMMED = (
    "energy_kwh",
    "duration_s",
    "gpu_energy_kwh",
    "cpu_energy_kwh",
    "ram_energy_kwh",
    "co2e_kg",
    "co2e_market_kg",
)


def _block(jdir: Path, **where: str) -> greenml.Tracker:
    """A tracked block of 1.2 s with two simulated GPUs: a point at its start, the summary
    at its end (whole-second steps 0 and 1)."""
    with (
        _sim(),
        greenml.track(
            location="FR",
            log_interval_s=30.0,
            log_to_mlflow=True,
            journal_dir=str(jdir),
            **where,
        ) as run,
    ):
        time.sleep(1.2)
    return run


def _assert_blocks_add_up(
    client: MlflowClient, run_id: str, blocks: list[greenml.Tracker], tmp_path: Path
) -> None:
    """The run keeps each block's own footprint and CSV, its greenml series run on across
    the blocks (steps strictly increasing, cumulative figures never going back), and its
    summary figures are the totals of the blocks' footprints."""
    fps = [b.footprint for b in blocks]
    arts = {a.path for a in client.list_artifacts(run_id, "greenml")}
    assert arts == {
        "greenml/footprint.json",
        "greenml/timeseries.csv",
        "greenml/footprint-2.json",
        "greenml/timeseries-2.csv",
    }
    paths = ("greenml/footprint.json", "greenml/footprint-2.json")
    for path, block in zip(paths, blocks, strict=True):
        doc = json.loads(
            Path(client.download_artifacts(run_id, path, str(tmp_path / "art"))).read_text()
        )
        assert doc["greenml_run_id"] == block.greenml_run_id
        assert doc["energy_kwh"] == pytest.approx(block.footprint.energy_kwh, rel=1e-12)
    for name in ("energy_kwh", "duration_s", "gpu_0/energy_kwh", "phase/train/energy_kwh"):
        series = _points(client, run_id, f"greenml/{name}")
        steps, values = [p[0] for p in series], [p[2] for p in series]
        assert len(series) == 4, series  # each block: its first point and its summary
        assert steps == sorted(set(steps)), series  # strictly increasing
        assert values == sorted(values), series  # never back to 0 at the second block
        assert sorted(series, key=lambda p: p[1]) == series  # and in time order
    r = client.get_run(run_id)
    m = r.data.metrics
    for name in SUMMED:
        total = sum(getattr(fp, name) for fp in fps)
        assert m[f"greenml/{name}"] == pytest.approx(total, rel=1e-12), name
    for i in (0, 1):
        total = sum(d.energy_kwh for fp in fps for d in fp.devices if d.index == i)
        assert m[f"greenml/gpu_{i}/energy_kwh"] == pytest.approx(total, rel=1e-12)
    total = sum(fp.phases["train"].energy_kwh for fp in fps)
    assert m["greenml/phase/train/energy_kwh"] == pytest.approx(total, rel=1e-12)
    # the run's mean power over both blocks: the simulated GPUs draw 300 W + 450 W
    assert m["greenml/gpu_power_w"] == pytest.approx(750.0, rel=0.02)
    assert m["greenml/gpu_1/power_w"] == pytest.approx(450.0, rel=0.02)
    assert r.data.tags["greenml.blocks"] == "2"


def test_two_blocks_in_one_run_keep_both_footprints_and_add_up(
    mlflow_server, tmp_path, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    client = MlflowClient(mlflow_server.uri)
    exp = client.create_experiment(f"blocks-{uuid.uuid4().hex[:8]}")
    jdir = tmp_path / "journal"
    with mlflow.start_run(experiment_id=exp) as outer:
        blocks = [_block(jdir / "1"), _block(jdir / "2")]
    run_id = outer.info.run_id
    assert [b.mlflow.run_id for b in blocks] == [run_id, run_id]
    assert all(b.mlflow.delivered for b in blocks)
    _assert_blocks_add_up(client, run_id, blocks, tmp_path)

    # every answer of the second block lost: a replay by sync sends the same values to the
    # same places, so MLflow ends up with nothing new
    journal = _only_journal(jdir / "2")
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join(x for x in lines if json.loads(x)["t"] != "sent"))
    series = {k: _points(client, run_id, k) for k in client.get_run(run_id).data.metrics}
    out = CliRunner().invoke(main, ["sync", "--journal-dir", str(jdir / "2")])
    assert out.exit_code == 0 and "sent 3 record(s)" in out.output, out.output
    assert {k: _points(client, run_id, k) for k in series} == series
    _assert_blocks_add_up(client, run_id, blocks, tmp_path)


def test_a_block_sent_later_by_sync_lands_as_it_would_have_live(mlflow_server, tmp_path):
    client = MlflowClient(mlflow_server.uri)
    run_id = client.create_run(client.create_experiment(f"later-{uuid.uuid4().hex[:8]}"))
    run_id = run_id.info.run_id
    jdir = tmp_path / "journal"
    first = _block(jdir / "1", tracking_uri=mlflow_server.uri, run_id=run_id)
    with pytest.warns(GreenMLWarning, match="cannot check run_id"):
        second = _block(jdir / "2", tracking_uri=_closed_port_uri(), run_id=run_id)
    assert first.mlflow.delivered and not second.mlflow.delivered
    for _ in range(2):  # the second time there is nothing to send
        out = CliRunner().invoke(
            main, ["sync", "--journal-dir", str(jdir / "2"), "--tracking-uri", mlflow_server.uri]
        )
        assert out.exit_code == 0, out.output
    assert "up to date" in out.output
    _assert_blocks_add_up(client, run_id, [first, second], tmp_path)


def test_local_default_store(plain_cwd):
    """No tracking URI anywhere: MLflow's own default, sqlite:///mlflow.db here."""
    with _sim(), greenml.track(location="FR", log_interval_s=0.2) as run:
        time.sleep(0.5)
    assert (plain_cwd / "mlflow.db").is_file()
    client = MlflowClient(f"sqlite:///{plain_cwd}/mlflow.db")
    r = client.get_run(run.mlflow.run_id)
    assert r.info.experiment_id == "0"  # MLflow's Default experiment
    assert r.data.metrics["greenml/energy_kwh"] == pytest.approx(run.footprint.energy_kwh)
    journal = _only_journal(plain_cwd / ".greenml" / "journal")
    c = jr.read(journal)
    assert c.unsent == [] and c.end["status"] == "FINISHED"
    assert c.summary["footprint"]["energy_kwh"] == pytest.approx(run.footprint.energy_kwh)


def test_failed_and_interrupted_runs_are_marked(plain_cwd):
    with pytest.raises(RuntimeError), greenml.track(location="FR") as failed:
        raise RuntimeError("training diverged")
    with pytest.raises(KeyboardInterrupt), greenml.track(location="FR") as stopped:
        raise KeyboardInterrupt
    with pytest.raises(SystemExit), greenml.track(location="FR") as exited:
        sys.exit(0)  # a script that ends itself cleanly
    client = MlflowClient(f"sqlite:///{plain_cwd}/mlflow.db")
    for run, status in ((failed, "FAILED"), (stopped, "KILLED"), (exited, "FINISHED")):
        r = client.get_run(run.mlflow.run_id)
        assert r.info.status == status
        assert r.data.tags["greenml.status"] == status.lower()
        assert "greenml/duration_s" in r.data.metrics


def test_opting_out(plain_cwd, tmp_path):
    with greenml.track(location="FR", log_to_mlflow=False) as run:
        time.sleep(0.05)
    assert run.footprint.energy_kwh > 0
    assert not (plain_cwd / "mlflow.db").exists()
    c = jr.read(_only_journal(plain_cwd / ".greenml" / "journal"))
    assert c.start["mlflow"] is False and c.summary is not None
    out = CliRunner().invoke(main, ["sync"])
    assert "log_to_mlflow=False" in out.output and not (plain_cwd / "mlflow.db").exists()

    with greenml.track(location="FR", journal=False, journal_dir=str(tmp_path / "j")):
        pass
    assert not (tmp_path / "j").exists()


def test_an_unwritable_journal_does_not_stop_the_run(plain_cwd):
    (plain_cwd / "blocked").write_text("a file where the journal folder should be")
    with (
        pytest.warns(GreenMLWarning, match="cannot write the journal blocked/journal/"),
        greenml.track(location="FR", journal_dir="blocked/journal") as run,
    ):
        time.sleep(0.05)
    assert run.mlflow.journal is None and run.mlflow.delivered  # MLflow still has it
    r = MlflowClient(f"sqlite:///{plain_cwd}/mlflow.db").get_run(run.mlflow.run_id)
    assert r.data.metrics["greenml/energy_kwh"] == pytest.approx(run.footprint.energy_kwh)


# -- bad input --------------------------------------------------------------------------


def test_unknown_run_id_fails_before_training(mlflow_server, tmp_path):
    run = greenml.track(
        tracking_uri=mlflow_server.uri,
        run_id="0" * 32,
        location="FR",
        log_to_mlflow=True,
        journal_dir=str(tmp_path),
    )
    threads_before = _greenml_threads()
    with pytest.raises(ConfigError, match=r"run_id='0{32}' does not exist in the tracking store"):
        run.start()
    assert _greenml_threads() == threads_before and not any(tmp_path.iterdir())


def test_existing_run_id_is_attached_and_left_open(mlflow_server):
    client = MlflowClient(mlflow_server.uri)
    exp = client.create_experiment(f"attach-{uuid.uuid4().hex[:8]}")
    target = client.create_run(exp)
    with greenml.track(
        tracking_uri=mlflow_server.uri,
        run_id=target.info.run_id,
        location="FR",
        log_to_mlflow=True,
        journal=False,
    ) as run:
        time.sleep(0.1)
    r = client.get_run(target.info.run_id)
    assert r.info.status == "RUNNING"  # the framework that owns it ends it
    assert r.data.metrics["greenml/energy_kwh"] == pytest.approx(run.footprint.energy_kwh)


def test_mlflow_run_id_variable_is_attached_and_checked(mlflow_server, monkeypatch):
    client = MlflowClient(mlflow_server.uri)
    target = client.create_run(client.create_experiment(f"env-{uuid.uuid4().hex[:8]}"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    monkeypatch.setenv("MLFLOW_RUN_ID", target.info.run_id)  # as `mlflow run` sets it
    with greenml.track(location="FR", log_to_mlflow=True, journal=False) as run:
        pass
    assert run.mlflow.run_id == target.info.run_id
    assert client.get_run(target.info.run_id).info.status == "RUNNING"
    monkeypatch.setenv("MLFLOW_RUN_ID", "f" * 32)
    with pytest.raises(ConfigError, match=r"MLFLOW_RUN_ID='f{32}' does not exist"):
        greenml.track(location="FR", log_to_mlflow=True).start()


def test_unreachable_store_warns_with_redacted_uri_then_sync_delivers(mlflow_server, tmp_path):
    uri = _closed_port_uri(user="alice:s3cret@")
    jdir = tmp_path / "journal"
    t0 = time.monotonic()
    with (
        pytest.warns(GreenMLWarning, match="cannot be reached") as record,
        _sim(),
        greenml.track(
            tracking_uri=uri,
            location="FR",
            log_interval_s=0.2,
            log_to_mlflow=True,
            journal_dir=str(jdir),
            experiment="offline",
        ) as run,
    ):
        time.sleep(0.6)
    assert time.monotonic() - t0 < 3.0  # a store that is down does not hold up the end
    text = _warned(record)
    journal = _only_journal(jdir)
    assert "***@127.0.0.1" in text and "s3cret" not in text and str(journal) in text
    assert "s3cret" not in journal.read_text()
    assert not run.mlflow.delivered

    runner = CliRunner()
    out = runner.invoke(main, ["sync", "--journal-dir", str(jdir)])
    assert "give --tracking-uri" in out.output  # the credentials were never written down
    out = runner.invoke(
        main, ["sync", "--journal-dir", str(jdir), "--tracking-uri", mlflow_server.uri]
    )
    assert out.exit_code == 0 and "sent" in out.output, out.output
    c = jr.read(journal)
    client = MlflowClient(mlflow_server.uri)
    r = client.get_run(c.run_id)
    assert r.info.status == "FINISHED" and r.data.tags["greenml.run_id"] == run.greenml_run_id
    assert r.info.start_time == c.start["wall_start_ms"]  # the run's own time, not sync's
    assert _points(client, c.run_id, "greenml/energy_kwh") == _journal_points(
        journal, "greenml/energy_kwh"
    )


def test_malformed_uri_warns_and_keeps_measuring(tmp_path):
    with (
        pytest.warns(GreenMLWarning, match="htp:/nowhere") as record,
        greenml.track(
            tracking_uri="htp:/nowhere",
            location="FR",
            log_to_mlflow=True,
            journal_dir=str(tmp_path),
        ) as run,
    ):
        time.sleep(0.05)
    assert run.footprint.duration_s > 0
    assert str(_only_journal(tmp_path)) in _warned(record)


def test_corrupt_journal_line_is_reported_and_the_rest_sent(mlflow_server, tmp_path):
    jdir = tmp_path / "journal"
    with greenml.track(
        tracking_uri=_closed_port_uri(),
        location="FR",
        log_interval_s=0.1,
        log_to_mlflow=True,
        journal_dir=str(jdir),
    ):
        time.sleep(0.35)
    journal = _only_journal(jdir)
    good = jr.read(journal)
    lines = journal.read_text().splitlines(keepends=True)
    lines.insert(2, '{"t":"metrics","ts":17,"st\n')  # a line torn by a crash
    journal.write_text("".join(lines))
    out = CliRunner().invoke(
        main, ["sync", "--journal-dir", str(jdir), "--tracking-uri", mlflow_server.uri]
    )
    assert out.exit_code == 0, out.output
    assert f"{journal.name}: line 3 skipped: not valid JSON" in out.output
    assert f"sent {len(good.records)} record(s)" in out.output
    c = jr.read(journal)
    assert c.unsent == []
    points = _points(MlflowClient(mlflow_server.uri), c.run_id, "greenml/duration_s")
    assert points == _journal_points(journal, "greenml/duration_s")


# -- the server goes away ---------------------------------------------------------------


def _logging_to(uri: str, jdir: Path, experiment: str, interval_s: float = 0.25) -> greenml.Tracker:
    return greenml.track(
        tracking_uri=uri,
        experiment=experiment,
        location="FR",
        log_interval_s=interval_s,
        log_to_mlflow=True,
        journal_dir=str(jdir),
    )


def test_server_stopped_and_restarted_mid_run_then_sync(private_mlflow_server, tmp_path, recwarn):
    srv = private_mlflow_server
    jdir = tmp_path / "journal"
    with _sim(), _logging_to(srv.uri, jdir, "restart") as run:
        time.sleep(0.6)
        srv.stop()
        time.sleep(0.8)  # points are written while it is away
        srv.restart()
        time.sleep(1.0)  # the backlog goes out when it is back
    # The outage is noticed at the next send (one refused connection), unless a request was
    # in flight as the server went: MLflow's client then retries it until the server is
    # back, with nothing to warn about. Either way the backlog arrives (below).
    said = _warned(recwarn)
    if "cannot be reached" in said:
        assert f"MLflow at {srv.uri} is back" in said
    journal = _only_journal(jdir)
    for _ in range(2):  # sync twice: nothing duplicated
        out = CliRunner().invoke(main, ["sync", "--journal-dir", str(jdir)])
        assert out.exit_code == 0, out.output
    client = MlflowClient(srv.uri)
    c = jr.read(journal)
    assert c.unsent == []
    for key in ("greenml/duration_s", "greenml/energy_kwh", "greenml/gpu_0/power_w"):
        got = _points(client, run.mlflow.run_id, key)
        assert got == _journal_points(journal, key), key  # nothing lost, nothing twice
    assert len(_points(client, run.mlflow.run_id, "greenml/duration_s")) >= 9
    assert client.get_run(run.mlflow.run_id).info.status == "FINISHED"


def test_server_away_at_the_end_then_sync(private_mlflow_server, tmp_path):
    srv = private_mlflow_server
    jdir = tmp_path / "journal"
    # one point at the start, then nothing until the end: no request is in flight when the
    # server stops (one that is would sit in MLflow's own retries; the end waits <= 15 s)
    with (
        pytest.warns(GreenMLWarning, match=r"1 record\(s\) of this run, its summary") as told,
        _sim(),
        _logging_to(srv.uri, jdir, "late", interval_s=30.0) as run,
    ):
        deadline = time.monotonic() + 30
        while not run.mlflow.delivered and time.monotonic() < deadline:
            time.sleep(0.05)
        assert run.mlflow.delivered
        srv.stop()
        time.sleep(0.5)
        t0 = time.monotonic()
    assert time.monotonic() - t0 < 3.0  # a store that refuses connections is not waited for
    said = _warned(told)
    assert f"not in MLflow ({srv.uri})" in said and "run `greenml sync` to send them" in said
    assert str(_only_journal(jdir)) in said
    srv.restart()
    out = CliRunner().invoke(main, ["sync", "--journal-dir", str(jdir)])
    assert out.exit_code == 0 and "sent" in out.output, out.output
    client = MlflowClient(srv.uri)
    r = client.get_run(run.mlflow.run_id)
    assert r.info.status == "FINISHED"
    assert r.data.metrics["greenml/energy_kwh"] == pytest.approx(run.footprint.energy_kwh)
    journal = _only_journal(jdir)
    assert _points(client, r.info.run_id, "greenml/energy_kwh") == _journal_points(
        journal, "greenml/energy_kwh"
    )
    out = CliRunner().invoke(main, ["sync", "--journal-dir", str(jdir)])
    assert "up to date" in out.output


# -- signals ----------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys, time
    import greenml
    from greenml.testing import SimGPU, SimulatedNVML, traces
    with SimulatedNVML([SimGPU(trace=traces.constant(400.0))]):
        with greenml.track(tracking_uri=sys.argv[1], journal_dir=sys.argv[2],
                           experiment=sys.argv[3], log_interval_s=float(sys.argv[4]),
                           location="FR", log_to_mlflow=True, journal=True) as run:
            print("started", flush=True)
            while True:
                time.sleep(0.02)
    """
)


def _child(uri: str, jdir: Path, experiment: str, interval_s: float) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, uri, str(jdir), experiment, str(interval_s)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "started", proc.stderr.read() if proc.stderr else ""
    return proc


def test_sigkill_loses_at_most_one_flush_interval(mlflow_server, tmp_path):
    interval = 0.5
    jdir = tmp_path / "journal"
    experiment = f"sigkill-{uuid.uuid4().hex[:8]}"
    # the child logs to a store that is down, so everything MLflow gets comes from sync
    proc = _child(_closed_port_uri(), jdir, experiment, interval)
    time.sleep(2.3)
    killed_ms = time.time() * 1000
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    proc.stderr.close()
    journal = _only_journal(jdir)
    c = jr.read(journal)
    assert c.summary is None and c.end is None
    last_ms = max(r["ts"] for r in c.records if r["t"] == "metrics")
    assert killed_ms - last_ms <= interval * 1000 + 150  # one interval, plus scheduling

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "greenml.cli",
            "sync",
            "--journal-dir",
            str(jdir),
            "--tracking-uri",
            mlflow_server.uri,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ended as KILLED" in out.stdout
    client = MlflowClient(mlflow_server.uri)
    c = jr.read(journal)
    r = client.get_run(c.run_id)
    assert r.info.status == "KILLED" and r.data.tags["greenml.status"] == "killed"
    assert r.info.end_time == last_ms
    got = _points(client, c.run_id, "greenml/duration_s")
    assert got == _journal_points(journal, "greenml/duration_s") and len(got) >= 4
    assert got[-1][1] == last_ms


def test_sigterm_writes_the_summary(mlflow_server, tmp_path):
    jdir = tmp_path / "journal"
    experiment = f"sigterm-{uuid.uuid4().hex[:8]}"
    proc = _child(mlflow_server.uri, jdir, experiment, 30.0)
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == -signal.SIGTERM  # it still dies of the signal
    proc.stdout.close()
    proc.stderr.close()
    c = jr.read(_only_journal(jdir))
    assert c.end["status"] == "KILLED" and c.unsent == []
    client = MlflowClient(mlflow_server.uri)
    r = client.get_run(c.run_id)
    assert r.info.status == "KILLED" and r.data.tags["greenml.status"] == "killed"
    assert r.data.metrics["greenml/duration_s"] >= 1.4
    assert r.data.metrics["greenml/gpu_0/power_w"] == pytest.approx(400.0, rel=0.02)
    arts = {a.path for a in client.list_artifacts(c.run_id, "greenml")}
    assert arts == {"greenml/footprint.json", "greenml/timeseries.csv"}


CHAINED = textwrap.dedent(
    """
    import signal, sys, time
    import greenml

    def users_handler(signum, frame):  # e.g. a trainer that checkpoints on SIGTERM
        print("user handler ran", flush=True)
        sys.exit(3)

    signal.signal(signal.SIGTERM, users_handler)
    with greenml.track(journal_dir=sys.argv[1], location="FR", log_to_mlflow=False,
                       journal=True, log_interval_s=0.2):
        print("started", flush=True)
        while True:
            time.sleep(0.02)
    """
)


def test_sigterm_hands_on_to_the_users_handler(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", CHAINED, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "started"
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 3  # the user's handler decided how the process ends
    assert "user handler ran" in proc.stdout.read()
    proc.stdout.close()
    c = jr.read(_only_journal(tmp_path))
    assert c.end["status"] == "KILLED" and c.summary["status"] == "KILLED"
    assert c.summary["metrics"]["greenml/duration_s"] >= 0.4
