"""``greenml sync`` against a store that is down (told at once, journals left as they were)
and against a journal whose summary shares its millisecond with a time-series point."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
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
from greenml.sinks import journal as jr

pytestmark = pytest.mark.slow

# Python's start, greenml's imports and one refused connection per store take well under a
# second; MLflow's own retries against a store that is down take minutes
DOWN_STORE_S = 15.0


def _closed_port_uri(user: str = "") -> str:
    with socket.socket() as s:  # free a moment ago; nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://{user}127.0.0.1:{port}"


def _journals_of_runs_while_the_store_was_down(jdir: Path, runs: int) -> dict[Path, bytes]:
    """``runs`` short runs logging to a store that is down: everything waits in their
    journals. Returns each journal's bytes."""
    for _ in range(runs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GreenMLWarning)  # the store is away: said, known
            with greenml.track(
                tracking_uri=_closed_port_uri(),
                location="FR",
                log_interval_s=0.1,
                log_to_mlflow=True,
                journal_dir=str(jdir),
            ):
                time.sleep(0.25)
    files = jr.journal_files(jdir)
    assert len(files) == runs and all(jr.read(p).unsent for p in files)
    return {p: p.read_bytes() for p in files}


def _assert_told_and_left_alone(output: str, journals: dict[Path, bytes]) -> None:
    assert "***@127.0.0.1" in output and "s3cret" not in output  # the store, redacted
    assert "cannot be reached" in output
    assert "run `greenml sync` again once the store is up" in output
    for path, content in journals.items():
        assert str(path) in output  # which journal waits
        assert path.read_bytes() == content  # byte for byte: nothing marked, nothing added


def test_sync_to_a_down_store_says_so_at_once_and_leaves_the_journals(plain_cwd, tmp_path):
    jdir = tmp_path / "journal"
    journals = _journals_of_runs_while_the_store_was_down(jdir, runs=2)
    down = _closed_port_uri(user="alice:s3cret@")
    t0 = time.monotonic()
    out = CliRunner().invoke(main, ["sync", "--journal-dir", str(jdir), "--tracking-uri", down])
    elapsed = time.monotonic() - t0
    assert elapsed < DOWN_STORE_S, f"{elapsed:.1f} s"
    assert out.exit_code == 1, out.output
    _assert_told_and_left_alone(out.output, journals)


def test_sync_command_to_a_down_store_exits_non_zero_within_seconds(plain_cwd, tmp_path):
    jdir = tmp_path / "journal"
    journals = _journals_of_runs_while_the_store_was_down(jdir, runs=1)
    down = _closed_port_uri(user="alice:s3cret@")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    command = [sys.executable, "-m", "greenml.cli", "sync", "--journal-dir", str(jdir)]
    t0 = time.monotonic()
    try:
        out = subprocess.run(
            [*command, "--tracking-uri", down],
            capture_output=True,
            text=True,
            timeout=4 * DOWN_STORE_S,
            check=False,
            env=env,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"greenml sync was still trying a store that is down after {e.timeout} s")
    elapsed = time.monotonic() - t0
    assert elapsed < DOWN_STORE_S, f"{elapsed:.1f} s"
    assert out.returncode == 1, out.stdout + out.stderr
    _assert_told_and_left_alone(out.stdout, journals)


def test_a_summary_sharing_a_points_millisecond_still_reaches_the_run(mlflow_server, tmp_path):
    """A journal written before the summary kept a millisecond of its own: its last point
    was taken as the run stopped, so it carries the end's step and time with figures a
    little short of the end's. Sync must send both (MLflow keeps points that differ in
    value), and the run's latest figures must be the summary's."""
    wall_ms = 1_700_000_000_000
    path = tmp_path / "journal" / "old.jsonl"
    j = jr.Journal(path)
    j.append(
        {
            "t": "start",
            "greenml_run_id": uuid.uuid4().hex,
            "node": "elsewhere",  # not this host: no check of its pid
            "pid": 1,
            "wall_start_ms": wall_ms,
            "mlflow": True,
            "tracking_uri": mlflow_server.uri,
            "credentials_redacted": False,
            "run_id": None,
            "owns_run": True,
            "experiment": f"old-{uuid.uuid4().hex[:8]}",
            "run_name": None,
        }
    )
    for ms, kwh in ((4, 0.0), (200, 6.0e-5), (400, 1.2e-4), (600, 1.66e-4)):
        j.append(
            {
                "t": "metrics",
                "ts": wall_ms + ms,
                "step": 0,
                "metrics": {"greenml/energy_kwh": kwh, "greenml/duration_s": ms / 1000},
            }
        )
    j.append(
        {
            "t": "summary",
            "ts": wall_ms + 600,  # the last point's millisecond
            "step": 0,
            "status": "FINISHED",
            "metrics": {"greenml/energy_kwh": 2.0e-4, "greenml/duration_s": 0.6},
            "params": {},
            "tags": {"greenml.status": "finished"},
            "footprint": {"energy_kwh": 2.0e-4},
            "csv": "elapsed_s,energy_kwh\n",
        }
    )
    j.append({"t": "end", "status": "FINISHED", "ts": wall_ms + 600})
    j.close()

    out = CliRunner().invoke(main, ["sync", "--journal-dir", str(path.parent)])
    assert out.exit_code == 0 and "sent 5 record(s)" in out.output, out.output
    c = jr.read(path)
    client = MlflowClient(mlflow_server.uri)
    got = sorted(
        (m.step, m.timestamp, m.value)
        for m in client.get_metric_history(c.run_id, "greenml/energy_kwh")
    )
    assert got == [
        (0, wall_ms + 4, 0.0),
        (0, wall_ms + 200, 6.0e-5),
        (0, wall_ms + 400, 1.2e-4),
        (0, wall_ms + 600, 1.66e-4),
        (0, wall_ms + 600, 2.0e-4),
    ]
    assert client.get_run(c.run_id).data.metrics["greenml/energy_kwh"] == 2.0e-4
