"""SigtermGuard: SIGTERM records the run through its stop callback, then goes where it
would have gone without greenml; a stop already running defers it."""

from __future__ import annotations

import os
import signal

import pytest

from greenml.signals import SigtermGuard


@pytest.fixture
def users_handler():
    calls = []

    def handler(signum, frame):
        calls.append(signum)

    before = signal.signal(signal.SIGTERM, handler)
    yield handler, calls
    signal.signal(signal.SIGTERM, before)


def test_sigterm_stops_the_run_then_reaches_the_users_handler(users_handler):
    handler, calls = users_handler
    stops = []
    guard = SigtermGuard(lambda: (stops.append("KILLED"), guard.restore()))
    guard.install()
    assert signal.getsignal(signal.SIGTERM) != handler
    os.kill(os.getpid(), signal.SIGTERM)
    assert stops == ["KILLED"]
    assert calls == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) is handler  # put back by the stop


def test_a_sigterm_during_a_stop_waits_for_it(users_handler):
    handler, calls = users_handler
    stops = []
    guard = SigtermGuard(lambda: stops.append("KILLED"))
    guard.install()
    guard.hold()  # stop() has begun
    os.kill(os.getpid(), signal.SIGTERM)
    assert stops == [] and calls == []  # deferred: the running stop records the run
    guard.restore()
    assert calls == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) is handler


def test_an_ignored_sigterm_stays_ignored():
    before = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        guard = SigtermGuard(lambda: None)
        guard.install()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        guard.restore()
    finally:
        signal.signal(signal.SIGTERM, before)
