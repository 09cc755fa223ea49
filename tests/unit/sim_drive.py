"""What the meter tests share: an independent integral of a trace, and the training
thread's phase switches on a manual clock.

Not a test module (no ``test_`` prefix): the meter tests import it by name, as pytest
puts this folder on ``sys.path`` for them.
"""

from __future__ import annotations


def integral(trace, a: float, b: float, dt: float = 1e-4) -> float:
    """Midpoint rule on a fine grid: independent of the simulator's counter."""
    n = max(1, round((b - a) / dt))
    h = (b - a) / n
    return sum(trace.power_w(a + (i + 0.5) * h) for i in range(n)) * h


class Timeline:
    """The training thread's side of a run on a manual clock.

    The meter's ``sleep`` (its ~1 ms polls while it finds the counter's refresh grid)
    moves the clock through this object, which switches phases at their exact times as
    time passes, as the training thread would while the sampler thread polls; with a
    ``sampler`` set, each switch also wakes it (``poke``), as ``Tracker.begin_phase`` does.
    """

    def __init__(self, clock, events=()):
        self.clock, self.events = clock, sorted(events)
        self.ledger = self.sampler = None

    def sleep(self, seconds):
        self.clock.advance(seconds)
        self.fire()

    def fire(self):
        while self.ledger is not None and self.events and self.events[0][0] <= self.clock():
            t, name = self.events.pop(0)
            self.ledger.set_phase(t, name)
            if self.sampler is not None:
                self.sampler.poke()

    def next_event(self):
        return self.events[0][0] if self.events else float("inf")
