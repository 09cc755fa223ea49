"""The report as a document of sections, and its Markdown rendering.

:func:`document` turns the Summary dict (``greenml.report.summarize``) into a
:class:`Document`: sections of plain-text blocks (fields, paragraphs, notes, lists, tables,
chart slots) with every number already formatted with its unit. :func:`to_markdown` renders
it as GitHub Markdown, and :func:`greenml.report.html.to_html` as HTML with the charts in
their slots, so the two carry the same figures in the same order.

All text in a document is plain text, much of it the user's (run, experiment, group and
location names, tags, source texts): each renderer escapes every string it writes. In
Markdown that means HTML-significant characters become entities (a run named ``<script>``
shows as text), inline markup characters are backslash-escaped (a name cannot become a link,
emphasis or code), a leading block marker is escaped (a name cannot become a heading or a
list), newlines become spaces and ``|`` is escaped in table cells.

Numbers: four significant figures without trailing zeros (``0.4``, ``1,234``, ``0.0001234``),
money to the cent, shares in percent; ``n/a`` where a figure is unknown, with the reason when
the Summary gives one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

# -- the document ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Fields:
    """Label-value pairs (the report's header)."""

    items: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Heading:
    """A subsection heading within a section."""

    text: str
    anchor: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Note:
    """A paragraph set apart, opening with a label in bold (``HYPOTHETICAL``)."""

    label: str
    text: str
    kind: str = "note"  # "note" or "hypothetical"


@dataclass(frozen=True)
class Items:
    """A bulleted list; ``empty`` is said instead when there are no items."""

    items: tuple[str, ...]
    empty: str = "None."


@dataclass(frozen=True)
class Column:
    name: str
    kind: str = "text"  # "text", "num" (right-aligned), "id" (run ids, hashes: monospace)


@dataclass(frozen=True)
class Table:
    """Rows of formatted cells; ``empty`` is said instead when there are no rows, and
    ``total`` is a last row set apart."""

    columns: tuple[Column, ...]
    rows: tuple[tuple[str, ...], ...]
    empty: str = "None."
    total: tuple[str, ...] | None = None
    wide: bool = False


@dataclass(frozen=True)
class ChartSlot:
    """Where the HTML places a chart of :mod:`greenml.report.charts` (Markdown has none)."""

    key: str  # "monthly", "groups", "cost_co2e"


Block = Fields | Heading | Paragraph | Note | Items | Table | ChartSlot


@dataclass(frozen=True)
class Section:
    anchor: str
    title: str
    disclosure: str  # the disclosure the section answers ("ESRS E1-5"), or ""
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class Document:
    title: str
    header: Fields
    sections: tuple[Section, ...]
    footer: str


# -- formatting -----------------------------------------------------------------------------

NA = "n/a"


def number(x: Any, *, na: str = NA) -> str:
    """Four significant figures, thousands separated, no trailing zeros; ``na`` for None."""
    if not _finite(x):
        return na
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(x)))
    if magnitude < -12:
        return f"{x:.3g}"
    decimals = max(0, 3 - magnitude)
    s = f"{x:,.{decimals}f}"
    s = s.rstrip("0").rstrip(".") if "." in s else s
    return "0" if s in ("-0", "0") else s


def usd(x: Any, *, na: str = NA) -> str:
    """Dollars to the cent, thousands separated."""
    if not _finite(x):
        return na
    s = f"{x:,.2f}"
    return "0.00" if s == "-0.00" else s


def percent(share: Any, *, na: str = NA) -> str:
    """A share (0-1) in percent, to one decimal at most."""
    if not _finite(share):
        return na
    s = f"{share * 100:.1f}".rstrip("0").rstrip(".")
    return f"{'0' if s == '-0' else s}%"


def count(n: Any, *, na: str = NA) -> str:
    return f"{int(n):,}" if _finite(n) else na


def with_unit(text: str, unit: str) -> str:
    """``1.5`` + ``MWh`` -> ``1.5 MWh``; ``n/a`` stays as it is."""
    return text if text.startswith(NA) else f"{text} {unit}"


def when(iso: Any, *, seconds: bool = True) -> str:
    """An ISO 8601 timestamp as ``2026-12-01 20:00:00 UTC`` (the text itself if unparsable)."""
    if not isinstance(iso, str) or not iso:
        return NA
    try:
        t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    if t.tzinfo is not None:
        t = t.astimezone(timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M")


def group_word(group_by: str) -> str:
    """``experiment`` -> ``experiment``; ``gpu_model`` -> ``GPU model``; ``tag:team`` ->
    ``tag 'team'``."""
    if group_by.startswith("tag:"):
        return f"tag '{group_by[4:]}'"
    return {"gpu_model": "GPU model"}.get(group_by, group_by.replace("_", " "))


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _text(x: Any, *, na: str = NA) -> str:
    return na if x is None or x == "" else str(x)


# -- the Summary as a document --------------------------------------------------------------

NO_PRICE = f"{NA} (no price)"
_METHODS = {
    "counter": "read from the hardware's energy counters (NVML, RAPL)",
    "sampled": "power sampled and integrated over time",
    "estimated": "modelled from the hardware's rated power",
    "imported": "imported from CodeCarbon history",
    "simulated": "simulated hardware, not a measurement",
}
_NUM, _ID = "num", "id"


Cell = Callable[[Mapping[str, Any]], str]


def _field(key: str, fmt: Callable[[Any], str] = _text) -> Cell:
    """A cell: ``fmt`` of the item's ``key``."""
    return lambda item: fmt(item.get(key))


def _priced(key: str) -> Cell:
    """A cost cell: USD, or "n/a (no price)"."""
    return lambda item: usd(item.get(key), na=NO_PRICE)


def _records(
    spec: Sequence[tuple[Column, Cell]], items: Iterable[Mapping[str, Any]], **table: Any
) -> Table:
    """A table of ``items``, one row each: ``spec`` pairs each column with its cell, so
    a column and what fills it are written once, side by side."""
    return Table(
        tuple(c for c, _ in spec),
        tuple(tuple(cell(item) for _, cell in spec) for item in items),
        **table,
    )


def document(summary: dict[str, Any]) -> Document:
    """The report's content, in order: header, totals, ESRS E1-5, ESRS E1-6 / Scope 2,
    factor basis, breakdowns, top runs, data quality, what-if, sources, the run table."""
    h = summary.get("header") or {}
    runs = summary.get("runs") or []
    names = {r.get("run_id"): r.get("run_name") for r in runs}
    for r in (summary.get("data_quality") or {}).get("without_greenml") or []:
        names.setdefault(r.get("run_id"), r.get("run_name"))

    def ref(run_id: Any) -> str:
        name = names.get(run_id)
        return f"{name} ({run_id})" if name else _text(run_id)

    organisation = h.get("organisation")
    title = "Energy and emissions of ML training" + (f": {organisation}" if organisation else "")
    sections = (
        _totals(summary),
        _energy(summary, names),
        _emissions(summary),
        _basis(summary),
        _breakdown(summary),
        _top(summary),
        _quality(summary, ref),
        _what_if(summary, names),
        _sources(summary),
        _runs(summary),
    )
    footer = (
        f"Generated by greenml {_text(h.get('greenml_version'))} on "
        f"{when(h.get('generated_utc'))}. The same runs and factors give the same inputs "
        f"hash ({_text(h.get('inputs_sha256'))}): regenerate the report to compare."
    )
    return Document(title, _header(h), sections, footer)


def _header(h: dict[str, Any]) -> Fields:
    period = h.get("period") or {}
    experiments = h.get("experiments") or []
    return Fields(
        (
            ("Organisation", _text(h.get("organisation"), na="not given")),
            (
                "Period",
                f"{_text(period.get('since'), na='the first run')} to "
                f"{_text(period.get('until'), na='now')}, inclusive",
            ),
            ("Generated", when(h.get("generated_utc"))),
            ("greenml version", _text(h.get("greenml_version"))),
            ("Tracking store", _text(h.get("tracking_uri"))),
            ("Experiments", ", ".join(map(str, experiments)) if experiments else "all"),
            ("Runs in the totals", count(h.get("runs"))),
            *(
                (("Runs considered", count(h["runs_considered"])),)
                if "runs_considered" in h
                else ()
            ),
            ("Grouped by", group_word(str(h.get("group_by") or "experiment"))),
            (
                "Simulated runs",
                "included in the totals (--include-simulated)"
                if h.get("include_simulated")
                else "excluded from the totals",
            ),
            ("Inputs hash (SHA-256)", _text(h.get("inputs_sha256"))),
        )
    )


def _totals(s: dict[str, Any]) -> Section:
    t = s.get("totals") or {}
    missing = t.get("runs_without_price") or 0
    if t.get("cost_usd") is None:
        cost, cost_note = f"{NA} (no run has a price)", ""
    else:
        cost = with_unit(usd(t["cost_usd"]), "USD")
        cost_note = (
            f"{count(missing)} run{'s' if missing != 1 else ''} without a price not included"
            if missing
            else "every run priced"
        )
    embodied = t.get("embodied_co2e_t")
    rows = (
        ("Runs", count(t.get("runs")), "in the totals"),
        ("GPU-hours", with_unit(number(t.get("gpu_hours")), "h"), ""),
        ("IT energy", with_unit(number(t.get("it_energy_mwh")), "MWh"), "at the hardware"),
        (
            "Facility energy",
            with_unit(number(t.get("energy_mwh")), "MWh"),
            "IT energy x PUE; the ESRS E1-5 figure",
        ),
        (
            "Emissions, location-based",
            with_unit(number(t.get("co2e_t")), "tCO2e"),
            "average intensity of the grid where the energy was used",
        ),
        (
            "Emissions, market-based",
            with_unit(number(t.get("co2e_market_t")), "tCO2e"),
            "contractual instruments; equals location-based where none were declared",
        ),
        ("Cost", cost, cost_note),
        (
            "Embodied emissions (SCI view)",
            with_unit(number(embodied, na=f"{NA} (no embodied-emissions data)"), "tCO2e"),
            "hardware manufacturing, amortised over its use; never added to the emissions above",
        ),
    )
    table = Table((Column("Figure"), Column("Value", _NUM), Column("Note")), rows)
    return Section("totals", "Totals", "", (table,))


def _energy(s: dict[str, Any], names: dict[Any, Any]) -> Section:
    e = s.get("esrs_e1_5") or {}
    total = e.get("energy_mwh")

    def share(x: Any) -> str:
        return percent(x / total) if _finite(x) and _finite(total) and total else NA

    rows = tuple(
        (label, number(e.get(key)), share(e.get(key)))
        for label, key in (
            ("Fossil", "fossil_mwh"),
            ("Nuclear", "nuclear_mwh"),
            ("Renewable", "renewable_mwh"),
            ("Unknown (no mix data for the zone)", "unknown_mwh"),
        )
    )
    split = Table(
        (Column("Source"), Column("Energy (MWh)", _NUM), Column("Share", _NUM)),
        rows,
        total=("Total energy consumption", number(total), "100%" if total else NA),
    )
    mix = _records(
        (
            (Column("Zone"), _field("zone")),
            (Column("Mix of"), _field("mix_of")),
            (Column("Year", _NUM), _field("year")),
            (Column("Source"), _field("source")),
        ),
        e.get("mix_sources") or [],
        empty="No grid mix data was used.",
    )
    blocks: list[Block] = [
        Paragraph(
            "Energy consumption in MWh (facility energy: IT energy x PUE), split into fossil, "
            "nuclear and renewable sources with the grid mix of each run's zone."
        ),
        split,
        Heading("Grid mix data", "energy-mix"),
        mix,
    ]
    lacking = e.get("zones_without_own_mix") or []
    if lacking:
        blocks.append(
            Paragraph(
                "No mix data of their own for: "
                + ", ".join(map(str, lacking))
                + "; their country's mix is used instead."
            )
        )
    blocks += [
        Heading("Market-based instruments", "energy-instruments"),
        _instruments(e.get("market_instruments") or [], names),
    ]
    return Section("energy", "Energy consumption and mix", "ESRS E1-5", tuple(blocks))


def _instruments(instruments: list[dict[str, Any]], names: dict[Any, Any]) -> Table:
    """The runs whose market-based figure differs from the location-based one, with the
    figures (and the renewable share where the Summary gives it)."""
    known = (
        ("renewable_share", Column("Renewable share", _NUM), percent),
        ("co2e_t", Column("Location-based (tCO2e)", _NUM), number),
        ("co2e_market_t", Column("Market-based (tCO2e)", _NUM), number),
    )
    present = [k for k in known if any(k[0] in i for i in instruments)]
    return _records(
        (
            (Column("Run"), lambda i: _text(names.get(i.get("run_id")))),
            (Column("Run ID", _ID), _field("run_id")),
            *((column, _field(key, fmt)) for key, column, fmt in present),
        ),
        instruments,
        empty="No run declared contractual instruments (supplier rate, PPAs, RECs, guarantees "
        "of origin): the market-based figures equal the location-based ones.",
    )


def _emissions(s: dict[str, Any]) -> Section:
    t = s.get("totals") or {}
    figures = (
        (Column("Runs", _NUM), _field("runs", count)),
        (Column("Energy (MWh)", _NUM), _field("energy_mwh", number)),
        (Column("Location-based (tCO2e)", _NUM), _field("co2e_t", number)),
        (Column("Market-based (tCO2e)", _NUM), _field("co2e_market_t", number)),
    )
    table = _records(
        ((Column("Scope"), lambda sc: _text(sc.get("label") or sc.get("scope"))), *figures),
        s.get("scopes") or [],
        empty="No run in the totals.",
        total=("Total", *(cell(t) for _, cell in figures)),
    )
    intro = Paragraph(
        "Gross emissions in tCO2e, location-based and market-based side by side (GHG Protocol "
        "Scope 2 Guidance, dual reporting). Electricity used by hardware you own or operate is "
        "Scope 2; rented cloud capacity is a purchased service, Scope 3 Category 1."
    )
    return Section(
        "emissions",
        "Gross emissions: Scope 2 and Scope 3 Category 1",
        "ESRS E1-6 / GHG Protocol Scope 2",
        (intro, table),
    )


def _basis(s: dict[str, Any]) -> Section:
    table = _records(
        (
            (Column("Basis"), lambda b: _text(b.get("label") or b.get("basis"))),
            (Column("Runs", _NUM), _field("runs", count)),
            (Column("Location-based (tCO2e)", _NUM), _field("co2e_t", number)),
        ),
        s.get("basis") or [],
        empty="No run in the totals.",
    )
    blocks: list[Block] = [table]
    if s.get("basis_note"):
        blocks.append(Note("Note", str(s["basis_note"])))
    return Section("basis", "Emission-factor basis", "", tuple(blocks))


def _breakdown(s: dict[str, Any]) -> Section:
    word = group_word(str((s.get("header") or {}).get("group_by") or "experiment"))
    groups = _records(
        (
            (Column(word[0].upper() + word[1:]), _field("group")),
            (Column("Runs", _NUM), _field("runs", count)),
            (Column("GPU-hours", _NUM), _field("gpu_hours", number)),
            (Column("Energy (MWh)", _NUM), _field("energy_mwh", number)),
            (Column("Location-based (tCO2e)", _NUM), _field("co2e_t", number)),
            (Column("Market-based (tCO2e)", _NUM), _field("co2e_market_t", number)),
            (Column("Cost (USD)", _NUM), _priced("cost_usd")),
        ),
        s.get("groups") or [],
        empty="No run in the totals.",
    )
    months = s.get("months") or []
    by_month = _records(
        (
            (Column("Month"), _field("month")),
            (Column("Runs", _NUM), _field("runs", count)),
            (Column("Energy (MWh)", _NUM), _field("energy_mwh", number)),
            (Column("Location-based (tCO2e)", _NUM), _field("co2e_t", number)),
            (Column("Cost (USD)", _NUM), _priced("cost_usd")),
        ),
        months,
        empty="No run in the totals.",
    )
    return Section(
        "breakdown",
        f"Breakdown by {word} and by month",
        "",
        (
            Heading(f"By {word}", "by-group"),
            groups,
            ChartSlot("groups"),
            Heading("By month", "by-month"),
            by_month,
            Heading("Location-based emissions by month and location (tCO2e)", "by-location"),
            _month_locations(months),
            ChartSlot("monthly"),
        ),
    )


def _month_locations(months: list[dict[str, Any]]) -> Table:
    """Month x location tCO2e: one column per location up to six locations, else one row per
    month and location."""
    totals: dict[str, float] = {}
    for m in months:
        for loc, t in (m.get("co2e_t_by_location") or {}).items():
            totals[str(loc)] = totals.get(str(loc), 0.0) + (t if _finite(t) else 0.0)
    locations = sorted(totals, key=lambda loc: (-totals[loc], loc))
    empty = "No location-based emissions by location."
    if len(locations) <= 6:
        return Table(
            (Column("Month"), *(Column(loc, _NUM) for loc in locations)),
            tuple(
                (
                    _text(m.get("month")),
                    *(
                        number((m.get("co2e_t_by_location") or {}).get(loc), na="-")
                        for loc in locations
                    ),
                )
                for m in months
                if m.get("co2e_t_by_location")
            ),
            empty=empty,
        )
    return Table(
        (Column("Month"), Column("Location"), Column("Location-based (tCO2e)", _NUM)),
        tuple(
            (_text(m.get("month")), str(loc), number(t))
            for m in months
            for loc, t in sorted(
                (m.get("co2e_t_by_location") or {}).items(),
                key=lambda kv: (-(kv[1] if _finite(kv[1]) else 0.0), str(kv[0])),
            )
        ),
        empty=empty,
    )


_RUN_FIGURES = (
    Column("Energy (kWh)", _NUM),
    Column("Location-based (kgCO2e)", _NUM),
    Column("Market-based (kgCO2e)", _NUM),
    Column("Cost (USD)", _NUM),
)


def _top(s: dict[str, Any]) -> Section:
    def table(rows: list[dict[str, Any]], empty: str) -> Table:
        return Table(
            (
                Column("#", _NUM),
                Column("Run"),
                Column("Run ID", _ID),
                Column("Experiment"),
                Column("Location"),
                *_RUN_FIGURES,
            ),
            tuple(
                (
                    str(i),
                    _text(r.get("run_name")),
                    _text(r.get("run_id")),
                    _text(r.get("experiment")),
                    _text(r.get("location")),
                    number(r.get("energy_kwh")),
                    number(r.get("co2e_kg")),
                    number(r.get("co2e_market_kg")),
                    usd(r.get("cost_usd"), na=NO_PRICE),
                )
                for i, r in enumerate(rows, 1)
            ),
            empty=empty,
        )

    return Section(
        "top-runs",
        "Top runs",
        "",
        (
            ChartSlot("cost_co2e"),
            Heading("By emissions (location-based)", "top-co2e"),
            table(s.get("top_co2e") or [], "No run in the totals."),
            Heading("By cost", "top-cost"),
            table(s.get("top_cost") or [], "No run in the totals has a price."),
        ),
    )


def _quality(s: dict[str, Any], ref: Any) -> Section:
    q = s.get("data_quality") or {}
    shares = q.get("energy_share") or {}
    methods = Table(
        (Column("Measurement"), Column("Share of energy", _NUM), Column("What it means")),
        tuple((str(k), percent(v), _METHODS.get(str(k), "")) for k, v in shares.items()),
        empty="No energy measured.",
    )
    incomplete = Table(
        (Column("Run"), Column("Missing")),
        tuple(
            (ref(r.get("run_id")), ", ".join(map(str, r.get("missing") or [])))
            for r in q.get("incomplete") or []
        ),
    )
    without = _records(
        (
            (Column("Run"), _field("run_name")),
            (Column("Run ID", _ID), _field("run_id")),
            (Column("Experiment"), _field("experiment")),
        ),
        q.get("without_greenml") or [],
    )
    simulated = q.get("simulated") or []
    n_sim = len(simulated)
    sim_text = (
        f"{n_sim} simulated run{'s' if n_sim != 1 else ''} (greenml's simulated hardware, not "
        "measurements) "
        + (
            "excluded from the totals."
            if q.get("simulated_excluded", True)
            else "included in the totals at the user's request (--include-simulated)."
        )
    )
    blocks: tuple[Block, ...] = (
        Heading("Energy by measurement method", "quality-methods"),
        methods,
        Heading("Uncertainty", "quality-uncertainty"),
        Paragraph(_text(q.get("uncertainty"), na="Not stated.")),
        Heading("Runs with an assumed location", "quality-location"),
        Items(tuple(ref(r) for r in q.get("assumed_location") or [])),
        Heading("Runs without a price", "quality-price"),
        Items(tuple(ref(r) for r in q.get("missing_price") or [])),
        Heading("Runs with missing figures", "quality-incomplete"),
        *((Paragraph("Reported with the figures they have."),) if incomplete.rows else ()),
        incomplete,
        Heading("Runs without greenml data", "quality-without"),
        *(
            (Paragraph("Counted and listed here; they have no figures and are not in the totals."),)
            if without.rows
            else ()
        ),
        without,
        Heading("Simulated runs", "quality-simulated"),
        Paragraph(sim_text),
        Items(tuple(ref(r) for r in simulated)),
        Heading("Significant assumptions and limitations", "quality-assumptions"),
        Items(tuple(map(str, q.get("assumptions") or []))),
    )
    return Section(
        "data-quality", "Data quality, assumptions and limitations", "ESRS 2 MDR-M", blocks
    )


def _what_if(s: dict[str, Any], names: dict[Any, Any]) -> Section:
    rows = s.get("what_if") or []

    def diff(a: Any, b: Any, fmt: Any) -> str:
        return fmt(b - a) if _finite(a) and _finite(b) else NA

    table_rows = tuple(
        (
            _text(names.get(w.get("run_id"))),
            _text(w.get("run_id")),
            _text(w.get("provider")),
            _text(w.get("location")),
            number(w.get("co2e_t")),
            _text(w.get("best_location")),
            number(w.get("best_co2e_t")),
            diff(w.get("co2e_t"), w.get("best_co2e_t"), number),
            usd(w.get("cost_usd"), na=NO_PRICE),
            usd(w.get("best_cost_usd"), na=NO_PRICE),
            diff(w.get("cost_usd"), w.get("best_cost_usd"), usd),
        )
        for w in rows
    )
    both_co2e = [w for w in rows if _finite(w.get("co2e_t")) and _finite(w.get("best_co2e_t"))]
    both_cost = [w for w in rows if _finite(w.get("cost_usd")) and _finite(w.get("best_cost_usd"))]
    co2e = sum(w["co2e_t"] for w in both_co2e)
    best = sum(w["best_co2e_t"] for w in both_co2e)
    cost = sum(w["cost_usd"] for w in both_cost)
    best_cost = sum(w["best_cost_usd"] for w in both_cost)
    priced = bool(both_cost)
    total = (
        f"Total ({count(len(rows))} runs)",
        "",
        "",
        "",
        number(co2e) if both_co2e else NA,
        "",
        number(best) if both_co2e else NA,
        number(best - co2e) if both_co2e else NA,
        usd(cost) if priced else NA,
        usd(best_cost) if priced else NA,
        usd(best_cost - cost) if priced else NA,
    )
    table = Table(
        (
            Column("Run"),
            Column("Run ID", _ID),
            Column("Provider"),
            Column("Location"),
            Column("tCO2e", _NUM),
            Column("Lowest-intensity region"),
            Column("tCO2e there", _NUM),
            Column("Difference (tCO2e)", _NUM),
            Column("Cost (USD)", _NUM),
            Column("Cost there (USD)", _NUM),
            Column("Difference (USD)", _NUM),
        ),
        table_rows,
        empty="No run in the totals ran with a provider that offers other regions.",
        total=total if rows else None,
    )
    note = str(s.get("what_if_note") or "").strip()
    for prefix in ("HYPOTHETICAL.", "HYPOTHETICAL:", "Hypothetical.", "Hypothetical:"):
        note = note.removeprefix(prefix).strip()  # the label says it already
    note = note or (
        "The same energy, had each run used the lowest-intensity region its provider offers."
    )
    blocks: list[Block] = [
        Note(
            "HYPOTHETICAL",
            f"{note} None of these figures is in the totals above.",
            "hypothetical",
        ),
        table,
    ]
    if rows:
        blocks.append(Paragraph("The cost totals count only the runs priced in both regions."))
    return Section("what-if", "What-if: the lowest-intensity regions", "", tuple(blocks))


def _sources(s: dict[str, Any]) -> Section:
    sources = s.get("sources") or []
    as_of = any(f.get("as_of") for f in sources)
    basis = any(f.get("basis") for f in sources)
    columns = [
        Column("Factor"),
        Column("Value", _NUM),
        Column("Unit"),
        Column("Zone"),
        Column("Year", _NUM),
        Column("Source"),
        Column("Licence"),
    ]
    if basis:
        columns.append(Column("Basis"))
    if as_of:
        columns.append(Column("As of"))
    columns.append(Column("Runs that used it", _ID))

    def row(f: dict[str, Any]) -> tuple[str, ...]:
        value = f.get("value")
        cells = [
            _text(f.get("factor")),
            f"{value:.10g}" if _finite(value) else _text(value),
            _text(f.get("unit"), na="-"),
            _text(f.get("zone"), na="-"),
            _text(f.get("year"), na="-"),
            _text(f.get("source"), na="not stated"),
            _text(f.get("licence"), na="-"),
        ]
        if basis:
            cells.append(_text(f.get("basis"), na="-"))
        if as_of:
            cells.append(_text(f.get("as_of"), na="-"))
        used = [str(r) for r in f.get("runs") or []]
        cells.append(f"{len(used)}: {', '.join(used)}" if used else "0")
        return tuple(cells)

    intro = Paragraph(
        "Every factor the figures use, each with the runs that used it (full precision). "
        "The run table gives each run's zone, PUE, grid intensity and basis."
    )
    table = Table(tuple(columns), tuple(row(f) for f in sources), empty="No factor was used.")
    return Section("sources", "Methodology and sources", "", (intro, table))


def _runs(s: dict[str, Any]) -> Section:
    q = s.get("data_quality") or {}
    missing_price = set(q.get("missing_price") or [])
    without = {r.get("run_id") for r in q.get("without_greenml") or []}

    def in_totals(r: dict[str, Any]) -> str:
        if r.get("included"):
            return "yes"
        if r.get("simulated"):
            return "no (simulated)"
        if r.get("has_greenml") is False or r.get("run_id") in without:
            return "no (no greenml data)"
        return "no"

    def gpus(r: dict[str, Any]) -> str:
        model, n = r.get("gpu_model"), r.get("gpu_count")
        if model and _finite(n):
            return f"{count(n)} x {model}"
        return _text(model) if model else (count(n) if _finite(n) else NA)

    columns = (
        Column("Run"),
        Column("Run ID", _ID),
        Column("Experiment"),
        Column("User"),
        Column("Start (UTC)"),
        Column("Location"),
        Column("Zone"),
        Column("Scope"),
        Column("Measurement"),
        Column("GPUs"),
        Column("GPU-hours", _NUM),
        Column("IT energy (kWh)", _NUM),
        Column("Energy (kWh)", _NUM),
        Column("PUE", _NUM),
        Column("Grid (gCO2e/kWh)", _NUM),
        Column("Basis"),
        Column("Location-based (kgCO2e)", _NUM),
        Column("Market-based (kgCO2e)", _NUM),
        Column("Embodied (kgCO2e)", _NUM),
        Column("Cost (USD)", _NUM),
        Column("Hosts", _NUM),
        Column("Status"),
        Column("In totals"),
        Column("Flags"),
    )
    rows = tuple(
        (
            _text(r.get("run_name")),
            _text(r.get("run_id")),
            _text(r.get("experiment")),
            _text(r.get("user")),
            when(r.get("start_utc"), seconds=False),
            _text(r.get("location")),
            _text(r.get("zone")),
            _text(r.get("scope")),
            _text(r.get("measurement")),
            gpus(r),
            number(r.get("gpu_hours")),
            number(r.get("it_energy_kwh")),
            number(r.get("energy_kwh")),
            number(r.get("pue")),
            number(r.get("grid_intensity_g_per_kwh")),
            _text(r.get("basis")),
            number(r.get("co2e_kg")),
            number(r.get("co2e_market_kg")),
            number(r.get("embodied_co2e_kg")),
            usd(r.get("cost_usd"), na=NO_PRICE if r.get("run_id") in missing_price else NA),
            count(r.get("hosts"), na="-"),
            _text(r.get("status")),
            in_totals(r),
            ", ".join(map(str, r.get("flags") or [])),
        )
        for r in s.get("runs") or []
    )
    intro = Paragraph("Every run considered, in the totals or not; per-run figures in kWh and kg.")
    table = Table(columns, rows, empty="No run in the period.", wide=True)
    return Section("runs", "All runs", "", (intro, table))


# -- Markdown -------------------------------------------------------------------------------

_MD_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_MD_ESCAPED = frozenset("\\`*_[]|~$")
_MD_BLOCK_START = re.compile(r"^(?:[#+\-=]|\d+[.)])")


def md(text: Any, *, line_start: bool = False) -> str:
    """Plain text as inert Markdown: entities for ``& < >``, backslashes before inline markup
    (``\\ ` * _ [ ] | ~ $``), line breaks made spaces; at the start of a line
    (``line_start``), a leading block marker (``#``, ``-``, ``+``, ``=``, ``1.``) escaped."""
    text = " ".join(str(text).split())
    out = "".join(_MD_ENTITIES.get(c) or (f"\\{c}" if c in _MD_ESCAPED else c) for c in text)
    m = _MD_BLOCK_START.match(out) if line_start else None
    if m:
        k = m.end() - 1  # the marker's last character: "#", "-", or the "." of "1."
        out = f"{out[:k]}\\{out[k:]}"
    return out


def to_markdown(summary: dict[str, Any]) -> str:
    """The report as GitHub Markdown: the HTML report's sections and figures, without charts."""
    doc = document(summary)
    out = [f"# {md(doc.title)}", "", *_md_fields(doc.header), ""]
    for section in doc.sections:
        title = section.title + (f" ({section.disclosure})" if section.disclosure else "")
        out += [f"## {md(title)}", ""]
        for block in section.blocks:
            lines = _md_block(block)
            if lines:
                out += [*lines, ""]
    out += ["---", "", md(doc.footer, line_start=True), ""]
    return "\n".join(out)


def _md_fields(fields: Fields) -> list[str]:
    return [f"- **{md(label)}:** {md(value)}" for label, value in fields.items]


def _md_block(block: Block) -> list[str]:
    if isinstance(block, Fields):
        return _md_fields(block)
    if isinstance(block, Heading):
        return [f"### {md(block.text)}"]
    if isinstance(block, Paragraph):
        return [md(block.text, line_start=True)]
    if isinstance(block, Note):
        return [f"> **{md(block.label)}.** {md(block.text)}"]
    if isinstance(block, Items):
        if not block.items:
            return [md(block.empty, line_start=True)]
        return [f"- {md(item, line_start=True)}" for item in block.items]
    if isinstance(block, Table):
        return _md_table(block)
    return []  # a chart: the Markdown has none


def _md_table(table: Table) -> list[str]:
    if not table.rows:
        return [md(table.empty, line_start=True)]

    def line(cells: Any) -> str:
        return "| " + " | ".join(cells) + " |"

    align = ["---:" if c.kind == _NUM else "---" for c in table.columns]
    lines = [line(md(c.name) for c in table.columns), line(align)]
    lines += [line(md(cell) for cell in row) for row in table.rows]
    if table.total is not None:
        lines.append(line(f"**{md(cell)}**" if cell else "" for cell in table.total))
    return lines
