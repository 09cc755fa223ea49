"""The HTML report's charts: matplotlib figures drawn to inline SVG strings.

Three charts, each from the Summary dict (``greenml.report.summarize``):

* :func:`monthly_emissions`: location-based tCO2e per month, stacked by location;
* :func:`energy_by_group`: facility energy (MWh) per group;
* :func:`cost_vs_co2e`: cost (USD) against CO2e (kg) for each included run with both.

Each returns a :class:`Chart`: the SVG (``None`` when there is nothing to draw) and a text
alternative, which is the sentence shown instead when the chart is empty.

The SVG is made to be pasted into an HTML page: no XML prolog, no DOCTYPE, no namespace
URLs, no comments, glyphs drawn as paths (the page needs no font), and every ``id`` prefixed
with the chart's key so that several charts share a page without clashing ids. Its ``<title>``
and ``aria-label`` carry the text alternative. Nothing in it refers outside the SVG itself.

matplotlib is imported inside the functions (``import greenml`` stays cheap), and the
figures are :class:`matplotlib.figure.Figure` objects with an Agg canvas of their own:
pyplot, and the user's backend, are never touched.
"""

from __future__ import annotations

import html
import io
import math
import re
from dataclasses import dataclass
from typing import Any

from greenml.report.markdown import group_word, number

#: Legend entries and bars shown before the rest are lumped into "other".
MAX_LOCATIONS = 8
MAX_GROUPS = 15
#: Labels longer than this are cut (the tables carry the full text).
MAX_LABEL = 40
#: Above this many points, the scatter's markers are drawn as an embedded bitmap.
RASTERIZE_ABOVE = 2000

_COLORS = (
    "#1b9e77",
    "#d95f02",
    "#7570b3",
    "#e7298a",
    "#66a61e",
    "#e6ab02",
    "#a6761d",
    "#1f78b4",
    "#999999",
)
_SCOPE_COLORS = {"scope2": "#1b9e77", "scope3-cat1": "#d95f02"}


@dataclass(frozen=True)
class Chart:
    """One chart. ``svg`` is ready to inline in HTML, or None when there was no data;
    ``alt`` says in words what the chart shows (or, when empty, why there is none)."""

    key: str
    title: str
    alt: str
    svg: str | None


def charts(summary: dict[str, Any]) -> list[Chart]:
    """The report's three charts, in the order the report shows them."""
    return [monthly_emissions(summary), energy_by_group(summary), cost_vs_co2e(summary)]


def monthly_emissions(summary: dict[str, Any]) -> Chart:
    """Location-based tCO2e per month (``months[].co2e_t_by_location``), stacked by
    location; the largest locations get their own colour, the rest are one "other"."""
    title = "Monthly emissions by location (location-based)"
    months = summary.get("months") or []
    by_location: dict[str, float] = {}
    for m in months:
        for loc, t in (m.get("co2e_t_by_location") or {}).items():
            if _finite(t):
                by_location[str(loc)] = by_location.get(str(loc), 0.0) + t
    if not months or not any(by_location.values()):
        return Chart(
            "monthly",
            title,
            "No monthly emissions to chart: no included run has a "
            "location-based CO2e figure in the period.",
            None,
        )
    ranked = sorted(by_location, key=lambda loc: (-by_location[loc], loc))
    shown = ranked[:MAX_LOCATIONS] if len(ranked) <= MAX_LOCATIONS else ranked[: MAX_LOCATIONS - 1]
    rest = [loc for loc in ranked if loc not in shown]
    labels = [str(m.get("month", "")) for m in months]
    series: list[tuple[str, list[float]]] = []
    for loc in shown:
        series.append((loc, [_value(m, loc) for m in months]))
    if rest:
        other = [sum(_value(m, loc) for loc in rest) for m in months]
        series.append((f"other ({len(rest)} locations)", other))
    totals = [sum(s[1][i] for s in series) for i in range(len(months))]
    peak = max(range(len(months)), key=lambda i: totals[i])
    alt = (
        f"Stacked bar chart of location-based emissions in tCO2e for {len(months)} "
        f"month{'s' if len(months) != 1 else ''} from {labels[0]} to {labels[-1]}, "
        f"split by {len(ranked)} location{'s' if len(ranked) != 1 else ''}; the highest month "
        f"is {labels[peak]} with {number(totals[peak])} tCO2e, and the largest location overall "
        f"is {ranked[0]} with {number(by_location[ranked[0]])} tCO2e. The tables above give "
        "every figure."
    )

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        x = list(range(len(months)))
        bottom = [0.0] * len(months)
        for i, (name, values) in enumerate(series):
            color = _COLORS[-1] if rest and i == len(series) - 1 else _COLORS[i % len(_COLORS)]
            ax.bar(x, values, bottom=bottom, color=color, label=_label(name), width=0.7)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        ax.set_xticks(x, [_label(m) for m in labels], rotation=45 if len(x) > 8 else 0)
        ax.set_xlabel("Month")
        ax.set_ylabel("Emissions (tCO2e, location-based)")
        ax.set_title(title)
        ax.legend(title="Location", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
        _tidy(ax)

    return Chart("monthly", title, alt, _svg("monthly", draw, alt, size=(9.0, 4.2)))


def energy_by_group(summary: dict[str, Any]) -> Chart:
    """Facility energy (MWh) per group (``groups``), largest first, as horizontal bars."""
    group_by = str((summary.get("header") or {}).get("group_by") or "group")
    title = f"Energy by {group_word(group_by)}"
    rows = [
        (str(g.get("group")), float(g["energy_mwh"]))
        for g in summary.get("groups") or []
        if _finite(g.get("energy_mwh"))
    ]
    rows = [r for r in rows if r[1] > 0]
    if not rows:
        return Chart(
            "groups",
            title,
            f"No energy by {group_word(group_by)} to chart: no group has an energy figure.",
            None,
        )
    rows.sort(key=lambda r: (-r[1], r[0]))
    if len(rows) > MAX_GROUPS:
        kept, rest = rows[: MAX_GROUPS - 1], rows[MAX_GROUPS - 1 :]
        rows = [*kept, (f"other ({len(rest)} groups)", sum(r[1] for r in rest))]
    n = len(summary.get("groups") or [])
    alt = (
        f"Horizontal bar chart of facility energy in MWh for {n} "
        f"{group_word(group_by)} group{'s' if n != 1 else ''}; the largest is {rows[0][0]} "
        f"with {number(rows[0][1])} MWh. The table above gives every figure."
    )

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        y = list(range(len(rows)))
        ax.barh(y, [r[1] for r in rows], color=_COLORS[0], height=0.6)
        ax.set_yticks(y, [_label(r[0]) for r in rows])
        ax.invert_yaxis()
        ax.set_xlabel("Facility energy (MWh)")
        ax.set_ylabel(group_word(group_by).capitalize())
        ax.set_title(title)
        _tidy(ax)

    height = min(2.0 + 0.32 * len(rows), 8.0)
    return Chart("groups", title, alt, _svg("groups", draw, alt, size=(9.0, height)))


def cost_vs_co2e(summary: dict[str, Any]) -> Chart:
    """Cost (USD) against location-based CO2e (kg), one point per included run that has
    both, coloured by scope. Axes turn logarithmic when the values span over 1000x."""
    title = "Cost and emissions per run"
    points = [
        (float(r["co2e_kg"]), float(r["cost_usd"]), str(r.get("scope") or "unknown"))
        for r in summary.get("runs") or []
        if r.get("included") and _finite(r.get("co2e_kg")) and _finite(r.get("cost_usd"))
    ]
    if not points:
        return Chart(
            "cost_co2e",
            title,
            "No cost-versus-emissions chart: no included run has both a cost and a CO2e figure.",
            None,
        )
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    log_x, log_y = _wide(xs), _wide(ys)
    alt = (
        f"Scatter plot of cost in USD against location-based emissions in kgCO2e for "
        f"{len(points)} run{'s' if len(points) != 1 else ''}"
        f"{' on logarithmic axes' if log_x or log_y else ''}: emissions from {number(min(xs))} to "
        f"{number(max(xs))} kgCO2e, cost from {number(min(ys))} to {number(max(ys))} USD. The run "
        "table gives every figure."
    )

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        scopes = sorted({p[2] for p in points})
        for i, scope in enumerate(scopes):
            sx = [p[0] for p in points if p[2] == scope]
            sy = [p[1] for p in points if p[2] == scope]
            ax.scatter(
                sx,
                sy,
                s=24,
                edgecolors="white",  # overlapping points stay apart
                linewidths=0.5,
                label=_label(scope),
                color=_SCOPE_COLORS.get(scope, _COLORS[(i + 2) % len(_COLORS)]),
                rasterized=len(points) > RASTERIZE_ABOVE,
            )
        if log_x:
            ax.set_xscale("log")
        if log_y:
            ax.set_yscale("log")
        ax.set_xlabel("Emissions per run (kgCO2e, location-based)")
        ax.set_ylabel("Cost per run (USD)")
        ax.set_title(title)
        ax.legend(title="Scope", fontsize=8)
        _tidy(ax)

    return Chart("cost_co2e", title, alt, _svg("cost_co2e", draw, alt, size=(9.0, 4.2)))


# -- drawing --------------------------------------------------------------------------------


def _svg(key: str, draw: Any, alt: str, *, size: tuple[float, float]) -> str:
    """Draw a figure with ``draw(fig)`` and return it as an inline SVG element."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover - matplotlib is a dependency
        raise ImportError("the HTML report's charts need matplotlib: pip install matplotlib") from e

    rc = {
        "svg.fonttype": "path",  # glyphs as paths: the page needs no font
        "svg.hashsalt": f"greenml-{key}",  # the same summary gives the same SVG
        "font.family": "DejaVu Sans",  # shipped with matplotlib
        "font.size": 9.0,
        "text.usetex": False,
    }
    with matplotlib.rc_context(rc):
        fig = Figure(figsize=size, layout="constrained")
        FigureCanvasAgg(fig)
        draw(fig)
        buf = io.StringIO()
        metadata = {"Date": None, "Creator": None, "Format": None, "Type": None}
        fig.savefig(buf, format="svg", metadata=metadata)
    return _inline(buf.getvalue(), key, alt)


def _inline(svg: str, key: str, alt: str) -> str:
    """matplotlib's SVG document made into an element for an HTML page (see the module
    docstring): prolog, DOCTYPE, comments and namespace URLs out, ids prefixed."""
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<!--.*?-->\s*", "", svg, flags=re.DOTALL)
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg)
    svg = re.sub(r'\bxlink:href="', 'href="', svg)
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{key}-\1"', svg)
    svg = re.sub(r'\bhref="#([^"]+)"', rf'href="#{key}-\1"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", rf"url(#{key}-\1)", svg)
    label = html.escape(alt, quote=True)
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{label}" class="chart" ', 1)
    start = svg.index(">") + 1  # after the opening tag: the title, the SVG's own alternative
    return f"{svg[:start]}\n <title>{label}</title>{svg[start:]}".strip()


def _tidy(ax: Any) -> None:
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.grid(axis="both", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)


# -- helpers ------------------------------------------------------------------------------


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _value(month: dict[str, Any], loc: str) -> float:
    t = (month.get("co2e_t_by_location") or {}).get(loc)
    return float(t) if _finite(t) else 0.0


def _wide(values: list[float]) -> bool:
    """True when the values are all positive and span more than three decades."""
    return min(values) > 0 and max(values) / min(values) > 1000


def _label(text: str) -> str:
    """User text as a matplotlib label: cut to MAX_LABEL, and ``$`` escaped so that a run
    or location name is never parsed as mathtext (which would fail or mislead)."""
    text = " ".join(str(text).split())
    if len(text) > MAX_LABEL:
        text = text[: MAX_LABEL - 1] + "…"
    return text.replace("$", r"\$")
