"""CodeCarbon's ``emissions.csv`` -> MLflow runs with greenml's names
(``greenml import codecarbon``), so that a team's past runs join ``greenml report``.

What one run gets, from the row that holds its totals:

=====================================  ==================================================
greenml                                CodeCarbon column (or where it comes from)
=====================================  ==================================================
``greenml/energy_kwh`` (facility)      ``energy_consumed`` (kWh; PUE already applied)
``greenml/gpu|cpu|ram_energy_kwh``     ``gpu_energy``, ... divided by ``pue``: greenml's
                                       device energies are IT energy, before PUE, and
                                       CodeCarbon (since it has a PUE, 2.2.3) multiplies
                                       each device's energy by it
``greenml/co2e_kg``                    ``emissions`` (kg, location-based)
``greenml/co2e_market_kg``             ``emissions``: CodeCarbon has no market-based
                                       figure, and greenml's market-based CO2e equals the
                                       location-based one when no contractual factor is
                                       known
``greenml/duration_s``                 ``duration``
``greenml/cost_usd``                   left out: nothing in the file prices the run
start / end time                       ``timestamp`` - ``duration`` / ``timestamp``
run name                               ``<project_name>-<run_id>``
experiment                             ``--experiment``, else ``project_name``
``greenml.location``                   ``aws:<cloud_region>`` (gcp, azure) for a cloud
                                       row; else the country (``country_iso_code`` as
                                       ISO alpha-2, ``FR``), or the grid zone its
                                       ``region`` names where greenml has one (``US-VA``
                                       for ``virginia``, ``CA-QC``, ``SE-3``, ``CN-BJ``; a
                                       region it cannot place gives the country, as in
                                       CodeCarbon, and the import says so)
``greenml.pue``                        ``pue``; 1.0 (CodeCarbon's default) when the file
                                       has no such column (older CodeCarbon versions)
``greenml.grid_intensity_g_per_kwh``   recomputed: greenml's grid table for the location
``greenml.grid_source``                (the CSV holds no intensity; CodeCarbon's own
                                       effective one, ``emissions / energy_consumed``, is
                                       kept as ``greenml.imported_grid_intensity_g_per_kwh``);
                                       ``n/a`` for a country greenml has no figure for (the
                                       CO2e is the file's either way)
``greenml.gpu_model``, ``gpu_count``   ``gpu_model`` (its ``4 x `` prefix dropped),
                                       ``gpu_count``
``greenml.scope``                      ``scope3-cat1`` for a cloud row, else ``scope2``
``greenml.measurement``                ``imported``
``greenml.imported_from``              ``codecarbon <codecarbon_version> <file name>``
``greenml.imported_run_id``            CodeCarbon's ``run_id``: the import's match key
``greenml.imported_timestamp``         the ``timestamp`` of the row imported, as written
``greenml.imported_recomputed``        the params greenml filled in (its tables, or an
                                       assumed value), comma-separated
=====================================  ==================================================

Rows of one run. CodeCarbon writes a row at ``stop()`` and at each ``flush()``, and each
row holds the run's totals *so far* (its ``append`` mode keeps them all, with the same
``run_id``). Summing them would count the run's start several times, so the rows that
share a ``run_id`` become one MLflow run: its figures are those of the latest row, and the
earlier rows become the metrics' time series (step = seconds since the start, as greenml's
own runs). Rows of one run whose totals go down are an error, not a guess.

Importing again creates nothing new. Before creating a run, a ``search_runs`` filter
looks for an active run (in any experiment) tagged with the same CodeCarbon ``run_id``
from CodeCarbon. If its ``greenml.imported_timestamp`` is the row's, the run is there; if
not, the file has moved on since (a run still flushing when it was imported) and the run
is reported, not imported twice: delete the MLflow run and import again to replace it.
A run deleted in MLflow is imported again.

Bad input: all or nothing. Every row is read and checked first (numbers, timestamp,
location against greenml's tables) and any problem stops the import before MLflow is
touched, with the file, the line and the column in the message
(:class:`~greenml.errors.ConfigError`). If the store fails during the import, the runs
already created are complete (a run is created, filled in one batch and ended, or deleted
again) and importing again creates the rest. Rows for which the tool wrote nothing
measurable are not invented: an empty device column leaves its metric out.

Time. CodeCarbon writes its timestamps in the local time of the machine it ran on,
without a UTC offset; they are read in ``timezone`` (an IANA name; default: this
machine's). A timestamp that carries an offset is read as written.

mlflow is imported only when runs are sent.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from datetime import timezone as dt_timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from greenml._version import __version__
from greenml.errors import ConfigError, SinkError
from greenml.schema import (
    FIGURE_METRICS,
    MEASUREMENT_IMPORTED,
    NA,
    PARAM_GPU_COUNT,
    PARAM_GPU_MODEL,
    PARAM_GRID_INTENSITY,
    PARAM_GRID_SOURCE,
    PARAM_IMPORTED_GRID_INTENSITY,
    PARAM_INSTANCE_TYPE,
    PARAM_LOCATION,
    PARAM_PRICE_SOURCE,
    PARAM_PRICE_USD_PER_HOUR,
    PARAM_PUE,
    TAG_IMPORTED_FROM,
    TAG_IMPORTED_RECOMPUTED,
    TAG_IMPORTED_RUN_ID,
    TAG_IMPORTED_TIMESTAMP,
    TAG_MEASUREMENT,
    TAG_SCOPE,
    TAG_STATUS,
    TAG_VERSION,
    status_tag,
)

if TYPE_CHECKING:
    from greenml.factors.provenance import Factor

SOURCE = "codecarbon"  # the first word of greenml.imported_from

#: Columns every CodeCarbon emissions.csv has had (1.x to 3.x); the others are optional.
REQUIRED_COLUMNS = (
    "timestamp",
    "project_name",
    "run_id",
    "duration",
    "emissions",
    "energy_consumed",
    "country_iso_code",
)
_DEVICE_COLUMNS = {"gpu": "gpu_energy", "cpu": "cpu_energy", "ram": "ram_energy"}
_MAX_RUN_NAME = 250
_FILTER_UNSAFE = re.compile(r"['\"`\\\x00-\x1f]")
_GPU_MODEL = re.compile(r"^\s*(\d+)\s*x\s+(.+?)\s*$")  # CodeCarbon's "4 x NVIDIA A100..."
_GPU_MODEL_AGAIN = re.compile(r"\d\s*x\s")  # "1 x A1001 x B": two kinds, written joined
_NORDIC = re.compile(r"^(SE|NO)-?([1-5])$")
_PROVIDERS = ("aws", "azure", "gcp")  # CodeCarbon's cloud_provider values (greenml's too)
_EPOCH_DAY_S = 86_400.0
_REGIONAL = ("USA", "CAN", "CHN", "SWE", "NOR")  # where CodeCarbon uses a row's region
_NO_GRID = (
    "greenml's grid table has no intensity for {place}: its grid intensity param is n/a "
    "(the CO2e is CodeCarbon's, as the file has it)"
)


# -- what one file holds --------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """One CSV row: the run's totals at ``end`` (CodeCarbon's rows are cumulative)."""

    line: int  # the row's line in the file (the header is line 1)
    timestamp: str  # as written in the file
    end: datetime  # aware
    duration_s: float
    energy_kwh: float  # facility energy: CodeCarbon applied its PUE
    co2e_kg: float
    device_energy_kwh: Mapping[str, float | None]  # gpu, cpu, ram, as written (PUE applied)

    @property
    def end_ms(self) -> int:
        return round(self.end.timestamp() * 1000)

    @property
    def start_ms(self) -> int:
        return round((self.end.timestamp() - self.duration_s) * 1000)


@dataclass(frozen=True)
class CodeCarbonRun:
    """One CodeCarbon run (every row with its ``run_id``), with greenml's factors."""

    run_id: str
    project_name: str
    codecarbon_version: str | None
    final: Snapshot  # the latest row: the run's totals
    earlier: tuple[Snapshot, ...]  # flushes before it, oldest first
    location: str
    scope: str
    pue: float
    grid: Factor | None  # None: greenml has no figure for the place (the CO2e is the file's)
    gpu_model: str
    gpu_count: str
    recomputed: tuple[str, ...]  # params filled in by greenml, not read from the file
    note: str = ""  # what the user should know about the row's location

    @property
    def run_name(self) -> str:
        return f"{self.project_name or SOURCE}-{self.run_id}"[:_MAX_RUN_NAME]

    @property
    def start_ms(self) -> int:
        """The run's start: the row's timestamp minus its duration."""
        return self.final.start_ms

    @property
    def end_ms(self) -> int:
        return self.final.end_ms

    def figures(self, snap: Snapshot) -> dict[str, float]:
        """greenml's figures (Footprint names) of one row: device energies back to IT
        energy (CodeCarbon multiplied them by its PUE); no cost (nothing prices it)."""
        out = {
            "energy_kwh": snap.energy_kwh,
            "co2e_kg": snap.co2e_kg,
            "co2e_market_kg": snap.co2e_kg,  # no market-based factor: location-based
            "duration_s": snap.duration_s,
        }
        for device, kwh in snap.device_energy_kwh.items():
            if kwh is not None:
                out[f"{device}_energy_kwh"] = kwh / self.pue
        return out

    def metrics(self) -> list[tuple[str, float, int, int]]:
        """(key, value, timestamp ms, step) of every point: the earlier rows' totals as a
        time series and the final row's as the run's latest values (step = whole seconds
        since the start). A point at the final row's step is left to the final row."""
        step = int(self.final.duration_s)
        points = []
        for snap in self.earlier:
            if int(snap.duration_s) < step:
                points += self._points(snap)
        return points + self._points(self.final)

    def _points(self, snap: Snapshot) -> list[tuple[str, float, int, int]]:
        step = int(snap.duration_s)
        figures = self.figures(snap)
        return [
            (FIGURE_METRICS[name], value, snap.end_ms, step)
            for name, value in figures.items()
            if name in FIGURE_METRICS
        ]

    def params(self) -> dict[str, str]:
        energy = self.final.energy_kwh
        implied = self.final.co2e_kg * 1000.0 / energy if energy > 0 else None
        grid = self.grid
        year = f", {grid.year}" if grid is not None and grid.year else ""
        return {
            PARAM_LOCATION: self.location,
            PARAM_GRID_INTENSITY: NA if grid is None else repr(float(grid.value)),
            PARAM_GRID_SOURCE: NA if grid is None else f"{grid.source}{year}"[:500],
            PARAM_PUE: repr(float(self.pue)),
            PARAM_PRICE_USD_PER_HOUR: NA,
            PARAM_PRICE_SOURCE: NA,
            PARAM_INSTANCE_TYPE: NA,
            PARAM_GPU_MODEL: self.gpu_model,
            PARAM_GPU_COUNT: self.gpu_count,
            PARAM_IMPORTED_GRID_INTENSITY: NA if implied is None else f"{implied:.12g}",
        }

    def tags(self, file_name: str) -> dict[str, str]:
        version = self.codecarbon_version or "version-unknown"
        return {
            TAG_VERSION: __version__,
            TAG_SCOPE: self.scope,
            TAG_MEASUREMENT: MEASUREMENT_IMPORTED,
            TAG_STATUS: status_tag("FINISHED"),
            TAG_IMPORTED_FROM: f"{SOURCE} {version} {file_name}"[:5000],
            TAG_IMPORTED_RUN_ID: self.run_id,
            TAG_IMPORTED_TIMESTAMP: self.final.timestamp,
            TAG_IMPORTED_RECOMPUTED: ",".join(self.recomputed),
        }


@dataclass(frozen=True)
class CodeCarbonFile:
    """A checked CodeCarbon file: its runs, in the order of their final rows."""

    path: str
    rows: int
    runs: tuple[CodeCarbonRun, ...]
    timezone: str  # what timestamps without an offset were read in
    naive_timestamps: bool  # whether any was

    @property
    def name(self) -> str:
        return Path(self.path).name


# -- reading and checking -----------------------------------------------------------------


def parse_timezone(name: str | None) -> tuple[tzinfo | None, str]:
    """The time zone named ``name`` (IANA, ``Europe/Paris``; ``UTC``), or this machine's
    local one for None (returned as None: Python applies it, daylight saving included);
    and how to name it in messages."""
    if name is None:
        local = datetime.now().astimezone().tzname() or "local"
        return None, f"this machine's local time ({local})"
    import zoneinfo

    try:
        if not name.strip():
            raise ValueError("empty")
        return zoneinfo.ZoneInfo(name.strip()), name.strip()
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise ConfigError(
            f"timezone {name!r} is not an IANA time zone; give one such as 'UTC', "
            "'Europe/Paris' or 'America/New_York'"
        ) from None


def read_codecarbon_csv(
    path: str | os.PathLike[str], *, timezone: str | None = None
) -> CodeCarbonFile:
    """Read and check a CodeCarbon ``emissions.csv``: every row, before anything is
    imported. Raises :class:`ConfigError` naming the file, the line and the column."""
    tz, tz_name = parse_timezone(timezone)
    where = str(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            records = [(line, row) for line, row in _records(f) if any(c.strip() for c in row)]
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{where} is a folder: give CodeCarbon's emissions.csv") from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{where} is not a text CSV file ({e.reason} at byte {e.start}): give "
            "CodeCarbon's emissions.csv"
        ) from None
    except csv.Error as e:
        raise ConfigError(f"{where}: not a readable CSV file ({e})") from None
    except OSError as e:
        raise ConfigError(f"{where}: cannot be read ({e.strerror or e})") from None
    if not records:
        raise ConfigError(
            f"{where} is empty: not a CodeCarbon emissions.csv (its header starts with "
            f"{','.join(REQUIRED_COLUMNS[:4])},...)"
        )
    header_line, header = records[0]
    columns = {name.strip(): i for i, name in reversed(list(enumerate(header)))}
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ConfigError(
            f"{where}: not a CodeCarbon emissions.csv: the header (line {header_line}) lacks "
            f"the column(s) {', '.join(missing)}; CodeCarbon's file has "
            f"{', '.join(REQUIRED_COLUMNS)}, ..."
        )
    reader = _RowReader(where, columns, len(header), tz)
    snaps: dict[str, list[tuple[Snapshot, _Row]]] = {}
    for line, cells in records[1:]:
        row = reader.row(line, cells)
        snaps.setdefault(row.run_id, []).append((row.snapshot(), row))
    locations = _Locations(where)
    runs = []
    for run_id, group in snaps.items():
        group.sort(key=lambda sr: (sr[0].end, sr[0].line))
        _check_cumulative(where, run_id, [s for s, _ in group])
        final, row = group[-1]
        location, scope, grid, note = locations.resolve(row)
        pue, pue_given = row.pue()
        recomputed = [PARAM_GRID_INTENSITY, PARAM_GRID_SOURCE] if grid is not None else []
        if not pue_given:
            recomputed.append(PARAM_PUE)
        gpu_model, gpu_count = row.gpus()
        runs.append(
            CodeCarbonRun(
                run_id=run_id,
                project_name=row.text("project_name"),
                codecarbon_version=row.text("codecarbon_version") or None,
                final=final,
                earlier=tuple(s for s, _ in group[:-1]),
                location=location,
                scope=scope,
                pue=pue,
                grid=grid,
                gpu_model=gpu_model,
                gpu_count=gpu_count,
                recomputed=tuple(recomputed),
                note=note,
            )
        )
    runs.sort(key=lambda r: r.final.line)
    return CodeCarbonFile(
        path=where,
        rows=len(records) - 1,
        runs=tuple(runs),
        timezone=tz_name,
        naive_timestamps=reader.naive,
    )


def _records(f: Any) -> Any:
    reader = csv.reader(f)
    start = 1
    for row in reader:
        yield start, row  # the line the record starts on
        start = reader.line_num + 1


@dataclass
class _RowReader:
    where: str
    columns: Mapping[str, int]
    width: int
    tz: tzinfo | None
    naive: bool = False

    def row(self, line: int, cells: list[str]) -> _Row:
        if len(cells) != self.width:
            raise ConfigError(
                f"{self.where}: line {line} has {len(cells)} cells where the header has "
                f"{self.width} (a row written under another header, or a stray comma?)"
            )
        row = _Row(self, line, cells)
        row.run_id = row.run_id_cell()
        return row


@dataclass
class _Row:
    reader: _RowReader
    line: int
    cells: list[str]
    run_id: str = ""

    def fail(self, column: str, what: str) -> ConfigError:
        return ConfigError(f"{self.reader.where}: line {self.line}, column {column!r}: {what}")

    def text(self, column: str) -> str:
        i = self.reader.columns.get(column)
        return self.cells[i].strip() if i is not None else ""

    def has(self, column: str) -> bool:
        return column in self.reader.columns

    def number(self, column: str, *, required: bool) -> float | None:
        cell = self.text(column)
        if not cell:
            if required:
                raise self.fail(column, "is empty; it must be a number")
            return None
        try:
            x = float(cell)
        except ValueError:
            raise self.fail(column, f"{cell!r} is not a number") from None
        if not math.isfinite(x):
            raise self.fail(column, f"{cell!r} is not a finite number")
        if x < 0:
            raise self.fail(column, f"{cell!r} is negative")
        return x

    def run_id_cell(self) -> str:
        run_id = self.text("run_id")
        if not run_id:
            raise self.fail("run_id", "is empty; CodeCarbon writes a run id on every row")
        if _FILTER_UNSAFE.search(run_id) or len(run_id) > 500:
            raise self.fail(
                "run_id",
                f"{run_id[:80]!r} is not a CodeCarbon run id (a UUID; no quotes, backslashes "
                "or control characters, at most 500 characters)",
            )
        return run_id

    def end(self) -> datetime:
        cell = self.text("timestamp")
        if not cell:
            raise self.fail("timestamp", "is empty")
        try:
            when = datetime.fromisoformat(cell)
        except ValueError:
            raise self.fail(
                "timestamp",
                f"{cell!r} is not a date and time (CodeCarbon writes 2024-03-30T11:27:11)",
            ) from None
        if when.tzinfo is None:
            self.reader.naive = True
            when = when.replace(tzinfo=self.reader.tz) if self.reader.tz else when.astimezone()
        try:
            return when.astimezone(dt_timezone.utc)
        except (OverflowError, ValueError):  # year 1 or 9999 moved by an offset
            raise self.fail("timestamp", f"{cell!r} is out of range") from None

    def snapshot(self) -> Snapshot:
        duration = self.number("duration", required=True)
        energy = self.number("energy_consumed", required=True)
        co2e = self.number("emissions", required=True)
        assert duration is not None and energy is not None and co2e is not None
        devices = {d: self.number(col, required=False) for d, col in _DEVICE_COLUMNS.items()}
        end = self.end()
        if end.timestamp() - duration < _EPOCH_DAY_S:  # MLflow's times are ms since 1970
            raise self.fail("duration", f"{duration!r} s would start the run before 1970")
        return Snapshot(
            line=self.line,
            timestamp=self.text("timestamp"),
            end=end,
            duration_s=duration,
            energy_kwh=energy,
            co2e_kg=co2e,
            device_energy_kwh=devices,
        )

    def pue(self) -> tuple[float, bool]:
        """The row's PUE and whether the file gave it (else CodeCarbon's default, 1.0)."""
        value = self.number("pue", required=False) if self.has("pue") else None
        if value is None:
            return 1.0, False
        if value < 1.0:
            raise self.fail(
                "pue",
                f"{value!r} is not a PUE: facility energy / IT energy is >= 1.0",
            )
        return value, True

    def gpus(self) -> tuple[str, str]:
        """(greenml.gpu_model, greenml.gpu_count): ``4 x NVIDIA A100`` -> ``NVIDIA A100``;
        no GPU -> ``none`` and ``0``; not recorded -> ``n/a``."""
        count = self.number("gpu_count", required=False) if self.has("gpu_count") else None
        if count is not None and count != int(count):
            raise self.fail("gpu_count", f"{self.text('gpu_count')!r} is not a whole number")
        model = self.text("gpu_model")
        m = _GPU_MODEL.match(model)
        if m is not None and not _GPU_MODEL_AGAIN.search(m.group(2)):
            model = m.group(2)  # one kind of GPU; several kinds stay as CodeCarbon wrote them
        if count is None:
            return (model or NA), NA
        if int(count) == 0:
            return "none", "0"
        return (model or NA), str(int(count))


def _check_cumulative(where: str, run_id: str, snaps: Sequence[Snapshot]) -> None:
    """The rows of one run are its totals at successive times: none may go down."""
    for before, after in itertools.pairwise(snaps):
        for column, a, b in (
            ("duration", before.duration_s, after.duration_s),
            ("energy_consumed", before.energy_kwh, after.energy_kwh),
            ("emissions", before.co2e_kg, after.co2e_kg),
        ):
            if b < a * (1 - 1e-9):
                raise ConfigError(
                    f"{where}: lines {before.line} and {after.line} share CodeCarbon run_id "
                    f"{run_id!r} but are not successive totals of one run (column {column!r} "
                    f"goes down, from {a!r} to {b!r}, though line {after.line} is later). "
                    "CodeCarbon's rows of one run are cumulative (each flush() writes the "
                    "totals so far), so greenml imports its latest row; give each run its own "
                    "run_id or remove the odd rows"
                )


class _Locations:
    """greenml's location, scope and grid factor of a row, resolved once per place."""

    def __init__(self, where: str) -> None:
        self.where = where
        self._cache: dict[tuple[str, ...], tuple[str, str, Factor | None, str]] = {}

    def resolve(self, row: _Row) -> tuple[str, str, Factor | None, str]:
        """(location, scope, grid factor, a note when the row's region is not used)."""
        provider = row.text("cloud_provider").lower()
        region = row.text("cloud_region")
        country = row.text("country_iso_code")
        sub = row.text("region")
        key = (provider, region, country, sub)
        if key not in self._cache:
            self._cache[key] = self._resolve(row, provider, region, country, sub)
        return self._cache[key]

    def _resolve(
        self, row: _Row, provider: str, region: str, country: str, sub: str
    ) -> tuple[str, str, Factor | None, str]:
        note = ""
        if provider or region:
            if not (provider and region):
                column = "cloud_region" if provider else "cloud_provider"
                other = "cloud_provider" if provider else "cloud_region"
                raise row.fail(column, f"is empty, though {other} names a cloud")
            if provider not in _PROVIDERS:
                raise row.fail(
                    "cloud_provider",
                    f"{provider!r} is not a cloud greenml has regions for "
                    f"({', '.join(_PROVIDERS)})",
                )
            column = "cloud_region"
            text = f"{provider}:{region.lower()}"
        else:
            column = "country_iso_code"
            if not country:
                raise row.fail(column, "is empty, and the row names no cloud region: no location")
            from greenml.factors.grid import alpha3

            try:
                a3 = alpha3(country)
            except ConfigError as e:
                raise row.fail(column, str(e)) from None
            zone = _subdivision(a3, sub)
            text = zone or _alpha2(a3)
            if zone is None and sub and a3 in _REGIONAL:
                note = (
                    f"region {sub!r} is no grid zone greenml has for {a3}: the country's "
                    "factor is used (as CodeCarbon does)"
                )
        from greenml.config import Settings, Voice
        from greenml.factors.resolve import resolve_run_factors

        try:  # errors say "location 'gcp:mars-1': ..."
            rf = resolve_run_factors(
                Settings(location=text), environ={}, voice=Voice(flags={"location": "location"})
            )
        except ConfigError as e:
            if column == "cloud_region":  # a region greenml does not know: an error
                raise row.fail(column, str(e)) from None
            # a country without a figure in greenml's tables: the file's CO2e stands
            return text, "scope2", None, _NO_GRID.format(place=text)
        assert rf.grid is not None
        return text, rf.scope, rf.grid, note


def _alpha2(a3: str) -> str:
    import pycountry

    found = pycountry.countries.get(alpha_3=a3)
    return str(found.alpha_2) if found is not None else a3


def _subdivision(a3: str, region: str) -> str | None:
    """The greenml grid zone that CodeCarbon's ``region`` names in country ``a3``, where
    greenml has one (CodeCarbon's own regional data: US states, Canadian provinces,
    Chinese provinces, Nordic bidding zones); None otherwise (the country is used, as
    CodeCarbon itself falls back to it)."""
    name = " ".join(region.lower().split())
    if not name:
        return None
    from greenml.factors.codecarbon_data import DataFiles

    data = DataFiles()
    if a3 == "USA":
        states = data.get_country_emissions_data("usa")
        for key, row in states.items():
            if key.startswith("_") or not isinstance(row, dict):
                continue
            code = str(row.get("regionCode", "")).upper()
            if name in (key.lower(), code.lower()):
                return f"US-{code}"
        return None
    if a3 == "CAN":
        import pycountry

        for s in pycountry.subdivisions.get(country_code="CA") or []:
            if name in (s.name.lower(), s.code.lower(), s.code.lower()[3:]):
                return str(s.code)
        return None
    if a3 in ("SWE", "NOR"):
        m = _NORDIC.match(name.upper())
        if m is not None and m.group(1) == a3[:2] and (m.group(1) == "NO" or m.group(2) <= "4"):
            return f"{m.group(1)}-{m.group(2)}"
        return None
    if a3 == "CHN":
        bare = re.sub(r"\s+(autonomous region|municipality|province|sheng|shi|zizhiqu)$", "", name)
        for code, row in data.get_china_provincial_emissions_data()["data"].items():
            if bare in row.get("names", ()) or name == code.lower():
                return str(code)
        return None
    return None


# -- importing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What became of one CodeCarbon run: ``created``, ``existing`` (imported before:
    nothing done) or ``stale`` (imported before from an earlier row of the run: not
    imported twice; ``previous_timestamp`` says which)."""

    run: CodeCarbonRun
    status: str
    mlflow_run_id: str
    experiment: str
    previous_timestamp: str | None = None


@dataclass(frozen=True)
class ImportResult:
    file: CodeCarbonFile
    tracking_uri: str  # credentials redacted
    outcomes: tuple[Outcome, ...] = field(default_factory=tuple)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    def describe(self) -> list[str]:
        """What was done, for the terminal."""
        f = self.file
        lines = [f"{f.path}: {len(f.runs)} CodeCarbon run(s) in {f.rows} row(s)"]
        folded = sum(len(r.earlier) for r in f.runs)
        if folded:
            lines.append(
                f"  {folded} row(s) are earlier totals (flushes) of a run: its time series, "
                "not runs of their own"
            )
        if f.naive_timestamps:
            lines.append(f"  timestamps without a UTC offset read as {f.timezone} (--timezone)")
        for o in self.outcomes:
            r = o.run
            head = f"  line {r.final.line} {r.run_name}: "
            if r.note:
                lines.append(head + f"note: {r.note}")
            if o.status == "created":
                lines.append(
                    head + f"created run {o.mlflow_run_id} in experiment {o.experiment!r} "
                    f"({r.location}, {r.scope}, {r.final.energy_kwh:.6g} kWh, "
                    f"{r.final.co2e_kg:.6g} kgCO2e)"
                )
            elif o.status == "existing":
                lines.append(head + f"already imported as run {o.mlflow_run_id}")
            else:
                lines.append(
                    head + f"NOT imported: run {o.mlflow_run_id} holds this run as of "
                    f"{o.previous_timestamp}, and this file has it up to {r.final.timestamp}; "
                    "delete that MLflow run and import again to replace it"
                )
        lines.append(
            f"{self.count('created')} run(s) created, {self.count('existing')} already there"
            + (f", {self.count('stale')} out of date" if self.count("stale") else "")
            + f", in {self.tracking_uri}"
        )
        return lines


def import_codecarbon(
    path: str | os.PathLike[str],
    *,
    experiment: str | None = None,
    tracking_uri: str | None = None,
    timezone: str | None = None,
    client: Any = None,
    environ: Mapping[str, str] | None = None,
) -> ImportResult:
    """Import a CodeCarbon ``emissions.csv`` (see the module docstring). ``tracking_uri``
    defaults to ``MLFLOW_TRACKING_URI``, else MLflow's local store; ``client`` is an
    ``MlflowClient`` to use instead (tests). Raises :class:`ConfigError` for a bad file
    (nothing imported) and :class:`SinkError` when the store fails."""
    from greenml.sinks.mlflow import absolute_uri, default_tracking_uri, reachable, redact_uri

    if experiment is not None and not experiment.strip():
        raise ConfigError(
            f"experiment {experiment!r} is empty: give a name, or leave it out to use each "
            "row's CodeCarbon project_name"
        )
    checked = read_codecarbon_csv(path, timezone=timezone)
    env = os.environ if environ is None else environ
    uri = absolute_uri(tracking_uri or default_tracking_uri(env))
    shown = redact_uri(uri)
    if client is None:
        if not reachable(uri):
            raise SinkError(
                f"the tracking store {shown} does not accept connections; nothing was imported"
            )
        from greenml.sinks.mlflow import client_for

        client = client_for(uri)
    store = _Store(client, shown)
    names = {r.run_id: experiment or r.project_name or SOURCE for r in checked.runs}
    store.check_experiments(sorted(set(names.values())))
    outcomes = []
    for run in checked.runs:
        found = store.find(run.run_id)
        if found is not None:
            mlflow_id, exp_name, previous = found
            status = "existing" if previous == run.final.timestamp else "stale"
            outcomes.append(
                Outcome(
                    run, status, mlflow_id, exp_name, None if status == "existing" else previous
                )
            )
            continue
        mlflow_id = store.create(run, names[run.run_id], checked.name)
        outcomes.append(Outcome(run, "created", mlflow_id, names[run.run_id]))
    return ImportResult(checked, shown, tuple(outcomes))


class _Store:
    """The MLflow calls of an import, each failure a :class:`SinkError` naming the store."""

    def __init__(self, client: Any, shown_uri: str) -> None:
        self.client = client
        self.uri = shown_uri
        self._experiment_ids: dict[str, str] = {}
        self._names: dict[str, str] = {}
        self._active: list[str] | None = None

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except ConfigError:
            raise
        except Exception as e:  # MlflowException, a connection error: the store's failure
            raise SinkError(f"the tracking store {self.uri} failed to {what}: {e}") from e

    def check_experiments(self, names: Sequence[str]) -> None:
        """Each experiment exists and is active, or does not exist yet (then created when
        its first run is): checked before any run is created."""
        for name in names:
            exp = self._call(
                f"look up experiment {name!r}", lambda n=name: self.client.get_experiment_by_name(n)
            )
            if exp is None:
                continue
            if getattr(exp, "lifecycle_stage", "active") == "deleted":
                raise ConfigError(
                    f"experiment {name!r} is deleted in {self.uri}: restore it "
                    f"(mlflow experiments restore --experiment-id {exp.experiment_id}) or give "
                    "another experiment name"
                )
            self._experiment_ids[name] = exp.experiment_id
            self._names[exp.experiment_id] = name

    def active_experiment_ids(self) -> list[str]:
        if self._active is None:
            from mlflow.entities import ViewType

            ids: list[str] = []
            token = None
            while True:
                page = self._call(
                    "list its experiments",
                    lambda t=token: self.client.search_experiments(
                        view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=t
                    ),
                )
                for e in page:
                    ids.append(e.experiment_id)
                    self._names[e.experiment_id] = e.name
                token = getattr(page, "token", None)
                if not token:
                    break
            self._active = ids
        return self._active

    def find(self, run_id: str) -> tuple[str, str, str | None] | None:
        """An active run imported from CodeCarbon's run ``run_id``: (MLflow run id, its
        experiment, its imported timestamp); None if there is none."""
        from mlflow.entities import ViewType

        ids = self.active_experiment_ids()
        if not ids:
            return None
        query = (
            f"tags.`{TAG_IMPORTED_RUN_ID}` = '{run_id}' "
            f"AND tags.`{TAG_IMPORTED_FROM}` LIKE '{SOURCE} %'"
        )
        runs: list[Any] = []
        for i in range(0, len(ids), 100):  # a store's limit on experiments per search
            chunk = ids[i : i + 100]
            runs += self._call(
                f"search for CodeCarbon run {run_id}",
                lambda c=chunk: self.client.search_runs(
                    c, filter_string=query, run_view_type=ViewType.ACTIVE_ONLY, max_results=10
                ),
            )
        if not runs:
            return None
        latest = max(runs, key=lambda r: r.data.tags.get(TAG_IMPORTED_TIMESTAMP, ""))
        exp_id = latest.info.experiment_id
        return (
            latest.info.run_id,
            self._names.get(exp_id, exp_id),
            latest.data.tags.get(TAG_IMPORTED_TIMESTAMP),
        )

    def experiment_id(self, name: str) -> str:
        if name not in self._experiment_ids:
            exp_id = self._call(
                f"create experiment {name!r}", lambda: self.client.create_experiment(name)
            )
            self._experiment_ids[name] = exp_id
            self._names[exp_id] = name
            if self._active is not None:
                self._active.append(exp_id)
        return self._experiment_ids[name]

    def create(self, run: CodeCarbonRun, experiment: str, file_name: str) -> str:
        """One finished run with the figures, params and tags in one batch; if anything
        fails after the run exists, the run is deleted again (so that no half-filled run
        stays behind, and importing again creates it)."""
        from mlflow.entities import Metric, Param, RunTag

        exp_id = self.experiment_id(experiment)
        created = self._call(
            f"create a run for CodeCarbon run {run.run_id}",
            lambda: self.client.create_run(exp_id, start_time=run.start_ms, run_name=run.run_name),
        )
        mlflow_id = created.info.run_id
        metrics = [Metric(k, v, ts, step) for k, v, ts, step in run.metrics()]
        params = [Param(k, v) for k, v in run.params().items()]
        tags = [RunTag(k, v) for k, v in run.tags(file_name).items()]
        try:
            self._call(
                f"log CodeCarbon run {run.run_id}",
                lambda: self.client.log_batch(mlflow_id, metrics=metrics, params=params, tags=tags),
            )
            self._call(
                f"end run {mlflow_id}",
                lambda: self.client.set_terminated(mlflow_id, "FINISHED", end_time=run.end_ms),
            )
        except SinkError:
            with contextlib.suppress(Exception):  # the store is failing: the error says so
                self.client.delete_run(mlflow_id)
            raise
        return mlflow_id
