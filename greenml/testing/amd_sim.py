"""A simulated AMD SMI for testing AMD GPU code on machines without an AMD GPU.

Where it stands in: at the ``amdsmi`` module boundary. ``with SimulatedAMDSMI([...]):``
puts a fake ``amdsmi`` module into ``sys.modules`` (and restores whatever was there on
exit), so ``import amdsmi`` anywhere returns it. Unlike :class:`SimulatedNVML`, which
plays ``libnvidia-ml.so`` below the real ``pynvml`` bindings, the real ``amdsmi``
package is not exercised: it loads ``libamd_smi.so`` with ``ctypes.CDLL`` at import
and binds hundreds of symbols with their C structures, and it is not a greenml
dependency. The fake answers the calls greenml makes, with the shapes ``amdsmi`` 6.2+
returns (dicts keyed as in ``amdsmi_interface.py``; errors as
``AmdSmiLibraryException`` carrying an ``amdsmi_status_t`` code).

Per :class:`SimAMDGPU`, over driver time τ = ``clock() - epoch_s``:

- ``amdsmi_get_energy_count``: an energy accumulator in units of
  ``counter_resolution`` microjoules (15.259 µJ by default), counting from
  ``counter_start_uj`` and refreshed on a ``counter_refresh_s`` grid, like the NVML
  simulation's counter: between refreshes it returns the stale value
  ``floor((counter_start_uj + 1e6 · ∫_0^r P) / resolution)`` with
  ``r = floor(τ / refresh) · refresh``; ``timestamp`` is ``r`` in nanoseconds.
- ``amdsmi_get_power_info``: the power at τ in whole watts, in ``power_field``
  (``"current_socket_power"``, MI300-like, or ``"average_socket_power"``, MI200-like);
  the other field reads ``"N/A"``.
- ``amdsmi_get_power_cap_info``: ``power_cap`` in microwatts.
- faults: no counter (``has_counter=False``: ``AMDSMI_STATUS_NOT_SUPPORTED``, as on a
  VM guest), ``not_supported`` fields, and ``unknown_error_windows`` in which power and
  energy reads fail with ``AMDSMI_STATUS_UNKNOWN_ERROR``.

Calls before ``amdsmi_init`` fail with ``AMDSMI_STATUS_NOT_INIT``. ``calls`` counts the
calls per function name. Thread-safe.
"""

from __future__ import annotations

import math
import sys
import threading
import time
import types
import uuid as uuid_module
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass, field, replace
from enum import IntEnum
from typing import Any

from greenml.testing.traces import Trace, constant

__all__ = ["SimAMDGPU", "SimulatedAMDSMI"]

# amdsmi_status_t (amdsmi.h; amdsmi_wrapper.AMDSMI_STATUS_*)
AMDSMI_STATUS_INVAL = 1
AMDSMI_STATUS_NOT_SUPPORTED = 2
AMDSMI_STATUS_NOT_INIT = 32
AMDSMI_STATUS_UNKNOWN_ERROR = 0xFFFFFFFF

_FIELDS = frozenset({"energy", "power", "power_cap"})
_POWER_FIELDS = ("current_socket_power", "average_socket_power")
_GRID_TOL = 1e-6  # fraction of a refresh interval
_UJ_TOL = 1e-6
_UUID_NAMESPACE = uuid_module.uuid5(uuid_module.NAMESPACE_URL, "greenml.testing.amd_sim")
_DEFAULT_TRACE = constant(300.0)


@dataclass(frozen=True)
class SimAMDGPU:
    """One simulated AMD GPU (see the module docstring for what each field drives)."""

    name: str = "AMD Instinct MI300X"
    trace: Trace = _DEFAULT_TRACE
    _: KW_ONLY
    has_counter: bool = True
    power_field: str = "current_socket_power"
    power_cap_w: float = 750.0
    uuid: str | None = None
    counter_start_uj: int = 987_654_321
    counter_resolution_uj: float = 15.259
    not_supported: frozenset[str] = field(default_factory=frozenset)
    unknown_error_windows: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.trace, Trace):
            raise ValueError(f"trace must be a greenml.testing.traces.Trace, got {self.trace!r}")
        if self.power_field not in _POWER_FIELDS:
            raise ValueError(
                f"power_field must be one of {_POWER_FIELDS}, got {self.power_field!r}"
            )
        unknown = set(self.not_supported) - _FIELDS
        if unknown:
            raise ValueError(
                f"not_supported: unknown fields {sorted(unknown)}; use {sorted(_FIELDS)}"
            )
        if not self.counter_resolution_uj > 0:
            raise ValueError(
                f"counter_resolution_uj must be > 0, got {self.counter_resolution_uj!r}"
            )


class AmdSmiException(Exception):
    """Base class of the fake module's errors (``amdsmi.AmdSmiException``)."""


class AmdSmiLibraryException(AmdSmiException):
    """A failed library call with its ``amdsmi_status_t`` code, as in ``amdsmi``."""

    def __init__(self, err_code: int) -> None:
        super().__init__(err_code)
        self.err_code = abs(err_code)
        self.err_info = {
            AMDSMI_STATUS_INVAL: "AMDSMI_STATUS_INVAL - Invalid parameters",
            AMDSMI_STATUS_NOT_SUPPORTED: "AMDSMI_STATUS_NOT_SUPPORTED - Feature not supported",
            AMDSMI_STATUS_NOT_INIT: "AMDSMI_STATUS_NOT_INIT - Device not initialized",
        }.get(self.err_code, "AMDSMI_STATUS_UNKNOWN_ERROR - An unknown error occurred")

    def __str__(self) -> str:
        return f"Error code:\n\t{self.err_code} | {self.err_info}"

    def get_error_code(self) -> int:
        return self.err_code

    def get_error_info(self, detailed: bool = True) -> str:
        return self.err_info if detailed else self.err_info.split(" - ")[0]


class AmdSmiParameterException(AmdSmiException):
    """An argument of the wrong type (``amdsmi.AmdSmiParameterException``)."""


class AmdSmiInitFlags(IntEnum):
    INIT_ALL_PROCESSORS = 0xFFFFFFFF
    INIT_AMD_CPUS = 1
    INIT_AMD_GPUS = 2
    INIT_NON_AMD_CPUS = 4
    INIT_NON_AMD_GPUS = 8


@dataclass(frozen=True)
class _Handle:
    """An opaque processor handle (``amdsmi_processor_handle``)."""

    slot: int


class SimulatedAMDSMI:
    """A simulated AMD SMI serving ``gpus`` on driver time ``clock() - epoch_s``.

    ``epoch_s`` defaults to ``clock()`` now; ``counter_refresh_s`` is the energy
    accumulator's refresh period. Use as a context manager (or :meth:`install` /
    :meth:`uninstall`); :attr:`module` is the fake ``amdsmi`` module.
    """

    def __init__(
        self,
        gpus: Sequence[SimAMDGPU],
        *,
        clock: Callable[[], float] = time.monotonic,
        epoch_s: float | None = None,
        counter_refresh_s: float = 0.1,
        driver_version: str = "6.8.5-greenml-sim",
    ) -> None:
        gpus = tuple(gpus)
        for n, gpu in enumerate(gpus):
            if not isinstance(gpu, SimAMDGPU):
                raise ValueError(f"gpus[{n}] must be a SimAMDGPU, got {gpu!r}")
        refresh = float(counter_refresh_s)
        if not math.isfinite(refresh) or refresh <= 0:
            raise ValueError(f"counter_refresh_s must be positive, got {counter_refresh_s!r}")
        self._gpus = tuple(
            g
            if g.uuid is not None
            else replace(g, uuid=str(uuid_module.uuid5(_UUID_NAMESPACE, str(i))))
            for i, g in enumerate(gpus)
        )
        if len({g.uuid for g in self._gpus}) != len(self._gpus):
            raise ValueError("two simulated AMD GPUs share a UUID")
        self._clock = clock
        self._epoch_s = float(clock() if epoch_s is None else epoch_s)
        self._refresh_s = refresh
        self._driver_version = driver_version
        self._lock = threading.Lock()
        self._init_count = 0
        self._handles = [_Handle(i) for i in range(len(self._gpus))]
        self._saved: tuple[bool, Any] | None = None
        self.calls: Counter[str] = Counter()
        self.module = self._build_module()

    # -- public ------------------------------------------------------------------------

    @property
    def gpus(self) -> tuple[SimAMDGPU, ...]:
        """The simulated GPUs, with their UUIDs filled in."""
        return self._gpus

    @property
    def epoch_s(self) -> float:
        return self._epoch_s

    def time_s(self) -> float:
        """Driver time τ: seconds on the clock since ``epoch_s``."""
        return self._clock() - self._epoch_s

    @property
    def installed(self) -> bool:
        return self._saved is not None

    def install(self) -> None:
        """Make ``import amdsmi`` return the fake module."""
        if self._saved is not None:
            raise RuntimeError("this SimulatedAMDSMI is already installed")
        self._saved = ("amdsmi" in sys.modules, sys.modules.get("amdsmi"))
        sys.modules["amdsmi"] = self.module

    def uninstall(self) -> None:
        """Give ``sys.modules['amdsmi']`` back what it held before."""
        if self._saved is None:
            raise RuntimeError("this SimulatedAMDSMI is not installed")
        if sys.modules.get("amdsmi") is not self.module:
            raise RuntimeError("sys.modules['amdsmi'] is no longer this simulation")
        present, before = self._saved
        if present:
            sys.modules["amdsmi"] = before
        else:
            del sys.modules["amdsmi"]
        self._saved = None

    def __enter__(self) -> SimulatedAMDSMI:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    # -- the driver model --------------------------------------------------------------

    def _refreshed_s(self, tau: float) -> float:
        k = math.floor(tau / self._refresh_s + _GRID_TOL)
        return max(0.0, k * self._refresh_s)

    def energy_uj(self, gpu: SimAMDGPU, tau: float) -> float:
        """The counter's value in microjoules at driver time ``tau`` (before the
        resolution's floor): what a test may compare the accumulator against."""
        return gpu.counter_start_uj + 1e6 * gpu.trace.energy_j(0.0, self._refreshed_s(tau))

    # -- calls -------------------------------------------------------------------------

    def _build_module(self) -> types.ModuleType:
        mod = types.ModuleType("amdsmi", "greenml's simulated amdsmi (greenml.testing.amd_sim)")
        mod.__dict__.update(
            __version__="0.0.0+greenml-sim",
            AmdSmiException=AmdSmiException,
            AmdSmiLibraryException=AmdSmiLibraryException,
            AmdSmiParameterException=AmdSmiParameterException,
            AmdSmiInitFlags=AmdSmiInitFlags,
        )
        for name in (
            "amdsmi_init",
            "amdsmi_shut_down",
            "amdsmi_get_processor_handles",
            "amdsmi_get_gpu_device_uuid",
            "amdsmi_get_gpu_asic_info",
            "amdsmi_get_gpu_driver_info",
            "amdsmi_get_power_cap_info",
            "amdsmi_get_power_info",
            "amdsmi_get_energy_count",
        ):
            setattr(mod, name, self._entry(name))
        return mod

    def _entry(self, name: str) -> Callable[..., Any]:
        impl = getattr(self, f"_{name}")

        def entry(*args: Any) -> Any:
            with self._lock:
                self.calls[name] += 1
                return impl(*args)

        entry.__name__ = name
        return entry

    def _require_init(self) -> None:
        if self._init_count == 0:
            raise AmdSmiLibraryException(AMDSMI_STATUS_NOT_INIT)

    def _gpu(self, handle: Any) -> SimAMDGPU:
        self._require_init()
        if not isinstance(handle, _Handle) or handle.slot >= len(self._gpus):
            raise AmdSmiParameterException(f"not a processor handle: {handle!r}")
        return self._gpus[handle.slot]

    def _reading(self, handle: Any, field_name: str) -> tuple[SimAMDGPU, float]:
        gpu = self._gpu(handle)
        tau = self.time_s()
        if field_name in gpu.not_supported or (field_name == "energy" and not gpu.has_counter):
            raise AmdSmiLibraryException(AMDSMI_STATUS_NOT_SUPPORTED)
        if any(a <= tau < b for a, b in gpu.unknown_error_windows):
            raise AmdSmiLibraryException(AMDSMI_STATUS_UNKNOWN_ERROR)
        return gpu, tau

    def _amdsmi_init(self, flag: Any = AmdSmiInitFlags.INIT_AMD_GPUS) -> None:
        if not isinstance(flag, AmdSmiInitFlags):
            raise AmdSmiParameterException(f"not an AmdSmiInitFlags: {flag!r}")
        self._init_count += 1

    def _amdsmi_shut_down(self) -> None:
        self._require_init()
        self._init_count -= 1

    def _amdsmi_get_processor_handles(self) -> list[_Handle]:
        self._require_init()
        return list(self._handles)

    def _amdsmi_get_gpu_device_uuid(self, handle: Any) -> str:
        return str(self._gpu(handle).uuid)

    def _amdsmi_get_gpu_asic_info(self, handle: Any) -> dict[str, Any]:
        gpu = self._gpu(handle)
        return {
            "market_name": gpu.name,
            "vendor_id": 0x1002,
            "vendor_name": "Advanced Micro Devices Inc. [AMD/ATI]",
        }

    def _amdsmi_get_gpu_driver_info(self, handle: Any) -> dict[str, str]:
        self._gpu(handle)
        return {
            "driver_name": "amdgpu",
            "driver_version": self._driver_version,
            "driver_date": "N/A",
        }

    def _amdsmi_get_power_cap_info(self, handle: Any) -> dict[str, int]:
        gpu, _ = self._reading(handle, "power_cap")
        cap_uw = round(gpu.power_cap_w * 1e6)
        return {
            "power_cap": cap_uw,
            "default_power_cap": cap_uw,
            "dpm_cap": 0,
            "min_power_cap": 0,
            "max_power_cap": cap_uw,
        }

    def _amdsmi_get_power_info(self, handle: Any) -> dict[str, Any]:
        gpu, tau = self._reading(handle, "power")
        watts = round(gpu.trace.power_w(tau))
        reply: dict[str, Any] = {f: "N/A" for f in _POWER_FIELDS}
        reply[gpu.power_field] = watts
        reply.update(
            socket_power=watts,
            gfx_voltage="N/A",
            soc_voltage="N/A",
            mem_voltage="N/A",
            power_limit=round(gpu.power_cap_w),
        )
        return reply

    def _amdsmi_get_energy_count(self, handle: Any) -> dict[str, Any]:
        gpu, tau = self._reading(handle, "energy")
        count = math.floor(self.energy_uj(gpu, tau) / gpu.counter_resolution_uj + _UJ_TOL)
        return {
            "energy_accumulator": count,
            "counter_resolution": gpu.counter_resolution_uj,
            "timestamp": round(self._refreshed_s(tau) * 1e9),
        }
