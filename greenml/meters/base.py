"""The small, read-only protocol every meter implements.

A *meter* wraps one kind of hardware (NVIDIA GPUs through NVML, CPU packages through
RAPL, a TDP x load estimate, a RAM estimate) and exposes one or more *channels*: one
per device it measures. Meters never change hardware settings.

Each call to :meth:`Meter.read` returns one :class:`Reading` per channel. A reading
carries either a cumulative energy in joules (counters and model-based estimates), or
an instantaneous/averaged power in watts (sampled devices), or both. The sampler
turns readings into energy per channel and phase; meters know nothing of phases,
MLflow or the run.

Units live in the names: ``energy_j``, ``power_w``, ``t_s`` (seconds on the injected
monotonic clock).

Besides ``channels``/``read``/``close``, the protocol has two hooks the sampler calls
directly: ``prepare()`` (once, in the sampler's thread, before the first periodic read:
NVML finds its counter's refresh grid there) and ``read_final(stop_s)`` (the last read,
at stop). greenml's meters inherit their defaults from :class:`MeterBase`. A meter
written against the older three-method protocol (a user's ``Tracker(meters=...)``) is
lifted by :func:`as_meter`, which gives it the same defaults.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Clock = Callable[[], float]
Kind = Literal["gpu", "cpu", "ram"]
#: How a channel's energy is obtained, best first.
#: ``counter``: a hardware energy counter (NVML total energy, RAPL).
#: ``sampled``: integration of power readings over time.
#: ``estimated``: a model (TDP x load, watts per GB of RAM), not a measurement.
Method = Literal["counter", "sampled", "estimated"]


@dataclass(frozen=True)
class Channel:
    """Static description of one measured device."""

    key: str  # unique within a run, e.g. "gpu:0", "cpu:package-0", "ram"
    kind: Kind
    name: str  # human-readable model, e.g. "NVIDIA H100 80GB HBM3"
    method: Method
    index: int | None = None  # device index as the driver numbers it
    uuid: str | None = None
    power_limit_w: float | None = None
    #: Fraction of the device's energy attributed to this job (1.0 unless the
    #: job only holds a share of it, e.g. MIG slices of one GPU).
    share: float = 1.0
    simulated: bool = False
    #: Free-form provenance, e.g. {"tdp_source": "CodeCarbon cpu_power.csv"}.
    details: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Reading:
    """One observation of one channel.

    ``t_s`` is the monotonic time the value refers to, which a meter may set earlier
    than the moment of the read (a stale counter refers to its last refresh; energy
    reconstructed from 1 s averages refers to the instant it was settled for).
    ``energy_j`` is cumulative from an arbitrary origin and never decreases (meters
    unwrap counter wraparound). ``error`` is set, and the values are None, when the
    read failed; ``lost`` marks a device that will not come back. ``implausible`` marks a
    value the device did answer but that cannot be a measurement (see
    :func:`implausible_power`): ``error`` says why, and the value is not used.
    """

    key: str
    t_s: float
    energy_j: float | None = None
    power_w: float | None = None
    error: str | None = None
    lost: bool = False
    extra: dict[str, float] = field(default_factory=dict)
    implausible: bool = False


#: The most a device of each kind can draw when its power limit is unknown, watts: above
#: any shipping board (B300: 1,400 W), CPU package (500 W) or memory.
ABSOLUTE_CEILING_W = {"gpu": 2000.0, "cpu": 1000.0, "ram": 500.0}
#: A reading above this multiple of the board's power limit is not a measurement (boards
#: exceed their limit only for milliseconds; a 1 s average or a counter's rate cannot).
LIMIT_FACTOR = 1.5


def power_ceiling_w(channel: Channel) -> float:
    """The highest power a reading of ``channel`` can plausibly show."""
    if channel.power_limit_w is not None and channel.power_limit_w > 0:
        return LIMIT_FACTOR * channel.power_limit_w
    return ABSOLUTE_CEILING_W.get(channel.kind, 2000.0)


def implausible_power(channel: Channel, watts: float) -> str | None:
    """Why ``watts`` cannot be a power reading of ``channel`` (NaN, infinite, negative, or
    above :func:`power_ceiling_w`), or None when it can."""
    if not math.isfinite(watts):
        return f"a power reading of {watts} W"
    if watts < 0:
        return f"a negative power reading ({watts:g} W)"
    ceiling = power_ceiling_w(channel)
    if watts > ceiling:
        limit = (
            f"{LIMIT_FACTOR:g} x its {channel.power_limit_w:g} W power limit"
            if channel.power_limit_w
            else f"the {ceiling:g} W any {channel.kind.upper()} can draw"
        )
        return f"a power reading of {watts:,.3f} W, above {limit}"
    return None


@runtime_checkable
class Meter(Protocol):
    """What the sampler needs from a meter."""

    def channels(self) -> Sequence[Channel]:
        """The devices this meter measures; fixed for the meter's lifetime."""
        ...

    def prepare(self) -> None:
        """Get ready to read periodically; called once in the sampler's thread after
        the first reading (never in the training thread). May take a fraction of a
        second; must not raise for a failed device."""
        ...

    def read(self) -> list[Reading]:
        """Read every channel once. Must not raise for a failed device: report it in
        ``Reading.error`` so one bad device never loses the others' sample."""
        ...

    def read_final(self, stop_s: float) -> list[Reading]:
        """The last read of a run that stopped at ``stop_s`` (monotonic seconds); a
        meter may wait briefly here so the run's last stretch is measured."""
        ...

    def close(self) -> None:
        """Release handles. Safe to call twice."""
        ...


class MeterBase:
    """Defaults for the optional parts of :class:`Meter`: nothing to prepare, the final
    read is an ordinary read, nothing to close. Subclasses implement ``channels`` and
    ``read`` and override the rest where they need to."""

    def channels(self) -> Sequence[Channel]:  # pragma: no cover - always overridden
        raise NotImplementedError

    def read(self) -> list[Reading]:  # pragma: no cover - always overridden
        raise NotImplementedError

    def prepare(self) -> None:
        """Nothing to prepare."""

    def read_final(self, stop_s: float) -> list[Reading]:
        """An ordinary read."""
        return self.read()

    def close(self) -> None:
        """Nothing to release."""


class _Lifted(MeterBase):
    """A three-method meter (``channels``, ``read``, ``close``) with the defaults of
    :class:`MeterBase` for the rest."""

    def __init__(self, meter: Any) -> None:
        self.meter = meter

    def __repr__(self) -> str:
        return repr(self.meter)

    def channels(self) -> Sequence[Channel]:
        return self.meter.channels()  # type: ignore[no-any-return]

    def read(self) -> list[Reading]:
        return self.meter.read()  # type: ignore[no-any-return]

    def close(self) -> None:
        self.meter.close()


def as_meter(meter: Any) -> Meter:
    """``meter`` itself when it implements the whole :class:`Meter` protocol; otherwise
    (a meter written for the older protocol: ``channels``, ``read``, ``close``) a thin
    wrapper giving it :class:`MeterBase`'s ``prepare`` and ``read_final``."""
    if isinstance(meter, (MeterBase, Meter)):
        return meter  # type: ignore[return-value]
    return _Lifted(meter)
