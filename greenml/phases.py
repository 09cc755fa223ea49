"""The phase timeline: which phase was active when, cheap for the thread that switches.

Two threads use it. The training thread switches phases (:meth:`PhaseTimeline.switch`),
possibly tens of thousands of times a second from a framework callback; that call does
O(1) work under a lock held for a few instructions, whatever the run's length, and never
waits for the sampler. The sampler thread attributes energy: it first takes the switches
made since its last visit (:meth:`merge`), then asks how long each phase was active
inside an interval (:meth:`time_in`) and forgets transitions no channel can still need
(:meth:`prune`).

``time_in`` costs O(log n + phases), not O(transitions inside the interval): for every
transition the timeline keeps each phase's cumulative active time up to it, so the time a
phase held over ``[a, b]`` is a difference of two cumulative values. A one-second counter
interval that spans 10,000 switches costs the same as one that spans none.
"""

from __future__ import annotations

import bisect
import itertools
import threading


class PhaseTimeline:
    """Phase transitions from ``start_s`` on; time outside any switch is ``default_phase``."""

    def __init__(self, start_s: float, default_phase: str) -> None:
        self.start_s = start_s
        self.stop_s: float | None = None
        # Training-thread side, under _lock: the active phase, time closed per phase,
        # and the switches not yet merged.
        self._lock = threading.Lock()
        self.names: list[str] = [default_phase]  # phase index -> name, by first appearance
        self._index = {default_phase: 0}
        self._current = 0
        self._since = start_s
        self._closed_s = [0.0]
        self._pending: list[tuple[float, int]] = []
        self.last_switch_s: float | None = None
        self.switches = 0
        # Sampler side (the caller holds the ledger's lock): merged transitions.
        self._tt: list[float] = [start_s]  # transition instants
        self._tp: list[int] = [0]  # phase index from each instant on
        self._cum: list[list[float]] = [[0.0]]  # [phase][i]: its active seconds up to _tt[i]

    # -- the training thread -----------------------------------------------------------

    def switch(self, t_s: float, name: str) -> None:
        """From ``t_s`` on, phase ``name`` is active. Ignored after the stop."""
        with self._lock:
            if self.stop_s is not None:
                return
            t_s = max(t_s, self._since)  # clocks are monotonic; guard against a caller's skew
            p = self._index.get(name)
            if p is None:
                p = self._index[name] = len(self.names)
                self.names.append(name)
                self._closed_s.append(0.0)
            self._closed_s[self._current] += t_s - self._since
            self._current, self._since = p, t_s
            self._pending.append((t_s, p))
            self.last_switch_s = t_s
            self.switches += 1

    def mark_stop(self, stop_s: float) -> None:
        with self._lock:
            if self.stop_s is None:
                stop_s = max(stop_s, self._since)
                self._closed_s[self._current] += stop_s - self._since
                self._since = stop_s
                self.stop_s = stop_s

    def durations(self, now_s: float) -> dict[str, float]:
        """Seconds each phase was active up to ``now_s`` (or the stop), by name."""
        with self._lock:
            out = list(self._closed_s)
            if self.stop_s is None:
                out[self._current] += max(now_s - self._since, 0.0)
            return dict(zip(self.names, out, strict=True))

    # -- the sampler thread --------------------------------------------------------------

    def merge(self) -> None:
        """Take the switches made since the last merge into the searchable timeline."""
        with self._lock:
            pending, self._pending = self._pending, []
            names = len(self.names)
        cum, tt, tp = self._cum, self._tt, self._tp
        while len(cum) < names:
            cum.append([0.0] * len(tt))
        # Switches at one instant: the last one wins (a zero-length phase holds no time).
        kept: list[tuple[float, int]] = []
        for t, p in pending:
            if kept and t <= kept[-1][0]:
                kept[-1] = (kept[-1][0], p)
            elif not kept and t <= tt[-1]:
                tp[-1] = p
            else:
                kept.append((t, p))
        if not kept:
            return
        # Column by column (a few list passes, not a Python loop over columns per switch):
        # the phase active before each switch accrues the time since the previous one.
        times = [t for t, _ in kept]
        held = [b - a for a, b in zip([tt[-1], *times[:-1]], times, strict=True)]
        before = [tp[-1], *(p for _, p in kept[:-1])]
        for q, column in enumerate(cum):
            column.extend(
                itertools.accumulate(
                    (h if b == q else 0.0 for h, b in zip(held, before, strict=True)),
                    initial=column[-1],
                )
            )
            del column[-len(kept) - 1]  # accumulate repeats the initial value
        tt.extend(times)
        tp.extend(p for _, p in kept)

    def _at(self, t: float) -> list[float]:
        """Each phase's cumulative active seconds up to ``t`` (>= the first transition)."""
        i = max(bisect.bisect_right(self._tt, t) - 1, 0)
        p, since = self._tp[i], t - self._tt[i]
        return [column[i] + (since if q == p else 0.0) for q, column in enumerate(self._cum)]

    def time_in(self, a: float, b: float) -> list[tuple[str, float]]:
        """``(phase, seconds)`` active inside ``[a, b]``, for phases with time there."""
        i = max(bisect.bisect_right(self._tt, a) - 1, 0)
        if i + 1 >= len(self._tt) or self._tt[i + 1] >= b:
            return [(self.names[self._tp[i]], b - a)]  # no transition inside: one phase
        lo, hi = self._at(a), self._at(b)
        return [(self.names[q], hi[q] - lo[q]) for q in range(len(lo)) if hi[q] > lo[q]]

    def has_transition(self, a: float, b: float) -> bool:
        """Whether a merged transition (after the first) lies strictly inside ``(a, b)``."""
        i = max(bisect.bisect_right(self._tt, a), 1)  # the first instant is no switch
        return i < len(self._tt) and self._tt[i] < b

    def prune(self, horizon_s: float) -> None:
        """Forget transitions before the one active at ``horizon_s``: no interval that
        starts at or after ``horizon_s`` needs them."""
        keep = max(bisect.bisect_right(self._tt, horizon_s) - 1, 0)
        if keep > 0:
            del self._tt[:keep]
            del self._tp[:keep]
            for column in self._cum:
                del column[:keep]

    def __len__(self) -> int:
        """Merged transitions kept (for tests and benchmarks)."""
        return len(self._tt)
