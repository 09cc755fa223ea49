"""The greenml error tree.

Every error greenml raises on purpose derives from :class:`GreenMLError`, so a caller
can catch the whole family with one ``except``. Vendor errors (NVML, the kernel's
powercap files) are translated where the vendor is touched, in ``greenml/meters``;
nothing above the meters sees a ``pynvml.NVMLError``.

::

    GreenMLError
    ├── ConfigError            bad argument, env var or config value (before any thread)
    ├── MeasurementError       a meter could not read its hardware
    │   ├── DeviceNotFoundError    a requested device does not exist (no RAPL domain...)
    │   ├── DeviceLostError        the device vanished mid-run (GPU fell off the bus)
    │   ├── NotSupportedError      the hardware or driver does not offer this reading
    │   └── DriverError            any other driver/library failure (NVML unknown error, I/O error)
    ├── SinkError              a sink (MLflow, the directory sink) could not take a record
    └── GreenMLBudgetExceeded  a budget was crossed with stop_on_budget (run.step raises it)

    GreenMLWarning (a UserWarning)   something the user must act on; see :func:`warn`

``ConfigError`` is also a ``ValueError`` so that code written against the standard
library's conventions still catches it.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from typing import Any


class GreenMLError(Exception):
    """Base class of every error greenml raises on purpose."""


class ConfigError(GreenMLError, ValueError):
    """A setting is invalid. The message names the bad value and what would be valid."""


class MeasurementError(GreenMLError):
    """A meter could not read its hardware."""


class DeviceNotFoundError(MeasurementError):
    """A requested device does not exist on this machine."""


class DeviceLostError(MeasurementError):
    """A device disappeared while it was being measured."""


class NotSupportedError(MeasurementError):
    """The hardware or driver does not support this reading."""


class DriverError(MeasurementError):
    """Any other failure of the driver or the kernel interface."""


class SinkError(GreenMLError):
    """A sink could not be used or refused a record (a malformed tracking URI, say)."""


class GreenMLBudgetExceeded(GreenMLError):
    """A budget (``max_energy_kwh``, ``max_co2e_kg``, ``max_cost_usd``) was crossed with
    ``stop_on_budget=True``; raised once, by the next ``run.step()`` of a plain loop.
    ``budget`` names the setting, ``limit`` and ``value`` are in its unit, ``basis`` is
    ``"actual"`` or ``"forecast"``."""

    def __init__(self, message: str, *, budget: str, limit: float, value: float, basis: str):
        super().__init__(message)
        self.budget, self.limit, self.value, self.basis = budget, limit, value, basis


class GreenMLWarning(UserWarning):
    """Something the user must see and may have to act on: MLflow unreachable (and where
    the journal is), no GPU measured, a location or price missing, a stale factor..."""


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_PASS_THROUGH = ("contextlib.py", "functools.py")
# a callback's warning points past the framework that called it, at the user's fit()/train()
_FRAMEWORKS = frozenset({"lightning", "pytorch_lightning", "transformers", "accelerate", "torch"})
_REGISTRY: dict[Any, Any] = {}  # the "once" memory for warnings raised from greenml's threads
# Messages already given, per filter list: Python's own "once" memory is reset whenever any
# library touches the filters (MLflow does, on import), and a user must not see the same
# warning again for that. A new list (``warnings.catch_warnings``) starts afresh.
_GIVEN: dict[int, tuple[list[Any], set[tuple[type, str]]]] = {}


def _user_frame(frame: Any) -> tuple[Any, int]:
    """The first frame outside greenml (the stdlib's pass-through helpers, and the training
    frameworks whose callbacks call greenml), with its
    ``stacklevel`` counted from ``frame`` (1); ``None`` in greenml's own threads."""
    level = 1
    while frame is not None and (
        frame.f_code.co_filename.startswith(_PACKAGE)
        or os.path.basename(frame.f_code.co_filename) in _PASS_THROUGH
        or frame.f_globals.get("__name__", "").partition(".")[0] in _FRAMEWORKS
    ):
        frame, level = frame.f_back, level + 1
    if frame is not None and os.path.basename(frame.f_code.co_filename) == "threading.py":
        return None, level
    return frame, level


# Where the latest run was started in the user's code (file, line, module): the place a
# warning from greenml's own threads (MLflow away, a device lost) is reported at.
_RUN_SITE: list[tuple[str, int, str]] = []


def note_run_site() -> None:
    """Remember the user's line that started a run (called by ``Tracker.start``)."""
    frame, _ = _user_frame(sys._getframe(1))
    if frame is not None:
        _RUN_SITE[:] = [
            (frame.f_code.co_filename, frame.f_lineno, frame.f_globals.get("__name__", ""))
        ]


_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@'\"]+@")


def scrub(text: str) -> str:
    """``text`` with the user and password of every URL in it replaced by ``***``: MLflow's
    own errors quote the full request URL, credentials included."""
    return _USERINFO.sub(r"\1***@", text)


def warn(message: str, category: type[GreenMLWarning] | None = None) -> None:
    """Tell the user ``message`` on stderr, with no logging set up.

    A :class:`GreenMLWarning` through :mod:`warnings`: each message once per process,
    silenced the standard ways (``warnings.filterwarnings("ignore",
    category=greenml.GreenMLWarning)``, ``-W ignore::UserWarning``, or the ``greenml``
    logger's level set above WARNING). The warning points at the user's line that led to
    it; one raised in greenml's own threads points at the line that started the run.
    Diagnostics that need no action go through ``logging`` instead.
    """
    if not logging.getLogger("greenml").isEnabledFor(logging.WARNING):
        return
    message = scrub(message)
    category = category or GreenMLWarning
    filters = warnings.filters
    given = _GIVEN.get(id(filters))
    if given is None or given[0] is not filters:
        given = _GIVEN[id(filters)] = (filters, set())
    if (category, message) in given[1]:
        return
    given[1].add((category, message))
    frame, level = _user_frame(sys._getframe(1))
    if frame is not None:
        warnings.warn(message, category, stacklevel=level + 1)
        return
    filename, lineno, module = _RUN_SITE[0] if _RUN_SITE else ("greenml", 0, "greenml")
    warnings.warn_explicit(message, category, filename, lineno, module=module, registry=_REGISTRY)
