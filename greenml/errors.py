"""The greenml error tree.

Every error greenml raises on purpose derives from :class:`GreenMLError`, so a caller
can catch the whole family with one ``except``. Vendor errors (NVML, the kernel's
powercap files) are translated where the vendor is touched, in ``greenml/meters``;
nothing above the meters sees a ``pynvml.NVMLError``.

::

    GreenMLError
    ├── ConfigError            bad argument, env var or config value (before any thread)
    └── MeasurementError       a meter could not read its hardware
        ├── DeviceNotFoundError    a requested device does not exist (no RAPL domain...)
        ├── DeviceLostError        the device vanished mid-run (GPU fell off the bus)
        ├── NotSupportedError      the hardware or driver does not offer this reading
        └── DriverError            any other driver/library failure (NVML unknown error, I/O error)

``ConfigError`` is also a ``ValueError`` so that code written against the standard
library's conventions still catches it.
"""

from __future__ import annotations


class GreenMLError(Exception):
    """Base class of every error greenml raises on purpose."""


class ConfigError(GreenMLError, ValueError):
    """A setting is invalid. The message names the bad value and what would be valid."""


class MeasurementError(GreenMLError):
    """A meter could not read its hardware."""


class DeviceNotFoundError(MeasurementError):
    """A requested device does not exist on this machine."""


class DeviceLostError(MeasurementError):
    """A device disappeared while it was being measured."""


class NotSupportedError(MeasurementError):
    """The hardware or driver does not support this reading."""


class DriverError(MeasurementError):
    """Any other failure of the driver or the kernel interface."""
