"""NVIDIA GPUs through NVML (``nvidia-ml-py``, which provides the ``pynvml`` module).

This is the only module that imports ``pynvml``, and the one place where NVML errors
become greenml errors (:func:`_translate`). It holds the NVML calls and the choice of
devices only: each GPU is opened as an :class:`NvmlDevice` (the vendor-neutral device
protocol of :mod:`greenml.meters.gpu`), and :class:`~greenml.meters.gpu.GpuMeter` does
the measuring, with the refresh-grid synchronisation of
:mod:`greenml.meters.counter_grid`.

Method per device, best first:

- ``counter``: differences of ``nvmlDeviceGetTotalEnergyConsumption`` (mJ, Volta and
  newer). The counter refreshes on a grid of about 100 ms; a read between refreshes
  returns the value of the last refresh. ``NvmlMeter.prepare`` finds that grid by
  polling the counter at about 1 ms until it changes twice (at most ~0.25 s, in the
  sampler's thread, never the training thread). Each later value is then stamped with
  the refresh instant it belongs to, not with the moment it was read, so the ledger can
  split energy exactly at phase boundaries and at the start and stop. At stop,
  ``NvmlMeter.read_final`` waits for the first refresh after the stop (at most one
  refresh period) so the run's last ~100 ms are measured, not guessed.
  Otherwise the counter is read every 2 s, at once on a phase switch, and at each
  refresh for a second after one (:mod:`greenml.sampler`).
- ``sampled``: where there is no counter (pre-Volta, many vGPU and MIG setups), the
  power reading ``nvmlDeviceGetPowerUsage``. On Ampere and newer GPUs, except the GA100
  (A100, A30), that reading is a 1 s moving average, chained into exact cumulative
  energy (:mod:`greenml.meters.averaged`); older readings see part of the time and are
  integrated with a stated range.

Only the job's GPUs are measured: ``CUDA_VISIBLE_DEVICES`` (indices, ``GPU-`` UUIDs or
unique prefixes, ``MIG-`` ids) and then ``gpu_ids`` (positions in that visible list, as
``cuda:<i>`` numbers them, or UUIDs) select them. A MIG device is measured through its
parent GPU, of which the job is attributed ``visible MIG devices / MIG devices on the
parent`` (an equal split; NVML reports no power per MIG instance).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from greenml.errors import (
    ConfigError,
    DeviceLostError,
    DeviceNotFoundError,
    DriverError,
    MeasurementError,
    NotSupportedError,
    warn,
)
from greenml.meters.base import Clock
from greenml.meters.counter_grid import NOMINAL_REFRESH_S
from greenml.meters.gpu import GpuInfo, GpuMeter

logger = logging.getLogger(__name__)

SIM_MARKER = "greenml-sim"
# NVML_DEVICE_ARCH_AMPERE; later architectures have larger numbers.
_ARCH_AMPERE = 7
_GA100_NAMES = ("A100", "A30")
_AVERAGE_WINDOW_S = 1.0  # the window of the averaged power reading


def _translate(e: Exception, what: str) -> MeasurementError:
    """Map a ``pynvml.NVMLError`` to greenml's error tree."""
    import pynvml

    code = getattr(e, "value", None)
    msg = f"{what}: {e}"
    if code == pynvml.NVML_ERROR_GPU_IS_LOST:
        return DeviceLostError(msg)
    if code in (pynvml.NVML_ERROR_NOT_SUPPORTED, pynvml.NVML_ERROR_FUNCTION_NOT_FOUND):
        return NotSupportedError(msg)
    if code in (pynvml.NVML_ERROR_NOT_FOUND, pynvml.NVML_ERROR_INVALID_ARGUMENT):
        return DeviceNotFoundError(msg)
    if code in (
        pynvml.NVML_ERROR_LIBRARY_NOT_FOUND,
        pynvml.NVML_ERROR_DRIVER_NOT_LOADED,
        pynvml.NVML_ERROR_NO_PERMISSION,
    ):
        return NotSupportedError(f"NVML is not available ({msg})")
    return DriverError(msg)


def _call(fn: Callable[..., Any], *args: Any, what: str) -> Any:
    import pynvml

    try:
        return fn(*args)
    except pynvml.NVMLError as e:
        raise _translate(e, what) from e


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlDevice:
    """One NVIDIA GPU behind the device protocol (:class:`~greenml.meters.gpu.GpuDevice`)."""

    def __init__(self, pynvml: Any, handle: Any, info: GpuInfo) -> None:
        self._pynvml = pynvml
        self._handle = handle
        self._info = info
        self._what = f"gpu:{info.index}"

    @property
    def info(self) -> GpuInfo:
        return self._info

    def energy_mj(self) -> int:
        p = self._pynvml
        return int(_call(p.nvmlDeviceGetTotalEnergyConsumption, self._handle, what=self._what))

    def power_mw(self) -> int:
        return int(_call(self._pynvml.nvmlDeviceGetPowerUsage, self._handle, what=self._what))


@dataclass(frozen=True)
class _Visible:
    """An entry of the job's visible-device list resolved to an NVML device."""

    nvml_index: int
    label: str  # how the user named it
    mig: bool = False


class NvmlMeter(GpuMeter):
    """Energy of the job's NVIDIA GPUs. Raises :class:`NotSupportedError` at construction
    when NVML or any GPU is missing, and :class:`ConfigError` for an unknown ``gpu_ids``."""

    def __init__(
        self,
        gpu_ids: Sequence[int | str] | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        import pynvml

        self._pynvml = pynvml
        env = os.environ if environ is None else environ
        _call(pynvml.nvmlInit, what="nvmlInit")
        try:
            driver = _text(_call(pynvml.nvmlSystemGetDriverVersion, what="driver version"))
            self.driver_version = driver
            self.simulated = SIM_MARKER in driver
            visible = self._visible(env.get("CUDA_VISIBLE_DEVICES"))
            chosen = self._select(visible, gpu_ids)
            if not chosen:
                raise NotSupportedError("no NVIDIA GPU is visible to this job")
            devices = self._open(chosen)
        except BaseException:
            _shutdown(pynvml)
            raise
        super().__init__(
            devices,
            clock=clock,
            sleep=sleep,
            simulated=self.simulated,
            shutdown=lambda: _shutdown(pynvml),
        )

    # -- which devices --------------------------------------------------------------

    def _describe(self, index: int) -> tuple[str, str]:
        p = self._pynvml
        h = _call(p.nvmlDeviceGetHandleByIndex, index, what=f"GPU {index}")
        return _text(_call(p.nvmlDeviceGetName, h, what="name")), _text(
            _call(p.nvmlDeviceGetUUID, h, what="uuid")
        )

    def _visible(self, cuda_visible: str | None) -> list[_Visible]:
        """The job's devices, in the order CUDA numbers them."""
        p = self._pynvml
        count = _call(p.nvmlDeviceGetCount, what="device count")
        uuids = [self._describe(i)[1] for i in range(count)]
        if cuda_visible is None:
            return [_Visible(i, str(i)) for i in range(count)]
        out: list[_Visible] = []
        for raw in cuda_visible.split(","):
            entry = raw.strip()
            if not entry:
                continue
            found = self._resolve_entry(entry, count, uuids)
            if found is None:
                # CUDA ignores this entry and every one after it; so do we, loudly.
                warn(
                    f"CUDA_VISIBLE_DEVICES={cuda_visible!r}: {entry!r} matches no GPU; CUDA "
                    "ignores it and the entries after it, and so does greenml"
                )
                break
            out.append(found)
        return out

    def _resolve_entry(self, entry: str, count: int, uuids: list[str]) -> _Visible | None:
        p = self._pynvml
        if entry.lstrip("-").isdigit():
            i = int(entry)
            return _Visible(i, entry) if 0 <= i < count else None
        if entry.startswith("MIG-"):
            try:
                h = p.nvmlDeviceGetHandleByUUID(entry)
                parent = p.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(h)
                return _Visible(p.nvmlDeviceGetIndex(parent), entry, mig=True)
            except p.NVMLError:
                return None
        prefix = entry if entry.startswith("GPU-") else f"GPU-{entry}"
        matches = [i for i, u in enumerate(uuids) if u.startswith(prefix)]
        return _Visible(matches[0], entry) if len(matches) == 1 else None

    def _select(
        self, visible: list[_Visible], gpu_ids: Sequence[int | str] | None
    ) -> list[tuple[int, float, list[str]]]:
        """(nvml index, share, labels) per measured GPU."""
        if gpu_ids is None:
            picked = visible
        else:
            picked = []
            for gid in gpu_ids:
                match = self._match_id(visible, gid)
                if match is None:
                    options = ", ".join(
                        f"{pos} ({v.label}: {self._describe(v.nvml_index)[1]})"
                        for pos, v in enumerate(visible)
                    )
                    raise ConfigError(
                        f"gpu_ids: {gid!r} is not a GPU this job can see; valid ids are the "
                        f"positions 0..{len(visible) - 1} or UUIDs of: {options or 'none'}"
                    )
                picked.append(match)
        by_parent: dict[int, list[_Visible]] = {}
        for v in picked:
            by_parent.setdefault(v.nvml_index, []).append(v)
        out = []
        for index, entries in by_parent.items():
            share = 1.0
            if all(v.mig for v in entries):
                share = min(1.0, len(entries) / self._mig_count(index))
            out.append((index, share, [v.label for v in entries]))
        return out

    def _match_id(self, visible: list[_Visible], gid: int | str) -> _Visible | None:
        if isinstance(gid, int):
            return visible[gid] if 0 <= gid < len(visible) else None
        for v in visible:
            if v.label == gid or self._describe(v.nvml_index)[1] == gid:
                return v
        return None

    def _mig_count(self, index: int) -> int:
        p = self._pynvml
        h = p.nvmlDeviceGetHandleByIndex(index)
        n = 0
        for j in range(p.nvmlDeviceGetMaxMigDeviceCount(h)):
            try:
                p.nvmlDeviceGetMigDeviceHandleByIndex(h, j)
                n += 1
            except p.NVMLError:
                continue
        return max(n, 1)

    def _open(self, chosen: list[tuple[int, float, list[str]]]) -> list[NvmlDevice]:
        p = self._pynvml
        devices = []
        for index, share, labels in chosen:
            h = _call(p.nvmlDeviceGetHandleByIndex, index, what=f"GPU {index}")
            name, uuid = self._describe(index)
            limit_mw = None
            try:
                limit_mw = int(_call(p.nvmlDeviceGetEnforcedPowerLimit, h, what="power limit"))
            except MeasurementError as e:
                logger.info("greenml: GPU %d power limit unavailable: %s", index, e)
            try:
                arch = _call(p.nvmlDeviceGetArchitecture, h, what="architecture")
            except MeasurementError:
                arch = None
            averaged = (
                arch is not None
                and arch >= _ARCH_AMPERE
                and not any(n in name for n in _GA100_NAMES)
            )
            try:
                _call(p.nvmlDeviceGetTotalEnergyConsumption, h, what="energy counter")
                has_counter = True
            except NotSupportedError:
                has_counter = False
            if not has_counter:
                # Without a counter the power reading is all there is: it must work.
                _call(p.nvmlDeviceGetPowerUsage, h, what=f"GPU {index} power")
            info = GpuInfo(
                index=index,
                name=name,
                uuid=uuid,
                power_limit_mw=limit_mw,
                has_counter=has_counter,
                power_window_s=_AVERAGE_WINDOW_S if averaged else 0.0,
                counter_refresh_s=NOMINAL_REFRESH_S,
                share=share,
                details=(("visible_as", ",".join(labels)), ("driver", self.driver_version)),
            )
            devices.append(NvmlDevice(p, h, info))
        return devices


def _shutdown(pynvml: Any) -> None:
    try:
        pynvml.nvmlShutdown()
    except Exception as e:  # shutting down must never fail a run
        logger.debug("greenml: nvmlShutdown failed: %s", e)
