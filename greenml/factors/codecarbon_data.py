"""CodeCarbon's shipped data files, read directly: no ``import codecarbon`` (its package
imports pandas and probes the machine's GPUs at import, ~0.5 s and a message on machines
with ``amdsmi`` but no AMD GPU). Each file is read once per process, on first use."""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path
from typing import Any


def data_path(relative: str) -> Path:
    """The path of ``codecarbon/<relative>`` (``data/hardware/cpu_power.csv``, ...),
    found without importing the package."""
    spec = importlib.util.find_spec("codecarbon")
    for location in list(spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / relative
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"codecarbon's {relative} was not found; install it with `pip install codecarbon` "
        "(a greenml dependency)"
    )


@functools.cache
def load_json(relative: str) -> Any:
    """A JSON data file of CodeCarbon's, parsed once."""
    with open(data_path(relative), encoding="utf-8") as f:
        return json.load(f)


class DataFiles:
    """The getters of CodeCarbon's ``DataSource`` that greenml uses, over the same files."""

    def get_global_energy_mix_data(self) -> Any:
        return load_json("data/private_infra/global_energy_mix.json")

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
