"""AMD GPUs through AMD SMI (the ``amdsmi`` Python package, ``pip install 'greenml[amd]'``).

This is the only module that imports ``amdsmi``, and the one place where its errors
(``AmdSmiLibraryException`` and its error codes) become greenml errors
(:func:`_translate`). It holds the amdsmi calls and the choice of devices only: each GPU
is opened as an :class:`AmdDevice` (the device protocol of :mod:`greenml.meters.gpu`),
and :class:`~greenml.meters.gpu.GpuMeter` measures, as for NVIDIA.

Method per device, best first:

- ``counter``: differences of ``amdsmi_get_energy_count`` (``energy_accumulator`` x
  ``counter_resolution`` microjoules; the key is ``power`` before amdsmi 6.2.1), stamped
  on the counter's refresh grid (:mod:`greenml.meters.counter_grid`), which is found
  the same way as NVML's. Not available on virtual-machine guests.
- ``sampled``: otherwise, ``amdsmi_get_power_info``: ``current_socket_power`` (MI300
  and later) or else ``average_socket_power`` (MI200 and earlier, Navi), in whole
  watts, integrated with the trapezoid rule and stamped when read.

Devices: every GPU ``amdsmi_get_processor_handles`` lists (``amdsmi_init`` with
``INIT_AMD_GPUS``), in that order; ``ROCR_VISIBLE_DEVICES`` and then
``HIP_VISIBLE_DEVICES`` (indices or UUIDs) narrow the list as the ROCm runtime does, and
``gpu_ids`` (positions in the visible list, or UUIDs) pick from it. The power cap is
``amdsmi_get_power_cap_info``'s ``power_cap`` (microwatts).

Importing ``amdsmi`` on a machine without ``libamd_smi.so`` prints to stdout and raises;
:func:`_load` silences that, so a machine without AMD GPUs sees nothing from this module.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from greenml.errors import (
    ConfigError,
    DeviceNotFoundError,
    DriverError,
    MeasurementError,
    NotSupportedError,
)
from greenml.meters.base import Clock
from greenml.meters.counter_grid import NOMINAL_REFRESH_S
from greenml.meters.gpu import GpuInfo, GpuMeter

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'greenml[amd]'"
SIM_MARKER = "greenml-sim"

# amdsmi_status_t values (amdsmi.h, mirrored as amdsmi_wrapper.AMDSMI_STATUS_*).
_NOT_SUPPORTED = frozenset({2, 3})  # NOT_SUPPORTED, NOT_YET_IMPLEMENTED
_NOT_FOUND = frozenset({1, 17, 31})  # INVAL, INPUT_OUT_OF_BOUNDS, NOT_FOUND
# FAIL_LOAD_MODULE, FAIL_LOAD_SYMBOL, NO_PERM, INIT_ERROR, NOT_INIT, DRIVER_NOT_LOADED,
# NO_ENERGY_DRV, NO_DRV, FILE_NOT_FOUND
_UNAVAILABLE = frozenset({4, 5, 10, 18, 32, 34, 45, 51, 52})
_NA = (None, "N/A", 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF)
_POWER_KEYS = ("current_socket_power", "average_socket_power")


def _load() -> Any:
    """The ``amdsmi`` module, imported quietly; :class:`NotSupportedError` when it is not
    installed or cannot load its library."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            import amdsmi
    except ModuleNotFoundError as e:
        if e.name == "amdsmi":
            raise NotSupportedError(f"amdsmi is not installed ({INSTALL_HINT})") from e
        raise NotSupportedError(f"amdsmi cannot be imported ({e})") from e
    except Exception as e:  # libamd_smi.so missing (KeyError, OSError), version mismatch
        raise NotSupportedError(
            f"amdsmi cannot load libamd_smi.so ({type(e).__name__}: {e})"
        ) from e
    return amdsmi


def _translate(amdsmi: Any, e: Exception, what: str) -> MeasurementError:
    """Map an amdsmi exception to greenml's error tree."""
    code = getattr(e, "err_code", None)
    msg = f"{what}: {e}".replace("\n", " ").replace("\t", "")
    if not isinstance(e, amdsmi.AmdSmiLibraryException):
        return DriverError(msg)
    if code in _NOT_SUPPORTED:
        return NotSupportedError(msg)
    if code in _NOT_FOUND:
        return DeviceNotFoundError(msg)
    if code in _UNAVAILABLE:
        return NotSupportedError(f"AMD SMI is not available ({msg})")
    return DriverError(msg)


def _call(amdsmi: Any, fn: Callable[..., Any], *args: Any, what: str) -> Any:
    try:
        return fn(*args)
    except amdsmi.AmdSmiException as e:
        raise _translate(amdsmi, e, what) from e
    except (KeyError, TypeError, ValueError) as e:  # a reply shaped unlike this version's
        raise DriverError(f"{what}: unexpected reply from amdsmi ({e!r})") from e


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value in _NA:
        return None
    return float(value) if math.isfinite(value) else None


class AmdDevice:
    """One AMD GPU behind the device protocol (:class:`~greenml.meters.gpu.GpuDevice`)."""

    def __init__(self, amdsmi: Any, handle: Any, info: GpuInfo) -> None:
        self._amdsmi = amdsmi
        self._handle = handle
        self._info = info
        self._what = f"gpu:{info.index}"

    @property
    def info(self) -> GpuInfo:
        return self._info

    def energy_mj(self) -> int:
        a = self._amdsmi
        reply = _call(a, a.amdsmi_get_energy_count, self._handle, what=self._what)
        count = reply["energy_accumulator"] if "energy_accumulator" in reply else reply["power"]
        resolution_uj = float(reply["counter_resolution"])
        return math.floor(count * resolution_uj / 1000.0)

    def power_mw(self) -> int:
        a = self._amdsmi
        reply = _call(a, a.amdsmi_get_power_info, self._handle, what=self._what)
        for key in _POWER_KEYS:
            watts = _number(reply.get(key))
            if watts is not None:
                return round(watts * 1000.0)
        raise NotSupportedError(f"{self._what}: amdsmi reports no socket power ({reply!r})")


class AmdMeter(GpuMeter):
    """Energy of the job's AMD GPUs. Raises :class:`NotSupportedError` at construction
    when amdsmi or any AMD GPU is missing, and :class:`ConfigError` for an unknown
    ``gpu_ids``. ``sleep`` is how the counter-grid polls wait."""

    def __init__(
        self,
        gpu_ids: Sequence[int | str] | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        environ: Mapping[str, str] | None = None,
        counter_refresh_s: float = NOMINAL_REFRESH_S,
    ) -> None:
        amdsmi = _load()
        self._amdsmi = amdsmi
        env = os.environ if environ is None else environ
        _call(amdsmi, amdsmi.amdsmi_init, amdsmi.AmdSmiInitFlags.INIT_AMD_GPUS, what="amdsmi_init")
        try:
            handles = list(_call(amdsmi, amdsmi.amdsmi_get_processor_handles, what="GPU list"))
            self.driver_version = self._driver(handles)
            self.simulated = SIM_MARKER in self.driver_version
            uuids = [self._uuid(h, i) for i, h in enumerate(handles)]
            visible = _visible(list(range(len(handles))), uuids, env)
            chosen = _select(visible, uuids, gpu_ids)
            if not chosen:
                raise NotSupportedError("no AMD GPU is visible to this job")
            devices = [self._open(i, handles[i], uuids[i], counter_refresh_s) for i in chosen]
        except BaseException:
            _shutdown(amdsmi)
            raise
        super().__init__(
            devices,
            clock=clock,
            sleep=sleep,
            simulated=self.simulated,
            shutdown=lambda: _shutdown(amdsmi),
        )

    def _driver(self, handles: list[Any]) -> str:
        a = self._amdsmi
        if not handles:
            return "unknown"
        try:
            info = _call(a, a.amdsmi_get_gpu_driver_info, handles[0], what="driver version")
            return str(info.get("driver_version") or "unknown")
        except MeasurementError as e:
            logger.info("greenml: AMD driver version unavailable: %s", e)
            return "unknown"

    def _uuid(self, handle: Any, index: int) -> str:
        a = self._amdsmi
        return str(_call(a, a.amdsmi_get_gpu_device_uuid, handle, what=f"GPU {index} uuid"))

    def _open(self, index: int, handle: Any, uuid: str, refresh_s: float) -> AmdDevice:
        a = self._amdsmi
        asic = _call(a, a.amdsmi_get_gpu_asic_info, handle, what=f"GPU {index} name")
        name = str(asic.get("market_name") or "AMD GPU")
        limit_mw = None
        try:
            cap = _call(a, a.amdsmi_get_power_cap_info, handle, what="power cap")
            cap_uw = _number(cap.get("power_cap"))
            limit_mw = None if cap_uw is None else round(cap_uw / 1000.0)
        except MeasurementError as e:
            logger.info("greenml: AMD GPU %d power cap unavailable: %s", index, e)
        probe = AmdDevice(a, handle, GpuInfo(index, name, uuid, None, has_counter=False))
        try:
            probe.energy_mj()
            has_counter = True
        except NotSupportedError:
            has_counter = False
        if not has_counter:
            probe.power_mw()  # without a counter the power reading is all there is
        info = GpuInfo(
            index=index,
            name=name,
            uuid=uuid,
            power_limit_mw=limit_mw,
            has_counter=has_counter,
            power_window_s=0.0,
            counter_refresh_s=refresh_s,
            details=(("driver", self.driver_version), ("library", "amdsmi")),
        )
        return AmdDevice(a, handle, info)


def _entries(value: str) -> list[str]:
    return [e.strip() for e in value.split(",") if e.strip()]


def _visible(indices: list[int], uuids: list[str], env: Mapping[str, str]) -> list[int]:
    """Narrow the devices by ``ROCR_VISIBLE_DEVICES`` then ``HIP_VISIBLE_DEVICES``, each
    numbering the list the previous one left; an entry that matches nothing ends the
    list (as the runtime does)."""
    out = list(indices)
    for var in ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES"):
        raw = env.get(var)
        if raw is None:
            continue
        picked: list[int] = []
        for entry in _entries(raw):
            if entry.isdigit() and int(entry) < len(out):
                picked.append(out[int(entry)])
                continue
            match = [i for i in out if uuids[i] == entry]
            if len(match) != 1:
                logger.info("greenml: %s=%r: %r matches no AMD GPU", var, raw, entry)
                break
            picked.append(match[0])
        out = picked
    return out


def _select(visible: list[int], uuids: list[str], gpu_ids: Sequence[int | str] | None) -> list[int]:
    if gpu_ids is None:
        return visible
    chosen = []
    for gid in gpu_ids:
        if isinstance(gid, int) and 0 <= gid < len(visible):
            chosen.append(visible[gid])
            continue
        match = [i for i in visible if uuids[i] == gid]
        if not match:
            options = ", ".join(f"{pos} ({uuids[i]})" for pos, i in enumerate(visible))
            raise ConfigError(
                f"gpu_ids: {gid!r} is not an AMD GPU this job can see; valid ids are the "
                f"positions 0..{len(visible) - 1} or UUIDs of: {options or 'none'}"
            )
        chosen.append(match[0])
    return list(dict.fromkeys(chosen))


def _shutdown(amdsmi: Any) -> None:
    try:
        amdsmi.amdsmi_shut_down()
    except Exception as e:  # shutting down must never fail a run
        logger.debug("greenml: amdsmi_shut_down failed: %s", e)
