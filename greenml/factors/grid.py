"""Location-based grid carbon intensity, from CodeCarbon's shipped data.

CodeCarbon's tables are read from the files its wheel ships, the ones its ``DataSource``
reads, not re-typed, and without importing its package (which loads pandas and probes the
GPUs; :mod:`greenml.factors.codecarbon_data`):

=============================  =========================================================
zone                           table (CodeCarbon ``data/private_infra``)
=============================  =========================================================
country (``FR``, ``FRA``)      ``global_energy_mix.json``: Our World in Data / Ember
                               carbon intensity of electricity (lifecycle), per country
US state (``US-VA``)           ``2023/usa_emissions.json``: EPA eGRID2023 state output
                               emission rate (combustion only), lb/MWh converted to g/kWh
Canadian province (``CA-QC``)  ``2023/canada_energy_mix.json``: generation mix; fossil
                               shares x CodeCarbon's per-source factors (combustion only)
Nordic bidding zone            ``nordic_emissions.json``: ENTSO-E 2025 generation mix x
(``SE-3``, ``NO-1``)           lifecycle factors per source
Chinese province (``CN-BJ``)   ``2023/china_provincial_emissions.json``: MEE/NBS official
                               2023 provincial factors (CO2 only)
world average                  ``carbon_intensity_per_source.json`` ``world_average``
=============================  =========================================================

Each figure comes back as a :class:`GridFactor` with its value, unit, zone, year,
source, licence and basis (``lifecycle`` or ``combustion``), so every CO2e number can be
traced to it. A zone with no data raises :class:`~greenml.errors.ConfigError`; nothing
here guesses. Importing CodeCarbon costs ~0.2 s and its first data access loads its
tables (pandas included), so this module is imported only when a factor is needed.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Literal

from greenml.config import PYTHON, Voice
from greenml.errors import ConfigError
from greenml.factors.provenance import Factor

G_PER_KWH_PER_LB_PER_MWH = 0.45359237  # 1 lb/MWh = 453.59237 g / 1000 kWh
Basis = Literal["lifecycle", "combustion"]

CODECARBON_LICENCE = "CodeCarbon data: MIT"
_NORDIC = re.compile(r"^(SE)-([1-4])$|^(NO)-([1-5])$")


@dataclass(frozen=True)
class GridFactor:
    """One grid carbon intensity and where it came from."""

    zone: str
    g_per_kwh: float
    year: int | None
    source: str
    licence: str
    basis: Basis
    assumed: bool = False
    note: str = ""

    def factor(self) -> Factor:
        note = f"zone {self.zone}; {self.basis}"
        if self.assumed:
            note += "; ASSUMED (location unknown): world average"
        if self.note:
            note += f"; {self.note}"
        return Factor(
            "grid_intensity",
            self.g_per_kwh,
            "g/kWh",
            source=self.source,
            year=self.year,
            licence=self.licence,
            note=note,
        )


@functools.cache
def _data() -> Any:
    """CodeCarbon's data files, read directly (not through its package, which imports
    pandas): the same files and getters as its ``DataSource``."""
    from greenml.factors.codecarbon_data import DataFiles

    return DataFiles()


def _codecarbon_version() -> str:
    from greenml.factors.codecarbon_data import version

    return version()


def _cc(path: str) -> str:
    return f"CodeCarbon {_codecarbon_version()} {path}"


def alpha3(country: str) -> str:
    """ISO 3166-1 alpha-3 for an alpha-2 or alpha-3 code (case-insensitive)."""
    code = country.strip().upper()
    known = _iso3166_alpha3(code)
    if known is not None:
        return known
    import pycountry  # an unusual code, or a layout we do not know: ask pycountry

    found = pycountry.countries.get(alpha_2=code) if len(code) == 2 else None
    if found is None and len(code) == 3:
        found = pycountry.countries.get(alpha_3=code)
    if found is None:
        codes = [c.alpha_2 for c in pycountry.countries] + [c.alpha_3 for c in pycountry.countries]
        import difflib  # only for an error's hint

        close = difflib.get_close_matches(code, codes, n=4, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"{country!r} is not an ISO 3166-1 country code (alpha-2 such as 'FR' "
            f"or alpha-3 such as 'FRA'){hint}"
        )
    return str(found.alpha_3)


@functools.cache
def _iso3166_alpha3(code: str) -> str | None:
    """The alpha-3 code of a country found in pycountry's ``iso3166-1.json`` by its upper
    case alpha-2 or alpha-3 ``code``, read as text without importing pycountry (whose
    import and database load cost ~50 ms, half a run's start); None when not found this
    way (:func:`alpha3` then asks pycountry, which has the last word)."""
    if not re.fullmatch(r"[A-Z]{2,3}", code):
        return None
    import importlib.util

    spec = importlib.util.find_spec("pycountry")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        try:
            with open(f"{folder}/databases/iso3166-1.json", encoding="utf-8") as f:
                text = f.read()
        except OSError:
            continue
        # entries are written with sorted keys: "alpha_2": "FR", "alpha_3": "FRA", ...
        if len(code) == 2:
            pattern = rf'"alpha_2":\s*"{code}",\s*"alpha_3":\s*"([A-Z]{{3}})"'
        else:
            pattern = rf'"alpha_2":\s*"[A-Z]{{2}}",\s*"alpha_3":\s*"({code})"'
        found = re.findall(pattern, text)
        return found[0] if len(found) == 1 else None
    return None


def country_intensity(country: str, *, voice: Voice = PYTHON) -> GridFactor:
    """The country's grid intensity (Our World in Data / Ember, lifecycle)."""
    a3 = alpha3(country)
    row = _data().get_global_energy_mix_entry(a3)
    if row is None or row.get("carbon_intensity") is None:
        raise ConfigError(
            f"no grid intensity for country {country!r} ({a3}) in CodeCarbon's "
            f"global_energy_mix.json; give it from a source of your own with "
            f"{voice.set('grid_intensity_g_per_kwh', '<g/kWh>')}"
        )
    return GridFactor(
        zone=a3,
        g_per_kwh=float(row["carbon_intensity"]),
        year=int(row["year"]) if row.get("year") else None,
        source=_cc("global_energy_mix.json") + " (Our World in Data, from Ember)",
        licence="CC BY 4.0 (Our World in Data / Ember); " + CODECARBON_LICENCE,
        basis="lifecycle",
    )


def us_state_intensity(state: str) -> GridFactor:
    """A US state's eGRID output emission rate (combustion only)."""
    data = _data().get_country_emissions_data("usa")
    meta = data.get("_source", {})
    code = state.upper()
    for name, row in data.items():
        if name.startswith("_") or row.get("regionCode", "").upper() != code:
            continue
        return GridFactor(
            zone=f"US-{code}",
            g_per_kwh=float(row["emissions"]) * G_PER_KWH_PER_LB_PER_MWH,
            year=meta.get("year"),
            source=_cc("2023/usa_emissions.json")
            + f" ({meta.get('name', 'EPA eGRID')}, field {meta.get('field', '?')})",
            licence="US EPA eGRID: US government work, public domain; " + CODECARBON_LICENCE,
            basis="combustion",
            note=f"{name.title()}; converted from {row['emissions']} lb/MWh",
        )
    codes = sorted(
        f"US-{row['regionCode']}" for name, row in data.items() if not name.startswith("_")
    )
    import difflib  # only for an error's hint

    close = difflib.get_close_matches(f"US-{code}", codes, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"valid: {', '.join(codes)}"
    raise ConfigError(f"no eGRID figure for US state {state!r} (US-{code}); {hint}")


# CodeCarbon's per-source factors (carbon_intensity_per_source.json) for the fossil
# sources of Canada's mix table; the other sources count as zero, as CodeCarbon does.
_CANADA_FOSSIL = {"coal": "coal", "petroleum": "petroleum", "naturalGas": "natural_gas"}


def canada_province_intensity(province: str) -> GridFactor:
    """A Canadian province's intensity from its generation mix (fossil combustion only)."""
    import pycountry

    code = f"CA-{province.upper()}"
    sub = pycountry.subdivisions.get(code=code)
    if sub is None:
        raise ConfigError(f"{code!r} is not a Canadian province or territory code")
    mix = _data().get_country_energy_mix_data("can")
    row = mix.get(sub.name.lower())
    if row is None:
        raise ConfigError(f"no generation mix for {sub.name} ({code}) in CodeCarbon's data")
    per_source = _data().get_carbon_intensity_per_source_data()
    value = sum(
        row.get(key, 0.0) / row["total"] * per_source[src] for key, src in _CANADA_FOSSIL.items()
    )
    return GridFactor(
        zone=code,
        g_per_kwh=value,
        year=2023,
        source=_cc("2023/canada_energy_mix.json")
        + " generation mix x carbon_intensity_per_source.json (coal, petroleum, natural gas)",
        licence=CODECARBON_LICENCE,
        basis="combustion",
        note=f"{sub.name}; non-fossil sources counted at 0",
    )


def nordic_intensity(zone: str) -> GridFactor:
    """A Swedish or Norwegian bidding zone (``SE-1``..``SE-4``, ``NO-1``..``NO-5``)."""
    m = _NORDIC.match(zone.upper())
    if m is None:
        raise ConfigError(f"{zone!r} is not a Nordic bidding zone (SE-1..SE-4, NO-1..NO-5)")
    key = "".join(g for g in m.groups() if g)
    table = _data().get_nordic_country_energy_mix_data()
    row = table["data"][key]
    return GridFactor(
        zone=zone.upper(),
        g_per_kwh=float(row["emission_factor"]),
        year=int(row["year"]),
        source=_cc("nordic_emissions.json") + f" ({table['metadata']['source']})",
        licence=CODECARBON_LICENCE + "; derived from ENTSO-E Transparency Platform data",
        basis="lifecycle",
        note=row.get("description", ""),
    )


def china_province_intensity(code: str) -> GridFactor:
    """A Chinese province (``CN-BJ``...): the official MEE/NBS 2023 factor (CO2 only)."""
    table = _data().get_china_provincial_emissions_data()
    row = table["data"].get(code.upper())
    if row is None:
        raise ConfigError(
            f"no official provincial factor for {code!r}; the MEE/NBS table covers "
            f"{', '.join(sorted(table['data']))}"
        )
    meta = table["metadata"]
    return GridFactor(
        zone=code.upper(),
        g_per_kwh=float(row["emission_factor"]),
        year=int(row["year"]),
        source=_cc("2023/china_provincial_emissions.json") + f" ({meta['source']})",
        licence="official statistics of the PRC MEE/NBS; " + CODECARBON_LICENCE,
        basis="combustion",
        note=row.get("description", "") + "; CO2 only",
    )


def world_average() -> GridFactor:
    """The world average, for an explicitly allowed unknown location (flagged assumed)."""
    per_source = _data().get_carbon_intensity_per_source_data()
    return GridFactor(
        zone="WORLD",
        g_per_kwh=float(per_source["world_average"]),
        year=2018,
        source=_cc("carbon_intensity_per_source.json")
        + f" world_average ({per_source.get('world_average_source', 'IEA')})",
        licence=CODECARBON_LICENCE,
        basis="lifecycle",
        assumed=True,
    )


def zone_intensity(zone: str, *, voice: Voice = PYTHON) -> GridFactor:
    """The intensity of a grid zone: a country, or a subdivision/bidding zone with data.

    ``voice`` names the settings in the advice of an error the way the user gives them
    (``location='DE'``, ``--location DE``, or ``--zone DE`` for ``greenml tables show``)."""
    z = zone.strip().upper()
    if ":" in z:
        raise ConfigError(
            f"{zone!r} is a cloud region, not a grid zone: the region table maps it to the "
            "zone it draws from (greenml tables show regions)"
        )
    if _NORDIC.match(z):
        return nordic_intensity(z)
    if "-" in z:
        country, _, sub = z.partition("-")
        if country == "US":
            return us_state_intensity(sub)
        if country == "CA":
            return canada_province_intensity(sub)
        if country == "CN":
            return china_province_intensity(z)
        raise ConfigError(
            f"no sub-national grid data for {zone!r}; give the country "
            f"({voice.set('location', repr(country) if not voice.cli else country)}) or a "
            "zone with data: US states (US-CA), Canadian provinces (CA-QC), Chinese "
            "provinces (CN-BJ), Swedish/Norwegian bidding zones (SE-3, NO-1)"
        )
    return country_intensity(z, voice=voice)
