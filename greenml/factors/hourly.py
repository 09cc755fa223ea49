"""Time-resolved and market-based grid intensity.

**Hourly intensity.** A CSV of (timestamp, g/kWh) rows, one per hour, weights each
joule by the hour in which it was used. Accepted headers (first match wins):

- greenml's own: ``timestamp``, ``g_per_kwh``;
- Electricity Maps exports: ``Datetime (UTC)`` with ``Carbon Intensity gCO₂eq/kWh (LCA)``
  (lifecycle; preferred) or ``Carbon Intensity gCO₂eq/kWh (direct)``;
- WattTime-style: ``point_time`` with ``value`` (only when its unit is g/kWh: pass
  ``unit="lb/MWh"`` for a marginal-emissions export in pounds per MWh).

Timestamps are ISO 8601; naive ones are taken as UTC. Each row covers
``[timestamp, timestamp + 1 h)``; energy outside every row is an error, never a guess.

**Market-based.** GHG Protocol Scope 2 Guidance (2015): the market-based figure uses the
emission factor of contractual instruments. :func:`market_intensity` takes a supplier's
rate, or a share covered by PPAs/RECs/GOs (counted at zero) with the residual mix for
the rest. Without any, market-based equals location-based, labelled so.
"""

from __future__ import annotations

import bisect
import csv
import itertools
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from greenml.errors import ConfigError
from greenml.factors.provenance import Factor

HOUR_S = 3600.0
_TIME_COLUMNS = ("timestamp", "Datetime (UTC)", "point_time")
_VALUE_COLUMNS = (
    "g_per_kwh",
    "Carbon Intensity gCO₂eq/kWh (LCA)",
    "Carbon Intensity gCO₂eq/kWh (direct)",
    "value",
)
_UNITS = {"g/kWh": 1.0, "kg/MWh": 1.0, "lb/MWh": 0.45359237}


@dataclass(frozen=True)
class HourlyIntensity:
    """Hourly intensities sorted by time (UTC epoch seconds of each hour's start)."""

    starts: tuple[float, ...]
    values: tuple[float, ...]
    source: str
    column: str

    def at(self, t_epoch_s: float) -> float:
        i = bisect.bisect_right(self.starts, t_epoch_s) - 1
        if i < 0 or t_epoch_s >= self.starts[i] + HOUR_S:
            when = datetime.fromtimestamp(t_epoch_s, timezone.utc).isoformat()
            raise ConfigError(
                f"{self.source}: no hourly intensity for {when}; the file covers "
                f"{_iso(self.starts[0])} to {_iso(self.starts[-1] + HOUR_S)}"
            )
        return self.values[i]

    def weighted(self, intervals: list[tuple[float, float, float]]) -> float:
        """Energy-weighted mean intensity (g/kWh) of ``(start_epoch_s, end_epoch_s,
        joules)`` intervals, each spread evenly over its duration and split at hours."""
        total_j = 0.0
        grams_per_kwh_j = 0.0
        for a, b, joules in intervals:
            if b <= a or joules <= 0:
                continue
            rate = joules / (b - a)
            t = a
            while t < b:
                hour_end = math.floor(t / HOUR_S) * HOUR_S + HOUR_S
                end = min(b, hour_end)
                j = rate * (end - t)
                grams_per_kwh_j += self.at(t) * j
                total_j += j
                t = end
        if total_j == 0:
            raise ConfigError("no energy to weight by the hourly intensity")
        return grams_per_kwh_j / total_j

    def factor(self, value: float, year: int | None = None) -> Factor:
        return Factor(
            "grid_intensity",
            value,
            "g/kWh",
            source=f"hourly intensity file {self.source} (column {self.column!r})",
            year=year,
            licence="user-supplied data",
            note="energy-weighted by the hour of use",
        )


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat()


def _parse_time(text: str, where: str) -> float:
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not an ISO 8601 timestamp") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def load_hourly_csv(path: str | Path, *, unit: str = "g/kWh") -> HourlyIntensity:
    """Read an hourly intensity CSV (see the module docstring for the formats)."""
    if unit not in _UNITS:
        raise ConfigError(f"hourly intensity unit {unit!r} is unknown; use one of {list(_UNITS)}")
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise ConfigError(f"{str(p)!r} cannot be read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{str(p)!r} cannot be read: not UTF-8 text ({e})") from None
    reader = csv.DictReader(text.splitlines())
    header = reader.fieldnames or []
    tcol = next((c for c in _TIME_COLUMNS if c in header), None)
    vcol = next((c for c in _VALUE_COLUMNS if c in header), None)
    if tcol is None or vcol is None:
        raise ConfigError(
            f"{p}: needs a time column ({' or '.join(_TIME_COLUMNS)}) and an intensity column "
            f"({' or '.join(_VALUE_COLUMNS)}); found {header}"
        )
    scale = _UNITS[unit]
    rows: list[tuple[float, float]] = []
    for n, row in enumerate(reader, start=2):
        where = f"{p}, row {n}"
        t = _parse_time(row.get(tcol) or "", f"{where}, column {tcol!r}")
        raw = (row.get(vcol) or "").strip()
        try:
            v = float(raw)
        except ValueError:
            raise ConfigError(f"{where}, column {vcol!r}: {raw!r} is not a number") from None
        if not math.isfinite(v) or v < 0:
            raise ConfigError(f"{where}, column {vcol!r}: {raw!r} must be a number >= 0")
        rows.append((t, v * scale))
    if not rows:
        raise ConfigError(f"{p}: no rows")
    rows.sort()
    for (t0, _), (t1, _) in itertools.pairwise(rows):
        if t1 == t0:
            raise ConfigError(f"{p}: two rows for {_iso(t0)}")
    return HourlyIntensity(tuple(t for t, _ in rows), tuple(v for _, v in rows), str(p), vcol)


def market_intensity(
    location_based: Factor,
    *,
    supplier_g_per_kwh: float | None = None,
    renewable_share: float | None = None,
    residual_mix_g_per_kwh: float | None = None,
) -> Factor:
    """The market-based factor (GHG Protocol Scope 2 Guidance, 2015).

    - ``supplier_g_per_kwh``: the supplier-specific emission rate of a contract;
    - ``renewable_share`` (0..1) covered by PPAs, RECs or GOs, counted at zero, with
      ``residual_mix_g_per_kwh`` for the uncovered rest (the location-based factor if no
      residual mix is given, which the note says).

    With none of them, the location-based factor, labelled as such.
    """
    if supplier_g_per_kwh is not None and renewable_share is not None:
        raise ConfigError(
            "give either supplier_g_per_kwh or renewable_share (+ residual mix), not both"
        )
    for name, value in (
        ("supplier_g_per_kwh", supplier_g_per_kwh),
        ("residual_mix_g_per_kwh", residual_mix_g_per_kwh),
    ):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{name}={value!r} must be a number >= 0")
    if supplier_g_per_kwh is not None:
        return Factor(
            "market_intensity",
            supplier_g_per_kwh,
            "g/kWh",
            source="user-supplied supplier-specific emission rate",
            note="market-based (GHG Protocol Scope 2 Guidance, 2015)",
        )
    if renewable_share is not None:
        if not (0.0 <= renewable_share <= 1.0):
            raise ConfigError(f"renewable_share={renewable_share!r} must be between 0 and 1")
        residual = residual_mix_g_per_kwh
        note = f"{renewable_share:.0%} covered by contractual instruments at 0 g/kWh"
        if residual is None:
            residual = location_based.value
            note += "; the rest at the location-based factor (no residual mix given)"
        else:
            note += "; the rest at the user-supplied residual mix"
        return Factor(
            "market_intensity",
            (1.0 - renewable_share) * residual,
            "g/kWh",
            source="user-supplied contractual instruments",
            note=note + " (GHG Protocol Scope 2 Guidance, 2015)",
        )
    return Factor(
        "market_intensity",
        location_based.value,
        "g/kWh",
        source=location_based.source,
        year=location_based.year,
        licence=location_based.licence,
        note="no contractual instruments configured: market-based equals location-based",
    )
