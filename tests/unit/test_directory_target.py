"""The directory sink alone: the files a run's records become, a replay that writes
nothing twice, and a folder that cannot be written counting as down (the journal keeps
the records). Then the recorder feeding it: per-target sent marks in the journal; and
``greenml sync`` writing what a blocked folder missed."""

from __future__ import annotations

import csv
import json

import pytest

from greenml import schema
from greenml.errors import GreenMLWarning
from greenml.footprint import Footprint
from greenml.sinks import journal as jr
from greenml.sinks.directory import DirectoryTarget
from greenml.sinks.recorder import Recorder
from greenml.sinks.sync import sync_file

START = {"greenml_run_id": "abc123", "node": "n1"}
WALL_MS = 1_700_000_000_000

# hand-written journal records: two points, the params, the summary
PARAMS = {
    "t": "params",
    "seq": 1,
    "params": {schema.PARAM_LOCATION: "FR", schema.PARAM_PUE: "1.2"},
    "tags": {schema.TAG_STATUS: "running", schema.TAG_RUN_ID: "abc123"},
}
POINTS = [
    {
        "t": "metrics",
        "seq": 2,
        "ts": WALL_MS,
        "step": 0,
        "metrics": {schema.METRIC_ENERGY_KWH: 0.0},
    },
    {
        "t": "metrics",
        "seq": 3,
        "ts": WALL_MS + 30_000,
        "step": 30,
        "metrics": {schema.METRIC_ENERGY_KWH: 0.0075, schema.METRIC_GPU_POWER_W: 750.0},
    },
]
SUMMARY = {
    "t": "summary",
    "seq": 4,
    "ts": WALL_MS + 31_000,
    "step": 31,
    "status": "FINISHED",
    "metrics": {schema.METRIC_ENERGY_KWH: 0.00775, schema.METRIC_DURATION_S: 31.0},
    "params": {schema.PARAM_LOCATION: "FR", schema.PARAM_PUE: "1.2", schema.PARAM_GPU_COUNT: "2"},
    "tags": {schema.TAG_STATUS: "finished", schema.TAG_RUN_ID: "abc123"},
    "footprint": {"energy_kwh": 0.00775, "duration_s": 31.0},
    "csv": "elapsed_s,energy_kwh\n0.000,0\n31.000,0.00775\n",
}
RECORDS = [PARAMS, *POINTS, SUMMARY]


def _fp(t: float) -> Footprint:
    kwh = 300.0 * t / 3.6e6  # 300 W of CPU, nothing else
    return Footprint(
        duration_s=t,
        energy_kwh=kwh,
        gpu_energy_kwh=0.0,
        cpu_energy_kwh=kwh,
        ram_energy_kwh=0.0,
    )


def _rows(run_dir) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_a_run_becomes_plain_files(tmp_path) -> None:
    target = DirectoryTarget(tmp_path / "sink")
    assert target.reachable()
    placed = target.ensure_run(START, search=False)
    run_dir = tmp_path / "sink" / "abc123"
    assert placed == {"run_id": "abc123", "path": str(run_dir)}
    for rec in RECORDS:
        assert target.send(rec, dedupe=False) == []
    assert _rows(run_dir) == [
        {"ts": str(WALL_MS), "step": "0", "name": "greenml/energy_kwh", "value": "0.0"},
        {
            "ts": str(WALL_MS + 30_000),
            "step": "30",
            "name": "greenml/energy_kwh",
            "value": "0.0075",
        },
        {
            "ts": str(WALL_MS + 30_000),
            "step": "30",
            "name": "greenml/gpu_power_w",
            "value": "750.0",
        },
        {
            "ts": str(WALL_MS + 31_000),
            "step": "31",
            "name": "greenml/energy_kwh",
            "value": "0.00775",
        },
        {"ts": str(WALL_MS + 31_000), "step": "31", "name": "greenml/duration_s", "value": "31.0"},
    ]
    assert json.loads((run_dir / "params.json").read_text()) == {
        "greenml.location": "FR",
        "greenml.pue": "1.2",
        "greenml.gpu_count": "2",
    }
    tags = json.loads((run_dir / "tags.json").read_text())
    assert tags == {"greenml.status": "finished", "greenml.run_id": "abc123"}
    assert json.loads((run_dir / "footprint.json").read_text()) == SUMMARY["footprint"]
    assert (run_dir / "timeseries.csv").read_text() == SUMMARY["csv"]
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "footprint.json",
        "metrics.csv",
        "params.json",
        "tags.json",
        "timeseries.csv",
    ]  # no temporary file left behind


def test_a_replay_writes_nothing_twice(tmp_path) -> None:
    first = DirectoryTarget(tmp_path)
    first.ensure_run(START, search=False)
    for rec in RECORDS[:3]:  # the run got as far as its second point
        first.send(rec, dedupe=False)
    run_dir = tmp_path / "abc123"
    before = _rows(run_dir)
    # a replay (sync, or a retry) by a fresh target: everything again, then the summary
    again = DirectoryTarget(tmp_path)
    again.ensure_run(START, search=True)
    for rec in RECORDS:
        again.send(rec, dedupe=True)
    rows = _rows(run_dir)
    assert rows[: len(before)] == before and len(rows) == len(before) + 2  # the summary's two
    for rec in RECORDS:
        again.send(rec, dedupe=True)  # and once more: nothing new
    assert _rows(run_dir) == rows


def test_a_folder_that_cannot_be_written_is_down(tmp_path) -> None:
    (tmp_path / "blocked").write_text("a file where the folder should be")
    target = DirectoryTarget(tmp_path / "blocked" / "sink")
    assert not target.reachable()
    assert target.unreachable_why == "its folder cannot be written"
    assert target.where == f"the directory sink at {tmp_path / 'blocked' / 'sink'}"


def test_the_recorder_marks_what_the_folder_has_under_its_name(tmp_path) -> None:
    path = tmp_path / "run.jsonl"
    rec = Recorder(
        snapshot=lambda: None,
        journal=jr.Journal(path),
        targets=[DirectoryTarget(tmp_path / "sink")],
        start=START,
        interval_s=30.0,
        wall_start_s=WALL_MS / 1000,
    )
    rec.tick(_fp(0.0))
    rec.tick(_fp(30.0))
    rec.finish(_fp(31.0), "FINISHED")  # no threads started: delivered here
    c = jr.read(path)
    seqs = {r["seq"] for r in c.records}
    assert c.sent_to == {"directory": seqs}  # every record, and nothing for MLflow
    assert c.sent == set() and len(c.unsent) == len(seqs)
    assert c.runs["directory"]["run_id"] == "abc123"
    run_dir = tmp_path / "sink" / "abc123"
    assert json.loads((run_dir / "footprint.json").read_text()) == c.summary["footprint"]
    assert rec.delivery("directory").delivered and rec.delivery("directory").uri == str(
        tmp_path / "sink"
    )
    assert rec.delivery().run_id is None  # no MLflow target: nothing to say about MLflow


def test_sent_lines_without_a_target_are_mlflows(tmp_path) -> None:
    path = tmp_path / "old.jsonl"
    path.write_text(
        '{"t":"start","greenml_run_id":"old"}\n'
        '{"t":"metrics","seq":1,"ts":1,"step":0,"metrics":{}}\n'
        '{"t":"metrics","seq":2,"ts":2,"step":1,"metrics":{}}\n'
        '{"t":"sent","seqs":[1]}\n'
        '{"t":"sent","target":"directory","seqs":[1,2]}\n'
    )
    c = jr.read(path)
    assert c.sent_to == {"mlflow": {1}, "directory": {1, 2}}
    assert [r["seq"] for r in c.unsent] == [2]
    assert c.unsent_to("directory") == []


def test_sync_writes_what_a_blocked_folder_missed(tmp_path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the folder should be")
    sink = blocked / "sink"
    path = tmp_path / "journal" / "run.jsonl"
    start = {
        **START,
        "node": "elsewhere",  # not this host: no check of its pid
        "pid": 1,
        "targets": ["directory"],
        "mlflow": False,
        "sink_dir": str(sink),
    }
    rec = Recorder(
        snapshot=lambda: None,
        journal=jr.Journal(path),
        targets=[DirectoryTarget(sink)],
        start=start,
        interval_s=30.0,
        wall_start_s=WALL_MS / 1000,
    )
    with pytest.warns(GreenMLWarning) as told:
        rec.tick(_fp(0.0))
        rec.finish(_fp(31.0), "FINISHED")
    said = "\n".join(str(w.message) for w in told)
    assert f"the directory sink at {sink} cannot be reached" in said
    assert f"not in the directory sink ({sink})" in said and str(path) in said
    c = jr.read(path)
    assert c.sent_to == {}

    blocked.unlink()  # the folder can be written again
    result = sync_file(path)
    assert result.folder_sent == len(c.records) and result.folder_error is None
    assert result.skipped is not None and "log_to_mlflow=False" in result.skipped  # MLflow: no
    c = jr.read(path)
    assert c.sent_to == {"directory": {r["seq"] for r in c.records}}
    assert json.loads((sink / "abc123" / "footprint.json").read_text()) == c.summary["footprint"]
    assert sync_file(path).folder_sent == 0  # nothing missing any more
