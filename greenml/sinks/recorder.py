"""The recorder: one background thread that writes the journal and feeds MLflow.

Every ``log_interval_s`` it takes a snapshot of the run, appends a time-series record
to the journal, fsyncs, and then sends whatever MLflow does not have yet. Training never
waits on it: the store is reached only from this thread, and a store that is down is
detected with one TCP connection (not MLflow's minutes of retries). At the end the
summary is written to the journal by the caller, so it is on disk before anything is
sent; the thread then gets a bounded time to deliver it.

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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from greenml import schema
from greenml.errors import warn
from greenml.footprint import Footprint
from greenml.sinks.mlflow import MlflowTarget, is_rejection, redact_uri

logger = logging.getLogger(__name__)

THREAD_NAME = "greenml-recorder"
SENDER_NAME = "greenml-sender"
MAX_CSV_ROWS = 1000  # timeseries.csv keeps at most this many rows (evenly thinned)
FINAL_TIMEOUT_S = 15.0  # how long the end of a run waits for MLflow to take the summary


@dataclass(frozen=True)
class Delivery:
    """Where a run's records went: the MLflow run (once known) and the journal."""

    uri: str | None  # credentials redacted
    run_id: str | None
    experiment_id: str | None
    delivered: bool  # MLflow has every record, the summary included
    journal: str | None  # the journal file, or None with journal=False


class Recorder:
    """Journal + MLflow for one run. ``snapshot`` returns the figures so far."""

    def __init__(
        self,
        *,
        snapshot: Callable[[], Footprint | None],
        gpu_joules: Callable[[], tuple[float, dict[int, float]]] | None = None,
        journal: Any,  # Journal | MemoryJournal
        target: MlflowTarget | None,
        start: dict[str, Any],
        interval_s: float,
        intensity_is_final: bool = True,
        clock: Callable[[], float] = time.monotonic,
        start_s: float = 0.0,
        wall_start_s: float | None = None,
        final_timeout_s: float = FINAL_TIMEOUT_S,
        step: Callable[[], int | None] | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._step = step  # the trainer's step now, or None: seconds since the start
        self._gpu_joules = gpu_joules
        self.journal = journal
        self.target = target
        self._start = start
        self._interval_s = interval_s
        self._intensity_is_final = intensity_is_final
        self._clock = clock
        self._start_s = start_s
        self._wall_start_s = time.time() if wall_start_s is None else wall_start_s
        self._final_timeout_s = final_timeout_s
        self._stop = threading.Event()  # ends the ticker
        self._wake = threading.Event()  # something new to send
        self._ticker: threading.Thread | None = None
        self._thread: threading.Thread | None = None  # the sender
        self._send_lock = threading.Lock()  # one delivery at a time
        self._pending_lock = threading.Lock()  # guards _pending only (held briefly)
        self._rows_lock = threading.Lock()  # ticks vs the end of the run
        self._pending: list[dict[str, Any]] = []
        self._retry: set[int] = set()  # seqs whose send failed midway: replay with dedupe
        self._noted: set[str] = set()  # warnings about kept params, said once
        self._down = False  # warned about the store being away, not yet back
        self._run_known = False
        self._tried_run = False  # an attempt to create the MLflow run was made
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

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Start the two threads: one writes a point every interval (never delayed by
        the network), the other sends what is pending whenever there is something new."""
        self._ticker = threading.Thread(target=self._tick_loop, name=THREAD_NAME, daemon=True)
        self._thread = threading.Thread(target=self._send_loop, name=SENDER_NAME, daemon=True)
        self._ticker.start()
        if self.target is not None:
            self._thread.start()

    def _tick_loop(self) -> None:
        while True:
            try:
                self.tick()
            except Exception as e:  # never let one bad tick end the recording
                logger.warning("greenml: recording a time-series point failed", exc_info=True)
                warn(
                    f"recording a time-series point failed ({type(e).__name__}: {e}); "
                    "the run goes on, its time series may have gaps"
                )
            self._wake.set()
            # points on a fixed grid: a slow tick does not shift the next ones, and a late
            # one brings no burst of catch-up points (the next is at least half an interval
            # away, so two points never share a millisecond)
            elapsed = self._clock() - self._start_s
            k = math.floor(elapsed / self._interval_s + 0.5) + 1
            if self._stop.wait(max(self._start_s + k * self._interval_s - self._clock(), 0.0)):
                return

    def _send_loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            self._deliver()
            if self._finished and (not self._pending or self._down):
                return  # all sent, or the store is away at the end: the journal keeps it

    def tick(self, fp: Footprint | None = None) -> dict[str, Any]:
        """Record one time-series point (journal first) and queue it for MLflow."""
        with self._rows_lock:
            if self._finished:
                return {}
            fp = self._snapshot() if fp is None else fp
            if fp is None:  # the run is stopping: the summary is the last point
                return {}
            return self._tick(fp)

    def _tick(self, fp: Footprint) -> dict[str, Any]:
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
        record = self.journal.append(
            {"t": "metrics", "ts": self._ts(elapsed), **self._step_of(elapsed), "metrics": values}
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

    def finish(self, fp: Footprint, status: str) -> None:
        """Write the summary to the journal (on disk before this returns), stop the
        thread and give it ``final_timeout_s`` to deliver everything to MLflow."""
        with self._rows_lock:
            if self._finished:
                return
            self._finished = True
            self._stop.set()
            self._keep_row(fp, fp.duration_s, _gpu_joules_of(fp), final=True)
            csv_text = self.timeseries_csv()
        gid = self._start["greenml_run_id"]
        tags = schema.run_tags(fp, node=self._start["node"], greenml_run_id=gid, status=status)
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
        if self.target is None:
            self.journal.close()
            return
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._deliver()
        else:
            self._wake.set()
            thread.join(self._final_timeout_s)
            if thread.is_alive():
                warn(
                    f"MLflow at {redact_uri(self.target.tracking_uri)} did not take the run's "
                    f"summary within {self._final_timeout_s:.0f} s; it is safe in the journal "
                    f"{self.where}: run `greenml sync` to send it"
                )
                return  # the sender may still deliver; the journal stays open for it
        if self._pending:
            warn(
                f"{len(self._pending)} record(s) of this run, its summary among them, are not "
                f"in MLflow ({redact_uri(self.target.tracking_uri)}); they are safe in the "
                f"journal {self.where}: run `greenml sync` to send them"
            )
        self.journal.close()

    def delivery(self) -> Delivery:
        t = self.target
        with self._pending_lock:
            delivered = t is not None and self._run_known and not self._pending
        return Delivery(
            uri=redact_uri(t.tracking_uri) if t is not None else None,
            run_id=t.run_id if t is not None else None,
            experiment_id=t.experiment_id if t is not None else None,
            delivered=delivered,
            journal=self.journal_file,
        )

    # -- MLflow ---------------------------------------------------------------------

    def _queue(self, record: dict[str, Any]) -> None:
        if self.target is not None:
            with self._pending_lock:
                self._pending.append(record)

    def _deliver(self) -> None:
        """Send the pending records in order; stop at the first failure (kept for the
        next try, or for ``greenml sync``). The ticker only ever waits for the short
        ``_pending_lock``, never for the network."""
        target = self.target
        if target is None:
            return
        with self._send_lock:  # one delivery at a time
            if not self._pending:
                return
            if not target.reachable():
                self._went_down("it does not accept connections")
                return
            sent: list[int] = []
            try:
                if not self._run_known:
                    # a fresh greenml run id is in no store yet, unless an earlier try
                    # created the run and lost the answer: only then search by its tag
                    search, self._tried_run = self._tried_run, True
                    target.ensure_run(self._start, search=search)
                    # on disk before any record is sent in this place, so that a replay
                    # places the rest of them the same way
                    block = target.block.to_record()
                    self.journal.append({"t": "run", "run_id": target.run_id, "block": block})
                    self.journal.flush()
                    self._run_known = True
                while True:
                    with self._pending_lock:
                        if not self._pending:
                            break
                        rec = self._pending[0]
                    try:
                        notes = target.send(rec, dedupe=rec["seq"] in self._retry)
                    except Exception as e:
                        if not is_rejection(e):
                            self._retry.add(rec["seq"])  # it may have partly arrived
                            raise
                        # refused, not unanswered: retrying cannot help, and it must not
                        # hold up the records behind it; it stays unsent in the journal
                        warn(
                            f"MLflow refused a record of this run ({str(e).splitlines()[0]}); "
                            f"it stays in the journal {self.where}"
                        )
                        notes = None
                    else:
                        self._retry.discard(rec["seq"])
                        sent.append(rec["seq"])
                    for note in notes or ():
                        if note not in self._noted:
                            self._noted.add(note)
                            warn(note)
                    with self._pending_lock:
                        self._pending.pop(0)
            except Exception as e:
                self._went_down(str(e).splitlines()[0] if str(e) else type(e).__name__)
                return
            finally:
                self.journal.mark_sent(sent)
            if self._down:
                warn(
                    f"MLflow at {redact_uri(target.tracking_uri)} is back; the waiting records "
                    "were sent"
                )
                self._down = False

    def _went_down(self, why: str) -> None:
        if not self._down:
            assert self.target is not None
            warn(
                f"MLflow at {redact_uri(self.target.tracking_uri)} cannot be reached ({why}). "
                f"Training continues; the records wait in the journal {self.where} and are "
                "sent when it is back, or run `greenml sync`."
            )
            self._down = True

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
    return {i: kwh * 3.6e6 for i, kwh in schema.gpu_energy_by_index(fp).items()}


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.9g}"


def _fmt3(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}"
