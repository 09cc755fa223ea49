"""GPU board power (TDP) and embodied carbon, each value with its source.

Two shipped tables, both plain CSV under ``data/``:

* ``gpus.csv`` -- one row per GPU board: ``model, aliases, tdp_w, form_factor, memory_gb,
  source, year, licence, note``, then the optional peak-throughput columns
  ``bf16_dense_tflops, fp16_dense_tflops, fp8_dense_tflops, flops_source``. ``aliases`` is
  ``|``-separated.
* ``embodied.csv`` -- ``item, kg_co2e, lifetime_years, source, year, licence, note`` with the
  items ``server_base`` (one server without GPUs) and ``gpu`` (per GPU card).

A user table with the same columns can be passed as ``path``; errors name the file, the
row (the line number in the file, the header being line 1) and the column.

Peak tensor throughput (:func:`peak_flops_factor`)
--------------------------------------------------
The denominator of model FLOPs utilisation (MFU = achieved FLOP/s / (GPUs x peak)): the
dense (no 2:4 sparsity) tensor-core peak of one GPU, in TFLOPS, per input precision. NVIDIA's
recent datasheets print the sparse figure with an asterisk; the table holds half of it, and
``flops_source`` says which column and footnote the figure was read from. A cell is empty
where the board has no tensor cores for that precision (no FP8 before Hopper/Ada, no BF16
before Ampere). The four columns are optional in a user table (one without them still loads,
its boards then having no peak); a figure needs its ``flops_source``.

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

The GPU of a priced instance (:func:`find_instance_gpu`)
--------------------------------------------------------
The price table names an instance's GPU loosely (``A100-40GB``, ``H100``). Such a name is
the board it matches exactly, as above; else the one board all of whose name words it
contains (``a100 40gb`` is in ``A100 SXM4 40GB`` and ``A100 PCIe 40GB``); several such
boards are decided by the family name alone (``A100`` means the SXM board, the one in the
clouds' 8-GPU training instances), and a name no board contains (``B200``, ``A10G``) is
``None``: the board power is unknown, never borrowed from a sibling.

Embodied carbon (:func:`embodied_kg`)
-------------------------------------
SCI (ISO/IEC 21031:2024) amortisation ``M = TE x (TiR / EL) x (RR / ToR)`` with
``TE = servers x (server_base + gpu_count x gpu)``, ``TiR`` the reserved hours, ``EL`` the
lifetime in hours (365 x 24 h a year) and ``RR / ToR`` the share of the server reserved
(``servers`` identical servers are whole, so a share below 1 is for one server). Each item is
amortised over its own ``lifetime_years``; with the shipped table both are 4 years, which
gives exactly the formula above. (Cloud Carbon Footprint's own code amortises over
12 x 30 x 24 = 8,640 h a year; greenml uses 8,760.)
"""

from __future__ import annotations

import csv
import functools
import io
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from os import PathLike
from typing import Any

from greenml.config import PYTHON, Voice
from greenml.errors import ConfigError
from greenml.factors.csvtable import Row, read_table, rows
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
#: Optional columns of ``gpus.csv``: the dense tensor peaks (TFLOPS per GPU) and their source.
GPU_FLOPS_COLUMNS = ("bf16_dense_tflops", "fp16_dense_tflops", "fp8_dense_tflops", "flops_source")
#: The precisions :func:`peak_flops_factor` knows, each with its column.
PEAK_PRECISIONS = {
    "bf16": "bf16_dense_tflops",
    "fp16": "fp16_dense_tflops",
    "fp8": "fp8_dense_tflops",
}
_MAX_TFLOPS = 100_000.0  # above this a cell is more likely FLOP/s than TFLOPS
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
    bf16_dense_tflops: float | None = None  # dense tensor peak per GPU; None: not given / none
    fp16_dense_tflops: float | None = None
    fp8_dense_tflops: float | None = None
    flops_source: str = ""  # where the peaks come from (datasheet, column, footnote)


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


_PLAUSIBLE_YEARS = (1990, 2100)


def load_gpus(path: str | PathLike[str] | None = None) -> tuple[GpuSpec, ...]:
    """The GPU table: the shipped one (cached) or a user CSV with the same columns."""
    if path is None:
        return _shipped_gpus()
    return _parse_gpus(path)


@functools.cache
def _shipped_gpus() -> tuple[GpuSpec, ...]:
    return _parse_gpus(None)


def _parse_gpus(path: str | PathLike[str] | None) -> tuple[GpuSpec, ...]:
    label, text = read_table(path, "gpus.csv")
    specs: list[GpuSpec] = []
    seen: dict[str, tuple[int, str]] = {}  # normalised name -> (line, model)
    header = next(csv.reader(io.StringIO(text, newline="")), [])
    optional = tuple(c for c in GPU_FLOPS_COLUMNS if c in header)
    for row in rows(label, text, GPU_COLUMNS + optional):
        model = row.text("model")
        aliases = tuple(a.strip() for a in row["aliases"].split("|") if a.strip())
        for column, names in (("model", (model,)), ("aliases", aliases)):
            for name in names:
                key = normalise_name(name)
                if not key:
                    raise row.error(column, "is no name (no letters or digits)", value=name)
                if key in seen and seen[key][0] != row.n:
                    first_line, first_model = seen[key]
                    raise row.error(
                        column, f"duplicates {first_model!r} (row {first_line})", value=name
                    )
                seen[key] = (row.n, model)
        specs.append(
            GpuSpec(
                model=model,
                aliases=aliases,
                tdp_w=row.number("tdp_w", positive=True),
                form_factor=row.text("form_factor"),
                memory_gb=row.number("memory_gb", positive=True),
                source=row.text("source"),
                year=row.year("year", bounds=_PLAUSIBLE_YEARS),
                licence=row.text("licence"),
                note=row["note"],
                **_peak_flops(row, optional),
            )
        )
    if not specs:
        raise ConfigError(f"{label}: the table has no rows")
    return tuple(specs)


def _peak_flops(row: Row, present: tuple[str, ...]) -> dict[str, Any]:
    """The optional peak-throughput cells of ``row`` (only the columns ``present`` in the
    file's header): each empty or a TFLOPS figure, and any figure needs its source."""
    peaks: dict[str, Any] = {}
    for column in PEAK_PRECISIONS.values():
        if column not in present or not row[column]:
            continue
        tflops = row.number(column, positive=True)
        if tflops > _MAX_TFLOPS:
            raise row.error(
                column, f"is more than {_MAX_TFLOPS:,.0f}: give TFLOPS (10^12 FLOP/s) per GPU"
            )
        peaks[column] = tflops
    source = row["flops_source"] if "flops_source" in present else ""
    if peaks and not source:
        why = "needs its source (datasheet, column) in column 'flops_source'"
        if "flops_source" not in present:
            raise ConfigError(
                f"{row.label}, row {row.n}: the peak throughput in "
                f"{', '.join(map(repr, peaks))} {why}, which the header lacks"
            )
        raise row.error("flops_source", f"is empty; the peak throughput in this row {why}")
    if source:
        peaks["flops_source"] = source
    return peaks


def load_embodied(path: str | PathLike[str] | None = None) -> dict[str, EmbodiedItem]:
    """The embodied-carbon table keyed by item: the shipped one (cached) or a user CSV."""
    if path is None:
        return dict(_shipped_embodied())
    return _parse_embodied(path)


@functools.cache
def _shipped_embodied() -> tuple[tuple[str, EmbodiedItem], ...]:
    return tuple(_parse_embodied(None).items())


def _parse_embodied(path: str | PathLike[str] | None) -> dict[str, EmbodiedItem]:
    label, text = read_table(path, "embodied.csv")
    items: dict[str, tuple[int, EmbodiedItem]] = {}
    for row in rows(label, text, EMBODIED_COLUMNS):
        name = row.text("item")
        if name in items:
            raise row.error("item", f"duplicates row {items[name][0]}")
        items[name] = (
            row.n,
            EmbodiedItem(
                item=name,
                kg_co2e=row.number("kg_co2e", positive=True),
                lifetime_years=row.number("lifetime_years", positive=True),
                source=row.text("source"),
                year=row.year("year", bounds=_PLAUSIBLE_YEARS),
                licence=row.text("licence"),
                note=row["note"],
            ),
        )
    missing = [i for i in EMBODIED_ITEMS if i not in items]
    if missing:
        raise ConfigError(f"{label}: missing item(s) {', '.join(missing)} in column item")
    return {name: item for name, (_, item) in items.items()}


# --- look-ups -------------------------------------------------------------------------


def _index(specs: Iterable[GpuSpec]) -> dict[str, GpuSpec]:
    index: dict[str, GpuSpec] = {}
    for spec in specs:
        for candidate in (spec.model, *spec.aliases):
            index.setdefault(normalise_name(candidate), spec)
    return index


def find_gpu(
    name: str, *, table: Iterable[GpuSpec] | None = None, voice: Voice = PYTHON
) -> GpuSpec:
    """The board called ``name`` (model, alias or NVML name; rule in the module docstring).

    ``voice`` names the ``gpu`` setting in an error the way the user gave it (``--gpu`` on
    the command line)."""
    if not isinstance(name, str) or not name.strip():
        what = voice.given("gpu", name) if voice.cli else f"GPU name {name!r}"
        raise ConfigError(f"{what} is invalid: a GPU name must be a non-empty string")
    specs = tuple(load_gpus() if table is None else table)
    index = _index(specs)
    key = normalise_name(name)
    if key in index:
        return index[key]
    import difflib  # only for an error's hint

    close = difflib.get_close_matches(key, list(index), n=5, cutoff=0.5)
    suggestions = list(dict.fromkeys(index[k].model for k in close))
    hint = f"; did you mean {', '.join(map(repr, suggestions))}?" if suggestions else "."
    what = f"{voice.given('gpu', name)}: unknown GPU" if voice.cli else f"unknown GPU {name!r}"
    raise ConfigError(
        f"{what}{hint} Known boards: {', '.join(s.model for s in specs)}. For another "
        f"board {other_board_advice(voice)}."
    )


def other_board_advice(voice: Voice = PYTHON) -> str:
    """How to model a board the GPU table does not list, in the user's own terms."""
    from greenml.factors.tables import in_tables_dir

    advice = (
        f"give its average draw with {voice.set('power_w', '<W per GPU>')}, or add it to "
        f"{in_tables_dir('gpus.csv', voice)}"
    )
    return advice if voice.cli else f"{advice} (or pass table=load_gpus(path))"


def find_instance_gpu(name: str, *, table: Iterable[GpuSpec] | None = None) -> GpuSpec | None:
    """The board a price table's ``gpu_model`` names, or None when the table has no such
    board (rule in the module docstring)."""
    specs = tuple(load_gpus() if table is None else table)
    index = _index(specs)
    key = normalise_name(name)
    if not key:
        return None
    if key in index:
        return index[key]
    words = set(key.split())
    found = list(dict.fromkeys(spec for k, spec in index.items() if words <= set(k.split())))
    if len(found) == 1:
        return found[0]
    family = index.get(key.split()[0])
    return family if family in found else None


def gpu_family(name: str) -> str:
    """The first word of a normalised GPU name (``a100`` for ``NVIDIA A100-SXM4-40GB``)."""
    words = normalise_name(name).split()
    return words[0] if words else ""


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


def peak_flops_factor(spec: GpuSpec, precision: str = "bf16") -> Factor | None:
    """The dense tensor-core peak of one ``spec`` GPU at ``precision`` (``"bf16"``,
    ``"fp16"`` or ``"fp8"``) in FLOP/s, as a provenance record; None when the table gives
    no figure. ``"bf16"`` on a board without BF16 tensor cores (V100, T4) is its FP16 peak,
    and the note says so."""
    if not isinstance(precision, str) or precision not in PEAK_PRECISIONS:
        raise ConfigError(
            f"precision {precision!r} is not one greenml knows a peak for; use one of "
            f"{', '.join(map(repr, PEAK_PRECISIONS))}"
        )
    used = precision
    tflops = getattr(spec, PEAK_PRECISIONS[precision])
    if tflops is None and precision == "bf16":
        used, tflops = "fp16", spec.fp16_dense_tflops
    if tflops is None:
        return None
    note = (
        f"dense (no sparsity) {used.upper()} tensor-core peak of one {spec.model} "
        f"({tflops:g} TFLOPS)"
    )
    if used != precision:
        note += f"; the table gives no BF16 peak for {spec.model}: its FP16 peak is used"
    return Factor(
        "gpu_peak_flops",
        tflops * 1e12,
        "FLOP/s",
        source=spec.flops_source,
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
    servers: int = 1,
    table: dict[str, EmbodiedItem] | None = None,
) -> tuple[float, list[Factor]]:
    """Embodied kgCO2e allocated to ``reserved_hours`` of ``servers`` servers with
    ``gpu_count`` GPUs each.

    ``share`` is RR/ToR, the fraction of the server reserved (0 < share <= 1). Returns the
    kilograms and the factors used (server base, then per-GPU).
    """
    if not isinstance(gpu_count, int) or isinstance(gpu_count, bool) or gpu_count < 0:
        raise ConfigError(f"gpu_count must be an integer >= 0, got {gpu_count!r}")
    if not isinstance(servers, int) or isinstance(servers, bool) or servers < 1:
        raise ConfigError(f"servers must be an integer >= 1, got {servers!r}")
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

    kg = servers * share * (amortised(base, 1) + amortised(gpu, gpu_count))
    many = f"x {servers} servers, " if servers > 1 else ""
    factors = [
        Factor(
            "embodied_server_base",
            base.kg_co2e,
            "kgCO2e",
            source=base.source,
            year=base.year,
            licence=base.licence,
            note=f"{many}amortised over {base.lifetime_years:g} years; {base.note}",
        ),
        Factor(
            "embodied_gpu",
            gpu.kg_co2e,
            "kgCO2e/GPU",
            source=gpu.source,
            year=gpu.year,
            licence=gpu.licence,
            note=f"x {gpu_count} GPUs{' per server' if servers > 1 else ''}, amortised over "
            f"{gpu.lifetime_years:g} years; {gpu.note}",
        ),
    ]
    return kg, factors
