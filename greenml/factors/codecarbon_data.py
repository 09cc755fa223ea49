"""CodeCarbon's shipped data files, read directly: no ``import codecarbon`` (its package
imports pandas and probes the machine's GPUs at import, ~0.5 s and a message on machines
with ``amdsmi`` but no AMD GPU). Each file is read once per process, on first use."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
from pathlib import Path
from typing import Any


@functools.cache
def _package_dirs() -> tuple[str, ...]:
    """The folders of the ``codecarbon`` package, found (once) without importing it."""
    spec = importlib.util.find_spec("codecarbon")
    return tuple(spec.submodule_search_locations or []) if spec else ()


def data_path(relative: str) -> Path:
    """The path of ``codecarbon/<relative>`` (``data/hardware/cpu_power.csv``, ...),
    found without importing the package."""
    for location in _package_dirs():
        path = Path(location) / relative
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"codecarbon's {relative} was not found; install it with `pip install codecarbon` "
        "(a greenml dependency)"
    )


@functools.cache
def version() -> str:
    """The installed codecarbon's version, as ``importlib.metadata.version("codecarbon")``
    gives it. Read from the name of the ``codecarbon-<version>.dist-info`` folder beside
    the package when there is exactly one (importing :mod:`importlib.metadata` costs
    ~15 ms, a sixth of a run's start); else through :mod:`importlib.metadata`."""
    for location in _package_dirs():
        site = os.path.dirname(os.path.abspath(location))
        try:
            names = os.listdir(site)
        except OSError:
            break
        found = [
            n[len("codecarbon-") : -len(".dist-info")]
            for n in names
            if n.lower().startswith("codecarbon-") and n.endswith(".dist-info")
        ]
        if len(found) == 1 and found[0] and "-" not in found[0]:
            return found[0]
        break
    from importlib.metadata import version as metadata_version

    return metadata_version("codecarbon")


GLOBAL_ENERGY_MIX = "data/private_infra/global_energy_mix.json"


@functools.cache
def load_json(relative: str) -> Any:
    """A JSON data file of CodeCarbon's, parsed once."""
    with open(data_path(relative), encoding="utf-8") as f:
        return json.load(f)


def json_entry(relative: str, key: str) -> Any:
    """``load_json(relative).get(key)`` for a file whose top level is an object, decoding
    only that entry: a run needs one country of ``global_energy_mix.json``, not all of
    them. The entry is found as the one key at the indentation of the file's first key;
    when that is not certain (a compact file, the key absent or there twice), the whole
    file is parsed instead."""
    found = _entries(relative).get(key)
    return load_json(relative).get(key) if found is _UNSURE else found


class DataFiles:
    """The getters of CodeCarbon's ``DataSource`` that greenml uses, over the same files."""

    def get_global_energy_mix_data(self) -> Any:
        return load_json(GLOBAL_ENERGY_MIX)

    def get_global_energy_mix_entry(self, alpha3: str) -> Any:
        """``get_global_energy_mix_data().get(alpha3)``, decoding that country only."""
        return json_entry(GLOBAL_ENERGY_MIX, alpha3)

    def get_country_emissions_data(self, country: str) -> Any:
        return load_json(f"data/private_infra/2023/{country}_emissions.json")

    def get_country_energy_mix_data(self, country: str) -> Any:
        names = {"can": "canada_energy_mix.json"}
        return load_json(f"data/private_infra/2023/{names.get(country, country)}")

    def get_carbon_intensity_per_source_data(self) -> Any:
        return load_json("data/private_infra/carbon_intensity_per_source.json")

    def get_nordic_country_energy_mix_data(self) -> Any:
        return load_json("data/private_infra/nordic_emissions.json")

    def get_china_provincial_emissions_data(self) -> Any:
        return load_json("data/private_infra/2023/china_provincial_emissions.json")


_UNSURE = object()


@functools.lru_cache(maxsize=8)
def _entries(relative: str) -> _Entries:
    with open(data_path(relative), encoding="utf-8") as f:
        return _Entries(f.read())


class _Entries:
    """The top-level entries of a pretty-printed JSON object, decoded on demand."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._decoded: dict[str, Any] = {}
        first = re.match(r'\s*\{[ \t]*\r?\n([ \t]+)"', text)
        self._indent = first.group(1) if first else None

    def get(self, key: str) -> Any:
        if key in self._decoded:
            return self._decoded[key]
        if self._indent is None:
            return _UNSURE
        pattern = rf"^{re.escape(self._indent)}{re.escape(json.dumps(key))}[ \t]*:[ \t]*"
        found = list(re.finditer(pattern, self._text, re.M))
        if len(found) != 1:
            return _UNSURE
        try:
            value, _ = json.JSONDecoder().raw_decode(self._text, found[0].end())
        except ValueError:
            return _UNSURE
        self._decoded[key] = value
        return value
