"""A manual monotonic clock for deterministic tests."""

from __future__ import annotations

import threading


class ManualClock:
    """A monotonic clock that moves only when told to.

    Call the instance to read it (it stands in for ``time.monotonic``); ``advance``
    moves it forward. Thread-safe, never goes backwards.
    """

    def __init__(self, start_s: float = 1000.0) -> None:
        self._now = float(start_s)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"a monotonic clock cannot go back: advance({seconds!r})")
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, now_s: float) -> None:
        with self._lock:
            if now_s < self._now:
                raise ValueError(f"a monotonic clock cannot go back from {self._now} to {now_s}")
            self._now = float(now_s)
