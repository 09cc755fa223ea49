"""A fake Linux powercap (RAPL) tree in a folder, for testing CPU and DRAM metering.

The layout follows ``/sys/class/powercap`` as the kernel builds it
(Documentation/power/powercap/powercap.rst): a control-type folder per interface
(``intel-rapl`` for the MSR/TPMI driver, ``intel-rapl-mmio`` for the processor
thermal device), zones inside it (``intel-rapl:0``), sub-zones inside their zone
(``intel-rapl:0:0``), and, as in the real class folder, flat symlinks such as
``intel-rapl:0 -> intel-rapl/intel-rapl:0``. Zone numbers are written in hex, as
the kernel does (``intel-rapl:a``). Each zone has ``name``, ``energy_uj``,
``max_energy_range_uj``, ``enabled`` and one long-term constraint.

``energy_uj`` counts modulo ``max_energy_range_uj``: adding energy past the end wraps
to the start, which is what :class:`greenml.meters.rapl.RaplMeter` unwraps.

Unreadable counters. Since November 2020 the kernel makes ``energy_uj`` readable by
root only, but a test that runs as root (containers, CI) can read any file whatever its
mode. So the fake does two things for ``readable=False``: it sets the file's mode to
``000`` (enough when tests run as an ordinary user), and it records the file so that
:meth:`FakePowercap.open`, handed to the meter as ``opener=fake.open``, raises
:class:`PermissionError` for it (which also works as root). The meter opens every file
through its ``opener``, so this is the one point where a permission failure is injected.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

#: 2^32 energy units of 61.035 uJ (1/2^14 J), as most Intel packages report it.
DEFAULT_MAX_ENERGY_RANGE_UJ = 262_143_328_850
#: Share of a package's energy that the fake credits to its ``core`` sub-zone.
CORE_SHARE = 0.6

_MSR = "intel-rapl"
_MMIO = "intel-rapl-mmio"


@dataclass
class _FakeZone:
    dirs: list[Path]  # the real folders (MSR first, then an MMIO mirror if any)
    energy_uj: int
    max_energy_range_uj: int
    removed: bool = False


def _zone_id(n: int) -> str:
    return format(n, "x")


class FakePowercap:
    """A powercap tree under ``root`` (pass ``root`` where ``/sys/class/powercap`` goes).

    Zones are addressed by their zone number ``n`` (``intel-rapl:<n>``), which for
    packages is also the package number unless ``name`` says otherwise.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._packages: dict[int, _FakeZone] = {}
        self._cores: dict[int, _FakeZone] = {}
        self._drams: dict[int, _FakeZone] = {}
        self._others: dict[int, _FakeZone] = {}
        self._unreadable: set[str] = set()

    # -- building ---------------------------------------------------------------------

    def _control_type(self, control: str) -> Path:
        path = self.root / control
        if not path.exists():
            path.mkdir()
            (path / "enabled").write_text("1\n")
        return path

    def _make_zone(
        self,
        parent: Path,
        zone: str,
        name: str,
        energy_uj: int,
        max_energy_range_uj: int,
        *,
        symlink: bool,
    ) -> Path:
        path = parent / zone
        path.mkdir()
        (path / "name").write_text(name + "\n")
        (path / "energy_uj").write_text(f"{energy_uj}\n")
        (path / "max_energy_range_uj").write_text(f"{max_energy_range_uj}\n")
        (path / "enabled").write_text("1\n")
        (path / "constraint_0_name").write_text("long_term\n")
        (path / "constraint_0_power_limit_uw").write_text("150000000\n")
        if symlink:
            (self.root / zone).symlink_to(path.relative_to(self.root))
        return path

    def add_package(
        self,
        n: int,
        *,
        energy_uj: int = 0,
        max_energy_range_uj: int = DEFAULT_MAX_ENERGY_RANGE_UJ,
        name: str | None = None,
        mirror_symlink: bool = True,
        mmio_mirror: bool = False,
        dram: bool = False,
        dram_energy_uj: int = 0,
        dram_max_energy_range_uj: int = DEFAULT_MAX_ENERGY_RANGE_UJ,
        readable: bool = True,
    ) -> Path:
        """Add package zone ``intel-rapl:<n>`` (named ``package-<n>`` unless ``name``)
        with a ``core`` sub-zone ``intel-rapl:<n>:0`` and, with ``dram``, a ``dram``
        sub-zone ``intel-rapl:<n>:1``. ``mirror_symlink`` adds the flat class-folder
        symlinks; ``mmio_mirror`` exposes the same package counter a second time as
        ``intel-rapl-mmio:<n>`` (as client CPUs with the processor thermal device do).
        Returns the MSR zone folder."""
        if n in self._packages or n in self._others:
            raise ValueError(f"zone {n} already exists")
        if not 0 <= energy_uj < max_energy_range_uj:
            raise ValueError(f"energy_uj={energy_uj} is outside [0, {max_energy_range_uj})")
        zid = _zone_id(n)
        name = name if name is not None else f"package-{n}"
        msr = self._make_zone(
            self._control_type(_MSR),
            f"{_MSR}:{zid}",
            name,
            energy_uj,
            max_energy_range_uj,
            symlink=mirror_symlink,
        )
        dirs = [msr]
        if mmio_mirror:
            dirs.append(
                self._make_zone(
                    self._control_type(_MMIO),
                    f"{_MMIO}:{zid}",
                    name,
                    energy_uj,
                    max_energy_range_uj,
                    symlink=mirror_symlink,
                )
            )
        self._packages[n] = _FakeZone(dirs, energy_uj, max_energy_range_uj)
        core = self._make_zone(
            msr, f"{_MSR}:{zid}:0", "core", 0, max_energy_range_uj, symlink=mirror_symlink
        )
        self._cores[n] = _FakeZone([core], 0, max_energy_range_uj)
        if dram:
            if not 0 <= dram_energy_uj < dram_max_energy_range_uj:
                raise ValueError(f"dram_energy_uj={dram_energy_uj} is out of range")
            d = self._make_zone(
                msr,
                f"{_MSR}:{zid}:1",
                "dram",
                dram_energy_uj,
                dram_max_energy_range_uj,
                symlink=mirror_symlink,
            )
            self._drams[n] = _FakeZone([d], dram_energy_uj, dram_max_energy_range_uj)
        if not readable:
            self.set_readable(n, False)
        return msr

    def add_psys(self, n: int, *, energy_uj: int = 0, mirror_symlink: bool = True) -> Path:
        """Add a top-level ``psys`` (platform) zone ``intel-rapl:<n>``. It covers the
        whole SoC, packages included, so a CPU meter must not add it."""
        if n in self._packages or n in self._others:
            raise ValueError(f"zone {n} already exists")
        path = self._make_zone(
            self._control_type(_MSR),
            f"{_MSR}:{_zone_id(n)}",
            "psys",
            energy_uj,
            DEFAULT_MAX_ENERGY_RANGE_UJ,
            symlink=mirror_symlink,
        )
        self._others[n] = _FakeZone([path], energy_uj, DEFAULT_MAX_ENERGY_RANGE_UJ)
        return path

    # -- driving ----------------------------------------------------------------------

    def _zone(self, n: int, domain: str) -> _FakeZone:
        table = {"package": self._packages, "dram": self._drams, "core": self._cores}.get(domain)
        if table is None:
            raise ValueError(f"domain={domain!r}: use 'package', 'core' or 'dram'")
        if n not in table:
            raise KeyError(f"no {domain} zone for package {n}")
        return table[n]

    def _write(self, z: _FakeZone) -> None:
        if z.removed:
            return
        for d in z.dirs:
            f = d / "energy_uj"
            mode = f.stat().st_mode & 0o777 if f.exists() else 0o644
            if not mode & 0o200:
                f.chmod(0o600)  # let a non-root test user rewrite a mode-000 file
            f.write_text(f"{z.energy_uj}\n")
            f.chmod(mode)

    def set_energy_uj(self, n: int, value: int, *, domain: str = "package") -> None:
        """Set a counter to a raw value in [0, max_energy_range_uj)."""
        z = self._zone(n, domain)
        if not 0 <= value < z.max_energy_range_uj:
            raise ValueError(f"value={value} is outside [0, {z.max_energy_range_uj})")
        z.energy_uj = int(value)
        self._write(z)

    def energy_uj(self, n: int, *, domain: str = "package") -> int:
        """The counter's current raw value (also while its file is removed)."""
        return self._zone(n, domain).energy_uj

    def add_energy(self, n: int, joules: float, *, domain: str = "package") -> None:
        """Add energy to a counter, wrapping at ``max_energy_range_uj`` like the
        hardware. Energy added to a package also advances its ``core`` sub-zone by
        :data:`CORE_SHARE` of it (the core is part of the package)."""
        if joules < 0:
            raise ValueError(f"joules={joules}: energy counters only go up")
        z = self._zone(n, domain)
        z.energy_uj = (z.energy_uj + round(joules * 1e6)) % z.max_energy_range_uj
        self._write(z)
        if domain == "package":
            core = self._cores[n]
            core.energy_uj = (core.energy_uj + round(joules * CORE_SHARE * 1e6)) % (
                core.max_energy_range_uj
            )
            self._write(core)

    def remove(self, n: int, *, domain: str = "package") -> None:
        """Delete the counter's ``energy_uj`` file(s), as when the driver goes away.
        The counter keeps running in memory; :meth:`restore` brings the file back."""
        z = self._zone(n, domain)
        for d in z.dirs:
            (d / "energy_uj").unlink(missing_ok=True)
        z.removed = True

    def restore(self, n: int, *, domain: str = "package") -> None:
        """Write back a counter file deleted by :meth:`remove`, at its current value."""
        z = self._zone(n, domain)
        z.removed = False
        self._write(z)

    def set_readable(self, n: int, readable: bool, *, domain: str = "package") -> None:
        """Make a counter unreadable (mode 000, and :meth:`open` raises
        :class:`PermissionError`) or readable again (mode 644)."""
        z = self._zone(n, domain)
        for d in z.dirs:
            f = d / "energy_uj"
            key = os.path.realpath(f)
            if readable:
                self._unreadable.discard(key)
                if f.exists():
                    f.chmod(0o644)
            else:
                self._unreadable.add(key)
                if f.exists():
                    f.chmod(0)

    # -- reading ----------------------------------------------------------------------

    def open(self, path: str | os.PathLike[str], *args: Any, **kwargs: Any) -> IO[Any]:
        """Like :func:`open`, but unreadable counters raise :class:`PermissionError`
        even for root. Pass it to the meter: ``RaplMeter(fake.root, opener=fake.open)``."""
        if os.path.realpath(path) in self._unreadable:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return open(path, *args, **kwargs)
