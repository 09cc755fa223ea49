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
from dataclasses import dataclass
from importlib import resources

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


@functools.cache
def load_pue_table() -> dict[tuple[str, str], PueRow]:
    """The shipped PUE table, keyed by (provider, region)."""
    text = resources.files("greenml.factors").joinpath("data/pue.csv").read_text("utf-8")
    rows: dict[tuple[str, str], PueRow] = {}
    for n, row in enumerate(csv.DictReader(text.splitlines()), start=2):
        try:
            r = PueRow(
                row["provider"],
                row["region"],
                float(row["pue"]),
                int(row["year"]),
                row["source"],
                row["licence"],
                row["note"],
            )
        except (KeyError, ValueError) as e:  # pragma: no cover - the shipped file is tested
            raise ConfigError(f"pue.csv row {n}: {e}") from None
        rows[(r.provider, r.region)] = r
    return rows


def default_pue(provider: str | None, region: str | None = None) -> Factor:
    """The PUE to use when the user gave none: the region's if published, else the
    provider's fleet average; ``provider=None`` means own hardware (``onprem``)."""
    key = provider or "onprem"
    if key not in PROVIDERS:
        raise ConfigError(f"no default PUE for provider {provider!r}; known: {PROVIDERS}")
    table = load_pue_table()
    row = table.get((key, region or "*")) or table[(key, "*")]
    return row.factor()


def user_pue(value: float) -> Factor:
    """A PUE the user gave (validated by greenml.config)."""
    return Factor("pue", value, "ratio", source="user-supplied", note="given to greenml")
