"""The ledger: joules per device and phase, from meter readings.

Data flow: meters return :class:`~greenml.meters.base.Reading` objects; the
:class:`Ledger` turns each channel's readings into *segments* (an interval of time and
the joules used in it) and attributes every segment to the phases active during it.

How a segment is formed depends on what the reading carries:

- ``energy_j`` (a counter, or a model that integrates itself): the difference of two
  cumulative values over the interval between their timestamps. Gaps between good
  readings (a failed read) lose nothing, because the counter kept counting.
- ``power_w`` only (a device without a counter): the trapezoid between two power
  readings.

A segment that holds a boundary (a phase switch, the start or the stop) waits for the next
segment and is placed by :func:`step_pieces`; any other is spread evenly over its
interval. This is what lets a 0.3 s phase on a device whose counter refreshes every
100 ms get its own energy instead of 0 J or a neighbour's.

Memory is bounded whatever the run length: per channel the ledger keeps running sums,
the last point, and a downsampled power series (:class:`Series`); phase transitions
(:class:`~greenml.phases.PhaseTimeline`) are pruned once every channel has moved past
them.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from greenml.errors import warn
from greenml.meters.base import Channel, Reading, implausible_power, power_ceiling_w
from greenml.phases import PhaseTimeline

# Segments shorter than this do not serve as a neighbour's power (too noisy).
_MIN_RATE_SPAN_S = 0.01
# A device whose every reading was zero for this long (and at least this many readings)
# is flagged: no device draws nothing while powered.
_ZERO_FOREVER_S = 1.5
_ZERO_FOREVER_READINGS = 3
# A counter jump is more energy than the device can draw in this long (or in the segment,
# if longer): a refresh stamped a few ms after the last one (the sampler held up) can show
# a rate far above the board's limit without anything being wrong.
_JUMP_SPAN_S = 1.0
# A power reading this low does not show a device at work.
_IDLE_FLOOR_W = 1.0
# A counter segment whose rate is below this share of the power read at both of its ends
# did not count what the device drew: the counter stood still or fell behind.
_STUCK_RATIO = 0.25
# How far a power reading may sit from a segment's end and still speak for it, seconds.
_STUCK_EDGE_S = 0.3
# A counter that did not move for this long while the device drew power is stuck.
_STILL_S = 0.5


def step_pieces(
    a: float, b: float, joules: float, p_left: float | None, p_right: float | None
) -> list[tuple[float, float, float]]:
    """How a counter interval's measured ``joules`` were spread over ``[a, b]``, for an
    interval that a boundary (a phase switch, the start or the stop) cuts.

    The counter says how much energy the interval used, not when. The model: the power
    changed at most once inside it, from the power of the interval before (``p_left``) to
    the power of the interval after (``p_right``), at the instant that makes the two steady
    pieces add up to the measured energy. This is exact for a phase that changes the
    power at its boundary, and for a bursty trace whose steps are further apart than an
    interval, wherever the boundary falls relative to the step. When the interval's mean
    power is not between its neighbours' (a burst inside it, or a neighbour missing), the
    power is taken as steady over the interval, which is the best that can be said.
    Returns ``(start, end, joules)`` pieces each spent at a steady rate.
    """
    if p_left is None or p_right is None or b <= a:
        return [(a, b, joules)]
    mean = joules / (b - a)
    lo, hi = min(p_left, p_right), max(p_left, p_right)
    if not lo < mean < hi:
        return [(a, b, joules)]
    # p_left (tau - a) + p_right (b - tau) = joules
    tau = (joules + p_left * a - p_right * b) / (p_left - p_right)
    tau = min(max(tau, a), b)
    return [(a, tau, p_left * (tau - a)), (tau, b, joules - p_left * (tau - a))]


@dataclass(frozen=True)
class SeriesPoint:
    """One downsampled point: mean power over ``[t_start_s, t_end_s]`` and the
    channel's attributed energy at ``t_end_s``."""

    t_start_s: float
    t_end_s: float
    power_w: float
    energy_j: float


class Series:
    """A power series whose memory is bounded by ``max_points``.

    Points are buckets of at least ``bucket_s`` seconds. When the list is full, adjacent
    buckets are merged pairwise and the bucket width doubles, so a week-long run keeps
    the same number of points as a minute-long one, each covering more time.
    """

    def __init__(self, bucket_s: float = 1.0, max_points: int = 512) -> None:
        if max_points < 2:
            raise ValueError(f"max_points must be >= 2, got {max_points!r}")
        self.bucket_s = bucket_s
        self.max_points = max_points
        self.points: list[SeriesPoint] = []
        self._open_start: float | None = None
        self._open_end = 0.0
        self._open_j = 0.0
        self._energy_j = 0.0

    def add(self, t0: float, t1: float, joules: float) -> None:
        if t1 <= t0:
            return
        if self._open_start is None:
            self._open_start = t0
        self._open_end = t1
        self._open_j += joules
        self._energy_j += joules
        if self._open_end - self._open_start >= self.bucket_s:
            self._close()

    def flush(self) -> None:
        if self._open_start is not None and self._open_end > self._open_start:
            self._close()

    def _close(self) -> None:
        assert self._open_start is not None
        span = self._open_end - self._open_start
        self.points.append(
            SeriesPoint(self._open_start, self._open_end, self._open_j / span, self._energy_j)
        )
        self._open_start, self._open_j = None, 0.0
        if len(self.points) > self.max_points:
            merged = []
            for a, b in zip(self.points[0::2], self.points[1::2], strict=False):
                span = b.t_end_s - a.t_start_s
                joules = a.power_w * (a.t_end_s - a.t_start_s) + b.power_w * (
                    b.t_end_s - b.t_start_s
                )
                merged.append(SeriesPoint(a.t_start_s, b.t_end_s, joules / span, b.energy_j))
            if len(self.points) % 2:
                merged.append(self.points[-1])
            self.points = merged
            self.bucket_s *= 2


@dataclass
class ChannelState:
    """What the ledger keeps per channel: O(1) in the run's length."""

    channel: Channel
    energy_j: float = 0.0  # attributed to [start, stop] (after the channel's share)
    phase_j: dict[str, float] = field(default_factory=dict)
    last_t: float | None = None  # time of the last point
    last_e: float | None = None  # cumulative joules at last_t (meter's origin)
    last_p: tuple[float, float] | None = None  # (t_s, power_w) of the last power reading
    slope_w: float | None = None  # latest power estimate, watts (before share)
    head_pending_until: float | None = None  # first point came after start: gap to fill
    errors: int = 0
    first_error: str | None = None
    lost_at_s: float | None = None
    extrapolated_s: float = 0.0  # seconds filled by extrapolation, not measurement
    queue: list[tuple[float, float, float]] = field(default_factory=list)  # held segments
    prev_rate_w: float | None = None  # mean power of the last credited segment
    # A range the meter states for a channel it cannot measure exactly (no counter):
    # joules attributed to the run, low and high (None while no range was stated).
    low_j: float | None = None
    high_j: float | None = None
    range_prev: tuple[float, float, float] | None = None  # (t_s, low, high) cumulative
    edge_j: float = 0.0  # uncertainty of the last cumulative value, at the window's end
    gap_s: float = 0.0  # seconds the meter filled across read gaps
    series: Series = field(default_factory=Series)
    # Readings that cannot be measurements (absurd, negative or NaN power; a counter
    # jump above the device's ceiling), dropped and counted.
    implausible: int = 0
    first_implausible: str | None = None
    # Counter faults bridged with the power around them: seconds, and what happened.
    bridged_s: float = 0.0
    bridges: dict[str, int] = field(default_factory=dict)  # "reset" / "jump" / "stuck"
    pending_bridge: tuple[float, float, float | None] | None = None  # (a, b, rate before)
    last_seg: tuple[float, float, float] | None = None  # the last counter segment, unchecked
    slow_seg: tuple[float, float, float, float, float] | None = None  # (a, b, J, p_a, p_b)
    # Zero-forever: readings seen, and whether any showed energy or power above zero.
    readings: int = 0
    nonzero: bool = False
    first_t: float | None = None
    latest_t: float | None = None  # the last good reading's time, energy or power


def zero_forever(st: ChannelState) -> bool:
    """Whether a channel read zero (power and energy) all along, long enough to tell."""
    return (
        not st.nonzero
        and st.readings >= _ZERO_FOREVER_READINGS
        and st.first_t is not None
        and st.latest_t is not None
        and st.latest_t - st.first_t >= _ZERO_FOREVER_S
        and st.energy_j == 0.0
    )


class Ledger:
    """Joules per channel and phase, from readings. Thread-safe.

    ``default_phase`` names the time outside any explicit phase.
    """

    def __init__(
        self,
        channels: Iterable[Channel],
        start_s: float,
        default_phase: str = "train",
        series_bucket_s: float = 1.0,
        series_max_points: int = 512,
    ) -> None:
        self.start_s = start_s
        self.stop_s: float | None = None
        self.default_phase = default_phase
        self._lock = threading.RLock()
        self.channels: dict[str, ChannelState] = {}
        for ch in channels:
            if ch.key in self.channels:
                raise ValueError(f"duplicate channel key {ch.key!r}")
            self.channels[ch.key] = ChannelState(
                ch, series=Series(series_bucket_s, series_max_points)
            )
        self.timeline = PhaseTimeline(start_s, default_phase)
        self.warnings: list[str] = []
        self._notified: set[str] = set()
        self._version = 0

    # -- phases ---------------------------------------------------------------------

    def set_phase(self, t_s: float, name: str) -> None:
        """From ``t_s`` on, energy goes to phase ``name``. O(1), and it never waits for
        the sampler: the training thread calls it."""
        self.timeline.switch(t_s, name)

    def phase_names(self) -> list[str]:
        return list(self.timeline.names)

    def version(self) -> tuple[int, int]:
        """Changes when any figure may have: readings taken, a warning, the stop (first
        number), or a phase switch (second)."""
        return self._version, self.timeline.switches

    def phase_durations(self, now_s: float) -> dict[str, float]:
        """Seconds spent in each phase up to ``now_s`` (or the stop)."""
        return self.timeline.durations(now_s)

    def _prune(self) -> None:
        """Drop transitions that no channel can still need: those before the earliest
        point any live channel may still attribute from (none while a channel has no
        point yet or still owes its head gap)."""
        live = [s for s in self.channels.values() if s.lost_at_s is None]
        if not live or any(s.last_t is None or s.head_pending_until is not None for s in live):
            return
        self.timeline.prune(min(s.queue[0][0] if s.queue else s.last_t for s in live))  # type: ignore[type-var]

    # -- attribution ------------------------------------------------------------------

    def _credit(self, st: ChannelState, a: float, b: float, joules: float) -> None:
        """Credit ``joules`` spent uniformly over ``[a, b]``, clipped to the run."""
        if b > a and joules > 0:
            self._credit_pieces(st, [(a, b, joules)])

    def _credit_pieces(
        self, st: ChannelState, pieces: list[tuple[float, float, float]], *, series: bool = True
    ) -> None:
        """Credit each ``(a, b, joules)``, spent at a steady rate over ``[a, b]``, to the
        phases active in it, clipped to the run (and to the power series unless
        ``series=False``: a copy's provisional credit must not reach the shared series)."""
        lo_run = self.start_s
        hi_run = math.inf if self.stop_s is None else self.stop_s
        for a, b, joules in pieces:
            lo, hi = max(a, lo_run), min(b, hi_run)
            if hi <= lo or joules <= 0:
                continue
            rate = joules / (b - a) * st.channel.share
            for name, seconds in self.timeline.time_in(lo, hi):
                st.phase_j[name] = st.phase_j.get(name, 0.0) + rate * seconds
            st.energy_j += rate * (hi - lo)
            if series:
                st.series.add(lo, hi, rate * (hi - lo))

    def _has_cut(self, a: float, b: float) -> bool:
        """Whether attribution changes strictly inside ``(a, b)``: a phase switch, the
        start or the stop."""
        if self.timeline.has_transition(a, b):
            return True
        return any(t is not None and a < t < b for t in (self.start_s, self.stop_s))

    def _segment(self, st: ChannelState, a: float, b: float, joules: float) -> None:
        """A measured segment. One that contains a boundary (a phase switch, the start or
        the stop) waits for the next segment, so its energy can be placed with the power
        on both sides (see :func:`step_pieces`)."""
        if b <= a or joules < 0:
            return
        st.queue.append((a, b, joules))
        self._drain(st, final=False)

    def _drain(self, st: ChannelState, *, final: bool) -> None:
        while st.queue:
            a, b, joules = st.queue[0]
            cut = self._has_cut(a, b)
            if cut and len(st.queue) < 2 and not final:
                return
            right = st.queue[1] if len(st.queue) > 1 else None
            p_right = None
            if right is not None and right[1] - right[0] >= _MIN_RATE_SPAN_S:
                p_right = right[2] / (right[1] - right[0])
            if cut:
                self._credit_pieces(st, step_pieces(a, b, joules, st.prev_rate_w, p_right))
            else:
                self._credit_pieces(st, [(a, b, joules)])
            st.queue.pop(0)
            if b - a >= _MIN_RATE_SPAN_S:
                st.prev_rate_w = joules / (b - a)

    def add_many(self, readings: Iterable[Reading]) -> None:
        with self._lock:
            self._version += 1
            self.timeline.merge()
            for r in readings:
                st = self.channels.get(r.key)
                if st is None:
                    raise KeyError(f"reading for unknown channel {r.key!r}")
                self._add(st, r)
            self._prune()

    def _add(self, st: ChannelState, r: Reading) -> None:
        if st.lost_at_s is not None:
            return
        if r.power_w is not None and not r.implausible:
            why = implausible_power(st.channel, r.power_w)
            if why is not None:
                r = Reading(r.key, r.t_s, error=why, implausible=True)
        if r.energy_j is not None and not math.isfinite(r.energy_j):
            r = Reading(
                r.key, r.t_s, error=f"an energy reading of {r.energy_j} J", implausible=True
            )
        if r.implausible:
            self._implausible(st, r.error or "an implausible reading")
            return
        if r.error is not None or (r.energy_j is None and r.power_w is None):
            st.errors += 1
            if st.first_error is None:
                st.first_error = r.error or "empty reading"
                warn(
                    f"reading {st.channel.key} failed ({st.first_error}); measurement goes "
                    f"on, and the run is flagged read_errors:{st.channel.key}"
                )
            if r.lost:
                st.lost_at_s = r.t_s
                warn(
                    f"{st.channel.key} ({st.channel.name}) was lost {r.t_s - self.start_s:.1f} s "
                    "into the run; its energy after the last good reading is not counted "
                    f"(flagged device_lost:{st.channel.key})"
                )
            return
        st.readings += 1
        st.first_t = r.t_s if st.first_t is None else st.first_t
        st.latest_t = r.t_s if st.latest_t is None else max(st.latest_t, r.t_s)
        if r.power_w is not None and r.power_w > 0:
            st.nonzero = True
        if r.extra:
            self._add_range(st, r)
        if r.energy_j is not None:
            self._add_energy(st, r.t_s, r.energy_j)
        elif r.power_w is not None and st.channel.method == "counter":
            self._stuck_power(st, r.t_s, r.power_w, r.extra.get("counter_still_s", 0.0))
        elif st.channel.method != "counter":
            # Only devices without a counter integrate power; on a counter channel a
            # power-only reading just updates the power used for extrapolation.
            self._add_power_only(st, r.t_s, r.power_w)  # type: ignore[arg-type]
        if r.power_w is not None:
            st.last_p = (r.t_s, r.power_w)
            if r.energy_j is None or st.slope_w is None:
                st.slope_w = r.power_w

    def _add_energy(self, st: ChannelState, t: float, e: float) -> None:
        if st.last_t is None:
            st.last_t, st.last_e = t, e
            if t > self.start_s:
                st.head_pending_until = t
            return
        assert st.last_e is not None
        if t <= st.last_t:
            return  # no newer information
        de = e - st.last_e
        dt = t - st.last_t
        if de < 0 or de > power_ceiling_w(st.channel) * max(dt, _JUMP_SPAN_S):
            # A meter unwraps wraparound: a counter that went back was reset (a driver
            # reload); one that jumped beyond what the device can draw answered garbage.
            # Either way the segment's energy is unknown: bridge it with the power on both
            # sides (the segment before, and the next one).
            kind = "reset" if de < 0 else "jump"
            if kind == "jump":
                self._implausible(st, f"a counter jump of {de:,.3f} J in {dt:.3f} s")
            self._bridge_start(st, st.last_t, t, kind)
            st.last_t, st.last_e = t, e
            return
        if de > 0:
            st.nonzero = True
        rate = de / dt
        if st.pending_bridge is not None:
            self._bridge_end(st, rate)
        st.slope_w = rate
        self._fill_head(st)
        self._segment(st, st.last_t, t, de)
        st.last_seg = (st.last_t, t, de)
        st.last_t, st.last_e = t, e

    # -- faults: implausible readings, counter resets, jumps and stuck counters ----------

    def _implausible(self, st: ChannelState, why: str) -> None:
        st.implausible += 1
        if st.first_implausible is None:
            st.first_implausible = why
            ch = st.channel
            self._notify(
                f"{ch.key} ({ch.name}) answered {why}: not a measurement, so it is dropped and "
                f"its energy comes from the readings around it (flagged "
                f"implausible_readings:{ch.key})"
            )

    def _bridge_start(self, st: ChannelState, a: float, b: float, kind: str) -> None:
        """A counter segment whose energy is unknown: held until the next segment tells
        the power after it."""
        if st.pending_bridge is not None:  # two in a row: the first with what is known
            self._bridge_end(st, None)
        st.pending_bridge = (a, b, st.slope_w)
        st.bridges[kind] = st.bridges.get(kind, 0) + 1
        if st.bridges[kind] == 1:
            ch = st.channel
            what = "went back (a reset, e.g. a driver reload)" if kind == "reset" else "jumped"
            self._notify(
                f"{ch.key} ({ch.name}): the energy counter {what} between "
                f"{a - self.start_s:.1f} and {b - self.start_s:.1f} s into the run; that stretch "
                f"is bridged with the power before and after it (flagged "
                f"counter_bridged:{ch.key})"
            )

    def _bridge_end(self, st: ChannelState, rate_after: float | None) -> None:
        assert st.pending_bridge is not None
        a, b, before = st.pending_bridge
        st.pending_bridge = None
        rates = [r for r in (before, rate_after) if r is not None]
        if not rates:
            return  # nothing on either side: the stretch stays unmeasured (flagged)
        rate = sum(rates) / len(rates)
        self._segment(st, a, b, rate * (b - a))
        st.bridged_s += b - a

    def _stuck_power(self, st: ChannelState, t: float, watts: float, still_s: float) -> None:
        """A power reading on a counter channel (read with the counter now and then).

        A counter that did not move at all over half a second or more (the meter says how
        long it has seen it still, ``counter_still_s``) while
        the power read at both of its ends shows the GPU at work is stuck: no GPU draws
        nothing. That segment's energy is the power's (the trapezoid), and so is the
        segment just before it when the counter's rate there had already fallen below a
        quarter of the power at its ends (the counter stopped inside it). A slow segment
        alone proves nothing (a workload can dip between two reads) and is left as
        counted."""
        before, seg = st.last_p, st.last_seg
        if (
            still_s >= _STILL_S
            and st.last_t is not None
            and st.last_e is not None
            and t - st.last_t >= _STILL_S
            and (seg is None or seg[1] <= st.last_t)
        ):
            # The counter has not moved since its last point: a segment of 0 J up to now
            # (the counter still holds last_e), checked like any other.
            self._segment(st, st.last_t, t, 0.0)
            seg = (st.last_t, t, 0.0)
            st.last_t = t
        if seg is None or before is None:
            return
        a, b, joules = seg
        if not (before[0] <= a + _STUCK_EDGE_S and b <= t + _STUCK_EDGE_S):
            return  # the power readings do not bracket the segment
        st.last_seg = None
        busy = min(before[1], watts)
        suspect, st.slow_seg = st.slow_seg, None
        if busy <= _IDLE_FLOOR_W:
            return
        if joules / (b - a) >= _STUCK_RATIO * busy:
            return
        if joules > _IDLE_FLOOR_W * (b - a) or b - a < _STILL_S:
            st.slow_seg = (a, b, joules, before[1], watts)  # fell behind, or a dip
            return
        if suspect is not None and suspect[1] == a:
            sa, sb, sj, pa, pb = suspect
            self._bridge_stuck(st, sa, sb, (pa + pb) / 2.0 * (sb - sa) - sj, pb)
        self._bridge_stuck(st, a, b, (before[1] + watts) / 2.0 * (b - a) - joules, watts)

    def _bridge_stuck(
        self, st: ChannelState, a: float, b: float, missing_j: float, watts: float
    ) -> None:
        self._credit(st, a, b, missing_j)
        st.bridged_s += b - a
        st.bridges["stuck"] = st.bridges.get("stuck", 0) + 1
        if st.bridges["stuck"] == 1:
            ch = st.channel
            self._notify(
                f"{ch.key} ({ch.name}): the energy counter counted far less than the "
                f"{watts:g} W the GPU drew, {a - self.start_s:.1f}-{b - self.start_s:.1f} s into "
                f"the run (a stuck counter): that stretch is bridged with the power readings "
                f"(flagged counter_bridged:{ch.key})"
            )

    def _add_range(self, st: ChannelState, r: Reading) -> None:
        """Sum a stated range (cumulative ``energy_low_j`` / ``energy_high_j`` in
        ``extra``) over the part of each reading interval inside the run."""
        low, high = r.extra.get("energy_low_j"), r.extra.get("energy_high_j")
        st.edge_j = r.extra.get("energy_edge_j", st.edge_j)
        st.gap_s = r.extra.get("gap_s", st.gap_s)
        if low is None or high is None:
            return
        prev, st.range_prev = st.range_prev, (r.t_s, low, high)
        if prev is None or r.t_s <= prev[0]:
            return
        t0 = prev[0]
        hi_run = math.inf if self.stop_s is None else self.stop_s
        inside = max(0.0, min(r.t_s, hi_run) - max(t0, self.start_s)) / (r.t_s - t0)
        share = st.channel.share * inside
        st.low_j = (st.low_j or 0.0) + (low - prev[1]) * share
        st.high_j = (st.high_j or 0.0) + (high - prev[2]) * share

    def _add_power_only(self, st: ChannelState, t: float, p: float) -> None:
        if st.last_p is None or st.last_t is None:
            st.last_t = t
            if t > self.start_s:
                # Nothing before the first reading: hold its power back to the start.
                self._credit(st, self.start_s, t, p * (t - self.start_s))
                st.extrapolated_s += t - self.start_s
            return
        t0, p0 = st.last_p
        if t <= t0:
            return
        self._segment(st, t0, t, (p0 + p) / 2.0 * (t - t0))
        st.last_t = t

    def _fill_head(self, st: ChannelState) -> None:
        """A counter channel whose first point came after the start: extrapolate the
        first measured power back to the start."""
        if st.head_pending_until is None or st.slope_w is None:
            return
        gap = st.head_pending_until - self.start_s
        self._credit(st, self.start_s, st.head_pending_until, st.slope_w * gap)
        st.extrapolated_s += gap
        st.head_pending_until = None

    def _notify(self, msg: str) -> None:
        """Tell the user ``msg`` once, on stderr. Its flag is the channel state's own
        (``implausible_readings:<key>``...), set by :func:`greenml.assemble.usage_from_ledger`;
        the message is not itself a flag."""
        with self._lock:
            if msg not in self._notified:
                self._version += 1
                self._notified.add(msg)
                warn(msg)

    def _warn(self, msg: str, *, log: bool = True) -> None:
        """Record a warning in the run's flags (once), and log it unless done already."""
        with self._lock:
            if msg not in self.warnings:
                self._version += 1
                self.warnings.append(msg)
                if log:
                    warn(msg)

    # -- closing ----------------------------------------------------------------------

    def mark_stop(self, stop_s: float) -> None:
        """Fix the end of the run: later readings only count up to ``stop_s``."""
        with self._lock:
            if self.stop_s is None:
                self._version += 1
                self.timeline.mark_stop(stop_s)
                self.timeline.merge()
                self.stop_s = stop_s

    def close(self, stop_s: float) -> None:
        """After the final readings: extrapolate any channel whose last point is earlier
        than the stop with its last power."""
        with self._lock:
            self.mark_stop(stop_s)
            self._version += 1
            for st in self.channels.values():
                if st.pending_bridge is not None:
                    self._bridge_end(st, None)
                if st.head_pending_until is not None and st.slope_w is not None:
                    self._fill_head(st)
                self._drain(st, final=True)
                if zero_forever(st):
                    ch = st.channel
                    self._notify(
                        f"{ch.key} ({ch.name}) read zero for the whole run ({st.readings} "
                        "readings): no powered device draws nothing, so its energy is "
                        f"missing, not zero (flagged zero_readings:{ch.key})"
                    )
                if st.lost_at_s is not None or st.last_t is None:
                    continue
                if st.last_t < stop_s and st.slope_w is not None:
                    gap = stop_s - st.last_t
                    self._credit(st, st.last_t, stop_s, st.slope_w * gap)
                    st.extrapolated_s += gap
                st.series.flush()

    # -- views --------------------------------------------------------------------------

    def gpu_joules_now(self, now_s: float) -> dict[int, float]:
        """Joules per GPU index with each GPU's accounting brought up to ``now_s``:
        segments held back for phase shaping are counted and the last power is carried to
        the present. A GPU without a rate yet (its first readings) is left out. For the
        mean power between time-series points; the totals stay the ledger's own."""
        out: dict[int, float] = {}
        with self._lock:
            for st in self.channels.values():
                ch = st.channel
                if ch.kind != "gpu" or ch.index is None:
                    continue
                if st.slope_w is None or st.last_t is None:
                    continue  # no rate yet: its joules now are not known
                j = st.energy_j + sum(q[2] for q in st.queue) * ch.share
                if st.lost_at_s is None:
                    j += st.slope_w * ch.share * max(0.0, now_s - st.last_t)
                out[ch.index] = out.get(ch.index, 0.0) + j
        return out

    def joules_ahead(self, now_s: float) -> float:
        """The IT energy (joules, after shares) used since each channel's last reading, at
        its last power: what the totals will hold once readings catch up with ``now_s``.
        For figures compared across time (the forecast, budgets); the totals stay the
        ledger's own."""
        ahead = 0.0
        with self._lock:
            for st in self.channels.values():
                if st.slope_w is None or st.last_t is None or st.lost_at_s is not None:
                    continue
                ahead += st.slope_w * st.channel.share * max(0.0, now_s - st.last_t)
        return ahead

    def totals(self) -> dict[str, ChannelState]:
        """A consistent copy of every channel's state (a shallow copy with its own
        phase and queue containers: a snapshot costs microseconds, not an __init__).

        Segments still held for a boundary to settle are counted in the copy, split in
        proportion to time: the figures so far include them, and the ledger's own
        attribution replaces that split once the next reading arrives."""
        with self._lock:
            out = {}
            for k, st in self.channels.items():
                c = object.__new__(ChannelState)
                c.__dict__.update(st.__dict__)
                c.phase_j, c.queue = dict(st.phase_j), []
                self._credit_pieces(c, st.queue, series=False)
                out[k] = c
            return out
