"""Process faults and concurrency: real signals at seeded points of a tracked job, an
exception out of the block, fork and spawn workers, a tracker never stopped, and several
runs in one process (two threads at once, nested blocks).

The jobs run as real child processes (``tests/fixtures/fault_child.py``) on two simulated
H100s (300 W and 450 W, power limit 700 W each, in-process ``SimulatedNVML``) against the
session's real ``mlflow server``, with a real journal; ``greenml sync`` is the real CLI.
Every figure is checked against the GPUs' known power and the times the test itself saw.

Already covered elsewhere, and not repeated here:

- ``test_mlflow.py``: ``test_sigkill_loses_at_most_one_flush_interval`` (SIGKILL mid-run:
  the last point within one interval of the kill, sync ends the run KILLED at it),
  ``test_sigterm_writes_the_summary`` (SIGTERM mid-run: KILLED with summary and artifacts,
  exit -15), ``test_sigterm_hands_on_to_the_users_handler``,
  ``test_failed_and_interrupted_runs_are_marked`` (in-process RuntimeError -> FAILED,
  KeyboardInterrupt -> KILLED, ``sys.exit(0)`` -> FINISHED), ``test_corrupt_journal_line_...``
  (a bad line in the middle of a journal).
- ``test_fork.py``: ``multiprocessing`` fork workers and a bare ``os.fork()`` in nested
  blocks (default SIGTERM, no greenml thread, journal written once, clean exit).
- ``tests/unit/test_signals.py`` (the SIGTERM guard alone) and ``tests/unit/test_tracker.py``
  (an exception keeps the measurement, ManualClock).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

import greenml
from greenml.cli import main
from greenml.errors import GreenMLWarning
from greenml.sinks import journal as jr
from greenml.testing import SimGPU, SimulatedNVML, traces

pytestmark = pytest.mark.slow

CHILD = Path(__file__).resolve().parents[1] / "fixtures" / "fault_child.py"
MARK = "@fault "  # the child's report lines start with it
WATTS = (300.0, 450.0)  # the child's two GPUs, as in fault_child.WATTS
TOTAL_W = sum(WATTS)  # 750 W
LIMIT_W = 700.0  # an H100's power limit: no run can have drawn more per GPU
INTERVAL_S = 0.5  # the children's log_interval_s
J_PER_KWH = 3.6e6


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GREENML_", "MLFLOW_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Child:
    """A ``fault_child.py`` process whose report lines are collected as they come."""

    def __init__(self, mode: str, args: dict[str, Any], cwd: Path, name: str) -> None:
        cwd.mkdir(parents=True, exist_ok=True)
        self.stderr_path = cwd / f"{name}.stderr"
        with self.stderr_path.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(CHILD), mode, json.dumps(args)],
                cwd=cwd,
                env=child_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        self.t_popen = time.time()
        self.t_exit: float | None = None
        self.rc: int | str | None = None
        self.markers: dict[str, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._eof = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(MARK):
                rec = json.loads(line[len(MARK) :])
                with self._cond:
                    self.markers.setdefault(rec["at"], rec)
                    self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def wait_for(self, at: str, timeout: float = 90.0) -> dict[str, Any]:
        with self._cond:
            self._cond.wait_for(lambda: at in self.markers or self._eof, timeout)
            if at in self.markers:
                return self.markers[at]
        raise AssertionError(f"the child never reported {at!r}; stderr:\n{self.stderr()[-3000:]}")

    def finish(self, timeout: float = 30.0) -> int | str:
        try:
            self.rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            self.rc = "hung"
        self.t_exit = time.time()
        self._reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return self.rc

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


def raw_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def single_writer(contents: jr.JournalContents, pid: int) -> None:
    """The journal was written by one process, each record once."""
    assert contents.start is not None and contents.start["pid"] == pid
    seqs = [r["seq"] for r in contents.records]
    assert seqs == sorted(set(seqs)), f"a record written twice: {seqs}"
    ts = [r["ts"] for r in contents.records if r["t"] in ("metrics", "summary")]
    assert ts == sorted(set(ts)), "two points share a millisecond, or go back in time"


def run_sync(journal_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "greenml.cli", "sync", "--journal-dir", str(journal_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(),
        check=False,
    )


# == 1. SIGTERM, SIGINT and SIGKILL at seeded points =======================================

# phase: (the report line the delay counts from, the delay's range in s, the loop's length)
PHASES = {
    "first": ("started", (0.0, 0.4), 30.0),  # before the first interval's point (0.5 s)
    "mid": ("started", (0.7, 1.3), 30.0),  # a few points in
    "stop": ("stopping", (0.0, 0.15), 0.6),  # the block has ended: stop() is running
    "start": ("entering", (0.0, 1.5), 30.0),  # during greenml.track().__enter__, mostly
}


@dataclass(frozen=True)
class Case:
    sig: signal.Signals
    phase: str
    seed: int
    nested: bool = False

    @property
    def id(self) -> str:
        return f"{self.sig.name}-{self.phase}{'-nested' if self.nested else ''}-seed{self.seed}"

    @property
    def delay_s(self) -> float:
        lo, hi = PHASES[self.phase][1]
        return random.Random(self.seed).uniform(lo, hi)


CASES = [
    Case(sig, phase, seed=10 * n + k)
    for n, sig in enumerate((signal.SIGTERM, signal.SIGINT, signal.SIGKILL), start=1)
    for k, phase in enumerate(("first", "mid", "stop"), start=1)
] + [
    Case(signal.SIGINT, "start", seed=24),  # a Ctrl-C while `import mlflow` runs in start()
    Case(signal.SIGTERM, "mid", seed=15, nested=True),  # both guards, chained
]
TORN = Case(signal.SIGKILL, "mid", seed=35)  # its journal's last line is then torn


@dataclass
class Outcome:
    case: Case
    child: Child
    t_signal: float = 0.0
    journals: list[Path] = field(default_factory=list)  # outer first when nested
    before: dict[Path, jr.JournalContents] = field(default_factory=dict)  # as the child left it
    lines: dict[Path, int] = field(default_factory=dict)  # its number of lines then

    def when(self, at: str) -> float | None:
        rec = self.child.markers.get(at)
        return rec["t"] if rec is not None else None

    def landed(self) -> str:
        """Where the signal landed, by the child's own report times."""
        done = [
            at for at in ("entering", "started", "stopping", "stopped") if self.before_signal(at)
        ]
        return f"after {done[-1]!r}" if done else "before 'entering'"

    def before_signal(self, at: str) -> bool:
        t = self.when(at)
        return t is not None and t < self.t_signal

    def why(self) -> str:
        c = self.case
        return (
            f"seed={c.seed} case={c.id}: signal {self.case.delay_s:.3f} s after "
            f"{PHASES[c.phase][0]!r}, landed {self.landed()}, rc={self.child.rc}; "
            f"stderr tail:\n{self.child.stderr()[-1500:]}"
        )


def drive(case: Case, root: Path, journal_dir: Path, uri: str | None) -> Outcome:
    trigger, _, run_s = PHASES[case.phase]
    args = {
        "uri": uri,
        "journal_dir": str(journal_dir),
        "experiment": "fault-signals",
        "interval": INTERVAL_S,
        "run_s": run_s,
        "nested": case.nested,
    }
    child = Child("signal", args, root / "cwd" / case.id, case.id)
    out = Outcome(case, child)
    try:
        child.wait_for(trigger)
        time.sleep(case.delay_s)
        out.t_signal = time.time()
        child.proc.send_signal(case.sig)
    finally:
        child.finish(30.0)
    return out


@dataclass
class Signalled:
    outcomes: dict[str, Outcome]
    sync: subprocess.CompletedProcess[str]
    sync_s: float
    torn: Outcome
    torn_syncs: list[Any]  # the CLI results of two syncs of the torn journal
    torn_line: int  # the number of the torn line
    torn_kind: str  # the type of the record torn
    torn_text: str  # what the tear left of that line


def journals_of(journal_dir: Path, pid: int) -> list[Path]:
    found = [p for p in jr.journal_files(journal_dir) if (jr.read(p).start or {}).get("pid") == pid]
    return sorted(found, key=lambda p: jr.read(p).start["wall_start_ms"])  # outer first


@pytest.fixture(scope="module")
def signalled(mlflow_server, tmp_path_factory) -> Signalled:
    """Every case's child, six at a time, then one ``greenml sync`` of their journals (the
    real command, in a process of its own). The torn case records only to its journal, and
    is sent by two syncs of its own (``--include-local``)."""
    root = tmp_path_factory.mktemp("fault-signals")
    journal_dir, torn_dir = root / "journal", root / "torn-journal"
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = {c.id: pool.submit(drive, c, root, journal_dir, mlflow_server.uri) for c in CASES}
        torn_future = pool.submit(drive, TORN, root, torn_dir, None)
        outcomes = {k: f.result() for k, f in futures.items()}
        torn = torn_future.result()
    for o in [*outcomes.values(), torn]:
        o.journals = journals_of(torn_dir if o is torn else journal_dir, o.child.pid)
        o.before = {p: jr.read(p) for p in o.journals}
        o.lines = {p: len(raw_lines(p)) for p in o.journals}
    t0 = time.monotonic()
    sync = run_sync(journal_dir)
    sync_s = time.monotonic() - t0

    # a SIGKILL can tear the line being written: cut the last line at a seeded byte
    (path,) = torn.journals
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    last = lines[-1]
    cut = random.Random(TORN.seed).randrange(1, len(last) - 1)
    path.write_bytes(b"".join(lines[:-1]) + last[:cut])
    command = ["sync", "--journal-dir", str(torn_dir), "--include-local"]
    command += ["--tracking-uri", mlflow_server.uri]
    torn_syncs = [CliRunner().invoke(main, command) for _ in "12"]
    try:
        kind = json.loads(last)["t"]
    except ValueError:  # the kill itself tore it
        kind = "torn"
    left = last[:cut].decode()
    return Signalled(outcomes, sync, sync_s, torn, torn_syncs, len(lines), kind, left)


# flags by which a footprint says a GPU's energy is partly estimated (readings dropped as
# implausible, a counter jump bridged with the power around it)
ESTIMATED = ("implausible_readings:", "counter_bridged:", "read_gaps:", "read_errors:")


def check_figures(
    o: Outcome, metrics: dict[str, float], *, final: bool, flags: Sequence[str] = ()
) -> None:
    """No number invented: the GPU energy is what 750 W gives over the run's own duration
    (a point's energy may lag its duration by one reading), never more than two GPUs at
    their 700 W limit over the process's whole life. A summary is exact unless its flags
    say a GPU's energy was partly estimated: then it may be low, never high."""
    why = o.why()
    child = o.child
    assert child.t_exit is not None
    gpu_j = metrics["greenml/gpu_energy_kwh"] * J_PER_KWH
    d = metrics["greenml/duration_s"]
    entering = o.when("entering")
    assert entering is not None
    assert 0.0 <= d <= child.t_exit - entering, why
    assert gpu_j <= len(WATTS) * LIMIT_W * (child.t_exit - child.t_popen), why
    estimated = [f for f in flags if f.startswith(ESTIMATED)]
    if final and estimated:
        # seen once with six jobs starting on two loaded cores: a legitimate 45 J refresh
        # step read 0.032 s after the previous read was dropped as implausible and bridged,
        # and the summary came out 13 % low, flagged so
        assert gpu_j <= TOTAL_W * d * 1.03 + TOTAL_W * 0.05, f"{estimated}: {why}"
    elif final:
        # the summary: a final reading of the counters. Exact to 0.5 % on an idle machine;
        # with six jobs starting on two loaded cores it came out up to 1.8 % low (no flag)
        assert gpu_j == pytest.approx(TOTAL_W * d, rel=0.03, abs=TOTAL_W * 0.05), why
        for i, w in enumerate(WATTS):
            e = metrics[f"greenml/gpu_{i}/energy_kwh"] * J_PER_KWH
            assert e == pytest.approx(w * d, rel=0.03, abs=w * 0.05), why
    else:
        # a time-series point: its energy is the readings' asked for 0.15 s before it (a
        # counter refreshes every 0.1 s), so it trails its duration by ~0.2 s on an idle
        # machine; under load by up to an interval (a reading that came late)
        assert TOTAL_W * (d - INTERVAL_S - 0.25) <= gpu_j <= TOTAL_W * d * 1.01 + 1.0, why


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_signal_at_a_seeded_point(signalled, mlflow_server, case):
    """Whatever the point: the process dies of the signal as it would without greenml
    (SIGINT: the KeyboardInterrupt reaches the script's own ``except``), its journal parses
    (a torn last line at most after SIGKILL), ``greenml sync`` leaves nothing unsent, the
    MLflow run ends with the status of what happened, and no figure is invented."""
    o = signalled.outcomes[case.id]
    why = o.why()
    child = o.child
    assert signalled.sync.returncode == 0, signalled.sync.stdout + signalled.sync.stderr

    # -- the process: it dies of the signal ------------------------------------------------
    assert child.rc == -case.sig, why
    stopped_first = o.before_signal("stopped")
    if case.sig == signal.SIGINT:
        assert child.stderr().rstrip().endswith("KeyboardInterrupt"), why
        if not stopped_first:  # raised inside the script's try: it reached its except
            assert "interrupted" in child.markers, why
            assert child.markers["interrupted"]["context"] == "None", why  # nothing chained

    # -- where it landed decides what the run must say -------------------------------------
    in_block = o.before_signal("started") and not o.before_signal("stopping")
    in_stop = o.before_signal("stopping")
    if case.phase in ("first", "mid"):
        assert in_block, why
    if case.phase == "stop":
        assert in_stop, why
    if "started" in child.markers:
        assert len(o.journals) == (2 if case.nested else 1), why
    assert len(o.journals) <= (2 if case.nested else 1), why

    client = MlflowClient(mlflow_server.uri)
    for path in o.journals:
        before = o.before[path]
        single_writer(before, child.pid)
        # -- the journal as the process left it ------------------------------------------
        if case.sig == signal.SIGKILL:
            assert len(before.bad_lines) <= 1, why
            if before.bad_lines:  # only the line being written can be torn
                assert before.bad_lines[0][0] == o.lines[path], why
        else:
            assert before.bad_lines == [], why
        status = before.summary["status"] if before.summary is not None else None
        if case.sig != signal.SIGKILL and in_block:
            # SIGTERM and Ctrl-C record the summary, the run marked KILLED
            assert status == "KILLED" and before.end["status"] == "KILLED", why
        elif case.sig == signal.SIGKILL and in_block:
            assert status is None and before.end is None, why
        elif in_stop and case.sig == signal.SIGTERM:
            # the block had ended: the run finished, and the SIGTERM waited for its summary
            assert status == "FINISHED", why
        elif in_stop:
            # SIGKILL, or a KeyboardInterrupt raised inside stop() (see the interrupted-stop
            # tests below), before the summary was written: none; after it: FINISHED
            assert status in ("FINISHED", None), why
        else:  # in start(): no summary (died before the guard), or KILLED (after it)
            assert status in (None, "KILLED"), why

        # -- after greenml sync ----------------------------------------------------------
        after = jr.read(path)
        assert after.unsent == [] and after.end is not None, why
        expected = status or "KILLED"
        assert after.end["status"] == expected, why
        assert after.run_id is not None, why
        run = client.get_run(after.run_id)
        assert run.info.status == expected, why
        assert run.data.tags.get("greenml.status") == expected.lower(), why
        if before.summary is not None:
            for key in ("greenml/energy_kwh", "greenml/gpu_energy_kwh", "greenml/duration_s"):
                assert run.data.metrics[key] == pytest.approx(before.summary["metrics"][key]), why
            arts = {a.path for a in client.list_artifacts(after.run_id, "greenml")}
            assert "greenml/footprint.json" in arts, why
            flags = before.summary["footprint"]["flags"]
            check_figures(o, run.data.metrics, final=True, flags=flags)
        elif any(r["t"] == "metrics" for r in before.records):
            last = [r for r in before.records if r["t"] == "metrics"][-1]
            assert run.data.metrics["greenml/duration_s"] == pytest.approx(
                last["metrics"]["greenml/duration_s"]
            ), why
            check_figures(o, run.data.metrics, final=False)
        else:  # died before its first point: a run with nothing to show, and nothing made up
            assert "greenml/gpu_energy_kwh" not in run.data.metrics, why

        # -- the run's length is the process's -------------------------------------------
        started = o.when("started")
        if in_block and status == "KILLED":
            d = before.summary["metrics"]["greenml/duration_s"]
            assert o.t_signal - started - 0.05 <= d <= o.t_signal - o.when("entering") + 1.0, why
        if in_block and case.sig == signal.SIGKILL:
            # at most one interval lost (+0.75 s for a loaded machine); a kill within the
            # first moments may find no point written yet: then the run shows no figure
            d = run.data.metrics.get("greenml/duration_s")
            if o.t_signal - started > INTERVAL_S + 0.75:
                assert d is not None, why
            if d is not None:
                assert o.t_signal - started - INTERVAL_S - 0.75 <= d, why
                assert d <= o.t_signal - started + 0.05, why

    if case.nested:
        outer, inner = (o.before[p].summary for p in o.journals)
        assert outer is not None and inner is not None, why
        assert outer["footprint"]["duration_s"] >= inner["footprint"]["duration_s"], why


def test_sync_after_the_signals_is_quick_and_says_what_it_did(signalled):
    out = signalled.sync
    assert out.returncode == 0, out.stdout + out.stderr
    assert signalled.sync_s < 60.0
    killed = sum(
        1 for o in signalled.outcomes.values() for p in o.journals if o.before[p].summary is None
    )
    assert out.stdout.count("ended as KILLED") == killed, out.stdout


def test_sync_of_a_journal_torn_by_sigkill_delivers_the_rest(signalled, mlflow_server):
    """A SIGKILL that tears the last line (cut at a seeded byte): sync reports that line,
    sends every good record into one run, and ends it KILLED at its last point."""
    o = signalled.torn
    first, second = signalled.torn_syncs
    why = f"seed={TORN.seed}: first sync:\n{first.output}\nsecond sync:\n{second.output}"
    assert o.child.rc == -signal.SIGKILL, o.why()
    assert first.exit_code == 0 and second.exit_code == 0, why
    assert f"line {signalled.torn_line} skipped: not valid JSON" in first.output, why
    assert "ended as KILLED" in first.output, why
    (path,) = o.journals
    before = o.before[path]
    client = MlflowClient(mlflow_server.uri)
    gid = before.start["greenml_run_id"]
    runs = client.search_runs(
        [client.get_experiment_by_name("fault-signals").experiment_id],
        filter_string=f"tags.`greenml.run_id` = '{gid}'",
    )
    assert len(runs) == 1, why  # two syncs, one run
    (run,) = runs
    assert run.info.status == "KILLED" and run.data.tags["greenml.status"] == "killed", why
    points = [r for r in before.records if r["t"] == "metrics"]
    whole = points[:-1] if signalled.torn_kind == "metrics" else points  # the torn one lost
    history = client.get_metric_history(run.info.run_id, "greenml/duration_s")
    assert sorted((m.timestamp, m.value) for m in history) == [
        (r["ts"], r["metrics"]["greenml/duration_s"]) for r in whole
    ], why  # every whole point, once
    check_figures(o, run.data.metrics, final=False)


def test_sync_of_a_torn_journal_keeps_its_own_records_readable(signalled):
    """Sync ends the torn line before writing its own records ('run', 'sent', 'end'), so
    they stay readable and a second sync finds the journal up to date."""
    o = signalled.torn
    (path,) = o.journals
    after = jr.read(path)
    lines = raw_lines(path)
    now = lines[signalled.torn_line - 1]
    why = f"seed={TORN.seed}: bad lines {after.bad_lines}; the torn line is now {now!r}"
    assert now == signalled.torn_text, why  # left as the crash left it
    assert [n for n, _ in after.bad_lines] == [signalled.torn_line], why
    assert after.run_id is not None and after.unsent == [] and after.end is not None, why
    assert "up to date" in signalled.torn_syncs[1].output, why


# == Ctrl-C while stop() runs =============================================================
# Where a KeyboardInterrupt lands inside stop() is a matter of timing in the matrix above.
# Here stop() is held at a known place for HOLD_S and the SIGINT is sent then: in a meter's
# final read (before the summary is written), or while a slow sink takes the summary
# (after). The script catches the KeyboardInterrupt and carries on, as a notebook or a
# retry loop would; a scheduler's SIGTERM must then still end it.

HOLD_S = 3.0
WHERES = ("final_read", "summary_send")


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> dict[str, dict[str, Any]]:
    root = tmp_path_factory.mktemp("fault-interrupted")

    def one(where: str) -> dict[str, Any]:
        args = {
            "uri": None,
            "experiment": None,
            "journal_dir": str(root / where / "journal"),
            "interval": 0.25,
            "run_s": 0.5,
            "hold_s": HOLD_S,
            "wait_s": 6.0,
            "where": where,
        }
        child = Child("interrupted_stop", args, root / where, where)
        try:
            child.wait_for("holding")
            child.proc.send_signal(signal.SIGINT)
            caught = child.wait_for("caught", 20.0)
            t_term = time.time()
            child.proc.send_signal(signal.SIGTERM)
        finally:
            child.finish(20.0)
        (journal,) = jr.journal_files(root / where / "journal")
        return {"child": child, "caught": caught, "t_term": t_term, "journal": jr.read(journal)}

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(WHERES, pool.map(one, WHERES), strict=True))


@pytest.mark.parametrize("where", WHERES)
def test_ctrl_c_during_stop_reaches_the_user(interrupted, where):
    """The KeyboardInterrupt comes out of the with-block (through the tracker's
    ``__exit__``) to the script's own ``except``."""
    caught = interrupted[where]["caught"]
    assert ["tracker.py", "__exit__"] in caught["frames"], caught


@pytest.mark.parametrize(
    "where",
    [
        "final_read",
        "summary_send",
    ],
)
def test_ctrl_c_during_stop_still_records_the_summary(interrupted, where):
    c = interrupted[where]["journal"]
    assert c.summary is not None and c.end is not None, [r["t"] for r in c.records]
    assert c.summary["status"] == "FINISHED"  # the block had ended normally


@pytest.mark.parametrize("where", WHERES)
def test_sigterm_still_ends_the_process_after_a_ctrl_c_during_stop(interrupted, where):
    """SIGTERM has its previous handling back once the KeyboardInterrupt is out of stop():
    greenml's guard, put in "hold" when stop() began, must not swallow later SIGTERMs."""
    got = interrupted[where]
    child = got["child"]
    why = f"{where}: caught={got['caught']} rc={child.rc}"
    assert got["caught"]["sigterm"] == "SIG_DFL", why
    assert child.rc == -signal.SIGTERM, why
    assert child.t_exit - got["t_term"] < 5.0, why


# == 2. an exception inside the block =====================================================


class Diverged(Exception):
    """A training error of the user's own, with state of its own."""

    def __init__(self, step: int) -> None:
        super().__init__(f"loss is nan at step {step}")
        self.step = step


def _train_step(err: BaseException) -> None:
    raise err  # the origin: the traceback must end on this line


def _sim() -> SimulatedNVML:
    return SimulatedNVML([SimGPU(trace=traces.constant(w)) for w in WATTS])


def _tracked(uri: str, jdir: Path, experiment: str, **more: Any) -> greenml.Tracker:
    return greenml.track(
        tracking_uri=uri,
        experiment=experiment,
        journal_dir=str(jdir),
        location="FR",
        log_interval_s=0.25,
        interval_s=0.05,
        log_to_mlflow=True,
        journal=True,
        cpu_tdp_w=65.0,  # this test machine's CPU is not in CodeCarbon's table: no warning
        **more,
    )


@pytest.mark.parametrize(
    "make", [lambda: Diverged(7), lambda: SystemExit(3)], ids=["own-exception", "sys.exit(3)"]
)
def test_an_exception_propagates_unchanged_and_the_run_is_failed(
    mlflow_server, tmp_path, recwarn, make
):
    err = make()
    jdir = tmp_path / "journal"
    with (
        _sim(),
        pytest.raises(type(err)) as info,
        _tracked(mlflow_server.uri, jdir, "fault-exception") as run,
    ):
        time.sleep(0.4)
        with run.phase("eval"):
            time.sleep(0.2)
            _train_step(err)
    # the very exception, from where it was raised, with nothing chained to it
    assert info.value is err
    assert err.__context__ is None and err.__cause__ is None
    frames = traceback.extract_tb(err.__traceback__)
    assert (frames[-1].name, frames[-1].lineno) == (
        "_train_step",
        _train_step.__code__.co_firstlineno + 1,
    )
    package = str(Path(greenml.__file__).parent)
    assert not [f for f in frames if f.filename.startswith(package)], frames
    if isinstance(err, Diverged):
        assert err.step == 7 and str(err) == "loss is nan at step 7"
    else:
        assert err.code == 3
    failed = [str(w.message) for w in recwarn if issubclass(w.category, GreenMLWarning)]
    assert not [m for m in failed if "fail" in m], failed  # stop() had no trouble

    # the footprint is computed and recorded, the run marked FAILED
    fp = run.footprint
    assert fp.final
    assert fp.gpu_energy_kwh * J_PER_KWH == pytest.approx(TOTAL_W * fp.duration_s, rel=0.03)
    eval_fp = fp.phases["eval"]
    assert eval_fp.duration_s == pytest.approx(0.2, abs=0.1)
    assert eval_fp.gpu_energy_kwh * J_PER_KWH == pytest.approx(
        TOTAL_W * eval_fp.duration_s, rel=0.05, abs=TOTAL_W * 0.02
    )
    (journal,) = jr.journal_files(jdir)
    c = jr.read(journal)
    assert c.summary["status"] == "FAILED" and c.end["status"] == "FAILED"
    assert c.unsent == [] and run.mlflow.delivered
    client = MlflowClient(mlflow_server.uri)
    r = client.get_run(run.mlflow.run_id)
    assert r.info.status == "FAILED" and r.data.tags["greenml.status"] == "failed"
    assert r.data.metrics["greenml/energy_kwh"] == pytest.approx(fp.energy_kwh)
    doc = json.loads(
        Path(
            client.download_artifacts(r.info.run_id, "greenml/footprint.json", str(tmp_path))
        ).read_text()
    )
    assert doc["energy_kwh"] == pytest.approx(fp.energy_kwh)
    assert doc["gpu_energy_kwh"] == pytest.approx(fp.gpu_energy_kwh)


# == 3. fork: a torch DataLoader's workers ================================================


def test_dataloader_fork_workers_neither_measure_nor_write(tmp_path):
    """Two fork workers of a real DataLoader: no greenml thread and no journal handle in
    them, greenml's API a no-op (phase, step) or an error (snapshot, stop) there, and a
    journal written by the parent alone, each record once."""
    pytest.importorskip("torch")
    jdir = tmp_path / "journal"
    args = {
        "uri": None,  # the journal alone: what is checked is who writes it
        "journal_dir": str(jdir),
        "experiment": None,
        "interval": 0.1,
        "items": 48,
        "item_s": 0.02,
    }
    child = Child("dataloader", args, tmp_path / "cwd", "dataloader")
    done = child.wait_for("done", 120.0)
    assert child.finish(60.0) == 0, child.stderr()[-3000:]
    parent = child.pid
    assert done["batches"] == 12 and done["samples"] == 48
    assert len(done["batch_pids"]) == 2 and parent not in done["batch_pids"]
    assert done["parent_threads"].count("greenml-sampler") == 1
    assert done["after_threads"].count("greenml-sampler") == 1  # still one, after the loop
    assert done["threads_at_end"] == []
    workers = done["workers"]
    assert sorted(w["pid"] for w in workers) == done["batch_pids"]
    for w in workers:
        assert not [t for t in w["threads"] if t.startswith("greenml")], w
        assert w["journal_open"] is False, w  # the inherited handle points at /dev/null
        assert w["sigterm_default"] is True, w
        assert f"process {parent}" in w["raised"]["snapshot"], w
        assert f"process {parent}" in w["raised"]["stop"], w

    (journal,) = jr.journal_files(jdir)
    c = jr.read(journal)
    assert c.bad_lines == []
    single_writer(c, parent)
    lines = raw_lines(journal)
    assert len(lines) == len(set(lines)), "a line written twice (a worker flushed the buffer)"
    assert [r["t"] for r in c.records].count("summary") == 1
    assert c.summary["status"] == "FINISHED" and c.end["status"] == "FINISHED"
    assert done["gpu_j"] == pytest.approx(TOTAL_W * done["duration_s"], rel=0.03)
    # the phase and step the workers tried are nowhere: no 'augment' phase, 48 samples
    assert "augment" not in c.summary["footprint"]["phases"]
    assert c.summary["metrics"]["greenml/samples"] == 48


# == 4. spawn: a Pool importing greenml ===================================================


def test_spawned_pool_workers_import_greenml_and_leave_the_run_alone(mlflow_server, tmp_path):
    jdir = tmp_path / "journal"
    args = {
        "uri": mlflow_server.uri,
        "journal_dir": str(jdir),
        "experiment": "fault-spawn",
        "interval": 0.1,
    }
    child = Child("spawn", args, tmp_path / "cwd", "spawn")
    done = child.wait_for("done", 120.0)
    assert child.finish(60.0) == 0, child.stderr()[-3000:]
    results = done["results"]
    assert [r["x"] for r in results] == [x * x for x in range(8)]
    pids = {r["pid"] for r in results}
    assert len(pids) <= 2 and child.pid not in pids
    for r in results:
        assert r["greenml_imported"] is True and r["main"] == "__mp_main__", r
        assert r["greenml_threads"] == [] and r["journal_open"] is False, r
        assert r["sigterm_default"] is True, r
    assert done["codes"] == [0, 0]  # both workers exited cleanly
    assert done["threads_at_end"] == []
    assert jr.journal_files(jdir) == [Path(done["journal"])]  # the workers wrote none
    c = jr.read(Path(done["journal"]))
    assert c.bad_lines == [] and c.summary["status"] == "FINISHED" and c.unsent == []
    single_writer(c, child.pid)
    assert done["gpu_j"] == pytest.approx(TOTAL_W * done["duration_s"], rel=0.03)
    assert MlflowClient(mlflow_server.uri).get_run(done["run_id"]).info.status == "FINISHED"


# == 5. a tracker never stopped when the interpreter exits ================================


@pytest.fixture(scope="module")
def unstopped(mlflow_server, tmp_path_factory) -> dict[str, Any]:
    """A script that starts two trackers (``Tracker().start()``, ``track().__enter__()``),
    never stops them and returns normally: the state right after its exit, then after
    ``greenml sync``."""
    root = tmp_path_factory.mktemp("fault-unstopped")
    jdir = root / "journal"
    args = {
        "uri": mlflow_server.uri,
        "journal_dir": str(jdir),
        "experiment": "fault-unstopped",
        "interval": 0.25,
        "run_s": 1.0,
    }
    child = Child("unstopped", args, root / "cwd", "unstopped")
    started = child.wait_for("started")
    returning = child.wait_for("returning", 30.0)
    child.finish(30.0)
    client = MlflowClient(mlflow_server.uri)
    journals = [Path(p) for p in started["journals"]]
    at_exit = {p: jr.read(p) for p in journals}
    status_at_exit = {
        p: client.get_run(c.run_id).info.status if c.run_id else None for p, c in at_exit.items()
    }
    sync = CliRunner().invoke(main, ["sync", "--journal-dir", str(jdir)])
    return {
        "child": child,
        "started": started,
        "returning": returning,
        "journals": journals,
        "at_exit": at_exit,
        "status_at_exit": status_at_exit,
        "sync": sync,
        "after": {p: jr.read(p) for p in journals},
        "client": client,
    }


def test_an_unstopped_tracker_lets_the_interpreter_exit_and_sync_ends_its_run(unstopped):
    """What holds today: the process exits at once with status 0 (greenml's threads are
    daemons), the journals parse, and ``greenml sync`` ends each run with what it had."""
    child = unstopped["child"]
    assert child.rc == 0, child.stderr()[-3000:]
    assert child.t_exit - unstopped["returning"]["t"] < 5.0  # nothing held the exit
    assert set(unstopped["started"]["threads"]) >= {"greenml-sampler", "greenml-recorder"}
    sync = unstopped["sync"]
    assert sync.exit_code == 0, sync.output
    client = unstopped["client"]
    lived = unstopped["returning"]["t"] - unstopped["started"]["t"]
    for p in unstopped["journals"]:
        before, after = unstopped["at_exit"][p], unstopped["after"][p]
        assert before.bad_lines == [], p
        single_writer(before, child.pid)
        assert len([r for r in before.records if r["t"] == "metrics"]) >= 3  # points were kept
        assert after.unsent == [] and after.end is not None
        r = client.get_run(after.run_id)
        assert r.info.status in ("FINISHED", "KILLED")  # not left RUNNING
        d = r.data.metrics["greenml/duration_s"]
        gpu_j = r.data.metrics["greenml/gpu_energy_kwh"] * J_PER_KWH
        assert d <= lived + 0.5
        assert gpu_j <= TOTAL_W * d * 1.01 + 1.0  # nothing invented


def test_an_unstopped_tracker_is_finished_at_exit_with_its_summary(unstopped):
    child = unstopped["child"]
    lived = unstopped["returning"]["t"] - unstopped["started"]["t"]
    for p in unstopped["journals"]:
        c = unstopped["at_exit"][p]
        why = f"{p.name}: records {[r['t'] for r in c.records]}, end {c.end}"
        assert c.summary is not None and c.end is not None, why
        assert c.summary["status"] == "FINISHED", why
        assert c.summary["metrics"]["greenml/duration_s"] >= lived - 0.1, why
        assert unstopped["status_at_exit"][p] == "FINISHED", why
    assert child.rc == 0


# == 6. several runs in one process =======================================================
# Nothing in the docs defines them; the code makes every Tracker an independent run of its
# own (its own meters, sampler, journal and MLflow run; greenml never touches MLflow's
# active run), each measuring every GPU of the machine for its own span. So two runs at
# once both count the GPUs' energy over their overlap, and a nested block's energy is in
# the outer run too. The SIGTERM guard is installed only from the main thread.

THREADS_SEED = 61
NESTED_SEED = 62


def _check_exact(fp: Any, wall_s: float, why: str) -> None:
    """A run's figures: its own duration (as its thread timed it) and 750 W over it."""
    assert fp.final, why
    assert fp.duration_s == pytest.approx(wall_s, abs=0.1), why
    assert fp.gpu_energy_kwh * J_PER_KWH == pytest.approx(
        TOTAL_W * fp.duration_s, rel=0.03, abs=TOTAL_W * 0.02
    ), why
    by_index = {d.index: d.energy_kwh * J_PER_KWH for d in fp.devices if d.kind == "gpu"}
    for i, w in enumerate(WATTS):
        assert by_index[i] == pytest.approx(w * fp.duration_s, rel=0.03, abs=w * 0.02), why
    bad = [f for f in fp.flags if f.startswith(("read_errors", "device_lost", "implausible"))]
    assert bad == [], why


def test_two_runs_in_two_threads_at_once_are_separate_and_exact(mlflow_server, tmp_path):
    rng = random.Random(THREADS_SEED)
    plan = {  # name: (start delay, length); b starts later and ends after a stopped
        "a": (0.0, rng.uniform(0.8, 1.1)),
        "b": (rng.uniform(0.2, 0.4), rng.uniform(1.2, 1.5)),
    }
    why = f"seed={THREADS_SEED} plan={plan}"
    before = signal.getsignal(signal.SIGTERM)
    runs: dict[str, Any] = {}
    walls: dict[str, float] = {}
    steps: dict[str, int] = {}
    handlers: list[Any] = []
    errors: list[BaseException] = []
    go = threading.Barrier(2)

    def job(name: str) -> None:
        try:
            delay, length = plan[name]
            go.wait()
            time.sleep(delay)
            jdir = tmp_path / name
            with _tracked(mlflow_server.uri, jdir, "fault-threads", run_name=name) as run:
                t0 = time.monotonic()
                handlers.append(signal.getsignal(signal.SIGTERM))
                n = 0
                while time.monotonic() - t0 < length:
                    time.sleep(0.01)
                    run.step(samples=1)
                    n += 1
                walls[name] = time.monotonic() - t0
            runs[name], steps[name] = run, n
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    with _sim():
        threads = [threading.Thread(target=job, args=(n,)) for n in plan]
        for t in threads:
            t.start()
        time.sleep(plan["b"][0] + 0.3)  # both running now
        samplers = [t.name for t in threading.enumerate() if t.name == "greenml-sampler"]
        for t in threads:
            t.join(60)
    assert errors == [], why
    assert len(samplers) == 2, why  # one sampler per run
    assert all(h is before for h in handlers), why  # no guard from a thread
    assert signal.getsignal(signal.SIGTERM) is before
    a, b = runs["a"], runs["b"]
    assert a.greenml_run_id != b.greenml_run_id and a.mlflow.run_id != b.mlflow.run_id, why
    assert a.mlflow.journal != b.mlflow.journal, why
    client = MlflowClient(mlflow_server.uri)
    for name, run in runs.items():
        fp = run.footprint
        _check_exact(fp, walls[name], f"{why} run {name}")
        assert fp.samples == steps[name] and fp.steps == steps[name], why  # no cross-talk
        r = client.get_run(run.mlflow.run_id)
        assert r.info.status == "FINISHED" and r.data.tags["mlflow.runName"] == name, why
        assert r.data.metrics["greenml/gpu_energy_kwh"] == pytest.approx(fp.gpu_energy_kwh)
        c = jr.read(Path(run.mlflow.journal))
        assert c.bad_lines == [] and c.unsent == [] and c.summary["status"] == "FINISHED", why
    # both runs count the GPUs over their overlap: together more than the machine drew
    union = max(plan["a"][1], plan["b"][0] + walls["b"])
    together = (a.footprint.gpu_energy_kwh + b.footprint.gpu_energy_kwh) * J_PER_KWH
    assert together > TOTAL_W * (union + 0.3), why


def test_nested_blocks_are_two_independent_runs(mlflow_server, tmp_path):
    rng = random.Random(NESTED_SEED)
    a, b, c, d = (rng.uniform(0.2, 0.4) for _ in range(4))
    why = f"seed={NESTED_SEED} outer-only {a:.3f} s, inner {b:.3f} + eval {c:.3f} s, {d:.3f} s"
    before = signal.getsignal(signal.SIGTERM)
    with (
        _sim(),
        _tracked(mlflow_server.uri, tmp_path / "o", "fault-nested", run_name="outer") as outer,
    ):
        t_outer = time.monotonic()
        time.sleep(a)
        outer_handler = signal.getsignal(signal.SIGTERM)
        with _tracked(mlflow_server.uri, tmp_path / "i", "fault-nested", run_name="inner") as inner:
            t_inner = time.monotonic()
            inner_handler = signal.getsignal(signal.SIGTERM)
            time.sleep(b)
            with inner.phase("eval"):
                time.sleep(c)
            inner.step(samples=5)
            inner_wall = time.monotonic() - t_inner
        after_inner = signal.getsignal(signal.SIGTERM)
        time.sleep(d)  # the outer run measures on after the inner one closed its meters
        outer.step(samples=3)
        outer_wall = time.monotonic() - t_outer
    assert signal.getsignal(signal.SIGTERM) is before, why  # both guards unwound
    assert outer_handler is not before and inner_handler is not outer_handler, why
    assert after_inner == outer_handler, why  # the inner put the outer's back

    ofp, ifp = outer.footprint, inner.footprint
    _check_exact(ofp, outer_wall, f"{why}: outer")
    _check_exact(ifp, inner_wall, f"{why}: inner")
    assert ofp.duration_s >= ifp.duration_s + a + d - 0.05, why  # + the inner's stop
    # phases and work stay in their own run
    assert set(ifp.phases) == {"train", "eval"} and set(ofp.phases) == {"train"}, why
    assert ifp.phases["eval"].gpu_energy_kwh * J_PER_KWH == pytest.approx(
        TOTAL_W * c, rel=0.05, abs=TOTAL_W * 0.05
    ), why
    assert (ifp.samples, ofp.samples) == (5, 3), why
    client = MlflowClient(mlflow_server.uri)
    ro, ri = client.get_run(outer.mlflow.run_id), client.get_run(inner.mlflow.run_id)
    assert ro.info.run_id != ri.info.run_id, why
    assert "mlflow.parentRunId" not in ri.data.tags, why  # not an MLflow child run
    assert ro.info.status == ri.info.status == "FINISHED", why
    assert ro.data.metrics["greenml/gpu_energy_kwh"] == pytest.approx(ofp.gpu_energy_kwh)
    assert ri.data.metrics["greenml/gpu_energy_kwh"] == pytest.approx(ifp.gpu_energy_kwh)
