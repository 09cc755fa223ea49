"""GPU board power (TDP) and embodied carbon, each value with its source.

Two shipped tables, both plain CSV under ``data/``:

* ``gpus.csv`` -- one row per GPU board: ``model, aliases, tdp_w, form_factor, memory_gb,
  source, year, licence, note``. ``aliases`` is ``|``-separated.
* ``embodied.csv`` -- ``item, kg_co2e, lifetime_years, source, year, licence, note`` with the
  items ``server_base`` (one server without GPUs) and ``gpu`` (per GPU card).

A user table with the same columns can be passed as ``path``; errors name the file, the
row (the line number in the file, the header being line 1) and the column.

Name matching (:func:`find_gpu`)
--------------------------------
A name is *normalised*: case is folded, every run of characters other than letters and
digits becomes one space, and leading ``nvidia`` / ``tesla`` words are dropped. So
``"NVIDIA A100-SXM4-40GB"``, ``"a100 sxm4 40gb"`` and ``"Tesla V100-SXM2-16GB"`` /
``"v100 sxm2 16gb"`` are the same name. The normalised name must then equal the normalised
model or one alias of exactly one row; nothing is guessed beyond that. NVML names are
matched because they are listed as aliases (``"NVIDIA H100 80GB HBM3"`` is the H100 SXM
board). A bare family name (``A100``, ``H100``, ``H200``, ``V100``) means the SXM board,
the one in the clouds' 8-GPU training instances; PCIe boards need their full name. A name
that matches nothing raises :class:`~greenml.errors.ConfigError` with close names, rather
than falling back to a board whose power may differ.

Embodied carbon (:func:`embodied_kg`)
-------------------------------------
SCI (ISO/IEC 21031:2024) amortisation ``M = TE x (TiR / EL) x (RR / ToR)`` with
``TE = server_base + gpu_count x gpu``, ``TiR`` the reserved hours, ``EL`` the lifetime in
hours (365 x 24 h a year) and ``RR / ToR`` the share of the server reserved. Each item is
amortised over its own ``lifetime_years``; with the shipped table both are 4 years, which
gives exactly the formula above. (Cloud Carbon Footprint's own code amortises over
12 x 30 x 24 = 8,640 h a year; greenml uses 8,760.)
"""

from __future__ import annotations

import csv
import difflib
import functools
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from os import PathLike
from pathlib import Path

from greenml.errors import ConfigError
from greenml.factors.provenance import Factor

HOURS_PER_YEAR = 365 * 24

GPU_COLUMNS = (
    "model",
    "aliases",
    "tdp_w",
    "form_factor",
    "memory_gb",
    "source",
    "year",
    "licence",
    "note",
)
EMBODIED_COLUMNS = ("item", "kg_co2e", "lifetime_years", "source", "year", "licence", "note")
EMBODIED_ITEMS = ("server_base", "gpu")

_DROPPED_PREFIXES = ("nvidia", "tesla")


@dataclass(frozen=True)
class GpuSpec:
    """One GPU board and where its power figure came from."""

    model: str
    aliases: tuple[str, ...]
    tdp_w: float
    form_factor: str
    memory_gb: float
    source: str
    year: int
    licence: str
    note: str = ""


@dataclass(frozen=True)
class EmbodiedItem:
    """Manufacturing emissions of one item (a server, or one GPU card) and its lifetime."""

    item: str
    kg_co2e: float
    lifetime_years: float
    source: str
    year: int
    licence: str
    note: str = ""


def normalise_name(name: str) -> str:
    """The form in which GPU names are compared (see the module docstring)."""
    words = re.sub(r"[^0-9a-z]+", " ", name.casefold()).split()
    while words and words[0] in _DROPPED_PREFIXES:
        words.pop(0)
    return " ".join(words)


# --- reading tables -------------------------------------------------------------------


def _read_rows(
    path: str | PathLike[str] | None, shipped: str, columns: tuple[str, ...]
) -> tuple[str, list[tuple[int, dict[str, str]]]]:
    """(label for messages, [(line number, row)]) with the header checked."""
    if path is None:
        label = shipped
        text = resources.files("greenml.factors").joinpath(f"data/{shipped}").read_text("utf-8")
    else:
        label = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{label}: cannot read the table: {e}") from e
    reader = csv.DictReader(text.splitlines())
    header = reader.fieldnames or []
    missing = [c for c in columns if c not in header]
    if missing:
        raise ConfigError(
            f"{label}: missing column(s) {', '.join(missing)}; expected {', '.join(columns)}"
        )
    rows = []
    for row in reader:
        line = reader.line_num
        if None in row:
            raise ConfigError(f"{label} row {line}: more fields than the header has columns")
        rows.append((line, {k: (v or "").strip() for k, v in row.items()}))
    return label, rows


def _text(label: str, line: int, row: dict[str, str], column: str) -> str:
    value = row[column]
    if not value:
        raise ConfigError(f"{label} row {line} column {column}: empty")
    return value


def _positive(label: str, line: int, row: dict[str, str], column: str) -> float:
    raw = row[column]
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{label} row {line} column {column}: {raw!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{label} row {line} column {column}: {raw!r} must be > 0")
    return value


def _year(label: str, line: int, row: dict[str, str]) -> int:
    raw = row["year"]
    try:
        year = int(raw)
    except ValueError:
        raise ConfigError(f"{label} row {line} column year: {raw!r} is not a year") from None
    if not 1990 <= year <= 2100:
        raise ConfigError(f"{label} row {line} column year: {raw!r} is not a plausible year")
    return year


def load_gpus(path: str | PathLike[str] | None = None) -> tuple[GpuSpec, ...]:
    """The GPU table: the shipped one (cached) or a user CSV with the same columns."""
    if path is None:
        return _shipped_gpus()
    return _parse_gpus(path)


@functools.cache
def _shipped_gpus() -> tuple[GpuSpec, ...]:
    return _parse_gpus(None)


def _parse_gpus(path: str | PathLike[str] | None) -> tuple[GpuSpec, ...]:
    label, rows = _read_rows(path, "gpus.csv", GPU_COLUMNS)
    specs: list[GpuSpec] = []
    seen: dict[str, tuple[int, str]] = {}  # normalised name -> (line, model)
    for line, row in rows:
        model = _text(label, line, row, "model")
        aliases = tuple(a.strip() for a in row["aliases"].split("|") if a.strip())
        for column, names in (("model", (model,)), ("aliases", aliases)):
            for name in names:
                key = normalise_name(name)
                if not key:
                    raise ConfigError(f"{label} row {line} column {column}: {name!r} is no name")
                if key in seen and seen[key][0] != line:
                    first_line, first_model = seen[key]
                    raise ConfigError(
                        f"{label} row {line} column {column}: {name!r} duplicates "
                        f"{first_model!r} (row {first_line})"
                    )
                seen[key] = (line, model)
        specs.append(
            GpuSpec(
                model=model,
                aliases=aliases,
                tdp_w=_positive(label, line, row, "tdp_w"),
                form_factor=_text(label, line, row, "form_factor"),
                memory_gb=_positive(label, line, row, "memory_gb"),
                source=_text(label, line, row, "source"),
                year=_year(label, line, row),
                licence=_text(label, line, row, "licence"),
                note=row["note"],
            )
        )
    if not specs:
        raise ConfigError(f"{label}: the table has no rows")
    return tuple(specs)


def load_embodied(path: str | PathLike[str] | None = None) -> dict[str, EmbodiedItem]:
    """The embodied-carbon table keyed by item: the shipped one (cached) or a user CSV."""
    if path is None:
        return dict(_shipped_embodied())
    return _parse_embodied(path)


@functools.cache
def _shipped_embodied() -> tuple[tuple[str, EmbodiedItem], ...]:
    return tuple(_parse_embodied(None).items())


def _parse_embodied(path: str | PathLike[str] | None) -> dict[str, EmbodiedItem]:
    label, rows = _read_rows(path, "embodied.csv", EMBODIED_COLUMNS)
    items: dict[str, tuple[int, EmbodiedItem]] = {}
    for line, row in rows:
        name = _text(label, line, row, "item")
        if name in items:
            raise ConfigError(
                f"{label} row {line} column item: {name!r} duplicates row {items[name][0]}"
            )
        items[name] = (
            line,
            EmbodiedItem(
                item=name,
                kg_co2e=_positive(label, line, row, "kg_co2e"),
                lifetime_years=_positive(label, line, row, "lifetime_years"),
                source=_text(label, line, row, "source"),
                year=_year(label, line, row),
                licence=_text(label, line, row, "licence"),
                note=row["note"],
            ),
        )
    missing = [i for i in EMBODIED_ITEMS if i not in items]
    if missing:
        raise ConfigError(f"{label}: missing item(s) {', '.join(missing)} in column item")
    return {name: item for name, (_, item) in items.items()}


# --- look-ups -------------------------------------------------------------------------


def find_gpu(name: str, *, table: Iterable[GpuSpec] | None = None) -> GpuSpec:
    """The board called ``name`` (model, alias or NVML name; rule in the module docstring)."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"GPU name must be a non-empty string, got {name!r}")
    specs = tuple(load_gpus() if table is None else table)
    index: dict[str, GpuSpec] = {}
    for spec in specs:
        for candidate in (spec.model, *spec.aliases):
            index.setdefault(normalise_name(candidate), spec)
    key = normalise_name(name)
    if key in index:
        return index[key]
    close = difflib.get_close_matches(key, list(index), n=5, cutoff=0.5)
    suggestions = list(dict.fromkeys(index[k].model for k in close))
    hint = f"; did you mean {', '.join(map(repr, suggestions))}?" if suggestions else "."
    raise ConfigError(
        f"unknown GPU {name!r}{hint} Known boards: {', '.join(s.model for s in specs)}. "
        "For another board pass a table of your own (load_gpus(path))."
    )


def gpu_power_factor(spec: GpuSpec) -> Factor:
    """The board power of ``spec`` as a provenance record."""
    note = f"board power (TDP) of {spec.model} ({spec.form_factor})"
    if spec.note:
        note += f"; {spec.note}"
    return Factor(
        "gpu_power",
        spec.tdp_w,
        "W",
        source=spec.source,
        year=spec.year,
        licence=spec.licence,
        note=note,
    )


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def embodied_kg(
    gpu_count: int,
    reserved_hours: float,
    *,
    share: float = 1.0,
    table: dict[str, EmbodiedItem] | None = None,
) -> tuple[float, list[Factor]]:
    """Embodied kgCO2e allocated to ``reserved_hours`` of a server with ``gpu_count`` GPUs.

    ``share`` is RR/ToR, the fraction of the server reserved (0 < share <= 1). Returns the
    kilograms and the factors used (server base, then per-GPU).
    """
    if not isinstance(gpu_count, int) or isinstance(gpu_count, bool) or gpu_count < 0:
        raise ConfigError(f"gpu_count must be an integer >= 0, got {gpu_count!r}")
    if not _is_real(reserved_hours) or not math.isfinite(reserved_hours) or reserved_hours < 0:
        raise ConfigError(f"reserved_hours must be a finite number >= 0, got {reserved_hours!r}")
    if not _is_real(share) or not math.isfinite(share) or not 0 < share <= 1:
        raise ConfigError(f"share must be a number with 0 < share <= 1, got {share!r}")
    items = load_embodied() if table is None else table
    missing = [i for i in EMBODIED_ITEMS if i not in items]
    if missing:
        raise ConfigError(f"embodied table lacks item(s) {', '.join(missing)}")
    base, gpu = items["server_base"], items["gpu"]

    def amortised(item: EmbodiedItem, count: int) -> float:
        return count * item.kg_co2e * reserved_hours / (item.lifetime_years * HOURS_PER_YEAR)

    kg = share * (amortised(base, 1) + amortised(gpu, gpu_count))
    factors = [
        Factor(
            "embodied_server_base",
            base.kg_co2e,
            "kgCO2e",
            source=base.source,
            year=base.year,
            licence=base.licence,
            note=f"amortised over {base.lifetime_years:g} years; {base.note}",
        ),
        Factor(
            "embodied_gpu",
            gpu.kg_co2e,
            "kgCO2e/GPU",
            source=gpu.source,
            year=gpu.year,
            licence=gpu.licence,
            note=f"x {gpu_count} GPUs, amortised over {gpu.lifetime_years:g} years; {gpu.note}",
        ),
    ]
    return kg, factors
