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
file, row and column) stops the run before training starts. So does a folder that is
missing, given as an empty string, holds none of these files, or holds any other file (a
misspelt ``gpu.csv`` would otherwise be ignored, and the shipped table used in its place):
the error names the file, the valid names and the closest one. Hidden files (``.DS_Store``,
``.gitignore``) and sub-folders are not looked at.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greenml.config import PYTHON, Voice
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
    """The tables of one run; ``directory=None`` means all shipped. ``voice`` names the
    ``tables_dir`` setting in errors the way the user gave it."""

    directory: str | None = None
    voice: Voice = field(default=PYTHON, compare=False, repr=False)

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
        """Check the folder's files, then read every table of the user's this run will
        use (raises ConfigError on an unknown file or a bad row). The shipped tables are
        read when first needed (a run needs few of them), and then once per process."""
        if self.directory is None:
            return
        _check_folder(self.directory, self.voice)
        for name in FILES:
            if self.path(name) is not None:
                getattr(self, name)()


def in_tables_dir(file: str, voice: Voice = PYTHON) -> str:
    """Where a table of the user's own goes, in their terms: ``gpus.csv in --tables-dir``
    on the command line, ``gpus.csv in your tables_dir folder`` in Python."""
    if voice.cli:
        return f"{file} in {voice.option('tables_dir')}"
    return f"{file} in your {voice.option('tables_dir').rstrip('=')} folder"


def _valid_names() -> str:
    return ", ".join(FILES.values())


def _check_folder(directory: str, voice: Voice) -> None:
    what = voice.given("tables_dir", directory)
    try:
        names = sorted(
            p.name for p in Path(directory).iterdir() if p.is_file() and not p.name.startswith(".")
        )
    except OSError as e:
        raise ConfigError(f"{what}: cannot list the folder: {e.strerror or e}") from e
    valid = set(FILES.values())
    for name in names:
        if name in valid:
            continue
        import difflib

        stem = name.lower().rsplit(".", 1)[0]
        by_table = {key.replace("_", "-"): file for key, file in FILES.items()}
        by_table.update({"gcp-carbon": FILES["gcp_carbon"], "grid": ""})
        if by_table.get(stem):  # named as `greenml tables show` names the table
            close = [by_table[stem]]
        else:
            close = difflib.get_close_matches(name.lower(), sorted(valid), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        raise ConfigError(
            f"{what}: {name} is not a table greenml reads{hint} The folder may hold only "
            f"{_valid_names()} (any subset, each replacing the shipped table of that name)"
        )
    if not names:
        raise ConfigError(
            f"{what} holds none of the table files {_valid_names()}; put your tables there, "
            f"or leave {voice.option('tables_dir').rstrip('=')} unset to use the shipped ones"
        )


def _load(loader: Any, path: str | None) -> Any:
    if path is None:
        return loader()
    return _cached_user_table(loader, path, Path(path).stat().st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _cached_user_table(loader: Any, path: str, mtime_ns: int) -> Any:
    return loader(path)  # re-read when the file changes (its mtime is in the key)


def tables(directory: str | None, *, voice: Voice = PYTHON) -> Tables:
    """The tables in ``directory`` (None: the shipped ones). A missing folder or an empty
    string is an error; :meth:`Tables.validate` checks the files."""
    if directory is not None:
        what = voice.given("tables_dir", directory)
        if not isinstance(directory, str) or not directory.strip():
            raise ConfigError(
                f"{what} is empty: give a folder holding CSV files named {_valid_names()} "
                f"(any subset), or leave {voice.option('tables_dir').rstrip('=')} unset to use "
                "the shipped tables"
            )
        if not Path(directory).is_dir():
            raise ConfigError(
                f"{what} is not a folder; it should hold CSV files named {_valid_names()} "
                "(any subset)"
            )
    return Tables(directory, voice)
