"""Choose every factor a run's footprint needs, each with its provenance.

Order of precedence for each factor: what the user gave, then the shipped tables for
the run's location and instance, then nothing (the figure is ``None`` with a flag
saying why). Everything that can be wrong with the inputs is checked here, before the
run starts.

- grid intensity (location-based): ``grid_intensity_g_per_kwh`` > an hourly CSV
  (weighted at the end of the run) > Google's own figure for a GCP region > the grid
  zone of the location (:mod:`greenml.factors.grid`) > the world average, only with
  ``allow_assumed_location`` and flagged ``assumed``;
- market-based: supplier rate or renewable share + residual mix, else equal to
  location-based, labelled so (:func:`greenml.factors.hourly.market_intensity`);
- PUE: the user's, else the provider's fleet average, else the industry average for own
  hardware (:mod:`greenml.factors.pue`);
- price: ``price_usd_per_hour`` > the instance's on-demand price x the share of it the
  job used > ``usd_per_kwh`` for own hardware > none;
- scope: ``scope3-cat1`` for cloud locations, ``scope2`` otherwise (GHG Protocol),
  unless the user says otherwise.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from greenml.config import PYTHON, Settings, Voice
from greenml.errors import ConfigError, warn
from greenml.factors.location import Location
from greenml.factors.provenance import Factor
from greenml.factors.tables import Tables

if TYPE_CHECKING:  # imported where an hourly file is read: most runs have none
    from greenml.factors.hourly import HourlyIntensity

SCOPES = ("scope2", "scope3-cat1")


@dataclass(frozen=True)
class RunFactors:
    """The factors chosen for a run, before its energy is known."""

    location: Location | None
    grid: Factor | None  # location-based; None when an hourly CSV decides at the end
    pue: Factor
    price_per_hour: Factor | None
    price_per_kwh: Factor | None
    gpu_count_on_instance: int | None  # for the job's share of an instance
    share_override: float | None
    scope: str
    tables: Tables
    hourly: HourlyIntensity | None  # read and validated once, weighted at the end
    market: Mapping[str, float | None]
    flags: tuple[str, ...]


def _grid_for(loc: Location, t: Tables, voice: Voice = PYTHON) -> Factor:
    from greenml.factors import grid

    if loc.assumed:
        return grid.world_average().factor()
    if loc.provider == "gcp" and loc.region is not None:
        own = t.gcp_carbon().get(loc.region)
        if own is not None:
            return Factor(
                "grid_intensity",
                own.grid_intensity_g_per_kwh,
                "g/kWh",
                source=own.source,
                year=own.year,
                licence=own.licence,
                note=f"Google's published figure for gcp:{loc.region} (location-based)",
            )
    try:
        factor = grid.zone_intensity(loc.zone, voice=voice).factor()
    except ConfigError as e:
        if loc.origin != "argument":
            raise ConfigError(f"location {loc.text!r} from {loc.origin}: {e}") from None
        raise ConfigError(f"{voice.given('location', loc.text)}: {e}") from None
    if loc.provider is not None:
        note = f"{loc.provider}:{loc.region} draws from grid zone {loc.zone}; {factor.note}"
        factor = Factor(
            factor.name,
            factor.value,
            factor.unit,
            factor.source,
            factor.year,
            factor.licence,
            note,
        )
    return factor


def resolve_run_factors(
    settings: Settings,
    *,
    environ: Mapping[str, str] | None = None,
    voice: Voice = PYTHON,
    missing_price: str = "error",
) -> RunFactors:
    """Resolve and validate the factors ``settings`` call for (the factor settings:
    location, grid intensity, hourly file, PUE, prices, instance, market-based inputs,
    scope, tables; raises :class:`ConfigError` on bad input).

    ``voice`` names the settings in messages the way the user gives them (keywords and
    where each came from, or CLI flags). ``missing_price="warn"`` is for measured runs:
    an instance the price table cannot price warns and leaves the cost ``None``, flagged
    ``no_price`` (measuring is never blocked by a price); ``"error"`` raises."""
    if missing_price not in ("error", "warn"):
        raise ValueError(f"missing_price={missing_price!r}: use 'error' or 'warn'")
    location = settings.location
    allow_assumed_location = settings.allow_assumed_location
    grid_intensity_g_per_kwh = settings.grid_intensity_g_per_kwh
    hourly_intensity_csv = settings.hourly_intensity_csv
    pue, scope = settings.pue, settings.scope
    price_usd_per_hour, usd_per_kwh = settings.price_usd_per_hour, settings.usd_per_kwh
    instance_type, instance_share = settings.instance_type, settings.instance_share
    supplier_g_per_kwh = settings.supplier_g_per_kwh
    renewable_share = settings.renewable_share
    residual_mix_g_per_kwh = settings.residual_mix_g_per_kwh
    tables_dir = settings.tables_dir
    location_from_metadata = settings.location_from_metadata
    metadata_endpoint = settings.metadata_endpoint
    from greenml.factors import location as loc_mod
    from greenml.factors.pue import default_pue, user_pue
    from greenml.factors.tables import tables as make_tables

    t = make_tables(tables_dir, voice=voice)
    t.validate()
    flags: list[str] = [f"user_table:{name}" for name in t.overridden()]
    needs_location = grid_intensity_g_per_kwh is None and hourly_intensity_csv is None
    # the user's region table, read (and checked) above; else None: the shipped one is
    # read only if a cloud region is named
    regions = t.regions() if t.path("regions") is not None else None
    loc: Location | None = loc_mod.detect(environ, regions=regions) if location is None else None
    if location is None and loc is None and location_from_metadata:
        # Opt-in only: ask the cloud's metadata service (short timeout, local endpoint).
        from greenml.factors.metadata import PROVIDERS as META_PROVIDERS
        from greenml.factors.metadata import query_any

        endpoints = {p: metadata_endpoint for p in META_PROVIDERS} if metadata_endpoint else None
        loc = query_any(endpoints=endpoints)
    if loc is None and (location is not None or needs_location):
        loc = loc_mod.resolve(
            location,
            allow_assumed=allow_assumed_location,
            environ=environ,
            regions=regions,
            voice=voice,
        )
    if loc is not None and loc.assumed:
        flags.append("location_assumed")
        warn(
            "the job's location is unknown: its CO2e uses the world-average grid intensity, "
            "flagged location_assumed. For a real figure give "
            f"{voice.set('location', '<place>')}"
            + ("" if voice.cli else " (or GREENML_LOCATION, or the cloud's region variable)")
        )

    grid: Factor | None = None
    hourly: HourlyIntensity | None = None
    if grid_intensity_g_per_kwh is not None:
        grid = Factor(
            "grid_intensity",
            grid_intensity_g_per_kwh,
            "g/kWh",
            source="user-supplied",
            note="given to greenml (location-based)",
        )
    elif hourly_intensity_csv is not None:
        from greenml.factors.hourly import load_hourly_csv

        try:
            hourly = load_hourly_csv(hourly_intensity_csv)
        except ConfigError as e:
            raise ConfigError(
                f"{voice.given('hourly_intensity_csv', hourly_intensity_csv)}: {e}. It should "
                "be a CSV of hourly grid intensity (a time column such as datetime and an "
                "intensity column such as carbon_intensity, in gCO2e/kWh)"
            ) from None
    elif loc is not None:
        grid = _grid_for(loc, t, voice)

    provider = loc.provider if loc is not None else None
    pue_factor = (
        user_pue(pue) if pue is not None else default_pue(provider, table=t.pue(), voice=voice)
    )

    price_hour: Factor | None = None
    price_kwh: Factor | None = None
    gpu_count: int | None = None
    if price_usd_per_hour is not None:
        price_hour = Factor(
            "price",
            price_usd_per_hour,
            "USD/h",
            source="user-supplied",
            note="given to greenml (spot, reserved or negotiated price)",
        )
    elif instance_type is not None:
        from greenml.factors.prices import lookup_price, own_price_advice

        try:
            if provider is None or loc is None or loc.region is None:
                where = f"location {loc.text or loc.zone!r}" if loc is not None else "no location"
                raise ConfigError(
                    f"{voice.given('instance_type', instance_type)} cannot be priced: the "
                    f"instance's price depends on its cloud region, and {where} is not one "
                    f"(give {voice.set('location', 'aws:<region>')}, 'gcp:<region>' or "
                    f"'azure:<region>'). {own_price_advice(voice)}"
                )
            row = lookup_price(
                provider,
                instance_type,
                loc.region,
                pricing=settings.pricing,
                table=t.prices(),
                voice=voice,
            )
        except ConfigError as e:
            if missing_price == "error":
                raise
            warn(f"{e} The run is measured without a cost (cost_usd is None, flagged no_price).")
            flags.append("no_price")
            # the instance's GPUs (for its embodied carbon) do not depend on the region
            same = [
                p.gpu_count
                for p in t.prices()
                if p.provider == provider
                and p.instance_type.lower() == instance_type.strip().lower()
            ]
            gpu_count = same[0] if same else None
        else:
            price_hour = row.factor()
            gpu_count = row.gpu_count
            from greenml.factors.prices import staleness

            if staleness(row, datetime.date.today()) is not None:
                flags.append("stale_price")  # the warning said why
    elif usd_per_kwh is not None:
        price_kwh = Factor(
            "electricity_price",
            usd_per_kwh,
            "USD/kWh",
            source="user-supplied",
            note="electricity for own hardware, applied to facility energy",
        )

    if instance_share is not None and not (0 < instance_share <= 1):
        raise ConfigError(f"{voice.given('instance_share', instance_share)} must be in (0, 1]")
    if scope is not None and scope not in SCOPES:
        raise ConfigError(
            f"{voice.given('scope', scope)} is invalid; use one of {', '.join(SCOPES)}"
        )
    chosen_scope = scope or ("scope3-cat1" if provider is not None else "scope2")

    return RunFactors(
        location=loc,
        grid=grid,
        pue=pue_factor,
        price_per_hour=price_hour,
        price_per_kwh=price_kwh,
        gpu_count_on_instance=gpu_count,
        share_override=instance_share,
        scope=chosen_scope,
        tables=t,
        hourly=hourly,
        market={
            "supplier_g_per_kwh": supplier_g_per_kwh,
            "renewable_share": renewable_share,
            "residual_mix_g_per_kwh": residual_mix_g_per_kwh,
        },
        flags=tuple(flags),
    )
