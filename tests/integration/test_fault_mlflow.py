"""Faults of the MLflow tracking server while greenml logs to it, against real ``mlflow
server`` processes (and, for slow and failing answers, the reverse proxy in
``faultproxy.py`` in front of one).

Each case runs a training loop of its own inside ``greenml.track`` with two simulated GPUs
(300 W and 450 W), and checks that:

- the loop never sees an exception from greenml, and its step time stays bounded: every
  step (``time.sleep(0.005)`` + ``run.step(samples=32)``, normally 5-6 ms) takes less than
  ``STEP_BOUND_S`` = 0.5 s. That is 100 times a normal step, room for a loaded 2-core
  machine, and a quarter of the MLflow client's timeout (``CLIENT_TIMEOUT_S`` = 2 s, set
  through ``MLFLOW_HTTP_REQUEST_TIMEOUT``) and of the 2 s a failing call takes with the
  client's retries in case 4: a loop that waited once on the network would fail it;
- the journal kept a point every ``log_interval_s`` through the fault (no gap of
  ``POINT_GAP_BOUND_S`` = 1 s, half the client's timeout, when the grid is 0.2 s);
- afterwards, with the server healthy, ``greenml sync`` leaves every journal record in the
  run exactly once: each metric's history is the journal's points (step, timestamp,
  value), no more, no fewer, no (key, step, timestamp) twice; the params and greenml tags
  are the journal's, the artifacts are the summary's; a second sync changes nothing.

The fault times are drawn from ``random.Random(SEED)`` (``GREENML_FAULT_SEED``, default 14),
which every assertion message names.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import random
import signal
import statistics
import sys
import threading
import time
import uuid
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from history import mlflow_points as _points
from mlflow import MlflowClient
from mlflow.entities import ViewType

import greenml
from greenml.cli import main
from greenml.errors import GreenMLWarning
from greenml.sinks import journal as jr
from greenml.testing import SimGPU, SimulatedNVML, traces


def _sibling(name: str) -> Any:
    """A module next to this file, by path: the tests are no package, and ``conftest`` is
    not a name to import (tests/ has two)."""
    qualified = f"_greenml_fault_tests_{name}"
    if qualified not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            qualified, Path(__file__).with_name(f"{name}.py")
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[qualified] = module
        spec.loader.exec_module(module)
    return sys.modules[qualified]


_conftest = _sibling("conftest")
MlflowServer = _conftest.MlflowServer
_free_port = _conftest._free_port
FaultProxy = _sibling("faultproxy").FaultProxy

pytestmark = [
    pytest.mark.slow,
    # an exception in one of greenml's threads fails the test, as one in the loop would
    pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning"),
]

SEED = int(os.environ.get("GREENML_FAULT_SEED", "14"))
CLIENT_TIMEOUT_S = 2  # MLFLOW_HTTP_REQUEST_TIMEOUT (MLflow reads it as a whole number)
STEP_BOUND_S = 0.5  # see the module's docstring
LOG_INTERVAL_S = 0.2
POINT_GAP_BOUND_S = 1.0
STEP_SLEEP_S = 0.005
SAMPLES = 32  # per step
GPU_W = (300.0, 450.0)
LOOP_CAP_S = 90.0  # a loop waiting for a condition gives up (and fails) after this
# the end of a run waits at most 15 s for MLflow to take the summary (FINAL_TIMEOUT_S); a
# store that refuses connections is given up on at once
QUICK_END_S = 5.0


def _seed(text: str = "") -> str:
    return f"[GREENML_FAULT_SEED={SEED}] {text}"


_CLIENT_ENV = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": str(CLIENT_TIMEOUT_S),
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
}


@pytest.fixture(autouse=True)
def _client(plain_cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's client with a short timeout and no retries of its own (a request in flight
    when the server goes away fails at once, not after minutes of backoff)."""
    for name, value in _CLIENT_ENV.items():
        monkeypatch.setenv(name, value)


# -- the training loop ------------------------------------------------------------------


@dataclass
class Loop:
    """What the training loop saw: its steps' durations and its wall time."""

    times: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    capped: bool = False
    fired: list[tuple[str, float]] = field(default_factory=list)  # (event, elapsed s)

    @property
    def steps(self) -> int:
        return len(self.times)


Event = tuple[str, Callable[[float], bool], Callable[[], None]]  # (name, when, action)


def _train(run: greenml.Tracker, until: Callable[[float], bool], events: list[Event] = ()) -> Loop:
    """Steps of 5 ms (``run.step(samples=32)``) until ``until(elapsed_s)``. Each event fires
    once, between steps, the first time its ``when(elapsed_s)`` holds; its action is not
    part of any step's time."""
    loop, pending = Loop(), list(events)
    t0 = time.monotonic()
    while True:
        now = time.monotonic() - t0
        for event in [e for e in pending if e[1](now)]:
            pending.remove(event)
            event[2]()
            loop.fired.append((event[0], round(now, 3)))
        if not pending and until(now):
            break
        if now > LOOP_CAP_S:
            loop.capped = True
            break
        s = time.perf_counter()
        time.sleep(STEP_SLEEP_S)
        run.step(samples=SAMPLES)
        loop.times.append(time.perf_counter() - s)
    loop.wall_s = time.monotonic() - t0
    return loop


def _assert_smooth(loop: Loop) -> None:
    assert not loop.capped, _seed(f"the loop's condition never came within {LOOP_CAP_S} s")
    assert loop.steps >= 100, _seed(f"{loop.steps} steps")
    slowest = max(loop.times)
    at = loop.times.index(slowest)
    assert slowest < STEP_BOUND_S, _seed(
        f"step {at} took {slowest:.3f} s (median {statistics.median(loop.times) * 1000:.1f} ms,"
        f" events {loop.fired}): the loop waited on something"
    )


def _sim() -> SimulatedNVML:
    return SimulatedNVML([SimGPU(trace=traces.constant(w)) for w in GPU_W])


def _track(uri: str, jdir: Path, experiment: str) -> greenml.Tracker:
    return greenml.track(
        tracking_uri=uri,
        experiment=experiment,
        location="FR",
        interval_s=0.05,
        log_interval_s=LOG_INTERVAL_S,
        log_to_mlflow=True,
        journal=True,
        journal_dir=str(jdir),
    )


@dataclass
class Tracked:
    run: greenml.Tracker
    loop: Loop
    exit_s: float  # how long leaving the block took
    journal: Path
    warned: str  # greenml's warnings, one a line
    delivered: bool  # run.mlflow.delivered right after the block
    sent_live: set[int]  # the seqs the run itself marked sent to MLflow


def _run_with_fault(
    uri: str, jdir: Path, experiment: str, until: Callable[[float], bool], events: list[Event]
) -> Tracked:
    """A tracked training loop; greenml raising anything fails the test."""
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        try:
            with _sim(), _track(uri, jdir, experiment) as run:
                loop = _train(run, until, events)
                t_exit = time.monotonic()
            exit_s = time.monotonic() - t_exit
        except Exception as e:  # pragma: no cover - what the test is there to catch
            pytest.fail(_seed(f"greenml raised into the training loop: {e!r}"))
    files = jr.journal_files(jdir)
    assert len(files) == 1, files
    warned = "\n".join(str(w.message) for w in said if issubclass(w.category, GreenMLWarning))
    c = jr.read(files[0])
    return Tracked(run, loop, exit_s, files[0], warned, run.mlflow.delivered, set(c.sent))


def _assert_points_kept_coming(journal: Path) -> None:
    """The journal's points are on the 0.2 s grid all through the fault: greenml's ticker
    never waited on MLflow."""
    c = jr.read(journal)
    ts = [r["ts"] for r in c.records if r["t"] == "metrics"]
    assert len(ts) >= 5, _seed(f"{len(ts)} points")
    gaps = [(b - a) / 1000 for a, b in itertools.pairwise(ts)]
    assert max(gaps) < POINT_GAP_BOUND_S, _seed(f"a gap of {max(gaps):.3f} s between points")
    assert c.summary is not None and c.end is not None, _seed("no summary in the journal")


# -- MLflow against the journal -----------------------------------------------------------


def _sync(jdir: Path) -> str:
    out = CliRunner().invoke(main, ["sync", "--journal-dir", str(jdir)])
    assert out.exit_code == 0, _seed(out.output + repr(out.exception))
    return out.output


def _runs_of(client: MlflowClient, experiment: str) -> list[str]:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, _seed(f"no experiment {experiment!r}")
    return [r.info.run_id for r in client.search_runs([exp.experiment_id], "", ViewType.ALL)]


def _assert_records_in_run(
    client: MlflowClient, journal: Path, run_id: str, tmp_path: Path, seqs: set[int] | None = None
) -> None:
    """The run holds the journal's records (those in ``seqs``, else all) exactly: every
    metric point once, the params, the greenml tags, the summary's status, end time and
    artifacts; nothing else of greenml's."""
    c = jr.read(journal)
    assert not c.bad_lines, _seed(str(c.bad_lines))
    records = [r for r in c.records if seqs is None or r["seq"] in seqs]
    want: dict[str, list[tuple[int, int, float]]] = defaultdict(list)
    for r in records:
        for key, value in r.get("metrics", {}).items():
            want[key].append((r["step"], r["ts"], value))
    r = client.get_run(run_id)
    for key in sorted(set(want) | set(r.data.metrics)):
        got = _points(client, run_id, key)
        assert len({(s, t) for s, t, _ in want[key]}) == len(want[key]), _seed(key)
        assert got == sorted(want[key]), _seed(
            f"{key}: MLflow lacks {sorted(set(want[key]) - set(got))}, has more "
            f"{sorted(set(got) - set(want[key]))}, {len(got)} vs {len(want[key])} points"
        )
        assert len({(s, t) for s, t, _ in got}) == len(got), _seed(f"{key}: a point twice")
    params: dict[str, str] = {}
    tags = {
        "greenml.run_id": c.greenml_run_id,
        "greenml.node": str(c.start["node"]),
        "greenml.blocks": "1",
    }
    for rec in records:
        params.update({k: str(v) for k, v in rec.get("params", {}).items()})
        tags.update({k: str(v) for k, v in rec.get("tags", {}).items()})
    assert r.data.params == params, _seed()
    assert {k: v for k, v in r.data.tags.items() if k.startswith("greenml.")} == tags, _seed()
    summary = c.summary
    assert summary is not None and (seqs is None or summary["seq"] in seqs)
    assert r.info.status == summary["status"] == "FINISHED", _seed(r.info.status)
    assert r.info.end_time == summary["ts"], _seed()
    assert r.info.start_time == c.start["wall_start_ms"], _seed("the job's start, not sync's")
    art = tmp_path / f"art-{uuid.uuid4().hex[:6]}"
    names = {a.path for a in client.list_artifacts(run_id, "greenml")}
    assert names == {"greenml/footprint.json", "greenml/timeseries.csv"}, _seed(str(names))
    doc = Path(client.download_artifacts(run_id, "greenml/footprint.json", str(art)))
    assert json.loads(doc.read_text()) == summary["footprint"], _seed()
    csv_text = Path(client.download_artifacts(run_id, "greenml/timeseries.csv", str(art)))
    assert csv_text.read_text() == summary["csv"], _seed()


def _assert_figures(client: MlflowClient, run_id: str, loop: Loop) -> None:
    """The run's latest figures against what the loop did, worked out by hand: one step
    and 32 samples per loop iteration; the GPUs draw 300 W + 450 W = 750 W, so the GPU
    energy is 750 W x duration / 3.6e6 J/kWh; the duration is the loop's and a little
    more (the block's start and end)."""
    m = client.get_run(run_id).data.metrics
    assert m["greenml/steps"] == loop.steps, _seed(f"{m['greenml/steps']} vs {loop.steps}")
    assert m["greenml/samples"] == SAMPLES * loop.steps, _seed()
    assert loop.wall_s <= m["greenml/duration_s"] <= loop.wall_s + 1.0, _seed(
        f"duration {m['greenml/duration_s']} s, loop {loop.wall_s:.3f} s"
    )
    watts = sum(GPU_W)
    assert m["greenml/gpu_power_w"] == pytest.approx(watts, rel=0.02), _seed()
    kwh = watts * m["greenml/duration_s"] / 3.6e6
    assert m["greenml/gpu_energy_kwh"] == pytest.approx(kwh, rel=0.02), _seed()


def _state(client: MlflowClient, experiment: str) -> dict[str, Any]:
    """Everything greenml could have changed in an experiment's runs."""
    out: dict[str, Any] = {}
    for run_id in _runs_of(client, experiment):
        r = client.get_run(run_id)
        out[run_id] = (
            {k: _points(client, run_id, k) for k in r.data.metrics},
            r.data.params,
            r.data.tags,
            r.info.status,
            r.info.end_time,
            sorted(a.path for a in client.list_artifacts(run_id, "greenml")),
        )
    return out


def _assert_second_sync_changes_nothing(
    client: MlflowClient, experiment: str, jdir: Path, journal: Path
) -> None:
    before, journal_before = _state(client, experiment), journal.read_bytes()
    out = _sync(jdir)
    assert "up to date" in out, _seed(out)
    assert journal.read_bytes() == journal_before, _seed("the second sync wrote the journal")
    assert _state(client, experiment) == before, _seed("the second sync changed MLflow")


def _delivered_by_sync(
    client: MlflowClient, t: Tracked, experiment: str, jdir: Path, tmp_path: Path
) -> str:
    """Sync, then: the experiment has one run, holding every journal record once, with
    the loop's figures; a second sync changes nothing. Returns the run id."""
    out = _sync(jdir)
    c = jr.read(t.journal)
    assert c.unsent == [], _seed(f"sync left {len(c.unsent)} record(s) unsent: {out}")
    assert _runs_of(client, experiment) == [c.run_id], _seed("one run, the journal's")
    _assert_records_in_run(client, t.journal, c.run_id, tmp_path)
    _assert_figures(client, c.run_id, t.loop)
    _assert_second_sync_changes_nothing(client, experiment, jdir, t.journal)
    return c.run_id


def _experiment(case: str) -> str:
    return f"fault-{case}-{uuid.uuid4().hex[:8]}"


def _when(at_s: float) -> Callable[[float], bool]:
    return lambda now: now >= at_s


def _when_delivering(at_s: float, jdir: Path) -> Callable[[float], bool]:
    """From ``at_s`` on, once MLflow has taken a record of the run (on a loaded machine the
    run's creation can take longer than ``at_s``): the fault then strikes a run that is
    delivering."""
    return lambda now: now >= at_s and bool(_sent_seqs(jdir))


# -- 1. down before the run starts ------------------------------------------------------------


def test_store_down_before_the_run_starts(mlflow_server, tmp_path):
    """Nothing listens on the URI's port for the whole run: greenml warns once (the URI,
    the journal), keeps every record in the journal, and does not wait for MLflow at the
    end. Then the store comes up on that port and sync creates the run."""
    rng = random.Random(SEED)
    port = _free_port()  # free a moment ago; nothing listens there until the proxy starts
    uri, jdir, experiment = f"http://127.0.0.1:{port}", tmp_path / "journal", _experiment("down")
    duration = rng.uniform(1.2, 1.8)
    t = _run_with_fault(uri, jdir, experiment, _when(duration), [])
    _assert_smooth(t.loop)
    assert t.exit_s < QUICK_END_S, _seed(f"the end waited {t.exit_s:.1f} s for a down store")
    _assert_points_kept_coming(t.journal)
    assert f"MLflow at {uri} cannot be reached" in t.warned, _seed(t.warned)
    assert t.warned.count("cannot be reached") == 1, _seed(t.warned)  # once
    assert str(t.journal) in t.warned, _seed(t.warned)
    assert "its summary among them, are not in MLflow" in t.warned, _seed(t.warned)
    c = jr.read(t.journal)
    assert c.run_id is None and not t.sent_live and not t.delivered, _seed()
    assert len(c.unsent) == len(c.records) >= 7, _seed()  # params, >= 5 points, summary
    with FaultProxy(("127.0.0.1", mlflow_server.port), port=port):  # the store is up
        client = MlflowClient(mlflow_server.uri)
        _delivered_by_sync(client, t, experiment, jdir, tmp_path)


# -- 2. killed mid-run --------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A server of this module's own, which its tests may kill and restart: case 2 leaves
    it running again on its store, case 5 then replaces it (a start costs several seconds,
    so the two share it). Started by the first test that needs it."""
    srv = MlflowServer(tmp_path_factory.mktemp("own-server"))
    try:
        yield srv
    finally:
        srv.stop()


def test_store_killed_mid_run(own_server, tmp_path):
    """SIGKILL to the server's process group mid-run: the records before it are in MLflow,
    greenml warns once that the store cannot be reached, keeps the rest (summary included)
    in the journal and does not wait 15 s at the end (a refused connection is given up on
    at once). After a restart on the same store, sync completes the same run."""
    rng = random.Random(SEED)
    srv: MlflowServer = own_server
    if not srv.running:
        srv.start()
    jdir, experiment = tmp_path / "journal", _experiment("killed")
    kill_at = rng.uniform(0.6, 1.0)

    killed: list[float] = []

    def kill() -> None:
        proc = srv._proc  # the conftest's server has no kill(); its process leads its group
        assert proc is not None
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        killed.append(time.monotonic())

    t = _run_with_fault(
        srv.uri,
        jdir,
        experiment,
        lambda now: time.monotonic() - killed[0] >= 1.0,  # points written while it is dead
        [("kill", _when_delivering(kill_at, jdir), kill)],
    )
    _assert_smooth(t.loop)
    assert t.exit_s < QUICK_END_S, _seed(f"the end waited {t.exit_s:.1f} s for a dead store")
    _assert_points_kept_coming(t.journal)
    assert f"MLflow at {srv.uri} cannot be reached" in t.warned, _seed(t.warned)
    assert t.warned.count("cannot be reached") == 1, _seed(t.warned)  # once
    assert "its summary among them, are not in MLflow" in t.warned, _seed(t.warned)
    c = jr.read(t.journal)
    assert t.sent_live and c.unsent and not t.delivered, _seed("sent before, not after")
    assert c.summary["seq"] not in t.sent_live, _seed()
    assert c.run_id == t.run.mlflow.run_id, _seed()
    srv.restart()
    client = MlflowClient(srv.uri)
    run_id = _delivered_by_sync(client, t, experiment, jdir, tmp_path)
    assert run_id == t.run.mlflow.run_id, _seed("sync completed the run greenml created")


# -- 3. slow answers ----------------------------------------------------------------------


def test_store_answers_later_than_the_clients_timeout(mlflow_server, tmp_path):
    """The proxy forwards each request, then holds the answer for the client's timeout
    + 1 s: the server did the work, the client saw a timeout. Twice:

    - at the start, only the run's creation (``runs/create``): greenml must not create a
      second run when it tries again (it searches the run by its greenml run id tag);
    - mid-run, every request for a moment: the points logged whose answer was lost are
      sent again with dedupe, and nothing lands twice.

    The loop goes on until greenml said MLflow is back, then a little more."""
    rng = random.Random(SEED)
    jdir, experiment = tmp_path / "journal", _experiment("slow")
    delay = CLIENT_TIMEOUT_S + 1.0
    with FaultProxy(("127.0.0.1", mlflow_server.port)) as proxy:
        proxy.set_mode("delay", delay_s=delay, paths=("runs/create",))
        second = rng.uniform(0.3, 0.6)  # s after the run is found: everything slow
        mark: dict[str, float] = {}

        def slow_all() -> None:
            mark["slow"] = time.monotonic()
            proxy.set_mode("delay", delay_s=delay)

        def since(name: str, s: float) -> Callable[[float], bool]:
            return lambda now: name in mark and time.monotonic() - mark[name] >= s

        events: list[Event] = [
            (
                "creation answered late",
                lambda now: proxy.stats["delayed"] >= 1,
                lambda: proxy.set_mode("pass"),
            ),
            (
                "run found",  # by its tag, and the backlog sent
                lambda now: bool(_sent_seqs(jdir)),
                lambda: mark.setdefault("found", time.monotonic()),
            ),
            ("everything slow", since("found", second), slow_all),
            ("healthy again", since("slow", 0.5), lambda: proxy.set_mode("pass")),
        ]
        backs = _counter(jdir)
        t = _run_with_fault(proxy.uri, jdir, experiment, lambda now: backs(now) >= 3, events)
        stats = dict(proxy.stats)
        late = [path for _, _, path, outcome in proxy.log if outcome == "delayed"]
    _assert_smooth(t.loop)
    _assert_points_kept_coming(t.journal)
    assert stats.get("delayed", 0) >= 2, _seed(f"the proxy's outcomes: {stats}")
    assert late[0].endswith("/runs/create"), _seed(str(late))  # the run was made, unsaid
    assert any(p.endswith("/runs/log-batch") for p in late[1:]), _seed(str(late))
    assert "Read timed out. (read timeout=2)" in t.warned, _seed(t.warned)
    assert f"MLflow at {proxy.uri} is back" in t.warned, _seed(t.warned)
    client = MlflowClient(mlflow_server.uri)
    assert _runs_of(client, experiment) == [t.run.mlflow.run_id], _seed("a second run")
    _delivered_by_sync(client, t, experiment, jdir, tmp_path)


def _sent_seqs(jdir: Path) -> set[int]:
    files = jr.journal_files(jdir)
    return set(jr.read(files[0]).sent) if files else set()


def _counter(jdir: Path) -> Callable[[float], int]:
    """How many times the journal's MLflow ``sent`` marks grew, counted by the loop's
    ``until`` once every step after the last event fired (the condition to end on)."""
    state = {"seen": -1, "count": 0}

    def count(now: float) -> int:
        n = len(_sent_seqs(jdir))
        if n > state["seen"]:
            if state["seen"] >= 0:
                state["count"] += 1
            state["seen"] = n
        return state["count"]

    return count


# -- 4. HTTP 500 for a while ----------------------------------------------------------------


def test_store_answers_500_for_a_while(mlflow_server, tmp_path, monkeypatch):
    """Every request answered 500 for 3 s (the server never sees them), then healthy.
    MLflow's client retries twice, the second time after 2 s (backoff factor 1), so one
    failing call takes about 2 s: greenml's sender must wait that out, never the loop.
    A call that fails all three times sends greenml's records back to waiting; they go out
    when the store answers again."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    rng = random.Random(SEED)
    jdir, experiment = tmp_path / "journal", _experiment("http500")
    start = rng.uniform(0.5, 0.8)
    began: list[float] = []

    def since_500(s: float) -> Callable[[float], bool]:
        return lambda now: bool(began) and time.monotonic() - began[0] >= s

    def errors(proxy: Any) -> None:
        began.append(time.monotonic())
        proxy.set_mode("error", status=500)

    with FaultProxy(("127.0.0.1", mlflow_server.port)) as proxy:
        events: list[Event] = [
            ("500s", _when_delivering(start, jdir), lambda: errors(proxy)),
            ("healthy", since_500(3.0), lambda: proxy.set_mode("pass")),
        ]
        backs = _counter(jdir)
        t = _run_with_fault(proxy.uri, jdir, experiment, lambda now: backs(now) >= 3, events)
        stats = dict(proxy.stats)
    _assert_smooth(t.loop)
    _assert_points_kept_coming(t.journal)
    assert stats.get("error", 0) >= 3, _seed(f"the proxy's outcomes: {stats}")
    assert "too many 500 error responses" in t.warned, _seed(t.warned)
    assert f"MLflow at {proxy.uri} is back" in t.warned, _seed(t.warned)
    client = MlflowClient(mlflow_server.uri)
    _delivered_by_sync(client, t, experiment, jdir, tmp_path)


# -- 5. restarted on a fresh, empty backend -----------------------------------------------------
#
# What greenml does (greenml/sinks/recorder.py, mlflow.py, sync.py): the run greenml created
# is known to its sender (``run_known``) and is never looked up again during the run. While
# the server is down the records wait ("cannot be reached"). Once the fresh server answers,
# each ``log_batch`` into the vanished run is answered RESOURCE_DOES_NOT_EXIST, which greenml
# counts as a refusal (``is_rejection``): it warns "MLflow refused a record of this run", and
# the record stays unsent in the journal, as does every later one, the summary included. Then
# ``greenml sync`` does not find the journal's run in the store, finds no run tagged with the
# greenml run id either, and creates a new run (in an experiment of the journal's name,
# created too, with the job's start time) into which it replays every record, those marked
# sent to the vanished run included: the new run has the whole run, summary (params, tags,
# artifacts, FINISHED) and all.
#
# Three faults this case found, fixed: sync replayed only the records without a ``sent``
# mark, so the new run lacked the points sent before the restart (it now replays every
# record into a run it had to create, with dedupe); ``run.mlflow.delivered`` was True
# although MLflow refused every record after the restart (refused records now count as not
# delivered, and the end of the run says so); and the fresh server's first answer brought
# "is back; the waiting records were sent" although it took none of them.


@dataclass
class Restarted:
    t: Tracked
    old: MlflowServer  # stopped; its store is still on disk
    new: MlflowServer
    old_run_id: str
    sync_output: str
    new_run_id: str
    experiment: str
    jdir: Path


@pytest.fixture(scope="module")
def restarted(
    own_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Restarted]:
    """Case 5, run once for the tests below: a run logging to a server that is restarted
    mid-run on the same port with a new, empty sqlite store; the loop goes on until the new
    server has refused a few points; then sync."""
    rng = random.Random(SEED)
    tmp = tmp_path_factory.mktemp("restarted")
    jdir, experiment = tmp / "journal", _experiment("fresh")
    old = own_server
    if not old.running:
        old.start()
    new = MlflowServer(tmp / "new", port=old.port)
    restart_at = rng.uniform(0.6, 1.0)
    up: dict[str, Any] = {}

    def restart() -> None:
        try:
            old.stop()
            new.start()
        except BaseException as e:  # reported by the loop's condition below
            up["error"] = e
        up["at"] = time.monotonic()

    def refused_a_few(now: float) -> bool:
        if "error" in up:
            raise up["error"]
        return "at" in up and time.monotonic() - up["at"] >= 4 * LOG_INTERVAL_S

    worker = threading.Thread(target=restart, name="restart-mlflow", daemon=True)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(tmp)
            for name, value in _CLIENT_ENV.items():
                mp.setenv(name, value)
            t = _run_with_fault(
                old.uri,
                jdir,
                experiment,
                refused_a_few,
                [("restart", _when_delivering(restart_at, jdir), worker.start)],
            )
            worker.join(60)
            old_run_id = t.run.mlflow.run_id
            out = CliRunner().invoke(main, ["sync", "--journal-dir", str(jdir)])
            assert out.exit_code == 0, _seed(out.output)
            yield Restarted(
                t, old, new, old_run_id, out.output, jr.read(t.journal).run_id, experiment, jdir
            )
    finally:
        worker.join(60)
        new.stop()


def test_store_restarted_on_a_fresh_backend_sync_makes_a_new_run(restarted, tmp_path):
    """The behaviour above: training unharmed; the new store's run, made by sync, holds
    every record, and the old store's run keeps what was sent to it before the restart."""
    r, t = restarted, restarted.t
    _assert_smooth(t.loop)
    _assert_points_kept_coming(t.journal)
    assert t.exit_s < QUICK_END_S, _seed(f"the end took {t.exit_s:.1f} s")
    assert f"MLflow at {r.old.uri} cannot be reached" in t.warned, _seed(t.warned)
    assert "MLflow refused a record of this run (RESOURCE_DOES_NOT_EXIST" in t.warned, _seed(
        t.warned
    )
    c = jr.read(t.journal)
    assert t.sent_live and c.summary["seq"] not in t.sent_live, _seed()
    # every record after the restart (written during the outage, or once the fresh server
    # answered) was refused or never sent: none has a sent mark
    late = [x for x in c.records if x["seq"] not in t.sent_live]
    assert len(late) >= 5, _seed(f"{len(late)} records refused or unsent")

    assert r.new_run_id != r.old_run_id, _seed("sync made a new run")
    everything = len(c.records)  # the vanished run's records are replayed too
    assert f"sent {everything} record(s) to run {r.new_run_id}" in r.sync_output, _seed(
        r.sync_output
    )
    assert f"run {r.old_run_id} is not in {r.new.uri}" in r.sync_output, _seed(r.sync_output)
    client = MlflowClient(r.new.uri)
    assert _runs_of(client, r.experiment) == [r.new_run_id], _seed()
    _assert_records_in_run(client, t.journal, r.new_run_id, tmp_path)
    _assert_figures(client, r.new_run_id, t.loop)  # the summary's figures: the whole job
    _assert_second_sync_changes_nothing(client, r.experiment, r.jdir, t.journal)

    # the old store kept what was sent to it before the restart (a point in flight at the
    # restart may be in both stores: it was never marked sent)
    old = MlflowClient(r.old.backend_uri)
    for key in ("greenml/energy_kwh", "greenml/duration_s"):
        had = set(_points(old, r.old_run_id, key))
        sent = {(x["step"], x["ts"], x["metrics"][key]) for x in c.records if x["t"] == "metrics"}
        sent_live = {
            (x["step"], x["ts"], x["metrics"][key])
            for x in c.records
            if x["t"] == "metrics" and x["seq"] in t.sent_live
        }
        assert sent_live <= had <= sent, _seed(key)
        assert had | set(_points(client, r.new_run_id, key)) >= sent, _seed(f"{key}: lost")


def test_store_restarted_on_a_fresh_backend_new_run_has_every_record(restarted, tmp_path):
    client = MlflowClient(restarted.new.uri)
    _assert_records_in_run(client, restarted.t.journal, restarted.new_run_id, tmp_path)


def test_store_restarted_on_a_fresh_backend_is_not_reported_delivered(restarted):
    assert not restarted.t.delivered, _seed("run.mlflow.delivered")


def test_store_restarted_on_a_fresh_backend_no_false_all_sent(restarted):
    assert "the waiting records were sent" not in restarted.t.warned, _seed(restarted.t.warned)
