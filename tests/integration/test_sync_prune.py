"""``greenml sync --prune`` and the default: delivered journals go, never one with anything
unsent, unreadable, local-only or still being written."""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

import greenml
from greenml.cli import main
from greenml.errors import GreenMLWarning
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
