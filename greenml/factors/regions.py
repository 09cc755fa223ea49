"""Cloud regions -> the grid zone they draw from, and Google's own per-region figures.

Two shipped tables, both plain CSV read with :mod:`csv` (no pandas):

``data/cloud_regions.csv``
    ``provider,region,name,country,zone,city,source,source_year,licence,note``: every public
    AWS, Azure and GCP region we could confirm, mapped to an ISO 3166-2 subdivision or bidding
    zone where greenml has a sub-national factor for it (``US-VA``, ``CA-QC``, ``CN-NX``,
    ``SE-3``...), otherwise to the ISO 3166-1 country. AWS and Azure publish no open
    per-region factors, so the zone is how their regions get a grid intensity.

``data/gcp_region_carbon.csv``
    ``region,year,grid_intensity_g_per_kwh,cfe_percent,source,licence``: the yearly,
    location-based grid intensity and carbon-free-energy share that Google publishes per GCP
    region (GoogleCloudPlatform/region-carbon-info, Apache-2.0).

Users may pass their own table with the same columns; every loader error names the file,
the row number (the header is row 1) and the column. The shipped tables are read once and
cached; callers get a fresh ``dict`` each time, holding frozen rows.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass

from greenml.errors import ConfigError
from greenml.factors.csvtable import read_table, rows

PROVIDERS = ("aws", "azure", "gcp")

REGION_COLUMNS = (
    "provider",
    "region",
    "name",
    "country",
    "zone",
    "city",
    "source",
    "source_year",
    "licence",
    "note",
)
#: Columns that may be left empty: the city is not always disclosed; the note is optional.
_OPTIONAL = frozenset({"city", "note"})

GCP_CARBON_COLUMNS = (
    "region",
    "year",
    "grid_intensity_g_per_kwh",
    "cfe_percent",
    "source",
    "licence",
)

_SHIPPED_REGIONS = "cloud_regions.csv"
_SHIPPED_GCP_CARBON = "gcp_region_carbon.csv"

_COUNTRY = re.compile(r"^[A-Z]{2}$")
#: ISO 3166-2 subdivision (US-VA, CN-NX) or a bidding zone of the same shape (SE-3, DK-2).
_ZONE = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")


@dataclass(frozen=True)
class CloudRegion:
    """One cloud region and the grid zone its data centres draw from."""

    provider: str  # aws | azure | gcp
    region: str  # the API id: us-east-1, eastus, europe-west4
    name: str  # the provider's display name
    country: str  # ISO 3166-1 alpha-2
    zone: str  # grid zone: ISO 3166-2 subdivision / bidding zone, or the country
    city: str  # "" when the provider does not disclose it
    source: str
    source_year: int
    licence: str
    note: str = ""


@dataclass(frozen=True)
class GcpRegionCarbon:
    """Google's published yearly figures for one GCP region."""

    region: str
    year: int
    grid_intensity_g_per_kwh: float  # location-based, gCO2e/kWh
    cfe_percent: float  # Google's hourly carbon-free-energy share, 0..100
    source: str
    licence: str


# ---------------------------------------------------------------- cloud regions


def _parse_regions(label: str, text: str) -> dict[tuple[str, str], CloudRegion]:
    table: dict[tuple[str, str], CloudRegion] = {}
    first_seen: dict[tuple[str, str], int] = {}
    for row in rows(label, text, REGION_COLUMNS):
        for column in REGION_COLUMNS:
            if column not in _OPTIONAL and column != "source_year":
                row.text(column)
        provider = row["provider"].lower()
        if provider not in PROVIDERS:
            raise row.error(
                "provider", f"is not a known provider; use one of {', '.join(PROVIDERS)}"
            )
        country = row["country"]
        if not _COUNTRY.match(country):
            raise row.error(
                "country",
                "is not an ISO 3166-1 alpha-2 code (two capital letters, e.g. 'US', 'FR')",
            )
        zone = row["zone"]
        if not _ZONE.match(zone):
            raise row.error(
                "zone",
                "does not look like an ISO code; give the country ('FR') or a subdivision / "
                "bidding zone ('US-VA', 'CA-QC', 'SE-3')",
            )
        if zone[:2] != country:
            raise row.error("zone", f"is not in country {country!r}")
        year = row.year("source_year")
        key = (provider, row["region"])
        if key in table:
            raise row.error(
                "region", f"is a duplicate {provider} region (first at row {first_seen[key]})"
            )
        first_seen[key] = row.n
        table[key] = CloudRegion(
            provider=provider,
            region=row["region"],
            name=row["name"],
            country=country,
            zone=zone,
            city=row["city"],
            source=row["source"],
            source_year=year,
            licence=row["licence"],
            note=row["note"],
        )
    return table


@functools.cache
def _shipped_regions() -> dict[tuple[str, str], CloudRegion]:
    return _parse_regions(*read_table(None, _SHIPPED_REGIONS))


def load_cloud_regions(
    path: str | os.PathLike[str] | None = None,
) -> dict[tuple[str, str], CloudRegion]:
    """The region table keyed by ``(provider, region)``: the shipped one, or a user CSV with
    the same columns (:data:`REGION_COLUMNS`)."""
    if path is None:
        return dict(_shipped_regions())
    return _parse_regions(*read_table(path, _SHIPPED_REGIONS))


def lookup_region(
    provider: str, region: str, table: dict[tuple[str, str], CloudRegion]
) -> CloudRegion:
    """The row for ``provider:region``; an unknown region is an error naming the closest ids."""
    p = provider.strip().lower()
    row = table.get((p, region))
    if row is not None:
        return row
    known = sorted(r for (prov, r) in table if prov == p)
    if not known:
        providers = sorted({prov for prov, _ in table})
        raise ConfigError(
            f"unknown cloud provider {provider!r}; the region table has {', '.join(providers)}"
        )
    import difflib  # only for an error's hint

    close = difflib.get_close_matches(region, known, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    raise ConfigError(
        f"unknown {p} region {region!r}; {hint}"
        f"(greenml tables show regions --provider {p} lists them)"
    )


# ---------------------------------------------------------------- GCP carbon


def _parse_gcp_carbon(label: str, text: str) -> dict[str, GcpRegionCarbon]:
    table: dict[str, GcpRegionCarbon] = {}
    first_seen: dict[str, int] = {}
    for row in rows(label, text, GCP_CARBON_COLUMNS):
        for column in ("region", "source", "licence"):
            row.text(column)
        year = row.year("year")
        intensity = row.number("grid_intensity_g_per_kwh", non_negative=True)
        cfe = row.number("cfe_percent", bounds=(0, 100))
        region = row["region"]
        if region in table:
            raise row.error("region", f"is a duplicate region (first at row {first_seen[region]})")
        first_seen[region] = row.n
        table[region] = GcpRegionCarbon(
            region=region,
            year=year,
            grid_intensity_g_per_kwh=intensity,
            cfe_percent=cfe,
            source=row["source"],
            licence=row["licence"],
        )
    return table


@functools.cache
def _shipped_gcp_carbon() -> dict[str, GcpRegionCarbon]:
    return _parse_gcp_carbon(*read_table(None, _SHIPPED_GCP_CARBON))


def load_gcp_region_carbon(
    path: str | os.PathLike[str] | None = None,
) -> dict[str, GcpRegionCarbon]:
    """Google's per-region grid intensity and CFE%, keyed by GCP region: the shipped table,
    or a user CSV with the same columns (:data:`GCP_CARBON_COLUMNS`)."""
    if path is None:
        return dict(_shipped_gcp_carbon())
    return _parse_gcp_carbon(*read_table(path, _SHIPPED_GCP_CARBON))
