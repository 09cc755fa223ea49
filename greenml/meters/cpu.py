"""CPU power estimated from TDP x load, where no RAPL counter can be read.

Power model (method ``estimated``)::

    P(t) = TDP_total x (IDLE_FRACTION + (1 - IDLE_FRACTION) x u(t))

with ``u`` the machine's CPU utilisation (all CPUs, all processes) and
``IDLE_FRACTION = 0.1``. It is the shape of Cloud Carbon Footprint's compute model,
``min W + u x (max W - min W)`` (cloudcarbonfootprint.org/docs/methodology, "Compute"),
with CodeCarbon's end points: 10 % of TDP at idle and TDP at full load (CodeCarbon
3.x, ``CPU._get_power_from_cpu_load`` in ``codecarbon/external/hardware.py``, machine
mode: ``TDP x (0.1 + 0.9 x u^3)``). We keep the floor, because a
package draws power at idle and a training job holds the whole machine, but stay
linear in ``u``: then the energy of an interval depends only on the busy CPU-seconds
in it, ``E = TDP_total x (0.1 x dt + 0.9 x dt x d_busy / d_total)``, which is exact
under the model whatever the sampling interval. (A cubic of the interval's mean
utilisation is not the mean of the cubic, so CodeCarbon's figure moves with its
sampling period.) ``d_busy`` and ``d_total`` are differences of cumulative CPU
seconds over all CPUs (``psutil.cpu_times()``: total minus idle and iowait, guest time
counted once), read at each :meth:`CpuEstimateMeter.read`.

TDP comes from CodeCarbon's shipped table ``codecarbon/data/hardware/cpu_power.csv``
(read by :mod:`greenml.factors.cpu_tdp`, beside the GPU table in
:mod:`greenml.factors.hardware`). It is per package, so it is multiplied by the number
of sockets (distinct ``physical id`` in ``/proc/cpuinfo``). Matching the CPU name, see
:meth:`~greenml.factors.cpu_tdp.TdpTable.lookup`.
Where the model is not in the table, the fallback is CodeCarbon's: 4 W per logical
CPU (``DEFAULT_POWER_PER_CORE = 4`` in ``codecarbon/core/cpu.py``, applied to the
thread count), flagged in the channel details and logged once per meter.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from greenml.errors import ConfigError, warn
from greenml.factors.cpu_tdp import TdpMatch, TdpTable
from greenml.meters.base import Channel, Clock, MeterBase, Reading

logger = logging.getLogger(__name__)

#: Share of TDP drawn at 0 % utilisation (CodeCarbon's 10 % floor).
IDLE_FRACTION = 0.1
#: Watts per logical CPU when the model is unknown (CodeCarbon DEFAULT_POWER_PER_CORE).
FALLBACK_W_PER_LOGICAL_CPU = 4.0
KEY = "cpu:estimate"

CpuTimes = Callable[[], tuple[float, float]]


# -- what CPU is this ------------------------------------------------------------------


@dataclass(frozen=True)
class CpuInfo:
    """What greenml needs to know about the machine's CPUs."""

    model: str | None  # "model name" as the kernel reports it, None if unknown
    vendor: str | None = None  # "GenuineIntel", "AuthenticAMD", ...
    sockets: int = 1  # physical packages
    logical_cpus: int = 1


def read_cpuinfo(path: str | os.PathLike[str] = "/proc/cpuinfo") -> CpuInfo:
    """Parse ``/proc/cpuinfo``; never raises (unknowns come back as None / 1)."""
    models: list[str] = []
    vendors: list[str] = []
    packages: set[str] = set()
    processors = 0
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if not sep:
                    continue
                key, value = key.strip().lower(), value.strip()
                if key == "processor":
                    processors += 1
                elif key == "model name":
                    models.append(value)
                elif key == "vendor_id":
                    vendors.append(value)
                elif key == "physical id":
                    packages.add(value)
    except OSError as e:
        logger.debug("greenml: cannot read %s (%s)", path, e)
    if models:
        model: str | None = models[0]
    else:  # no "model name" (some ARM kernels): ask platform, imported only then
        import platform

        model = platform.processor() or None
    return CpuInfo(
        model=model,
        vendor=vendors[0] if vendors else None,
        sockets=max(1, len(packages)),
        logical_cpus=max(1, processors or os.cpu_count() or 1),
    )


# -- the meter -------------------------------------------------------------------------


def psutil_cpu_times() -> tuple[float, float]:
    """Cumulative (busy, total) CPU seconds over all CPUs, from ``psutil.cpu_times()``.
    Busy is total minus idle and iowait; guest time is already inside user time on
    Linux, so it is not counted twice.

    On Linux the figures are read from the first line of ``/proc/stat``, the line and
    the arithmetic of ``psutil.cpu_times()`` there, without importing psutil (~10 ms,
    a tenth of a run's start); elsewhere, or if that line is not as expected, psutil."""
    times = _proc_stat_cpu_times()
    if times is not None:
        return times
    import psutil

    t = psutil.cpu_times()
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    idle = t.idle + getattr(t, "iowait", 0.0)
    return total - idle, total


#: /proc/stat's cpu columns, as psutil names them (it reads as many as the kernel gives).
_PROC_STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
_PROC_STAT_FIELDS += ("guest", "guest_nice")


def _proc_stat_cpu_times(path: str = "/proc/stat") -> tuple[float, float] | None:
    """``psutil_cpu_times()`` computed as psutil would on Linux: the ``cpu`` line's
    first 7 to 10 numbers over ``SC_CLK_TCK``; None where there is no such line."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open(path, "rb") as f:
            values = f.readline().split()
        ticks = os.sysconf("SC_CLK_TCK")
        if not values or values[0] != b"cpu" or len(values) < 8:
            return None
        cells = values[1 : 1 + len(_PROC_STAT_FIELDS)]
        t = dict(zip(_PROC_STAT_FIELDS, [float(x) / ticks for x in cells], strict=False))
    except (OSError, ValueError):
        return None
    total = sum(t.values()) - t.get("guest", 0.0) - t.get("guest_nice", 0.0)
    idle = t["idle"] + t.get("iowait", 0.0)
    return total - idle, total


def _check_positive_number(name: str, value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name}={value!r}: give {what}")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ConfigError(f"{name}={value!r}: give {what}")
    return v


class CpuEstimateMeter(MeterBase):
    """Estimated CPU energy: TDP x (0.1 + 0.9 x utilisation), integrated between reads.

    ``tdp_w`` is the TDP of one CPU package in watts, as on the spec sheet (it is
    multiplied by the socket count); given, it overrides the table. ``cpu_model``
    overrides the model name from ``cpuinfo`` (default: :func:`read_cpuinfo`).
    ``cpu_times`` returns cumulative ``(busy_s, total_s)`` CPU seconds over all CPUs
    (default :func:`psutil_cpu_times`). ``tdp_table`` defaults to CodeCarbon's.
    """

    def __init__(
        self,
        *,
        clock: Clock = time.monotonic,
        tdp_w: float | None = None,
        cpu_model: str | None = None,
        cpu_times: CpuTimes | None = None,
        cpuinfo: CpuInfo | None = None,
        idle_fraction: float = IDLE_FRACTION,
        tdp_table: TdpTable | None = None,
    ) -> None:
        if tdp_w is not None:
            tdp_w = _check_positive_number(
                "tdp_w", tdp_w, "the TDP of one CPU package in watts, a finite number > 0"
            )
        if (
            isinstance(idle_fraction, bool)
            or not isinstance(idle_fraction, (int, float))
            or not 0.0 <= idle_fraction <= 1.0
        ):
            raise ConfigError(
                f"idle_fraction={idle_fraction!r}: give the share of TDP drawn at idle, "
                "a number in [0, 1]"
            )
        self._clock = clock
        self._cpu_times = cpu_times if cpu_times is not None else psutil_cpu_times
        self.idle_fraction = float(idle_fraction)
        info = cpuinfo if cpuinfo is not None else read_cpuinfo()
        model = cpu_model if cpu_model is not None else info.model
        self.cpu_model = model
        self.sockets = max(1, int(info.sockets))

        details: list[tuple[str, str]] = []
        if tdp_w is not None:
            self.tdp_per_socket_w: float | None = tdp_w
            self.tdp_w = tdp_w * self.sockets
            self.tdp_source = f"user-supplied tdp_w={tdp_w:g} W per package"
        else:
            match, table_label = self._lookup(model, tdp_table)
            if match is not None:
                self.tdp_per_socket_w = match.tdp_w
                self.tdp_w = match.tdp_w * self.sockets
                self.tdp_source = f"{table_label}: {match.name!r} ({match.how} match)"
            else:
                n = max(1, int(info.logical_cpus))
                self.tdp_per_socket_w = None
                self.tdp_w = FALLBACK_W_PER_LOGICAL_CPU * n
                self.tdp_source = (
                    f"fallback: {FALLBACK_W_PER_LOGICAL_CPU:g} W x {n} logical CPUs "
                    f"(CodeCarbon DEFAULT_POWER_PER_CORE), CPU model {model!r} not in "
                    f"{table_label}"
                )
                warn(
                    f"CPU {model!r} is not in {table_label}; estimating its power as "
                    f"{FALLBACK_W_PER_LOGICAL_CPU:g} W per logical CPU x {n} = {self.tdp_w:g} W "
                    "at full load (flagged estimated:cpu). Give the real TDP of one CPU "
                    "package with cpu_tdp_w=<watts> (or GREENML_CPU_TDP_W)"
                )
        details.append(("tdp_source", self.tdp_source))
        if self.tdp_per_socket_w is not None:
            details.append(("tdp_w_per_package", f"{self.tdp_per_socket_w:g}"))
            details.append(("sockets", str(self.sockets)))
        details.append(
            (
                "power_model",
                f"P = TDP x ({self.idle_fraction:g} + {1 - self.idle_fraction:g} x "
                "utilisation), TDP x load as in CodeCarbon's cpu_load mode, linear as "
                "in Cloud Carbon Footprint",
            )
        )
        self._channel = Channel(
            key=KEY,
            kind="cpu",
            name=model or "unknown CPU",
            method="estimated",
            power_limit_w=self.tdp_w,
            details=tuple(details),
        )
        self._energy_j = 0.0
        self._last_t: float | None = None
        self._last_times: tuple[float, float] | None = None
        self._last_u = 0.0
        self._last_p: float | None = None
        self._start()

    @staticmethod
    def _lookup(model: str | None, table: TdpTable | None) -> tuple[TdpMatch | None, str]:
        if table is None:
            try:
                # only the rows that can match this model: same answer, ~1/20 the time
                table = TdpTable.codecarbon() if not model else TdpTable.codecarbon_for(model)
            except (OSError, ValueError) as e:
                logger.warning("greenml: no CPU TDP table (%s)", e)
                return None, "no TDP table"
        return (table.lookup(model) if model else None), table.source

    def _start(self) -> None:
        t = self._clock()
        try:
            self._last_times = self._cpu_times()
            self._last_t = t
        except Exception as e:
            warn(
                f"cannot read the CPU times ({e}); the CPU estimate counts nothing until they "
                "can be read (greenml retries at each reading)"
            )

    def __repr__(self) -> str:
        return f"CpuEstimateMeter(tdp_w={self.tdp_w:g}, model={self.cpu_model!r})"

    def channels(self) -> list[Channel]:
        return [self._channel]

    def power_w(self, utilisation: float) -> float:
        """The model's power at a utilisation in [0, 1]."""
        return self.tdp_w * (self.idle_fraction + (1.0 - self.idle_fraction) * utilisation)

    def read(self) -> list[Reading]:
        t = self._clock()
        try:
            busy, total = self._cpu_times()
        except Exception as e:
            return [Reading(KEY, t, error=f"cannot read CPU times: {e}")]
        if self._last_t is None or self._last_times is None:
            self._last_t, self._last_times = t, (busy, total)
            return [Reading(KEY, t, energy_j=self._energy_j)]
        dt = t - self._last_t
        if dt <= 0:
            # Same instant: nothing to integrate; keep the older baseline.
            return [Reading(KEY, t, energy_j=self._energy_j, power_w=self._last_p)]
        d_busy = busy - self._last_times[0]
        d_total = total - self._last_times[1]
        # No CPU time has passed (reads closer than the kernel's tick): the last
        # utilisation carries on.
        u = min(1.0, max(0.0, d_busy / d_total)) if d_total > 0 else self._last_u
        p = self.power_w(u)
        self._energy_j += p * dt
        self._last_t, self._last_times, self._last_u, self._last_p = t, (busy, total), u, p
        return [Reading(KEY, t, energy_j=self._energy_j, power_w=p, extra={"utilisation": u})]

    def close(self) -> None:
        """Nothing to release."""
