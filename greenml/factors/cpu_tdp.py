"""CPU TDP table: CodeCarbon's ``cpu_power.csv``, matched to a CPU name.

The GPU table is beside it in :mod:`greenml.factors.hardware`; the CPU estimate that
uses this one is :class:`greenml.meters.cpu.CpuEstimateMeter`. The CSV is read with
:mod:`csv` and located without importing codecarbon (which would load pandas), once per
process. Matching, see :meth:`TdpTable.lookup`.

A run needs one CPU, not the ~5,000 of the table: :meth:`TdpTable.codecarbon_for` keeps
only the rows that can match it, found by a substring test before any of the (costly)
name normalising, and gives the same answer as the whole table (see its docstring).
"""

from __future__ import annotations

import csv
import functools
import io
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TdpMatch", "TdpTable", "codecarbon_cpu_table_path", "normalize_cpu_name"]

_PARENS = re.compile(r"\([^)]*\)")
_CLOCK = re.compile(r"@?\s*\d+(?:\.\d+)?\s*[gm]hz\b")
_GENERATION = re.compile(r"\b\d+(?:st|nd|rd|th)\s+gen\b")
_CORE_COUNT = re.compile(r"\b\d+-core\b")
_NOISE = re.compile(r"\b(?:cpu|processor)\b|\bwith radeon\b.*$|[,®™]")
#: Each pattern above needs one of these texts in the name (a blank put in by a
#: replacement cannot make a new one): a name with none of them is only re-spaced.
_PATTERN_PIECES = ("(", "hz", "gen", "-core", "cpu", "processor", "with radeon", ",", "®", "™")
_ANY_PIECE = re.compile("|".join(map(re.escape, _PATTERN_PIECES)))


def normalize_cpu_name(name: str) -> str:
    """Lower case, without trademarks, clock speed, generation, core count, "CPU" and
    "Processor": ``"Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz"`` -> ``"intel xeon gold
    6248"``, ``"AMD EPYC 7763 64-Core Processor"`` -> ``"amd epyc 7763"``."""
    s = name.lower()
    if not _ANY_PIECE.search(s):
        return " ".join(s.split())  # none of the patterns can match: skip them (fast)
    s = _PARENS.sub(" ", s)
    s = _CLOCK.sub(" ", s)
    s = _GENERATION.sub(" ", s)
    s = _CORE_COUNT.sub(" ", s)
    s = _NOISE.sub(" ", s)
    return " ".join(s.split())


def _has_digit(token: str) -> bool:
    return any(c.isdigit() for c in token)


@dataclass(frozen=True)
class TdpMatch:
    """A CPU found in the TDP table."""

    name: str  # the table's spelling
    tdp_w: float  # per package
    how: str  # "exact" (after normalising) or "token"


class TdpTable:
    """CPU name -> TDP (W per package), matched deterministically.

    :meth:`lookup` normalises both sides with :func:`normalize_cpu_name` and tries:

    1. an exact match;
    2. the table names whose words all occur in the CPU's name (e.g. "Intel Core
       i5-1135G7" in "11th Gen Intel(R) Core(TM) i5-1135G7 @ 2.40GHz"), keeping the
       longest; or, failing that, the names that contain all the CPU's words (a short
       user-supplied name such as "Xeon Gold 6248"), keeping the shortest.

    Words are whitespace-separated and keep their hyphens, so ``i7-8700`` never
    matches ``i7-8700K``; a token match needs a shared word with a digit in it (a
    model number). When the best candidates disagree on TDP the lookup returns None
    rather than guess. CodeCarbon (``TDP._get_matching_cpu``) does the same two steps
    with rapidfuzz: ``fuzz.ratio`` = 100 on lower-cased names (before and after
    stripping "(R)", "CPU" and "@ x.xxGHz"), then ``fuzz.token_set_ratio`` = 100,
    whose default processing splits "i7-8700" into "i7" and "8700", taking the first
    of equal scores only in its greedy mode. Here the same idea is a few lines of
    plain Python with no dependency, a wider normalisation (TM, "Processor", "N-Core",
    "Nth Gen"), and ties resolved by specificity, never by table order.
    """

    def __init__(self, rows: Iterable[tuple[str, float]], source: str) -> None:
        self.source = source
        self._exact: dict[str, tuple[str, float] | None] = {}
        self._entries: list[tuple[frozenset[str], str, float]] = []
        for raw_name, tdp_w in rows:
            norm = normalize_cpu_name(raw_name)
            if not norm:
                continue
            prior = self._exact.get(norm, ())
            if prior == ():
                self._exact[norm] = (raw_name, tdp_w)
            elif prior is not None and prior[1] != tdp_w:
                self._exact[norm] = None  # two spellings, two TDPs: not an exact match
            self._entries.append((frozenset(norm.split()), raw_name, tdp_w))

    def __len__(self) -> int:
        return len(self._entries)

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str], source: str | None = None) -> TdpTable:
        """A table from a CSV with ``Name`` and ``TDP`` columns (CodeCarbon's format)."""
        rows: list[tuple[str, float]] = []
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                try:
                    tdp = float(row["TDP"])
                except (KeyError, TypeError, ValueError):
                    continue
                if row.get("Name") and math.isfinite(tdp) and tdp > 0:
                    rows.append((row["Name"], tdp))
        return cls(rows, source or str(path))

    @classmethod
    def codecarbon(cls) -> TdpTable:
        """CodeCarbon's shipped ``cpu_power.csv``, parsed once per process (it is read
        only, and parsing its ~5,000 rows takes ~0.1 s, too long for every run's start).
        Raises :class:`FileNotFoundError` when codecarbon is not installed."""
        return _codecarbon_table(cls)

    @classmethod
    def codecarbon_for(cls, cpu_model: str) -> TdpTable:
        """CodeCarbon's table cut down to the rows that can match ``cpu_model``: its
        :meth:`lookup` of ``cpu_model`` answers as :meth:`codecarbon`'s does, for a
        fraction of the time (a run's start needs this one CPU). Cached per model.

        Why the answer is the same: every word of a normalised name is a piece of the
        lower-cased name (normalising only cuts pieces out), and a row decides the lookup
        only if its words are the CPU's (exact), or it shares a word with a digit with the
        CPU, or it holds all the CPU's words. So a row none of whose lower-cased name
        contains all the CPU's words, or one of its words with a digit, plays no part."""
        return _codecarbon_for(cls, cpu_model)

    @classmethod
    def _load_codecarbon(cls) -> TdpTable:
        return cls.from_csv(codecarbon_cpu_table_path(), _codecarbon_label())

    def lookup(self, cpu_model: str) -> TdpMatch | None:
        """The table entry for ``cpu_model`` (see the class docstring), or None."""
        norm = normalize_cpu_name(cpu_model)
        if not norm:
            return None
        exact = self._exact.get(norm)
        if exact is not None:
            return TdpMatch(exact[0], exact[1], "exact")
        words = frozenset(norm.split())
        numbered = {w for w in words if _has_digit(w)}
        if not numbered:
            return None
        inside = [e for e in self._entries if e[0] <= words and e[0] & numbered]
        if inside:
            most = max(len(e[0]) for e in inside)
            return self._agree([e for e in inside if len(e[0]) == most])
        around = [e for e in self._entries if words <= e[0]]
        if around:
            fewest = min(len(e[0]) for e in around)
            return self._agree([e for e in around if len(e[0]) == fewest])
        return None

    @staticmethod
    def _agree(best: list[tuple[frozenset[str], str, float]]) -> TdpMatch | None:
        if len({tdp for _, _, tdp in best}) != 1:
            return None
        name = min(n for _, n, _ in best)  # deterministic spelling among equals
        return TdpMatch(name, best[0][2], "token")


@functools.cache
def _codecarbon_table(cls: type[TdpTable]) -> TdpTable:
    return cls._load_codecarbon()


@functools.lru_cache(maxsize=16)
def _codecarbon_for(cls: type[TdpTable], cpu_model: str) -> TdpTable:
    norm = normalize_cpu_name(cpu_model)
    words = frozenset(norm.split())
    numbered = frozenset(w for w in words if _has_digit(w))
    rows: list[tuple[str, float]] = []
    for name, tdp_text in _codecarbon_rows(words, numbered) if words else ():
        row_norm = normalize_cpu_name(name)
        if row_norm != norm:
            if not numbered:
                continue  # without a model number, only an exact match counts
            tokens = frozenset(row_norm.split())
            if not ((tokens <= words and tokens & numbered) or words <= tokens):
                continue  # neither an inside nor an around match
        try:
            tdp = float(tdp_text)
        except ValueError:
            continue
        if math.isfinite(tdp) and tdp > 0:
            rows.append((name, tdp))
    return cls(rows, _codecarbon_label())


def _quoted_over_lines(text: str) -> bool:
    """Whether a line of ``text`` has an odd number of quotes (a quoted cell goes on
    over the line's end); only the lines with a quote are looked at."""
    i = text.find('"')
    while i != -1:
        start = text.rfind("\n", 0, i) + 1
        end = text.find("\n", i)
        end = len(text) if end == -1 else end
        if text.count('"', start, end) % 2:
            return True
        i = text.find('"', end)
    return False


def _codecarbon_rows(words: frozenset[str], numbered: frozenset[str]) -> list[tuple[str, str]]:
    """(Name, TDP) cells of the rows of CodeCarbon's ``cpu_power.csv`` whose line holds
    all of ``words`` or one of ``numbered`` (lower case), and a name and a TDP cell (the
    rows :meth:`TdpTable.from_csv` would consider). The lines are picked by one regular
    expression over the file; only those are parsed as CSV (the whole file is, when a
    quoted cell spans lines)."""
    with open(codecarbon_cpu_table_path(), newline="", encoding="utf-8") as f:
        text = f.read()
    header_end = text.find("\n") + 1 or len(text)
    header = next(csv.reader([text[:header_end]]), [])
    if "Name" not in header or "TDP" not in header:
        return []
    # DictReader semantics: a repeated column name keeps its last cell
    i_name = len(header) - 1 - header[::-1].index("Name")
    i_tdp = len(header) - 1 - header[::-1].index("TDP")
    need = max(i_name, i_tdp)
    body = text[header_end:]
    low = body.lower()
    if len(low) != len(body) or _quoted_over_lines(body):
        lines: Iterable[str] = io.StringIO(body, newline="")
    else:
        alternatives = []
        if words:
            alternatives.append("".join(f"(?=[^\n]*{re.escape(w)})" for w in sorted(words)))
        if numbered:
            alternatives.append(f"(?=[^\n]*(?:{'|'.join(map(re.escape, sorted(numbered)))}))")
        pattern = re.compile(f"^(?:{'|'.join(alternatives)})[^\n]*", re.M)
        lines = [body[m.start() : m.end()] for m in pattern.finditer(low)]
    return [(r[i_name], r[i_tdp]) for r in csv.reader(lines) if len(r) > need and r[i_name]]


def _codecarbon_label() -> str:
    try:
        from greenml.factors.codecarbon_data import version

        return f"CodeCarbon {version()} data/hardware/cpu_power.csv"
    except Exception:  # pragma: no cover - metadata missing in odd installs
        return "CodeCarbon data/hardware/cpu_power.csv"


def codecarbon_cpu_table_path() -> Path:
    """Where codecarbon's ``cpu_power.csv`` is, found without importing codecarbon."""
    from greenml.factors.codecarbon_data import data_path

    return data_path("data/hardware/cpu_power.csv")
