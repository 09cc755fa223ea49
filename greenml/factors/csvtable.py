"""Reading greenml's CSV factor tables: one reader, one error format.

Every table, shipped (``greenml/factors/data/*.csv``) or the user's own, is read here with
:mod:`csv` (no pandas). A problem is a :class:`~greenml.errors.ConfigError` naming the file,
the row (the line number in the file, the header being row 1) and the column::

    {label}, row {n}, column '{column}': {value!r} {why}
    {label}, row 1: missing column(s) 'year', 'source'; the header must name ...

``label`` is the user's path, or ``greenml/factors/data/<name>`` for a shipped table.
"""

from __future__ import annotations

import csv
import datetime
import io
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from greenml.errors import ConfigError


def read_table(
    path: str | os.PathLike[str] | None, shipped: str, *, encoding: str = "utf-8-sig"
) -> tuple[str, str]:
    """``(label, text)`` of the user's file at ``path``, or of the shipped ``data/<shipped>``
    when ``path`` is None. ``encoding`` applies to the user's file (UTF-8, with or without
    the byte-order mark spreadsheet programs write)."""
    if path is None:
        return f"greenml/factors/data/{shipped}", _shipped_text(shipped)
    label = os.fspath(path)
    try:
        with open(path, encoding=encoding, newline="") as f:
            return label, f.read()
    except OSError as e:
        raise ConfigError(f"{label}: cannot read the file: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{label}: cannot read the file: not {encoding} text ({e})") from e


def _shipped_text(name: str) -> str:
    """The text of the shipped ``data/<name>``: read beside this file (importing
    :mod:`importlib.resources` costs ~15 ms of a run's start), or through
    :mod:`importlib.resources` where the package is not a folder (a zip)."""
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
    if os.path.isdir(folder):
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            return f.read()
    from importlib import resources

    return resources.files("greenml.factors").joinpath(f"data/{name}").read_text("utf-8")


@dataclass(frozen=True)
class Row:
    """One data row: its values by column and where it is, for error messages."""

    label: str
    n: int  # line number in the file; the header is row 1
    values: Mapping[str, str]

    def __getitem__(self, column: str) -> str:
        return self.values[column]

    def error(self, column: str, why: str, *, value: str | None = None) -> ConfigError:
        """The error for ``column`` of this row; ``value`` defaults to the cell."""
        shown = self.values[column] if value is None else value
        return ConfigError(f"{self.label}, row {self.n}, column {column!r}: {shown!r} {why}")

    def text(self, column: str) -> str:
        """The cell, which must not be empty (or only blanks)."""
        value = self.values[column]
        if not value.strip():
            raise self.error(column, "is empty; a value is required")
        return value

    def number(
        self,
        column: str,
        *,
        positive: bool = False,
        non_negative: bool = False,
        bounds: tuple[float, float] | None = None,
    ) -> float:
        """A finite number; optionally > 0, >= 0, or within ``bounds`` (both inclusive)."""
        value = self.text(column)  # a ConfigError is a ValueError: read it outside the try
        try:
            number = float(value)
        except ValueError:
            raise self.error(column, "is not a number") from None
        if not math.isfinite(number):
            raise self.error(column, "is not a finite number")
        if positive and number <= 0:
            raise self.error(column, "must be > 0")
        if non_negative and number < 0:
            raise self.error(column, "is negative")
        if bounds is not None and not bounds[0] <= number <= bounds[1]:
            raise self.error(column, f"is outside {bounds[0]:g}..{bounds[1]:g}")
        return number

    def whole(self, column: str, *, minimum: int | None = None) -> int:
        """A whole number, optionally at least ``minimum``."""
        value = self.text(column)
        try:
            number = int(value)
        except ValueError:
            raise self.error(column, "is not a whole number") from None
        if minimum is not None and number < minimum:
            raise self.error(column, f"is less than {minimum}")
        return number

    def year(self, column: str = "year", *, bounds: tuple[int, int] | None = None) -> int:
        """A year such as 2025, optionally within ``bounds`` (both inclusive)."""
        value = self.text(column)
        try:
            year = int(value)
        except ValueError:
            raise self.error(column, "is not a year (e.g. 2025)") from None
        if bounds is not None and not bounds[0] <= year <= bounds[1]:
            raise self.error(column, f"is not a plausible year ({bounds[0]}..{bounds[1]})")
        return year

    def date(self, column: str) -> datetime.date:
        """An ISO date, YYYY-MM-DD."""
        value = self.text(column)
        try:
            return datetime.date.fromisoformat(value)
        except ValueError:
            raise self.error(column, "is not an ISO date (YYYY-MM-DD)") from None


def rows(
    label: str,
    text: str,
    columns: tuple[str, ...],
    *,
    strip: bool = True,
    extra_cells: bool = False,
) -> Iterator[Row]:
    """The data rows of ``text`` after checking that the header names every column.

    A cell missing at the end of a row reads as ``""``. ``strip`` trims blanks around each
    value; a row with more cells than the header is an error unless ``extra_cells``.
    """
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
        raise ConfigError(
            f"{label}, row 1: missing column(s) {', '.join(map(repr, missing))}; "
            f"the header must name {', '.join(columns)}"
        )
    for record in reader:
        if None in record and not extra_cells:
            raise ConfigError(
                f"{label}, row {reader.line_num}: more cells than the header has columns"
            )
        values = {c: record[c] or "" for c in columns}
        if strip:
            values = {c: v.strip() for c, v in values.items()}
        yield Row(label, reader.line_num, values)
