"""Piecewise-constant power traces with exact energy integrals.

A :class:`Trace` is the power P(τ), in watts, that a simulated GPU draws at driver time
τ (seconds since the simulated driver was loaded). It is built from segments
``[(duration_s, watts), ...]``. With ``repeat=True`` the pattern repeats forever;
otherwise the last value holds after the end. Before τ = 0 the trace holds its first
value, so a window that reaches back before the driver was loaded stays well defined.

Energies are exact integrals over the segments, not sums over samples, so tests can work
out the expected figures by hand::

    >>> t = steps([(2.0, 100.0), (1.0, 400.0)])
    >>> t.energy_j(0.0, 4.0)   # 2 s at 100 W + 1 s at 400 W + 1 s held at 400 W
    1000.0

A repeating trace integrates a whole number of periods in one multiplication, so a span of
days costs the same as a span of a second.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["Trace", "constant", "spiky", "square", "steps"]


def _check_watts(watts: float, what: str) -> float:
    w = float(watts)
    if not math.isfinite(w) or w < 0:
        raise ValueError(f"{what} must be a finite, non-negative power in watts, got {watts!r}")
    return w


def _check_duration(seconds: float, what: str) -> float:
    s = float(seconds)
    if not math.isfinite(s) or s <= 0:
        raise ValueError(f"{what} must be a finite, positive duration in seconds, got {seconds!r}")
    return s


@dataclass(frozen=True)
class Trace:
    """A piecewise-constant power function of driver time, in watts.

    ``segments`` is a tuple of ``(duration_s, watts)``; ``repeat`` repeats them forever,
    otherwise the last value holds after the end. Use the module functions
    (:func:`constant`, :func:`steps`, :func:`square`, :func:`spiky`) to build one.
    """

    segments: tuple[tuple[float, float], ...]
    repeat: bool = False
    # Derived: start time of each segment and the energy up to it, within one period.
    _starts: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _cum_j: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.segments, (str, bytes)):
            raise ValueError(f"segments must be (duration_s, watts) pairs, got {self.segments!r}")
        checked = []
        for n, seg in enumerate(self.segments):
            try:
                duration_s, watts = seg
            except (TypeError, ValueError):
                raise ValueError(
                    f"segment {n} must be a (duration_s, watts) pair, got {seg!r}"
                ) from None
            checked.append(
                (
                    _check_duration(duration_s, f"segment {n} duration"),
                    _check_watts(watts, f"segment {n} power"),
                )
            )
        if not checked:
            raise ValueError("a trace needs at least one (duration_s, watts) segment, got none")
        starts, cum, t, e = [], [], 0.0, 0.0
        for duration_s, watts in checked:
            starts.append(t)
            cum.append(e)
            t += duration_s
            e += duration_s * watts
        object.__setattr__(self, "segments", tuple(checked))
        object.__setattr__(self, "repeat", bool(self.repeat))
        object.__setattr__(self, "_starts", tuple(starts))
        object.__setattr__(self, "_cum_j", tuple(cum))

    @property
    def period_s(self) -> float:
        """Length of the segment pattern (one period when ``repeat`` is set)."""
        return self._starts[-1] + self.segments[-1][0]

    @property
    def period_energy_j(self) -> float:
        """Energy of one pass through the segment pattern."""
        return self._cum_j[-1] + self.segments[-1][0] * self.segments[-1][1]

    def power_w(self, t_s: float) -> float:
        """P(τ): the power at driver time ``t_s`` (segments are closed on the left)."""
        t = float(t_s)
        if t < 0:
            return self.segments[0][1]
        period = self.period_s
        if t >= period:
            if not self.repeat:
                return self.segments[-1][1]
            t = self._fold(t)[1]
        return self.segments[self._segment_at(t)][1]

    def energy_j(self, a_s: float, b_s: float) -> float:
        """The exact energy ∫ P(τ) dτ from ``a_s`` to ``b_s`` (``b_s`` ≥ ``a_s``), in joules."""
        a, b = float(a_s), float(b_s)
        if b < a:
            raise ValueError(f"energy_j needs a <= b, got a={a_s!r}, b={b_s!r}")
        return self._cumulative_j(b) - self._cumulative_j(a)

    def mean_w(self, a_s: float, b_s: float) -> float:
        """Mean power over ``[a_s, b_s]``; P(a_s) for an empty interval."""
        a, b = float(a_s), float(b_s)
        if b < a:
            raise ValueError(f"mean_w needs a <= b, got a={a_s!r}, b={b_s!r}")
        if b == a:
            return self.power_w(a)
        return self.energy_j(a, b) / (b - a)

    # -- internals ---------------------------------------------------------------------

    def _segment_at(self, t: float) -> int:
        """Index of the segment holding ``t``, for 0 <= t < period."""
        return bisect.bisect_right(self._starts, t) - 1

    def _fold(self, t: float) -> tuple[int, float]:
        """Split ``t`` >= 0 into whole periods and the remainder in [0, period)."""
        period = self.period_s
        k = math.floor(t / period)
        r = t - k * period
        if r < 0:  # float rounding in t / period
            k, r = k - 1, r + period
        elif r >= period:
            k, r = k + 1, r - period
        return k, r

    def _cumulative_j(self, t: float) -> float:
        """F(t) = ∫_0^t P; negative for t < 0, where P holds its first value."""
        if t <= 0:
            return t * self.segments[0][1]
        period = self.period_s
        if t >= period:
            if not self.repeat:
                return self.period_energy_j + (t - period) * self.segments[-1][1]
            k, r = self._fold(t)
            return k * self.period_energy_j + self._within_period_j(r)
        return self._within_period_j(t)

    def _within_period_j(self, r: float) -> float:
        i = self._segment_at(r)
        return self._cum_j[i] + (r - self._starts[i]) * self.segments[i][1]


def constant(watts: float) -> Trace:
    """A flat trace at ``watts`` forever."""
    return Trace(((1.0, _check_watts(watts, "watts")),), repeat=True)


def steps(segments: Iterable[tuple[float, float]], repeat: bool = False) -> Trace:
    """``[(duration_s, watts), ...]`` in order; with ``repeat`` the pattern repeats forever,
    otherwise the last value holds after the end."""
    return Trace(tuple(segments), repeat=repeat)


def square(high_w: float, low_w: float, high_s: float, low_s: float) -> Trace:
    """A bursty, repeating trace: ``high_w`` for ``high_s``, then ``low_w`` for ``low_s``."""
    return Trace(
        (
            (_check_duration(high_s, "high_s"), _check_watts(high_w, "high_w")),
            (_check_duration(low_s, "low_s"), _check_watts(low_w, "low_w")),
        ),
        repeat=True,
    )


def spiky(base_w: float, spike_w: float, spike_s: float, period_s: float) -> Trace:
    """A repeating trace at ``base_w`` with a short spike to ``spike_w`` closing each period.

    Each period of ``period_s`` runs at ``base_w`` for ``period_s - spike_s``, then at
    ``spike_w`` for ``spike_s``; the trace starts at ``base_w``.
    """
    spike = _check_duration(spike_s, "spike_s")
    period = _check_duration(period_s, "period_s")
    if spike >= period:
        raise ValueError(f"spike_s must be shorter than period_s, got {spike_s!r} >= {period_s!r}")
    return Trace(
        (
            (period - spike, _check_watts(base_w, "base_w")),
            (spike, _check_watts(spike_w, "spike_w")),
        ),
        repeat=True,
    )
