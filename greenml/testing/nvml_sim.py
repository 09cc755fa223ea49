"""A simulated NVIDIA driver for testing NVML code on machines without a GPU.

:class:`SimulatedNVML` plays the part of ``libnvidia-ml.so``: ``pynvml``'s real bindings
(argument marshalling, error mapping, string decoding) call into it, so everything above
the driver is the code that runs on a real GPU host. It simulates, per :class:`SimGPU`:

- a power trace (:mod:`greenml.testing.traces`) over *driver time* τ = ``clock() - epoch_s``;
- the millijoule energy counter (``nvmlDeviceGetTotalEnergyConsumption``), which counts
  from ``counter_start_mj`` (never from zero) and refreshes on a ``counter_refresh_s`` grid:
  between refreshes it returns the stale value, ``counter_start_mj + floor(1000 ·
  ∫_0^r P)`` with ``r = floor(τ / refresh) · refresh``;
- the power reading (``nvmlDeviceGetPowerUsage``, integer mW), either ``"average_1s"``
  (H100-like: the mean of P over ``[τ - 1, τ]``) or ``"instantaneous"`` (A100-like
  part-time sampling, Yang et al. 2024, arXiv:2312.02741: the mean over the 25 ms window
  ``[s, s + 0.025]``, ``s`` the latest 100 ms boundary with ``s + 0.025 <= τ``, so only a
  quarter of the run is ever seen);
- faults: no counter (pre-Volta, vGPU), fields that are not supported, the GPU falling off
  the bus at ``lost_at_s``, windows of ``NVML_ERROR_UNKNOWN``, and MIG mode.

A device call answers, in this order: ``NVML_ERROR_UNINITIALIZED`` (no ``nvmlInit``),
``NVML_ERROR_INVALID_ARGUMENT`` (unknown handle, NULL output), ``NVML_ERROR_GPU_IS_LOST``,
``NVML_ERROR_NOT_SUPPORTED`` (MIG handle, ``has_counter=False``, ``not_supported``),
``NVML_ERROR_UNKNOWN`` (inside an ``unknown_error_windows`` span), then the value.
Times within a millionth of a grid interval of a refresh or sampling boundary count as
on it, so a :class:`~greenml.testing.ManualClock` advanced by 0.3 s lands on the 0.3 s
refresh despite float rounding.

In-process use needs no compiler. ``with sim:`` (or :meth:`SimulatedNVML.install` /
:meth:`SimulatedNVML.uninstall`) relies on pynvml's module-level ``nvmlLib`` hook: pynvml
looks every C function up with ``getattr(pynvml.nvmlLib, name)`` and caches the result in
``pynvml._nvmlGetFunctionPointer_cache``. Installing sets ``nvmlLib`` to an object whose
attributes are ctypes function pointers (``CFUNCTYPE`` callbacks with the NVML C
signatures), clears that cache and pynvml's init refcount; uninstalling restores all three.
Functions the simulation does not implement are absent, so pynvml raises
``NVMLError_FunctionNotFound`` as it would with an old driver.

Cross-process use (children started by ``torchrun``, ``subprocess``...):
:meth:`SimulatedNVML.export` writes the configuration to a JSON file and compiles
``nvml_shim.c`` into ``libnvidia-ml.so.1`` in a folder; it returns the environment
variables that make a child's pynvml load it. The shim is a table of forwarding function
pointers; on the child's first ``nvmlInit`` it takes the GIL and calls
:func:`_attach_shim`, which builds the same Python simulation from the file (on
``time.monotonic`` with the parent's epoch, a clock every process on the machine shares)
and registers its callbacks into the shim. So there is one simulation model, this one.
"""

from __future__ import annotations

import ctypes
import importlib.resources
import json
import logging
import math
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
import uuid as uuid_module
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from ctypes import POINTER, c_char, c_char_p, c_int, c_uint, c_uint64, c_void_p
from dataclasses import KW_ONLY, dataclass, field, replace
from pathlib import Path
from typing import Any

from greenml.testing.traces import Trace, constant

__all__ = ["CONFIG_ENV", "SimGPU", "SimulatedNVML"]

_log = logging.getLogger(__name__)

#: Environment variable through which a child process finds the exported configuration.
CONFIG_ENV = "GREENML_SIM_NVML_CONFIG"
_SHIM_NAME = "libnvidia-ml.so.1"
_CONFIG_NAME = "greenml-sim-nvml.json"
_CONFIG_VERSION = 1

# NVML return codes (nvml.h). The driver defines them; the binding only mirrors them.
NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999

# What nvmlErrorString answers for each code the simulation returns.
_ERROR_MESSAGES = {
    NVML_SUCCESS: "Success",
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_INSUFFICIENT_SIZE: "Insufficient Size",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}

# nvmlDeviceArchitecture_t values (NVML_DEVICE_ARCH_* in nvml.h and pynvml).
ARCHITECTURES = {
    "kepler": 2,
    "maxwell": 3,
    "pascal": 4,
    "volta": 5,
    "turing": 6,
    "ampere": 7,
    "ada": 8,
    "hopper": 9,
    "blackwell": 10,
}
_MIG_CAPABLE = frozenset({"ampere", "hopper", "blackwell"})
_MAX_MIG_DEVICES = 7
_FIELDS = frozenset({"energy", "power", "power_limit", "architecture"})
_POWER_READINGS = frozenset({"average_1s", "instantaneous"})

_NAME_BUFFER_SIZE = 96  # NVML_DEVICE_NAME_V2_BUFFER_SIZE
_UUID_BUFFER_SIZE = 80  # NVML_DEVICE_UUID_BUFFER_SIZE

_AVERAGE_WINDOW_S = 1.0
_INSTANT_PERIOD_S = 0.1
_INSTANT_WINDOW_S = 0.025
_GRID_TOL = 1e-6  # fraction of a grid interval
_MJ_TOL = 1e-6  # millijoules, absorbs float noise before the counter's floor

_UUID_NAMESPACE = uuid_module.uuid5(uuid_module.NAMESPACE_URL, "greenml.testing.nvml_sim")

# C signatures of the simulated functions. nvmlDevice_t is an opaque pointer, declared
# void * so that pynvml's typed handles and byref(handle) outputs pass unchanged.
_RET = c_int  # nvmlReturn_t
_HANDLE = c_void_p  # nvmlDevice_t
_HANDLE_OUT = c_void_p  # nvmlDevice_t *
_UINT_OUT = POINTER(c_uint)
_U64_OUT = POINTER(c_uint64)  # unsigned long long *
_CHAR_BUF = POINTER(c_char)
_SIGNATURES: dict[str, tuple[Any, tuple[Any, ...]]] = {
    "nvmlInit_v2": (_RET, ()),
    "nvmlInitWithFlags": (_RET, (c_uint,)),
    "nvmlShutdown": (_RET, ()),
    "nvmlErrorString": (c_void_p, (_RET,)),  # const char *
    "nvmlSystemGetDriverVersion": (_RET, (_CHAR_BUF, c_uint)),
    "nvmlSystemGetNVMLVersion": (_RET, (_CHAR_BUF, c_uint)),
    "nvmlDeviceGetCount_v2": (_RET, (_UINT_OUT,)),
    "nvmlDeviceGetHandleByIndex_v2": (_RET, (c_uint, _HANDLE_OUT)),
    "nvmlDeviceGetHandleByUUID": (_RET, (c_char_p, _HANDLE_OUT)),
    "nvmlDeviceGetIndex": (_RET, (_HANDLE, _UINT_OUT)),
    "nvmlDeviceGetName": (_RET, (_HANDLE, _CHAR_BUF, c_uint)),
    "nvmlDeviceGetUUID": (_RET, (_HANDLE, _CHAR_BUF, c_uint)),
    "nvmlDeviceGetPowerUsage": (_RET, (_HANDLE, _UINT_OUT)),
    "nvmlDeviceGetTotalEnergyConsumption": (_RET, (_HANDLE, _U64_OUT)),
    "nvmlDeviceGetEnforcedPowerLimit": (_RET, (_HANDLE, _UINT_OUT)),
    "nvmlDeviceGetPowerManagementLimit": (_RET, (_HANDLE, _UINT_OUT)),
    "nvmlDeviceGetArchitecture": (_RET, (_HANDLE, _UINT_OUT)),
    "nvmlDeviceIsMigDeviceHandle": (_RET, (_HANDLE, _UINT_OUT)),
    "nvmlDeviceGetDeviceHandleFromMigDeviceHandle": (_RET, (_HANDLE, _HANDLE_OUT)),
    "nvmlDeviceGetMaxMigDeviceCount": (_RET, (_HANDLE, _UINT_OUT)),
    "nvmlDeviceGetMigDeviceHandleByIndex": (_RET, (_HANDLE, c_uint, _HANDLE_OUT)),
    "nvmlDeviceGetMigMode": (_RET, (_HANDLE, _UINT_OUT, _UINT_OUT)),
}
_REGISTER = ctypes.CFUNCTYPE(c_int, c_char_p, c_void_p)  # greenml_sim_register in the shim
_DEFAULT_TRACE = constant(300.0)


@dataclass(frozen=True)
class SimGPU:
    """One simulated GPU.

    ``trace`` is its power over driver time. ``has_counter=False`` makes the energy
    counter unsupported (pre-Volta GPUs, vGPU). ``power_reading`` is ``"average_1s"`` or
    ``"instantaneous"``. ``uuid=None`` gives a deterministic ``GPU-...`` UUID from the
    device index. ``lost_at_s``: from this driver time on, every call on the device
    fails with ``NVML_ERROR_GPU_IS_LOST``. ``not_supported`` is a subset of
    ``{"energy", "power", "power_limit", "architecture"}``. ``unknown_error_windows``
    holds ``(start_s, end_s)`` spans of driver time in which power and energy reads fail
    with ``NVML_ERROR_UNKNOWN``. ``mig_instances > 0`` puts the GPU in MIG mode with that
    many MIG devices (Ampere, Hopper and Blackwell only; at most 7).

    Broken-driver faults: ``power_override_windows`` holds ``(start_s, end_s, mw)`` spans in
    which the power reading is ``mw`` whatever the GPU draws (``0xFFFFFFFF``, the value
    broken drivers answer, or ``0``); ``counter_resets_at`` lists driver times at which the
    energy counter restarts from 0 (a driver reload: NVML counts from the driver's load);
    ``counter_frozen_windows`` holds ``(start_s, end_s)`` spans in which the counter stops
    moving, and the energy used meanwhile is never counted (it resumes from the frozen
    value).
    """

    name: str = "NVIDIA H100 80GB HBM3"
    trace: Trace = _DEFAULT_TRACE
    _: KW_ONLY
    has_counter: bool = True
    power_reading: str = "average_1s"
    architecture: str = "hopper"
    power_limit_w: float = 700.0
    uuid: str | None = None
    counter_start_mj: int = 123_456_789
    lost_at_s: float | None = None
    not_supported: frozenset[str] = field(default_factory=frozenset)
    unknown_error_windows: tuple[tuple[float, float], ...] = ()
    mig_instances: int = 0
    power_override_windows: tuple[tuple[float, float, int], ...] = ()
    counter_resets_at: tuple[float, ...] = ()
    counter_frozen_windows: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        if len(self.name.encode()) >= _NAME_BUFFER_SIZE:
            raise ValueError(f"name must be under {_NAME_BUFFER_SIZE} bytes, got {self.name!r}")
        if not isinstance(self.trace, Trace):
            raise ValueError(f"trace must be a greenml.testing.traces.Trace, got {self.trace!r}")
        if self.power_reading not in _POWER_READINGS:
            raise ValueError(
                f"power_reading must be one of {sorted(_POWER_READINGS)}, "
                f"got {self.power_reading!r}"
            )
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture must be one of {list(ARCHITECTURES)}, got {self.architecture!r}"
            )
        limit = float(self.power_limit_w)
        if not math.isfinite(limit) or limit <= 0:
            raise ValueError(f"power_limit_w must be positive, got {self.power_limit_w!r}")
        if self.uuid is not None and (
            not isinstance(self.uuid, str)
            or not self.uuid
            or len(self.uuid.encode()) >= _UUID_BUFFER_SIZE
        ):
            raise ValueError(f"uuid must be a short non-empty string or None, got {self.uuid!r}")
        start = self.counter_start_mj
        if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start < 2**63:
            raise ValueError(f"counter_start_mj must be a non-negative int, got {start!r}")
        if self.lost_at_s is not None and not math.isfinite(float(self.lost_at_s)):
            raise ValueError(f"lost_at_s must be a finite time or None, got {self.lost_at_s!r}")
        if isinstance(self.not_supported, str):
            raise ValueError(f"not_supported must be a set of names, got {self.not_supported!r}")
        not_supported = frozenset(self.not_supported)
        if not not_supported <= _FIELDS:
            raise ValueError(
                f"not_supported may only hold {sorted(_FIELDS)}, "
                f"got {sorted(not_supported - _FIELDS)}"
            )
        windows = []
        for window in self.unknown_error_windows:
            try:
                a, b = (float(x) for x in window)
            except (TypeError, ValueError):
                raise ValueError(
                    f"unknown_error_windows entries must be (start_s, end_s), got {window!r}"
                ) from None
            if not a < b:
                raise ValueError(f"an unknown_error_windows entry needs start < end: {window!r}")
            windows.append((a, b))
        mig = self.mig_instances
        if isinstance(mig, bool) or not isinstance(mig, int) or not 0 <= mig <= _MAX_MIG_DEVICES:
            raise ValueError(f"mig_instances must be an int in 0..{_MAX_MIG_DEVICES}, got {mig!r}")
        if mig and self.architecture not in _MIG_CAPABLE:
            raise ValueError(
                f"mig_instances={mig} needs a MIG-capable architecture "
                f"({sorted(_MIG_CAPABLE)}), got {self.architecture!r}"
            )
        overrides = []
        for window in self.power_override_windows:
            try:
                a, b, mw = float(window[0]), float(window[1]), int(window[2])
            except (TypeError, ValueError, IndexError):
                raise ValueError(
                    f"power_override_windows entries must be (start_s, end_s, mw), got {window!r}"
                ) from None
            if not a < b or not 0 <= mw < 2**32:
                raise ValueError(f"a power_override_windows entry is invalid: {window!r}")
            overrides.append((a, b, mw))
        object.__setattr__(self, "power_override_windows", tuple(overrides))
        resets = tuple(sorted(float(t) for t in self.counter_resets_at))
        if not all(math.isfinite(t) for t in resets):
            raise ValueError(f"counter_resets_at must be finite times, got {resets!r}")
        object.__setattr__(self, "counter_resets_at", resets)
        frozen = []
        for window in self.counter_frozen_windows:
            a, b = (float(x) for x in window)
            if not a < b:
                raise ValueError(f"a counter_frozen_windows entry needs start < end: {window!r}")
            frozen.append((a, b))
        object.__setattr__(self, "counter_frozen_windows", tuple(sorted(frozen)))
        object.__setattr__(self, "power_limit_w", limit)
        object.__setattr__(self, "not_supported", not_supported)
        object.__setattr__(self, "unknown_error_windows", tuple(windows))
        if self.lost_at_s is not None:
            object.__setattr__(self, "lost_at_s", float(self.lost_at_s))


@dataclass(frozen=True)
class _Target:
    """What a handle points at: a GPU, or MIG device ``mig_index`` of that GPU."""

    gpu_index: int
    mig_index: int | None = None


class _Fail(Exception):
    """Raised inside a simulated call to return an NVML error code."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class _NvmlLibrary:
    """Stands in for pynvml's ``CDLL("libnvidia-ml.so.1")``: one attribute per function."""

    def __init__(self, functions: Mapping[str, Any]) -> None:
        self.functions = dict(functions)
        for name, fn in self.functions.items():
            setattr(self, name, fn)

    def __repr__(self) -> str:
        return f"<simulated libnvidia-ml, {len(self.functions)} functions>"


class SimulatedNVML:
    """A simulated NVML driver serving ``gpus`` on driver time ``clock() - epoch_s``.

    ``epoch_s`` (when the driver was loaded) defaults to ``clock()`` now.
    ``counter_refresh_s`` is the energy counter's refresh period. ``calls`` counts the
    calls per NVML function name. Thread-safe.
    """

    def __init__(
        self,
        gpus: Sequence[SimGPU],
        *,
        clock: Callable[[], float] = time.monotonic,
        epoch_s: float | None = None,
        counter_refresh_s: float = 0.1,
        driver_version: str = "550.54.15-greenml-sim",
    ) -> None:
        gpus = tuple(gpus)
        for n, gpu in enumerate(gpus):
            if not isinstance(gpu, SimGPU):
                raise ValueError(f"gpus[{n}] must be a SimGPU, got {gpu!r}")
        refresh = float(counter_refresh_s)
        if not math.isfinite(refresh) or refresh <= 0:
            raise ValueError(f"counter_refresh_s must be positive, got {counter_refresh_s!r}")
        if not isinstance(driver_version, str) or not 0 < len(driver_version) < 70:
            raise ValueError(f"driver_version must be a short string, got {driver_version!r}")
        self._gpus = tuple(
            gpu if gpu.uuid is not None else replace(gpu, uuid=_default_uuid(i))
            for i, gpu in enumerate(gpus)
        )
        self._mig_uuids = tuple(
            tuple(
                f"MIG-{uuid_module.uuid5(_UUID_NAMESPACE, f'{gpu.uuid}/mig/{j}')}"
                for j in range(gpu.mig_instances)
            )
            for gpu in self._gpus
        )
        seen: set[str] = set()
        for uid in [g.uuid for g in self._gpus] + [u for m in self._mig_uuids for u in m]:
            if uid in seen:
                raise ValueError(f"two simulated devices share the UUID {uid!r}")
            seen.add(uid)
        self._clock = clock
        self._epoch_s = float(clock() if epoch_s is None else epoch_s)
        self._refresh_s = refresh
        self._driver_version = driver_version
        self._lock = threading.Lock()
        self._init_count = 0
        self._saved: tuple[Any, dict[str, Any], int] | None = None
        self.calls: Counter[str] = Counter()

        # Handles are addresses inside memory this object owns: unique, never NULL.
        targets = [_Target(i) for i in range(len(self._gpus))]
        targets += [_Target(i, j) for i, g in enumerate(self._gpus) for j in range(g.mig_instances)]
        self._handle_memory = (c_char * (8 * max(1, len(targets))))()
        base = ctypes.addressof(self._handle_memory)
        self._targets = {base + 8 * slot: t for slot, t in enumerate(targets)}
        self._handles = {t: h for h, t in self._targets.items()}
        self._by_uuid = {g.uuid: self._handles[_Target(i)] for i, g in enumerate(self._gpus)}
        for i, uids in enumerate(self._mig_uuids):
            self._by_uuid.update({u: self._handles[_Target(i, j)] for j, u in enumerate(uids)})
        self._messages = {
            code: ctypes.create_string_buffer(msg.encode()) for code, msg in _ERROR_MESSAGES.items()
        }
        # Every callback object stays referenced by self._lib for the sim's lifetime.
        self._lib = _NvmlLibrary(
            {
                name: ctypes.CFUNCTYPE(restype, *argtypes)(self._entry(name))
                for name, (restype, argtypes) in _SIGNATURES.items()
            }
        )

    # -- public ------------------------------------------------------------------------

    @property
    def gpus(self) -> tuple[SimGPU, ...]:
        """The simulated GPUs, with their UUIDs filled in."""
        return self._gpus

    @property
    def epoch_s(self) -> float:
        """Clock reading at which driver time is zero."""
        return self._epoch_s

    @property
    def counter_refresh_s(self) -> float:
        return self._refresh_s

    def time_s(self) -> float:
        """Driver time τ: seconds on the clock since ``epoch_s``."""
        return self._clock() - self._epoch_s

    @property
    def installed(self) -> bool:
        return self._saved is not None

    def install(self) -> None:
        """Make pynvml call this simulation instead of ``libnvidia-ml.so``."""
        import pynvml

        with pynvml.libLoadLock:
            if self._saved is not None:
                raise RuntimeError("this SimulatedNVML is already installed")
            cache = _function_cache(pynvml)
            self._saved = (pynvml.nvmlLib, dict(cache), pynvml._nvmlLib_refcount)
            pynvml.nvmlLib = self._lib
            cache.clear()
            pynvml._nvmlLib_refcount = 0

    def uninstall(self) -> None:
        """Give pynvml back the library, function cache and init count it had before."""
        import pynvml

        with pynvml.libLoadLock:
            if self._saved is None:
                raise RuntimeError("this SimulatedNVML is not installed")
            if pynvml.nvmlLib is not self._lib:
                raise RuntimeError(
                    f"pynvml.nvmlLib is now {pynvml.nvmlLib!r}, not this simulation; "
                    "uninstall whatever was installed after it first"
                )
            lib, cached, refcount = self._saved
            cache = _function_cache(pynvml)
            cache.clear()
            cache.update(cached)
            pynvml.nvmlLib = lib
            pynvml._nvmlLib_refcount = refcount
            self._saved = None

    def __enter__(self) -> SimulatedNVML:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    def export(self, directory: str | os.PathLike[str]) -> dict[str, str]:
        """Make this simulation available to child processes; return their environment.

        Writes the configuration to ``directory`` and compiles the NVML shim into
        ``directory/libnvidia-ml.so.1`` with ``$CC`` (default ``cc``). Merge the returned
        ``LD_LIBRARY_PATH`` and ``GREENML_SIM_NVML_CONFIG`` into the child's environment.
        Needs ``clock=time.monotonic``, the clock every process on a Linux machine shares.
        Children run their own copy of the simulation: their ``calls`` and ``nvmlInit``
        counts are their own, the power traces and counters agree with this one.
        """
        if self._clock is not time.monotonic:
            raise ValueError(
                "export() needs a SimulatedNVML built with clock=time.monotonic, the only "
                f"clock child processes share; this one uses {self._clock!r}"
            )
        if not sys.platform.startswith("linux"):
            raise RuntimeError(f"export() builds a Linux shared library; this is {sys.platform}")
        folder = Path(directory).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        config_path = folder / _CONFIG_NAME
        config_path.write_text(json.dumps(self._config(), indent=2) + "\n", encoding="utf-8")
        _build_shim(folder / _SHIM_NAME)
        old = os.environ.get("LD_LIBRARY_PATH", "")
        return {
            "LD_LIBRARY_PATH": f"{folder}:{old}" if old else str(folder),
            CONFIG_ENV: str(config_path),
        }

    # -- configuration -----------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        return {
            "version": _CONFIG_VERSION,
            "epoch_s": self._epoch_s,
            "counter_refresh_s": self._refresh_s,
            "driver_version": self._driver_version,
            "gpus": [
                {
                    "name": g.name,
                    "trace": {
                        "segments": [list(s) for s in g.trace.segments],
                        "repeat": g.trace.repeat,
                    },
                    "has_counter": g.has_counter,
                    "power_reading": g.power_reading,
                    "architecture": g.architecture,
                    "power_limit_w": g.power_limit_w,
                    "uuid": g.uuid,
                    "counter_start_mj": g.counter_start_mj,
                    "lost_at_s": g.lost_at_s,
                    "not_supported": sorted(g.not_supported),
                    "unknown_error_windows": [list(w) for w in g.unknown_error_windows],
                    "mig_instances": g.mig_instances,
                    "power_override_windows": [list(w) for w in g.power_override_windows],
                    "counter_resets_at": list(g.counter_resets_at),
                    "counter_frozen_windows": [list(w) for w in g.counter_frozen_windows],
                }
                for g in self._gpus
            ],
        }

    @classmethod
    def _from_config(cls, config: Mapping[str, Any]) -> SimulatedNVML:
        if config.get("version") != _CONFIG_VERSION:
            raise ValueError(
                f"simulated NVML config version {config.get('version')!r} is not "
                f"{_CONFIG_VERSION}; export it again with this greenml"
            )
        gpus = []
        for g in config["gpus"]:
            fields = dict(g)
            trace = fields.pop("trace")
            fields["trace"] = Trace(
                tuple((float(d), float(w)) for d, w in trace["segments"]), repeat=trace["repeat"]
            )
            fields["not_supported"] = frozenset(fields["not_supported"])
            fields["unknown_error_windows"] = tuple(
                (float(a), float(b)) for a, b in fields["unknown_error_windows"]
            )
            fields["power_override_windows"] = tuple(
                (float(a), float(b), int(mw)) for a, b, mw in fields["power_override_windows"]
            )
            fields["counter_resets_at"] = tuple(float(t) for t in fields["counter_resets_at"])
            fields["counter_frozen_windows"] = tuple(
                (float(a), float(b)) for a, b in fields["counter_frozen_windows"]
            )
            gpus.append(SimGPU(**fields))
        return cls(
            gpus,
            clock=time.monotonic,
            epoch_s=float(config["epoch_s"]),
            counter_refresh_s=float(config["counter_refresh_s"]),
            driver_version=config["driver_version"],
        )

    # -- the driver model --------------------------------------------------------------

    def _energy_mj(self, gpu: SimGPU, tau: float) -> int:
        k = math.floor(tau / self._refresh_s + _GRID_TOL)
        refreshed_s = max(0.0, k * self._refresh_s)
        # a driver reload restarts the counter from 0; a frozen span is never counted
        resets = [t for t in gpu.counter_resets_at if t <= refreshed_s]
        origin = resets[-1] if resets else 0.0
        base = 0 if resets else gpu.counter_start_mj
        joules = gpu.trace.energy_j(origin, refreshed_s) if refreshed_s > origin else 0.0
        for a, b in gpu.counter_frozen_windows:
            lo, hi = max(a, origin), min(b, refreshed_s)
            if hi > lo:
                joules -= gpu.trace.energy_j(lo, hi)
        return base + math.floor(1000.0 * max(0.0, joules) + _MJ_TOL)

    def _power_mw(self, gpu: SimGPU, tau: float) -> int:
        for a, b, mw in gpu.power_override_windows:
            if a <= tau < b:
                return mw
        if gpu.power_reading == "average_1s":
            watts = gpu.trace.mean_w(tau - _AVERAGE_WINDOW_S, tau)
        else:
            k = math.floor((tau - _INSTANT_WINDOW_S) / _INSTANT_PERIOD_S + _GRID_TOL)
            start = k * _INSTANT_PERIOD_S
            watts = gpu.trace.mean_w(start, start + _INSTANT_WINDOW_S)
        return min(2**32 - 1, math.floor(1000.0 * watts + 0.5))

    # -- calls -------------------------------------------------------------------------

    def _entry(self, name: str) -> Callable[..., int]:
        impl = getattr(self, f"_{name}")
        fallback = (
            ctypes.addressof(self._messages[NVML_ERROR_UNKNOWN])
            if name == "nvmlErrorString"
            else NVML_ERROR_UNKNOWN
        )

        def entry(*args: Any) -> int:
            with self._lock:
                self.calls[name] += 1
                try:
                    return impl(*args)
                except _Fail as fail:
                    return fail.code
                except Exception:  # a bug here must not look like NVML_SUCCESS
                    _log.exception("simulated NVML: %s%r failed", name, args)
                    return fallback

        return entry

    def _require_init(self) -> None:
        if self._init_count == 0:
            raise _Fail(NVML_ERROR_UNINITIALIZED)

    def _device(self, handle: int | None) -> tuple[_Target, SimGPU, float]:
        self._require_init()
        target = self._targets.get(handle) if handle else None
        if target is None:
            raise _Fail(NVML_ERROR_INVALID_ARGUMENT)
        gpu = self._gpus[target.gpu_index]
        tau = self.time_s()
        if gpu.lost_at_s is not None and tau >= gpu.lost_at_s:
            raise _Fail(NVML_ERROR_GPU_IS_LOST)
        return target, gpu, tau

    def _reading(self, handle: int | None, field_name: str) -> tuple[SimGPU, float]:
        target, gpu, tau = self._device(handle)
        if target.mig_index is not None or field_name in gpu.not_supported:
            raise _Fail(NVML_ERROR_NOT_SUPPORTED)
        if field_name == "energy" and not gpu.has_counter:
            raise _Fail(NVML_ERROR_NOT_SUPPORTED)
        if field_name in ("energy", "power") and any(
            a <= tau < b for a, b in gpu.unknown_error_windows
        ):
            raise _Fail(NVML_ERROR_UNKNOWN)
        return gpu, tau

    def _gpu_handle_out(self, index: int, out: int | None) -> int:
        self._require_init()
        if not out or not 0 <= index < len(self._gpus):
            raise _Fail(NVML_ERROR_INVALID_ARGUMENT)
        self._device(self._handles[_Target(index)])  # a lost GPU has no handle either
        return _put_handle(out, self._handles[_Target(index)])

    # One method per NVML function, named after it.

    def _nvmlInit_v2(self) -> int:
        self._init_count += 1
        return NVML_SUCCESS

    def _nvmlInitWithFlags(self, flags: int) -> int:
        self._init_count += 1
        return NVML_SUCCESS

    def _nvmlShutdown(self) -> int:
        self._require_init()
        self._init_count -= 1
        return NVML_SUCCESS

    def _nvmlErrorString(self, code: int) -> int:
        message = self._messages.get(code, self._messages[NVML_ERROR_UNKNOWN])
        return ctypes.addressof(message)

    def _nvmlSystemGetDriverVersion(self, buf: Any, length: int) -> int:
        self._require_init()
        return _put_string(buf, length, self._driver_version)

    def _nvmlSystemGetNVMLVersion(self, buf: Any, length: int) -> int:
        self._require_init()
        return _put_string(buf, length, f"12.{self._driver_version}")

    def _nvmlDeviceGetCount_v2(self, out: Any) -> int:
        self._require_init()
        return _put(out, len(self._gpus))

    def _nvmlDeviceGetHandleByIndex_v2(self, index: int, out: int | None) -> int:
        return self._gpu_handle_out(index, out)

    def _nvmlDeviceGetHandleByUUID(self, uuid: bytes | None, out: int | None) -> int:
        self._require_init()
        if uuid is None or not out:
            raise _Fail(NVML_ERROR_INVALID_ARGUMENT)
        handle = self._by_uuid.get(uuid.decode(errors="replace"))
        if handle is None:
            raise _Fail(NVML_ERROR_NOT_FOUND)
        self._device(handle)
        return _put_handle(out, handle)

    def _nvmlDeviceGetIndex(self, handle: int | None, out: Any) -> int:
        target, _, _ = self._device(handle)
        if target.mig_index is not None:
            raise _Fail(NVML_ERROR_NOT_SUPPORTED)
        return _put(out, target.gpu_index)

    def _nvmlDeviceGetName(self, handle: int | None, buf: Any, length: int) -> int:
        target, gpu, _ = self._device(handle)
        name = gpu.name if target.mig_index is None else f"{gpu.name} MIG {target.mig_index}"
        return _put_string(buf, length, name)

    def _nvmlDeviceGetUUID(self, handle: int | None, buf: Any, length: int) -> int:
        target, gpu, _ = self._device(handle)
        if target.mig_index is None:
            return _put_string(buf, length, gpu.uuid or "")
        return _put_string(buf, length, self._mig_uuids[target.gpu_index][target.mig_index])

    def _nvmlDeviceGetPowerUsage(self, handle: int | None, out: Any) -> int:
        gpu, tau = self._reading(handle, "power")
        return _put(out, self._power_mw(gpu, tau))

    def _nvmlDeviceGetTotalEnergyConsumption(self, handle: int | None, out: Any) -> int:
        gpu, tau = self._reading(handle, "energy")
        return _put(out, self._energy_mj(gpu, tau))

    def _nvmlDeviceGetEnforcedPowerLimit(self, handle: int | None, out: Any) -> int:
        gpu, _ = self._reading(handle, "power_limit")
        return _put(out, round(gpu.power_limit_w * 1000))

    def _nvmlDeviceGetPowerManagementLimit(self, handle: int | None, out: Any) -> int:
        return self._nvmlDeviceGetEnforcedPowerLimit(handle, out)

    def _nvmlDeviceGetArchitecture(self, handle: int | None, out: Any) -> int:
        _, gpu, _ = self._device(handle)
        if "architecture" in gpu.not_supported:
            raise _Fail(NVML_ERROR_NOT_SUPPORTED)
        return _put(out, ARCHITECTURES[gpu.architecture])

    def _nvmlDeviceIsMigDeviceHandle(self, handle: int | None, out: Any) -> int:
        target, _, _ = self._device(handle)
        return _put(out, int(target.mig_index is not None))

    def _nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, handle: int | None, out: Any) -> int:
        target, _, _ = self._device(handle)
        if target.mig_index is None or not out:
            raise _Fail(NVML_ERROR_INVALID_ARGUMENT)
        return _put_handle(out, self._handles[_Target(target.gpu_index)])

    def _nvmlDeviceGetMaxMigDeviceCount(self, handle: int | None, out: Any) -> int:
        target, gpu, _ = self._device(handle)
        if target.mig_index is not None:
            raise _Fail(NVML_ERROR_NOT_SUPPORTED)
        return _put(out, _MAX_MIG_DEVICES if gpu.mig_instances else 0)

    def _nvmlDeviceGetMigDeviceHandleByIndex(self, handle: int | None, index: int, out: Any) -> int:
        target, gpu, _ = self._device(handle)
        if target.mig_index is not None or not out:
            raise _Fail(NVML_ERROR_INVALID_ARGUMENT)
        if not 0 <= index < gpu.mig_instances:
            raise _Fail(NVML_ERROR_NOT_FOUND)
        return _put_handle(out, self._handles[_Target(target.gpu_index, index)])

    def _nvmlDeviceGetMigMode(self, handle: int | None, current: Any, pending: Any) -> int:
        target, gpu, _ = self._device(handle)
        if target.mig_index is not None or gpu.architecture not in _MIG_CAPABLE:
            raise _Fail(NVML_ERROR_NOT_SUPPORTED)
        if not current or not pending:
            raise _Fail(NVML_ERROR_INVALID_ARGUMENT)
        mode = int(gpu.mig_instances > 0)  # NVML_DEVICE_MIG_ENABLE / _DISABLE
        current[0] = mode
        pending[0] = mode
        return NVML_SUCCESS


def _default_uuid(index: int) -> str:
    return f"GPU-{uuid_module.uuid5(_UUID_NAMESPACE, f'gpu/{index}')}"


def _put(out: Any, value: int) -> int:
    if not out:
        raise _Fail(NVML_ERROR_INVALID_ARGUMENT)
    out[0] = value
    return NVML_SUCCESS


def _put_handle(out: int | None, handle: int) -> int:
    if not out:
        raise _Fail(NVML_ERROR_INVALID_ARGUMENT)
    c_void_p.from_address(out).value = handle
    return NVML_SUCCESS


def _put_string(buf: Any, length: int, text: str) -> int:
    data = text.encode() + b"\0"
    if not buf:
        raise _Fail(NVML_ERROR_INVALID_ARGUMENT)
    if len(data) > length:
        raise _Fail(NVML_ERROR_INSUFFICIENT_SIZE)
    ctypes.memmove(buf, data, len(data))
    return NVML_SUCCESS


def _function_cache(pynvml: Any) -> dict[str, Any]:
    cache = getattr(pynvml, "_nvmlGetFunctionPointer_cache", None)
    return cache if isinstance(cache, dict) else {}


def _build_shim(target: Path) -> None:
    """Compile nvml_shim.c (package data next to this module) into ``target``."""
    cc_env = os.environ.get("CC", "").strip()
    cc = shlex.split(cc_env) if cc_env else ["cc"]
    if shutil.which(cc[0]) is None:
        where = "$CC" if cc_env else "the default 'cc'"
        raise RuntimeError(
            f"cannot build the simulated NVML shim: C compiler {cc[0]!r} ({where}) not "
            "found; install a C compiler or point $CC at one"
        )
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    source = importlib.resources.files(__package__ or "greenml.testing") / "nvml_shim.c"
    with importlib.resources.as_file(source) as src:
        cmd = [*cc, "-shared", "-fPIC", "-O2", "-Wall", "-fvisibility=hidden"]
        cmd += ["-o", str(tmp), str(src), "-ldl", "-pthread"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(
            f"building the simulated NVML shim failed ({shlex.join(cmd)}):\n{proc.stderr}"
        )
    os.replace(tmp, target)


# Simulations attached to a shim in this process. The shim's C table holds raw pointers
# to their callbacks, so they must live as long as the process.
_ATTACHED: list[SimulatedNVML] = []


def _attach_shim(register_addr: int) -> None:
    """Called by nvml_shim.c on the first nvmlInit in a child process.

    Builds the simulation from the file named by ``GREENML_SIM_NVML_CONFIG`` and hands
    each callback to the shim's ``greenml_sim_register(name, fn)`` at ``register_addr``.
    """
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise RuntimeError(
            f"{CONFIG_ENV} is not set; use the environment returned by SimulatedNVML.export()"
        )
    with open(path, encoding="utf-8") as f:
        sim = SimulatedNVML._from_config(json.load(f))
    register = _REGISTER(register_addr)
    for name, fn in sim._lib.functions.items():
        if register(name.encode("ascii"), ctypes.cast(fn, c_void_p)) != 0:
            raise RuntimeError(f"the NVML shim has no slot for {name}; export() again")
    _ATTACHED.append(sim)
    _log.debug("simulated NVML attached to the shim from %s", path)
