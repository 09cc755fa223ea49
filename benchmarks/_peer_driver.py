"""What the peers ask of the NVIDIA driver beyond greenml's simulation, and a log of when
they read power and energy.

greenml's :class:`~greenml.testing.SimulatedNVML` implements the NVML functions greenml
calls. The peers call a few more, which the simulation leaves out (pynvml then raises
``NVMLError_FunctionNotFound``, as with an old driver):

=====================================  ============================================  =======
function                               who calls it                                  answer
=====================================  ============================================  =======
``nvmlDeviceGetMemoryInfo``            CodeCarbon (set-up: a GPU fails without it),  80 GB,
                                       MLflow (each sample)                          1 GB used
``nvmlDeviceGetUtilizationRates``      CodeCarbon (every second), MLflow (sample)    100 %
``nvmlDeviceGetTemperature``,          CodeCarbon (describing its GPUs, once)        60 °C,
``nvmlDeviceGetComputeMode``,                                                        default,
``nvmlDeviceGet{Compute,Graphics}``                                                  no
``RunningProcesses_v3``                                                              process
``nvmlDeviceGetFieldValues``           Zeus: ``NVML_FI_DEV_POWER_INSTANT`` and       see below
                                       ``_AVERAGE`` for GPUs without a counter
``nvmlDeviceGetC2cModeInfoV``          Zeus (is it a Grace Hopper?)                  Not Supported
=====================================  ============================================  =======

A simulated GPU has one power reading (``nvmlDeviceGetPowerUsage``: a 1 s trailing
average or A100-like part-time samples, per the scenario). The field
``NVML_FI_DEV_POWER_INSTANT`` answers with that same reading, so Zeus sees the signal
CodeCarbon and MLflow see; ``NVML_FI_DEV_POWER_AVERAGE`` and the memory scope answer
``NVML_ERROR_NOT_SUPPORTED`` per field, so Zeus starts one polling process, not two
reading the same value. The constants are never part of a figure.

:class:`PeerDriver` is entered after ``SimulatedNVML`` is installed; it puts an object in
front of the simulated library (pynvml's ``nvmlLib`` hook, the one the simulation uses)
that answers the functions above, forwards the rest, and logs the monotonic instant of
every ``nvmlDeviceGetTotalEnergyConsumption`` and ``nvmlDeviceGetPowerUsage`` call, so a
benchmark can tell exactly when a peer read the counter. ``calls`` counts the extra
functions; the simulation's own ``calls`` counts the rest.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections import Counter
from ctypes import POINTER, c_int, c_uint, c_void_p
from typing import Any

import pynvml

NVML_SUCCESS = 0
NVML_ERROR_NOT_SUPPORTED = 3

_MEMORY_TOTAL_B = 80 * 10**9
_MEMORY_USED_B = 10**9
_UTILIZATION_PCT = 100
_TEMPERATURE_C = 60

#: The calls whose instants are logged.
LOGGED = ("nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetPowerUsage")


class PeerDriver:
    """``with SimulatedNVML(gpus) as sim, PeerDriver() as drv:`` — see the module doc."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        #: ``(monotonic_s, function name, handle)`` of each logged call, in call order.
        self.reads: list[tuple[float, str, int]] = []
        self._lock = threading.Lock()
        self._sim_lib: Any = None
        self._callbacks: dict[str, Any] = {}

    # -- install -------------------------------------------------------------------------

    def __enter__(self) -> PeerDriver:
        with pynvml.libLoadLock:
            if pynvml.nvmlLib is None or isinstance(pynvml.nvmlLib, _Front):
                raise RuntimeError("install SimulatedNVML first (and PeerDriver once)")
            self._sim_lib = pynvml.nvmlLib
            self._callbacks = self._make_callbacks()
            pynvml.nvmlLib = _Front(self)
            pynvml._nvmlGetFunctionPointer_cache.clear()
        return self

    def __exit__(self, *exc: object) -> None:
        with pynvml.libLoadLock:
            pynvml.nvmlLib = self._sim_lib
            pynvml._nvmlGetFunctionPointer_cache.clear()

    # -- what the benchmark reads --------------------------------------------------------

    def total_calls(self, sim: Any) -> int:
        """Driver calls so far: the simulation's and the extra functions'."""
        return sum(sim.calls.values()) + sum(self.calls.values())

    def reads_between(self, a_s: float, b_s: float, name: str) -> list[float]:
        """Instants of ``name`` calls logged in ``[a_s, b_s]``."""
        with self._lock:
            return [t for t, n, _ in self.reads if n == name and a_s <= t <= b_s]

    # -- the extra functions -------------------------------------------------------------

    def _count(self, name: str) -> None:
        with self._lock:
            self.calls[name] += 1

    def _make_callbacks(self) -> dict[str, Any]:
        sim_power = self._sim_lib.nvmlDeviceGetPowerUsage

        def memory_info(handle: int, out: int) -> int:
            self._count("nvmlDeviceGetMemoryInfo")
            mem = ctypes.cast(out, POINTER(pynvml.c_nvmlMemory_t)).contents
            mem.total, mem.used = _MEMORY_TOTAL_B, _MEMORY_USED_B
            mem.free = _MEMORY_TOTAL_B - _MEMORY_USED_B
            return NVML_SUCCESS

        def utilization(handle: int, out: int) -> int:
            self._count("nvmlDeviceGetUtilizationRates")
            util = ctypes.cast(out, POINTER(pynvml.c_nvmlUtilization_t)).contents
            util.gpu = util.memory = _UTILIZATION_PCT
            return NVML_SUCCESS

        def temperature(handle: int, sensor: int, out: int) -> int:
            self._count("nvmlDeviceGetTemperature")
            ctypes.cast(out, POINTER(c_uint)).contents.value = _TEMPERATURE_C
            return NVML_SUCCESS

        def compute_mode(handle: int, out: int) -> int:
            self._count("nvmlDeviceGetComputeMode")
            ctypes.cast(out, POINTER(c_int)).contents.value = 0  # NVML_COMPUTEMODE_DEFAULT
            return NVML_SUCCESS

        def no_processes(name: str) -> Any:
            def processes(handle: int, count: int, infos: int) -> int:
                self._count(name)
                ctypes.cast(count, POINTER(c_uint)).contents.value = 0
                return NVML_SUCCESS

            return processes

        def c2c_mode(handle: int, out: int) -> int:
            self._count("nvmlDeviceGetC2cModeInfoV")
            return NVML_ERROR_NOT_SUPPORTED

        def field_values(handle: int, count: int, out: int) -> int:
            self._count("nvmlDeviceGetFieldValues")
            values = ctypes.cast(out, POINTER(pynvml.c_nvmlFieldValue_t))
            for i in range(count):
                v = values[i]
                v.timestamp = int(time.time() * 1e6)
                v.latencyUsec = 0
                if (
                    v.fieldId == pynvml.NVML_FI_DEV_POWER_INSTANT
                    and v.scopeId == pynvml.NVML_POWER_SCOPE_GPU
                ):
                    mw = c_uint()
                    ret = sim_power(handle, ctypes.byref(mw))  # counted by the simulation
                    v.nvmlReturn = ret
                    v.valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
                    v.value.uiVal = mw.value
                else:
                    v.nvmlReturn = NVML_ERROR_NOT_SUPPORTED
            return NVML_SUCCESS

        out_fn = ctypes.CFUNCTYPE(c_int, c_void_p, c_void_p)
        procs_fn = ctypes.CFUNCTYPE(c_int, c_void_p, c_void_p, c_void_p)
        compute, graphics = (
            "nvmlDeviceGetComputeRunningProcesses_v3",
            "nvmlDeviceGetGraphicsRunningProcesses_v3",
        )
        return {
            "nvmlDeviceGetTemperature": ctypes.CFUNCTYPE(c_int, c_void_p, c_uint, c_void_p)(
                temperature
            ),
            "nvmlDeviceGetComputeMode": out_fn(compute_mode),
            compute: procs_fn(no_processes(compute)),
            graphics: procs_fn(no_processes(graphics)),
            "nvmlDeviceGetMemoryInfo": out_fn(memory_info),
            "nvmlDeviceGetUtilizationRates": out_fn(utilization),
            "nvmlDeviceGetC2cModeInfoV": out_fn(c2c_mode),
            "nvmlDeviceGetFieldValues": ctypes.CFUNCTYPE(c_int, c_void_p, c_int, c_void_p)(
                field_values
            ),
        }


class _Front:
    """pynvml's ``nvmlLib``: the extra functions, logged reads, then the simulation."""

    def __init__(self, driver: PeerDriver) -> None:
        self._driver = driver

    def __getattr__(self, name: str) -> Any:
        drv = self._driver
        if name in drv._callbacks:
            return drv._callbacks[name]
        fn = getattr(drv._sim_lib, name)  # AttributeError: pynvml's FunctionNotFound
        if name not in LOGGED:
            return fn

        def logged(handle: Any, out: Any) -> int:
            ret = fn(handle, out)
            with drv._lock:
                drv.reads.append((time.monotonic(), name, getattr(handle, "value", 0) or 0))
            return ret

        return logged
