"""Energy counters that refresh on a grid: finding the grid and stamping values on it.

Vendor-neutral: a :class:`Counter` reads its device through a callable returning
millijoules (``read_mj``) that raises :class:`~greenml.errors.MeasurementError`; the
vendor modules (``nvml.py``, ``amd.py``) supply it through the device layer
(:mod:`greenml.meters.gpu`).

A GPU energy counter refreshes on a grid (about 100 ms on NVIDIA); a read between
refreshes returns the value of the last refresh. :meth:`CounterGrid.poll` finds that
grid by reading the counter at about 1 ms until it changes (at most a few refresh
periods, in the sampler's thread, never the training thread). Each later value is then
stamped with the refresh instant it belongs to, not with the moment it was read, so the
ledger can split energy exactly at phase boundaries and at the start and stop. The grid
is found again after 0.5 s, then at doubling gaps up to every 32 s: each time, the
refreshes counted since the first anchor give the period to a fraction of a
millisecond, so stamps do not drift. Outside those short windows a counter is read no
faster than it refreshes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from greenml.errors import DeviceLostError, MeasurementError
from greenml.meters.base import Clock, Reading

NOMINAL_REFRESH_S = 0.1
_POLL_S = 0.001
_FIRST_RESYNC_S = 0.5
_AMBIGUOUS_S = 0.002  # a counter read this close to a predicted refresh is not stamped
_LEAD_S = 0.003  # a re-synchronisation starts polling this long before the predicted refresh
# Re-synchronisations double their gap up to this: each one lengthens the baseline the
# period is measured over, so the stamps drift less than the 2 ms ambiguity margin
# between them (and three missed refreshes find the grid afresh anyway).
_MAX_RESYNC_S = 32.0


@dataclass
class Counter:
    """One device's energy counter and what is known of its refresh grid."""

    key: str  # the channel key its readings carry
    read_mj: Callable[[], int]
    nominal_s: float = NOMINAL_REFRESH_S  # the refresh period the vendor documents
    period_s: float = NOMINAL_REFRESH_S
    anchor_s: float | None = None  # a refresh instant; refreshes at anchor + k * period
    first_anchor_s: float | None = None  # the first refresh found: the period's baseline
    first_anchor_w: float = 0.0  # half-width of the poll bracket that found it
    period_lo_s: float = -math.inf  # what the synchronisations so far say of the period
    period_hi_s: float = math.inf
    last_mj: int | None = None
    last_read_s: float | None = None
    last_point_s: float | None = None
    last_point_mj: int | None = None  # the value of the last point emitted
    last_rate_w: float | None = None  # power between the last two points emitted
    misses: int = 0
    last_sync_s: float = -math.inf
    next_sync_s: float = math.inf  # when to find the grid again (refines the period)
    sync_gap_s: float = _FIRST_RESYNC_S
    lost: bool = False
    pending: list[Reading] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.period_s = self.nominal_s

    def failed(self, t: float, e: MeasurementError) -> Reading:
        """The reading for a failed read at ``t``; a lost device stays lost."""
        if isinstance(e, DeviceLostError):
            self.lost = True
        return Reading(self.key, t, error=str(e), lost=self.lost)


class CounterGrid:
    """Synchronises and stamps refreshed counters on one clock. ``sleep`` is how the
    polls wait (tests pass one that moves a manual clock)."""

    def __init__(
        self, *, clock: Clock = time.monotonic, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.clock = clock
        self.sleep = sleep

    @staticmethod
    def grid_point(c: Counter, t: float) -> float:
        """The latest refresh instant at or before ``t``."""
        assert c.anchor_s is not None
        k = math.floor((t - c.anchor_s) / c.period_s + 1e-9)
        return c.anchor_s + k * c.period_s

    def poll(
        self,
        counters: list[Counter],
        changes: int,
        after_s: float,
        budget_s: float,
        start_at_s: float | None = None,
    ) -> None:
        """Read the counters every ~1 ms until each has changed ``changes`` times at
        instants later than ``after_s``, or the budget runs out. Records the refresh
        instants found and queues the values they carry as readings. With
        ``start_at_s``, sleep until then first (just before a predicted refresh), so a
        re-synchronisation costs a handful of reads instead of a period's worth."""
        if start_at_s is not None:
            wait = start_at_s - self.clock()
            if 0 < wait <= 2 * max(c.nominal_s for c in counters):
                self.sleep(wait)
        todo: dict[int, Counter] = {}
        before: dict[int, int] = {}
        seen: dict[int, list[tuple[float, int, float]]] = {}  # (instant, value, half-width)
        prev_t = self.clock()
        for c in counters:
            if c.lost:
                continue
            try:
                v = c.read_mj()
            except MeasurementError as e:
                c.pending.append(c.failed(prev_t, e))
                continue
            if c.last_mj is not None and v != c.last_mj:
                self._queue_into(c, self.stamp(c, prev_t, v))
            c.last_mj, c.last_read_s = v, prev_t
            todo[id(c)], before[id(c)], seen[id(c)] = c, v, []
        by_id = dict(todo)
        deadline = prev_t + budget_s
        while todo:
            self.sleep(_POLL_S)
            t = self.clock()
            if t <= prev_t or t > deadline:
                break  # a frozen (manual) clock, or the budget is spent
            for k, c in list(todo.items()):
                try:
                    v = c.read_mj()
                except MeasurementError as e:
                    c.pending.append(c.failed(t, e))
                    del todo[k]
                    continue
                c.last_read_s = t
                if v != c.last_mj:
                    instant = (prev_t + t) / 2.0
                    seen[k].append((instant, v, (t - prev_t) / 2.0))
                    c.last_mj = v
                    if sum(1 for i, _, _ in seen[k] if i > after_s) >= changes:
                        del todo[k]
            prev_t = t
        for k, found in seen.items():
            c = by_id[k]
            if not found:
                continue
            new, new_w = found[-1][0], found[-1][2]
            if c.anchor_s is not None and c.first_anchor_s is not None:
                # Refreshes since the first anchor: their count is certain while the
                # period is known to within a few percent, and the baseline only grows,
                # so the bounds on the period narrow as 1 / (refreshes counted).
                n = round((new - c.first_anchor_s) / c.period_s)
                if n >= 2:
                    base_lo = (new - new_w) - (c.first_anchor_s + c.first_anchor_w)
                    base_hi = (new + new_w) - (c.first_anchor_s - c.first_anchor_w)
                    self._bound_period(c, base_lo / n, base_hi / n)
            elif len(found) >= 2:
                # Two consecutive refreshes bound the period.
                (t1, _, w1), (t2, _, w2) = found[-2], found[-1]
                if 0.3 * c.nominal_s <= t2 - t1 <= 3:
                    self._bound_period(c, (t2 - w2) - (t1 + w1), (t2 + w2) - (t1 - w1))
            c.anchor_s = new
            if c.first_anchor_s is None:
                c.first_anchor_s, c.first_anchor_w = found[0][0], found[0][2]
            c.last_sync_s = new
            c.next_sync_s = new + c.sync_gap_s
            c.sync_gap_s = min(2 * c.sync_gap_s, _MAX_RESYNC_S)
            c.misses = 0
            # The value before the first change was refreshed one period earlier.
            points = [(found[0][0] - c.period_s, before[k]), *((i, v) for i, v, _ in found)]
            for instant, v in points:
                if v != c.last_point_mj and (c.last_point_s is None or instant > c.last_point_s):
                    c.pending.append(Reading(c.key, instant, energy_j=v / 1000.0))
                    c.last_point_s, c.last_point_mj = instant, v

    @staticmethod
    def _bound_period(c: Counter, lo: float, hi: float) -> None:
        """Narrow what is known of the period to ``[lo, hi]`` and pick a period in it.

        Every synchronisation bounds the period (poll brackets are ~1 ms wide, wider when
        the thread was scheduled late); the bounds intersect, so they only narrow. The
        period in use stays unchanged while it fits them (the nominal one, at first), so
        a late poll cannot pull it off; otherwise the middle of the bounds is taken.
        Bounds that no longer intersect mean the grid itself changed: start afresh."""
        if hi < lo:
            return
        new_lo, new_hi = max(lo, c.period_lo_s), min(hi, c.period_hi_s)
        if new_hi < new_lo:
            new_lo, new_hi = lo, hi
        c.period_lo_s, c.period_hi_s = new_lo, new_hi
        if not new_lo <= c.period_s <= new_hi:
            c.period_s = (new_lo + new_hi) / 2.0

    @staticmethod
    def _queue_into(c: Counter, r: Reading | None) -> None:
        if r is not None:
            c.pending.append(r)

    def synchronise(self, counters: list[Counter]) -> list[Counter]:
        """Find each counter's refresh grid (before the periodic reads); returns the
        counters whose grid was not found."""
        if not counters:
            return []
        budget = 2.5 * max(c.nominal_s for c in counters)
        self.poll(counters, changes=2, after_s=-math.inf, budget_s=budget)
        return [c for c in counters if c.anchor_s is None]

    def stamp(self, c: Counter, t: float, v: int) -> Reading | None:
        """A counter value read at ``t``, stamped with the refresh instant it belongs to;
        None when it carries nothing new. Updates the counter's state."""
        prev_read = c.last_read_s
        c.last_read_s = t
        if v == c.last_mj and c.last_point_s is not None:
            if c.anchor_s is not None and self.grid_point(c, t) > c.last_point_s + 0.5 * c.period_s:
                c.misses += 1  # a refresh was due but the value did not move
            return None
        changed = c.last_mj is not None and v != c.last_mj
        if c.anchor_s is not None:
            instant = self.grid_point(c, t)
            nearest = instant if t - instant < instant + c.period_s - t else instant + c.period_s
            if abs(t - nearest) < _AMBIGUOUS_S:
                # Read right at a predicted refresh: the value may be from the refresh
                # there or from the one before. Pick the one the recent power explains.
                picked = self._disambiguate(c, v, [nearest - c.period_s, nearest])
                if picked is None:
                    return None  # leave it for the next read; a counter loses nothing
                instant = picked
            c.last_mj = v
            if c.last_point_s is not None and instant <= c.last_point_s:
                c.misses += 1  # the value moved but no refresh was due: the grid drifted
                return None
            c.misses = 0
        else:
            c.last_mj = v
            if not changed or prev_read is None:
                # No grid and no change seen yet: the value is from an unknown refresh up
                # to a period ago. It only becomes a point once it is seen to change.
                return None
            instant = (prev_read + t) / 2.0  # the middle of the interval it changed in
        if c.last_point_s is not None and c.last_point_mj is not None and instant > c.last_point_s:
            c.last_rate_w = (v - c.last_point_mj) / 1000.0 / (instant - c.last_point_s)
        c.last_point_s, c.last_point_mj = instant, v
        return Reading(c.key, instant, energy_j=v / 1000.0)

    @staticmethod
    def _disambiguate(c: Counter, v: int, candidates: list[float]) -> float | None:
        """The refresh instant among ``candidates`` that value ``v`` belongs to, or None
        when that cannot be told."""
        later = [
            x for x in candidates if c.last_point_s is None or x > c.last_point_s + c.period_s / 2
        ]
        if len(later) <= 1:
            return later[0] if later else None
        if c.last_rate_w is None or c.last_point_s is None or c.last_point_mj is None:
            return None
        base_s, base_mj, rate = c.last_point_s, c.last_point_mj, c.last_rate_w
        return min(later, key=lambda x: abs(base_mj + 1000.0 * rate * (x - base_s) - v))

    def read(self, c: Counter, t: float) -> Reading | None:
        """The counter's value at ``t`` as a stamped reading, or None when nothing new
        (or when read faster than it refreshes). Raises ``MeasurementError``."""
        if c.last_read_s is not None:
            # Read no faster than the counter refreshes: with its grid known, only once a
            # refresh is due since the last read (as soon as it is: a phase boundary
            # wants the value just before it); without, once a period has passed.
            if c.anchor_s is not None:
                if self.grid_point(c, t) <= self.grid_point(c, c.last_read_s):
                    return None
            elif t - c.last_read_s < 0.9 * c.period_s:
                return None
        if c.anchor_s is None:
            return self.stamp(c, t, c.read_mj())
        for _ in range(3):
            # Right at a predicted refresh the value may be from either side of it, and
            # only a guess from the recent power could tell which: wait the few ms until
            # the refresh has surely happened, so the stamp is certain.
            ahead = self.grid_point(c, t + _AMBIGUOUS_S) - t
            if -_AMBIGUOUS_S < ahead < _AMBIGUOUS_S:
                self.sleep(ahead + 1.25 * _AMBIGUOUS_S)
                t = self.clock()
            v = c.read_mj()
            done = self.clock()
            # The thread may have been held between taking the time and reading (the
            # training thread holds the GIL for up to 5 ms at a time): if a refresh was
            # due meanwhile, the value's refresh is not certain; read again.
            if self.grid_point(c, done + _AMBIGUOUS_S) == self.grid_point(c, t - _AMBIGUOUS_S):
                return self.stamp(c, t, v)
            t = done
        return self.stamp(c, t, v)

    def mid_refresh_after(self, counters: list[Counter], after_s: float) -> float | None:
        """The first instant after ``after_s`` half-way between two refreshes of the first
        counter whose grid is known (a read there is never ambiguous), or None."""
        for c in counters:
            if c.anchor_s is not None and not c.lost:
                mid = self.grid_point(c, after_s) + c.period_s / 2.0
                return mid if mid > after_s else mid + c.period_s
        return None

    def resynchronise_due(self, counters: list[Counter]) -> None:
        """Find the grid again for the counters whose time has come (or whose grid
        moved), polling just before their next predicted refresh."""
        now = self.clock()
        resync = []
        for c in counters:
            if c.lost:
                continue
            if c.misses >= 3 and now - c.last_sync_s > 10:
                c.anchor_s = None  # the grid moved: find it afresh
                c.last_sync_s = now
                resync.append(c)
            elif c.anchor_s is not None and now >= c.next_sync_s:
                resync.append(c)
        if not resync:
            return
        start_at = None
        anchored = [c for c in resync if c.anchor_s is not None]
        if len(anchored) == len(resync):
            # Just before the earliest predicted refresh that is still ahead.
            start_at = (
                min(self.grid_point(c, now + _LEAD_S) + c.period_s for c in anchored) - _LEAD_S
            )
        self.poll(
            resync,
            changes=1,
            after_s=-math.inf,
            budget_s=1.5 * max(c.nominal_s for c in resync) + _LEAD_S,
            start_at_s=start_at,
        )

    def wait_past(self, counters: list[Counter], stop_s: float) -> None:
        """Wait (at most ~2.5 refresh periods) for each counter's first two refreshes
        after ``stop_s``, then allow an immediate read."""
        live = [c for c in counters if not c.lost]
        if live:
            budget = 2.5 * max(c.nominal_s for c in live)
            self.poll(live, changes=2, after_s=stop_s, budget_s=budget)
        for c in live:
            c.last_read_s = None  # allow the read that follows
