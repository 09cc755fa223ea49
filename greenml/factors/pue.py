"""Default PUE per provider, with source and year.

PUE (power usage effectiveness) = facility energy / IT energy. A user value always wins; a
value of 1.0 is only ever the user's (a machine whose facility energy is already metered).
Without one, the provider's published fleet average is used (``cloud``), or the Uptime
Institute industry average for own hardware (``onprem``). Rows come from
``data/pue.csv``: provider, region (``*`` = fleet-wide), value, year, source, licence.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from greenml.config import PYTHON, Voice
from greenml.errors import ConfigError
from greenml.factors.csvtable import read_table, rows
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
    # A user's file may start with a byte-order mark (spreadsheets save one).
    return _parse(*read_table(path, "pue.csv", encoding="utf-8-sig"))


@functools.cache
def _shipped() -> dict[tuple[str, str], PueRow]:
    return _parse(*read_table(None, "pue.csv"))


def _parse(label: str, text: str) -> dict[tuple[str, str], PueRow]:
    # Cells are taken as written (not trimmed) and a row may carry extra cells, as before.
    table: dict[tuple[str, str], PueRow] = {}
    for row in rows(label, text, PUE_COLUMNS, strip=False, extra_cells=True):
        if row["provider"] not in PROVIDERS:
            raise row.error(
                "provider", f"is not a known provider; use one of {', '.join(PROVIDERS)}"
            )
        pue = row.number("pue")
        if not 1.0 <= pue < 5.0:
            raise row.error("pue", "must be at least 1.0 and below 5.0")
        year = row.year("year")
        for column in ("region", "source", "licence"):
            row.text(column)
        key = (row["provider"], row["region"])
        if key in table:
            raise row.error("region", f"repeats provider/region {'/'.join(key)}")
        table[key] = PueRow(
            row["provider"], row["region"], pue, year, row["source"], row["licence"], row["note"]
        )
    return table


def default_pue(
    provider: str | None,
    region: str | None = None,
    *,
    table: dict[tuple[str, str], PueRow] | None = None,
    voice: Voice = PYTHON,
) -> Factor:
    """The PUE to use when the user gave none: the region's if published, else the
    provider's fleet average; ``provider=None`` means own hardware (``onprem``). ``voice``
    names the ``pue`` setting in an error the way the user gives it."""
    key = provider or "onprem"
    if key not in PROVIDERS:
        raise ConfigError(
            f"no default PUE for provider {provider!r}; known: {', '.join(PROVIDERS)}"
        )
    rows = load_pue_table() if table is None else table
    row = rows.get((key, region or "*")) or rows.get((key, "*"))
    if row is None:
        raise ConfigError(
            f"the PUE table has no fleet-wide row for {key!r} (provider {key}, region *): add "
            f"one to your pue.csv, or give the PUE with {voice.set('pue', '<ratio>')}"
        )
    return row.factor()


def user_pue(value: float) -> Factor:
    """A PUE the user gave (validated by greenml.config)."""
    return Factor("pue", value, "ratio", source="user-supplied", note="given to greenml")
