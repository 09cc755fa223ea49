"""An in-memory sink for tests of code that uses greenml: what MLflow would have got,
without MLflow.

::

    sink = MemorySink()
    with greenml.track(location="FR", log_to_mlflow=False, sinks=[sink]) as run:
        train()
    sink.latest["greenml/energy_kwh"]          # the summary's value
    sink.history("greenml/energy_kwh")          # [(step, value), ...] in order
    sink.params["greenml.location"], sink.tags["greenml.status"], sink.footprint
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class MemorySink:
    """A :class:`greenml.sinks.base.Target` that keeps every record in memory.

    ``points`` lists ``(name, step, timestamp_ms, value)`` in arrival order; ``latest``
    maps a metric to its last value (the summary's, once the run has ended); ``params``
    and ``tags`` hold the last value of each; ``footprint`` is the summary's
    ``footprint.json`` document and ``timeseries_csv`` its CSV; ``status`` the run's end.
    ``down=True`` makes it unreachable (records then wait in the journal)."""

    name = "memory"
    label = "memory sink"
    unreachable_why = "it was set down"

    def __init__(self, *, down: bool = False) -> None:
        self.down = down
        self.points: list[tuple[str, int, int, float]] = []
        self.params: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.footprint: dict[str, Any] | None = None
        self.timeseries_csv: str | None = None
        self.status: str | None = None
        self._run_id: str | None = None

    @property
    def uri(self) -> str:
        return "memory"

    @property
    def where(self) -> str:
        return "the memory sink"

    @property
    def run_id(self) -> str | None:
        return self._run_id

    @property
    def experiment_id(self) -> str | None:
        return None

    @property
    def latest(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, _, _, value in self.points:
            out[name] = value
        return out

    def history(self, name: str) -> list[tuple[int, float]]:
        return [(step, value) for n, step, _, value in self.points if n == name]

    def reachable(self) -> bool:
        return not self.down

    def ensure_run(self, start: Mapping[str, Any], *, search: bool = True) -> dict[str, Any]:
        self._run_id = str(start["greenml_run_id"])
        return {"run_id": self._run_id}

    def send(self, record: Mapping[str, Any], *, dedupe: bool) -> list[str]:
        have = set(self.points) if dedupe else set()
        for name, value in dict(record.get("metrics") or {}).items():
            point = (name, int(record.get("step", 0)), int(record.get("ts", 0)), float(value))
            if point not in have:
                self.points.append(point)
        self.params.update({k: str(v) for k, v in dict(record.get("params") or {}).items()})
        self.tags.update({k: str(v) for k, v in dict(record.get("tags") or {}).items()})
        if record.get("t") == "summary":
            self.footprint = dict(record.get("footprint") or {})
            self.timeseries_csv = record.get("csv")
            self.status = str(record.get("status"))
        return []

    def end(self, status: str, end_time_ms: int | None = None) -> None:
        self.status = status

    def refused(self, error: BaseException) -> bool:
        return False
