"""A metric's points as MLflow holds them and as a journal recorded them, in one shape
(step, timestamp in ms, value), sorted: what a test compares to say that nothing was lost
and nothing sent twice. Imported by the tests next to it (``from history import ...``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from greenml.sinks import journal as jr


def mlflow_points(client: Any, run_id: str, key: str) -> list[tuple[int, int, float]]:
    return sorted((m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, key))


def journal_points(path: Path, key: str) -> list[tuple[int, int, float]]:
    c = jr.read(path)
    return sorted(
        (r["step"], r["ts"], r["metrics"][key]) for r in c.records if key in r.get("metrics", {})
    )
