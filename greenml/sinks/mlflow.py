"""MLflow: the one place that talks to a tracking store.

:class:`MlflowTarget` sends journal records with ``MlflowClient`` (never the fluent API,
whose state belongs to the user); the records' metric, param, tag and artifact names and
their payloads come from :mod:`greenml.schema`. Here: tracking URIs (redaction,
reachability, MLflow's default), the client, and delivery. It is a
:class:`~greenml.sinks.base.Target` named ``"mlflow"``. ``mlflow`` is imported only here,
and only when used.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from greenml.errors import ConfigError, SinkError, scrub
from greenml.schema import (
    METRIC_DURATION_S,
    TAG_BLOCKS,
    TAG_NODE,
    TAG_RUN_ID,
    TAG_STATUS,
    Block,
    is_cumulative,
    node_metric,
    node_param,
    run_values,
    status_tag,
)
from greenml.sinks.base import where_of

logger = logging.getLogger(__name__)

MAX_BATCH = 1000  # MLflow's limit of metrics per log_batch call

_NO_SUCH_RUN = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


# MLflow error codes that say the request itself was refused: sending it again cannot help
_REJECTED = (
    "INVALID_PARAMETER_VALUE",
    "BAD_REQUEST",
    "INVALID_STATE",
    "RESOURCE_DOES_NOT_EXIST",
    "RESOURCE_ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "UNAUTHENTICATED",
)


def is_rejection(e: BaseException) -> bool:
    """Whether the store refused a request (as opposed to not answering)."""
    return getattr(e, "error_code", None) in _REJECTED


# -- tracking URIs ----------------------------------------------------------------------

_SECRET_QUERY = re.compile(r"(?i)(token|password|passwd|secret|key|sig|signature|auth)")


def tracking_uri_problem(uri: str, default: str) -> str | None:
    """Why MLflow cannot use ``uri`` (blank, or a scheme it has no store for), or None.
    ``default`` says what leaving it out does, for the message."""
    if not uri.strip():
        return (
            f"{uri!r} is blank: give an MLflow tracking URI (http://host:5000, "
            f"sqlite:///mlflow.db, a folder), or leave it out {default}"
        )
    scheme = urlsplit(uri).scheme
    known = ("", "file", "http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks")
    drive = len(scheme) == 1  # C:\\runs on Windows: a folder
    if (
        scheme
        and not drive
        and scheme not in known
        and not scheme.startswith(("postgresql+", "mysql+"))
    ):
        return (
            f"{redact_uri(uri)!r}: MLflow has no store for the scheme {scheme!r}; use "
            "http(s)://, sqlite:///, postgresql://, mysql://, databricks or a folder"
        )
    return None


def client_for(uri: str) -> Any:
    """An MlflowClient for ``uri``. MLflow prints a "View run" link with the store's URL
    when a run ends, credentials included: for a URI that carries some, that print is
    switched off on this client (the user's own clients are left alone)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    if redact_uri(uri) != uri:
        inner = getattr(client, "_tracking_client", None)
        if inner is not None and hasattr(inner, "_log_url"):
            inner._log_url = lambda run_id: None
    return client


def redact_uri(uri: str) -> str:
    """The URI with any user/password and secret-looking query values replaced by
    ``***``, fit for a log line or a file."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<unparseable URI>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "&".join(
        f"{k}=***" if _SECRET_QUERY.search(k) else f"{k}={v}" if sep else k
        for k, sep, v in (item.partition("=") for item in parts.query.split("&") if item)
    )
    if netloc == parts.netloc and query == parts.query:
        return uri  # nothing secret (and urlunsplit would drop sqlite:////'s empty host)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def absolute_uri(uri: str) -> str:
    """A local store's URI with its path made absolute (``sqlite:///mlflow.db`` is
    relative to the folder the job ran in, which ``greenml sync`` may not share)."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + os.path.abspath(uri[len("sqlite:///") :])
    if "://" not in uri and uri:  # a bare folder: MLflow's file store
        return "file://" + os.path.abspath(uri)
    return uri


def reachable(uri: str, timeout_s: float = 2.0) -> bool:
    """Whether an http(s) store accepts a TCP connection (local stores always do).

    Checked before each send so that a store that is down costs one refused
    connection, not MLflow's minutes of retries."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return True
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        with socket.create_connection((parts.hostname or "", port), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def default_tracking_uri(environ: Mapping[str, str] | None) -> str:
    """MLflow's own choice: ``mlflow.set_tracking_uri()``, ``MLFLOW_TRACKING_URI``, else
    its local default (``sqlite:///mlflow.db`` in MLflow 3)."""
    if environ is not None and environ.get("MLFLOW_TRACKING_URI", "").strip():
        return environ["MLFLOW_TRACKING_URI"].strip()
    import mlflow

    return str(mlflow.get_tracking_uri())


def active_run_id() -> str | None:
    """The run the user opened with ``mlflow.start_run()`` in this thread, if any. MLflow
    that was never imported has no active run (and is not imported here)."""
    import sys

    mlflow = sys.modules.get("mlflow")
    if mlflow is None:
        return None
    run = mlflow.active_run()
    return run.info.run_id if run is not None else None


# -- the store --------------------------------------------------------------------------


class MlflowTarget:
    """Sends journal records to one MLflow run through ``MlflowClient`` (the ``"mlflow"``
    :class:`~greenml.sinks.base.Target`).

    ``run_id`` is the run to log into; when it is ``None`` the run is found by the
    greenml run id tag or created (``ensure_run``). ``owns_run`` says whether greenml
    created the run, and so ends it. :attr:`block` is where the records' block sits in
    the run, set by ``ensure_run``.
    """

    name = "mlflow"
    label = "MLflow"
    unreachable_why = "it does not accept connections"

    def __init__(
        self,
        tracking_uri: str,
        *,
        experiment: str | None = None,
        run_name: str | None = None,
        run_id: str | None = None,
        owns_run: bool = True,
        node: str | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        # one host of a multi-host job: its records go under greenml/node/<node>/ (metrics,
        # artifacts) and greenml.node.<node>. (params, tags); the job's run is not its own
        self.node = node
        self.experiment = experiment
        self.run_name = run_name
        self.run_id = run_id
        self.owns_run = owns_run
        self.experiment_id: str | None = None
        self.block = Block()
        self._client: Any = None
        # key -> the (step, timestamp, value) points the run has: MLflow's own identity of
        # a point, so a point is skipped only if sending it would add nothing
        self._history: dict[str, set[tuple[int, int, float]]] = {}

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                self._client = client_for(self.tracking_uri)
            except Exception as e:
                uri = redact_uri(self.tracking_uri)
                raise SinkError(f"cannot use tracking URI {uri}: {scrub(str(e))}") from e
        return self._client

    @property
    def uri(self) -> str:
        """The tracking URI, credentials redacted."""
        return redact_uri(self.tracking_uri)

    @property
    def where(self) -> str:
        return where_of(self.label, self.uri)

    def reachable(self) -> bool:
        return reachable(self.tracking_uri)

    def refused(self, error: BaseException) -> bool:
        return is_rejection(error)

    def run_exists(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
            self.experiment_id = run.info.experiment_id
            return True
        except MlflowException as e:
            if getattr(e, "error_code", "") in _NO_SUCH_RUN:
                return False
            raise

    def check_run(self, run_id: str, *, named: str = "run_id") -> None:
        """Raise :class:`ConfigError` if ``run_id`` (given as ``named``) is not a run of
        this store."""
        if not self.run_exists(run_id):
            raise ConfigError(
                f"{named}={run_id!r} does not exist in the tracking store "
                f"{redact_uri(self.tracking_uri)}; give the id of an existing run (MLflow shows "
                f"it on the run's page), or leave {named} unset to start a new run"
            )

    def find_run(self, greenml_run_id: str) -> str | None:
        """The MLflow run tagged with this greenml run id, in any experiment."""
        from mlflow.entities import ViewType

        client = self.client
        ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
        if not ids:
            return None
        runs = client.search_runs(
            ids,
            filter_string=f"tags.`{TAG_RUN_ID}` = '{greenml_run_id}'",
            run_view_type=ViewType.ALL,
        )
        return runs[0].info.run_id if runs else None

    def ensure_run(
        self, start: Mapping[str, Any], *, search: bool = True, block: Block | None = None
    ) -> dict[str, Any]:
        """The run to log into: the known one if it exists here, else the one tagged with
        the greenml run id, else a new one (created with the journal's start time).
        ``search=False`` skips the tag search, for a run id nobody can have used yet.

        Sets :attr:`block`: in the known run, ``block`` (what the journal recorded for it)
        if given; else the first block in a run greenml owns (created for these records,
        or found by their own tag); else, in a run it attaches to, the next block after
        what that run holds (see :meth:`next_block`).

        Returns the journal's ``run`` line for it: the run id and the block."""
        self._find_or_create(start, search=search, block=block)
        return {"run_id": self.run_id, "block": self.block.to_record()}

    def _find_or_create(
        self, start: Mapping[str, Any], *, search: bool, block: Block | None
    ) -> None:
        if self.run_id is not None and self.run_exists(self.run_id):
            if block is not None:
                self.block = block
            elif self.owns_run or self.node is not None:
                self.block = Block()
            elif start.get("resumed"):
                # a job resumed from a checkpoint: its figures already carry what came
                # before (in this run or another), so the run's totals are not added again
                nb = self.next_block()
                self.block = Block(nb.number, nb.step0)
            else:
                self.block = self.next_block()
            return
        self.block = Block()
        gid = str(start["greenml_run_id"])
        found = self.find_run(gid) if search else None
        if found is not None:
            self.run_id, self._history = found, {}
            self.experiment_id = self.client.get_run(found).info.experiment_id
            return
        client = self.client
        name = self.experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or None
        exp_id = "0"
        if name:
            exp = client.get_experiment_by_name(name)
            exp_id = exp.experiment_id if exp is not None else client.create_experiment(name)
        tags = {TAG_RUN_ID: gid, TAG_NODE: str(start.get("node", "")), TAG_BLOCKS: "1"}
        if self.run_name:
            tags["mlflow.runName"] = self.run_name
        run = client.create_run(
            exp_id, start_time=int(start["wall_start_ms"]), tags=tags, run_name=self.run_name
        )
        self.run_id, self._history = run.info.run_id, {}
        self.experiment_id = run.info.experiment_id
        self.owns_run = True

    def next_block(self) -> Block:
        """The next block in this (attached) run: numbered after the run's
        ``greenml.blocks`` tag (which it then counts), its steps after the run's last
        greenml step, on top of the run's greenml totals so far (the latest values of its
        cumulative greenml metrics)."""
        assert self.run_id is not None
        client = self.client
        data = client.get_run(self.run_id).data
        base = {k: float(v) for k, v in data.metrics.items() if is_cumulative(k)}
        try:
            before = int(data.tags.get(TAG_BLOCKS, "1" if base else "0"))
        except ValueError:  # not greenml's value
            before = 1 if base else 0
        step0 = 0
        if base:
            key = METRIC_DURATION_S if METRIC_DURATION_S in base else min(base)
            steps = [m.step for m in client.get_metric_history(self.run_id, key)]
            step0 = max(steps, default=-1) + 1
        block = Block(max(before, 0) + 1, step0, base)
        client.set_tag(self.run_id, TAG_BLOCKS, str(block.number))
        return block

    def send(self, record: Mapping[str, Any], *, dedupe: bool) -> list[str]:
        """Log one journal record, placed in the run by :attr:`block`. With ``dedupe`` (a
        replay, or a retry after a failed send), points the run already has (same name,
        step, timestamp and value) are skipped.

        Params go in a call of their own: a run that already holds a param with another
        value (two tracked blocks in one run, say) keeps it, and that costs neither the
        metrics nor the end of the run. The returned notes say which params were kept."""
        from mlflow.entities import Metric, RunTag

        assert self.run_id is not None
        block = self.block
        values = run_values(record.get("metrics", {}), block, summary=record["t"] == "summary")
        step = int(record.get("step", 0)) + (0 if record.get("trainer_step") else block.step0)
        node = self.node
        if node is not None:
            values = {node_metric(node, k): v for k, v in values.items()}
        metrics = [Metric(k, float(v), int(record["ts"]), step) for k, v in values.items()]
        if dedupe and metrics:
            metrics = [m for m in metrics if not self._has_point(m)]
        tags = [RunTag(self._name(k), str(v)) for k, v in record.get("tags", {}).items()]
        for i in range(0, max(len(metrics), 1), MAX_BATCH):
            batch = metrics[i : i + MAX_BATCH]
            if batch or (i == 0 and tags):
                self.client.log_batch(self.run_id, metrics=batch, tags=tags if i == 0 else [])
        for m in metrics:
            if m.key in self._history:
                self._history[m.key].add((m.step, m.timestamp, m.value))
        params = {self._name(k): v for k, v in record.get("params", {}).items()}
        notes = self._log_params(params)
        if record["t"] == "summary":
            for path, key in (
                (block.footprint_artifact, "footprint"),
                (block.timeseries_artifact, "csv"),
            ):
                if key in record:
                    text = record[key]
                    if not isinstance(text, str):
                        text = json.dumps(text, indent=2, default=str)
                    where = node_metric(node, path) if node is not None else path
                    self.client.log_text(self.run_id, text, where)
            if self.owns_run and node is None:
                status = str(record.get("status", "FINISHED"))
                self.client.set_terminated(self.run_id, status, end_time=int(record["ts"]))
        return notes

    def _name(self, key: str) -> str:
        """A param's or tag's name in the run: a host's own under ``greenml.node.<host>.``"""
        return node_param(self.node, key) if self.node is not None else key

    def _log_params(self, params: Mapping[str, Any]) -> list[str]:
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException

        if not params:
            return []
        try:
            self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])
            return []
        except MlflowException as e:
            if not is_rejection(e):
                raise
        have = self.client.get_run(self.run_id).data.params
        kept = [k for k, v in params.items() if k in have and have[k] != str(v)]
        new = [Param(k, str(v)) for k, v in params.items() if k not in have]
        if new:
            self.client.log_batch(self.run_id, params=new)
        return [
            f"the run already had {k}={have[k]!r}; this job's {k}={params[k]!r} is in "
            f"{self.block.footprint_artifact}"
            for k in kept
        ]

    def end(self, status: str, end_time_ms: int | None = None) -> None:
        """Mark a run that never sent its summary (killed) as ended."""
        assert self.run_id is not None
        self.client.set_tag(self.run_id, self._name(TAG_STATUS), status_tag(status))
        if self.owns_run and self.node is None:
            self.client.set_terminated(
                self.run_id, status, end_time=end_time_ms or int(time.time() * 1000)
            )

    def _has_point(self, m: Any) -> bool:
        if m.key not in self._history:
            history = self.client.get_metric_history(self.run_id, m.key)
            self._history[m.key] = {(h.step, h.timestamp, h.value) for h in history}
        return (m.step, m.timestamp, m.value) in self._history[m.key]
