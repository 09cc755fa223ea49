"""A fake meter for tests of code that uses greenml: constant power, exact energy.

``ConstantMeter(clock, 300.0)`` is one counter channel (a GPU unless ``key``/``kind`` say
otherwise) whose cumulative energy is ``watts x clock()`` joules: with a
:class:`~greenml.testing.ManualClock` started at 0, a test knows every figure by hand.
Pass it as ``greenml.Tracker(meters=[...], clock=clock)``.
"""

from __future__ import annotations

from collections.abc import Callable

from greenml.meters.base import Channel, MeterBase, Reading


class ConstantMeter(MeterBase):
    """One channel drawing ``watts``; energy ``watts x clock()``. ``fail_after`` makes
    every read after that many raise (a meter that breaks mid-run); ``reads`` and
    ``closed`` count the calls."""

    def __init__(
        self,
        clock: Callable[[], float],
        watts: float,
        key: str = "gpu:0",
        kind: str | None = None,
        method: str = "counter",
        *,
        name: str | None = None,
        index: int | None = None,
        channel: Channel | None = None,
        fail_after: int | None = None,
    ) -> None:
        self.clock, self.watts, self.fail_after = clock, float(watts), fail_after
        if channel is None:
            kind = kind or key.partition(":")[0]
            channel = Channel(key, kind, name or f"{kind} under test", method, index)
        self.channel = channel
        self.reads = 0
        self.closed = 0

    def channels(self) -> list[Channel]:
        return [self.channel]

    def read(self) -> list[Reading]:
        self.reads += 1
        if self.fail_after is not None and self.reads > self.fail_after:
            raise RuntimeError("meter exploded")
        t = self.clock()
        return [Reading(self.channel.key, t, energy_j=self.watts * t)]

    def close(self) -> None:
        self.closed += 1
