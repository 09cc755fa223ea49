"""Cloud instance prices (on-demand and spot), with provenance, and the cost of a job on them.

The shipped table ``data/instance_prices.csv`` holds one row per (provider, instance type,
region, pricing): the public Linux price of the *whole* instance in USD per hour,
``on-demand`` or ``spot``, the GPUs it carries, the date the price was read (``as_of``),
where it was read (``source``) and under what terms (``licence``). It is built from the
SkyPilot catalog (:mod:`greenml.factors.skypilot`). Users may pass their own table with the
same columns (negotiated rates, other regions)::

    table = load_prices("my_prices.csv")
    price = lookup_price("aws", "p4d.24xlarge", "us-east-1", table=table)
    usd = cost_usd(price, hours=100.0, share=job_share(4, price.gpu_count))

Nothing here guesses: a region with no row is an error naming the regions that do have
one (prices differ by region, so another region's figure is never substituted), and an
unknown instance type is an error suggesting the closest names the provider has in that
region. Azure instance names match whatever their case (Azure's are case-insensitive).
Cloud prices change (AWS cut GPU prices by up to 45 % in June 2025), so an on-demand price
read more than :data:`STALE_AFTER_MONTHS` months before ``today``, or a spot price (which
moves daily) read more than :data:`SPOT_STALE_AFTER_DAYS` days before, triggers a
:class:`StalePriceWarning`.
"""

from __future__ import annotations

import datetime
import functools
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from greenml.config import PYTHON, Voice
from greenml.errors import ConfigError, GreenMLWarning, warn
from greenml.factors.csvtable import read_table, rows
from greenml.factors.provenance import Factor

COLUMNS = (
    "provider",
    "instance_type",
    "region",
    "gpu_model",
    "gpu_count",
    "usd_per_hour",
    "pricing",
    "as_of",
    "source",
    "licence",
    "note",
)
PROVIDERS = ("aws", "azure", "gcp")
PRICINGS = ("on-demand", "spot")
STALE_AFTER_MONTHS = 18
SPOT_STALE_AFTER_DAYS = 30
#: Providers whose instance names are case-insensitive.
_ANY_CASE = frozenset({"azure"})
_REQUIRED_TEXT = ("instance_type", "region", "gpu_model", "pricing", "source", "licence")
_SHIPPED = "instance_prices.csv"


class StalePriceWarning(GreenMLWarning):
    """A price is older than :data:`STALE_AFTER_MONTHS` months (a spot price: older than
    :data:`SPOT_STALE_AFTER_DAYS` days); the bill may differ."""


@dataclass(frozen=True)
class InstancePrice:
    """The price (on-demand or spot) of one whole instance in one region, and where it
    came from."""

    provider: str
    instance_type: str
    region: str
    gpu_model: str
    gpu_count: int
    usd_per_hour: float
    pricing: str
    as_of: datetime.date
    source: str
    licence: str
    note: str = ""

    def factor(self) -> Factor:
        """The price as a provenance record for reports."""
        note = (
            f"{self.provider} {self.instance_type} {self.region}, {self.pricing}, "
            f"{self.gpu_count} x {self.gpu_model}, as of {self.as_of.isoformat()}"
        )
        if self.note:
            note += f"; {self.note}"
        return Factor(
            "price",
            self.usd_per_hour,
            "USD/h",
            source=self.source,
            year=self.as_of.year,
            licence=self.licence,
            note=note,
            as_of=self.as_of.isoformat(),
            basis=self.pricing,
        )


def load_prices(path: str | os.PathLike[str] | None = None) -> tuple[InstancePrice, ...]:
    """Read a price table; ``None`` means the table shipped with greenml (read once).

    Raises :class:`ConfigError` for a file that cannot be read, and, naming the file, the
    row (line number, header = 1) and the column, for a missing column, an empty required
    field, a price that is not a positive number, a GPU count that is not a positive
    integer, a date that is not ISO ``YYYY-MM-DD``, an unknown provider, or a duplicated
    (provider, instance, region).
    """
    if path is None:
        return _shipped_prices()
    return _parse(*read_table(path, _SHIPPED))


@functools.cache
def _shipped_prices() -> tuple[InstancePrice, ...]:
    return _parse(*read_table(None, _SHIPPED))


def _parse(label: str, text: str) -> tuple[InstancePrice, ...]:
    # A row may carry cells beyond the header's columns; they are ignored, as before.
    prices: list[InstancePrice] = []
    seen: dict[tuple[str, str, str], int] = {}
    for row in rows(label, text, COLUMNS, extra_cells=True):
        provider = row["provider"].lower()
        if provider not in PROVIDERS:
            raise row.error(
                "provider", f"is not a known provider; use one of {', '.join(PROVIDERS)}"
            )
        for column in _REQUIRED_TEXT:
            row.text(column)
        price = InstancePrice(
            provider=provider,
            instance_type=row["instance_type"],
            region=row["region"],
            gpu_model=row["gpu_model"],
            usd_per_hour=row.number("usd_per_hour", positive=True),
            gpu_count=row.whole("gpu_count", minimum=1),  # an instance priced here has a GPU
            pricing=_pricing_cell(row),
            as_of=row.date("as_of"),
            source=row["source"],
            licence=row["licence"],
            note=row["note"],
        )
        key = (provider, _same_case(provider, price.instance_type), price.region, price.pricing)
        if key in seen:
            raise row.error(
                "instance_type",
                f"in {provider} {price.region} already has a {price.pricing} price in row "
                f"{seen[key]}",
            )
        seen[key] = row.n
        prices.append(price)
    return tuple(prices)


def _pricing_cell(row: Any) -> str:
    value = row.text("pricing").lower()
    if value not in PRICINGS:
        raise row.error(
            "pricing",
            f"is not a pricing greenml knows; use {' or '.join(PRICINGS)} (for a reserved or "
            "negotiated rate, write the pricing it replaces and say what it is in note)",
        )
    return value


def _same_case(provider: str, name: str) -> str:
    """``name`` as compared for ``provider`` (Azure's names are case-insensitive)."""
    return name.lower() if provider in _ANY_CASE else name


def same_instance(price: InstancePrice, name: str) -> bool:
    """Whether ``name`` names ``price``'s instance type (Azure's in any case)."""
    return _same_case(price.provider, price.instance_type) == _same_case(
        price.provider, name.strip()
    )


def check_pricing(value: object, what: str = "pricing") -> str:
    """``value`` as one of :data:`PRICINGS`, or a ConfigError naming it (``what``: how the
    user gave it, e.g. ``--pricing``)."""
    if isinstance(value, str) and value.strip().lower() in PRICINGS:
        return value.strip().lower()
    raise ConfigError(f"{what}={value!r} is invalid: use {' or '.join(map(repr, PRICINGS))}")


def lookup_price(
    provider: str,
    instance_type: str,
    region: str | None = None,
    *,
    pricing: str = "on-demand",
    table: Sequence[InstancePrice] | None = None,
    today: datetime.date | None = None,
    voice: Voice = PYTHON,
) -> InstancePrice:
    """The ``pricing`` (``"on-demand"`` or ``"spot"``) price of ``instance_type`` in
    exactly ``region`` (no fallback to other regions or to the other pricing).

    ``region=None`` is an error that lists the regions with a price, so the caller can
    choose. ``today`` (default: the real date) decides whether to warn that the price is
    stale. ``voice`` names the settings the way the user gives them (keywords, or CLI
    flags) in the advice of an error.
    """
    rows = load_prices() if table is None else table
    wanted = provider.strip().lower()
    if wanted not in PROVIDERS:
        raise ConfigError(f"unknown provider {provider!r}; known: {', '.join(PROVIDERS)}")
    pricing = check_pricing(pricing, voice.option("pricing").rstrip("="))
    name = _same_case(wanted, instance_type.strip())
    ours = [p for p in rows if p.provider == wanted]
    candidates = [p for p in ours if _same_case(wanted, p.instance_type) == name]
    own = own_price_advice(voice)
    if not candidates:
        raise ConfigError(
            f"{voice.given('instance_type', instance_type)}: no {wanted} price for this "
            f"instance type: {closest_names(instance_type, ours, region)} {own}"
        )
    given = voice.given("instance_type", instance_type)
    label = candidates[0].instance_type
    regions = sorted({p.region for p in candidates})
    if region is None:
        raise ConfigError(f"{wanted} {label}: give a region; priced in {', '.join(regions)}")
    here = [p for p in candidates if p.region == region]
    if not here:
        raise ConfigError(
            f"{given}: {wanted} {label} has no price for region {region!r}; it is "
            f"sold in {', '.join(regions)} (prices differ by region, so none is "
            f"substituted). {own}"
        )
    match = [p for p in here if p.pricing == pricing]
    if not match:
        other = [p.region for p in candidates if p.pricing == pricing]
        elsewhere = (
            f"{pricing} prices for it are listed in {', '.join(sorted(other))}"
            if other
            else f"the price table has no {pricing} price for it in any region"
        )
        raise ConfigError(
            f"{given}: {wanted} {label} in {region} has no {pricing} price in the price "
            f"table ({here[0].pricing} only); {elsewhere}. Use "
            f"{voice.set('pricing', here[0].pricing)}, or give the price you pay with "
            f"{voice.set('price_usd_per_hour', '<USD per hour>')}"
        )
    price = match[0]
    _warn_if_stale(price, datetime.date.today() if today is None else today, voice)
    return price


def closest_names(instance_type: str, rows: Sequence[InstancePrice], region: str | None) -> str:
    """An unknown instance's hint: the closest names in ``rows`` (one provider's, or all),
    those priced in ``region`` first; else the families the table has."""
    import difflib  # only for an error's hint

    if not rows:
        return "the price table has no instance of this provider at all."
    any_case = any(p.provider in _ANY_CASE for p in rows)
    key = instance_type.lower() if any_case else instance_type
    pools = []
    if region is not None:
        pools.append(sorted({p.instance_type for p in rows if p.region == region}))
    pools.append(sorted({p.instance_type for p in rows}))
    for pool in pools:
        keyed = {(n.lower() if any_case else n): n for n in pool}
        close = difflib.get_close_matches(key, list(keyed), n=3, cutoff=0.6)
        if close:
            where = f" in {region}" if region is not None and pool is pools[0] else ""
            return f"did you mean {', '.join(keyed[c] for c in close)}{where}?"
    families = sorted({instance_family(p.provider, p.instance_type) for p in rows})
    return (
        f"the price table has {len(pools[-1])} such instance types, in the families "
        f"{', '.join(families)}."
    )


def instance_family(provider: str, name: str) -> str:
    """``p5`` for p5.48xlarge, ``a3`` for a3-highgpu-8g, ``Standard_ND`` for Azure's ND
    sizes."""
    if provider == "azure":
        m = re.match(r"(Standard_[A-Z]+)", name)
        return m.group(1) if m else name
    return re.split(r"[.]" if provider == "aws" else r"[-+]", name)[0]


def own_price_advice(voice: Voice = PYTHON) -> str:
    """How the user supplies a price greenml does not ship, in their own terms."""
    from greenml.factors.tables import in_tables_dir

    return (
        f"Give the price with {voice.set('price_usd_per_hour', '<USD per hour>')}, or add a "
        f"row to {in_tables_dir('instance_prices.csv', voice)}."
    )


def staleness(price: InstancePrice, today: datetime.date) -> str | None:
    """Why ``price`` is stale on ``today`` (a spot price older than
    :data:`SPOT_STALE_AFTER_DAYS` days, any older than :data:`STALE_AFTER_MONTHS` months),
    or None."""
    age = (today - price.as_of).days
    if price.pricing == "spot" and age > SPOT_STALE_AFTER_DAYS:
        return (
            f"as of {price.as_of.isoformat()}, {age} days before {today.isoformat()}; spot "
            f"prices move daily (more than {SPOT_STALE_AFTER_DAYS} days old is stale)"
        )
    if today > _add_months(price.as_of, STALE_AFTER_MONTHS):
        return (
            f"as of {price.as_of.isoformat()}, more than {STALE_AFTER_MONTHS} months before "
            f"{today.isoformat()}"
        )
    return None


def _warn_if_stale(price: InstancePrice, today: datetime.date, voice: Voice = PYTHON) -> None:
    # The warnings module's default filter shows each distinct message once.
    why = staleness(price, today)
    if why is None:
        return
    kind = "spot price" if price.pricing == "spot" else "price"
    warn(
        f"{kind} of {price.provider} {price.instance_type} in {price.region} is {why}: "
        "check the current price list (greenml tables import-prices refreshes the table), "
        f"or give the price you pay with {voice.set('price_usd_per_hour', '<USD per hour>')}",
        StalePriceWarning,
    )


def _add_months(day: datetime.date, months: int) -> datetime.date:
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    next_month = datetime.date(year + month // 12, month % 12 + 1, 1)
    last_day = (next_month - datetime.timedelta(days=1)).day
    return datetime.date(year, month, min(day.day, last_day))


def job_share(gpus_used: int | None, gpu_count: int, override: float | None = None) -> float:
    """The share of the instance a job is charged for, in (0, 1].

    ``override`` (e.g. a negotiated split) wins when given. Otherwise the share is
    ``gpus_used / gpu_count``, capped at 1 (a job cannot use more than the whole
    instance); ``gpus_used=None`` (unknown) charges the whole instance.
    """
    if isinstance(gpu_count, bool) or not isinstance(gpu_count, int) or gpu_count < 1:
        raise ConfigError(f"gpu_count={gpu_count!r}: must be an integer >= 1")
    if override is not None:
        if isinstance(override, bool) or not isinstance(override, (int, float)):
            raise ConfigError(f"override={override!r}: must be a number in (0, 1]")
        if not 0 < override <= 1:
            raise ConfigError(f"override={override!r}: must be in (0, 1]")
        return float(override)
    if gpus_used is None:
        return 1.0
    if isinstance(gpus_used, bool) or not isinstance(gpus_used, int) or gpus_used < 1:
        raise ConfigError(f"gpus_used={gpus_used!r}: must be an integer >= 1 or None")
    return min(1.0, gpus_used / gpu_count)


def cost_usd(price: InstancePrice, hours: float, share: float) -> float:
    """USD for ``hours`` of ``share`` of the instance: hours x price x share."""
    if isinstance(hours, bool) or not isinstance(hours, (int, float)):
        raise ConfigError(f"hours={hours!r}: must be a number >= 0")
    if not math.isfinite(hours) or hours < 0:
        raise ConfigError(f"hours={hours!r}: must be a finite number >= 0")
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
        raise ConfigError(f"share={share!r}: must be a number in (0, 1]")
    return hours * price.usd_per_hour * share
