"""The directory sink end to end: a tracked run written as plain files (no MLflow), then
``greenml sync --include-local`` into a real MLflow server; and a run with both sinks while
MLflow is down: the folder gets everything at once, MLflow's records wait in the journal
under their own sent marks until sync delivers them."""

from __future__ import annotations

import csv
import json
import socket
import time
import uuid
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

import greenml
from greenml.cli import main
from greenml.errors import GreenMLWarning
from greenml.footprint import Footprint
from greenml.sinks import journal as jr
from greenml.testing import SimGPU, SimulatedNVML, traces

pytestmark = pytest.mark.slow

FIGURES = ("energy_kwh", "co2e_kg", "duration_s", "gpu_energy_kwh", "cpu_energy_kwh")


def _sim() -> SimulatedNVML:
    return SimulatedNVML(
        [SimGPU(trace=traces.constant(300.0)), SimGPU(trace=traces.constant(450.0))]
    )


def _closed_port_uri() -> str:
    with socket.socket() as s:  # free a moment ago; nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _latest(run_dir: Path) -> dict[str, float]:
    """Each metric's value in its latest row of metrics.csv (the summary's)."""
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows, "no metric rows"
    latest: dict[str, tuple[int, float]] = {}
    for r in rows:
        key = (int(r["ts"]), float(r["value"]))
        if r["name"] not in latest or key[0] >= latest[r["name"]][0]:
            latest[r["name"]] = key
    return {name: value for name, (_, value) in latest.items()}


def _assert_folder_holds(run_dir: Path, fp: Footprint, gid: str) -> None:
    latest = _latest(run_dir)
    for figure in FIGURES:
        assert latest[f"greenml/{figure}"] == pytest.approx(getattr(fp, figure), rel=1e-12)
    doc = json.loads((run_dir / "footprint.json").read_text())
    assert doc["greenml_run_id"] == gid
    assert Footprint.from_dict(doc) == fp  # the footprint itself, every figure and factor
    tags = json.loads((run_dir / "tags.json").read_text())
    assert tags["greenml.status"] == "finished" and tags["greenml.run_id"] == gid
    params = json.loads((run_dir / "params.json").read_text())
    assert params["greenml.location"] == "FR" and params["greenml.gpu_count"] == "2"
    rows = list(csv.DictReader((run_dir / "timeseries.csv").read_text().splitlines()))
    assert float(rows[-1]["energy_kwh"]) == pytest.approx(fp.energy_kwh, rel=1e-6)


def _assert_mlflow_holds(client: MlflowClient, run_id: str, fp: Footprint, tmp: Path) -> None:
    r = client.get_run(run_id)
    assert r.info.status == "FINISHED"
    for figure in FIGURES:
        assert r.data.metrics[f"greenml/{figure}"] == pytest.approx(getattr(fp, figure), rel=1e-12)
    path = client.download_artifacts(run_id, "greenml/footprint.json", str(tmp))
    assert Footprint.from_dict(json.loads(Path(path).read_text())) == fp


def test_a_run_with_only_the_directory_sink_then_sync_into_mlflow(mlflow_server, tmp_path):
    jdir, sink = tmp_path / "journal", tmp_path / "sink"
    with (
        _sim(),
        greenml.track(
            location="FR",
            log_to_mlflow=False,
            sink_dir=str(sink),
            journal=True,
            journal_dir=str(jdir),
            experiment=f"dir-{uuid.uuid4().hex[:8]}",
            log_interval_s=0.2,
        ) as run,
    ):
        time.sleep(0.7)
    fp, gid = run.footprint, run.greenml_run_id
    assert run.mlflow.run_id is None and not run.mlflow.delivered  # MLflow is not a sink
    _assert_folder_holds(sink / gid, fp, gid)

    (journal,) = jr.journal_files(jdir)
    c = jr.read(journal)
    assert c.start["targets"] == ["directory"] and c.start["sink_dir"] == str(sink)
    assert c.sent_to == {"directory": {r["seq"] for r in c.records}}

    # without --include-local the run is left alone, as a log_to_mlflow=False run always was
    out = CliRunner().invoke(main, ["sync", "--journal-dir", str(jdir)])
    assert out.exit_code == 0 and "log_to_mlflow=False" in out.output, out.output
    args = ["sync", "--journal-dir", str(jdir), "--tracking-uri", mlflow_server.uri]
    out = CliRunner().invoke(main, [*args, "--include-local"])
    assert out.exit_code == 0 and f"sent {len(c.records)} record(s)" in out.output, out.output
    c = jr.read(journal)
    assert c.unsent == [] and c.run_id is not None
    _assert_mlflow_holds(MlflowClient(mlflow_server.uri), c.run_id, fp, tmp_path / "art")
    out = CliRunner().invoke(main, [*args, "--include-local"])
    assert out.exit_code == 0 and "up to date" in out.output, out.output


def test_mlflow_down_the_folder_gets_everything_and_sync_delivers_the_rest(mlflow_server, tmp_path):
    jdir, sink = tmp_path / "journal", tmp_path / "sink"
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always", GreenMLWarning)
        with (
            _sim(),
            greenml.track(
                location="FR",
                tracking_uri=_closed_port_uri(),
                log_to_mlflow=True,
                sink_dir=str(sink),
                journal=True,
                journal_dir=str(jdir),
                experiment=f"both-{uuid.uuid4().hex[:8]}",
                log_interval_s=0.2,
            ) as run,
        ):
            time.sleep(0.7)
    told = "\n".join(str(w.message) for w in said if issubclass(w.category, GreenMLWarning))
    assert "MLflow at http://127.0.0.1" in told and "cannot be reached" in told
    assert "directory sink" not in told  # the folder was never away
    fp, gid = run.footprint, run.greenml_run_id
    assert not run.mlflow.delivered
    _assert_folder_holds(sink / gid, fp, gid)

    (journal,) = jr.journal_files(jdir)
    c = jr.read(journal)
    seqs = {r["seq"] for r in c.records}
    assert c.start["targets"] == ["mlflow", "directory"]
    assert c.sent_to == {"directory": seqs}  # MLflow has nothing yet
    assert {r["seq"] for r in c.unsent} == seqs

    args = ["sync", "--journal-dir", str(jdir), "--tracking-uri", mlflow_server.uri]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0 and f"sent {len(seqs)} record(s)" in out.output, out.output
    c = jr.read(journal)
    assert c.sent_to == {"directory": seqs, "mlflow": seqs}
    assert c.runs["mlflow"]["by"] == "sync" and c.runs["directory"]["run_id"] == gid
    _assert_mlflow_holds(MlflowClient(mlflow_server.uri), c.run_id, fp, tmp_path / "art")
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0 and "up to date" in out.output, out.output
