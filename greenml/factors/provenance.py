"""The provenance record every factor carries."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Factor:
    """One conversion factor and where it came from."""

    name: str  # e.g. "pue", "grid_intensity", "price"
    value: float
    unit: str  # e.g. "g/kWh", "USD/h", "ratio"
    source: str
    year: int | None = None
    licence: str | None = None
    note: str = ""
    as_of: str | None = None  # ISO date the figure was read (prices)
    basis: str | None = None  # what kind of figure: "on-demand" or "spot" for a price
