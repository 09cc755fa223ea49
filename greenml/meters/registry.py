"""Meter discovery: an ordered list of discoverers, one per kind of hardware.

:func:`default_meters` builds the real meters for this machine:

1. **GPU**, vendors in order (:data:`GPU_VENDORS`: NVIDIA through NVML, then AMD through
   amdsmi). The first vendor that measures a GPU wins; a vendor that is absent says
   nothing. When no vendor measures one, the run goes on without GPUs with one warning
   (flagged ``no_gpu``), or, if ``gpu_ids`` was given, a :class:`ConfigError`. A
   :class:`ConfigError` from a vendor (an unknown ``gpu_ids``) is raised at once.
2. **CPU**: RAPL, else a TDP x load estimate (``cpu_tdp_w`` overrides the TDP table);
   flagged ``no_cpu`` when neither can be built.
3. **RAM**: RAPL's DRAM domain, else a W/GB estimate; flagged ``no_ram`` when neither.

A new GPU vendor is one module in ``greenml/meters`` and one entry in
:data:`GPU_VENDORS`. Vendor modules are imported only when their discoverer runs, and
not at all where a cheap check already tells how they would fail (pynvml installed but
no ``libnvidia-ml.so.1`` to load; ``amdsmi`` not installed): the usual CPU-only machine
then starts a run ~25 ms sooner, with the same warning.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from greenml import config
from greenml.errors import ConfigError, MeasurementError, NotSupportedError, warn
from greenml.meters.base import Clock, Meter

logger = logging.getLogger(__name__)

Flags = list[str]


@dataclass(frozen=True)
class Context:
    """What every discoverer is given."""

    settings: config.Settings
    clock: Clock
    environ: Mapping[str, str] | None


@dataclass(frozen=True)
class GpuVendor:
    """One GPU vendor: a name for messages and how to build its meter. ``build`` raises
    :class:`ConfigError` for bad settings and anything else when the vendor is absent."""

    name: str
    build: Callable[[Context], Meter]


#: What :class:`~greenml.meters.nvml.NvmlMeter` raises where ``libnvidia-ml.so.1``
#: cannot be loaded: pynvml's words for ``NVML_ERROR_LIBRARY_NOT_FOUND`` at ``nvmlInit``,
#: as :mod:`greenml.meters.nvml` translates them (a test checks they agree).
NVML_LIBRARY_NOT_FOUND = "NVML is not available (nvmlInit: NVML Shared Library Not Found)"


def _nvidia(ctx: Context) -> Meter:
    if _no_nvml_library():
        raise NotSupportedError(NVML_LIBRARY_NOT_FOUND)
    from greenml.meters.nvml import NvmlMeter

    return NvmlMeter(ctx.settings.gpu_ids, clock=ctx.clock, environ=ctx.environ)


def _no_nvml_library() -> bool:
    """True where :class:`~greenml.meters.nvml.NvmlMeter` would certainly fail for want
    of the NVML library, found in ~1 ms instead of the ~20 ms of importing pynvml to
    learn it (most machines a run starts on have no NVIDIA GPU): on Linux, with pynvml
    installed but not imported yet (a simulation, or an earlier run, may have given it
    a library), when ``libnvidia-ml.so.1``, the name pynvml loads, cannot be loaded."""
    if not sys.platform.startswith("linux") or "pynvml" in sys.modules:
        return False
    if not _installed("pynvml"):
        return False  # NvmlMeter says so in its own words
    return not _nvml_library_loads()


def _installed(module: str) -> bool:
    """Whether a top-level module can be found, without importing it."""
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _nvml_library_loads() -> bool:
    """Whether ``ctypes.CDLL("libnvidia-ml.so.1")`` succeeds, as pynvml's would."""
    import ctypes

    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


#: What :class:`~greenml.meters.amdsmi.AmdMeter` raises where the ``amdsmi`` package is
#: not installed (a test checks they agree).
AMDSMI_NOT_INSTALLED = "amdsmi is not installed (pip install 'greenml[amd]')"


def _amd(ctx: Context) -> Meter:
    if "amdsmi" not in sys.modules and not _installed("amdsmi"):
        raise NotSupportedError(AMDSMI_NOT_INSTALLED)  # known without importing our module
    from greenml.meters.amdsmi import AmdMeter

    return AmdMeter(ctx.settings.gpu_ids, clock=ctx.clock, environ=ctx.environ)


#: GPU vendors, tried in this order.
GPU_VENDORS: tuple[GpuVendor, ...] = (
    GpuVendor("NVIDIA", _nvidia),
    GpuVendor("AMD", _amd),
)


def discover_gpu(
    ctx: Context, flags: Flags, vendors: tuple[GpuVendor, ...] = GPU_VENDORS
) -> list[Meter]:
    """The first vendor's GPU meter that can be built (see the module docstring)."""
    missing: list[tuple[str, Exception]] = []
    for vendor in vendors:
        try:
            return [vendor.build(ctx)]
        except ConfigError:
            raise
        except Exception as e:  # no library, no GPU, or a driver that misbehaves
            logger.debug("greenml: no %s GPU measured: %s", vendor.name, e)
            missing.append((vendor.name, e))
    first = missing[0][1] if missing else None
    if ctx.settings.gpu_ids is not None:
        # The first vendor's reason is the one the user is most likely to need.
        others = "".join(f"; no {n} GPU either ({e})" for n, e in missing[1:])
        raise ConfigError(
            f"gpu_ids={list(ctx.settings.gpu_ids)!r} but no NVIDIA GPU can be measured here "
            f"({first}){others}; leave gpu_ids unset to measure CPU and RAM only"
        ) from first
    reasons = "; ".join(f"{n}: {e}" for n, e in missing)
    warn(f"no GPU measured ({reasons}); measuring CPU and RAM only (flagged no_gpu)")
    flags.append("no_gpu")
    return []


def discover_cpu(ctx: Context, flags: Flags) -> list[Meter]:
    """RAPL's package counters, else the TDP x load estimate."""
    from greenml.meters.cpu import CpuEstimateMeter
    from greenml.meters.rapl import RaplMeter

    def cpu_estimate() -> Meter:
        return CpuEstimateMeter(clock=ctx.clock, tdp_w=ctx.settings.cpu_tdp_w)

    try:
        return [RaplMeter(ctx.settings.powercap_root, clock=ctx.clock)]
    except MeasurementError as e:
        logger.info("greenml: RAPL unavailable (%s); estimating CPU power from TDP x load", e)
    except Exception as e:  # pragma: no cover - an unexpected powercap layout
        logger.warning("greenml: reading RAPL failed (%s); estimating CPU power", e)
    return _optional("cpu", cpu_estimate, flags)


def discover_ram(ctx: Context, flags: Flags) -> list[Meter]:
    """RAPL's DRAM counter, else the W/GB estimate."""
    from greenml.meters.ram import make_ram_meter

    return _optional(
        "ram", lambda: make_ram_meter(root=ctx.settings.powercap_root, clock=ctx.clock), flags
    )


Discoverer = Callable[[Context, Flags], list[Meter]]

#: Discoverers, run in this order; each returns its meters and appends its flags.
DISCOVERERS: tuple[Discoverer, ...] = (discover_gpu, discover_cpu, discover_ram)


def default_meters(
    settings: config.Settings,
    *,
    clock: Clock,
    environ: Mapping[str, str] | None = None,
) -> tuple[list[Meter], list[str]]:
    """The real meters for this machine, and flags describing what is missing.

    GPUs through NVML, else amdsmi; the CPU through RAPL, else a TDP x load estimate;
    RAM through RAPL's DRAM domain, else a W/GB estimate. An unknown ``gpu_ids`` raises
    :class:`ConfigError`; a machine without GPUs is measured without them.
    """
    ctx = Context(settings, clock, environ)
    meters: list[Meter] = []
    flags: Flags = []
    for discover in DISCOVERERS:
        meters.extend(discover(ctx, flags))
    return meters, flags


def _optional(kind: str, build: Callable[[], Meter], flags: Flags) -> list[Meter]:
    """A meter, or none (flagged ``no_<kind>``) when it cannot be built: measurement
    trouble never stops a run."""
    try:
        return [build()]
    except Exception as e:
        warn(f"{kind.upper()} energy not measured ({e}); flagged no_{kind}")
        flags.append(f"no_{kind}")
        return []
