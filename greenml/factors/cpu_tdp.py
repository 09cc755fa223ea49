"""CPU TDP table: CodeCarbon's ``cpu_power.csv``, matched to a CPU name.

The GPU table is beside it in :mod:`greenml.factors.hardware`; the CPU estimate that
uses this one is :class:`greenml.meters.cpu.CpuEstimateMeter`. The CSV is read with
:mod:`csv` and located without importing codecarbon (which would load pandas), once per
process. Matching, see :meth:`TdpTable.lookup`.
"""

from __future__ import annotations

import csv
import functools
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


def normalize_cpu_name(name: str) -> str:
    """Lower case, without trademarks, clock speed, generation, core count, "CPU" and
    "Processor": ``"Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz"`` -> ``"intel xeon gold
    6248"``, ``"AMD EPYC 7763 64-Core Processor"`` -> ``"amd epyc 7763"``."""
    s = name.lower()
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
    def _load_codecarbon(cls) -> TdpTable:
        path = codecarbon_cpu_table_path()
        try:
            from importlib.metadata import version

            label = f"CodeCarbon {version('codecarbon')} data/hardware/cpu_power.csv"
        except Exception:  # pragma: no cover - metadata missing in odd installs
            label = "CodeCarbon data/hardware/cpu_power.csv"
        return cls.from_csv(path, label)

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


def codecarbon_cpu_table_path() -> Path:
    """Where codecarbon's ``cpu_power.csv`` is, found without importing codecarbon."""
    from greenml.factors.codecarbon_data import data_path

    return data_path("data/hardware/cpu_power.csv")
