"""The vendor-neutral GPU layer: a small read-only device protocol and the meter over it.

A vendor module (``nvml.py``, ``amd.py``) selects the job's GPUs, opens one
:class:`GpuDevice` per GPU and translates its library's errors into greenml's error tree;
it makes no other decision. :class:`GpuMeter` does the rest for every vendor:

- ``counter`` method where the device has an energy counter: differences of
  :meth:`GpuDevice.energy_mj`, stamped on the counter's refresh grid
  (:mod:`greenml.meters.counter_grid`);
- ``sampled`` method otherwise: readings of :meth:`GpuDevice.power_mw`. A power averaged
  over a window is chained into cumulative energy points stamped in the past
  (:class:`~greenml.meters.averaged.AveragedEnergy`); an instantaneous one is integrated
  by the ledger with the trapezoid rule, its range in ``Reading.extra``
  (:class:`~greenml.meters.averaged.PartTimeRange`).

Units live in the names: millijoules (``energy_mj``), milliwatts (``power_mw``), seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from greenml.errors import DeviceLostError, MeasurementError, warn
from greenml.meters.averaged import AveragedEnergy, PartTimeRange
from greenml.meters.base import Channel, Clock, MeterBase, Reading, implausible_power
from greenml.meters.counter_grid import NOMINAL_REFRESH_S, Counter, CounterGrid

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuInfo:
    """What a vendor module knows of one GPU when it opens it."""

    index: int  # as the vendor library numbers it
    name: str
    uuid: str
    power_limit_mw: int | None
    has_counter: bool
    #: The window the power reading averages over: 0 for an instantaneous reading.
    power_window_s: float = 0.0
    #: The energy counter's nominal refresh period.
    counter_refresh_s: float = NOMINAL_REFRESH_S
    #: Fraction of the device attributed to the job (MIG slices).
    share: float = 1.0
    details: tuple[tuple[str, str], ...] = ()


class GpuDevice(Protocol):
    """One GPU, read-only. Every method raises :class:`~greenml.errors.MeasurementError`
    (never a vendor exception) when the read fails."""

    @property
    def info(self) -> GpuInfo: ...

    def energy_mj(self) -> int:
        """The cumulative energy counter in millijoules (never wraps)."""
        ...

    def power_mw(self) -> int:
        """The power draw in milliwatts."""
        ...


def averaging_window_s(channel: Channel) -> float | None:
    """The window over which a GPU channel's power readings average (the ``power_reading``
    detail its meter wrote: ``"1 s average"``), or None (a counter, or instantaneous
    readings)."""
    for key, value in channel.details:
        if key == "power_reading" and value.endswith(_AVERAGE_SUFFIX):
            return float(value[: -len(_AVERAGE_SUFFIX)])
    return None


_AVERAGE_SUFFIX = " s average"
#: A counter channel's power is read with its counter at most this often: one NVML call
#: per second or two, so that the ledger can tell a counter that stood still (or fell far
#: behind) while the GPU drew power from a GPU at rest.
POWER_CHECK_S = 1.0


@dataclass
class _Slot:
    device: GpuDevice
    channel: Channel
    counter: Counter | None
    lost: bool = False
    #: Without a counter: the reconstruction of a windowed average's energy, or the
    #: range of an instantaneous (part-time) reading's integral.
    averaged: AveragedEnergy | None = None
    part_time: PartTimeRange | None = None
    #: When a counter channel's power was last read (see POWER_CHECK_S), the counter's
    #: raw value as last read, and when it was last seen to change.
    power_read_at: float | None = None
    counter_mj: int | None = None
    counter_moved_at: float | None = None

    def failed(self, t: float, e: MeasurementError) -> Reading:
        """The reading for a failed read at ``t``; a lost device stays lost."""
        if self.counter is not None:
            r = self.counter.failed(t, e)
        else:
            r = Reading(self.channel.key, t, error=str(e), lost=isinstance(e, DeviceLostError))
        self.lost = self.lost or r.lost
        return r


class GpuMeter(MeterBase):
    """Energy of a set of GPUs of one vendor, through the device protocol.

    ``vendor`` names the vendor in messages; ``shutdown`` releases the vendor library
    (called once by :meth:`close`).
    """

    def __init__(
        self,
        devices: Sequence[GpuDevice],
        *,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        simulated: bool = False,
        shutdown: Callable[[], None] | None = None,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._grid = CounterGrid(clock=clock, sleep=sleep)
        self._shutdown = shutdown
        self._closed = False
        self._slots = [self._slot(d, simulated) for d in devices]
        for slot in self._slots:
            if slot.part_time is not None:
                key, name = slot.channel.key, slot.channel.name
                warn(
                    f"{key} ({name}) has no energy counter, and its power readings see only "
                    "about a quarter of the time: its energy is integrated from them and can "
                    "be off by tens of percent on spiky work. The footprint states the range "
                    f"it lies in (energy_low_kwh, energy_high_kwh; flagged part_time_power:{key})"
                )

    @staticmethod
    def _slot(device: GpuDevice, simulated: bool) -> _Slot:
        info = device.info
        key = f"gpu:{info.index}"
        details = list(info.details)
        if not info.has_counter:
            window = info.power_window_s
            details.append(
                ("power_reading", f"{window:g}{_AVERAGE_SUFFIX}" if window else "instantaneous")
            )
            details.append(
                (
                    "energy_from",
                    f"{window:g} s averages chained, reconstructed"
                    if window
                    else "part-time readings integrated, ranged",
                )
            )
        channel = Channel(
            key=key,
            kind="gpu",
            name=info.name,
            method="counter" if info.has_counter else "sampled",
            index=info.index,
            uuid=info.uuid,
            power_limit_w=None if info.power_limit_mw is None else info.power_limit_mw / 1000.0,
            share=info.share,
            simulated=simulated,
            details=tuple(details),
        )
        if info.has_counter:
            counter = Counter(key, device.energy_mj, nominal_s=info.counter_refresh_s)
            return _Slot(device, channel, counter)
        limit = channel.power_limit_w
        if info.power_window_s > 0:
            averaged = AveragedEnergy(key, window_s=info.power_window_s, power_limit_w=limit)
            return _Slot(device, channel, None, averaged=averaged)
        return _Slot(device, channel, None, part_time=PartTimeRange(power_limit_w=limit))

    def _counters(self) -> list[Counter]:
        return [s.counter for s in self._slots if s.counter is not None]

    # -- Meter protocol ---------------------------------------------------------------

    def channels(self) -> list[Channel]:
        return [s.channel for s in self._slots]

    def prepare(self) -> None:
        """Find each counter's refresh grid (called once in the sampler's thread)."""
        for c in self._grid.synchronise(self._counters()):
            logger.info(
                "greenml: %s: the energy counter's refresh grid was not found "
                "(idle GPU or a frozen clock); values are stamped when first seen",
                c.key,
            )

    def read(self) -> list[Reading]:
        self._grid.resynchronise_due(self._counters())
        out: list[Reading] = []
        for s in self._slots:
            c = s.counter
            if c is not None:
                out.extend(c.pending)
                c.pending.clear()
                s.lost = s.lost or c.lost
            if s.lost:
                continue
            t = self._clock()
            try:
                if c is not None:
                    # The counter is the measurement and its differences give the power:
                    # a power read here would cost as much and add nothing, unless the
                    # counter has stood still (see STUCK_S).
                    reading = self._grid.read(c, t)
                    out.extend([reading] if reading is not None else [])
                    if c.last_mj != s.counter_mj:
                        s.counter_mj, s.counter_moved_at = c.last_mj, c.last_read_s
                    out.extend(self._power_check(s, t))
                else:
                    watts = s.device.power_mw() / 1000.0
                    why = implausible_power(s.channel, watts)
                    if why is not None:  # never fed to the estimator: a gap instead
                        out.append(Reading(s.channel.key, t, error=why, implausible=True))
                    else:
                        out.extend(self._sampled(s, t, watts))
            except MeasurementError as e:
                if isinstance(e, DeviceLostError) and s.averaged is not None:
                    # What was measured before the loss is held for settling: release it
                    # now, or it would never reach the ledger.
                    out.extend(s.averaged.flush())
                out.append(s.failed(t, e))
        return out

    @staticmethod
    def _power_check(s: _Slot, t: float) -> list[Reading]:
        """A counter channel's power reading, every :data:`POWER_CHECK_S` at most."""
        if s.power_read_at is not None and t - s.power_read_at < POWER_CHECK_S:
            return []
        s.power_read_at = t
        try:
            watts = s.device.power_mw() / 1000.0
        except MeasurementError:
            return []  # the counter's own reads report failures; power is only a check
        why = implausible_power(s.channel, watts)
        if why is not None:
            return [Reading(s.channel.key, t, error=why, implausible=True)]
        extra = {}
        if s.counter_moved_at is not None and s.counter is not None:
            seen = s.counter.last_read_s if s.counter.last_read_s is not None else t
            extra["counter_still_s"] = max(0.0, seen - s.counter_moved_at)
        return [Reading(s.channel.key, t, power_w=watts, extra=extra)]

    @staticmethod
    def _sampled(s: _Slot, t: float, power: float) -> list[Reading]:
        """A counterless device's power reading at ``t``: a windowed average feeds the
        reconstruction (which releases settled cumulative points, stamped in the past);
        an instantaneous reading is integrated by the ledger, with its range in
        ``extra``."""
        if s.averaged is not None:
            return s.averaged.add(t, power)
        extra = s.part_time.add(t, power) if s.part_time is not None else {}
        return [Reading(s.channel.key, t, power_w=power, extra=extra)]

    def settle_read_at(self, after_s: float) -> float | None:
        """When to read next while a phase boundary settles: half-way between two
        refreshes, after ``after_s`` (None when no counter's grid is known)."""
        return self._grid.mid_refresh_after(self._counters(), after_s)

    def read_final(self, stop_s: float) -> list[Reading]:
        """Read once more, waiting (at most ~2.5 refresh periods) for each counter's first
        two refreshes after ``stop_s``: the first measures the last stretch before the
        stop, the second tells the power just after it, which shapes how that stretch's
        energy is split at the stop (see :func:`greenml.ledger.step_pieces`); averaged
        readings held for settling are released."""
        self._grid.wait_past(self._counters(), stop_s)
        for s in self._slots:
            s.power_read_at = None  # the last segment gets its power check too
        out = self.read()
        for s in self._slots:
            if s.averaged is not None and not s.lost:
                out.extend(s.averaged.flush())  # the held points, with the best estimate
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._shutdown is not None:
            try:
                self._shutdown()
            except Exception as e:  # shutting down must never fail a run
                logger.debug("greenml: GPU library shutdown failed: %s", e)
