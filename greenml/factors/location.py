"""Where a job ran: parse, detect (from cheap local evidence only) and resolve to a grid zone.

Accepted forms:

- ``aws:<region>``, ``gcp:<region>``, ``azure:<region>``: the cloud region, mapped to the
  grid zone it draws from by the shipped ``cloud_regions.csv``;
- an ISO 3166-1 country, alpha-2 (``FR``) or alpha-3 (``FRA``);
- an ISO 3166-2 subdivision or bidding zone with data (``US-CA``, ``CA-QC``, ``CN-BJ``,
  ``SE-3``).

Detection, when no location is given, looks only at the environment: ``GREENML_LOCATION``
(handled by :mod:`greenml.config`), then the cloud SDKs' region variables
(:data:`REGION_ENV`). Nothing is fetched from the network. An unknown or undetectable
location is an error unless ``allow_assumed_location=True``, in which case the world average
is used and flagged ``assumed`` wherever it appears. There is no silent fallback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from greenml.config import PYTHON, Voice
from greenml.errors import ConfigError

PROVIDERS = ("aws", "gcp", "azure")
#: Environment variables the cloud SDKs and runtimes set, in the order they are trusted.
REGION_ENV: tuple[tuple[str, str], ...] = (
    ("AWS_REGION", "aws"),
    ("AWS_DEFAULT_REGION", "aws"),
    ("GOOGLE_CLOUD_REGION", "gcp"),
    ("CLOUDSDK_COMPUTE_REGION", "gcp"),
    ("AZURE_REGION", "azure"),
    ("AZURE_LOCATION", "azure"),
)
_COUNTRY = re.compile(r"^[A-Za-z]{2,3}$")
_ZONE = re.compile(r"^[A-Za-z]{2}-[A-Za-z0-9]{1,3}$")


@dataclass(frozen=True)
class Location:
    """A resolved location: what the user said, and the grid zone it draws from."""

    text: str  # as given, e.g. "aws:us-east-1", "FR"; "" when assumed
    zone: str  # grid zone for the intensity lookup, e.g. "US-VA", "FR", "SE-3"; "WORLD"
    provider: str | None = None  # aws | gcp | azure, for cloud regions
    region: str | None = None
    origin: str = "argument"  # argument, GREENML_LOCATION, AWS_REGION, ...
    assumed: bool = False

    @property
    def is_cloud(self) -> bool:
        return self.provider is not None


def parse(
    text: str, *, origin: str = "argument", regions: Any = None, voice: Voice = PYTHON
) -> Location:
    """Parse a location string; a cloud region must exist in the region table.

    ``origin`` is where the text came from ("argument" for the ``location`` setting,
    whose own source ``voice`` names; else a cloud SDK variable or the metadata service):
    every error names it."""
    if origin == "argument":
        what = voice.given("location", text)
    elif origin in dict(REGION_ENV):
        what = f"{origin}={text.partition(':')[2]!r} (environment variable, read as {text!r})"
    else:
        what = f"location {text!r} from the {origin}"
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{what} is invalid: {_FORMS}")
    s = text.strip()
    if ":" in s:
        provider, _, region = s.partition(":")
        provider = provider.lower()
        if provider not in PROVIDERS:
            raise ConfigError(
                f"{what}: unknown cloud provider {provider!r}; use one of "
                f"{', '.join(p + ':<region>' for p in PROVIDERS)}"
            )
        from greenml.factors.regions import load_cloud_regions, lookup_region

        table = load_cloud_regions() if regions is None else regions
        try:
            row = lookup_region(provider, region.strip().lower(), table)
        except ConfigError as e:
            raise ConfigError(f"{what}: {e}") from None
        return Location(s, row.zone, provider, row.region, origin)
    if _COUNTRY.match(s):
        from greenml.factors.grid import alpha3

        try:
            alpha3(s)
        except ConfigError as e:
            raise ConfigError(f"{what} is not a known country ({e}): {_FORMS}") from None
        return Location(s, s.upper(), origin=origin)
    if _ZONE.match(s):
        return Location(s, s.upper(), origin=origin)
    raise ConfigError(f"{what} is invalid: {_FORMS}")


_FORMS = (
    "give 'aws:<region>', 'gcp:<region>', 'azure:<region>', an ISO 3166-1 country "
    "('FR' or 'FRA') or an ISO 3166-2 subdivision / bidding zone ('US-CA', 'CA-QC', 'SE-3')"
)


def detect(environ: Mapping[str, str] | None = None, *, regions: Any = None) -> Location | None:
    """A location from the cloud SDKs' environment variables, or None."""
    env = os.environ if environ is None else environ
    for var, provider in REGION_ENV:
        value = env.get(var, "").strip()
        if value:
            return parse(f"{provider}:{value}", origin=var, regions=regions)
    return None


def resolve(
    location: str | None,
    *,
    allow_assumed: bool = False,
    environ: Mapping[str, str] | None = None,
    origin: str = "argument",
    regions: Any = None,
    voice: Voice = PYTHON,
) -> Location:
    """The job's location: the given one, else detected, else (only if allowed) assumed."""
    if location is not None:
        return parse(location, origin=origin, regions=regions, voice=voice)
    found = detect(environ, regions=regions)
    if found is not None:
        return found
    if allow_assumed:
        return Location("", "WORLD", origin="assumed", assumed=True)
    if voice.cli:
        raise ConfigError(
            f"the location is unknown, so its grid intensity is too: give "
            f"{voice.set('location', '<place>')}: {_FORMS}. Or give "
            f"{voice.switch('allow_assumed_location')} to use the world average, flagged "
            "as assumed, or give the intensity itself with "
            f"{voice.set('grid_intensity_g_per_kwh', '<g/kWh>')}."
        )
    names = ", ".join(v for v, _ in REGION_ENV)
    raise ConfigError(
        "the job's location is unknown, so its grid intensity is too. Pass "
        f"{voice.set('location', '<place>')} (or set GREENML_LOCATION): {_FORMS}. Cloud SDK "
        f"variables checked: {names}. Or pass {voice.switch('allow_assumed_location')} to "
        "use the world average, flagged as assumed."
    )
