"""The runs of a period -> the Summary: one JSON-ready dict that every format renders.

The figures are the runs' own, as greenml logged them (their latest metric values are their
totals; a multi-host job's are the job's). greenml's tables add what a disclosure needs and a
run does not carry: each zone's emission-factor basis and licence, its generation mix for
ESRS E1-5, and the lowest-intensity region of each cloud for the what-if. Nothing is
estimated silently: an unknown figure stays ``None`` and the runs concerned are listed
under data quality.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from greenml import schema
from greenml._version import __version__
from greenml.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

SCHEMA_VERSION = 1
TOP = 10
GROUPS = ("experiment", "month", "location", "gpu_model", "user")
SCOPE_LABELS = {
    "scope2": "Scope 2 (own or colocated hardware)",
    "scope3-cat1": "Scope 3 Category 1 (cloud services)",
}
BASIS_LABELS = {
    "lifecycle": "lifecycle factors (country averages: Ember / Our World in Data, via CodeCarbon)",
    "combustion": "combustion-only factors (US states: EPA eGRID; Chinese provinces; "
    "Canadian provinces; Google's operational figures for its regions)",
    "unknown": "no factor (location unknown or not in greenml's tables)",
}
BASIS_NOTE = (
    "Location-based CO2e is shown by emission-factor basis and never added across bases "
    "without saying so. A GHG Protocol Scope 2 inventory expects the grid's average "
    "emission factors, commonly combustion-only (direct) ones; lifecycle factors also count "
    "upstream emissions (fuel supply, plant construction) and are higher. The total above "
    "adds both, as the runs were measured; report the split where the inventory asks for "
    "one basis."
)
UNCERTAINTY = (
    "Energy read from GPU energy counters ('counter') is within 0.5 % of the hardware's own "
    "accounting. GPUs without a counter ('sampled') are integrated from power readings; "
    "each run's footprint.json states the range the energy lies in. CPU and RAM energy "
    "without RAPL counters, and any 'estimated' device, come from power models (TDP x load, "
    "W per GB) and can be off by tens of percent. Grid intensities are annual averages of "
    "the zone; PUE is the provider's published figure or an industry average."
)
WHAT_IF_NOTE = (
    "HYPOTHETICAL. The same facility energy in the lowest-intensity region the run's cloud "
    "provider offers in greenml's tables, at that region's grid intensity; with the price "
    "difference where the instance is priced in both regions. Not a measured figure: "
    "latency, data residency and availability may rule the region out."
)


def summarize(
    runs: pd.DataFrame,
    *,
    group_by: str = "experiment",
    organisation: str | None = None,
    include_simulated: bool = False,
    generated: dt.datetime | None = None,
) -> dict[str, Any]:
    """The Summary of ``runs`` (from :func:`greenml.report.load_runs`); see the module
    docstring. ``group_by`` is one of ``experiment``, ``month``, ``location``,
    ``gpu_model``, ``user`` or ``tag:<key>``."""
    if group_by not in GROUPS and not (group_by.startswith("tag:") and len(group_by) > 4):
        raise ConfigError(
            f"--group-by {group_by!r} is invalid: use one of {', '.join(GROUPS)} or tag:<key>"
        )
    records = [_run(row, group_by) for row in runs.to_dict("records")]
    for r in records:
        r["included"] = r["has_greenml"] and (include_simulated or not r["simulated"])
    inc = [r for r in records if r["included"]]
    generated = generated or dt.datetime.now(dt.timezone.utc)
    attrs = runs.attrs
    return {
        "schema_version": SCHEMA_VERSION,
        "header": {
            "organisation": organisation,
            "period": {"since": attrs.get("since"), "until": attrs.get("until")},
            "generated_utc": generated.isoformat(timespec="seconds"),
            "greenml_version": __version__,
            "tracking_uri": attrs.get("tracking_uri"),
            "experiments": list(attrs.get("experiments") or []),
            "runs": len(inc),
            "runs_considered": len(records),
            "inputs_sha256": _inputs_hash(inc),
            "group_by": group_by,
            "include_simulated": include_simulated,
        },
        "totals": _totals(inc),
        "esrs_e1_5": _energy_mix(inc),
        "scopes": [
            {"scope": scope, "label": label, **_figures([r for r in inc if r["scope"] == scope])}
            for scope, label in SCOPE_LABELS.items()
        ],
        "basis": [
            {"basis": basis, "label": label, **_figures([r for r in inc if r["basis"] == basis])}
            for basis, label in BASIS_LABELS.items()
            if any(r["basis"] == basis for r in inc)
        ],
        "basis_note": BASIS_NOTE,
        "groups": _groups(inc),
        "months": _months(inc),
        "top_co2e": _top(inc, "co2e_kg"),
        "top_cost": _top(inc, "cost_usd"),
        "data_quality": _quality(records, inc, include_simulated),
        "what_if": _what_if(inc),
        "what_if_note": WHAT_IF_NOTE,
        "sources": _sources(inc),
        "runs": [_public(r) for r in records],
    }


# -- one run ------------------------------------------------------------------------------


def _num(row: Mapping[str, Any], key: str) -> float | None:
    value = row.get(key)
    if value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if x != x else x  # NaN (a column other runs have): unknown


def _text(row: Mapping[str, Any], key: str) -> str | None:
    value = row.get(key)
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value)
    return None if text in ("", schema.NA) else text


def _run(row: Mapping[str, Any], group_by: str) -> dict[str, Any]:
    start_ms = _num(row, "start_ms")
    start = (
        dt.datetime.fromtimestamp(start_ms / 1000, tz=dt.timezone.utc)
        if start_ms is not None
        else None
    )
    location = _text(row, schema.PARAM_LOCATION)
    zone = _zone(location)
    gpus = _num(row, schema.PARAM_GPU_COUNT)
    duration = _num(row, schema.METRIC_DURATION_S)
    parts = [
        _num(row, m)
        for m in (
            schema.METRIC_GPU_ENERGY_KWH,
            schema.METRIC_CPU_ENERGY_KWH,
            schema.METRIC_RAM_ENERGY_KWH,
        )
    ]
    measurement = _text(row, schema.TAG_MEASUREMENT)
    r: dict[str, Any] = {
        "run_id": str(row.get("run_id")),
        "run_name": _text(row, "run_name") or "",
        "experiment": _text(row, "experiment") or "",
        "user": _text(row, "user") or "",
        "start_utc": start.isoformat(timespec="seconds") if start else None,
        "month": start.strftime("%Y-%m") if start else None,
        "location": location,
        "zone": zone["zone"],
        "provider": zone["provider"],
        "region": zone["region"],
        "scope": _text(row, schema.TAG_SCOPE),
        "measurement": measurement,
        "gpu_model": _text(row, schema.PARAM_GPU_MODEL),
        "gpu_count": int(gpus) if gpus is not None else None,
        "gpu_hours": gpus * duration / 3600 if gpus is not None and duration else None,
        "duration_s": duration,
        "it_energy_kwh": None if any(p is None for p in parts) else sum(parts),  # type: ignore[arg-type]
        "energy_kwh": _num(row, schema.METRIC_ENERGY_KWH),
        "co2e_kg": _num(row, schema.METRIC_CO2E_KG),
        "co2e_market_kg": _num(row, schema.METRIC_CO2E_MARKET_KG),
        "cost_usd": _num(row, schema.METRIC_COST_USD),
        "embodied_co2e_kg": _num(row, schema.METRIC_EMBODIED_CO2E_KG),
        "pue": _num(row, schema.PARAM_PUE),
        "grid_intensity_g_per_kwh": _num(row, schema.PARAM_GRID_INTENSITY),
        "grid_source": _text(row, schema.PARAM_GRID_SOURCE),
        "price_usd_per_hour": _num(row, schema.PARAM_PRICE_USD_PER_HOUR),
        "price_source": _text(row, schema.PARAM_PRICE_SOURCE),
        "pricing": _text(row, schema.PARAM_PRICING),
        "price_as_of": _text(row, schema.PARAM_PRICE_AS_OF),
        "instance_type": _text(row, schema.PARAM_INSTANCE_TYPE),
        "basis": zone["basis"],
        "hosts": int(_num(row, "hosts") or 1),
        "simulated": measurement == "simulated",
        "has_greenml": bool(row.get("has_greenml")),
        "status": _text(row, schema.TAG_STATUS) or str(row.get("status") or "").lower(),
        "assumed_location": location == "WORLD" or zone["assumed"],
    }
    r["group"] = _group_of(r, row, group_by)
    return r


def _group_of(r: Mapping[str, Any], row: Mapping[str, Any], group_by: str) -> str:
    if group_by.startswith("tag:"):
        return _text(row, group_by) or "(no tag)"
    value = r.get(group_by)
    return str(value) if value else "(unknown)"


@functools.cache
def _zone(location: str | None) -> dict[str, Any]:
    """The grid zone behind a run's location, with its factor's basis and provenance."""
    out: dict[str, Any] = {
        "zone": None,
        "provider": None,
        "region": None,
        "basis": "unknown",
        "assumed": False,
        "factor": None,
    }
    if not location:
        return out
    from greenml.factors import grid
    from greenml.factors.location import parse

    if location == "WORLD":
        gf = grid.world_average()
        return {**out, "zone": "WORLD", "basis": gf.basis, "assumed": True, "factor": gf}
    try:
        loc = parse(location)
    except ConfigError:
        return out
    out.update(zone=loc.zone, provider=loc.provider, region=loc.region)
    if loc.provider == "gcp" and loc.region is not None:
        from greenml.factors.regions import load_gcp_region_carbon

        if loc.region in load_gcp_region_carbon():
            out["basis"] = "combustion"  # Google: operational (direct) grid emissions
            out["factor"] = load_gcp_region_carbon()[loc.region]
            return out
    try:
        gf = grid.zone_intensity(loc.zone)
    except ConfigError:
        return out
    out.update(basis=gf.basis, factor=gf)
    return out


def _public(r: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in r.items() if k not in ("has_greenml", "group")} | {
        "has_greenml": r["has_greenml"]
    }


# -- totals and splits ----------------------------------------------------------------------


def _sum(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _figures(rs: list[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "runs": len(rs),
        "gpu_hours": _sum(r["gpu_hours"] for r in rs) or 0.0,
        "energy_mwh": (_sum(r["energy_kwh"] for r in rs) or 0.0) / 1000,
        "co2e_t": (_sum(r["co2e_kg"] for r in rs) or 0.0) / 1000,
        "co2e_market_t": (_sum(r["co2e_market_kg"] for r in rs) or 0.0) / 1000,
        "cost_usd": _sum(r["cost_usd"] for r in rs),
    }


def _totals(inc: list[Mapping[str, Any]]) -> dict[str, Any]:
    it = _sum(r["it_energy_kwh"] for r in inc)
    embodied = _sum(r["embodied_co2e_kg"] for r in inc)
    f = _figures(inc)
    return {
        "runs": f["runs"],
        "gpu_hours": f["gpu_hours"],
        # the Footprint's own names and units (kWh, kg), as `greenml estimate` prints them
        "energy_kwh": f["energy_mwh"] * 1000,
        "co2e_kg": f["co2e_t"] * 1000,
        "co2e_market_kg": f["co2e_market_t"] * 1000,
        "it_energy_kwh": it or 0.0,
        "embodied_co2e_kg": embodied,
        # and in a disclosure's units (MWh, tCO2e)
        "it_energy_mwh": (it or 0.0) / 1000,
        "energy_mwh": f["energy_mwh"],
        "co2e_t": f["co2e_t"],
        "co2e_market_t": f["co2e_market_t"],
        "cost_usd": f["cost_usd"],
        "runs_without_price": sum(1 for r in inc if r["cost_usd"] is None),
        "embodied_co2e_t": embodied / 1000 if embodied is not None else None,
    }


def _energy_mix(inc: list[Mapping[str, Any]]) -> dict[str, Any]:
    """ESRS E1-5: each run's facility energy split by its zone's generation mix."""
    totals = defaultdict(float)
    sources: dict[str, dict[str, Any]] = {}
    without_own: set[str] = set()
    for r in inc:
        mwh = (r["energy_kwh"] or 0.0) / 1000
        totals["energy_mwh"] += mwh
        mix = _mix(r["zone"])
        if mix is None:
            totals["unknown_mwh"] += mwh
            continue
        for part in ("fossil", "nuclear", "renewable"):
            totals[f"{part}_mwh"] += mwh * mix[part]
        if mix["of"] != r["zone"]:
            without_own.add(str(r["zone"]))
        sources[str(r["zone"])] = {
            "zone": r["zone"],
            "mix_of": mix["of"],
            "year": mix["year"],
            "source": mix["source"],
        }
    market = [
        {
            "run_id": r["run_id"],
            "co2e_t": r["co2e_kg"] / 1000,
            "co2e_market_t": r["co2e_market_kg"] / 1000,
        }
        for r in inc
        if r["co2e_kg"] is not None
        and r["co2e_market_kg"] is not None
        and abs(r["co2e_market_kg"] - r["co2e_kg"]) > 1e-12 * max(abs(r["co2e_kg"]), 1.0)
    ]
    return {
        "energy_mwh": totals["energy_mwh"],
        "fossil_mwh": totals["fossil_mwh"],
        "nuclear_mwh": totals["nuclear_mwh"],
        "renewable_mwh": totals["renewable_mwh"],
        "unknown_mwh": totals["unknown_mwh"],
        "mix_sources": sorted(sources.values(), key=lambda s: str(s["zone"])),
        "zones_without_own_mix": sorted(without_own),
        "market_instruments": market,
    }


@functools.cache
def _mix(zone: str | None) -> dict[str, Any] | None:
    """The shares of fossil, nuclear and renewable generation of a zone's country (the
    zone's own for a country; its country's for a state, province or bidding zone), from
    CodeCarbon's global energy mix (Ember / Our World in Data); None where unknown."""
    if not zone or zone == "WORLD":
        return None
    from greenml.factors import codecarbon_data, grid

    country = zone.split("-")[0]
    try:
        code = grid.alpha3(country)
    except ConfigError:
        return None
    entry = codecarbon_data.json_entry("data/private_infra/global_energy_mix.json", code)
    if not entry:
        return None
    parts = {
        "fossil": float(entry.get("fossil_TWh") or 0.0),
        "nuclear": float(entry.get("nuclear_TWh") or 0.0),
        "renewable": float(entry.get("renewables_TWh") or 0.0),
    }
    whole = sum(parts.values())
    if whole <= 0:
        return None
    return {
        **{k: v / whole for k, v in parts.items()},
        "of": country if zone != country else zone,
        "year": entry.get("year"),
        "source": f"CodeCarbon {codecarbon_data.version()} global_energy_mix.json "
        f"({entry.get('country_name', code)}; Ember / Our World in Data)",
    }


def _groups(inc: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    by: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in inc:
        by[r["group"]].append(r)
    rows = [{"group": g, **_figures(rs)} for g, rs in by.items()]
    return sorted(rows, key=lambda x: (-x["co2e_t"], x["group"]))


def _months(inc: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    by: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in inc:
        by[r["month"] or "(unknown)"].append(r)
    out = []
    for month in sorted(by):
        rs = by[month]
        by_loc: dict[str, float] = defaultdict(float)
        for r in rs:
            by_loc[r["location"] or "(unknown)"] += (r["co2e_kg"] or 0.0) / 1000
        out.append({"month": month, **_figures(rs), "co2e_t_by_location": dict(by_loc)})
    return out


def _top(inc: list[Mapping[str, Any]], key: str) -> list[dict[str, Any]]:
    known = [r for r in inc if r[key] is not None]
    known.sort(key=lambda r: (-r[key], r["run_id"]))
    return [_public(r) for r in known[:TOP]]


def _quality(
    records: list[Mapping[str, Any]], inc: list[Mapping[str, Any]], include_simulated: bool
) -> dict[str, Any]:
    energy = sum(r["energy_kwh"] or 0.0 for r in inc)
    share: dict[str, float] = defaultdict(float)
    for r in inc:
        if energy > 0:
            share[r["measurement"] or "unknown"] += (r["energy_kwh"] or 0.0) / energy
    for method in ("counter", "sampled", "estimated", "imported"):
        share.setdefault(method, 0.0)
    incomplete = []
    for r in inc:
        missing = [k for k in ("co2e_kg", "duration_s", "it_energy_kwh") if r[k] is None]
        if missing:
            incomplete.append({"run_id": r["run_id"], "missing": missing})
    assumptions = [
        "Energy is facility energy: the measured IT energy (GPU, CPU, RAM) times the PUE of "
        "the run's provider or an industry average.",
        "Each run's grid intensity is the annual average of its zone (location-based); "
        "market-based figures equal location-based ones unless the run declared contractual "
        "instruments (listed under ESRS E1-5).",
        "Cloud runs are Scope 3 Category 1 (purchased services); runs on own or colocated "
        "hardware are Scope 2.",
        "Costs are on-demand list prices (or the price the run was given) times the hours "
        "and the share of the instance used; runs without a price are left out of the cost.",
        "Embodied emissions (SCI view) are shown apart and never added to the GHG totals.",
    ]
    if not include_simulated:
        assumptions.append("Runs measured on simulated GPUs are excluded from the totals.")
    return {
        "energy_share": dict(share),
        "assumed_location": [r["run_id"] for r in inc if r["assumed_location"]],
        "missing_price": [r["run_id"] for r in inc if r["cost_usd"] is None],
        "without_greenml": [
            {"run_id": r["run_id"], "run_name": r["run_name"], "experiment": r["experiment"]}
            for r in records
            if not r["has_greenml"]
        ],
        "simulated": [r["run_id"] for r in records if r["has_greenml"] and r["simulated"]],
        "simulated_excluded": not include_simulated,
        "incomplete": incomplete,
        "uncertainty": UNCERTAINTY,
        "assumptions": assumptions,
    }


# -- what-if and sources ------------------------------------------------------------------


@functools.cache
def _best_region(provider: str) -> tuple[str, float] | None:
    """The provider's lowest-intensity region in greenml's tables: (location, g/kWh)."""
    from greenml.factors.regions import load_cloud_regions

    best: tuple[str, float] | None = None
    for (prov, region), _row in sorted(load_cloud_regions().items()):
        if prov != provider:
            continue
        info = _zone(f"{prov}:{region}")
        gf = info["factor"]
        if gf is None:
            continue
        value = getattr(gf, "g_per_kwh", None)
        if value is None:
            value = getattr(gf, "grid_intensity_g_per_kwh", None)
        if value is not None and (best is None or value < best[1]):
            best = (f"{prov}:{region}", float(value))
    return best


def _price(provider: str, instance: str, region: str) -> float | None:
    from greenml.factors.prices import load_prices

    for p in load_prices():
        if (p.provider, p.instance_type, p.region) == (provider, instance, region):
            return p.usd_per_hour
    return None


def _what_if(inc: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in inc:
        if not r["provider"] or r["energy_kwh"] is None or r["co2e_kg"] is None:
            continue
        best = _best_region(r["provider"])
        if best is None or best[0] == r["location"]:
            continue
        best_cost = None
        if r["cost_usd"] is not None and r["instance_type"] and r["region"]:
            here = _price(r["provider"], r["instance_type"], r["region"])
            there = _price(r["provider"], r["instance_type"], best[0].partition(":")[2])
            if here and there:
                best_cost = r["cost_usd"] * there / here
        out.append(
            {
                "run_id": r["run_id"],
                "provider": r["provider"],
                "location": r["location"],
                "best_location": best[0],
                "co2e_t": r["co2e_kg"] / 1000,
                "best_co2e_t": r["energy_kwh"] * best[1] / 1e6,
                "cost_usd": r["cost_usd"],
                "best_cost_usd": best_cost,
            }
        )
    return out


def _sources(inc: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every factor the runs used, each with the runs that used it."""
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}

    def add(key: tuple[Any, ...], row: dict[str, Any], run_id: str) -> None:
        entry = rows.setdefault(key, {**row, "runs": []})
        entry["runs"].append(run_id)

    for r in inc:
        info = _zone(r["location"])
        gf = info["factor"]
        if r["grid_intensity_g_per_kwh"] is not None:
            add(
                ("grid", r["zone"], r["grid_intensity_g_per_kwh"], r["grid_source"]),
                {
                    "factor": "grid_intensity",
                    "value": r["grid_intensity_g_per_kwh"],
                    "unit": "gCO2e/kWh",
                    "zone": r["zone"],
                    "year": getattr(gf, "year", None),
                    "source": r["grid_source"],
                    "licence": getattr(gf, "licence", None),
                    "basis": r["basis"],
                },
                r["run_id"],
            )
        if r["pue"] is not None:
            add(
                ("pue", r["pue"], r["provider"]),
                {
                    "factor": "pue",
                    "value": r["pue"],
                    "unit": "",
                    "zone": r["provider"] or "own hardware",
                    "year": None,
                    "source": "the run's PUE (footprint.json has its source)",
                    "licence": None,
                },
                r["run_id"],
            )
        if r["price_usd_per_hour"] is not None:
            as_of = r.get("price_as_of")
            add(
                ("price", r["price_usd_per_hour"], r["price_source"], r.get("pricing"), as_of),
                {
                    "factor": "price",
                    "value": r["price_usd_per_hour"],
                    "unit": "USD/h",
                    "zone": r["location"],
                    "year": int(as_of[:4]) if as_of else None,
                    "source": r["price_source"],
                    "licence": None,
                    **({"as_of": as_of} if as_of else {}),
                    **({"basis": r["pricing"]} if r.get("pricing") else {}),
                },
                r["run_id"],
            )
    return list(rows.values())


def _inputs_hash(inc: list[Mapping[str, Any]]) -> str:
    keys = (
        "run_id",
        "energy_kwh",
        "co2e_kg",
        "co2e_market_kg",
        "cost_usd",
        "grid_intensity_g_per_kwh",
        "pue",
        "price_usd_per_hour",
        "grid_source",
    )
    payload = sorted(([r[k] for k in keys] for r in inc), key=lambda x: str(x[0]))
    return hashlib.sha256(json.dumps(payload, default=str).encode()).hexdigest()
