"""The sampler: one background thread that reads the meters into the ledger.

When to read is the whole of its job: as rarely as exactness allows (see
:class:`Sampler`); what the readings mean is the ledger's (:mod:`greenml.ledger`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence

from greenml.errors import warn
from greenml.ledger import ChannelState, Ledger, Series, SeriesPoint, step_pieces
from greenml.meters.base import Clock, Meter, Reading, as_meter
from greenml.meters.gpu import averaging_window_s

__all__ = [
    "DEFAULT_INTERVAL_S",
    "IDLE_S",
    "SETTLE_S",
    "THREAD_NAME",
    "ChannelState",
    "Ledger",
    "Sampler",
    "Series",
    "SeriesPoint",
    "step_pieces",
]

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 0.1
#: Meters that integrate by themselves (counters, models) are read this often when no
#: phase boundary is near: a GPU's counter needs reads only at boundaries and for the
#: periodic points, and every wake-up of a Python thread costs ~0.1 ms of CPU.
IDLE_S = 2.0
#: After a phase switch, those meters are read every ``interval_s`` for this long.
SETTLE_S = 1.0
THREAD_NAME = "greenml-sampler"


def _integrates_power(meter: Meter) -> bool:
    """Whether a meter's readings are power to integrate (read on the fast cadence)."""
    try:
        return any(c.method == "sampled" for c in meter.channels())
    except Exception:  # a meter that cannot say is read often, as before
        return True


class Sampler:
    """Reads the meters in one named daemon thread, as rarely as exactness allows.

    Each meter is read on one of two cadences:

    - every ``interval_s`` (0.1 s), on a fixed grid, when one of its channels integrates
      power readings (``sampled``: a GPU without an energy counter), because there the
      readings *are* the measurement;
    - every ``idle_s`` (2 s) otherwise: an energy counter or a model integrates by
      itself, so reading it more often adds nothing but cost. After a phase switch
      (:meth:`poke`, from the training thread) these meters are read at once and then
      every ``interval_s`` for ``settle_s``, so that the counter interval holding the
      boundary is one refresh long and its neighbours are known (see
      :func:`step_pieces`).

    The thread sleeps on an event, so ``stop`` and ``poke`` wake it at once; it survives
    a failing meter with one warning; it takes one final reading on stop; ``stop`` is
    safe to call twice. ``sample()`` reads every meter in the caller's thread, which is
    how tests driven by a manual clock step it.
    """

    def __init__(
        self,
        meters: Sequence[Meter],
        ledger: Ledger,
        *,
        clock: Clock = time.monotonic,
        interval_s: float = DEFAULT_INTERVAL_S,
        idle_s: float = IDLE_S,
        settle_s: float = SETTLE_S,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        self.meters = list(meters)
        self.ledger = ledger
        self.clock = clock
        self.interval_s = interval_s
        self.idle_s = max(idle_s, interval_s)
        self.settle_s = settle_s
        fast = {id(m): _integrates_power(m) for m in self.meters}
        self._fast = [m for m in self.meters if fast[id(m)]]
        self._slow = [m for m in self.meters if not fast[id(m)]]
        for m in self._fast:
            for ch in m.channels():
                window = averaging_window_s(ch)
                if window is not None and interval_s >= window:
                    warn(
                        f"interval_s={interval_s:g} is not shorter than the {window:g} s "
                        f"over which {ch.key} ({ch.name}) averages its power readings: "
                        "consecutive readings leave stretches no reading saw, and its energy "
                        f"there is estimated (flagged read_gaps:{ch.key}). Give an "
                        f"interval_s below {window:g} s (the default is {DEFAULT_INTERVAL_S:g})"
                    )
        self._stop_event = threading.Event()
        self._poke = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one sample at a time
        self._failed_meters: set[int] = set()
        self._stopped = False
        self.samples = 0
        self._next_fast = self._next_slow = math.inf

    def poke(self) -> None:
        """A phase boundary just passed (called from the training thread: O(1), never
        blocks): read the counters now rather than at the next idle tick."""
        if not self._poke.is_set():
            self._poke.set()

    # -- one sample ---------------------------------------------------------------------

    def _read(self, meter: Meter, final_s: float | None) -> list[Reading]:
        try:
            if final_s is not None:
                return as_meter(meter).read_final(final_s)
            return meter.read()
        except Exception as e:  # a meter must not raise, but tracking never breaks training
            if id(meter) not in self._failed_meters:
                self._failed_meters.add(id(meter))
                logger.debug("greenml: meter %r failed", meter, exc_info=True)
                warn(f"meter {meter!r} failed ({e}); its readings are missing while it fails")
                self.ledger._warn(f"meter {type(meter).__name__} failed: {e}", log=False)
            return []

    def sample(self, final_s: float | None = None) -> None:
        """Read every meter now (the final read when ``final_s`` is given)."""
        self._sample_some(self.meters, final_s)

    def _sample_some(self, meters: Sequence[Meter], final_s: float | None = None) -> None:
        with self._lock:
            readings: list[Reading] = []
            for m in meters:
                readings.extend(self._read(m, final_s))
            self.ledger.add_many(readings)
            self.samples += 1

    # -- thread -------------------------------------------------------------------------

    def start(self) -> None:
        """Take the first reading now, in the caller's thread (so every meter has a
        point at the start), then start the thread."""
        if self._thread is not None:
            raise RuntimeError("sampler already started")
        self.sample()
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for m in self.meters:
            try:
                as_meter(m).prepare()
            except Exception as e:
                logger.warning("greenml: preparing %r failed: %s", m, e)
        # What preparing found (a counter's first refreshes) goes to the ledger now, so
        # the run has a power from its first fraction of a second.
        try:
            self._sample_some(self._slow)
        except Exception:  # pragma: no cover - defensive: keep the thread alive
            logger.warning("greenml: sample failed", exc_info=True)
        self.schedule(self.clock())
        while True:
            now = self.clock()
            due = self.next_due()
            # While settling, boundaries need no waking: the counters are read every
            # interval anyway. Otherwise a boundary (poke) wakes the thread.
            event = self._stop_event if self._settling(now) else self._poke
            if due > now:
                event.wait(due - now)
            if self._stop_event.is_set():
                return
            try:
                self.tick(self.clock())
            except Exception:  # pragma: no cover - defensive: keep the thread alive
                logger.warning("greenml: sample failed", exc_info=True)

    def schedule(self, now: float) -> None:
        """Start the cadences at ``now`` (the thread does it after ``prepare``)."""
        self._next_fast = now + self.interval_s
        self._next_slow = now + self.idle_s

    def next_due(self) -> float:
        """When the next reading is due (a poke makes it due at once)."""
        due = min(self._next_fast, self._next_slow) if self._fast else self._next_slow
        return min(due, self.clock()) if self._poke.is_set() else due

    def tick(self, now: float) -> None:
        """Read the meters that are due at ``now``: the power-integrating ones on their
        fixed grid, the others at their idle cadence, at once after a phase boundary,
        and every ``interval_s`` while the boundary settles."""
        poked = self._poke.is_set()
        if poked:
            self._poke.clear()
        meters: list[Meter] = []
        if self._fast and now >= self._next_fast:
            meters += self._fast
            # On a fixed grid: a late wake-up does not shift the later readings.
            late = math.ceil((now - self._next_fast) / self.interval_s + 1e-9)
            self._next_fast += self.interval_s * max(1, late)
        slow = poked or now >= self._next_slow
        if slow:
            meters += self._slow
        if meters:
            self._sample_some(meters)
        if slow:
            now = self.clock()  # a read may have waited for a refresh
            self._next_slow = self._settle_at(now) if self._settling(now) else now + self.idle_s

    def _settle_at(self, now: float) -> float:
        """The next read while a boundary settles: about ``interval_s`` on, where the
        meters say a read is unambiguous (half-way between a counter's refreshes)."""
        after = now + self.interval_s / 2.0
        times = []
        for m in self._slow:
            at = getattr(m, "settle_read_at", None)
            t = at(after) if at is not None else None
            if t is not None:
                times.append(t)
        return min(times) if times else now + self.interval_s

    def _settling(self, now: float) -> bool:
        last = self.ledger.timeline.last_switch_s
        return last is not None and now - last < self.settle_s

    def stop(self, stop_s: float, timeout_s: float = 5.0) -> None:
        """Stop the thread, take the final reading and close the ledger at ``stop_s``."""
        if self._stopped:
            return
        self._stopped = True
        self.ledger.mark_stop(stop_s)
        self._stop_event.set()
        self._poke.set()  # the thread may be waiting on either
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.warning("greenml: sampler thread did not stop within %.1f s", timeout_s)
        try:
            self.sample(final_s=stop_s)
        finally:
            self.ledger.close(stop_s)
            for m in self.meters:
                try:
                    m.close()
                except Exception:
                    logger.debug("greenml: closing %r failed", m, exc_info=True)
