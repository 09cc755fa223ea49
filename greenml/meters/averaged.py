"""Energy from the power readings of a GPU without an energy counter.

Two kinds of reading, two estimators, one per channel (fed by
:class:`~greenml.meters.gpu.GpuMeter`):

:class:`AveragedEnergy` (Ampere and newer except GA100: the reading is a trailing average
``A(t) = (E(t) - E(t - W)) / W`` over a window ``W`` of 1 s). Read every ~0.1 s, each
reading says exactly how much energy its window held, so the cumulative energy chains::

    E(t_k) = E(t_k - W) + W * A(t_k)

with ``E(t_k - W)`` interpolated linearly between the stored points around it (reads
jitter; a ring of the last ~W + one step of points is kept). The chain is exact up to how
energy was spread within the very first window, which nobody saw: the model starts from
uniform power there (``E`` linear from ``t_0 - W`` to ``t_0``, slope ``A(t_0)``). Its error
``e(s)`` repeats with period ``W`` in the phase ``s = (t - t_0) mod W`` and never grows;
``e(0) = 0``, so spans of whole windows measured from the first read are exact.

The periodic error is then estimated and removed: the reconstructed energy is folded by
phase into ``BINS`` bins (running sums: O(1) memory); a real workload has no component
locked to the sampler's phase, so each bin's mean power minus the overall mean estimates
the derivative of ``e``: ``e(b * W/BINS) = sum_{j<b} (m_j - m) * W/BINS`` (knots, linear
in between, forced periodic). A chain's points are held until it has ``SETTLE_S`` (10 s)
of fold behind it, then each ``hold_s`` (2 s), and released with the settled estimate
``E_raw(t) - e(s(t))`` (monotone), stamped at the instant they refer to; at stop everything
is released with the best estimate. Memory: the ring, the held points (<= 10 s) and
3 x ``BINS`` sums, whatever the run's length.

Limit: a workload whose power repeats exactly with a period dividing 1 s (SPIKY's 250 ms)
gives the same readings as a steady one; its pattern within the second is invisible to a
1 s average, so windows shorter than a second are off by up to ~(spread x W / 4) at each
end, and ``energy_edge_j`` does not see it. Whole-second spans stay exact.

A gap between reads longer than ``W`` breaks the chain: the unseen stretch
``[t_prev, t - W]`` gets the mean of the two neighbouring readings as its estimate and
``[floor, ceiling]`` as its range (see below), is counted in ``gaps``, and a new chain
starts (with its own first-window model and fold).

:class:`PartTimeRange` (GA100 and older "instantaneous" readings: the driver averages a
``seen_s`` = 25 ms window every ``period_s`` = 100 ms, Yang et al. 2024, arXiv:2312.02741;
three quarters of the time is never seen). No estimator can be exact there: a workload
locked to the driver's grid hides its spikes from every reading (``SPIKY`` in
benchmarks/scenarios.py reads exactly like a constant 120 W). It only brackets the
trapezoid the ledger integrates: per segment ``[t0, t1]`` with readings ``p0, p1``::

    seen   = f * dt * (p0 + p1) / 2         f = seen_s / period_s = 0.25
    low    = seen + (1 - f) * dt * floor    floor = lowest reading so far
    high   = seen + (1 - f) * dt * ceiling  ceiling = the board's power limit

Ranges (both estimators) travel in ``Reading.extra`` as cumulative joules from the
channel's first reading, on the reading's ``t_s``:

- ``energy_low_j`` / ``energy_high_j``: non-decreasing; the energy between two readings
  lies in the difference of lows and the difference of highs (sum them like energy);
- ``gap_s`` (averaged only, cumulative): seconds of read gaps longer than the window,
  filled by the gap model (the run should be flagged when it is not 0);
- ``energy_edge_j`` (averaged only, not cumulative): the half-width of the uncertainty of
  the cumulative value at that instant (the first-window model's residual: 3 x the
  standard error of the fold, as a Brownian bridge pinned at the chain's phase 0, capped
  by ``(max - min power) x W / 4``); a window's bracket is widened by the edges at both
  of its ends (0 at the chain's origin), so long runs stay tight.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from greenml.meters.base import Reading

#: The part-time sampling of GA100 and older boards (Yang et al. 2024).
PART_TIME_SEEN_S = 0.025
PART_TIME_PERIOD_S = 0.1
#: Phase bins of the averaged reconstruction's periodic correction.
BINS = 10
#: How long a point is held before release, so its correction has settled.
DEFAULT_HOLD_S = 2.0
#: A chain's points are all held until it has this many seconds of fold behind it.
SETTLE_S = 10.0
#: Readings before the lowest one seen serves as the floor of unseen power.
_FLOOR_READINGS = 10
#: Coverage factor of the residual's statistical spread in ``energy_edge_j``.
_EDGE_K = 3.0


def _ceiling_w(power_limit_w: float | None, highest_w: float) -> float:
    """The most an unseen stretch could have drawn: the board's power limit (twice the
    highest reading when the limit is unknown), and never less than a reading seen."""
    return max(power_limit_w if power_limit_w else 2.0 * highest_w, highest_w)


@dataclass
class _Chain:
    """One unbroken chain of averaged readings: its origin, ring and phase fold."""

    t0: float
    ring: deque[tuple[float, float]]  # (t, raw cumulative J) around t - W
    sum_j: list[float] = field(default_factory=lambda: [0.0] * BINS)
    sum_s: list[float] = field(default_factory=lambda: [0.0] * BINS)
    sum_sq: list[float] = field(default_factory=lambda: [0.0] * BINS)  # sum p^2 dt
    lo_w: float = math.inf  # extremes of the reconstructed powers and readings
    hi_w: float = 0.0


class AveragedEnergy:
    """Cumulative energy of one channel from its trailing-average power readings.

    ``add(t, watts)`` takes the reading made at ``t`` and returns the readings that have
    settled (stamped in the past); ``flush()`` releases the rest. ``power_limit_w`` caps
    the range of a gap.
    """

    def __init__(
        self,
        key: str,
        *,
        window_s: float = 1.0,
        hold_s: float | None = None,
        power_limit_w: float | None = None,
    ) -> None:
        self.key = key
        self.window_s = window_s
        self.hold_s = DEFAULT_HOLD_S if hold_s is None else hold_s
        self.power_limit_w = power_limit_w
        self.gaps = 0  # chain breaks (a read gap longer than the window)
        self.gap_s = 0.0  # unseen seconds filled by the gap model
        self._chain: _Chain | None = None
        self._offset_j = 0.0  # raw cumulative of the current chain -> released scale
        self._last: tuple[float, float, float] | None = None  # (t, raw J, watts) newest
        self._held: deque[tuple[float, float]] = deque()  # (t, raw J) not yet released
        self._released: tuple[float, float] | None = None  # (t, J) last released
        self._extra_low = 0.0  # cumulative range deviation below / above the estimate
        self._extra_high = 0.0
        self._min_w = math.inf
        self._max_w = 0.0

    # -- input ----------------------------------------------------------------------------

    def add(self, t: float, watts: float) -> list[Reading]:
        self._min_w, self._max_w = min(self._min_w, watts), max(self._max_w, watts)
        w = self.window_s
        if self._last is None:
            self._start_chain(t, watts, 0.0)
            return []
        t_prev, e_prev, w_prev = self._last
        if t <= t_prev:
            return []  # no newer information
        chain = self._chain
        assert chain is not None
        tb = t - w
        if tb >= t_prev:
            # A gap longer than the window: nothing measured [t_prev, tb]. Release the
            # old chain with its best estimate, fill the gap honestly, start anew.
            out = self._release(math.inf)
            span = tb - t_prev
            guess = (w_prev + watts) / 2.0
            floor, ceiling = self._envelope()
            self._extra_low += span * max(guess - floor, 0.0)
            self._extra_high += span * max(ceiling - guess, 0.0)
            self.gaps += 1
            self.gap_s += span
            assert self._released is not None  # the old chain's points were just released
            e_b = self._released[1] + span * guess
            out.extend(self._emit(tb, e_b, guess))
            self._start_chain(t, watts, e_b)
            return out
        e_b = self._interpolate(chain.ring, tb)
        e_now = e_b + w * watts
        self._fold(chain, t_prev, t, e_now - e_prev)
        rate = (e_now - e_prev) / (t - t_prev)
        chain.lo_w = min(chain.lo_w, rate, watts)
        chain.hi_w = max(chain.hi_w, rate, watts)
        chain.ring.append((t, e_now))
        while len(chain.ring) > 2 and chain.ring[1][0] <= t - w:
            chain.ring.popleft()
        self._held.append((t, e_now))
        self._last = (t, e_now, watts)
        if t - chain.t0 < SETTLE_S:
            return []  # the fold has too few windows yet: hold everything
        return self._release(t - self.hold_s)

    def flush(self) -> list[Reading]:
        """Release every held point with the best estimate (at stop)."""
        return self._release(math.inf)

    # -- chain ------------------------------------------------------------------------------

    def _start_chain(self, t: float, watts: float, e_before: float) -> None:
        """A new chain at ``t``: uniform power ``watts`` over its first window
        ``[t - W, t]``, whose start holds ``e_before`` joules."""
        w = self.window_s
        self._offset_j = e_before + w * watts
        self._chain = _Chain(t0=t, ring=deque([(t - w, -w * watts), (t, 0.0)]))
        self._held.append((t, 0.0))
        self._last = (t, 0.0, watts)

    @staticmethod
    def _interpolate(ring: deque[tuple[float, float]], t: float) -> float:
        prev = ring[0]
        if t <= prev[0]:
            return prev[1]
        for cur in ring:
            if cur[0] >= t:
                f = (t - prev[0]) / (cur[0] - prev[0]) if cur[0] > prev[0] else 1.0
                return prev[1] + f * (cur[1] - prev[1])
            prev = cur
        return prev[1]  # pragma: no cover - tb < newest point by construction

    def _fold(self, chain: _Chain, a: float, b: float, joules: float) -> None:
        """Add ``joules`` spent evenly over ``[a, b]`` to the phase bins it covers."""
        if b <= a:
            return
        rate = joules / (b - a)
        width = self.window_s / BINS
        s = (a - chain.t0) % self.window_s
        left = b - a
        while left > 1e-12:
            i = min(int(s / width), BINS - 1)
            piece = min(left, (i + 1) * width - s)
            if piece <= 1e-12:  # float rounding at a bin edge
                s = ((i + 1) * width) % self.window_s
                continue
            chain.sum_j[i] += rate * piece
            chain.sum_s[i] += piece
            chain.sum_sq[i] += rate * rate * piece
            left -= piece
            s = (s + piece) % self.window_s

    def _knots(self, chain: _Chain) -> tuple[list[float], list[float]] | None:
        """The periodic error at the bin edges, and its standard error; None until every
        bin has seen at least one full window."""
        width = self.window_s / BINS
        if min(chain.sum_s) < width:
            return None
        mean = sum(chain.sum_j) / sum(chain.sum_s)
        knots, var, e, v = [0.0], [0.0], 0.0, 0.0
        for i in range(BINS):
            m = chain.sum_j[i] / chain.sum_s[i]
            e += (m - mean) * width
            spread = max(chain.sum_sq[i] / chain.sum_s[i] - m * m, 0.0)
            v += spread / (chain.sum_s[i] / width) * width * width
            knots.append(e)
            var.append(v)
        drift = knots[-1]
        knots = [k - drift * i / BINS for i, k in enumerate(knots)]
        # The error is pinned at both ends of the window (e(0) = e(W) = 0): the
        # variance of a bridge, largest mid-window.
        total = var[-1]
        sd = [
            math.sqrt(max(var[i] - var[i] * var[i] / total, 0.0)) if total > 0 else 0.0
            for i in range(BINS + 1)
        ]
        return knots, sd

    def _at(self, values: list[float], chain: _Chain, t: float) -> float:
        width = self.window_s / BINS
        s = (t - chain.t0) % self.window_s
        i = min(int(s / width), BINS - 1)
        f = (s - i * width) / width
        return values[i] + f * (values[i + 1] - values[i])

    def _envelope(self) -> tuple[float, float]:
        """What unseen power could have been: from the lowest reading seen to the board's
        power limit (twice the highest reading seen when the limit is unknown)."""
        floor = 0.0 if self._min_w is math.inf else self._min_w
        return floor, _ceiling_w(self.power_limit_w, self._max_w)

    # -- output -----------------------------------------------------------------------------

    def _release(self, until: float) -> list[Reading]:
        chain = self._chain
        if chain is None or not self._held:
            return []
        fit = self._knots(chain)
        out: list[Reading] = []
        while self._held and self._held[0][0] <= until:
            t, raw = self._held.popleft()
            # Any spread of energy within a window, at powers in [lo, hi], is off the
            # uniform model by at most (hi - lo) W / 4: the bound before a fit exists.
            bound = (chain.hi_w - chain.lo_w) * self.window_s / 4.0 if chain.hi_w else 0.0
            if fit is None:
                e, edge = 0.0, bound
            else:
                e = self._at(fit[0], chain, t)
                edge = min(_EDGE_K * self._at(fit[1], chain, t), bound)
            if t == chain.t0:
                edge = 0.0  # the chain's origin is exact by construction
            out.extend(self._emit(t, self._offset_j + raw - e, None, edge))
        return out

    def _emit(
        self, t: float, joules: float, watts: float | None, edge: float = 0.0
    ) -> list[Reading]:
        if self._released is not None:
            t_prev, j_prev = self._released
            if t <= t_prev:
                return []
            joules = max(joules, j_prev)  # cumulative energy never decreases
            if watts is None:
                watts = (joules - j_prev) / (t - t_prev)
        self._released = (t, joules)
        extra = {
            "energy_low_j": joules - self._extra_low,
            "energy_high_j": joules + self._extra_high,
            "energy_edge_j": edge,
            "gap_s": self.gap_s,
        }
        return [Reading(self.key, t, energy_j=joules, power_w=watts, extra=extra)]


class PartTimeRange:
    """The range of the energy integrated from part-time ("instantaneous") readings.

    ``add(t, watts)`` returns the ``Reading.extra`` for the reading made at ``t``:
    cumulative ``energy_low_j``/``energy_high_j`` from the first reading, bracketing the
    trapezoid the ledger integrates (see the module docstring).
    """

    def __init__(
        self,
        *,
        power_limit_w: float | None = None,
        seen_s: float = PART_TIME_SEEN_S,
        period_s: float = PART_TIME_PERIOD_S,
    ) -> None:
        self.power_limit_w = power_limit_w
        self.seen_fraction = min(seen_s / period_s, 1.0)
        self._last: tuple[float, float] | None = None
        self._low = 0.0
        self._high = 0.0
        self._n = 0
        self._min_w = math.inf
        self._max_w = 0.0

    def add(self, t: float, watts: float) -> dict[str, float]:
        self._min_w, self._max_w = min(self._min_w, watts), max(self._max_w, watts)
        self._n += 1
        if self._last is not None and t > self._last[0]:
            t0, p0 = self._last
            dt = t - t0
            f = self.seen_fraction
            seen = f * dt * (p0 + watts) / 2.0
            ceiling = _ceiling_w(self.power_limit_w, self._max_w)
            # The lowest reading is a floor only once a second of readings has shown it.
            floor = self._min_w if self._n >= _FLOOR_READINGS else 0.0
            self._low += seen + (1.0 - f) * dt * floor
            self._high += seen + (1.0 - f) * dt * ceiling
        if self._last is None or t > self._last[0]:
            self._last = (t, watts)
        return {"energy_low_j": self._low, "energy_high_j": self._high}
