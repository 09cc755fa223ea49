"""The report as one self-contained HTML file.

:func:`to_html` renders the document of :func:`greenml.report.markdown.document` (the same
sections and figures as the Markdown), with the charts of :mod:`greenml.report.charts` inline
as SVG in their slots. The file needs nothing else: CSS inline, no JavaScript, no fonts, no
image or link to fetch; a Content-Security-Policy meta tag forbids scripts and outside
requests even so. It prints on A4 (the run table on landscape pages), and every text it
writes goes through ``html.escape(..., quote=True)``.
"""

from __future__ import annotations

import html
from typing import Any

from greenml.report import charts as charts_module
from greenml.report.markdown import (
    Block,
    ChartSlot,
    Fields,
    Heading,
    Items,
    Note,
    Paragraph,
    Section,
    Table,
    document,
)

#: No script, nothing fetched: only inline styles, and data: images (a dense scatter's bitmap).
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'"

CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans",
  sans-serif; color: #1a1a1a; background: #fff; margin: 0 auto; max-width: 1120px;
  padding: 24px; }
h1 { font-size: 1.6em; margin: 0 0 .5em; }
h2 { font-size: 1.3em; border-bottom: 2px solid #2e7d32; padding-bottom: .2em;
  margin: 2em 0 .6em; }
h3 { font-size: 1.05em; margin: 1.4em 0 .4em; }
.disclosure { font-size: .68em; font-weight: 600; color: #2e7d32; border: 1px solid #2e7d32;
  border-radius: 3px; padding: 0 .4em; margin-left: .6em; vertical-align: middle;
  white-space: nowrap; }
dl.fields { display: grid; grid-template-columns: max-content 1fr; gap: .15em 1.2em;
  margin: 0; }
dl.fields dt { font-weight: 600; }
dl.fields dd { margin: 0; overflow-wrap: anywhere; }
nav { margin: 1.2em 0; font-size: .95em; }
nav ol { columns: 2; margin: .3em 0; }
nav a { color: #1b5e20; }
table { border-collapse: collapse; min-width: 60%; margin: .4em 0 1em; font-size: .92em; }
th, td { border-bottom: 1px solid #ddd; padding: .25em .5em; text-align: left;
  vertical-align: top; }
thead th { border-bottom: 2px solid #999; background: #f1f5f1; }
th.num, td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num { white-space: nowrap; }
td.id { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .85em;
  overflow-wrap: anywhere; }
tfoot td { font-weight: 700; border-top: 2px solid #999; }
.table-wrap { overflow-x: auto; }
.wide table { font-size: .78em; width: 100%; }
@media screen { .wide td { white-space: nowrap; } }
figure.chart { margin: 1em 0 1.5em; }
figure.chart svg { display: block; max-width: 100%; height: auto; }
figcaption { font-size: .85em; color: #444; margin-top: .3em; }
p.no-chart, p.empty { color: #555; font-style: italic; }
.note { border-left: 4px solid #888; background: #f5f5f5; padding: .5em .8em; margin: .6em 0; }
section.hypothetical { border: 2px dashed #b26a00; padding: 0 1em .5em; margin-top: 2em; }
section.hypothetical h2 { border-bottom-color: #b26a00; }
.note-hypothetical { border-left-color: #b26a00; background: #fff3df; }
footer { margin-top: 3em; padding-top: .5em; font-size: .85em; color: #555;
  border-top: 1px solid #ccc; overflow-wrap: anywhere; }
@page { size: A4; margin: 14mm; }
@page wide { size: A4 landscape; margin: 10mm; }
@media print {
  body { max-width: none; padding: 0; font-size: 10pt; }
  nav { display: none; }
  h2, h3 { break-after: avoid; }
  tr, figure.chart, .note { break-inside: avoid; }
  thead { display: table-header-group; }
  .table-wrap { overflow: visible; }
  #runs { page: wide; }
  .wide table { font-size: 6.5pt; }
  .note, section.hypothetical, thead th { -webkit-print-color-adjust: exact;
    print-color-adjust: exact; }
}
"""


def to_html(summary: dict[str, Any]) -> str:
    """The report as one HTML file: header, contents, the sections, the footer."""
    doc = document(summary)
    charts = {c.key: c for c in charts_module.charts(summary)}
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(CSP)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta name="generator" content="{_e(_generator(summary))}">',
        f"<title>{_e(doc.title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        "<header>",
        f"<h1>{_e(doc.title)}</h1>",
        *_fields(doc.header),
        "</header>",
        '<nav aria-label="Contents">',
        "<strong>Contents</strong>",
        "<ol>",
        *(
            f'<li><a href="#{_e(s.anchor)}">{_e(s.title)}</a>'
            + (f" ({_e(s.disclosure)})" if s.disclosure else "")
            + "</li>"
            for s in doc.sections
        ),
        "</ol>",
        "</nav>",
        "<main>",
    ]
    for section in doc.sections:
        out += _section(section, charts)
    out += [
        "</main>",
        f"<footer><p>{_e(doc.footer)}</p></footer>",
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(out)


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _generator(summary: dict[str, Any]) -> str:
    version = (summary.get("header") or {}).get("greenml_version")
    return f"greenml {version}" if version else "greenml"


def _section(section: Section, charts: dict[str, charts_module.Chart]) -> list[str]:
    hypothetical = any(isinstance(b, Note) and b.kind == "hypothetical" for b in section.blocks)
    cls = ' class="hypothetical"' if hypothetical else ""
    anchor = _e(section.anchor)
    disclosure = (
        f' <span class="disclosure">{_e(section.disclosure)}</span>' if section.disclosure else ""
    )
    out = [
        f'<section id="{anchor}" aria-labelledby="{anchor}-title"{cls}>',
        f'<h2 id="{anchor}-title">{_e(section.title)}{disclosure}</h2>',
    ]
    for block in section.blocks:
        out += _block(block, charts)
    out.append("</section>")
    return out


def _block(block: Block, charts: dict[str, charts_module.Chart]) -> list[str]:
    if isinstance(block, Fields):
        return _fields(block)
    if isinstance(block, Heading):
        return [f'<h3 id="{_e(block.anchor)}">{_e(block.text)}</h3>']
    if isinstance(block, Paragraph):
        return [f"<p>{_e(block.text)}</p>"]
    if isinstance(block, Note):
        return [
            f'<div class="note note-{_e(block.kind)}" role="note">'
            f"<p><strong>{_e(block.label)}.</strong> {_e(block.text)}</p></div>"
        ]
    if isinstance(block, Items):
        if not block.items:
            return [f'<p class="empty">{_e(block.empty)}</p>']
        return ["<ul>", *(f"<li>{_e(item)}</li>" for item in block.items), "</ul>"]
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, ChartSlot):
        chart = charts.get(block.key)
        if chart is None:
            return []
        if chart.svg is None:
            return [f'<p class="no-chart">{_e(chart.alt)}</p>']
        return [
            f'<figure class="chart" id="chart-{_e(chart.key)}">',
            chart.svg,  # made by charts.py: escaped, no script, no outside reference
            f"<figcaption>{_e(chart.alt)}</figcaption>",
            "</figure>",
        ]
    raise TypeError(f"unknown block {block!r}")


def _fields(fields: Fields) -> list[str]:
    return [
        '<dl class="fields">',
        *(f"<dt>{_e(label)}</dt><dd>{_e(value)}</dd>" for label, value in fields.items),
        "</dl>",
    ]


def _table(table: Table) -> list[str]:
    if not table.rows:
        return [f'<p class="empty">{_e(table.empty)}</p>']
    classes = [f' class="{c.kind}"' if c.kind in ("num", "id") else "" for c in table.columns]

    def row(cells: tuple[str, ...], classes: list[str] = classes) -> str:
        tds = (f"<td{k}>{_e(c)}</td>" for k, c in zip(classes, cells, strict=True))
        return f"<tr>{''.join(tds)}</tr>"

    head = "".join(
        f'<th scope="col"{k if c.kind == "num" else ""}>{_e(c.name)}</th>'
        for k, c in zip(classes, table.columns, strict=True)
    )
    out = [
        f'<div class="table-wrap{" wide" if table.wide else ""}">',
        "<table>",
        f"<thead><tr>{head}</tr></thead>",
        "<tbody>",
        *(row(r) for r in table.rows),
        "</tbody>",
    ]
    if table.total is not None:
        labels = [k if k == ' class="num"' else "" for k in classes]  # "Total", not an id
        out.append(f"<tfoot>{row(table.total, labels)}</tfoot>")
    out += ["</table>", "</div>"]
    return out
