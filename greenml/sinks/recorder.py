"""The recorder: writes the journal on one thread and feeds the sinks from others.

Every ``log_interval_s`` the ticker thread takes a snapshot of the run, appends a
time-series record to the journal and fsyncs; a sender thread per target (MLflow, the
directory sink: :class:`~greenml.sinks.base.Target`) then sends whatever that target does
not have yet. Training never waits on it: a target is reached only from its own sender
thread, a slow or hanging target delays no other, and a target that is down is detected
cheaply (for MLflow, one TCP connection rather than MLflow's minutes of retries). At the
end the summary is written to the journal by the caller, so it is on disk before anything
is sent; the senders then share one bounded wait to deliver it. The recorder knows the
targets only through their protocol; each keeps its own queue, state and ``sent`` marks.

MLflow knows a point by its name, step, millisecond timestamp and value, and ``greenml
sync`` skips the points a run already has. So no two records of a run may share a
millisecond: the grid keeps the time-series points at least half an interval apart, and the
summary, the run's last point, is stamped at least one millisecond after the point before it
(the end is not on the grid: a point taken as the run stops carries the end's own time).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from greenml import schema
from greenml.errors import warn
from greenml.footprint import J_PER_KWH, Footprint
from greenml.sinks.base import Target

logger = logging.getLogger(__name__)

THREAD_NAME = "greenml-recorder"
SENDER_NAME = "greenml-sender"  # one per target: greenml-sender-<target name>
MAX_CSV_ROWS = 1000  # timeseries.csv keeps at most this many rows (evenly thinned)
FINAL_TIMEOUT_S = 15.0  # how long the end of a run waits for the targets to take the summary


@dataclass(frozen=True)
class Delivery:
    """Where a run's records went in one target (``Tracker.mlflow``: MLflow's): its run
    (once known) and the journal."""

    uri: str | None  # credentials redacted
    run_id: str | None
    experiment_id: str | None
    delivered: bool  # the target has every record, the summary included
    journal: str | None  # the journal file, or None with journal=False


class _Lane:
    """One target's side of the recorder: its queue, its sender thread and its state."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.pending: list[dict[str, Any]] = []  # guarded by the recorder's _pending_lock
        self.retry: set[int] = set()  # seqs whose send failed midway: replay with dedupe
        self.down = False  # warned about the target being away, not yet back
        self.down_since = 0.0  # when (monotonic) it went away
        self.run_known = False
        self.tried_run = False  # an attempt to create the target's run was made
        self.refused = 0  # records the target refused (they stay unsent in the journal)
        self.wake = threading.Event()  # something new to send
        self.send_lock = threading.Lock()  # one delivery at a time
        self.thread: threading.Thread | None = None


class Recorder:
    """The journal and the targets of one run. ``snapshot`` returns the figures so far."""

    def __init__(
        self,
        *,
        snapshot: Callable[[], Footprint | None],
        gpu_joules: Callable[[], tuple[float, dict[int, float]]] | None = None,
        journal: Any,  # Journal | MemoryJournal
        targets: Sequence[Target],
        start: dict[str, Any],
        interval_s: float,
        intensity_is_final: bool = True,
        clock: Callable[[], float] = time.monotonic,
        start_s: float = 0.0,
        wall_start_s: float | None = None,
        final_timeout_s: float = FINAL_TIMEOUT_S,
        step: Callable[[], int | None] | None = None,
        extras: Callable[[Footprint], Mapping[str, float]] | None = None,
        fresh: Callable[[], None] | None = None,
        fresh_s: float = 0.15,
    ) -> None:
        self._snapshot = snapshot
        self._step = step  # the trainer's step now, or None: seconds since the start
        self._extras = extras  # more metrics for a point (the forecast), from its footprint
        self._fresh = fresh  # asks the sampler for readings now, fresh_s before a point
        self._fresh_s = fresh_s
        self._nudge = threading.Event()  # a point was asked for, or the run is ending
        self._requested: list[int | None] = []  # steps of the points asked for
        self._gpu_joules = gpu_joules
        self.journal = journal
        self.targets = tuple(targets)
        if len({t.name for t in self.targets}) != len(self.targets):
            raise ValueError(f"two targets share a name: {[t.name for t in self.targets]}")
        self._lanes = [_Lane(t) for t in self.targets]
        self._start = start
        self._interval_s = interval_s
        self._intensity_is_final = intensity_is_final
        self._clock = clock
        self._start_s = start_s
        self._wall_start_s = time.time() if wall_start_s is None else wall_start_s
        self._final_timeout_s = final_timeout_s
        self._stop = threading.Event()  # ends the ticker
        self._ticker: threading.Thread | None = None
        self._pending_lock = threading.Lock()  # guards the lanes' pending (held briefly)
        self._rows_lock = threading.Lock()  # ticks vs the end of the run
        self._noted: set[str] = set()  # notes from the targets (kept params...), said once
        self._rows: list[dict[str, float]] = []
        self._stride = 1  # keep one tick's row in ``stride`` (doubles as rows thin out)
        self._ticks = 0
        self._last: dict[int, tuple[float, float]] = {}  # GPU -> (elapsed_s, joules) last seen
        self._last_ts: int | None = None  # the latest time-series point's timestamp (ms)
        self._finished = False
        self.journal.append({"t": "start", **start})
        self.journal.flush()

    @property
    def journal_file(self) -> str | None:
        return str(self.journal.path) if self.journal.path else None

    @property
    def where(self) -> str:
        return self.journal_file or "memory (journal=False)"

    @property
    def greenml_run_id(self) -> str:
        return str(self._start["greenml_run_id"])

    def mark_resumed(self) -> bool:
        """The run's figures now carry an earlier part (a checkpoint's): a target that has
        not placed the run yet does not add the run's earlier totals. False if one already
        placed it (its totals before this block were added)."""
        self._start["resumed"] = True
        return not any(lane.run_known for lane in self._lanes)

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Start the threads: the ticker writes a point every interval (never delayed by
        the network); each target's sender sends what is pending whenever there is
        something new."""
        self._ticker = threading.Thread(target=self._tick_loop, name=THREAD_NAME, daemon=True)
        for lane in self._lanes:
            lane.thread = threading.Thread(
                target=self._send_loop,
                args=(lane,),
                name=f"{SENDER_NAME}-{lane.target.name}",
                daemon=True,
            )
        self._ticker.start()
        for lane in self._lanes:
            assert lane.thread is not None
            lane.thread.start()

    def request_point(self, step: int | None = None) -> None:
        """Ask for a time-series point now, at ``step`` (a framework's logging step): the
        ticker thread takes it, so the caller's thread does no I/O. O(1), never blocks."""
        self._requested.append(step)
        self._nudge.set()

    def _tick_loop(self) -> None:
        asked: list[int | None] = []
        while True:
            try:
                self.tick(step=asked[-1] if asked else None)
            except Exception as e:  # never let one bad tick end the recording
                logger.warning("greenml: recording a time-series point failed", exc_info=True)
                warn(
                    f"recording a time-series point failed ({type(e).__name__}: {e}); "
                    "the run goes on, its time series may have gaps"
                )
            last_s = self._clock()
            for lane in self._lanes:
                lane.wake.set()
            next_point = self._next_point(last_s)
            if next_point is None:
                return
            asked = next_point

    def _next_point(self, last_s: float) -> list[int | None] | None:
        """Wait for the next point; return the steps of the points asked for (empty for a
        grid point), or None when the run ends.

        Points sit on a fixed grid: a slow tick does not shift the next ones, and a late
        one brings no burst of catch-up points (the next is at least half an interval
        away, so two points never share a millisecond). A point asked for comes at once,
        and a grid point within half an interval after it is left out. The sampler is asked
        for fresh readings ``fresh_s`` before each point."""
        lead = self._fresh_s if self._fresh is not None else 0.0
        while True:
            elapsed = self._clock() - self._start_s
            k = math.floor(elapsed / self._interval_s + 0.5) + 1
            due = self._start_s + k * self._interval_s
            nudged = self._nudge.wait(max(due - lead - self._clock(), 0.0))
            fresh = False
            if not nudged and self._fresh is not None:
                self._fresh()
                fresh = True
                nudged = self._nudge.wait(max(due - self._clock(), 0.0))
            if self._stop.is_set():
                return None
            if not nudged:
                if self._clock() - last_s >= self._interval_s / 2:
                    return []
                continue
            self._nudge.clear()
            asked, self._requested = self._requested, []
            if not asked:
                continue
            if self._fresh is not None and not fresh:
                self._fresh()
                if self._stop.wait(self._fresh_s):
                    return None
            return asked

    def _send_loop(self, lane: _Lane) -> None:
        while True:
            lane.wake.wait()
            lane.wake.clear()
            self._deliver(lane)
            if self._finished and (not lane.pending or lane.down):
                return  # all sent, or the target is away at the end: the journal keeps it

    def tick(self, fp: Footprint | None = None, *, step: int | None = None) -> dict[str, Any]:
        """Record one time-series point (journal first) and queue it for the targets;
        ``step`` overrides the step provider's (a point a framework asked for)."""
        with self._rows_lock:
            if self._finished:
                return {}
            fp = self._snapshot() if fp is None else fp
            if fp is None:  # the run is stopping: the summary is the last point
                return {}
            return self._tick(fp, step)

    def _tick(self, fp: Footprint, step: int | None = None) -> dict[str, Any]:
        elapsed = fp.duration_s
        if self._ticks == 0:
            # energy at the start is zero by definition: the exact base for each GPU's first
            # interval (the first point comes a few ms in, before any counter refresh)
            self._last = {i: (0.0, 0.0) for i in schema.gpu_energy_by_index(fp)}
            now_s, joules = 0.0, dict.fromkeys(self._last, 0.0)
        elif self._gpu_joules is not None:
            now_s, joules = self._gpu_joules()
        else:
            now_s, joules = elapsed, _gpu_joules_of(fp)
        power: dict[int, float] = {}
        for i, j in joules.items():  # GPUs with no rate yet are absent: no power this time
            t0, j0 = self._last.get(i, (0.0, 0.0))
            if now_s > t0:
                power[i] = (j - j0) / (now_s - t0)
            self._last[i] = (now_s, j)
        values = schema.timeseries_values(fp, power)
        if self._extras is not None:
            values.update(self._extras(fp))
        ts = self._ts(elapsed)
        if self._last_ts is not None and ts <= self._last_ts:
            ts = self._last_ts + 1  # two points never share a millisecond
        where = {"step": int(step), "trainer_step": True} if step is not None else None
        record = self.journal.append(
            {"t": "metrics", "ts": ts, **(where or self._step_of(elapsed)), "metrics": values}
        )
        self._last_ts = record["ts"]
        if self._ticks == 0:
            params = schema.run_params(fp, with_intensity=self._intensity_is_final)
            tags = schema.run_tags(
                fp,
                node=self._start["node"],
                greenml_run_id=self._start["greenml_run_id"],
                status="running",
            )
            self._queue(self.journal.append({"t": "params", "params": params, "tags": tags}))
        self._queue(record)
        self._keep_row(fp, now_s, joules, final=False)
        self._ticks += 1
        self.journal.flush()
        return record

    def finish(
        self, fp: Footprint, status: str, *, more_tags: Mapping[str, str] | None = None
    ) -> None:
        """Write the summary to the journal (on disk before this returns), stop the
        threads and give the senders ``final_timeout_s`` (together) to deliver everything.
        ``more_tags`` are more of the run's tags (the budget that stopped it)."""
        with self._rows_lock:
            if self._finished:
                return
            self._finished = True
            self._stop.set()
            self._nudge.set()
            self._keep_row(fp, fp.duration_s, _gpu_joules_of(fp), final=True)
            csv_text = self.timeseries_csv()
        gid = self._start["greenml_run_id"]
        tags = schema.run_tags(fp, node=self._start["node"], greenml_run_id=gid, status=status)
        tags.update(more_tags or {})
        ts = self._ts(fp.duration_s)
        if self._last_ts is not None and ts <= self._last_ts:
            # a point taken as the run stopped, or within the end's millisecond: the summary
            # must stay a point of its own, after it (same name, step and timestamp would
            # make the two one point to MLflow and to sync's replay)
            ts = self._last_ts + 1
        summary = self.journal.append(
            {
                "t": "summary",
                "ts": ts,
                **self._step_of(fp.duration_s),
                "status": status,
                "metrics": schema.summary_metrics(fp),
                "params": schema.run_params(fp),
                "tags": tags,
                "footprint": schema.footprint_document(fp, gid),
                "csv": csv_text,
            }
        )
        self._queue(summary)
        self.journal.append({"t": "end", "status": status, "ts": summary["ts"]})
        self.journal.flush()
        if self._ticker is not None:
            self._ticker.join(5.0)
        if not self._lanes:
            self.journal.close()
            return
        # one deadline for every target: the end of the run waits at most final_timeout_s
        deadline = time.monotonic() + self._final_timeout_s
        waiting: list[_Lane] = []
        for lane in self._lanes:
            if lane.thread is None or not lane.thread.is_alive():
                self._deliver(lane)  # never started (or already gone): deliver here
            else:
                lane.wake.set()
                waiting.append(lane)
        lingering: list[_Lane] = []
        for lane in waiting:
            assert lane.thread is not None
            lane.thread.join(max(deadline - time.monotonic(), 0.0))
            if lane.thread.is_alive():
                lingering.append(lane)
                warn(
                    f"{lane.target.where} did not take the run's summary within "
                    f"{self._final_timeout_s:.0f} s; it is safe in the journal {self.where}: "
                    "run `greenml sync` to send it"
                )
        for lane in self._lanes:
            if lane.pending and lane not in lingering:
                t = lane.target
                warn(
                    f"{len(lane.pending)} record(s) of this run, its summary among them, are "
                    f"not in {t.label} ({t.uri}); they are safe in the journal {self.where}: "
                    "run `greenml sync` to send them"
                )
            elif lane.refused and lane not in lingering:
                t = lane.target
                warn(
                    f"{lane.refused} record(s) of this run were refused by {t.label} "
                    f"({t.uri}); they are safe in the journal {self.where}: run `greenml "
                    "sync` to send them (to a new run, if the store lost this one)"
                )
        if not lingering:  # else a sender may still deliver: the journal stays open for it
            self.journal.close()

    def delivery(self, target: str = "mlflow") -> Delivery:
        """Where the records went in the target named ``target`` (by default MLflow's,
        for ``Tracker.mlflow``); all ``None`` and not delivered if the run has no such
        target."""
        lane = next((x for x in self._lanes if x.target.name == target), None)
        if lane is None:
            return Delivery(None, None, None, delivered=False, journal=self.journal_file)
        t = lane.target
        with self._pending_lock:
            delivered = lane.run_known and not lane.pending and not lane.refused
        return Delivery(
            uri=t.uri,
            run_id=t.run_id,
            experiment_id=t.experiment_id,
            delivered=delivered,
            journal=self.journal_file,
        )

    # -- the targets ----------------------------------------------------------------

    def _queue(self, record: dict[str, Any]) -> None:
        with self._pending_lock:
            for lane in self._lanes:
                lane.pending.append(record)

    def _deliver(self, lane: _Lane) -> None:
        """Send the lane's pending records in order; stop at the first failure (kept for
        the next try, or for ``greenml sync``). The ticker only ever waits for the short
        ``_pending_lock``, never for a target."""
        target = lane.target
        with lane.send_lock:  # one delivery at a time
            if not lane.pending:
                return
            if not target.reachable():
                self._went_down(lane, target.unreachable_why)
                return
            sent: list[int] = []
            try:
                if not lane.run_known:
                    # a fresh greenml run id is in no store yet, unless an earlier try
                    # created the run and lost the answer: only then search by its tag
                    search, lane.tried_run = lane.tried_run, True
                    placed = target.ensure_run(self._start, search=search)
                    # on disk before any record is sent in this place, so that a replay
                    # places the rest of them the same way
                    self.journal.append({"t": "run", "target": target.name, **placed})
                    self.journal.flush()
                    lane.run_known = True
                while True:
                    with self._pending_lock:
                        if not lane.pending:
                            break
                        rec = lane.pending[0]
                    try:
                        notes = target.send(rec, dedupe=rec["seq"] in lane.retry)
                    except Exception as e:
                        if not target.refused(e):
                            lane.retry.add(rec["seq"])  # it may have partly arrived
                            raise
                        # refused, not unanswered: retrying cannot help, and it must not
                        # hold up the records behind it; it stays unsent in the journal
                        warn(
                            f"{target.label} refused a record of this run "
                            f"({str(e).splitlines()[0]}); it stays in the journal {self.where}"
                        )
                        lane.refused += 1
                        notes = None
                    else:
                        lane.retry.discard(rec["seq"])
                        sent.append(rec["seq"])
                    for note in notes or ():
                        if note not in self._noted:
                            self._noted.add(note)
                            warn(note)
                    with self._pending_lock:
                        lane.pending.pop(0)
            except Exception as e:
                self._went_down(lane, str(e).splitlines()[0] if str(e) else type(e).__name__)
                return
            finally:
                self.journal.mark_sent(sent, target.name)
            if lane.down:
                away = time.monotonic() - lane.down_since
                if sent:
                    warn(
                        f"{target.where} is back after {away:.1f} s; the waiting records were sent"
                    )
                else:
                    warn(
                        f"{target.where} answers again, but took none of the waiting "
                        f"records; they stay in the journal {self.where}: run `greenml "
                        "sync` to send them"
                    )
                lane.down = False

    def _went_down(self, lane: _Lane, why: str) -> None:
        if not lane.down:
            warn(
                f"{lane.target.where} cannot be reached ({why}). Training continues; the "
                f"records wait in the journal {self.where} and are sent when it is back, or "
                "run `greenml sync`."
            )
            lane.down = True
            lane.down_since = time.monotonic()

    # -- timeseries.csv ---------------------------------------------------------------

    def _keep_row(
        self, fp: Footprint, now_s: float, gpu_j: dict[int, float], *, final: bool
    ) -> None:
        """Keep a CSV row: the footprint's cumulative figures, plus (under keys starting
        with ``_``) the GPUs' joules brought up to ``now_s``, for the power columns."""
        row: dict[str, float] = {
            "elapsed_s": fp.duration_s,
            "energy_kwh": fp.energy_kwh,
            "gpu_energy_kwh": fp.gpu_energy_kwh,
            "cpu_energy_kwh": fp.cpu_energy_kwh,
            "ram_energy_kwh": fp.ram_energy_kwh,
            "_t": now_s,
        }
        for name in ("co2e_kg", "co2e_market_kg", "cost_usd"):
            value = getattr(fp, name)
            if value is not None:
                row[name] = value
        for i, kwh in sorted(schema.gpu_energy_by_index(fp).items()):
            row[f"gpu_{i}_energy_kwh"] = kwh
        for i, j in gpu_j.items():
            row[f"_j{i}"] = j
        if final:
            # the end replaces a point less than half an interval before it: a power over
            # a few milliseconds says nothing
            while self._rows and len(self._rows) > 1:
                if fp.duration_s - self._rows[-1]["elapsed_s"] >= self._interval_s / 2:
                    break
                self._rows.pop()
            self._rows.append(row)
            return
        if self._ticks % self._stride == 0:
            self._rows.append(row)
        if len(self._rows) >= MAX_CSV_ROWS:  # thin evenly: every other row, twice the stride
            self._rows = self._rows[::2]
            self._stride *= 2

    def timeseries_csv(self) -> str:
        """The kept rows as CSV. Figures are cumulative; power columns are the mean power
        between a row and the one before it (so thinning never distorts them)."""
        gpus = sorted({int(k[2:]) for r in self._rows for k in r if k.startswith("_j")})
        gpu_cols = [f"gpu_{i}_energy_kwh" for i in gpus]
        figures = ["energy_kwh", "gpu_energy_kwh", "cpu_energy_kwh", "ram_energy_kwh"]
        figures += [c for c in ("co2e_kg", "co2e_market_kg", "cost_usd") if self._has(c)]
        power_cols = ["gpu_power_w"] + [f"gpu_{i}_power_w" for i in gpus]
        header = ["elapsed_s", "time_utc", *figures, *gpu_cols, *power_cols]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        prev: dict[str, float] | None = None
        for row in self._rows:
            when = datetime.fromtimestamp(self._wall_start_s + row["elapsed_s"], tz=timezone.utc)
            line: list[Any] = [f"{row['elapsed_s']:.3f}", when.isoformat(timespec="seconds")]
            line += [_fmt(row.get(c)) for c in figures + gpu_cols]
            dt = row["_t"] - prev["_t"] if prev is not None else 0.0
            watts = [
                (row[f"_j{i}"] - prev[f"_j{i}"]) / dt
                if prev is not None and dt > 0 and f"_j{i}" in row and f"_j{i}" in prev
                else None
                for i in gpus
            ]
            known = [w for w in watts if w is not None]
            total = sum(known) if known and len(known) == len(watts) else None
            line += [_fmt3(total)] + [_fmt3(w) for w in watts]
            writer.writerow(line)
            prev = row
        return out.getvalue()

    def _has(self, column: str) -> bool:
        return any(column in r for r in self._rows)

    def _step_of(self, elapsed_s: float) -> dict[str, Any]:
        """A point's step: the trainer's (``trainer_step``: MLflow gets it as it is), else
        whole seconds since the start (placed after the run's earlier blocks)."""
        if self._step is not None:
            try:
                step = self._step()
            except Exception as e:  # a provider that fails must not cost the point
                warn(f"the step provider failed ({e!r}); this point's step is in seconds")
            else:
                if step is not None:
                    return {"step": int(step), "trainer_step": True}
        return {"step": int(elapsed_s)}

    def _ts(self, elapsed_s: float) -> int:
        return round((self._wall_start_s + elapsed_s) * 1000)


def _gpu_joules_of(fp: Footprint) -> dict[int, float]:
    return {i: kwh * J_PER_KWH for i, kwh in schema.gpu_energy_by_index(fp).items()}


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.9g}"


def _fmt3(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}"
