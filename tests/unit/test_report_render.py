"""The HTML and Markdown reports, from Summary dicts built by hand.

The Summary below is the one ``greenml.report.summarize`` would give for five runs in two
experiments (bert, llama), three months, two locations (FR: own hardware, Scope 2, lifecycle
factors; aws:us-east-1: cloud, Scope 3 Cat. 1, combustion factors), plus a simulated run
and a run without greenml data. Its figures are added up by hand in the comments, and the
expected strings are written out, not computed with the renderers' formatters. Two names are
hostile: a run ``<script>alert(1)</script>`` and a group ``=HYPERLINK("http://x")``; one run's
name holds ``|`` and a newline, which a Markdown table must survive.
"""

from __future__ import annotations

import copy
import html as html_lib
import re
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from greenml.report import charts
from greenml.report.html import to_html
from greenml.report.markdown import md, number, percent, to_markdown, usd

SCRIPT = "<script>alert(1)</script>"
HYPERLINK = '=HYPERLINK("http://x")'
R1, R2, R3, R4, R5 = (f"{c}" * 32 for c in "12345")  # run ids
SIM, NOG = "6" * 32, "7" * 32

# run: (name, experiment, team, month, location, scope, GPU-h, kWh, kg, market kg, USD)
#   R1 "bert|base v2" bert  (no tag) 2026-01 FR            s2   100   120    6.72   6.72  None
#   R2 <script>       bert  nlp      2026-02 aws:us-east-1 s3   240   300  114     60     880
#   R3 llama-ft       llama nlp      2026-02 aws:us-east-1 s3   400   500  190    190    1500.25
#   R4 llama-pt       llama HYPERLNK 2026-03 FR            s2   864  1080   60.48  60.48 2200
#   R5 bert-large     bert  HYPERLNK 2026-03 aws:us-east-1 s3   160   200   76     76     640.5
# totals: 5 runs, 1,764 GPU-h, 2,200 kWh = 2.2 MWh (IT: / PUE 1.25 = 1.76 MWh),
#   447.2 kg = 0.4472 t location-based, 393.2 kg = 0.3932 t market-based,
#   5,220.75 USD over the four priced runs (R1 has no price).


def _run(run_id, name, experiment, month, location, zone, scope, basis, gpu_h, kwh, kg, mkg, usd_):
    provider = "aws" if location.startswith("aws:") else None
    return {
        "run_id": run_id,
        "run_name": name,
        "experiment": experiment,
        "user": "ada",
        "start_utc": f"{month}-10T09:30:00+00:00",
        "month": month,
        "location": location,
        "zone": zone,
        "provider": provider,
        "region": location.partition(":")[2] or None,
        "scope": scope,
        "measurement": "counter",
        "gpu_model": "NVIDIA H100 80GB HBM3",
        "gpu_count": 8,
        "gpu_hours": gpu_h,
        "duration_s": gpu_h / 8 * 3600,
        "it_energy_kwh": kwh / 1.25,
        "energy_kwh": kwh,
        "co2e_kg": kg,
        "co2e_market_kg": mkg,
        "cost_usd": usd_,
        "embodied_co2e_kg": 2.5,
        "pue": 1.25,
        "grid_intensity_g_per_kwh": 56.0 if zone == "FR" else 380.0,
        "basis": basis,
        "hosts": 1,
        "simulated": False,
        "included": True,
        "has_greenml": True,
        "status": "finished",
        "flags": [],
    }


def realistic() -> dict:
    fr, us = (
        ("FR", "FR", "scope2", "lifecycle"),
        ("aws:us-east-1", "US-VA", "scope3-cat1", "combustion"),
    )
    r1 = _run(R1, "bert|base\nv2", "bert", "2026-01", *fr, 100.0, 120.0, 6.72, 6.72, None)
    r2 = _run(R2, SCRIPT, "bert", "2026-02", *us, 240.0, 300.0, 114.0, 60.0, 880.0)
    r3 = _run(R3, "llama-ft", "llama", "2026-02", *us, 400.0, 500.0, 190.0, 190.0, 1500.25)
    r4 = _run(R4, "llama-pt", "llama", "2026-03", *fr, 864.0, 1080.0, 60.48, 60.48, 2200.0)
    r5 = _run(R5, "bert-large", "bert", "2026-03", *us, 160.0, 200.0, 76.0, 76.0, 640.5)
    r5["it_energy_kwh"] = None
    sim = _run(SIM, "sim-smoke", "bert", "2026-03", *fr, 2.0, 1.0, 0.056, 0.056, 1.0)
    sim.update(simulated=True, included=False, measurement="simulated")
    nog = {
        **{k: None for k in r1},
        "run_id": NOG,
        "run_name": "notebook-scratch",
        "experiment": "bert",
        "start_utc": "2026-01-20T12:00:00+00:00",
        "month": "2026-01",
        "simulated": False,
        "included": False,
        "has_greenml": False,
        "status": "finished",
        "flags": [],
    }
    return {
        "schema_version": 1,
        "header": {
            "organisation": "ACME Research",
            "period": {"since": "2026-01-01", "until": "2026-03-31"},
            "generated_utc": "2026-04-01T08:30:00+00:00",
            "greenml_version": "0.1.0",
            "tracking_uri": "http://***@mlflow.acme.internal:5000",
            "experiments": ["bert", "llama"],
            "runs": 5,
            "runs_considered": 7,
            "inputs_sha256": "ab12" * 16,
            "group_by": "tag:team",
            "include_simulated": False,
        },
        "totals": {
            "runs": 5,
            "gpu_hours": 1764.0,
            "it_energy_mwh": 1.76,
            "energy_mwh": 2.2,
            "co2e_t": 0.4472,
            "co2e_market_t": 0.3932,
            "cost_usd": 5220.75,
            "runs_without_price": 1,
            "embodied_co2e_t": 0.0125,
        },
        "esrs_e1_5": {  # FR 1.2 MWh x (8 %, 65 %, 27 %); US 1.0 MWh x (59 %, 18 %, 23 %)
            "energy_mwh": 2.2,
            "fossil_mwh": 0.686,
            "nuclear_mwh": 0.96,
            "renewable_mwh": 0.554,
            "unknown_mwh": 0.0,
            "mix_sources": [
                {"zone": "FR", "mix_of": "FR", "year": 2023, "source": "Ember / OWID (France)"},
                {"zone": "US-VA", "mix_of": "US", "year": 2023, "source": "Ember / OWID (USA)"},
            ],
            "zones_without_own_mix": ["US-VA"],
            "market_instruments": [{"run_id": R2, "co2e_t": 0.114, "co2e_market_t": 0.06}],
        },
        "scopes": [
            {
                "scope": "scope2",
                "label": "Scope 2 (own or colocated hardware)",
                "runs": 2,
                "gpu_hours": 964.0,
                "energy_mwh": 1.2,
                "co2e_t": 0.0672,
                "co2e_market_t": 0.0672,
                "cost_usd": 2200.0,
            },
            {
                "scope": "scope3-cat1",
                "label": "Scope 3 Category 1 (cloud services)",
                "runs": 3,
                "gpu_hours": 800.0,
                "energy_mwh": 1.0,
                "co2e_t": 0.38,
                "co2e_market_t": 0.326,
                "cost_usd": 3020.75,
            },
        ],
        "basis": [
            {"basis": "lifecycle", "label": "lifecycle factors", "co2e_t": 0.0672, "runs": 2},
            {"basis": "combustion", "label": "combustion-only factors", "co2e_t": 0.38, "runs": 3},
        ],
        "basis_note": "Location-based CO2e is shown by emission-factor basis.",
        "groups": [
            {
                "group": "nlp",
                "runs": 2,
                "gpu_hours": 640.0,
                "energy_mwh": 0.8,
                "co2e_t": 0.304,
                "co2e_market_t": 0.25,
                "cost_usd": 2380.25,
            },
            {
                "group": HYPERLINK,
                "runs": 2,
                "gpu_hours": 1024.0,
                "energy_mwh": 1.28,
                "co2e_t": 0.13648,
                "co2e_market_t": 0.13648,
                "cost_usd": 2840.5,
            },
            {
                "group": "(no tag)",
                "runs": 1,
                "gpu_hours": 100.0,
                "energy_mwh": 0.12,
                "co2e_t": 0.00672,
                "co2e_market_t": 0.00672,
                "cost_usd": None,
            },
        ],
        "months": [
            {
                "month": "2026-01",
                "runs": 1,
                "energy_mwh": 0.12,
                "co2e_t": 0.00672,
                "cost_usd": None,
                "co2e_t_by_location": {"FR": 0.00672},
            },
            {
                "month": "2026-02",
                "runs": 2,
                "energy_mwh": 0.8,
                "co2e_t": 0.304,
                "cost_usd": 2380.25,
                "co2e_t_by_location": {"aws:us-east-1": 0.304},
            },
            {
                "month": "2026-03",
                "runs": 2,
                "energy_mwh": 1.28,
                "co2e_t": 0.13648,
                "cost_usd": 2840.5,
                "co2e_t_by_location": {"FR": 0.06048, "aws:us-east-1": 0.076},
            },
        ],
        "top_co2e": [r3, r2, r5, r4, r1],
        "top_cost": [r4, r3, r2, r5],
        "data_quality": {
            "energy_share": {"counter": 0.8, "sampled": 0.15, "estimated": 0.05, "imported": 0.0},
            "assumed_location": [R5],
            "missing_price": [R1],
            "without_greenml": [
                {"run_id": NOG, "run_name": "notebook-scratch", "experiment": "bert"}
            ],
            "simulated": [SIM],
            "simulated_excluded": True,
            "incomplete": [{"run_id": R5, "missing": ["it_energy_kwh"]}],
            "uncertainty": "Counters are within 0.5 %; power models can be off by tens of percent.",
            "assumptions": [
                "Energy is facility energy: IT energy x PUE.",
                "Cloud runs are Scope 3.",
            ],
        },
        "what_if": [  # eu-north-1 at 8 g/kWh: 300 kWh -> 2.4 kg, 500 -> 4, 200 -> 1.6
            {
                "run_id": R2,
                "provider": "aws",
                "location": "aws:us-east-1",
                "best_location": "aws:eu-north-1",
                "co2e_t": 0.114,
                "best_co2e_t": 0.0024,
                "cost_usd": 880.0,
                "best_cost_usd": 800.0,
            },
            {
                "run_id": R3,
                "provider": "aws",
                "location": "aws:us-east-1",
                "best_location": "aws:eu-north-1",
                "co2e_t": 0.19,
                "best_co2e_t": 0.004,
                "cost_usd": 1500.25,
                "best_cost_usd": None,
            },
            {
                "run_id": R5,
                "provider": "aws",
                "location": "aws:us-east-1",
                "best_location": "aws:eu-north-1",
                "co2e_t": 0.076,
                "best_co2e_t": 0.0016,
                "cost_usd": 640.5,
                "best_cost_usd": 582.27,
            },
        ],
        "what_if_note": "HYPOTHETICAL. The same facility energy in the provider's cleanest region.",
        "sources": [
            {
                "factor": "grid_intensity",
                "value": 56.0,
                "unit": "gCO2e/kWh",
                "zone": "FR",
                "year": 2023,
                "source": "Ember / OWID via CodeCarbon 3.3.2",
                "licence": "CC BY 4.0",
                "basis": "lifecycle",
                "runs": [R1, R4],
            },
            {
                "factor": "grid_intensity",
                "value": 380.0,
                "unit": "gCO2e/kWh",
                "zone": "US-VA",
                "year": 2022,
                "source": "US EPA eGRID2022",
                "licence": "public domain",
                "basis": "combustion",
                "runs": [R2, R3, R5],
            },
            {
                "factor": "pue",
                "value": 1.25,
                "unit": "",
                "zone": "aws",
                "year": None,
                "source": "the run's PUE",
                "licence": None,
                "runs": [R1, R2, R3, R4, R5],
            },
            {
                "factor": "price",
                "value": 32.7726,
                "unit": "USD/h",
                "zone": "aws:us-east-1",
                "year": None,
                "source": "AWS price list as of 2026-01-21",
                "licence": None,
                "runs": [R2, R3, R5],
            },
        ],
        "runs": [r1, r2, r3, r4, r5, sim, nog],
    }


def empty() -> dict:
    """A period without runs: no chart has data."""
    s = realistic()
    s["header"]["runs"] = 0
    s["totals"] = {
        "runs": 0,
        "gpu_hours": 0.0,
        "it_energy_mwh": 0.0,
        "energy_mwh": 0.0,
        "co2e_t": 0.0,
        "co2e_market_t": 0.0,
        "cost_usd": None,
        "runs_without_price": 0,
        "embodied_co2e_t": None,
    }
    for key in ("groups", "months", "top_co2e", "top_cost", "what_if", "sources", "runs"):
        s[key] = []
    s["scopes"] = [
        {**sc, "runs": 0, "energy_mwh": 0.0, "co2e_t": 0.0, "co2e_market_t": 0.0}
        for sc in s["scopes"]
    ]
    s["basis"] = []
    return s


# -- reading the outputs back ---------------------------------------------------------------

VOID = {"meta", "br", "hr", "img", "input", "link", "wbr", "col", "source", "area", "base"}


class Tree(HTMLParser):
    """Checks that tags balance, and collects each table's cells by section, every
    attribute, and every id."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.attrs: list[tuple[str, str, str | None]] = []
        self.ids: list[str] = []
        self.sections: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}  # "section/heading" -> rows of cells
        self._heading = ""
        self._capture: list[str] | None = None
        self._row: list[str] | None = None
        self._table = ""

    def handle_starttag(self, tag, attrs):
        self._attrs(tag, attrs)
        if tag not in VOID:
            self.stack.append(tag)
        if tag == "section":
            self.sections.append(dict(attrs)["id"])
            self._heading = ""
        if tag in ("h3",):
            self._capture = []
        if tag == "table":
            self._table = f"{self.sections[-1] if self.sections else ''}/{self._heading}"
            self.tables.setdefault(self._table, [])
        if tag == "tr":
            self._row = []
        if tag in ("td", "th"):
            self._capture = []

    def handle_startendtag(self, tag, attrs):
        self._attrs(tag, attrs)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()
        if tag == "h3" and self._capture is not None:
            self._heading = "".join(self._capture).strip()
            self._capture = None
        if tag in ("td", "th") and self._capture is not None and self._row is not None:
            self._row.append(" ".join("".join(self._capture).split()))
            self._capture = None
        if tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._capture is not None:
            self._capture.append(data)

    def _attrs(self, tag, attrs):
        for name, value in attrs:
            self.attrs.append((tag, name, value))
            if name == "id":
                self.ids.append(value)


def parse_html(text: str) -> Tree:
    tree = Tree()
    tree.feed(text)
    tree.close()
    return tree


def md_tables(text: str) -> dict[str, list[list[str]]]:
    """Each Markdown table's rows of cells (split on unescaped ``|``, header row first),
    under "section/heading" like :class:`Tree`."""
    tables: dict[str, list[list[str]]] = {}
    section = heading = ""
    current: list[list[str]] | None = None
    for line in text.splitlines():
        if line.startswith("## "):
            section, heading = line[3:], ""
        elif line.startswith("### "):
            heading = line[4:]
        if line.startswith("| "):
            if current is None:
                current = tables.setdefault(f"{section}/{heading}", [])
            cells = re.split(r"(?<!\\)\|", line.strip()[1:-1])
            if not all(re.fullmatch(r"\s*-+:?\s*", c) for c in cells):
                current.append([unmd(c.strip().strip("*")) for c in cells])
        else:
            current = None
    return tables


def unmd(cell: str) -> str:
    """A Markdown cell's text as a reader sees it: escapes and entities undone."""
    return html_lib.unescape(re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", cell))


def rows_of(tables: dict[str, list[list[str]]], where: str) -> list[list[str]]:
    """The rows of the tables whose "section/heading" key matches the regex ``where``."""
    return [r for key, rows in tables.items() if re.match(where, key) for r in rows]


def row(tables: dict[str, list[list[str]]], where: str, first: str) -> list[str]:
    """The one row, in the tables matching ``where``, whose first cell is ``first``."""
    found = [r for r in rows_of(tables, where) if r[0] == first]
    assert len(found) == 1, (where, first, found)
    return found[0]


@pytest.fixture(scope="module")
def outputs() -> tuple[str, str]:
    s = realistic()
    return to_html(s), to_markdown(s)


# -- every figure, in both formats ----------------------------------------------------------


def test_totals_in_both_formats(outputs):
    html, markdown = outputs
    expected = {
        "Runs": "5",
        "GPU-hours": "1,764 h",
        "IT energy": "1.76 MWh",
        "Facility energy": "2.2 MWh",
        "Emissions, location-based": "0.4472 tCO2e",
        "Emissions, market-based": "0.3932 tCO2e",
        "Cost": "5,220.75 USD",
        "Embodied emissions (SCI view)": "0.0125 tCO2e",
    }
    # HTML tables are found by section id, Markdown ones by section title
    for tables, where in ((parse_html(html).tables, "totals/"), (md_tables(markdown), "Totals/")):
        for figure, value in expected.items():
            assert row(tables, where, figure)[1] == value
        assert row(tables, where, "Cost")[2] == "1 run without a price not included"


def test_esrs_e1_5_split_and_mix_in_both_formats(outputs):
    html, markdown = outputs
    expected = {  # share of 2.2 MWh: 0.686 -> 31.18 %, 0.96 -> 43.64 %, 0.554 -> 25.18 %
        "Fossil": ["0.686", "31.2%"],
        "Nuclear": ["0.96", "43.6%"],
        "Renewable": ["0.554", "25.2%"],
        "Unknown (no mix data for the zone)": ["0", "0%"],
        "Total energy consumption": ["2.2", "100%"],
    }
    for tables, where in ((parse_html(html).tables, "energy/"), (md_tables(markdown), "Energy")):
        for source, cells in expected.items():
            assert row(tables, where, source)[1:] == cells
        assert row(tables, where, "US-VA")[1:] == ["US", "2023", "Ember / OWID (USA)"]
        assert row(tables, where, SCRIPT)[1:] == [R2, "0.114", "0.06"]
    sentence = "No mix data of their own for: US-VA; their country's mix is used instead."
    assert sentence.replace("'", "&#x27;") in html and sentence in markdown


def test_dual_reporting_by_scope_in_both_formats(outputs):
    html, markdown = outputs
    expected = {
        "Scope 2 (own or colocated hardware)": ["2", "1.2", "0.0672", "0.0672"],
        "Scope 3 Category 1 (cloud services)": ["3", "1", "0.38", "0.326"],
        "Total": ["5", "2.2", "0.4472", "0.3932"],
    }
    for tables, where in ((parse_html(html).tables, "emissions/"), (md_tables(markdown), "Gross")):
        header = rows_of(tables, where)[0]
        assert header[3:] == ["Location-based (tCO2e)", "Market-based (tCO2e)"]
        for scope, cells in expected.items():
            assert row(tables, where, scope)[1:] == cells
    assert (
        "ESRS E1-6 / GHG Protocol Scope 2" in html
        and "(ESRS E1-6 / GHG Protocol Scope 2)" in markdown
    )


def test_basis_groups_months_top_runs_in_both_formats(outputs):
    html, markdown = outputs
    for tables, sec in (
        (parse_html(html).tables, ("basis/", "breakdown/", "top-runs/")),
        (md_tables(markdown), ("Emission", "Breakdown", "Top")),
    ):
        assert row(tables, sec[0], "combustion-only factors")[1:] == ["3", "0.38"]
        assert row(tables, sec[1], "nlp")[1:] == ["2", "640", "0.8", "0.304", "0.25", "2,380.25"]
        assert row(tables, sec[1], HYPERLINK)[1:] == [
            "2",
            "1,024",
            "1.28",
            "0.1365",
            "0.1365",
            "2,840.50",
        ]
        assert row(tables, sec[1], "(no tag)")[-1] == "n/a (no price)"
        by_month = f"{sec[1]}.*By month$"
        assert row(tables, by_month, "2026-01")[1:] == ["1", "0.12", "0.00672", "n/a (no price)"]
        assert row(tables, by_month, "2026-03")[1:] == ["2", "1.28", "0.1365", "2,840.50"]
        # month x location: FR first (0.0672 t in all), then aws:us-east-1 (0.38 t)
        by_location = rows_of(tables, ".*month and location")
        assert by_location[0] == ["Month", "aws:us-east-1", "FR"]
        assert by_location[1:] == [
            ["2026-01", "-", "0.00672"],
            ["2026-02", "0.304", "-"],
            ["2026-03", "0.076", "0.06048"],
        ]
        top = rows_of(tables, sec[2])
        assert [r[0] for r in top if r[0].isdigit()] == [
            "1",
            "2",
            "3",
            "4",
            "5",
            "1",
            "2",
            "3",
            "4",
        ]
    html_top = parse_html(html).tables
    by_co2e = rows_of(html_top, r"top-runs/By emissions")
    assert by_co2e[1] == [
        "1",
        "llama-ft",
        R3,
        "llama",
        "aws:us-east-1",
        "500",
        "190",
        "190",
        "1,500.25",
    ]
    assert by_co2e[5][1] == "bert|base v2" and by_co2e[5][-1] == "n/a (no price)"


def test_data_quality_what_if_sources_and_run_table(outputs):
    html, markdown = outputs
    for tables, sec in (
        (parse_html(html).tables, ("data-quality/", "what-if/", "sources/", "runs/")),
        (md_tables(markdown), ("Data", "What", "Method", "All")),
    ):
        assert row(tables, sec[0], "counter")[1] == "80%"
        assert row(tables, sec[0], "estimated")[1] == "5%"
        assert row(tables, sec[0], "notebook-scratch")[1:] == [NOG, "bert"]
        assert row(tables, sec[1], SCRIPT)[1:] == [
            R2,
            "aws",
            "aws:us-east-1",
            "0.114",
            "aws:eu-north-1",
            "0.0024",
            "-0.1116",
            "880.00",
            "800.00",
            "-80.00",
        ]
        assert row(tables, sec[1], "llama-ft")[-3:] == ["1,500.25", "n/a (no price)", "n/a"]
        # totals: 0.38 -> 0.008 t; cost over R2 and R5 only: 1,520.50 -> 1,382.27
        assert row(tables, sec[1], "Total (3 runs)")[4:] == [
            "0.38",
            "",
            "0.008",
            "-0.372",
            "1,520.50",
            "1,382.27",
            "-138.23",
        ]
        price = row(tables, sec[2], "price")
        assert price[1] == "32.7726" and price[2] == "USD/h"
        assert price[-1] == f"3: {R2}, {R3}, {R5}"
        fr = [r for r in rows_of(tables, sec[2]) if r[3] == "FR"]
        assert fr[0][1:] == [
            "56",
            "gCO2e/kWh",
            "FR",
            "2023",
            "Ember / OWID via CodeCarbon 3.3.2",
            "CC BY 4.0",
            "lifecycle",
            f"2: {R1}, {R4}",
        ]
        runs = rows_of(tables, sec[3])
        assert len(runs) == 1 + 7  # the header, then every run considered
        assert row(tables, sec[3], "sim-smoke")[-2] == "no (simulated)"
        assert row(tables, sec[3], "notebook-scratch")[-2] == "no (no greenml data)"
        assert row(tables, sec[3], "llama-pt")[-2] == "yes"
        assert row(tables, sec[3], "bert|base v2")[19] == "n/a (no price)"
    for text in (html_lib.unescape(html), markdown):  # as a reader sees them
        assert "1 simulated run (greenml's simulated hardware, not measurements) excluded" in text
        assert "Counters are within 0.5 %" in text
        assert f"bert-large ({R5})" in text  # the assumed location, by name and id
        assert "HYPOTHETICAL" in text


def test_header_in_both_formats(outputs):
    html, markdown = outputs
    for label, value in (
        ("Organisation", "ACME Research"),
        ("Period", "2026-01-01 to 2026-03-31, inclusive"),
        ("Generated", "2026-04-01 08:30:00 UTC"),
        ("greenml version", "0.1.0"),
        ("Tracking store", "http://***@mlflow.acme.internal:5000"),
        ("Runs in the totals", "5"),
        ("Runs considered", "7"),
        ("Grouped by", "tag 'team'"),
        ("Inputs hash (SHA-256)", "ab12" * 16),
    ):
        escaped = value.replace("'", "&#x27;")
        assert f"<dt>{label}</dt><dd>{escaped}</dd>" in html
        assert f"- **{label}:** {md(value)}" in markdown


def test_sections_come_in_the_disclosure_order(outputs):
    html, markdown = outputs
    order = [
        "totals",
        "energy",
        "emissions",
        "basis",
        "breakdown",
        "top-runs",
        "data-quality",
        "what-if",
        "sources",
        "runs",
    ]
    assert parse_html(html).sections == order
    titles = [line[3:] for line in markdown.splitlines() if line.startswith("## ")]
    assert titles == [
        "Totals",
        "Energy consumption and mix (ESRS E1-5)",
        "Gross emissions: Scope 2 and Scope 3 Category 1 (ESRS E1-6 / GHG Protocol Scope 2)",
        "Emission-factor basis",
        "Breakdown by tag 'team' and by month",
        "Top runs",
        "Data quality, assumptions and limitations (ESRS 2 MDR-M)",
        "What-if: the lowest-intensity regions",
        "Methodology and sources",
        "All runs",
    ]


# -- user text is inert ---------------------------------------------------------------------


def test_html_escapes_every_user_text(outputs):
    html, _ = outputs
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "=HYPERLINK(&quot;http://x&quot;)" in html
    assert HYPERLINK not in html  # the quotes are escaped too


def test_html_has_no_script_no_outside_reference(outputs):
    html, _ = outputs
    tree = parse_html(html)
    for tag, name, value in tree.attrs:
        assert not name.startswith("on"), (tag, name)
        if name in ("href", "src", "xlink:href", "action", "data", "poster", "srcset"):
            assert value and value.startswith(("#", "data:")), (tag, name, value)
        if name == "style":
            assert "url(" not in value or "url(#" in value, (tag, value)
    lower = html.lower()
    for forbidden in (
        "<script",
        "<link",
        "@import",
        "<iframe",
        "<object",
        "<embed",
        "<img",
        "javascript:",
        "url(http",
        "url(//",
    ):
        assert forbidden not in lower, forbidden
    assert re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", lower) is None
    csp = [v for tag, name, v in tree.attrs if tag == "meta" and name == "content"]
    assert "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'" in csp


def test_html_tags_balance_and_ids_are_unique(outputs):
    html, _ = outputs
    assert html.startswith('<!DOCTYPE html>\n<html lang="en">')
    tree = parse_html(html)
    assert tree.errors == []
    assert tree.stack == []
    assert len(tree.ids) == len(set(tree.ids)), "an id appears twice (two charts' SVG ids?)"


def test_markdown_neutralises_user_text(outputs):
    _, markdown = outputs
    assert "<script" not in markdown.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markdown
    # the run whose name holds "|" and a newline: one cell, on one line
    assert "bert\\|base v2" in markdown
    assert "bert|base" not in markdown


def test_markdown_link_emphasis_and_blocks_stay_text():
    s = realistic()
    s["runs"][2]["run_name"] = "[click](javascript:alert(1)) **bold** `code` ![i](x.png)"
    s["data_quality"]["assumptions"] = ["# not a heading", "- not a list", "1. not a list"]
    markdown = to_markdown(s)
    assert (
        "\\[click\\](javascript:alert(1)) \\*\\*bold\\*\\* \\`code\\` !\\[i\\](x.png)" in markdown
    )
    assert "- \\# not a heading" in markdown and "- \\- not a list" in markdown
    assert "- 1\\. not a list" in markdown


def _markdown_it():
    try:
        from markdown_it import MarkdownIt
    except ImportError:
        return None
    return MarkdownIt("commonmark", {"html": True}).enable("table")


@pytest.mark.skipif(_markdown_it() is None, reason="markdown-it-py is not installed")
def test_markdown_rendered_with_raw_html_on_has_no_markup_from_user_text():
    """A renderer that passes raw HTML through (the worst case, unlike GitHub's sanitiser):
    user text still comes out as text."""
    s = realistic()
    s["runs"][2]["run_name"] = "[click](javascript:alert(1)) **bold** <b>b</b>"
    s["top_co2e"][0] = s["runs"][2]
    rendered = _markdown_it().render(to_markdown(s))
    assert "<script" not in rendered and "<b>" not in rendered
    assert "<a " not in rendered and "<strong>bold" not in rendered and "<img" not in rendered
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered
    assert "[click](javascript:alert(1)) **bold** &lt;b&gt;b&lt;/b&gt;" in rendered
    tables = re.findall(r"<table>.*?</table>", rendered, flags=re.DOTALL)
    assert len(tables) >= 10
    run_table = tables[-1]
    header, *lines = run_table.split("</tr>")[:-1]
    assert len(re.findall(r"<th[ >]", header)) == 24
    for line in lines:  # every row has as many cells as the header
        assert len(re.findall(r"<td[ >]", line)) == 24, line


# -- charts ---------------------------------------------------------------------------------


def test_three_charts_inline_when_there_is_data(outputs):
    html, _ = outputs
    assert html.count("<svg") == 3
    for key, title in (
        ("groups", "Energy by tag &#x27;team&#x27;"),
        ("monthly", "Monthly emissions by location (location-based)"),
        ("cost_co2e", "Cost and emissions per run"),
    ):
        figure = html.split(f'<figure class="chart" id="chart-{key}">')[1].split("</figure>")[0]
        assert figure.lstrip().startswith('<svg role="img" aria-label="')
        assert f"<title>{title}" not in figure  # the title element holds the text alternative
        assert "<title>" in figure and "<figcaption>" in figure
    # the text alternatives carry the figures, in words
    assert "the highest month is 2026-02 with 0.304 tCO2e" in html
    assert "the largest is " in html and "with 1.28 MWh" in html
    assert "for 4 runs: emissions from 60.48 to 190 kgCO2e, cost from 640.5 to 2,200 USD" in html


def test_no_chart_but_a_sentence_when_there_is_no_data():
    html, markdown = to_html(empty()), to_markdown(empty())
    assert "<svg" not in html
    assert "No monthly emissions to chart" in html
    assert "No energy by tag &#x27;team&#x27; to chart" in html
    assert "No cost-versus-emissions chart" in html
    tree = parse_html(html)
    assert tree.errors == [] and tree.stack == []
    for text in (html, markdown):
        assert "n/a (no run has a price)" in text
        assert "n/a (no embodied-emissions data)" in text
    assert "No run in the period." in markdown


def test_charts_are_self_contained_svg():
    for chart in charts.charts(realistic()):
        svg = chart.svg
        assert svg is not None and svg.startswith("<svg ") and svg.endswith("</svg>")
        for forbidden in ("<?xml", "<!DOCTYPE", "<!--", "xmlns", "<script", "<image", "<text"):
            assert forbidden not in svg, (chart.key, forbidden)
        assert re.search(r'(href|src)="(?!#)', svg) is None  # nothing outside the SVG
        ids = re.findall(r'\bid="([^"]+)"', svg)
        assert ids and all(i.startswith(f"{chart.key}-") for i in ids)
        refs = re.findall(r'href="#([^"]+)"|url\(#([^)]+)\)', svg)
        assert {a or b for a, b in refs} <= set(ids)  # every reference resolves inside the SVG
        assert "Monthly" in chart.title or "Energy" in chart.title or "Cost" in chart.title


def test_charts_are_deterministic_and_survive_hostile_labels():
    s = realistic()
    assert to_html(s) == to_html(copy.deepcopy(s))
    s["months"][0]["co2e_t_by_location"] = {r"$\frac{$": 0.001, "<b>&": 0.002}
    s["groups"][0]["group"] = "$x^$"
    s["runs"][0].update(scope="$", cost_usd=1.0)
    for chart in charts.charts(s):  # mathtext would fail on these; they are drawn as text
        assert chart.svg is not None


def test_a_dense_scatter_is_an_embedded_bitmap_not_a_fetch():
    s = realistic()
    run = s["runs"][1]
    s["runs"] = [
        {**run, "run_id": f"{i:032d}", "co2e_kg": 1.0 + i, "cost_usd": 2.0 + i}
        for i in range(charts.RASTERIZE_ABOVE + 1)
    ]
    svg = charts.cost_vs_co2e(s).svg
    assert svg is not None and svg.count("<image") == 1
    assert 'href="data:image/png;base64,' in svg and "xlink" not in svg
    assert re.search(r'(href|src)="(?!#|data:image/png;base64,)', svg) is None


def test_many_locations_and_groups_are_lumped_into_other():
    s = realistic()
    s["months"][0]["co2e_t_by_location"] = {f"loc-{i:02d}": 0.001 * (i + 1) for i in range(20)}
    s["groups"] = [{**s["groups"][0], "group": f"g{i}", "energy_mwh": 1.0 + i} for i in range(30)]
    monthly, groups, _ = charts.charts(s)
    assert "split by 22 locations" in monthly.alt  # 20 in January, FR and aws:us-east-1
    assert "for 30 tag 'team' groups; the largest is g29 with 30 MWh" in groups.alt
    markdown = to_markdown(s)  # over six locations: one row per month and location
    assert "| 2026-01 | loc-19 | 0.02 |" in markdown


def test_importing_the_renderers_does_not_import_matplotlib():
    code = (
        "import sys; import greenml.report.html, greenml.report.markdown, greenml.report.charts; "
        "print('matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- number formats -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "n/a"),
        (float("nan"), "n/a"),
        (0.0, "0"),
        (0.4, "0.4"),
        (1234.5678, "1,235"),
        (123456.7, "123,457"),
        (0.0001234567, "0.0001235"),
        (2.0, "2"),
        (-0.1116, "-0.1116"),
        (9.99996, "10"),
        (-0.00001, "-0.00001"),
    ],
)
def test_number_has_four_significant_figures(value, text):
    assert number(value) == text


def test_money_and_shares():
    assert usd(5220.75) == "5,220.75" and usd(0.004) == "0.00" and usd(-0.001) == "0.00"
    assert usd(None, na="n/a (no price)") == "n/a (no price)"
    assert percent(0.8) == "80%" and percent(1 / 3) == "33.3%" and percent(None) == "n/a"
