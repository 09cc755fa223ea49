"""``greenml sync --prune`` and the default: delivered journals go, never one with anything
unsent, unreadable, local-only or still being written."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner
from history import journal_points, mlflow_points
from mlflow import MlflowClient

import greenml
from greenml.cli import main
from greenml.errors import GreenMLWarning
from greenml.schema import TAG_RUN_ID
from greenml.sinks import journal as jr
from greenml.sinks.sync import PRUNE_AFTER_DAYS, undelivered

pytestmark = pytest.mark.slow


def closed_port_uri() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def one_run(jdir: Path, uri: str, **kw) -> Path:
    before = set(jr.journal_files(jdir))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GreenMLWarning)
        with greenml.track(
            tracking_uri=uri,
            location="FR",
            log_interval_s=0.1,
            journal_dir=str(jdir),
            journal=True,
            environ={},
            **{"log_to_mlflow": True, **kw},
        ):
            time.sleep(0.2)
    (new,) = set(jr.journal_files(jdir)) - before
    return new


def sync(jdir: Path, *args: str, uri: str | None = None):
    extra = ["--tracking-uri", uri] if uri else []
    return CliRunner().invoke(main, ["sync", "--journal-dir", str(jdir), *extra, *args])


def age(path: Path, days: float) -> None:
    then = time.time() - days * 86400
    os.utime(path, (then, then))


@pytest.fixture
def journals(mlflow_server, tmp_path):
    """A delivered journal, one whose store was down (all unsent), and a local-only one."""
    jdir = tmp_path / "journal"
    delivered = one_run(jdir, mlflow_server.uri)
    waiting = one_run(jdir, closed_port_uri())
    local = one_run(jdir, mlflow_server.uri, log_to_mlflow=False)
    return jdir, delivered, waiting, local


def test_prune_removes_only_what_is_delivered(journals):
    jdir, delivered, waiting, local = journals
    assert undelivered(jr.read(delivered)) is None
    assert "not yet with mlflow" in undelivered(jr.read(waiting))
    assert "log_to_mlflow=False" in undelivered(jr.read(local))
    kept = {p: p.read_bytes() for p in (waiting, local)}
    out = sync(jdir, "--prune")
    assert out.exit_code == 1, out.output  # the waiting one's store is still down
    assert f"{delivered.name}: removed (fully delivered)" in out.output
    assert not delivered.exists()
    assert f"{waiting.name}: kept: " in out.output and f"{local.name}: kept: " in out.output
    for path, content in kept.items():
        assert path.read_bytes() == content  # untouched


def test_by_default_only_delivered_journals_older_than_the_limit_go(journals):
    jdir, delivered, waiting, local = journals
    for path in (waiting, local):
        age(path, PRUNE_AFTER_DAYS + 5)  # old, but not delivered: never removed
    out = sync(jdir)
    assert delivered.exists(), out.output  # delivered, but recent
    age(delivered, PRUNE_AFTER_DAYS + 1)
    out = sync(jdir)
    assert not delivered.exists(), out.output
    assert waiting.exists() and local.exists()


def test_keep_removes_nothing_and_contradicting_flags_are_an_error(journals):
    jdir, delivered, *_ = journals
    age(delivered, PRUNE_AFTER_DAYS + 1)
    sync(jdir, "--keep")
    assert delivered.exists()
    both = sync(jdir, "--prune", "--keep")
    assert both.exit_code == 2 and "--prune and --keep" in both.output


def test_a_journal_with_an_unreadable_line_or_no_end_is_kept(mlflow_server, tmp_path):
    jdir = tmp_path / "journal"
    torn = one_run(jdir, mlflow_server.uri)
    with open(torn, "a", encoding="utf-8") as f:
        f.write('{"t": "metrics", "seq": 99, "ts": 1')  # a line torn by a crash
    running = jdir / "still-running.jsonl"
    start = {
        "t": "start",
        "greenml_run_id": "x",
        "node": socket.gethostname(),
        "pid": os.getpid(),  # this process: still running
        "targets": ["mlflow"],
        "mlflow": True,
    }
    running.write_text(json.dumps(start) + "\n")
    out = sync(jdir, "--prune", uri=mlflow_server.uri)
    assert torn.exists() and running.exists(), out.output
    assert f"{torn.name}: kept: 1 line(s) could not be read" in out.output
    assert f"{running.name}: kept: its process (pid {os.getpid()}) is still running" in out.output


ENERGY = "greenml/energy_kwh"

RUN_INTO_SQLITE = """
import sys, time, warnings
import greenml
warnings.simplefilter("ignore")
with greenml.track(tracking_uri=sys.argv[1], location="FR", log_interval_s=0.1,
                   journal_dir=sys.argv[2], journal=True, environ={}):
    time.sleep(0.3)
"""


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "greenml.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_a_delivered_journal_whose_store_lost_the_run_is_sent_again_not_removed(tmp_path):
    """The journal's marks say what was sent, not that the store still has it: a store
    started afresh (its database deleted) gets every record again, into a new run, and the
    journal is removed only once the store holds it. Separate processes, as a user's: MLflow
    keeps a database open per process, which would still see the deleted file."""
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    jdir = tmp_path / "journal"
    subprocess.run(
        [sys.executable, "-c", RUN_INTO_SQLITE, uri, str(jdir)],
        cwd=tmp_path,
        check=True,
        timeout=180,
    )
    (journal,) = jr.journal_files(jdir)
    before = jr.read(journal)
    assert undelivered(before) is None and before.run_id is not None
    points = journal_points(journal, ENERGY)  # the journal goes with --prune, below
    db.unlink()  # the store starts afresh: the run and everything sent to it are gone

    out = _cli("sync", "--journal-dir", str(jdir), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    after = jr.read(journal)  # kept: delivered again, but recent
    assert after.run_id != before.run_id and undelivered(after) is None
    records = len(before.records)
    assert f"run {before.run_id} is not in {uri}: all {records} record(s)" in out.stdout
    assert f"{journal.name}: sent {records} record(s) to run {after.run_id}" in out.stdout
    again = _cli("sync", "--journal-dir", str(jdir), "--prune", cwd=tmp_path)
    assert f"{journal.name}: up to date ({records} record(s) already in MLflow)" in again.stdout
    assert f"{journal.name}: removed (fully delivered)" in again.stdout, again.stdout
    assert not journal.exists()

    client = MlflowClient(uri)  # this process never opened the deleted file
    run = client.get_run(after.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[TAG_RUN_ID] == before.greenml_run_id
    assert mlflow_points(client, after.run_id, ENERGY) == points and len(points) >= 2


def test_a_delivered_journal_is_kept_while_its_store_cannot_confirm_the_run(journals):
    jdir, delivered, *_ = journals
    run_id = jr.read(delivered).run_id
    down = closed_port_uri()
    out = sync(jdir, "--prune", uri=down)
    cannot = f"MLflow at {down} cannot be reached to confirm it has run {run_id}"
    assert f"{delivered.name}: up to date by its marks (" in out.output, out.output
    assert cannot in out.output
    assert f"{delivered.name}: kept: {cannot}" in out.output
    assert delivered.exists()
    out = sync(jdir, "--prune")  # its own store, which has the run
    assert f"{delivered.name}: removed (fully delivered)" in out.output, out.output
    assert not delivered.exists()
