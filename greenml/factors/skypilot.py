"""Instance prices from the SkyPilot catalog: the shipped price table, and a user's refresh.

The SkyPilot catalog (github.com/skypilot-org/skypilot-catalog, Apache-2.0) snapshots each
cloud's public price list into one CSV per cloud (``catalogs/v8/aws/vms.csv`` ...): one row
per instance type and region (AWS and Google Cloud: per availability zone), with the
on-demand ``Price`` and the ``SpotPrice`` in USD per hour. :func:`price_rows` turns such a
file into rows of greenml's ``instance_prices.csv``; ``greenml tables import-prices
skypilot FILE.csv`` writes them to the user's ``tables_dir``, and the shipped table is built
by the same function from pinned catalog commits (``tools/build_price_table.py``).

What the catalog does not say, and how each row is made:

- **Regions, not zones.** greenml prices a region. The zones of a region repeat its
  on-demand price; AWS spot prices differ by zone, so a region's spot price is the median
  of its zones' prices, and the row's note gives their range.
- **Google Cloud lists a GPU machine's GPUs apart from its VM**: the ``a2-highgpu-1g`` row
  prices the machine's vCPUs and memory, and a row with an empty ``InstanceType`` and
  ``AcceleratorName`` ``A100``, ``AcceleratorCount`` 1 prices its GPU. The machine's price
  is their sum in the same zone (as SkyPilot's own pricing adds them); a zone that lists
  the VM but not its GPUs does not sell the machine. Which GPUs a machine type carries
  comes from its name (:data:`GCP_MACHINE_GPUS`, Google Cloud's GPU machine types).
  A4's VM rows are priced 0: the catalog puts the whole machine in its B200 row.
  N1 VMs take attached GPUs (T4, V100, P100, P4): each VM and GPU count sold in a zone is
  a row named ``n1-standard-8+T4:1`` (VM + GPUs, SkyPilot's ``T4:1`` notation).
- **Spot stand-ins.** A spot price equal to the on-demand price (to 0.01 %) or above it,
  or exactly a tenth of it (to 0.1 %), is how the catalog fills a spot price it does not
  have (Azure's H100 VMs; AWS opt-in regions such as af-south-1): it is left out, not
  shipped as spot.
- **Placeholders.** Rows whose price is a placeholder the catalog uses for offerings it
  cannot price (:data:`PLACEHOLDER_PRICES`), or empty, zero or negative, are left out and
  counted. Fractional GPUs (Azure's NVads A10 v5 slices) are left out too: greenml charges
  whole GPUs.
"""

from __future__ import annotations

import csv
import datetime
import io
import math
import os
import re
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from greenml.errors import ConfigError
from greenml.factors.csvtable import Row, read_table, rows

REPO = "skypilot-org/skypilot-catalog"
LICENCE = "Apache-2.0 (SkyPilot catalog); the figures are the provider's public list prices"

#: Prices the catalog writes for offerings it cannot price (never a real hourly price).
PLACEHOLDER_PRICES = frozenset({700.0})

#: Google Cloud GPU machine types and the GPUs each carries: (name pattern, catalog GPU
#: name, count; None: the count is the number before "g" in the name). From Google Cloud's
#: documentation of its GPU machine types (A2, A3, A4, G2 series).
GCP_MACHINE_GPUS: tuple[tuple[str, str, int | None], ...] = (
    (r"a2-highgpu-(\d+)g", "A100", None),
    (r"a2-megagpu-16g", "A100", 16),
    (r"a2-ultragpu-(\d+)g", "A100-80GB", None),
    (r"a3-highgpu-(\d+)g", "H100", None),
    (r"a3-edgegpu-8g(-nolssd)?", "H100", 8),
    (r"a3-megagpu-8g", "H100-MEGA", 8),
    (r"a3-ultragpu-8g(-nolssd)?", "H200", 8),
    (r"a4-highgpu-8g(-nolssd)?", "B200", 8),
    (r"g2-standard-(4|8|12|16|32)", "L4", 1),
    (r"g2-standard-24", "L4", 2),
    (r"g2-standard-48", "L4", 4),
    (r"g2-standard-96", "L4", 8),
)
#: GPUs attached to Google Cloud N1 VMs (priced as VM + GPUs).
GCP_N1_GPUS = ("T4", "V100", "P100", "P4", "K80")
#: Catalog GPU names that name a board by another word (the a3-megagpu's H100 SXM).
_GPU_NAMES = {"H100-MEGA": "H100"}


@dataclass(frozen=True)
class Fix:
    """A catalog row's GPUs corrected from the provider's documentation."""

    why: str
    count: int | None = None
    gpu: str | None = None


#: GPUs the catalog gets wrong or names loosely: (provider, instance-type pattern) -> the
#: provider's documented figure, and why. Azure's documentation of each VM series names
#: the board; a board greenml's GPU table lacks (A100 PCIe 80GB) then has no power figure
#: rather than a sibling's.
FIXES: tuple[tuple[str, str, Fix], ...] = (
    (
        "azure",
        r"Standard_ND96isr_H100_v5",
        Fix(
            "the catalog lists 12 GPUs; Azure's ND H100 v5-series documentation gives 8 "
            "H100 GPUs per VM",
            count=8,
        ),
    ),
    (
        "azure",
        r"Standard_NC\d+adi?s_H100_v5",
        Fix(
            "the catalog names the GPU H100; Azure's NCads H100 v5-series documentation "
            "gives the H100 NVL (PCIe) board",
            gpu="H100-NVL",
        ),
    ),
    (
        "azure",
        r"Standard_NC\d+ads_A100_v4",
        Fix(
            "the catalog names the GPU A100-80GB; Azure's NC A100 v4-series documentation "
            "gives the A100 PCIe 80GB board",
            gpu="A100-PCIE-80GB",
        ),
    ),
    (
        "azure",
        r"Standard_NC\d+r?s_v3",
        Fix(
            "the catalog names the GPU V100; Azure's NCv3-series documentation gives the "
            "V100 PCIe board",
            gpu="V100-PCIE-16GB",
        ),
    ),
)


def find_fix(provider: str, instance: str) -> Fix | None:
    """The correction for a catalog instance, if there is one."""
    for prov, pattern, fix in FIXES:
        if prov == provider and re.fullmatch(pattern, instance):
            return fix
    return None


PROVIDERS = ("aws", "azure", "gcp")
_NEEDED = ("InstanceType", "AcceleratorName", "AcceleratorCount", "Price", "SpotPrice", "Region")


@dataclass(frozen=True)
class _Offer:
    """One catalog row that can be priced: an instance (or GPU) in one zone or region."""

    instance: str
    gpu: str
    count: float
    region: str
    zone: str
    price: float | None
    spot: float | None
    row: int


@dataclass
class Imported:
    """The rows made from a catalog file, and what was left out, by reason."""

    provider: str
    rows: list[dict[str, str]]
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + n


def detect_provider(label: str, header: Sequence[str], given: str | None = None) -> str:
    """The cloud a catalog file is for, from its columns: AWS files have ``Arch``, Azure
    files ``Generation``, Google Cloud files zones and ``vCPUs`` before the accelerator
    columns. ``given`` (``--provider``) must agree with the columns where they tell."""
    if "Arch" in header:
        told: str | None = "aws"
    elif "Generation" in header:
        told = "azure"
    elif (
        "AvailabilityZone" in header
        and "vCPUs" in header
        and "AcceleratorName" in header
        and header.index("vCPUs") < header.index("AcceleratorName")
    ):
        told = "gcp"
    else:
        told = None
    if given is not None:
        if given not in PROVIDERS:
            raise ConfigError(f"provider {given!r} is not one of {', '.join(PROVIDERS)}")
        if told is not None and told != given:
            raise ConfigError(
                f"{label}: --provider {given} does not match the file, whose columns are "
                f"SkyPilot's {told} catalog's ({', '.join(header)}); leave out --provider, "
                f"or give --provider {told}"
            )
        return given
    if told is None:
        raise ConfigError(
            f"{label}: cannot tell which cloud this catalog file is for from its columns "
            f"({', '.join(header)}); give --provider aws, gcp or azure"
        )
    return told


def _header(label: str, text: str) -> list[str]:
    first = next(csv.reader(io.StringIO(text, newline="")), None)
    if not first:
        raise ConfigError(f"{label}: the file is empty; expected a SkyPilot catalog CSV")
    return [c.strip() for c in first]


def _cell_number(row: Row, column: str) -> float | None:
    """An optional price or count: None when empty; an error naming file, row and column
    when it is not a number."""
    value = row[column]
    if value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        raise row.error(column, "is not a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise row.error(column, "is not a finite number")
    return number


def read_offers(
    path: str | os.PathLike[str], provider: str | None = None
) -> tuple[str, list[_Offer]]:
    """``(provider, offers)`` of a catalog file; a malformed file is a ConfigError naming
    the file, the row and the column."""
    label, text = read_table(path, "")
    header = _header(label, text)
    provider = detect_provider(label, header, provider)
    zoned = "AvailabilityZone" in header
    columns = _NEEDED + (("AvailabilityZone",) if zoned else ())
    offers = []
    for row in rows(label, text, columns, extra_cells=True):
        region = row.text("Region")
        instance = row["InstanceType"]
        gpu = row["AcceleratorName"]
        count = _cell_number(row, "AcceleratorCount")
        if not instance and not gpu:
            raise row.error("InstanceType", "is empty and so is AcceleratorName")
        if gpu and count is None:
            raise row.error("AcceleratorCount", f"is empty for accelerator {gpu!r}")
        offers.append(
            _Offer(
                instance=instance,
                gpu=gpu,
                count=count or 0.0,
                region=region,
                zone=row["AvailabilityZone"] if zoned else region,
                price=_cell_number(row, "Price"),
                spot=_cell_number(row, "SpotPrice"),
                row=row.n,
            )
        )
    return provider, offers


def per_gpu_prices(offers: Iterable[_Offer]) -> dict[str, dict[str, float]]:
    """Google Cloud's GPU rows as {GPU: {region: on-demand USD per GPU-hour}}."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for o in offers:
        if not o.instance and o.gpu and o.count > 0 and _real(o.price):
            assert o.price is not None
            out[o.gpu][o.region] = o.price / o.count
    return dict(out)


def spread_warnings(offers: Iterable[_Offer], max_spread: float = 1.7) -> list[str]:
    """GPUs whose per-GPU on-demand price differs across regions by more than
    ``max_spread`` x: a sign that the catalog mixed price kinds (flex-start, committed use)
    for some regions."""
    out = []
    for gpu, regions in sorted(per_gpu_prices(offers).items()):
        lo, hi = min(regions.values()), max(regions.values())
        if hi > max_spread * lo:
            cheap = sorted(r for r, v in regions.items() if v < 1.25 * lo)
            out.append(
                f"{gpu}: {lo:g} to {hi:g} USD per GPU-hour across regions ({hi / lo:.1f} x); "
                f"the cheapest regions ({', '.join(cheap)}) may carry another kind of price: "
                "check them against the provider's price page"
            )
    return out


def screen_gpu_prices(
    offers: list[_Offer],
    references: dict[str, float],
    *,
    band: float = 1 / 0.6,
    max_spread: float = 1.7,
) -> tuple[list[_Offer], dict[str, int]]:
    """Google Cloud GPU rows that can be trusted, for the shipped table.

    A GPU with a ``references`` price (USD per GPU-hour confirmed against the provider's
    published price) keeps the regions within ``band`` x of it either way; a GPU without
    one keeps its rows only when its regional prices differ by at most ``max_spread`` x.
    The rest are left out, counted by reason."""
    prices = per_gpu_prices(offers)
    dropped: dict[tuple[str, str], str] = {}
    for gpu, regions in prices.items():
        ref = references.get(gpu)
        if ref is not None:
            for region, v in regions.items():
                if not ref / band <= v <= ref * band:
                    dropped[(gpu, region)] = (
                        f"{gpu} GPU rows far from its confirmed price {ref:g} USD/GPU-h"
                    )
        elif max(regions.values()) > max_spread * min(regions.values()):
            for region in regions:
                dropped[(gpu, region)] = (
                    f"{gpu} GPU rows whose regional prices differ by more than {max_spread:g} x "
                    "(no confirmed price to tell which are right)"
                )
    kept, skipped = [], {}
    for o in offers:
        why = dropped.get((o.gpu, o.region)) if not o.instance else None
        if why is None:
            kept.append(o)
        else:
            skipped[why] = skipped.get(why, 0) + 1
    return kept, skipped


def _real(price: float | None) -> bool:
    return price is not None and price > 0 and price not in PLACEHOLDER_PRICES


def gcp_machine_gpus(instance: str) -> tuple[str, int] | None:
    """The (catalog GPU name, count) a Google Cloud GPU machine type carries, or None."""
    for pattern, gpu, count in GCP_MACHINE_GPUS:
        m = re.fullmatch(pattern, instance)
        if m:
            return gpu, count if count is not None else int(m.group(1))
    return None


def _gcp_machines(
    offers: list[_Offer], out: Imported, wanted: Callable[[str], bool]
) -> list[_Offer]:
    """Google Cloud's VM rows joined with their GPUs' rows, zone by zone."""
    gpus: dict[tuple[str, int, str], _Offer] = {}
    for o in offers:
        if not o.instance and o.gpu:
            gpus[(o.gpu, int(o.count), o.zone)] = o
    made = []
    for o in offers:
        if not o.instance or not wanted(o.instance):
            continue
        if o.instance.startswith("n1-"):
            sold = [
                g for (name, _, zone), g in gpus.items() if zone == o.zone and name in GCP_N1_GPUS
            ]
            for g in sold:
                made.append(_joined(o, g, f"{o.instance}+{g.gpu}:{int(g.count)}"))
            continue
        shape = gcp_machine_gpus(o.instance)
        if shape is None:
            out.skip(f"{o.instance}: a machine type whose GPUs greenml does not know")
            continue
        g = gpus.get((shape[0], shape[1], o.zone))
        if g is None:
            out.skip(
                "a GPU machine in a zone without a usable row for its GPUs (not listed, or "
                "left out)"
            )
            continue
        made.append(_joined(o, g, o.instance))
    return made


def _joined(vm: _Offer, gpu: _Offer, name: str) -> _Offer:
    # A VM row priced 0 with a priced GPU row (A4): the GPU row carries the whole machine.
    both = (_real(vm.price) or vm.price == 0) and _real(gpu.price)
    spot = (_real(vm.spot) or vm.spot == 0) and _real(gpu.spot)
    return _Offer(
        instance=name,
        gpu=gpu.gpu,
        count=gpu.count,
        region=vm.region,
        zone=vm.zone,
        price=(vm.price or 0) + (gpu.price or 0) if both else None,
        spot=(vm.spot or 0) + (gpu.spot or 0) if spot else None,
        row=vm.row,
    )


def _family_filter(families: Iterable[str] | None) -> Callable[[str], bool]:
    """``families``: instance-name prefixes up to a separator (``g5`` takes ``g5.xlarge``
    but not ``g5g.xlarge``; ``Standard_ND`` takes every ND size); None takes all."""
    if families is None:
        return lambda name: True
    prefixes = tuple(families)

    def wanted(name: str) -> bool:
        for p in prefixes:
            if p.lower().startswith("standard_"):
                if name.lower().startswith(p.lower()):
                    return True
            elif name.startswith(p) and name[len(p) : len(p) + 1] in (".", "-", ""):
                return True
        return False

    return wanted


def _stand_in(o: _Offer) -> bool:
    """A zone's spot price that is its on-demand price, or exactly a tenth of it (to
    rounding): the catalog's stand-ins where no spot price is listed."""
    if o.spot is None or o.price is None:
        return False
    if o.spot > o.price:  # no spot discount: not a spot price
        return True
    return math.isclose(o.spot, o.price, rel_tol=1e-4) or math.isclose(
        o.spot, o.price / 10, rel_tol=1e-3
    )


def _span(values: list[float]) -> str:
    return f"{min(values):g}-{max(values):g}"


def price_rows(
    provider: str,
    offers: list[_Offer],
    *,
    as_of: datetime.date,
    source: str,
    licence: str = LICENCE,
    families: Iterable[str] | None = None,
) -> Imported:
    """greenml price-table rows (on-demand and spot, one per region) from catalog offers."""
    out = Imported(provider, [])
    wanted = _family_filter(families)
    if provider == "gcp":
        priced = _gcp_machines(offers, out, wanted)
    else:
        priced = [o for o in offers if o.instance and wanted(o.instance)]
    by_region: dict[tuple[str, str], list[_Offer]] = defaultdict(list)
    for o in priced:
        if not o.gpu or o.count <= 0:
            out.skip("an instance without a GPU or accelerator")
            continue
        if o.count != int(o.count):
            out.skip("a fractional GPU (greenml charges whole GPUs)")
            continue
        by_region[(o.instance, o.region)].append(o)
    for (instance, region), zones in sorted(by_region.items(), key=lambda kv: kv[0]):
        first = zones[0]
        gpu = _GPU_NAMES.get(first.gpu, first.gpu)
        count, fix = int(first.count), find_fix(provider, instance)
        if fix is not None:
            count, gpu = fix.count or count, fix.gpu or gpu
        base = {
            "provider": provider,
            "instance_type": instance,
            "region": region,
            "gpu_model": gpu,
            "gpu_count": str(count),
            "as_of": as_of.isoformat(),
            "source": source,
            "licence": licence,
        }
        stand_ins = [o for o in zones if _stand_in(o)]
        if stand_ins:
            out.skip(
                "a spot price equal to the on-demand price, above it, or exactly a tenth of "
                "it (stand-ins where no spot price is listed)",
                len(stand_ins),
            )
        for kind, values in (
            ("on-demand", [o.price for o in zones]),
            ("spot", [o.spot for o in zones if not _stand_in(o)]),
        ):
            real = [v for v in values if v is not None and _real(v)]
            placeholders = [v for v in values if v is not None and v in PLACEHOLDER_PRICES]
            if placeholders:
                out.skip(f"a placeholder {kind} price ({_span(placeholders)})", len(placeholders))
            if not real:
                out.skip(f"no {kind} price")
                continue
            price = statistics.median(real)
            notes = []
            if len(set(real)) > 1:
                notes.append(f"median of {len(real)} zones' {kind} prices ({_span(real)})")
            if provider == "gcp":
                notes.append(_gcp_note(instance, first))
            if fix is not None:
                notes.append(fix.why)
            if first.gpu in _GPU_NAMES:
                notes.append(f"the catalog names the GPU {first.gpu}")
            out.rows.append(
                {
                    **base,
                    "usd_per_hour": f"{price:.10g}",
                    "pricing": kind,
                    "note": "; ".join(n for n in notes if n),
                }
            )
    return out


def _gcp_note(instance: str, offer: _Offer) -> str:
    return f"VM row + {int(offer.count)} x {offer.gpu} row, summed"


def catalog_source(path_in_repo: str, commit: str, provider: str) -> str:
    """The citation of a pinned catalog file (github.com/skypilot-org/skypilot-catalog,
    the file at that commit; docs/data-sources.md gives the full addresses)."""
    lists = {
        "aws": "AWS Price List API",
        "gcp": "Google Cloud Billing Catalog API",
        "azure": "Azure Retail Prices API",
    }[provider]
    return f"SkyPilot catalog {path_in_repo} at commit {commit[:12]} (snapshot of the {lists})"


def table_text(rows: Sequence[dict[str, str]]) -> str:
    """``rows`` as the CSV text of an ``instance_prices.csv``."""
    from greenml.factors.prices import COLUMNS

    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({c: r.get(c, "") for c in COLUMNS})
    return buf.getvalue()


def _is_import(row: dict[str, str]) -> bool:
    return row.get("source", "").startswith("SkyPilot catalog")


@dataclass
class Written:
    """What an import wrote: the file, its new rows and the rows it kept."""

    path: str
    imported: Imported
    kept: int
    replaced: int
    yours_won: int
    warnings: list[str] = field(default_factory=list)  # GPUs whose regions disagree


def import_into(
    catalog: str | os.PathLike[str],
    tables_dir: str,
    *,
    provider: str | None = None,
    as_of: datetime.date | None = None,
    source: str | None = None,
    families: Iterable[str] | None = None,
) -> Written:
    """Import a catalog file into ``tables_dir``'s ``instance_prices.csv``.

    The folder is made if it does not exist. The provider's rows from an earlier import are
    replaced; every other row is kept (a new file starts from the shipped table's other
    providers, so they stay priced). A row
    of the user's own for the same instance, region and pricing wins over the catalog's.
    ``as_of`` defaults to the catalog file's modification date (the day it was
    downloaded); ``source`` to the file's name.
    """
    from greenml.factors.prices import COLUMNS

    folder = os.fspath(tables_dir)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ConfigError(f"tables_dir {folder!r} is a file, not a folder")
    provider, offers = read_offers(catalog, provider)
    if as_of is None:
        as_of = datetime.date.fromtimestamp(os.path.getmtime(catalog))
    if source is None:
        source = f"SkyPilot catalog file {os.path.basename(os.fspath(catalog))}, downloaded {as_of}"
    elif not source.startswith("SkyPilot catalog"):
        source = f"SkyPilot catalog: {source}"
    imported = price_rows(provider, offers, as_of=as_of, source=source, families=families)
    if not imported.rows:
        if families is not None:
            everything = price_rows(provider, offers, as_of=as_of, source=source)
            from greenml.factors.prices import instance_family

            have = sorted({instance_family(provider, r["instance_type"]) for r in everything.rows})
            raise ConfigError(
                f"--family {' --family '.join(families)}: no priced GPU instance of "
                f"{'that family' if len(list(families)) == 1 else 'those families'} in "
                f"{os.fspath(catalog)}; its families with a GPU are "
                f"{', '.join(have) if have else 'none'}"
            )
        raise ConfigError(
            f"{os.fspath(catalog)}: no priced GPU instance in this {provider} catalog file"
        )
    os.makedirs(folder, exist_ok=True)  # the catalog parsed: the folder is worth making
    target = os.path.join(folder, "instance_prices.csv")
    if os.path.exists(target):
        label, text = read_table(target, "")
        existing = [dict(r.values) for r in rows(label, text, COLUMNS, extra_cells=True)]
    else:
        label, text = read_table(None, "instance_prices.csv")
        existing = [
            dict(r.values)
            for r in rows(label, text, COLUMNS, extra_cells=True)
            if r["provider"] != provider
        ]
    keep = [r for r in existing if not (r["provider"] == provider and _is_import(r))]
    replaced = len(existing) - len(keep)
    mine = {(r["provider"], r["instance_type"].lower(), r["region"], r["pricing"]) for r in keep}
    new = [
        r
        for r in imported.rows
        if (r["provider"], r["instance_type"].lower(), r["region"], r["pricing"]) not in mine
    ]
    merged = sorted(
        keep + new,
        key=lambda r: (r["provider"], r["instance_type"], r["region"], r["pricing"]),
    )
    tmp = target + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(table_text(merged))
    from greenml.factors.prices import load_prices

    try:
        load_prices(tmp)  # the file greenml will read must parse
    except ConfigError:
        os.unlink(tmp)
        raise
    os.replace(tmp, target)
    return Written(
        target,
        imported,
        len(keep),
        replaced,
        len(imported.rows) - len(new),
        spread_warnings(offers) if provider == "gcp" else [],
    )
