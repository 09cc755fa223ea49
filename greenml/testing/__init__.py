"""Fakes for testing code that uses greenml, shipped for users and used by our own tests.

- :class:`SimulatedNVML` and :class:`SimGPU`: a simulated NVIDIA driver that ``pynvml``
  loads in place of ``libnvidia-ml.so``, with programmable power traces (:mod:`traces`),
  a refreshed millijoule counter and faults; usable in-process without a compiler and,
  through :meth:`SimulatedNVML.export`, by child processes.
- :class:`SimulatedAMDSMI` and :class:`SimAMDGPU`: a simulated AMD SMI, a fake ``amdsmi``
  module put into ``sys.modules`` (the real ``amdsmi`` package is not exercised), with
  the same traces and a refreshed energy accumulator.
- :class:`FakePowercap`: a Linux powercap (RAPL) tree in a temporary folder.
- :class:`ManualClock`: a monotonic clock that moves only when told to.
- :class:`ConstantMeter`: a meter drawing constant power, for figures known by hand.
- :class:`MemorySink`: a sink that keeps what MLflow would get, in memory.

Names are imported lazily so ``import greenml.testing`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ManualClock": "greenml.testing.clock",
    "ConstantMeter": "greenml.testing.meters",
    "MemorySink": "greenml.testing.sinks",
    "SimulatedNVML": "greenml.testing.nvml_sim",
    "SimGPU": "greenml.testing.nvml_sim",
    "SimulatedAMDSMI": "greenml.testing.amd_sim",
    "SimAMDGPU": "greenml.testing.amd_sim",
    "traces": "greenml.testing.traces",
    "FakePowercap": "greenml.testing.powercap",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'greenml.testing' has no attribute {name!r}")
    mod = importlib.import_module(module)
    return mod if module.endswith("." + name) else getattr(mod, name)
