"""greenml: the energy, carbon and cloud cost of ML training, logged to MLflow.

``import greenml`` is cheap: torch, mlflow, pynvml and pandas are imported only where used.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from greenml._version import __version__

logging.getLogger(__name__).addHandler(logging.NullHandler())

_EXPORTS = {
    "track": "greenml.tracker",
    "Tracker": "greenml.tracker",
    "Footprint": "greenml.footprint",
    "GreenMLError": "greenml.errors",
    "ConfigError": "greenml.errors",
    "GreenMLWarning": "greenml.errors",
    "GreenMLBudgetExceeded": "greenml.errors",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'greenml' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
