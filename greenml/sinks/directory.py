"""The directory sink: a run's records as plain files, for users without MLflow.

:class:`DirectoryTarget` (the ``"directory"`` :class:`~greenml.sinks.base.Target`, set up by
the ``sink_dir`` setting) writes each run into ``<sink_dir>/<greenml run id>/``:

``metrics.csv``     one row per metric point: ``ts`` (ms since the epoch), ``step``,
                    ``name``, ``value`` (the time series and, last, the summary)
``params.json``     the params, ``{name: value}`` (the factors used)
``tags.json``       the tags, ``{name: value}`` (``greenml.status`` among them)
``footprint.json``  the whole footprint, as MLflow's ``greenml/footprint.json`` holds it
``timeseries.csv``  the bounded time-series table, as MLflow's ``greenml/timeseries.csv``

The names of metrics, params and tags are :mod:`greenml.schema`'s, the same as in MLflow.
Nothing needs a server, so the folder suits an air-gapped cluster; ``greenml sync
--include-local`` later replays the journal into MLflow. A replay (``dedupe``) writes no
row twice; the JSON files are rewritten whole (atomically), so writing them again is
harmless. The target is reachable unless the folder cannot be written; then the records
wait in the journal.
"""

from __future__ import annotations

import csv
import io
import json
import os
import posixpath
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from greenml.schema import FOOTPRINT_ARTIFACT, TAG_STATUS, TIMESERIES_ARTIFACT, status_tag
from greenml.sinks.base import where_of

METRICS_FILE = "metrics.csv"
METRICS_HEADER = ("ts", "step", "name", "value")
PARAMS_FILE = "params.json"
TAGS_FILE = "tags.json"
FOOTPRINT_FILE = posixpath.basename(FOOTPRINT_ARTIFACT)  # footprint.json
TIMESERIES_FILE = posixpath.basename(TIMESERIES_ARTIFACT)  # timeseries.csv


class DirectoryTarget:
    """Writes a run's journal records as plain files under ``path`` (see the module)."""

    name = "directory"
    label = "the directory sink"
    unreachable_why = "its folder cannot be written"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(os.path.abspath(path))
        self.run_id: str | None = None  # the greenml run id: the run's folder name
        self.experiment_id: str | None = None  # folders have no experiments
        self._points: set[tuple[str, str, str, str]] | None = None  # rows metrics.csv has

    @property
    def uri(self) -> str:
        return str(self.path)

    @property
    def where(self) -> str:
        return where_of(self.label, self.uri)

    @property
    def run_dir(self) -> Path:
        assert self.run_id is not None, "ensure_run first"
        return self.path / self.run_id

    def reachable(self) -> bool:
        """Whether the folder exists (or can be made) and can be written."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError:
            return False
        return os.access(self.path, os.W_OK | os.X_OK)

    def refused(self, error: BaseException) -> bool:
        return False  # a folder refuses nothing: any error is the folder being away

    def ensure_run(self, start: Mapping[str, Any], *, search: bool = True) -> dict[str, Any]:
        """The run's folder, ``<path>/<greenml run id>`` (made if missing)."""
        self.run_id = str(start["greenml_run_id"])
        self.run_dir.mkdir(parents=True, exist_ok=True)
        return {"run_id": self.run_id, "path": str(self.run_dir)}

    def send(self, record: Mapping[str, Any], *, dedupe: bool) -> list[str]:
        """Write one journal record: its metric points as rows of ``metrics.csv`` (with
        ``dedupe``, rows the file has are skipped), its params and tags merged into their
        JSON files, and a summary's footprint and time-series table."""
        metrics = record.get("metrics") or {}
        if metrics:
            ts, step = str(int(record["ts"])), str(int(record.get("step", 0)))
            rows = [(ts, step, str(k), repr(float(v))) for k, v in metrics.items()]
            if dedupe:
                have = self._have()
                rows = [r for r in rows if r not in have]
            self._append_rows(rows)
        if record.get("params"):
            self._merge(PARAMS_FILE, record["params"])
        if record.get("tags"):
            self._merge(TAGS_FILE, record["tags"])
        if record["t"] == "summary":
            if "footprint" in record:
                doc = record["footprint"]
                text = doc if isinstance(doc, str) else json.dumps(doc, indent=2, default=str)
                self._write(FOOTPRINT_FILE, text)
            if "csv" in record:
                self._write(TIMESERIES_FILE, str(record["csv"]))
        return []

    def end(self, status: str, end_time_ms: int | None = None) -> None:
        """Mark a run that never sent its summary: ``greenml.status`` in ``tags.json``."""
        self._merge(TAGS_FILE, {TAG_STATUS: status_tag(status)})

    # -- files ----------------------------------------------------------------------

    def _have(self) -> set[tuple[str, str, str, str]]:
        if self._points is None:
            self._points = set()
            try:
                with open(self.run_dir / METRICS_FILE, encoding="utf-8", newline="") as f:
                    for row in csv.reader(f):
                        if len(row) == len(METRICS_HEADER) and tuple(row) != METRICS_HEADER:
                            self._points.add((row[0], row[1], row[2], row[3]))
            except FileNotFoundError:
                pass
        return self._points

    def _append_rows(self, rows: list[tuple[str, str, str, str]]) -> None:
        if not rows:
            return
        path = self.run_dir / METRICS_FILE
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        if not path.exists() or path.stat().st_size == 0:
            writer.writerow(METRICS_HEADER)
        writer.writerows(rows)
        with open(path, "a", encoding="utf-8", newline="") as f:
            f.write(out.getvalue())
            f.flush()
            os.fsync(f.fileno())
        if self._points is not None:
            self._points.update(rows)

    def _merge(self, name: str, values: Mapping[str, Any]) -> None:
        path = self.run_dir / name
        try:
            current = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            current = {}
        if not isinstance(current, dict):
            current = {}
        current.update({str(k): str(v) for k, v in values.items()})
        self._write(name, json.dumps(current, indent=2, sort_keys=True) + "\n")

    def _write(self, name: str, text: str) -> None:
        """Replace ``name`` in the run's folder with ``text``, atomically."""
        fd, tmp = tempfile.mkstemp(dir=self.run_dir, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.run_dir / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
