"""NVIDIA GPUs through NVML (``nvidia-ml-py``, which provides the ``pynvml`` module).

This is the only module that imports ``pynvml``, and the one place where NVML errors
become greenml errors (:func:`_translate`).

Method per device, best first:

- ``counter``: differences of ``nvmlDeviceGetTotalEnergyConsumption`` (mJ, Volta and
  newer). The counter refreshes on a grid of about 100 ms; a read between refreshes
  returns the value of the last refresh. :meth:`NvmlMeter.prepare` finds that grid by
  polling the counter at about 1 ms until it changes twice (at most ~0.25 s, in the
  sampler's thread, never the training thread). Each later value is then stamped with
  the refresh instant it belongs to, not with the moment it was read, so the ledger can
  split energy exactly at phase boundaries and at the start and stop. At stop,
  :meth:`NvmlMeter.read_final` waits for the first refresh after the stop (at most one
  refresh period) so the run's last ~100 ms are measured, not guessed.
  The counter is read no faster than it refreshes outside those two short windows.
- ``sampled``: where there is no counter (pre-Volta, many vGPU and MIG setups),
  trapezoidal integration of ``nvmlDeviceGetPowerUsage``. On Ampere and newer GPUs,
  except the GA100 (A100, A30), that reading is a 1 s moving average: such a reading
  is stamped at the middle of its window (0.5 s before the read).

Only the job's GPUs are measured: ``CUDA_VISIBLE_DEVICES`` (indices, ``GPU-`` UUIDs or
unique prefixes, ``MIG-`` ids) and then ``gpu_ids`` (positions in that visible list, as
``cuda:<i>`` numbers them, or UUIDs) select them. A MIG device is measured through its
parent GPU, of which the job is attributed ``visible MIG devices / MIG devices on the
parent`` (an equal split; NVML reports no power per MIG instance).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
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
from greenml.meters.base import Channel, Clock, Reading

logger = logging.getLogger(__name__)

NOMINAL_REFRESH_S = 0.1
_POLL_S = 0.001
# After the first synchronisation the grid is found again after 0.5 s, then at doubling
# gaps up to every 5 s: each time, the refreshes counted since the last anchor give the
# period to a fraction of a millisecond, so stamps do not drift.
_FIRST_RESYNC_S = 0.5
_AMBIGUOUS_S = 0.002  # a counter read this close to a predicted refresh is not stamped
_LEAD_S = 0.003  # a re-synchronisation starts polling this long before the predicted refresh
_MAX_RESYNC_S = 5.0
SIM_MARKER = "greenml-sim"
# NVML_DEVICE_ARCH_AMPERE; later architectures have larger numbers.
_ARCH_AMPERE = 7
_GA100_NAMES = ("A100", "A30")


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


@dataclass
class _Device:
    """One measured GPU and the state of its counter."""

    channel: Channel
    handle: Any
    averaged_power: bool
    has_counter: bool
    # counter state
    period_s: float = NOMINAL_REFRESH_S
    anchor_s: float | None = None  # a refresh instant; refreshes at anchor + k * period
    first_anchor_s: float | None = None  # the first refresh found: the period's baseline
    last_mj: int | None = None
    last_read_s: float | None = None
    last_point_s: float | None = None
    last_point_mj: int | None = None  # the value of the last point emitted
    last_rate_w: float | None = None  # power between the last two points emitted
    misses: int = 0
    last_sync_s: float = -math.inf
    next_sync_s: float = math.inf  # when to find the grid again (refines the period)
    sync_gap_s: float = _FIRST_RESYNC_S
    lost: bool = False
    pending: list[Reading] = field(default_factory=list)


@dataclass(frozen=True)
class _Visible:
    """An entry of the job's visible-device list resolved to an NVML device."""

    nvml_index: int
    label: str  # how the user named it
    mig: bool = False


class NvmlMeter:
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
        self._clock = clock
        self._sleep = sleep
        self._closed = False
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
            self._devices = self._open(chosen)
        except BaseException:
            self.close()
            raise

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

    def _open(self, chosen: list[tuple[int, float, list[str]]]) -> list[_Device]:
        p = self._pynvml
        devices = []
        for index, share, labels in chosen:
            h = _call(p.nvmlDeviceGetHandleByIndex, index, what=f"GPU {index}")
            name, uuid = self._describe(index)
            limit = None
            try:
                limit = _call(p.nvmlDeviceGetEnforcedPowerLimit, h, what="power limit") / 1000.0
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
            details = [("visible_as", ",".join(labels)), ("driver", self.driver_version)]
            if not has_counter:
                details.append(("power_reading", "1 s average" if averaged else "instantaneous"))
            ch = Channel(
                key=f"gpu:{index}",
                kind="gpu",
                name=name,
                method="counter" if has_counter else "sampled",
                index=index,
                uuid=uuid,
                power_limit_w=limit,
                share=share,
                simulated=self.simulated,
                details=tuple(details),
            )
            devices.append(_Device(ch, h, averaged, has_counter))
        return devices

    # -- Meter protocol ---------------------------------------------------------------

    def channels(self) -> list[Channel]:
        return [d.channel for d in self._devices]

    def _energy_mj(self, d: _Device) -> int:
        return int(
            _call(self._pynvml.nvmlDeviceGetTotalEnergyConsumption, d.handle, what=d.channel.key)
        )

    def _power_w(self, d: _Device) -> float:
        return _call(self._pynvml.nvmlDeviceGetPowerUsage, d.handle, what=d.channel.key) / 1000.0

    def _failed(self, d: _Device, t: float, e: MeasurementError) -> Reading:
        if isinstance(e, DeviceLostError):
            d.lost = True
        return Reading(d.channel.key, t, error=str(e), lost=d.lost)

    def _grid_point(self, d: _Device, t: float) -> float:
        """The latest refresh instant at or before ``t``."""
        assert d.anchor_s is not None
        k = math.floor((t - d.anchor_s) / d.period_s + 1e-9)
        return d.anchor_s + k * d.period_s

    def _poll(
        self,
        devices: list[_Device],
        changes: int,
        after_s: float,
        budget_s: float,
        start_at_s: float | None = None,
    ) -> None:
        """Read the counters every ~1 ms until each has changed ``changes`` times at
        instants later than ``after_s``, or the budget runs out. Records the refresh
        instants found and queues the values they carry as readings. With
        ``start_at_s``, sleep until then first (just before a predicted refresh), so a
        re-synchronisation costs a handful of reads instead of a period's worth."""
        if start_at_s is not None:
            wait = start_at_s - self._clock()
            if 0 < wait <= 2 * NOMINAL_REFRESH_S:
                self._sleep(wait)
        todo: dict[int, _Device] = {}
        before: dict[int, int] = {}
        seen: dict[int, list[tuple[float, int, float]]] = {}  # (instant, value, half-width)
        prev_t = self._clock()
        for d in devices:
            if d.lost:
                continue
            try:
                v = self._energy_mj(d)
            except MeasurementError as e:
                d.pending.append(self._failed(d, prev_t, e))
                continue
            if d.last_mj is not None and v != d.last_mj:
                self._queue_into(d, self._stamp(d, prev_t, v))
            d.last_mj, d.last_read_s = v, prev_t
            todo[id(d)], before[id(d)], seen[id(d)] = d, v, []
        by_id = dict(todo)
        deadline = prev_t + budget_s
        while todo:
            self._sleep(_POLL_S)
            t = self._clock()
            if t <= prev_t or t > deadline:
                break  # a frozen (manual) clock, or the budget is spent
            for k, d in list(todo.items()):
                try:
                    v = self._energy_mj(d)
                except MeasurementError as e:
                    d.pending.append(self._failed(d, t, e))
                    del todo[k]
                    continue
                d.last_read_s = t
                if v != d.last_mj:
                    instant = (prev_t + t) / 2.0
                    seen[k].append((instant, v, (t - prev_t) / 2.0))
                    d.last_mj = v
                    if sum(1 for i, _, _ in seen[k] if i > after_s) >= changes:
                        del todo[k]
            prev_t = t
        for k, found in seen.items():
            d = by_id[k]
            if not found:
                continue
            new = found[-1][0]
            if d.anchor_s is not None and d.first_anchor_s is not None:
                # Refreshes since the first anchor: their count is certain while the
                # period is known to within a few percent, and the baseline only grows,
                # so the period's error shrinks as 1 / (refreshes counted).
                n = round((new - d.first_anchor_s) / d.period_s)
                if n >= 2:
                    period = (new - d.first_anchor_s) / n
                    if abs(period - d.period_s) < 0.1 * d.period_s:
                        d.period_s = period
            elif len(found) >= 2:
                # Two consecutive refreshes bound the period; a scheduler hiccup can widen
                # a poll bracket, so keep the nominal period whenever it fits the bounds.
                (t1, _, w1), (t2, _, w2) = found[-2], found[-1]
                lo, hi = (t2 - w2) - (t1 + w1), (t2 + w2) - (t1 - w1)
                if not lo <= NOMINAL_REFRESH_S <= hi and 0.3 * NOMINAL_REFRESH_S <= t2 - t1 <= 3:
                    d.period_s = t2 - t1
            d.anchor_s = new
            if d.first_anchor_s is None:
                d.first_anchor_s = found[0][0] if len(found) >= 2 else new
            d.last_sync_s = new
            d.next_sync_s = new + d.sync_gap_s
            d.sync_gap_s = min(2 * d.sync_gap_s, _MAX_RESYNC_S)
            d.misses = 0
            # The value before the first change was refreshed one period earlier.
            points = [(found[0][0] - d.period_s, before[k]), *((i, v) for i, v, _ in found)]
            for instant, v in points:
                if v != d.last_point_mj and (d.last_point_s is None or instant > d.last_point_s):
                    d.pending.append(Reading(d.channel.key, instant, energy_j=v / 1000.0))
                    d.last_point_s, d.last_point_mj = instant, v

    @staticmethod
    def _queue_into(d: _Device, r: Reading | None) -> None:
        if r is not None:
            d.pending.append(r)

    def prepare(self) -> None:
        """Find each counter's refresh grid (called once in the sampler's thread)."""
        counters = [d for d in self._devices if d.has_counter]
        if counters:
            self._poll(counters, changes=2, after_s=-math.inf, budget_s=2.5 * NOMINAL_REFRESH_S)
            for d in counters:
                if d.anchor_s is None:
                    logger.info(
                        "greenml: %s: the energy counter's refresh grid was not found "
                        "(idle GPU or a frozen clock); values are stamped when first seen",
                        d.channel.key,
                    )

    def _stamp(self, d: _Device, t: float, v: int) -> Reading | None:
        """A counter value read at ``t``, stamped with the refresh instant it belongs to;
        None when it carries nothing new. Updates the device's counter state."""
        prev_read = d.last_read_s
        d.last_read_s = t
        if v == d.last_mj and d.last_point_s is not None:
            if (
                d.anchor_s is not None
                and self._grid_point(d, t) > d.last_point_s + 0.5 * d.period_s
            ):
                d.misses += 1  # a refresh was due but the value did not move
            return None
        changed = d.last_mj is not None and v != d.last_mj
        if d.anchor_s is not None:
            instant = self._grid_point(d, t)
            nearest = instant if t - instant < instant + d.period_s - t else instant + d.period_s
            if abs(t - nearest) < _AMBIGUOUS_S:
                # Read right at a predicted refresh: the value may be from the refresh
                # there or from the one before. Pick the one the recent power explains.
                picked = self._disambiguate(d, v, [nearest - d.period_s, nearest])
                if picked is None:
                    return None  # leave it for the next read; a counter loses nothing
                instant = picked
            d.last_mj = v
            if d.last_point_s is not None and instant <= d.last_point_s:
                d.misses += 1  # the value moved but no refresh was due: the grid drifted
                return None
            d.misses = 0
        else:
            d.last_mj = v
            if not changed or prev_read is None:
                # No grid and no change seen yet: the value is from an unknown refresh up
                # to a period ago. It only becomes a point once it is seen to change.
                return None
            instant = (prev_read + t) / 2.0  # the middle of the interval it changed in
        if d.last_point_s is not None and d.last_point_mj is not None and instant > d.last_point_s:
            d.last_rate_w = (v - d.last_point_mj) / 1000.0 / (instant - d.last_point_s)
        d.last_point_s, d.last_point_mj = instant, v
        return Reading(d.channel.key, instant, energy_j=v / 1000.0)

    @staticmethod
    def _disambiguate(d: _Device, v: int, candidates: list[float]) -> float | None:
        """The refresh instant among ``candidates`` that value ``v`` belongs to, or None
        when that cannot be told."""
        later = [
            c for c in candidates if d.last_point_s is None or c > d.last_point_s + d.period_s / 2
        ]
        if len(later) <= 1:
            return later[0] if later else None
        if d.last_rate_w is None or d.last_point_s is None or d.last_point_mj is None:
            return None
        base_s, base_mj, rate = d.last_point_s, d.last_point_mj, d.last_rate_w
        return min(later, key=lambda c: abs(base_mj + 1000.0 * rate * (c - base_s) - v))

    def _read_counter(self, d: _Device, t: float) -> Reading | None:
        if d.last_read_s is not None and t - d.last_read_s < 0.9 * d.period_s:
            return None  # read no faster than the counter refreshes
        return self._stamp(d, t, self._energy_mj(d))

    def read(self) -> list[Reading]:
        out: list[Reading] = []
        now = self._clock()
        resync = []
        for d in self._devices:
            if not d.has_counter or d.lost:
                continue
            if d.misses >= 3 and now - d.last_sync_s > 10:
                d.anchor_s = None  # the grid moved: find it afresh
                d.last_sync_s = now
                resync.append(d)
            elif d.anchor_s is not None and now >= d.next_sync_s:
                resync.append(d)
        if resync:
            start_at = None
            anchored = [d for d in resync if d.anchor_s is not None]
            if len(anchored) == len(resync):
                # Just before the earliest predicted refresh that is still ahead.
                start_at = (
                    min(self._grid_point(d, now + _LEAD_S) + d.period_s for d in anchored) - _LEAD_S
                )
            self._poll(
                resync,
                changes=1,
                after_s=-math.inf,
                budget_s=1.5 * NOMINAL_REFRESH_S + _LEAD_S,
                start_at_s=start_at,
            )
        for d in self._devices:
            out.extend(d.pending)
            d.pending.clear()
            if d.lost:
                continue
            t = self._clock()
            reading: Reading | None = None
            try:
                if d.has_counter:
                    reading = self._read_counter(d, t)
            except MeasurementError as e:
                out.append(self._failed(d, t, e))
                continue
            try:
                power = self._power_w(d)
            except MeasurementError as e:
                if d.has_counter and not isinstance(e, DeviceLostError):
                    power = None  # the counter still measures; power is only for the series
                else:
                    out.append(self._failed(d, t, e))
                    continue
            if reading is not None:
                out.append(Reading(reading.key, reading.t_s, reading.energy_j, power))
            elif power is not None:
                stamp = t - 0.5 if (d.averaged_power and not d.has_counter) else t
                out.append(Reading(d.channel.key, stamp, power_w=power))
        return out

    def read_final(self, stop_s: float) -> list[Reading]:
        """Read once more, waiting (at most ~2.5 refresh periods) for each counter's first
        two refreshes after ``stop_s``: the first measures the last stretch before the
        stop, the second tells the power just after it, which shapes how that stretch's
        energy is split at the stop (see ``Ledger._resolve``)."""
        counters = [d for d in self._devices if d.has_counter and not d.lost]
        if counters:
            self._poll(counters, changes=2, after_s=stop_s, budget_s=2.5 * NOMINAL_REFRESH_S)
        for d in counters:
            d.last_read_s = None  # allow the read below
        return self.read()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._pynvml.nvmlShutdown()
        except Exception as e:  # shutting down must never fail a run
            logger.debug("greenml: nvmlShutdown failed: %s", e)
