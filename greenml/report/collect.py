"""MLflow runs -> a pandas DataFrame, one row per run: the report's input.

Runs are fetched with paged ``search_runs`` over the chosen experiments, the period pushed
to MLflow as a ``start_time`` filter, never one request per run. Every run of the period is
a row, greenml's or not: ``has_greenml`` tells them apart, so a report can count and list
the runs it has no figures for instead of dropping them silently. A run's greenml metrics
(the latest values: its totals), params and tags become columns under their own names
(from :mod:`greenml.schema`); a multi-host job's per-host metrics (``greenml/node/...``) are
left out, its job totals kept, and its host count is the ``hosts`` column.

Usable from a notebook::

    from greenml.report import load_runs
    runs = load_runs(experiments=["bert"], since="2026-01-01")
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from greenml import schema
from greenml.errors import ConfigError, SinkError, scrub

if TYPE_CHECKING:
    import pandas as pd

PAGE_SIZE = 1000  # runs per search_runs request
REPORTS_EXPERIMENT = "greenml-reports"  # where --log-to-mlflow puts reports; never reported on

#: The columns every DataFrame has, before the metric/param/tag columns.
BASE_COLUMNS = (
    "run_id",
    "run_name",
    "experiment_id",
    "experiment",
    "user",
    "status",
    "start_ms",
    "end_ms",
    "has_greenml",
    "hosts",
)


def parse_date(text: str, *, flag: str) -> dt.date:
    """A ``YYYY-MM-DD`` date given as ``flag``; a ConfigError naming it otherwise."""
    try:
        return dt.date.fromisoformat(str(text).strip())
    except ValueError:
        raise ConfigError(f"{flag} {text!r} is not a date: give YYYY-MM-DD") from None


def period_ms(since: dt.date | None, until: dt.date | None) -> tuple[int | None, int | None]:
    """The period as MLflow start-time bounds in ms (UTC): ``since`` 00:00 to the end of
    ``until`` (inclusive)."""
    utc = dt.timezone.utc

    def ms(d: dt.date) -> int:
        return int(dt.datetime(d.year, d.month, d.day, tzinfo=utc).timestamp() * 1000)

    lo = ms(since) if since is not None else None
    hi = ms(until + dt.timedelta(days=1)) if until is not None else None
    return lo, hi


def load_runs(
    tracking_uri: str | None = None,
    experiments: Sequence[str] | None = None,
    since: dt.date | str | None = None,
    until: dt.date | str | None = None,
    *,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """The runs whose start falls in ``[since, until]`` (dates, inclusive; UTC), in the
    experiments named (all but ``greenml-reports`` when None), as a DataFrame (see the
    module docstring). ``tracking_uri`` defaults to ``MLFLOW_TRACKING_URI``, else
    MLflow's local default. ``progress(n)`` is called with the runs fetched so far after
    each page. An experiment that does not exist is a ConfigError naming it and those
    that do; a store that cannot be reached is a SinkError."""
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    from greenml.sinks.mlflow import absolute_uri, default_tracking_uri, reachable, redact_uri

    uri = absolute_uri(tracking_uri or default_tracking_uri(None))
    if uri.startswith("sqlite:///") and not os.path.exists(uri[len("sqlite:///") :]):
        # MLflow would create an empty store there: a report of nothing, and a stray file
        raise ConfigError(
            f"there is no MLflow store at {uri} (no such file); give --tracking-uri (or set "
            "MLFLOW_TRACKING_URI), or run the report in the folder that holds mlflow.db"
        )
    if not reachable(uri):
        raise SinkError(f"the tracking store {redact_uri(uri)} does not accept connections")
    since_d = parse_date(since, flag="--since") if isinstance(since, str) else since
    until_d = parse_date(until, flag="--until") if isinstance(until, str) else until
    if since_d is not None and until_d is not None and since_d > until_d:
        raise ConfigError(f"--since {since_d} is after --until {until_d}: nothing to report")
    client = MlflowClient(tracking_uri=uri)
    try:
        known = {e.experiment_id: e.name for e in _experiments(client, ViewType)}
    except Exception as e:
        raise SinkError(f"cannot read the experiments of {redact_uri(uri)}: {scrub(str(e))}") from e
    if experiments:
        by_name = {name: eid for eid, name in known.items()}
        missing = [n for n in experiments if n not in by_name]
        if missing:
            have = ", ".join(repr(n) for n in sorted(by_name)) or "none"
            raise ConfigError(
                f"no experiment named {', '.join(map(repr, missing))} in {redact_uri(uri)} "
                f"(--experiment); the store has: {have}"
            )
        ids = [by_name[n] for n in experiments]
    else:
        ids = [eid for eid, name in known.items() if name != REPORTS_EXPERIMENT]
    lo, hi = period_ms(since_d, until_d)
    clauses = []
    if lo is not None:
        clauses.append(f"attributes.start_time >= {lo}")
    if hi is not None:
        clauses.append(f"attributes.start_time < {hi}")
    rows: list[dict[str, Any]] = []
    token: str | None = None
    while ids:
        page = client.search_runs(
            ids,
            filter_string=" and ".join(clauses),
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=PAGE_SIZE,
            order_by=["attributes.start_time ASC"],
            page_token=token,
        )
        rows.extend(_row(run, known) for run in page)
        if progress is not None:
            progress(len(rows))
        token = page.token
        if not token:
            break
    frame = pd.DataFrame(rows)
    for column in BASE_COLUMNS:
        if column not in frame.columns:
            frame[column] = pd.Series(dtype=object)
    frame.attrs["tracking_uri"] = redact_uri(uri)
    frame.attrs["experiments"] = list(experiments or [])
    frame.attrs["since"] = since_d.isoformat() if since_d is not None else None
    frame.attrs["until"] = until_d.isoformat() if until_d is not None else None
    return frame


def _experiments(client: Any, view_type: Any) -> list[Any]:
    out, token = [], None
    while True:
        page = client.search_experiments(
            view_type=view_type.ACTIVE_ONLY, max_results=1000, page_token=token
        )
        out.extend(page)
        token = page.token
        if not token:
            return out


def _row(run: Any, experiments: dict[str, str]) -> dict[str, Any]:
    info, data = run.info, run.data
    hosts = {
        key[len(schema.NODE_PREFIX) :].partition("/")[0]
        for key in data.metrics
        if key.startswith(schema.NODE_PREFIX)
    }
    row: dict[str, Any] = {
        "run_id": info.run_id,
        "run_name": info.run_name or data.tags.get("mlflow.runName") or "",
        "experiment_id": info.experiment_id,
        "experiment": experiments.get(info.experiment_id, info.experiment_id),
        "user": data.tags.get("mlflow.user") or info.user_id or "",
        "status": info.status,
        "start_ms": info.start_time,
        "end_ms": info.end_time,
        "has_greenml": schema.METRIC_ENERGY_KWH in data.metrics,
        "hosts": len(hosts) or 1,
    }
    for key, value in data.metrics.items():
        if key.startswith(schema.PREFIX) and not key.startswith(schema.NODE_PREFIX):
            row[key] = value
    for source in (data.params, data.tags):
        for key, value in source.items():
            if key.startswith("greenml.") and not key.startswith(schema.NODE_PARAM_PREFIX):
                row[key] = value
    for key, value in data.tags.items():
        if not key.startswith(("mlflow.", "greenml.")):
            row["tag:" + key] = value  # the user's own tags, for --group-by tag:<key>
    return row
