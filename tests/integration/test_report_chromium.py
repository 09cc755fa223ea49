"""The HTML report in a real browser: headless Chromium (Debian's ``chromium`` package)
screenshots it, and the screenshot must show the page and its three charts.

The sample Summary is a small lab's half year (three experiments, four locations, own
hardware and two clouds), built here as ``greenml.report.summarize`` would build it.
Running this file writes the documentation's screenshot::

    python tests/integration/test_report_chromium.py docs/images/report-sample.png
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from greenml.report.html import to_html

CHROMIUM = shutil.which("chromium")
WIDTH = 1200
TIMEOUT_S = 120

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="the chromium binary is missing (Debian: apt-get install -y chromium)",
    ),
]

# The charts' fills (greenml/report/charts.py), which nothing else on the page uses.
GREEN, ORANGE = (0x1B, 0x9E, 0x77), (0xD9, 0x5F, 0x02)

# -- a sample Summary -----------------------------------------------------------------------

# location: (zone, scope, basis, PUE, gCO2e/kWh, USD per GPU-hour or None, provider)
LOCATIONS = {
    "FR": ("FR", "scope2", "lifecycle", 1.4, 56.0, None, None),
    "US-CA": ("US-CA", "scope2", "combustion", 1.5, 215.0, 2.1, None),
    "aws:us-east-1": ("US-VA", "scope3-cat1", "combustion", 1.135, 380.0, 4.12, "aws"),
    "gcp:us-central1": ("US-IA", "scope3-cat1", "combustion", 1.1, 440.0, 3.93, "gcp"),
}
BEST = {"aws": ("aws:eu-north-1", 8.0, 3.88), "gcp": ("gcp:europe-west9", 16.0, 4.31)}
MIX = {"FR": ("FR", 0.08, 0.65, 0.27), "US": ("US", 0.59, 0.18, 0.23)}  # fossil, nuclear, ren.
# (name, experiment, user, month, location, GPUs, hours, measurement)
RUNS = [
    ("bert-base-sst2", "bert-finetune", "ada", "2026-01", "FR", 4, 6.0, "counter"),
    ("bert-large-mnli", "bert-finetune", "ada", "2026-01", "aws:us-east-1", 8, 10.0, "counter"),
    ("llama-7b-pt-a", "llama-pretrain", "grace", "2026-02", "gcp:us-central1", 16, 40.0, "counter"),
    ("vit-b16-lr3e-4", "vit-sweep", "alan", "2026-02", "US-CA", 2, 12.0, "sampled"),
    ("vit-b16-lr1e-4", "vit-sweep", "alan", "2026-03", "US-CA", 2, 14.0, "sampled"),
    ("llama-7b-pt-b", "llama-pretrain", "grace", "2026-03", "aws:us-east-1", 16, 52.0, "counter"),
    ("bert-base-qa", "bert-finetune", "ada", "2026-04", "FR", 4, 9.0, "counter"),
    ("vit-l16-lr1e-4", "vit-sweep", "alan", "2026-04", "gcp:us-central1", 8, 18.0, "estimated"),
    ("llama-7b-sft", "llama-pretrain", "grace", "2026-05", "FR", 8, 22.0, "counter"),
    (
        "<script>alert(1)</script>",
        "vit-sweep",
        "alan",
        "2026-05",
        "aws:us-east-1",
        4,
        6.0,
        "counter",
    ),
    ("llama-7b-dpo", "llama-pretrain", "grace", "2026-06", "aws:us-east-1", 8, 16.0, "counter"),
    ("bert-distil", "bert-finetune", "ada", "2026-06", "US-CA", 2, 5.0, "sampled"),
]
KW_PER_GPU = 0.55


def sample_summary() -> dict:
    runs = []
    for i, (name, exp, user, month, loc, gpus, hours, measurement) in enumerate(RUNS):
        zone, scope, basis, pue, g, price, provider = LOCATIONS[loc]
        it = gpus * hours * KW_PER_GPU
        kwh = it * pue
        kg = kwh * g / 1000
        market = kg * 0.4 if name == "llama-7b-sft" else kg  # a declared 60 % renewable share
        runs.append(
            {
                "run_id": hashlib.md5(name.encode()).hexdigest(),  # MLflow's: 32 hex digits
                "run_name": name,
                "experiment": exp,
                "user": user,
                "start_utc": f"{month}-{8 + i:02d}T09:00:00+00:00",
                "month": month,
                "location": loc,
                "zone": zone,
                "provider": provider,
                "region": loc.partition(":")[2] or None,
                "scope": scope,
                "measurement": measurement,
                "gpu_model": "NVIDIA H100 80GB HBM3",
                "gpu_count": gpus,
                "gpu_hours": gpus * hours,
                "duration_s": hours * 3600,
                "it_energy_kwh": it,
                "energy_kwh": kwh,
                "co2e_kg": kg,
                "co2e_market_kg": market,
                "cost_usd": None if price is None else price * gpus * hours,
                "embodied_co2e_kg": gpus * hours * 0.0043,
                "pue": pue,
                "grid_intensity_g_per_kwh": g,
                "basis": basis,
                "hosts": 2 if gpus == 16 else 1,
                "simulated": False,
                "included": True,
                "has_greenml": True,
                "status": "finished",
                "flags": [],
            }
        )
    sim = {
        **runs[0],
        "run_id": hashlib.md5(b"ci-smoke").hexdigest(),
        "run_name": "ci-smoke (simulated GPUs)",
        "measurement": "simulated",
        "simulated": True,
        "included": False,
    }
    nog = {k: None for k in runs[0]} | {
        "run_id": hashlib.md5(b"notebook-scratch").hexdigest(),
        "run_name": "notebook-scratch",
        "experiment": "vit-sweep",
        "month": "2026-03",
        "start_utc": "2026-03-02T15:12:00+00:00",
        "simulated": False,
        "included": False,
        "has_greenml": False,
        "status": "finished",
        "flags": [],
    }

    def figures(rs):
        costs = [r["cost_usd"] for r in rs if r["cost_usd"] is not None]
        return {
            "runs": len(rs),
            "gpu_hours": sum(r["gpu_hours"] for r in rs),
            "energy_mwh": sum(r["energy_kwh"] for r in rs) / 1000,
            "co2e_t": sum(r["co2e_kg"] for r in rs) / 1000,
            "co2e_market_t": sum(r["co2e_market_kg"] for r in rs) / 1000,
            "cost_usd": sum(costs) if costs else None,
        }

    def by(key):
        groups = defaultdict(list)
        for r in runs:
            groups[r[key]].append(r)
        return groups

    total = figures(runs)
    mix = defaultdict(float)
    for r in runs:
        _, fossil, nuclear, renewable = MIX[r["zone"][:2]]
        for part, share in (("fossil", fossil), ("nuclear", nuclear), ("renewable", renewable)):
            mix[part] += r["energy_kwh"] / 1000 * share
    months = []
    for month, rs in sorted(by("month").items()):
        by_loc = defaultdict(float)
        for r in rs:
            by_loc[r["location"]] += r["co2e_kg"] / 1000
        months.append({"month": month, **figures(rs), "co2e_t_by_location": dict(by_loc)})
    what_if = []
    for r in runs:
        if r["provider"]:
            best, g, price = BEST[r["provider"]]
            what_if.append(
                {
                    "run_id": r["run_id"],
                    "provider": r["provider"],
                    "location": r["location"],
                    "best_location": best,
                    "co2e_t": r["co2e_kg"] / 1000,
                    "best_co2e_t": r["energy_kwh"] * g / 1e6,
                    "cost_usd": r["cost_usd"],
                    "best_cost_usd": price * r["gpu_hours"],
                }
            )
    sources = []
    for loc, (zone, _, basis, pue, g, price, _) in LOCATIONS.items():
        used = [r["run_id"] for r in runs if r["location"] == loc]
        sources.append(
            {
                "factor": "grid_intensity",
                "value": g,
                "unit": "gCO2e/kWh",
                "zone": zone,
                "year": 2023 if basis == "lifecycle" else 2022,
                "source": "Ember / Our World in Data, via CodeCarbon 3.3.2"
                if basis == "lifecycle"
                else "US EPA eGRID2022 (subregion annual output emission rate)",
                "licence": "CC BY 4.0" if basis == "lifecycle" else "public domain",
                "basis": basis,
                "runs": used,
            }
        )
        sources.append(
            {
                "factor": "pue",
                "value": pue,
                "unit": "",
                "zone": loc,
                "year": None,
                "source": "provider sustainability report"
                if ":" in loc
                else "facility meter, 2025 average",
                "licence": None,
                "runs": used,
            }
        )
        if price is not None:
            sources.append(
                {
                    "factor": "price",
                    "value": price,
                    "unit": "USD/GPU-h",
                    "zone": loc,
                    "year": None,
                    "source": "on-demand list price, as of 2026-01-21",
                    "licence": None,
                    "runs": used,
                }
            )
    return {
        "schema_version": 1,
        "header": {
            "organisation": "Example Lab",
            "period": {"since": "2026-01-01", "until": "2026-06-30"},
            "generated_utc": "2026-07-01T08:00:00+00:00",
            "greenml_version": "0.1.0",
            "tracking_uri": "https://***@mlflow.example.org",
            "experiments": [],
            "runs": len(runs),
            "runs_considered": len(runs) + 2,
            "inputs_sha256": "3f1c9a0d2b7e4f6a8c5d1e0b9a7f3c2d4e6b8a0c1d3f5e7a9b2c4d6e8f0a1b3c",
            "group_by": "experiment",
            "include_simulated": False,
        },
        "totals": {
            **{k: v for k, v in total.items() if k != "energy_mwh"},
            "it_energy_mwh": sum(r["it_energy_kwh"] for r in runs) / 1000,
            "energy_mwh": total["energy_mwh"],
            "runs_without_price": sum(r["cost_usd"] is None for r in runs),
            "embodied_co2e_t": sum(r["embodied_co2e_kg"] for r in runs) / 1000,
        },
        "esrs_e1_5": {
            "energy_mwh": total["energy_mwh"],
            "fossil_mwh": mix["fossil"],
            "nuclear_mwh": mix["nuclear"],
            "renewable_mwh": mix["renewable"],
            "unknown_mwh": 0.0,
            "mix_sources": [
                {
                    "zone": z,
                    "mix_of": z[:2],
                    "year": 2023,
                    "source": "CodeCarbon 3.3.2 global_energy_mix.json (Ember / OWID)",
                }
                for z in ("FR", "US-CA", "US-IA", "US-VA")
            ],
            "zones_without_own_mix": ["US-CA", "US-IA", "US-VA"],
            "market_instruments": [
                {
                    "run_id": r["run_id"],
                    "co2e_t": r["co2e_kg"] / 1000,
                    "co2e_market_t": r["co2e_market_kg"] / 1000,
                }
                for r in runs
                if r["co2e_market_kg"] != r["co2e_kg"]
            ],
        },
        "scopes": [
            {
                "scope": "scope2",
                "label": "Scope 2 (own or colocated hardware)",
                **figures([r for r in runs if r["scope"] == "scope2"]),
            },
            {
                "scope": "scope3-cat1",
                "label": "Scope 3 Category 1 (cloud services)",
                **figures([r for r in runs if r["scope"] == "scope3-cat1"]),
            },
        ],
        "basis": [
            {"basis": b, "label": label, **figures([r for r in runs if r["basis"] == b])}
            for b, label in (
                ("lifecycle", "lifecycle factors (country averages)"),
                ("combustion", "combustion-only factors (US eGRID subregions)"),
            )
        ],
        "basis_note": "Location-based CO2e is shown by emission-factor basis and never added "
        "across bases without saying so: a Scope 2 inventory commonly expects combustion-only "
        "grid factors; lifecycle factors also count upstream emissions and are higher.",
        "groups": sorted(
            ({"group": g, **figures(rs)} for g, rs in by("experiment").items()),
            key=lambda g: -g["co2e_t"],
        ),
        "months": months,
        "top_co2e": sorted(runs, key=lambda r: -r["co2e_kg"])[:10],
        "top_cost": sorted((r for r in runs if r["cost_usd"]), key=lambda r: -r["cost_usd"])[:10],
        "data_quality": {
            "energy_share": {
                m: sum(r["energy_kwh"] for r in runs if r["measurement"] == m)
                / (total["energy_mwh"] * 1000)
                for m in ("counter", "sampled", "estimated", "imported")
            },
            "assumed_location": [],
            "missing_price": [r["run_id"] for r in runs if r["cost_usd"] is None],
            "without_greenml": [
                {
                    "run_id": nog["run_id"],
                    "run_name": nog["run_name"],
                    "experiment": nog["experiment"],
                }
            ],
            "simulated": [sim["run_id"]],
            "simulated_excluded": True,
            "incomplete": [],
            "uncertainty": "Energy read from GPU energy counters is within 0.5 % of the "
            "hardware's own accounting; sampled GPUs are integrated from power readings; "
            "estimated devices can be off by tens of percent.",
            "assumptions": [
                "Energy is facility energy: the measured IT energy times the PUE.",
                "Grid intensities are annual averages of each run's zone (location-based).",
                "Cloud runs are Scope 3 Category 1; own hardware is Scope 2.",
                "Embodied emissions are shown apart and never added to the GHG totals.",
            ],
        },
        "what_if": what_if,
        "what_if_note": "HYPOTHETICAL. The same facility energy in the lowest-intensity region "
        "the run's provider offers; latency, data residency and availability may rule it out.",
        "sources": sources,
        "runs": [*runs, sim, nog],
    }


# -- Chromium and the PNG -------------------------------------------------------------------


def screenshot(html_path: Path, png: Path, height: int) -> float:
    """Chromium's screenshot of the page, ``WIDTH`` x ``height``; returns the seconds taken."""
    import time

    start = time.monotonic()
    subprocess.run(
        [
            CHROMIUM or "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={png}",
            f"--window-size={WIDTH},{height}",
            html_path.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=TIMEOUT_S,
    )
    return time.monotonic() - start


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the PNG signature and IHDR chunk (stdlib only)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def pixels(png: Path):
    """The screenshot as a (height, width, 3) uint8 array (Pillow and numpy: matplotlib's own
    dependencies)."""
    import numpy as np
    from PIL import Image

    with Image.open(png) as image:
        return np.asarray(image.convert("RGB"))


def colour_count(image, colour: tuple[int, int, int]) -> int:
    """How many pixels are exactly ``colour``."""
    return int((image == colour).all(axis=2).sum())


def axis_lines(image, length: int = 300) -> list[int]:
    """The rows holding a dark horizontal line at least ``length`` pixels long: the charts'
    x axes (table rules and heading rules are grey or green, text is never that long)."""
    import numpy as np

    dark = image.max(axis=2) < 100
    out = []
    for y in np.nonzero(dark.sum(axis=1) >= length)[0]:
        edges = np.diff(np.concatenate(([0], dark[y].astype(np.int8), [0])))
        starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
        if (ends - starts).max() >= length:
            out.append(int(y))
    return out


def distinct(image) -> int:
    """How many distinct colours the image holds."""
    import numpy as np

    flat = image.reshape(-1, 3).astype(np.uint32)
    return len(np.unique(flat[:, 0] << 16 | flat[:, 1] << 8 | flat[:, 2]))


def bands(ys: list[int], gap: int) -> list[tuple[int, int]]:
    """Runs of row numbers with gaps under ``gap`` (a line a few pixels thick is one)."""
    out: list[tuple[int, int]] = []
    for y in sorted(ys):
        if out and y - out[-1][1] < gap:
            out[-1] = (out[-1][0], y)
        else:
            out.append((y, y))
    return out


# -- the tests ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(to_html(sample_summary()), encoding="utf-8")
    return path


def test_the_top_of_the_report_renders(page, tmp_path):
    png = tmp_path / "top.png"
    screenshot(page, png, 3000)
    assert png_size(png.read_bytes()) == (WIDTH, 3000)
    image = pixels(png)
    assert distinct(image) > 50, "the screenshot is (nearly) blank"
    header = image[:250]  # the title and the header's fields: dark text on white
    assert (header.max(axis=2) < 90).sum() > 2000, "no text in the header"
    inked = (image != 255).any(axis=2).mean()
    assert inked > 0.03, inked
    assert image.std() > 20, image.std()


def test_the_three_charts_render(page, tmp_path):
    """A screenshot tall enough for the three charts: three x axes (energy by group,
    monthly emissions, cost against CO2e), each with the charts' fills above it and varied
    content (tick labels, antialiasing) around them."""
    png = tmp_path / "whole.png"
    screenshot(page, png, 9000)
    image = pixels(png)
    axes = bands(axis_lines(image), gap=10)
    assert len(axes) == 3, axes
    for n, (y, _) in enumerate(axes):
        chart = image[max(0, y - 300) : y + 40]  # the plotting area and the tick labels
        green, orange = colour_count(chart, GREEN), colour_count(chart, ORANGE)
        if n < 2:  # bars; in the monthly chart, the second location's stack too
            assert green > 1000 and (n == 0 or orange > 100), (y, green, orange)
        else:  # the scatter's Scope 2 and Scope 3 points
            assert green > 10 and orange > 50, (y, green, orange)
        assert distinct(chart) > 30, y  # axes, labels, antialiasing: not a flat block


def test_the_report_prints(page, tmp_path):
    pdf = tmp_path / "report.pdf"
    subprocess.run(
        [
            CHROMIUM or "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf}",
            page.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=TIMEOUT_S,
    )
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-")
    pages = data.count(b"/Type /Page") - data.count(b"/Type /Pages")
    assert pages >= 3, pages


if __name__ == "__main__":  # the documentation's screenshot
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images/report-sample.png")
    html = out.with_suffix(".html")
    html.write_text(to_html(sample_summary()), encoding="utf-8")
    try:
        seconds = screenshot(html, out, int(sys.argv[2]) if len(sys.argv) > 2 else 3000)
    finally:
        html.unlink()
    print(f"{out} ({out.stat().st_size:,} bytes, {seconds:.1f} s)")
