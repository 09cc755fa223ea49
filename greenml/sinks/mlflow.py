"""MLflow: greenml's metric, param, tag and artifact names (docs/mlflow.md lists them),
and the one place that talks to a tracking store.

The mapping functions (``timeseries_values``, ``summary_metrics``, ``run_params``,
``run_tags``) are plain functions of a :class:`~greenml.footprint.Footprint`; the
:class:`MlflowTarget` sends journal records with ``MlflowClient`` (never the fluent API,
whose state belongs to the user). ``mlflow`` is imported only here, and only when used.

A journal holds one tracked block's own figures. Where the block sits in its MLflow run
(the run's totals before it, the step its points continue from, its artifacts' names) is a
:class:`Block`, found when the block first reaches the run and written in the journal, so
that a replay by ``greenml sync`` sends exactly what the live run sent.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from greenml._version import __version__
from greenml.errors import ConfigError, GreenMLError

if TYPE_CHECKING:
    from greenml.footprint import Footprint

logger = logging.getLogger(__name__)

PREFIX = "greenml/"
TAG_RUN_ID = "greenml.run_id"  # matches a journal to its MLflow run (sync)
TAG_STATUS = "greenml.status"  # finished | failed | killed, also on runs greenml attached to
TAG_BLOCKS = "greenml.blocks"  # how many tracked blocks have logged into the run
FOOTPRINT_ARTIFACT = "greenml/footprint.json"  # the first block's; later ones are numbered
TIMESERIES_ARTIFACT = "greenml/timeseries.csv"
MAX_BATCH = 1000  # MLflow's limit of metrics per log_batch call
_STATUS = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "killed"}


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


class SinkError(GreenMLError):
    """The tracking store could not be reached or refused a record."""


# -- names ------------------------------------------------------------------------------


def timeseries_values(fp: Footprint, gpu_power_w: Mapping[int, float]) -> dict[str, float]:
    """The metrics of one time-series point: cumulative figures so far and the GPUs'
    mean power since the previous point (``gpu_power_w``: index -> watts)."""
    out = _energy_values(fp)
    if gpu_power_w:
        if set(gpu_power_w) == set(gpu_energy_by_index(fp)):  # a total of every GPU, or none
            out[f"{PREFIX}gpu_power_w"] = sum(gpu_power_w.values())
        for i, w in sorted(gpu_power_w.items()):
            out[f"{PREFIX}gpu_{i}/power_w"] = w
    return out


def summary_metrics(fp: Footprint) -> dict[str, float]:
    """The run's summary metrics. Power figures are the means over the whole run."""
    out = _energy_values(fp)
    gpus = gpu_energy_by_index(fp)
    if gpus and fp.duration_s > 0:
        out[f"{PREFIX}gpu_power_w"] = fp.gpu_energy_kwh * 3.6e6 / fp.duration_s
        for i, kwh in sorted(gpus.items()):
            out[f"{PREFIX}gpu_{i}/power_w"] = kwh * 3.6e6 / fp.duration_s
    return out


def _energy_values(fp: Footprint) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in (
        "energy_kwh",
        "co2e_kg",
        "co2e_market_kg",
        "cost_usd",
        "duration_s",
        "gpu_energy_kwh",
        "cpu_energy_kwh",
        "ram_energy_kwh",
    ):
        value = getattr(fp, name)
        if value is not None:  # an unknown figure is left out, never logged as 0
            out[PREFIX + name] = float(value)
    for i, kwh in sorted(gpu_energy_by_index(fp).items()):
        out[f"{PREFIX}gpu_{i}/energy_kwh"] = kwh
    for phase, pfp in fp.phases.items():
        out[f"{PREFIX}phase/{phase}/energy_kwh"] = pfp.energy_kwh
    return out


def gpu_energy_by_index(fp: Footprint) -> dict[int, float]:
    """IT energy per GPU index (kWh)."""
    out: dict[int, float] = {}
    for d in fp.devices:
        if d.kind == "gpu" and d.index is not None:
            out[d.index] = out.get(d.index, 0.0) + d.energy_kwh
    return out


def is_cumulative(key: str) -> bool:
    """Whether a greenml metric adds up over a run's blocks (energy, CO2e, cost,
    duration); the power metrics are rates and do not."""
    return key.startswith(PREFIX) and not key.endswith("power_w")


def footprint_artifact(block: int) -> str:
    """``greenml/footprint.json`` for a run's first block, ``greenml/footprint-<n>.json``
    for its n-th."""
    return FOOTPRINT_ARTIFACT if block <= 1 else f"{PREFIX}footprint-{block}.json"


def timeseries_artifact(block: int) -> str:
    """``greenml/timeseries.csv`` for a run's first block, ``greenml/timeseries-<n>.csv``
    for its n-th."""
    return TIMESERIES_ARTIFACT if block <= 1 else f"{PREFIX}timeseries-{block}.csv"


@dataclass(frozen=True)
class Block:
    """Where one tracked block sits in its MLflow run.

    ``number`` is 1 for the run's first greenml block; ``step0`` is added to the block's
    own steps so that they continue after the run's earlier greenml points; ``base`` holds
    the run's cumulative greenml figures before the block, added to the block's own so
    that the run's series stay cumulative and its latest values are the run's totals."""

    number: int = 1
    step0: int = 0
    base: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "base", MappingProxyType(dict(self.base)))  # a copy, read-only

    @property
    def footprint_artifact(self) -> str:
        return footprint_artifact(self.number)

    @property
    def timeseries_artifact(self) -> str:
        return timeseries_artifact(self.number)

    def to_record(self) -> dict[str, Any]:
        """The block as the journal keeps it."""
        return {"number": self.number, "step0": self.step0, "base": dict(self.base)}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Block:
        base = {str(k): float(v) for k, v in dict(record.get("base") or {}).items()}
        return cls(int(record["number"]), int(record["step0"]), base)


def run_values(metrics: Mapping[str, float], block: Block, *, summary: bool) -> dict[str, float]:
    """A block's metrics as its run gets them: cumulative figures plus the run's totals
    before the block. In the summary, the power metrics become the means over all the
    run's blocks (GPU energy / duration, both totals); a time-series point's power is
    the power of its own interval and is left as it is."""
    out = {k: v + block.base.get(k, 0.0) if is_cumulative(k) else v for k, v in metrics.items()}
    duration = out.get(PREFIX + "duration_s")
    if summary and block.base and duration:
        for key in metrics:
            if key.endswith("power_w"):
                energy = out.get(key[: -len("power_w")] + "energy_kwh")
                if energy is not None:
                    out[key] = energy * 3.6e6 / duration
    return out


NA = "n/a"  # an MLflow param for a factor that is not known (flags say why)


def run_params(fp: Footprint, *, with_intensity: bool = True) -> dict[str, str]:
    """The factors used, as MLflow params (strings). ``with_intensity=False`` leaves
    out the grid intensity (an hourly-weighted one is only final at the end)."""
    grid = _factor(fp, "grid_intensity")
    hourly = _factor(fp, "price")
    price = hourly or _factor(fp, "electricity_price")
    gpus = [d for d in fp.devices if d.kind == "gpu"]
    models = sorted({d.name for d in gpus})
    params = {
        "greenml.location": fp.location or NA,
        "greenml.grid_intensity_g_per_kwh": _num(fp.grid_intensity_g_per_kwh),
        "greenml.grid_source": _source(grid),
        "greenml.pue": _num(fp.pue),
        "greenml.price_usd_per_hour": _num(hourly.value if hourly is not None else None),
        "greenml.price_source": _source(price),
        "greenml.instance_type": fp.instance_type or NA,
        "greenml.gpu_model": ", ".join(models) if models else "none",
        "greenml.gpu_count": str(len({d.index for d in gpus})),
    }
    if not with_intensity:
        del params["greenml.grid_intensity_g_per_kwh"]
    return params


def run_tags(
    fp: Footprint, *, node: str, greenml_run_id: str, status: str | None = None
) -> dict[str, str]:
    """The run's tags; ``status`` (``running`` or an MLflow end status) adds
    ``greenml.status``."""
    tags = {
        "greenml.version": __version__,
        "greenml.scope": fp.scope or NA,
        "greenml.measurement": fp.measurement,
        "greenml.node": node,
        TAG_RUN_ID: greenml_run_id,
    }
    if status is not None:
        tags[TAG_STATUS] = status_tag(status)
    return tags


def footprint_document(fp: Footprint, greenml_run_id: str | None) -> dict[str, Any]:
    """The content of ``greenml/footprint.json``: the whole footprint, with the greenml
    version and run id it came from."""
    return {"greenml_version": __version__, "greenml_run_id": greenml_run_id, **fp.to_dict()}


def _factor(fp: Footprint, name: str) -> Any:
    return next((f for f in fp.factors if f.name == name), None)


def _num(x: float | None) -> str:
    return NA if x is None else repr(float(x))


def _source(f: Any) -> str:
    if f is None:
        return NA
    year = f", {f.year}" if getattr(f, "year", None) else ""
    return f"{f.source}{year}"[:500]  # MLflow params hold up to 6000 characters


def status_tag(status: str) -> str:
    return _STATUS.get(status, status.lower())


# -- tracking URIs ----------------------------------------------------------------------

_SECRET_QUERY = re.compile(r"(?i)(token|password|passwd|secret|key|sig|signature|auth)")


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
    """Sends journal records to one MLflow run through ``MlflowClient``.

    ``run_id`` is the run to log into; when it is ``None`` the run is found by the
    greenml run id tag or created (``ensure_run``). ``owns_run`` says whether greenml
    created the run, and so ends it. :attr:`block` is where the records' block sits in
    the run, set by ``ensure_run``.
    """

    def __init__(
        self,
        tracking_uri: str,
        *,
        experiment: str | None = None,
        run_name: str | None = None,
        run_id: str | None = None,
        owns_run: bool = True,
    ) -> None:
        self.tracking_uri = tracking_uri
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
            from mlflow import MlflowClient

            try:
                self._client = MlflowClient(tracking_uri=self.tracking_uri)
            except Exception as e:
                uri = redact_uri(self.tracking_uri)
                raise SinkError(f"cannot use tracking URI {uri}: {e}") from e
        return self._client

    def reachable(self) -> bool:
        return reachable(self.tracking_uri)

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
    ) -> str:
        """The run to log into: the known one if it exists here, else the one tagged with
        the greenml run id, else a new one (created with the journal's start time).
        ``search=False`` skips the tag search, for a run id nobody can have used yet.

        Sets :attr:`block`: in the known run, ``block`` (what the journal recorded for it)
        if given; else the first block in a run greenml owns (created for these records,
        or found by their own tag); else, in a run it attaches to, the next block after
        what that run holds (see :meth:`next_block`)."""
        if self.run_id is not None and self.run_exists(self.run_id):
            if block is not None:
                self.block = block
            elif self.owns_run:
                self.block = Block()
            else:
                self.block = self.next_block()
            return self.run_id
        self.block = Block()
        gid = str(start["greenml_run_id"])
        found = self.find_run(gid) if search else None
        if found is not None:
            self.run_id, self._history = found, {}
            self.experiment_id = self.client.get_run(found).info.experiment_id
            return found
        client = self.client
        name = self.experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or None
        exp_id = "0"
        if name:
            exp = client.get_experiment_by_name(name)
            exp_id = exp.experiment_id if exp is not None else client.create_experiment(name)
        tags = {TAG_RUN_ID: gid, "greenml.node": str(start.get("node", "")), TAG_BLOCKS: "1"}
        if self.run_name:
            tags["mlflow.runName"] = self.run_name
        run = client.create_run(
            exp_id, start_time=int(start["wall_start_ms"]), tags=tags, run_name=self.run_name
        )
        self.run_id, self._history = run.info.run_id, {}
        self.experiment_id = run.info.experiment_id
        self.owns_run = True
        return self.run_id

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
            key = PREFIX + "duration_s" if PREFIX + "duration_s" in base else min(base)
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
        metrics = [
            Metric(k, float(v), int(record["ts"]), block.step0 + int(record["step"]))
            for k, v in values.items()
        ]
        if dedupe and metrics:
            metrics = [m for m in metrics if not self._has_point(m)]
        tags = [RunTag(k, str(v)) for k, v in record.get("tags", {}).items()]
        for i in range(0, max(len(metrics), 1), MAX_BATCH):
            batch = metrics[i : i + MAX_BATCH]
            if batch or (i == 0 and tags):
                self.client.log_batch(self.run_id, metrics=batch, tags=tags if i == 0 else [])
        for m in metrics:
            if m.key in self._history:
                self._history[m.key].add((m.step, m.timestamp, m.value))
        notes = self._log_params(record.get("params", {}))
        if record["t"] == "summary":
            for path, key in (
                (block.footprint_artifact, "footprint"),
                (block.timeseries_artifact, "csv"),
            ):
                if key in record:
                    text = record[key]
                    if not isinstance(text, str):
                        text = json.dumps(text, indent=2, default=str)
                    self.client.log_text(self.run_id, text, path)
            if self.owns_run:
                status = str(record.get("status", "FINISHED"))
                self.client.set_terminated(self.run_id, status, end_time=int(record["ts"]))
        return notes

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
        self.client.set_tag(self.run_id, TAG_STATUS, status_tag(status))
        if self.owns_run:
            self.client.set_terminated(
                self.run_id, status, end_time=end_time_ms or int(time.time() * 1000)
            )

    def _has_point(self, m: Any) -> bool:
        if m.key not in self._history:
            history = self.client.get_metric_history(self.run_id, m.key)
            self._history[m.key] = {(h.step, h.timestamp, h.value) for h in history}
        return (m.step, m.timestamp, m.value) in self._history[m.key]
