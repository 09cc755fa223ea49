"""Security faults against a real ``mlflow server``: credentials in the tracking URI and in
the environment must not land anywhere greenml writes (warnings, logs, the journal, the
directory sink, the MLflow run, the report in every format, ``greenml sync``'s output and
its errors), and ``greenml sync`` on journals with bad lines delivers the good ones.

The test server has no authentication: MLflow's client sends the URI's user and password
(and ``MLFLOW_TRACKING_*``) as an ``Authorization`` header that the server ignores, so the
credentialed URI works against it. A store that is down is a closed port; a store that
accepts connections but fails every request is a small HTTP server answering 502, as a
reverse proxy does when the MLflow behind it is down. MLflow's client is told not to retry
(``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0``) where it meets that 502, so the failure comes at
once rather than after its minutes of backoff.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import random
import socket
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner
from history import journal_points as _journal_points
from history import mlflow_points as _points
from mlflow import MlflowClient

import greenml
from greenml.cli import main
from greenml.errors import GreenMLWarning
from greenml.sinks import journal as jr
from greenml.testing import SimGPU, SimulatedNVML, traces

pytestmark = pytest.mark.slow

USER, PASSWORD = "usr-FROBOZZ-7", "pw-s3cr3t-PLUGH"
ENV_SECRETS = {
    "MLFLOW_TRACKING_TOKEN": "tok-XYZZY-123",
    "MLFLOW_TRACKING_USERNAME": "user-GRUE-456",
    "MLFLOW_TRACKING_PASSWORD": "pw-ZORKMID-789",
    "AWS_SECRET_ACCESS_KEY": "aws-FNORD-0ab1",
    "ACME_WAREHOUSE_API_KEY": "acme-QUUX-2c3d",  # a secret of the user's, unrelated to greenml
}
_BASIC = [  # what an Authorization: Basic header of either pair would carry
    base64.b64encode(f"{u}:{p}".encode()).decode()
    for u, p in (
        (USER, PASSWORD),
        (ENV_SECRETS["MLFLOW_TRACKING_USERNAME"], ENV_SECRETS["MLFLOW_TRACKING_PASSWORD"]),
    )
]
SECRETS = (USER, PASSWORD, *ENV_SECRETS.values(), *_BASIC)


def _with_credentials(port: int) -> str:
    return f"http://{USER}:{PASSWORD}@127.0.0.1:{port}"


def _redacted(port: int) -> str:
    return f"http://***@127.0.0.1:{port}"


def _closed_port() -> int:
    with socket.socket() as s:  # free a moment ago; nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def leaks(places: Mapping[str, str | bytes]) -> list[str]:
    """``place: secret`` for each secret found in each place's text."""
    out = []
    for place, text in places.items():
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        out += [f"{place}: {secret!r}" for secret in SECRETS if secret in text]
    return out


def files_in(folder: Path, label: str) -> dict[str, bytes]:
    """Every file under ``folder``, by ``label/relative path``."""
    return {
        f"{label}/{p.relative_to(folder)}": p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def secrets_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV_SECRETS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def no_view_run_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's client prints "View run ... at: <URI>" with the URI's user and password when
    a run is ended; that leak has tests of its own (below). Here it is switched off, so the
    other places are checked on their own."""
    monkeypatch.setenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def _sim() -> SimulatedNVML:
    return SimulatedNVML([SimGPU(trace=traces.constant(300.0))])


def _track(uri: str, jdir: Path, experiment: str, **kw: object) -> greenml.Tracker:
    return greenml.track(
        tracking_uri=uri,
        experiment=experiment,
        location="FR",
        log_interval_s=0.1,
        log_to_mlflow=True,
        journal=True,
        journal_dir=str(jdir),
        **kw,
    )


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """greenml's warnings off, where a test does not look at them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GreenMLWarning)
        yield


def _warnings(record: pytest.WarningsRecorder) -> str:
    return "\n".join(f"{w.category.__name__}: {w.message}" for w in record)


def _greenml_warnings(record: pytest.WarningsRecorder) -> str:
    return "\n".join(str(w.message) for w in record if issubclass(w.category, GreenMLWarning))


def _sync_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``greenml sync`` as the user runs it: a child process, with this environment (the
    secrets included)."""
    return subprocess.run(
        [sys.executable, "-m", "greenml.cli", "sync", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _report(*args: str) -> object:
    return CliRunner().invoke(main, ["report", *args])


def _sync(jdir: Path, uri: str) -> object:
    """``greenml sync`` in this process (faster than a child: MLflow is imported already)."""
    return CliRunner().invoke(main, ["sync", "--journal-dir", str(jdir), "--tracking-uri", uri])


def _only_journal(folder: Path) -> Path:
    files = jr.journal_files(folder)
    assert len(files) == 1, files
    return files[0]


# -- 1. no credential leaks ---------------------------------------------------------------------


def test_credentials_reach_nothing_greenml_writes_from_a_live_run_and_its_report(
    mlflow_server, tmp_path, secrets_in_env, no_view_run_lines, caplog, capfd, recwarn
):
    """A run logging through ``http://user:password@host`` with the directory sink on, then
    the report of its experiment in html, md, csv and json and its model card."""
    caplog.set_level(logging.DEBUG)  # every logger, MLflow's and urllib3's included
    uri = _with_credentials(mlflow_server.port)
    experiment = f"sec-live-{uuid.uuid4().hex[:8]}"
    jdir, sink = tmp_path / "journal", tmp_path / "sink"
    with _sim(), _track(uri, jdir, experiment, run_name="sec-live", sink_dir=str(sink)) as run:
        time.sleep(0.6)
    where = run.mlflow
    assert where.delivered and where.run_id, "the credentialed URI works against the server"
    assert where.uri == _redacted(mlflow_server.port)
    client = MlflowClient(mlflow_server.uri)
    r = client.get_run(where.run_id)
    assert r.info.status == "FINISHED" and r.data.tags["greenml.status"] == "finished"
    art = Path(client.download_artifacts(r.info.run_id, "", str(tmp_path / "art")))
    artifacts = files_in(art, "artifact")
    assert {"artifact/greenml/footprint.json", "artifact/greenml/timeseries.csv"} <= set(artifacts)
    sink_files = files_in(sink, "sink")
    assert any(k.endswith("/footprint.json") for k in sink_files), sorted(sink_files)
    journal = _only_journal(jdir)
    start = jr.read(journal).start
    assert start["tracking_uri"] == _redacted(mlflow_server.port) and start["credentials_redacted"]

    places: dict[str, str | bytes] = {
        "run name": r.info.run_name,
        "experiment": client.get_experiment(r.info.experiment_id).name,
        "params": json.dumps(r.data.params),
        "tags": json.dumps(r.data.tags),
        "metric keys": json.dumps(sorted(r.data.metrics)),
        "footprint": json.dumps(run.footprint.to_dict(), default=str),
        f"journal {journal.name}": journal.read_bytes(),
        **artifacts,
        **sink_files,
    }
    for fmt in ("html", "md", "csv", "json"):
        out = _report("--tracking-uri", uri, "--experiment", experiment, "--format", fmt, "-o", "-")
        assert out.exit_code == 0, out.output
        assert r.info.run_id in out.stdout, (fmt, out.output[-2000:])  # the run is reported
        places[f"report --format {fmt}"] = out.output
        if fmt == "json":
            header = json.loads(out.stdout)["header"]
            assert header["tracking_uri"] == _redacted(mlflow_server.port), header
    card = _report("--model-card", r.info.run_id, "--tracking-uri", uri)
    assert card.exit_code == 0 and "co2_eq_emissions" in card.output, card.output
    places["report --model-card"] = card.output
    unknown = _report("--model-card", "f" * 32, "--tracking-uri", uri)
    assert unknown.exit_code != 0 and _redacted(mlflow_server.port) in unknown.output, (
        unknown.output
    )
    places["report --model-card <unknown run>"] = unknown.output

    captured = capfd.readouterr()
    places |= {
        "warnings": _warnings(recwarn),
        "log records": caplog.text,
        "stdout": captured.out,
        "stderr": captured.err,
    }
    assert leaks(places) == []


def test_credentials_reach_nothing_when_the_store_is_down_and_sync_sends_later(
    mlflow_server, tmp_path, secrets_in_env, no_view_run_lines, caplog, capfd, recwarn
):
    """The store is down for the whole run (a closed port, with user and password): the
    warning, the journal, `greenml sync` (without a URI, with the down one, with the live
    one) and `greenml report` against the down store name no secret."""
    caplog.set_level(logging.DEBUG)
    port = _closed_port()
    down = _with_credentials(port)
    experiment = f"sec-down-{uuid.uuid4().hex[:8]}"
    jdir = tmp_path / "journal"
    with _sim(), _track(down, jdir, experiment, run_name="sec-down") as run:
        time.sleep(0.4)
    assert not run.mlflow.delivered
    warned = _greenml_warnings(recwarn)
    journal = _only_journal(jdir)
    assert "cannot be reached" in warned and _redacted(port) in warned, warned
    assert str(journal) in warned, warned
    before = journal.read_bytes()

    no_uri = _sync_cli("--journal-dir", str(jdir))
    assert "give --tracking-uri" in no_uri.stdout, no_uri.stdout + no_uri.stderr
    to_down = _sync_cli("--journal-dir", str(jdir), "--tracking-uri", down)
    assert to_down.returncode == 1, to_down.stdout + to_down.stderr
    assert f"not sent: MLflow at {_redacted(port)} cannot be reached" in to_down.stdout, (
        to_down.stdout
    )
    assert journal.read_bytes() == before  # nothing was sent: left byte for byte
    report_down = _report("--tracking-uri", down, "--format", "json", "-o", "-")
    assert report_down.exit_code != 0, report_down.output
    assert f"the tracking store {_redacted(port)} does not accept" in report_down.output, (
        report_down.output
    )

    live = _sync_cli(
        "--journal-dir", str(jdir), "--tracking-uri", _with_credentials(mlflow_server.port)
    )
    assert live.returncode == 0, live.stdout + live.stderr
    c = jr.read(journal)
    assert c.unsent == [] and c.run_id
    assert (
        f"sent {len(c.records)} record(s) to run {c.run_id} at {_redacted(mlflow_server.port)}"
        in live.stdout
    ), live.stdout
    client = MlflowClient(mlflow_server.uri)
    r = client.get_run(c.run_id)
    assert r.info.status == "FINISHED" and r.info.run_name == "sec-down"

    captured = capfd.readouterr()
    places: dict[str, str | bytes] = {
        "warnings": _warnings(recwarn),
        "log records": caplog.text,
        "stdout": captured.out,
        "stderr": captured.err,
        f"journal {journal.name}": journal.read_bytes(),
        "sync without --tracking-uri": no_uri.stdout + no_uri.stderr,
        "sync to the down store": to_down.stdout + to_down.stderr,
        "sync to the live store": live.stdout + live.stderr,
        "report against the down store": report_down.output,
        "synced run's params": json.dumps(r.data.params),
        "synced run's tags": json.dumps(r.data.tags),
    }
    assert leaks(places) == []


@pytest.fixture
def unsent_journal(tmp_path: Path) -> Path:
    """A journal folder holding one credentialed run that never reached its store."""
    jdir = tmp_path / "journal"
    with quiet(), _sim(), _track(_with_credentials(_closed_port()), jdir, "sec-unsent"):
        time.sleep(0.3)
    return jdir


def test_ending_a_credentialed_run_prints_no_credentials(
    mlflow_server, tmp_path, secrets_in_env, capfd
):
    uri = _with_credentials(mlflow_server.port)
    jdir = tmp_path / "journal"
    with quiet(), _sim(), _track(uri, jdir, "sec-stdout", run_name="sec-stdout") as run:
        time.sleep(0.3)
    assert run.mlflow.delivered
    captured = capfd.readouterr()
    # MLflow's "View run ... at: <url>" line would carry the URL's credentials: greenml's
    # client does not print it for such a URI
    assert "View run sec-stdout" not in captured.out, captured.out
    assert leaks({"stdout": captured.out, "stderr": captured.err}) == [], captured.out


def test_sync_that_ends_a_run_prints_no_credentials(mlflow_server, secrets_in_env, unsent_journal):
    out = _sync(unsent_journal, _with_credentials(mlflow_server.port))
    assert out.exit_code == 0, out.output
    assert "record(s) to run" in out.output and _redacted(mlflow_server.port) in out.output
    assert leaks({"sync output": out.output}) == [], out.output


# -- a store that takes connections and fails every request (a proxy answering 502) -------------

GATEWAY = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class BadGateway(BaseHTTPRequestHandler):
    def reply(self):
        size = int(self.headers.get("Content-Length") or 0)
        if size:
            self.rfile.read(size)
        body = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
        self.send_response(502)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = reply

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), BadGateway)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@pytest.fixture(scope="module")
def bad_gateway() -> Iterator[int]:
    """The port of a real HTTP server (a child process) that answers 502 to everything."""
    proc = subprocess.Popen(
        [sys.executable, "-c", GATEWAY], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def no_mlflow_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")


def test_warning_for_a_store_answering_502_names_no_credentials(
    bad_gateway, no_mlflow_retries, secrets_in_env, tmp_path, recwarn
):
    t0 = time.monotonic()
    jdir = tmp_path / "journal"
    with _sim(), _track(_with_credentials(bad_gateway), jdir, "sec-502") as run:
        time.sleep(0.3)
    assert time.monotonic() - t0 < 10.0  # a failing store does not hold up the run
    assert not run.mlflow.delivered
    warned = _greenml_warnings(recwarn)
    assert f"MLflow at {_redacted(bad_gateway)} cannot be reached" in warned, warned
    journal = _only_journal(jdir)
    assert leaks({f"journal {journal.name}": journal.read_bytes()}) == []
    assert leaks({"warnings": _warnings(recwarn)}) == [], warned


def test_sync_error_for_a_store_answering_502_names_no_credentials(
    bad_gateway, no_mlflow_retries, secrets_in_env, unsent_journal
):
    journal = _only_journal(unsent_journal)
    before = journal.read_bytes()
    out = _sync(unsent_journal, _with_credentials(bad_gateway))
    said = out.output
    assert out.exit_code == 1, said
    assert f"{journal.name}: FAILED after 0 record(s) to {_redacted(bad_gateway)}" in said, said
    assert journal.read_bytes() == before
    assert leaks({"sync output": said}) == [], said


def test_report_error_for_a_store_answering_502_names_no_credentials(
    bad_gateway, no_mlflow_retries, secrets_in_env
):
    out = _report("--tracking-uri", _with_credentials(bad_gateway), "--format", "csv", "-o", "-")
    assert out.exit_code != 0, out.output
    assert f"cannot read the experiments of {_redacted(bad_gateway)}" in out.output, out.output
    assert leaks({"report error": out.output}) == [], out.output


def test_model_card_error_for_a_store_answering_502_names_no_credentials(
    bad_gateway, no_mlflow_retries, secrets_in_env
):
    out = _report("--model-card", "e" * 32, "--tracking-uri", _with_credentials(bad_gateway))
    assert out.exit_code != 0, out.output
    assert f"is not in the tracking store {_redacted(bad_gateway)}" in out.output, out.output
    assert leaks({"model card error": out.output}) == [], out.output


# -- 5. sync and bad journal lines -----------------------------------------------------------------


def _down_run_journal(jdir: Path, experiment: str) -> Path:
    """A journal whose run never reached its store (its warnings are test_mlflow's)."""
    with quiet(), _sim(), _track(f"http://127.0.0.1:{_closed_port()}", jdir, experiment):
        time.sleep(0.35)
    return _only_journal(jdir)


def test_sync_skips_each_kind_of_bad_line_by_number_and_sends_the_rest(mlflow_server, tmp_path):
    """Extends test_mlflow's torn line: binary garbage (NUL, invalid UTF-8), seeded random
    bytes, JSON that is not a record, and a record without its sequence number, between good
    lines. Each is reported by its number; every good record reaches MLflow; sync only
    appends to the file."""
    seed = 20260414
    rng = random.Random(seed)
    jdir = tmp_path / "journal"
    journal = _down_run_journal(jdir, f"sec-bad-lines-{seed}")
    good = journal.read_bytes().splitlines(keepends=True)
    records = sum(json.loads(x)["t"] in ("metrics", "params", "summary") for x in good)
    assert len(good) >= 6 and records >= 4, good
    noise = rng.randbytes(48).replace(b"\n", b"").replace(b"\r", b"") + b"\n"
    bad = {  # line number in the new file -> the bad line
        2: b"\x00\xff\xfe\x80 not utf-8 \xc3\x28\n",  # right after the start record
        4: noise,
        5: b"[1, 2, 3]\n",
        7: b'{"t": "metrics", "ts": 5, "step": 0, "metrics": {"greenml/energy_kwh": 9.0}}\n',
    }
    lines = list(good)
    for number in sorted(bad):
        lines.insert(number - 1, bad[number])
    corrupted = b"".join(lines)
    journal.write_bytes(corrupted)

    out = _sync(jdir, mlflow_server.uri)
    assert out.exit_code == 0, (seed, out.output)
    skipped = [line for line in out.output.splitlines() if " skipped: " in line]
    assert [line.split(":")[1] for line in skipped] == [
        f" line {n} skipped" for n in sorted(bad)
    ], (
        seed,
        out.output,
    )
    assert f"{journal.name}: line 5 skipped: not a journal record" in out.output
    assert f"{journal.name}: line 7 skipped: not a journal record" in out.output
    assert f"sent {records} record(s)" in out.output, (seed, out.output)
    after = journal.read_bytes()
    assert after.startswith(corrupted), f"seed {seed}: sync rewrote the lines it skipped"
    c = jr.read(journal)
    assert c.unsent == [] and [n for n, _ in c.bad_lines] == sorted(bad), (seed, c.bad_lines)
    client = MlflowClient(mlflow_server.uri)
    assert client.get_run(c.run_id).info.status == "FINISHED"
    for key in ("greenml/energy_kwh", "greenml/duration_s"):
        assert _points(client, c.run_id, key) == _journal_points(journal, key), (seed, key)
    assert 9.0 not in {v for _, _, v in _points(client, c.run_id, "greenml/energy_kwh")}

    again = _sync(jdir, mlflow_server.uri)
    assert again.exit_code == 0 and f"{journal.name}: up to date" in again.output, again.output
    assert _points(client, c.run_id, "greenml/energy_kwh") == _journal_points(
        journal, "greenml/energy_kwh"
    )


def test_sync_resends_what_a_corrupt_sent_line_marked_without_duplicates(mlflow_server, tmp_path):
    """A run delivered live, then one of its ``sent`` lines destroyed: sync sends those
    records again, and MLflow, which has them, gets no second copy of any point."""
    seed = 7
    jdir = tmp_path / "journal"
    with quiet(), _sim(), _track(mlflow_server.uri, jdir, f"sec-sent-{seed}") as run:
        time.sleep(0.5)
    assert run.mlflow.delivered
    journal = _only_journal(jdir)
    lines = journal.read_bytes().splitlines(keepends=True)
    sent_at = [i for i, x in enumerate(lines) if json.loads(x)["t"] == "sent"]
    assert sent_at, lines
    i = sent_at[0]
    lost = json.loads(lines[i])["seqs"]
    lines[i] = random.Random(seed).randbytes(len(lines[i]) - 1).replace(b"\n", b"?") + b"\n"
    journal.write_bytes(b"".join(lines))
    client = MlflowClient(mlflow_server.uri)
    keys = [k for k in client.get_run(run.mlflow.run_id).data.metrics if k.startswith("greenml/")]
    before = {k: _points(client, run.mlflow.run_id, k) for k in keys}

    out = _sync(jdir, mlflow_server.uri)
    assert out.exit_code == 0, (seed, out.output)
    assert f"{journal.name}: line {i + 1} skipped" in out.output, (seed, out.output)
    assert f"sent {len(lost)} record(s) to run {run.mlflow.run_id}" in out.output, (
        seed,
        lost,
        out.output,
    )
    after = {k: _points(client, run.mlflow.run_id, k) for k in keys}
    assert after == before, f"seed {seed}: a resent point was logged twice"


def test_sync_after_a_torn_last_line_keeps_its_own_records_readable(mlflow_server, tmp_path):
    jdir = tmp_path / "journal"
    journal = _down_run_journal(jdir, "sec-torn-tail")
    data = journal.read_bytes()
    last = data.rstrip(b"\n").rsplit(b"\n", 1)[1]  # the end record, torn in half by a crash
    torn = data[: len(data) - len(last) - 1] + last[: len(last) // 2]
    journal.write_bytes(torn)
    number = torn.count(b"\n") + 1  # the torn line's number

    out = _sync(jdir, mlflow_server.uri)
    assert out.exit_code == 0 and f"line {number} skipped" in out.output, out.output
    c = jr.read(journal)
    assert c.unsent == [] and c.summary is not None
    run_id = out.output.split(" to run ")[1].split()[0]
    assert journal.read_bytes().startswith(torn)
    assert [n for n, _ in c.bad_lines] == [number], c.bad_lines  # only the torn one
    assert c.run_id == run_id


def test_sync_names_an_unparseable_journal_and_still_sends_the_good_one(mlflow_server, tmp_path):
    """A folder with binary garbage and a journal whose start line is lost next to a good
    journal: the good one is delivered, the other two are named and left byte for byte.
    (Its exit status: tests/unit/test_fault_security.py.)"""
    seed = 99
    jdir = tmp_path / "journal"
    journal = _down_run_journal(jdir, f"sec-mixed-{seed}")
    garbage = b"\x00\xff" + random.Random(seed).randbytes(3000)
    headless = b"\x1b[2J not json\n" + b"".join(journal.read_bytes().splitlines(keepends=True)[1:])
    (jdir / "garbage.jsonl").write_bytes(garbage)
    (jdir / "headless.jsonl").write_bytes(headless)

    out = _sync(jdir, mlflow_server.uri)
    assert "garbage.jsonl: refused: no start record" in out.output, (seed, out.output)
    assert "headless.jsonl: line 1 skipped: not valid JSON" in out.output, out.output
    assert "headless.jsonl: refused: no start record" in out.output, out.output
    assert "\x1b" not in out.output  # the bad line's bytes are not echoed to the terminal
    c = jr.read(journal)
    assert f"{journal.name}: sent {len(c.records)} record(s) to run {c.run_id}" in out.output
    assert c.unsent == []
    assert (jdir / "garbage.jsonl").read_bytes() == garbage, f"seed {seed}"
    assert (jdir / "headless.jsonl").read_bytes() == headless
    assert MlflowClient(mlflow_server.uri).get_run(c.run_id).info.status == "FINISHED"
