"""Build greenml's shipped instance_prices.csv from pinned SkyPilot catalog files.

The shipped table is made by the same code as ``greenml tables import-prices skypilot``
(:func:`greenml.factors.skypilot.price_rows`), from one pinned commit per cloud::

    # download the three pinned files (URLs printed by --urls), then:
    python tools/build_price_table.py AWS.csv GCP.csv AZURE.csv

Rows are kept for the GPU instance families listed in :data:`FAMILIES`; the output
replaces ``greenml/factors/data/instance_prices.csv``. docs/data-sources.md records the
commits, the dates and the cross-checks against the providers' own price pages.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys

from greenml.factors.skypilot import (
    REPO,
    catalog_source,
    price_rows,
    read_offers,
    screen_gpu_prices,
    table_text,
)

#: provider -> (catalog path, commit, as_of). The commits' own dates are not known; as_of is
#: the date the evidence ties the prices to (docs/data-sources.md): AWS, the project's
#: reference reading of the same us-east-1 figures; Google Cloud, the earliest date the
#: snapshot can be (it has the A4 pricing change merged that day); Azure, the earliest date
#: too (catalog schema v6 was added that day; catalogs/v6/azure is no longer refreshed).
PINNED = {
    "aws": (
        "catalogs/v8/aws/vms.csv",
        "e385a0d348eda9cefd9806423e7725944dc249e4",
        datetime.date(2026, 1, 21),
    ),
    "gcp": (
        "catalogs/v8/gcp/vms.csv",
        "8427bbff988abdd050a9f51addd314ef31cb4e85",
        datetime.date(2025, 11, 27),
    ),
    "azure": (
        "catalogs/v6/azure/vms.csv",
        "098741e70562f65d7af1cceb81e33b284f742604",
        datetime.date(2024, 12, 13),
    ),
}

#: The GPU (and Trainium/Inferentia) instance families shipped, per provider.
FAMILIES = {
    "aws": (
        "g4dn",
        "g5",
        "g6",
        "g6e",
        "gr6",
        "inf2",
        "p3",
        "p3dn",
        "p4d",
        "p4de",
        "p5",
        "p5e",
        "p5en",
        "p6-b200",
        "trn1",
        "trn1n",
        "trn2",
    ),
    "gcp": ("a2", "a3", "a4", "g2", "n1"),
    "azure": ("Standard_NC", "Standard_ND", "Standard_NV"),
}

#: Google Cloud per-GPU on-demand prices (USD per GPU-hour, us-central1) confirmed against
#: published machine prices: machine price - its VM row = the GPU row. The snapshot's rows
#: for other GPUs are shipped only where their regions agree (docs/data-sources.md).
GCP_CONFIRMED = {
    # a2-highgpu-1g 3.673385 (Google Cloud Billing API, via Cyclenerd's price list of
    # 2025-03-06) = VM 0.73948 + A100 2.93391
    "A100": 2.93391,
    # a3-highgpu-1g 10.9791 (silybench, 2026-09-26) = VM 1.18251 + H100 9.79655
    "H100": 9.79655,
    # g2-standard-4 0.706832 (Cyclenerd, 2025-03-06) = VM 0.14679 + L4 0.56004
    "L4": 0.56004,
}

OUT = os.path.join(
    os.path.dirname(__file__), "..", "greenml", "factors", "data", "instance_prices.csv"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "files", nargs="*", help="the catalog files (any order; a cloud's may be in parts)"
    )
    parser.add_argument("--urls", action="store_true", help="print the pinned files' URLs")
    parser.add_argument("--out", default=OUT, help="where to write (default: the shipped table)")
    args = parser.parse_args(argv)
    if args.urls or not args.files:
        for provider, (path, commit, _) in PINNED.items():
            print(f"{provider}: https://raw.githubusercontent.com/{REPO}/{commit}/{path}")
        return 0 if args.urls else 2
    by_provider: dict[str, list] = {}
    for file in args.files:
        provider, offers = read_offers(file)
        by_provider.setdefault(provider, []).extend(offers)  # a cloud's file may come in parts
    rows = []
    for provider, offers in sorted(by_provider.items()):
        path, commit, as_of = PINNED[provider]
        screened: dict[str, int] = {}
        if provider == "gcp":
            offers, screened = screen_gpu_prices(offers, GCP_CONFIRMED)
        made = price_rows(
            provider,
            offers,
            as_of=as_of,
            source=catalog_source(path, commit, provider),
            families=FAMILIES[provider],
        )
        rows += made.rows
        kinds = {k: sum(r["pricing"] == k for r in made.rows) for k in ("on-demand", "spot")}
        print(f"{provider}: {kinds}")
        for reason, n in sorted({**screened, **made.skipped}.items()):
            print(f"  left out: {n} x {reason}")
    rows.sort(key=lambda r: (r["provider"], r["instance_type"], r["region"], r["pricing"]))
    with open(args.out, "w", encoding="utf-8", newline="") as f:
        f.write(table_text(rows))
    print(f"wrote {len(rows)} rows to {os.path.normpath(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
