"""Default PUE per provider, with source and year.

PUE (power usage effectiveness) = facility energy / IT energy. A user value always wins; a
value of 1.0 is only ever the user's (a machine whose facility energy is already metered).
Without one, the provider's published fleet average is used (``cloud``), or the Uptime
Institute industry average for own hardware (``onprem``). Rows come from
``data/pue.csv``: provider, region (``*`` = fleet-wide), value, year, source, licence.
"""

from __future__ import annotations

import csv
import functools
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from greenml.errors import ConfigError
from greenml.factors.provenance import Factor

PROVIDERS = ("aws", "gcp", "azure", "onprem")


@dataclass(frozen=True)
class PueRow:
    provider: str
    region: str
    pue: float
    year: int
    source: str
    licence: str
    note: str

    def factor(self) -> Factor:
        where = "fleet average" if self.region == "*" else f"region {self.region}"
        return Factor(
            "pue",
            self.pue,
            "ratio",
            source=self.source,
            year=self.year,
            licence=self.licence,
            note=f"default for {self.provider} ({where}); {self.note}",
        )


PUE_COLUMNS = ("provider", "region", "pue", "year", "source", "licence", "note")


def load_pue_table(path: str | os.PathLike[str] | None = None) -> dict[tuple[str, str], PueRow]:
    """The PUE table keyed by (provider, region): the shipped one, or a user CSV with the
    same columns. Errors name the file, the row (header = 1) and the column."""
    if path is None:
        return dict(_shipped())
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise ConfigError(f"PUE table {str(p)!r} cannot be read: {e}") from None
    return _parse(text, str(p))


@functools.cache
def _shipped() -> dict[tuple[str, str], PueRow]:
    text = resources.files("greenml.factors").joinpath("data/pue.csv").read_text("utf-8")
    return _parse(text, "pue.csv (shipped)")


def _parse(text: str, label: str) -> dict[tuple[str, str], PueRow]:
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in PUE_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ConfigError(f"{label}: missing column(s) {missing}; needs {list(PUE_COLUMNS)}")
    rows: dict[tuple[str, str], PueRow] = {}
    for n, row in enumerate(reader, start=2):

        def bad(column: str, why: str, n: int = n, row: dict[str, str] = row) -> ConfigError:
            return ConfigError(f"{label}, row {n}, column {column!r}: {row.get(column)!r} {why}")

        if row["provider"] not in PROVIDERS:
            raise bad("provider", f"is not one of {PROVIDERS}")
        try:
            pue = float(row["pue"])
        except ValueError:
            raise bad("pue", "is not a number") from None
        if not 1.0 <= pue < 5.0:
            raise bad("pue", "must be between 1.0 and 5.0")
        try:
            year = int(row["year"])
        except ValueError:
            raise bad("year", "is not a year") from None
        for column in ("region", "source", "licence"):
            if not (row[column] or "").strip():
                raise bad(column, "is empty")
        key = (row["provider"], row["region"])
        if key in rows:
            raise bad("region", f"repeats provider/region {key}")
        rows[key] = PueRow(
            row["provider"],
            row["region"],
            pue,
            year,
            row["source"],
            row["licence"],
            row["note"] or "",
        )
    return rows


def default_pue(
    provider: str | None,
    region: str | None = None,
    *,
    table: dict[tuple[str, str], PueRow] | None = None,
) -> Factor:
    """The PUE to use when the user gave none: the region's if published, else the
    provider's fleet average; ``provider=None`` means own hardware (``onprem``)."""
    key = provider or "onprem"
    if key not in PROVIDERS:
        raise ConfigError(f"no default PUE for provider {provider!r}; known: {PROVIDERS}")
    rows = load_pue_table() if table is None else table
    row = rows.get((key, region or "*")) or rows.get((key, "*"))
    if row is None:
        raise ConfigError(f"the PUE table has no fleet-wide ('*') row for {key!r}")
    return row.factor()


def user_pue(value: float) -> Factor:
    """A PUE the user gave (validated by greenml.config)."""
    return Factor("pue", value, "ratio", source="user-supplied", note="given to greenml")
