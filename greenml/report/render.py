"""The Summary in each format. JSON is the Summary itself; CSV is one row per run; HTML and
Markdown (:mod:`greenml.report.html`, :mod:`greenml.report.markdown`) carry the same
figures for people. User text (run names, tags, experiments) is data: escaped in HTML and
Markdown, and in CSV a cell that a spreadsheet would run as a formula is neutralised."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

FORMATS = ("html", "md", "csv", "json")

#: The CSV's columns, one row per run considered (``included`` says whether it is in the
#: totals).
CSV_COLUMNS = (
    "run_id",
    "run_name",
    "experiment",
    "user",
    "start_utc",
    "location",
    "zone",
    "provider",
    "scope",
    "basis",
    "measurement",
    "gpu_model",
    "gpu_count",
    "gpu_hours",
    "duration_s",
    "it_energy_kwh",
    "energy_kwh",
    "co2e_kg",
    "co2e_market_kg",
    "cost_usd",
    "embodied_co2e_kg",
    "pue",
    "grid_intensity_g_per_kwh",
    "grid_source",
    "hosts",
    "simulated",
    "included",
    "status",
)

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def to_json(summary: dict[str, Any]) -> str:
    """The machine-readable whole: ``schema_version``, ``totals``, ``runs``..."""
    return json.dumps(summary, indent=2, default=str) + "\n"


def safe_cell(value: Any) -> str:
    """A CSV cell that no spreadsheet runs as a formula: text starting with ``=``, ``+``,
    ``-``, ``@``, tab or CR gets a leading apostrophe (OWASP's advice). Numbers stay
    numbers (a negative number is not text)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def to_csv(summary: dict[str, Any]) -> str:
    """One row per run (those without greenml data and the simulated ones too, with
    ``included`` false), the figures in the Summary's units (kWh, kg, USD)."""
    out = io.StringIO()
    # RFC 4180's CRLF rows: the csv module quotes a cell holding any character of the line
    # terminator, so a run named "a\rb" is quoted as one named "a\nb" is (with "\n" rows a
    # bare CR went unquoted and split the row in readers)
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for run in summary["runs"]:
        writer.writerow([safe_cell(run.get(c)) for c in CSV_COLUMNS])
    return out.getvalue()


def to_html(summary: dict[str, Any]) -> str:
    from greenml.report.html import to_html as render

    return render(summary)


def to_markdown(summary: dict[str, Any]) -> str:
    from greenml.report.markdown import to_markdown as render

    return render(summary)


def render(summary: dict[str, Any], fmt: str) -> str:
    """The Summary as ``fmt`` (one of :data:`FORMATS`)."""
    return {"html": to_html, "md": to_markdown, "csv": to_csv, "json": to_json}[fmt](summary)
