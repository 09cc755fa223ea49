"""CPU packages and DRAM through Linux RAPL, read from the powercap sysfs tree.

The kernel exposes RAPL (Documentation/power/powercap/powercap.rst and
Documentation/ABI/testing/sysfs-class-powercap) as *control types* under
``/sys/class/powercap``: ``intel-rapl`` (MSR and TPMI drivers; AMD and Hygon CPUs use
it too) and ``intel-rapl-mmio`` (the processor thermal device of Intel client CPUs).
Each holds *zones* ``<type>:<n>`` (``n`` in hex) with sub-zones ``<type>:<n>:<m>``
nested inside them; the class folder also has a flat symlink to every zone. A zone has
a ``name``, a cumulative ``energy_uj`` and its range ``max_energy_range_uj``.

What is counted:

- **CPU** (:class:`RaplMeter`): the top-level zones named ``package-<p>`` (or
  ``package-<p>-die-<d>`` on multi-die parts), one channel each, key ``cpu:<name>``.
  Their sub-zones (``core``, ``uncore``) are parts of the package and are not added;
  ``psys`` covers the whole platform, packages included, and is not added either.
- **DRAM** (:class:`RaplDramMeter`, used by :func:`greenml.meters.ram.make_ram_meter`):
  zones named ``dram``, wherever they sit. The kernel files the DRAM domain under its
  package, but the hardware counts it apart from the package domain, so it is RAM
  energy, never part of the CPU's.

Mirrors are counted once:

- the same zone reached twice (``root/intel-rapl:0`` and
  ``root/intel-rapl/intel-rapl:0``): same ``realpath``;
- the same package on two interfaces (``intel-rapl:<n>`` and ``intel-rapl-mmio:<n>``,
  both named ``package-<p>``, reading the same hardware counter): the MSR
  (``intel-rapl``) zone is kept. It is the interface every RAPL machine has (servers
  have no MMIO interface), and it carries the sub-zones and DRAM, so package and DRAM
  come from one interface. (CodeCarbon keeps the MMIO one; either reads the same
  counter.)
- AMD and Hygon CPUs have one package energy counter per socket, but kernels with
  per-CCD die topology and before the fix "powercap/intel_rapl: Fix the energy-pkg
  event for AMD CPUs" (2024) exposed it once per die as ``package-<p>-die-<d>``: on
  those vendors one die per package is kept. On Intel, per-die zones (Cascade Lake-AP)
  are real per-die counters and are all kept.

Wraparound: ``energy_uj`` is a 32-bit count of energy units converted to uJ, so it
reads from 0 to ``max_energy_range_uj`` (2^32 - 1 units) and the next unit takes it
back to 0. When a read is lower than the one before, the counter is taken to have
wrapped once and ``max_energy_range_uj`` is added. The exact period is one energy unit
more (about 61 uJ on Intel, 15.3 uJ on AMD), an error below 1e-9 of the ~262 kJ
range, which we accept to stay within what sysfs tells us. The counter must be read at
least once per wrap (over 10 minutes at 400 W), which any sampling interval does. After
a failed read, a lower value may be a reset (driver reloaded) rather than a wrap: the
counter is then re-based without adding anything, and a warning is logged.

Readings carry the moment they were taken; the hardware updates the counter about
every millisecond, far below any sampling interval.

Permissions: since November 2020 (CVE-2020-8694, "Platypus"; Linux 5.10 and stable
updates) ``energy_uj`` is readable by root only. Construction then raises
:class:`NotSupportedError` saying how to grant access; the tracker falls back to the
TDP x load estimate. Every file is opened through the ``opener`` argument (default
:func:`open`), which is how tests inject a permission failure that root cannot bypass.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from greenml.errors import DeviceNotFoundError, DriverError, NotSupportedError
from greenml.meters.base import Channel, Clock, MeterBase, Reading
from greenml.meters.cpu import CpuInfo, read_cpuinfo

logger = logging.getLogger(__name__)

DEFAULT_ROOT = "/sys/class/powercap"
MSR = "intel-rapl"
MMIO = "intel-rapl-mmio"
_CONTROL_TYPES = (MSR, MMIO)
_ZONE = re.compile(r"^(intel-rapl(?:-mmio)?):([0-9a-f]+(?::[0-9a-f]+)*)$")
_PACKAGE = re.compile(r"^package-(\d+)(?:-die-(\d+))?$")
_MAX_DEPTH = 4
_PKG_SCOPE_VENDORS = ("AuthenticAMD", "HygonGenuine")

Opener = Callable[[str], IO[Any]]

PERMISSION_HELP = (
    "Since November 2020 (CVE-2020-8694, Linux 5.10 and stable updates) RAPL energy "
    "counters are readable by root only. To let greenml measure the CPU and DRAM, grant "
    "read access: for this boot, `sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj "
    "/sys/class/powercap/intel-rapl:*:*/energy_uj`; across reboots, a udev rule such as "
    '/etc/udev/rules.d/99-greenml-rapl.rules with `ACTION=="add", SUBSYSTEM=="powercap", '
    'KERNEL=="intel-rapl:*", RUN+="/bin/chmod a+r /sys%p/energy_uj"` (or chgrp the files '
    "to a group of trusted users and chmod g+r: the restriction closes a power side "
    "channel). Until then greenml estimates CPU power from TDP x load and RAM power from "
    "W/GB."
)


@dataclass(frozen=True)
class RaplZone:
    """One powercap zone as found on disk."""

    path: str  # as reached from the root
    real: str  # realpath: the identity of the zone
    control: str  # "intel-rapl" or "intel-rapl-mmio"
    ids: tuple[str, ...]  # ("0",) for intel-rapl:0, ("0", "1") for intel-rapl:0:1
    name: str
    parent_name: str | None = None  # the enclosing zone's name, for sub-zones

    @property
    def top_level(self) -> bool:
        return len(self.ids) == 1


def _read_text(opener: Opener, path: str) -> str:
    with opener(path) as f:
        return str(f.read()).strip()


def discover_zones(root: str | os.PathLike[str], *, opener: Opener = open) -> list[RaplZone]:
    """Every RAPL zone under ``root`` once (by realpath), in a stable order.

    ``root`` is a powercap class folder (flat symlinks and/or control-type folders) or
    a devices folder (``/sys/devices/virtual/powercap``: control types only).
    Raises :class:`DeviceNotFoundError` when ``root`` is missing.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise DeviceNotFoundError(f"no powercap folder at {root} (is this Linux with RAPL?)")
    found: dict[str, RaplZone] = {}

    def visit(folder: str, depth: int) -> None:
        try:
            entries = sorted(os.listdir(folder))
        except OSError as e:
            logger.debug("greenml: cannot list %s (%s)", folder, e)
            return
        for entry in entries:
            path = os.path.join(folder, entry)
            if not os.path.isdir(path):
                continue
            m = _ZONE.match(entry)
            if m is None:
                if depth == 0 and entry in _CONTROL_TYPES:
                    visit(path, depth + 1)
                continue
            real = os.path.realpath(path)
            if real not in found:
                try:
                    name = _read_text(opener, os.path.join(path, "name"))
                except OSError as e:
                    logger.debug("greenml: skipping RAPL zone %s (no name: %s)", path, e)
                    name = ""
                found[real] = RaplZone(path, real, m.group(1), tuple(m.group(2).split(":")), name)
            if depth < _MAX_DEPTH:
                visit(path, depth + 1)

    visit(root, 0)
    names = {(z.control, z.ids): z.name for z in found.values()}
    zones = [
        RaplZone(
            z.path,
            z.real,
            z.control,
            z.ids,
            z.name,
            None if z.top_level else names.get((z.control, z.ids[:-1])),
        )
        for z in found.values()
        if z.name
    ]
    return sorted(zones, key=lambda z: (z.control, [int(i, 16) for i in z.ids]))


def _prefer_msr(zones: list[RaplZone], key: Callable[[RaplZone], Any]) -> list[RaplZone]:
    """One zone per ``key``: the MSR one when a zone is also exposed through MMIO."""
    chosen: dict[Any, RaplZone] = {}
    for z in zones:
        k = key(z)
        prior = chosen.get(k)
        if prior is None or (prior.control == MMIO and z.control == MSR):
            if prior is not None:
                logger.debug("greenml: %s mirrors %s; keeping the MSR zone", prior.path, z.path)
            chosen[k] = z
        else:
            logger.debug("greenml: %s mirrors %s; keeping the MSR zone", z.path, prior.path)
    return list(chosen.values())


def _package_number(name: str) -> tuple[int, int]:
    m = _PACKAGE.match(name)
    if m is None:  # pragma: no cover - callers pass package names only
        raise ValueError(name)
    return int(m.group(1)), int(m.group(2) or 0)


def select_packages(zones: list[RaplZone], vendor: str | None = None) -> list[RaplZone]:
    """The package zones to count, mirrors removed (see the module docstring)."""
    packages = [z for z in zones if z.top_level and _PACKAGE.match(z.name)]
    packages = _prefer_msr(packages, key=lambda z: z.name)
    if vendor in _PKG_SCOPE_VENDORS:
        per_socket: dict[int, RaplZone] = {}
        for z in sorted(packages, key=lambda z: _package_number(z.name)):
            p = _package_number(z.name)[0]
            if p in per_socket:
                logger.info(
                    "greenml: %s (%s) mirrors the socket counter of %s on this %s CPU; "
                    "counted once",
                    z.name,
                    z.path,
                    per_socket[p].name,
                    vendor,
                )
                continue
            per_socket[p] = z
        packages = list(per_socket.values())
    return sorted(packages, key=lambda z: _package_number(z.name))


def select_dram(zones: list[RaplZone]) -> list[RaplZone]:
    """The DRAM zones to count, one per package (MSR preferred over MMIO)."""
    drams = [z for z in zones if z.name == "dram"]

    def owner(z: RaplZone) -> str:
        return z.parent_name if z.parent_name else f"zone-{'-'.join(z.ids)}"

    return sorted(_prefer_msr(drams, key=owner), key=owner)


@dataclass
class _Counter:
    """One counted zone and its unwrapping state (all in uJ, exact integers)."""

    channel: Channel
    energy_path: str
    max_uj: int
    last_uj: int
    total_uj: int
    after_error: bool = False


def _open_counter(zone: RaplZone, channel: Channel, opener: Opener) -> _Counter:
    energy_path = os.path.join(zone.path, "energy_uj")
    max_path = os.path.join(zone.path, "max_energy_range_uj")
    try:
        max_uj = int(_read_text(opener, max_path))
        uj = int(_read_text(opener, energy_path))
    except PermissionError as e:
        raise NotSupportedError(
            f"cannot read the RAPL counter of {zone.name} ({e.filename or energy_path}): "
            f"permission denied. {PERMISSION_HELP}"
        ) from e
    except (OSError, ValueError) as e:
        raise DriverError(f"cannot read the RAPL counter of {zone.name} in {zone.path}: {e}") from e
    if max_uj <= 0:
        raise DriverError(f"{max_path} reads {max_uj}; a RAPL range must be > 0")
    return _Counter(channel, energy_path, max_uj, uj, uj)


class _RaplCounters(MeterBase):
    """Cumulative, unwrapped energy of a set of RAPL zones."""

    _counters: list[_Counter]

    def __init__(self, *, clock: Clock, opener: Opener) -> None:
        self._clock = clock
        self._opener = opener
        self._closed = False

    def channels(self) -> list[Channel]:
        return [c.channel for c in self._counters]

    def read(self) -> list[Reading]:
        t = self._clock()
        out: list[Reading] = []
        for c in self._counters:
            key = c.channel.key
            try:
                uj = int(_read_text(self._opener, c.energy_path))
            except (OSError, ValueError) as e:
                c.after_error = True
                out.append(Reading(key, t, error=f"cannot read {c.energy_path}: {e}"))
                continue
            delta = uj - c.last_uj
            if delta < 0:
                if c.after_error:
                    logger.warning(
                        "greenml: %s went back from %d to %d uJ after a failed read; taking "
                        "it as a reset, not a wrap (no energy added for the gap)",
                        c.energy_path,
                        c.last_uj,
                        uj,
                    )
                    delta = 0
                else:
                    delta += c.max_uj  # wrapped once (see the module docstring)
            c.total_uj += delta
            c.last_uj = uj
            c.after_error = False
            out.append(Reading(key, t, energy_j=c.total_uj / 1e6))
        return out

    def close(self) -> None:
        """Files are opened per read; nothing to release. Safe to call twice."""
        self._closed = True


class RaplMeter(_RaplCounters):
    """Energy of the CPU packages from RAPL, one ``counter`` channel per package.

    ``cpuinfo`` (default: :func:`~greenml.meters.cpu.read_cpuinfo`) names the channels
    and tells AMD's per-socket counters apart. Raises :class:`DeviceNotFoundError`
    when there is no package zone, :class:`NotSupportedError` when a counter is not
    readable (see ``PERMISSION_HELP``), :class:`DriverError` for other read failures.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] = DEFAULT_ROOT,
        *,
        clock: Clock = time.monotonic,
        opener: Opener = open,
        cpuinfo: CpuInfo | None = None,
    ) -> None:
        super().__init__(clock=clock, opener=opener)
        self.root = os.fspath(root)
        info = cpuinfo if cpuinfo is not None else read_cpuinfo()
        zones = discover_zones(self.root, opener=opener)
        packages = select_packages(zones, info.vendor)
        if not packages:
            raise DeviceNotFoundError(
                f"no RAPL package domain under {self.root} "
                f"(zones found: {', '.join(z.name for z in zones) or 'none'})"
            )
        self._counters = [_open_counter(z, self._channel(z, info), opener) for z in packages]

    @staticmethod
    def _channel(z: RaplZone, info: CpuInfo) -> Channel:
        p, _ = _package_number(z.name)
        return Channel(
            key=f"cpu:{z.name}",
            kind="cpu",
            name=info.model or f"CPU package {p}",
            method="counter",
            index=p,
            details=(("source", "RAPL powercap"), ("zone", z.real), ("interface", z.control)),
        )

    def __repr__(self) -> str:
        return f"RaplMeter({self.root!r}, {[c.channel.key for c in self._counters]})"


class RaplDramMeter(_RaplCounters):
    """Energy of the DRAM from RAPL's ``dram`` zones, one ``counter`` channel each
    (key ``ram:dram-<package>``, kind ``ram``). Raises like :class:`RaplMeter`."""

    def __init__(
        self,
        root: str | os.PathLike[str] = DEFAULT_ROOT,
        *,
        clock: Clock = time.monotonic,
        opener: Opener = open,
    ) -> None:
        super().__init__(clock=clock, opener=opener)
        self.root = os.fspath(root)
        zones = discover_zones(self.root, opener=opener)
        drams = select_dram(zones)
        if not drams:
            raise DeviceNotFoundError(f"no RAPL dram domain under {self.root}")
        self._counters = [_open_counter(z, self._channel(z), opener) for z in drams]

    @staticmethod
    def _channel(z: RaplZone) -> Channel:
        owner = z.parent_name or f"zone-{'-'.join(z.ids)}"
        label = owner.removeprefix("package-")
        m = _PACKAGE.match(owner)
        return Channel(
            key=f"ram:dram-{label}",
            kind="ram",
            name=f"DRAM ({owner})",
            method="counter",
            index=int(m.group(1)) if m else None,
            details=(("source", "RAPL powercap"), ("zone", z.real), ("interface", z.control)),
        )

    def __repr__(self) -> str:
        return f"RaplDramMeter({self.root!r}, {[c.channel.key for c in self._counters]})"
