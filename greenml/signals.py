"""SIGTERM and fork: a run ends cleanly when the process is told to stop, and a forked
child (a data-loader or pool worker) behaves as if greenml were not there.

:class:`SigtermGuard` is driven by a stop callback. SIGTERM (what schedulers and ``kill``
send) calls it, so the run is recorded as ``KILLED`` with its summary, and then the signal
does what it would have done without greenml: the previous Python handler runs, or the
default action ends the process. Installed only from the main thread and only over the
default or a Python handler (an ignored SIGTERM stays ignored).

:func:`watch_forks` registers an owner (a running tracker) whose ``_leave_forked_child()`` is
called in a freshly forked child: there, the guards go back to the previous handlers
(nested runs are unwound innermost first) and the owner stands aside.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol

logger = logging.getLogger(__name__)


class SigtermGuard:
    """Calls ``on_term`` on SIGTERM, then hands the signal on. ``hold()`` defers a SIGTERM
    while a stop is running (it is delivered by ``restore()``)."""

    def __init__(self, on_term: Callable[[], None]) -> None:
        self._on_term = on_term
        self._previous: Any = None
        self._installed = False
        self._pid: int | None = None
        self._holding = False
        self._done = False
        self._pending: int | None = None  # a signal that arrived while a stop ran
        self._int_previous: Any = None  # SIGINT's handler while a stop holds it
        self._int_pending = False

    def install(self) -> None:
        self._pid = os.getpid()
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGTERM)
        if previous is signal.SIG_IGN or previous is None:
            return
        signal.signal(signal.SIGTERM, self._handle)
        self._previous, self._installed = previous, True

    def hold(self) -> None:
        """A stop is running in this process: a SIGTERM from now on waits for it, and so
        does a Ctrl-C (SIGINT) when the stop runs in the main thread, so that the run's
        summary is recorded before the KeyboardInterrupt goes on to the user."""
        self._holding = True
        if threading.current_thread() is threading.main_thread() and self._int_previous is None:
            try:
                previous = signal.getsignal(signal.SIGINT)
                if callable(previous):
                    signal.signal(signal.SIGINT, self._hold_int)
                    self._int_previous = previous
            except (ValueError, OSError):  # pragma: no cover - no signals here
                pass

    def _hold_int(self, signum: int, frame: Any) -> None:
        self._int_pending = True

    def restore(self) -> None:
        """Put the previous handler back (from the main thread); then deliver a SIGTERM
        that arrived while the run was stopping."""
        self._done = True
        if self._installed and threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGTERM) == self._handle:
                signal.signal(signal.SIGTERM, self._previous)
            self._installed = False
        int_previous, self._int_previous = self._int_previous, None
        main = threading.current_thread() is threading.main_thread()
        if int_previous is not None and main and signal.getsignal(signal.SIGINT) == self._hold_int:
            signal.signal(signal.SIGINT, int_previous)
        if self._pending is not None:
            signum, self._pending = self._pending, None
            self._forward(signum, None)
        if self._int_pending and int_previous is not None:
            self._int_pending = False
            int_previous(signal.SIGINT, None)  # Python's default raises KeyboardInterrupt

    def forget(self) -> bool:
        """In a forked child: put the previous handler back if ours is the current one,
        without stopping anything (the run belongs to the parent). True once done."""
        if self._installed and signal.getsignal(signal.SIGTERM) == self._handle:
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False
        self._pending = None
        return not self._installed

    def _handle(self, signum: int, frame: Any) -> None:
        if self._pid is not None and self._pid != os.getpid():
            # the handler outlived a fork: act as if greenml were not here
            self.forget()
            self._installed = False
            self._forward(signum, frame)
            return
        if self._holding and not self._done:
            self._pending = signum  # the stop running in this thread forwards it
            return
        if not self._done:
            logger.warning("greenml: SIGTERM: recording the run as KILLED")
            self._on_term()  # restores the handler
        self._forward(signum, frame)

    def _forward(self, signum: int, frame: Any) -> None:
        previous = self._previous
        if callable(previous) and previous is not self._handle:
            previous(signum, frame)
        elif previous in (signal.SIG_DFL, None):
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


class ForkedChildOwner(Protocol):
    _guard: SigtermGuard

    def _leave_forked_child(self) -> None: ...


_WATCHED: weakref.WeakSet[Any] = weakref.WeakSet()


def watch_forks(owner: ForkedChildOwner) -> None:
    """Have ``owner`` stand aside in any child forked while it is watched."""
    _WATCHED.add(owner)


def unwatch_forks(owner: ForkedChildOwner) -> None:
    _WATCHED.discard(owner)


def _after_fork_in_child() -> None:
    owners = list(_WATCHED)
    _WATCHED.clear()
    for _ in owners:  # nested runs chain their handlers: unwind them innermost first
        for owner in owners:
            owner._guard.forget()
    for owner in owners:
        owner._guard._installed = False
        owner._leave_forked_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
