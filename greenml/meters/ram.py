"""RAM energy: RAPL's DRAM counter where it can be read, else watts per GB installed.

Estimate (method ``estimated``): a constant ``P = W/GB x installed GiB``, integrated
over time. DRAM draws refresh and background power for all of its capacity whether or
not it holds data, so the figure applies to the installed memory, not to the memory
in use; a GB here is a GiB (2^30 bytes), the unit DIMM capacities are sold in.

The default, :data:`DEFAULT_WATTS_PER_GB` = 0.3725 W/GB, is the memory power of the
Green Algorithms model: Lannelongue, Grealey & Inouye, "Green Algorithms: Quantifying
the Carbon Footprint of Computation", Advanced Science 8(12):2100707 (2021), based on
Karyakin & Salem, "An analysis of memory power consumption in database systems", DaMoN
2017 (doi:10.1145/3076113.3076117) and a Tom's Hardware DDR4 measurement (Core i7-5960X review) (the
sources its data file ``referenceValues.csv`` cites). Why this one:

- it is published in a peer-reviewed paper, with a year and measured sources;
- it agrees within 5 % with the figures other tools use: Crucial's rule of thumb "3 W
  per 8 GB of DDR3 or DDR4" (0.375 W/GB, CodeCarbon's figure before 3.0) and Cloud
  Carbon Footprint's 0.392 W/GB (the mean of Crucial's and Micron TN-40-07's 0.408);
- where the truth is uncertain it errs high rather than low. Large RDIMMs draw fewer
  watts per GB, so on big-memory ML servers it is likely an upper bound: CodeCarbon
  3.x now estimates ~5 W per DIMM from a guessed DIMM count instead, and the Green
  Algorithms calculator's current data lists 0.08 W/GB. Pass ``watts_per_gb`` (or rely
  on the RAPL DRAM counter, which :func:`make_ram_meter` prefers) to do better.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time

from greenml.errors import ConfigError, MeasurementError
from greenml.meters.base import Channel, Clock, Meter, MeterBase, Reading
from greenml.meters.rapl import DEFAULT_ROOT, Opener, RaplDramMeter

logger = logging.getLogger(__name__)

DEFAULT_WATTS_PER_GB = 0.3725
WATTS_PER_GB_SOURCE = (
    "Lannelongue, Grealey & Inouye (2021), Green Algorithms, Advanced Science "
    "8(12):2100707, after Karyakin & Salem (2017), DaMoN, doi:10.1145/3076113.3076117"
)
WATTS_PER_GB_YEAR = 2021
BYTES_PER_GB = 2**30
KEY = "ram"


class RamEstimateMeter(MeterBase):
    """Estimated RAM energy: ``watts_per_gb`` x installed GiB, constant over time.

    ``total_bytes`` defaults to ``psutil.virtual_memory().total`` (on Linux read from
    ``MemTotal`` in ``/proc/meminfo``, as psutil does, without importing it). Raises
    :class:`ConfigError` for a ``total_bytes`` that is not a positive integer or a
    ``watts_per_gb`` that is not a finite number >= 0 (0 counts no RAM energy).
    """

    def __init__(
        self,
        *,
        clock: Clock = time.monotonic,
        total_bytes: int | None = None,
        watts_per_gb: float = DEFAULT_WATTS_PER_GB,
    ) -> None:
        if total_bytes is None:
            total_bytes = installed_bytes()
        elif isinstance(total_bytes, bool) or not isinstance(total_bytes, int) or total_bytes <= 0:
            raise ConfigError(
                f"total_bytes={total_bytes!r}: give the installed memory in bytes, an "
                "integer > 0 (e.g. total_bytes=64 * 2**30)"
            )
        if (
            isinstance(watts_per_gb, bool)
            or not isinstance(watts_per_gb, (int, float))
            or not math.isfinite(watts_per_gb)
            or watts_per_gb < 0
        ):
            raise ConfigError(
                f"watts_per_gb={watts_per_gb!r}: give the power of installed memory in W "
                f"per GiB, a finite number >= 0 (default {DEFAULT_WATTS_PER_GB})"
            )
        self._clock = clock
        self.total_bytes = total_bytes
        self.watts_per_gb = float(watts_per_gb)
        self.installed_gb = total_bytes / BYTES_PER_GB
        self.power_w = self.watts_per_gb * self.installed_gb
        default = self.watts_per_gb == DEFAULT_WATTS_PER_GB
        source = f"{WATTS_PER_GB_SOURCE} [{WATTS_PER_GB_YEAR}]" if default else "user-supplied"
        self._channel = Channel(
            key=KEY,
            kind="ram",
            name=f"RAM {self.installed_gb:.1f} GiB",
            method="estimated",
            details=(
                ("watts_per_gb", f"{self.watts_per_gb:g}"),
                ("watts_per_gb_source", source),
                ("installed_gib", f"{self.installed_gb:.3f}"),
                ("power_model", "P = W/GB x installed GiB, constant"),
            ),
        )
        self._t0 = clock()

    def __repr__(self) -> str:
        return f"RamEstimateMeter({self.installed_gb:.1f} GiB x {self.watts_per_gb:g} W/GB)"

    def channels(self) -> list[Channel]:
        return [self._channel]

    def read(self) -> list[Reading]:
        t = self._clock()
        energy_j = self.power_w * max(0.0, t - self._t0)
        return [Reading(KEY, t, energy_j=energy_j, power_w=self.power_w)]

    def close(self) -> None:
        """Nothing to release."""


def installed_bytes() -> int:
    """The machine's memory, ``psutil.virtual_memory().total``: on Linux ``MemTotal`` of
    ``/proc/meminfo`` x 1024, psutil's own reading, without importing psutil (~10 ms of
    a run's start); elsewhere, or if that line is missing, psutil."""
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/meminfo", "rb") as f:
                for line in f:
                    if line.startswith(b"MemTotal:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
    import psutil

    return int(psutil.virtual_memory().total)


def make_ram_meter(
    root: str | os.PathLike[str] = DEFAULT_ROOT,
    *,
    clock: Clock = time.monotonic,
    opener: Opener = open,
    total_bytes: int | None = None,
    watts_per_gb: float = DEFAULT_WATTS_PER_GB,
) -> Meter:
    """RAPL's DRAM counter (method ``counter``) where the machine has one and it is
    readable; otherwise :class:`RamEstimateMeter`. Bad estimate arguments raise
    :class:`ConfigError` either way."""
    estimate = RamEstimateMeter(clock=clock, total_bytes=total_bytes, watts_per_gb=watts_per_gb)
    try:
        return RaplDramMeter(root, clock=clock, opener=opener)
    except MeasurementError as e:
        logger.info("greenml: RAM not measured by RAPL (%s); estimating it from W/GB", e)
        return estimate
