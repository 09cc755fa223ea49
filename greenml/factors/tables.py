"""Which factor tables a run uses: the shipped ones, or the user's own.

Setting ``tables_dir`` (``GREENML_TABLES_DIR``, ``[tool.greenml] tables_dir``) names a
folder; each of these files found there replaces the shipped table of the same name and
must have the same columns (``greenml tables show`` prints the shipped rows):

- ``cloud_regions.csv``: cloud region -> grid zone;
- ``gcp_region_carbon.csv``: per-region grid intensity and CFE% for GCP;
- ``pue.csv``: default PUE per provider (and region);
- ``instance_prices.csv``: on-demand instance prices;
- ``gpus.csv``: GPU board power;
- ``embodied.csv``: embodied carbon and lifetimes.

Every file found is read and validated when the run is set up, so a bad row (named by
file, row and column) stops the run before training starts.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from greenml.errors import ConfigError

FILES = {
    "regions": "cloud_regions.csv",
    "gcp_carbon": "gcp_region_carbon.csv",
    "pue": "pue.csv",
    "prices": "instance_prices.csv",
    "gpus": "gpus.csv",
    "embodied": "embodied.csv",
}


@dataclass(frozen=True)
class Tables:
    """The tables of one run; ``directory=None`` means all shipped."""

    directory: str | None = None

    def path(self, name: str) -> str | None:
        if self.directory is None:
            return None
        p = Path(self.directory) / FILES[name]
        return str(p) if p.is_file() else None

    def overridden(self) -> list[str]:
        return [FILES[n] for n in FILES if self.path(n) is not None]

    def regions(self) -> Any:
        from greenml.factors.regions import load_cloud_regions

        return _load(load_cloud_regions, self.path("regions"))

    def gcp_carbon(self) -> Any:
        from greenml.factors.regions import load_gcp_region_carbon

        return _load(load_gcp_region_carbon, self.path("gcp_carbon"))

    def pue(self) -> Any:
        from greenml.factors.pue import load_pue_table

        return _load(load_pue_table, self.path("pue"))

    def prices(self) -> Any:
        from greenml.factors.prices import load_prices

        return _load(load_prices, self.path("prices"))

    def gpus(self) -> Any:
        from greenml.factors.hardware import load_gpus

        return _load(load_gpus, self.path("gpus"))

    def embodied(self) -> Any:
        from greenml.factors.hardware import load_embodied

        return _load(load_embodied, self.path("embodied"))

    def validate(self) -> None:
        """Read every table this run will use (raises ConfigError on a bad row)."""
        for name in FILES:
            getattr(self, name)()


def _load(loader: Any, path: str | None) -> Any:
    if path is None:
        return loader()
    return _cached_user_table(loader, path, Path(path).stat().st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _cached_user_table(loader: Any, path: str, mtime_ns: int) -> Any:
    return loader(path)  # re-read when the file changes (its mtime is in the key)


def tables(directory: str | None) -> Tables:
    if directory is not None and not Path(directory).is_dir():
        raise ConfigError(
            f"tables_dir={directory!r} is not a folder; it should hold CSV files named "
            f"{', '.join(FILES.values())} (any subset)"
        )
    return Tables(directory)
