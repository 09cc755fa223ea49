"""A training job across processes and hosts, measured once: :class:`JobRun`.

The framework callbacks (Hugging Face, Lightning) and a plain ``torchrun`` script build one
``JobRun`` per process and call it on every rank; it applies the rules below, so that no GPU
is counted twice whatever the number of processes per host.

**Who measures.** One process per host: the lowest rank on it. With an initialised
``torch.distributed`` process group the ranks gather ``(host, rank, GPUs used)``, so the
measuring process knows every GPU its host's ranks use and measures their union (a rank
that names no GPU, e.g. when it runs on the CPU, leaves its host measuring every visible GPU).
Without a process group, ``LOCAL_RANK`` (torchrun, Accelerate) or ``SLURM_LOCALID`` 0
measures its host's visible GPUs. The other ranks measure nothing: their calls are no-ops.

**Where it goes.** One MLflow run for the job. In a single process, or several on one host,
it is an ordinary greenml run (the framework's run, or greenml's own). Across hosts, the
global rank 0 decides the run (the framework's, else one it creates) and sends its id to the
other ranks over the process group (without one: ``run_id``/``MLFLOW_RUN_ID`` shared through
the environment); each host logs its figures into it under ``greenml/node/<host>/...``
(params and tags under ``greenml.node.<host>.``). At a clean end, rank 0 gathers the host
footprints and records the job's totals as the run's summary: ``greenml/energy_kwh`` and the
rest are the sum of the hosts, with ``greenml.hosts`` and ``greenml.gpu_count``. A job that
fails leaves each host's own figures (a gather among ranks that may be gone could hang).

**Work.** The samples, tokens and FLOPs a callback passes are the job's (global batch,
``total_flos``); the job's totals take them from rank 0's host, not a sum over hosts.

Host names come from ``socket.gethostname()``, or the ``node`` setting
(``GREENML_NODE``) where host names are not unique (containers) or, in tests, to play
several hosts on one machine.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from greenml import config, schema
from greenml.assemble import measurement_of
from greenml.errors import ConfigError, GreenMLError, warn
from greenml.footprint import DeviceEnergy, Footprint
from greenml.progress import BUDGETS, announce
from greenml.tracker import Tracker

logger = logging.getLogger(__name__)

STATE_VERSION = 1  # the layout of state_dict()
_BUDGET_KEYS = tuple(key for key, _, _ in BUDGETS)


@dataclasses.dataclass(frozen=True)
class Topology:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    host: str = ""
    group: bool = False  # an initialised torch.distributed process group
    hosts: int | None = 1  # how many hosts, where known without a process group
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)  # SLURM, world size


def _int(environ: Mapping[str, str], *names: str) -> int | None:
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            try:
                return int(value)
            except ValueError:
                raise ConfigError(
                    f"{name}={value!r} (environment variable) is not an integer; the launcher "
                    "(torchrun, SLURM) sets it to this process's place in the job"
                ) from None
    return None


def _process_group() -> Any:
    """``torch.distributed`` when a process group is initialised, else None (torch is
    not imported here: a job with a process group has imported it already)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    return dist


def topology(host: str | None = None, environ: Mapping[str, str] | None = None) -> Topology:
    """Where this process sits: from the process group when one is initialised, else
    from the launcher's variables (torchrun/Accelerate, then SLURM); one process alone
    otherwise."""
    env = os.environ if environ is None else environ
    host = host or socket.gethostname()
    dist = _process_group()
    local = _int(env, "LOCAL_RANK", "SLURM_LOCALID") or 0
    tags: dict[str, str] = {}
    for tag, name in (
        (schema.TAG_SLURM_JOB_ID, "SLURM_JOB_ID"),
        (schema.TAG_SLURM_NODELIST, "SLURM_JOB_NODELIST"),
        (schema.TAG_SLURM_ARRAY_TASK_ID, "SLURM_ARRAY_TASK_ID"),
    ):
        if env.get(name, "").strip():
            tags[tag] = env[name].strip()
    if dist is not None:
        rank, world = dist.get_rank(), dist.get_world_size()
        hosts = None  # counted by the gather
    else:
        rank = _int(env, "RANK", "SLURM_PROCID") or 0
        world = _int(env, "WORLD_SIZE", "SLURM_NTASKS") or 1
        per_host = _int(env, "LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE")
        nodes = _int(env, "SLURM_JOB_NUM_NODES", "SLURM_NNODES")
        hosts = nodes or (max(world // per_host, 1) if per_host else None)
    if world > 1:
        tags[schema.TAG_WORLD_SIZE] = str(world)
    return Topology(rank, world, local, host, dist is not None, hosts, MappingProxyType(tags))


class JobRun:
    """One process's part in measuring a job; see the module docstring for the rules.

    ``track_kwargs`` are :func:`greenml.track`'s keywords, checked here (a
    :class:`~greenml.errors.ConfigError` naming the bad value), so a callback that builds
    a JobRun in its ``__init__`` fails before training starts. After that, nothing in a
    JobRun raises into the training loop: trouble is warned about and measuring goes on.
    """

    def __init__(
        self,
        track_kwargs: Mapping[str, Any],
        *,
        environ: Mapping[str, str] | None = None,
        meters: Any = None,
    ) -> None:
        self._kwargs = {k: v for k, v in dict(track_kwargs).items() if v is not None}
        self._environ = environ
        self._meters = meters  # tests pass the world in, as to Tracker
        self.settings = config.resolve(self._kwargs, environ=environ)
        # the factors too (an unknown location, a bad table), before training starts
        from greenml.factors.resolve import resolve_run_factors

        resolve_run_factors(
            self.settings, environ=environ, voice=self.settings.voice(), missing_price="warn"
        )
        self.tracker: Tracker | None = None
        self.topology: Topology | None = None
        self.measures = False
        self._multi_host = False
        self._hosts: list[str] = []
        self._run_id: str | None = None
        self._uri: str | None = None
        self._owns_run = False
        self._carried: dict[str, Any] | None = None
        self._started = False
        self._footprint: Footprint | None = None
        self._step = 0
        self._counting = False  # the trainer's step is known: points carry it
        self._synced = False  # several processes: the stop decision is shared at log points
        self._stop_reason: str | None = None
        self._job_crossed: set[str] = set()

    # -- the start ----------------------------------------------------------------------

    def start(
        self,
        *,
        run_id: str | None = None,
        tracking_uri: str | None = None,
        total_steps: int | None = None,
        gpu_ids: Sequence[int | str] | None = None,
        framework: str | None = None,
        global_step: int | None = None,
    ) -> JobRun:
        """Start measuring, on every rank (it may gather over the process group).

        ``run_id``/``tracking_uri``: the framework's MLflow run (None: greenml's own
        resolution: the active run, ``MLFLOW_RUN_ID``, else a new run); ``total_steps``:
        the trainer's max steps (for the forecast); ``gpu_ids``: the GPUs this rank uses
        (None: what CUDA says, else every GPU visible on the host); ``framework``: named
        in messages; ``global_step``: the trainer's step at the start (a resumed job's), for
        the first points."""
        if self._started:
            warn("this greenml callback was started twice; the first start is kept")
            return self
        self._started = True
        s = self.settings
        topo = topology(s.node, self._environ)
        self.topology = topo
        self._synced = topo.world_size > 1 and topo.group
        mine = list(gpu_ids) if gpu_ids is not None else _cuda_device()
        host_gpus: list[int | str] | None = mine
        given = run_id or s.run_id
        if topo.world_size > 1 and topo.group:
            dist = _process_group()
            everyone: list[Any] = [None] * topo.world_size
            dist.all_gather_object(
                everyone,
                {
                    "host": topo.host,
                    "rank": topo.rank,
                    "gpus": mine,
                    "run_id": given,
                    "location": s.location,
                },
            )
            _agree(everyone, "run_id", "the MLflow run id")
            _agree(everyone, "location", "location")
            on_host = [e for e in everyone if e["host"] == topo.host]
            self.measures = topo.rank == min(e["rank"] for e in on_host)
            host_gpus = _union(e["gpus"] for e in on_host)
            self._hosts = list(dict.fromkeys(e["host"] for e in everyone))
            self._multi_host = len(self._hosts) > 1
            given = next((e["run_id"] for e in everyone if e["run_id"]), None)
            plan: list[Any] = [None]
            if topo.rank == 0 and self._multi_host:
                plan = [self._decide_run(given, tracking_uri, framework)]
            if self._multi_host:
                dist.broadcast_object_list(plan, src=0)
                self._run_id, self._uri, self._owns_run = plan[0]
        elif topo.world_size > 1:
            self.measures = topo.local_rank == 0
            host_gpus = list(gpu_ids) if gpu_ids is not None else None
            self._multi_host = (topo.hosts or 2) > 1
            self._hosts = [topo.host]
            if self._multi_host and s.log_to_mlflow:
                if not given and not _env(self._environ, "MLFLOW_RUN_ID"):
                    warn(
                        "a multi-host job without a torch.distributed process group: give "
                        "every process the same run_id= (or MLFLOW_RUN_ID) so that the hosts "
                        "log into one MLflow run; each host logs a run of its own otherwise"
                    )
                self._run_id = given or _env(self._environ, "MLFLOW_RUN_ID")
                self._uri = tracking_uri
        else:
            self.measures = True
        if not self.measures:
            return self
        try:
            self.tracker = self._tracker(host_gpus, given, tracking_uri)
            if self._carried is not None:
                self.tracker.resume_from(self._carried)
            # before the start: the recorder's first point already carries the step
            if global_step is not None:
                self._step, self._counting = global_step, True
            self.tracker.use_steps(lambda: self._step if self._counting else None)
            self.tracker.set_total_steps(total_steps)
            self.tracker.add_tags(topo.tags)
            self.tracker.start()
        except ConfigError:
            raise  # bad settings: before training, as the callback's __init__ would
        except Exception as e:  # measuring must not stop the training
            logger.warning("greenml: starting the measurement failed", exc_info=True)
            warn(f"greenml could not start measuring ({e!r}); training goes on unmeasured")
            self.tracker = None
        return self

    def _tracker(
        self, gpus: list[int | str] | None, run_id: str | None, uri: str | None
    ) -> Tracker:
        kwargs = dict(self._kwargs)
        if gpus is not None and "gpu_ids" not in kwargs:
            kwargs["gpu_ids"] = gpus
        sinks = []
        if self._multi_host and self.settings.log_to_mlflow:
            from greenml.sinks import mlflow as sink

            where = uri or self._uri or self.settings.tracking_uri
            where = sink.absolute_uri(where or sink.default_tracking_uri(self._environ))
            run = self._run_id
            if run is None:
                warn("no MLflow run is shared by the job's hosts; this host's figures stay local")
            else:
                node = self.topology.host if self.topology else socket.gethostname()
                sinks.append(sink.MlflowTarget(where, run_id=run, owns_run=False, node=node))
            kwargs["log_to_mlflow"] = False
            kwargs.pop("run_id", None)
        if self._multi_host:  # the job's budgets are checked on the job's totals (log_point)
            for key in _BUDGET_KEYS:
                kwargs.pop(key, None)
        else:
            if run_id is not None:
                kwargs["run_id"] = run_id
            if uri is not None:
                kwargs["tracking_uri"] = uri
        return Tracker(meters=self._meters, sinks=sinks, environ=self._environ, **kwargs)

    def _decide_run(
        self, run_id: str | None, uri: str | None, framework: str | None
    ) -> tuple[str | None, str | None, bool]:
        """On global rank 0 of a multi-host job: the job's MLflow run (id, URI, whether
        greenml created it), created now if the framework has none."""
        s = self.settings
        if not s.log_to_mlflow:
            return None, None, False
        from greenml.sinks import mlflow as sink

        where = sink.absolute_uri(uri or s.tracking_uri or sink.default_tracking_uri(self._environ))
        run_id = run_id or sink.active_run_id() or _env(self._environ, "MLFLOW_RUN_ID")
        if run_id is not None:
            return run_id, where, False
        target = sink.MlflowTarget(where, experiment=s.experiment, run_name=s.run_name)
        try:
            target.ensure_run(
                {
                    "greenml_run_id": "job-" + os.urandom(8).hex(),
                    "node": socket.gethostname(),
                    "wall_start_ms": round(time.time() * 1000),
                },
                search=False,
            )
        except Exception as e:
            warn(
                f"cannot create the job's MLflow run at {sink.redact_uri(where)} ({e}); "
                "each host's figures stay in its journal (`greenml sync` later)"
            )
            return None, where, False
        who = f"{framework} has no MLflow run" if framework else "no MLflow run was given"
        warn(f"{who}; greenml logs this job to a run of its own: {target.run_id}")
        return target.run_id, where, True

    # -- in the training loop -----------------------------------------------------------

    def step(
        self,
        global_step: int | None = None,
        samples: float | None = None,
        tokens: float | None = None,
        flops: float | None = None,
    ) -> None:
        """One optimizer step done (O(1)); see :meth:`greenml.Tracker.step`."""
        t = self.tracker
        if t is None:
            return
        if global_step is not None:
            self._step, self._counting = global_step, True
        t.step(samples, tokens, flops, step=global_step, raise_on_budget=False)

    def add_work(
        self, samples: float | None = None, tokens: float | None = None, flops: float | None = None
    ) -> None:
        """Work that belongs to no single step; see :meth:`greenml.Tracker.add_work`."""
        if self.tracker is not None:
            self.tracker.add_work(samples, tokens, flops)

    def log_point(self) -> None:
        """A time-series point now, at the current step (the framework's logging step).

        In a job of several processes with budgets, every rank must call it at the same
        steps (frameworks do: their logging steps are the same on every rank): the ranks
        share the stop decision here, over the process group, so that all stop together;
        across hosts the budgets are compared with the sum of the hosts' figures."""
        if self.tracker is not None:
            self.tracker.log_point(self._step if self._counting else None)
        if self._synced and any(getattr(self.settings, k) is not None for k in _BUDGET_KEYS):
            try:
                self._share_stop()
            except Exception as e:  # never break training for a budget check
                logger.warning("greenml: sharing the budget decision failed", exc_info=True)
                warn(f"greenml could not share the budget check between ranks ({e!r})")

    def _share_stop(self) -> None:
        dist = _process_group()
        if dist is None or self.topology is None:
            return
        t = self.tracker
        own = t.stop_requested if t is not None else None
        figures = None
        if t is not None and self._multi_host:
            fp = t.snapshot()
            figures = {f: getattr(fp, f) for _, f, _ in BUDGETS}
        everyone: list[Any] = [None] * self.topology.world_size
        dist.all_gather_object(everyone, (own.text() if own is not None else None, figures))
        reason = next((r for r, _ in everyone if r), None)
        if self._multi_host:
            measured = [f for _, f in everyone if f is not None]
            for key, figure, unit in BUDGETS:
                limit = getattr(self.settings, key)
                values = [m[figure] for m in measured]
                if limit is None or key in self._job_crossed or None in values or not values:
                    continue
                total = sum(values)
                if total < limit:
                    continue
                self._job_crossed.add(key)
                text = f"{key}={limit:g} ({total:.4g} {unit} for the job at step {self._step})"
                if self.topology.rank == 0:
                    announce(
                        text, stopping=self.settings.stop_on_budget, voice=self.settings.voice()
                    )
                if self.settings.stop_on_budget and reason is None:
                    reason = text
        if reason is not None and self._stop_reason is None:
            self._stop_reason = reason

    def begin_phase(self, name: str) -> None:
        if self.tracker is not None:
            self._safely(self.tracker.begin_phase, name)

    def end_phase(self, name: str) -> None:
        if self.tracker is not None:
            self._safely(self.tracker.end_phase, name)

    @property
    def stop_requested(self) -> str | None:
        """Why training should stop (a budget crossed with ``stop_on_budget``), or None.
        In a job of several processes, the decision every rank shares (at log points)."""
        if self._synced:
            return self._stop_reason
        crossing = self.tracker.stop_requested if self.tracker is not None else None
        return crossing.text() if crossing is not None else None

    # -- checkpoints --------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps: this host's figures so far (a footprint as a dict),
        so that a resumed job continues its cumulative energy, CO2e and cost."""
        if self.tracker is None:
            return dict(self._carried_state()) if self._carried is not None else {}
        try:
            fp = self.tracker.snapshot()
        except GreenMLError:
            return {}
        return {"version": STATE_VERSION, "footprint": fp.to_dict()}

    def _carried_state(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "footprint": self._carried}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a checkpoint's :meth:`state_dict` (before or after start)."""
        doc = dict(state or {}).get("footprint")
        if not doc:
            return
        self._carried = dict(doc)
        if self.tracker is not None:
            self._safely(self.tracker.resume_from, self._carried)

    # -- the end ------------------------------------------------------------------------

    def stop(self, status: str = "FINISHED") -> Footprint | None:
        """Stop measuring (every rank; safe to call twice). At a clean end of a
        multi-host job with a process group, rank 0 records the job's totals."""
        if self._footprint is not None or not self._started:
            return self._footprint
        fp: Footprint | None = None
        if self.tracker is not None:
            try:
                fp = self.tracker.stop(status)
            except Exception as e:
                warn(f"stopping greenml's measurement failed ({e!r})")
        topo = self.topology
        if topo is not None and self._multi_host and topo.group and status == "FINISHED":
            fp = self._gather(fp, topo) or fp
        elif topo is not None and self._multi_host and self.tracker is not None:
            self._sum_hosts_in_run()
        self._footprint = fp
        return fp

    def _sum_hosts_in_run(self) -> None:
        """Without a process group: the run's totals as the sum of the hosts' figures it
        holds so far (each host does this as it ends; the last one writes the full sum)."""
        t = self.tracker
        delivery = t.mlflow if t is not None else None
        if delivery is None or not delivery.delivered or self._run_id is None:
            return
        try:
            from greenml.sinks.mlflow import absolute_uri, client_for, default_tracking_uri

            uri = self._uri or self.settings.tracking_uri or default_tracking_uri(self._environ)
            client = client_for(absolute_uri(uri))
            metrics = client.get_run(self._run_id).data.metrics
            totals, hosts = sum_node_metrics(metrics)
            topo_tags = dict(self.topology.tags) if self.topology is not None else {}
            if not hosts:
                return
            client.log_batch(
                self._run_id,
                metrics=_metrics(totals, self._step),
                tags=_tags({**topo_tags, schema.TAG_HOSTS: str(len(hosts))}),
            )
        except Exception as e:
            warn(f"cannot write the job's totals into MLflow run {self._run_id} ({e!r})")

    def _gather(self, fp: Footprint | None, topo: Topology) -> Footprint | None:
        dist = _process_group()
        if dist is None:
            return None
        mine = (topo.host, fp.to_dict() if fp is not None and self.measures else None)
        everyone: list[Any] = [None] * topo.world_size
        try:
            dist.all_gather_object(everyone, mine)
        except Exception as e:
            warn(f"gathering the hosts' figures failed ({e!r}); each host's are in the run")
            return None
        if topo.rank != 0:
            return None
        hosts = {host: Footprint.from_dict(doc) for host, doc in everyone if doc is not None}
        job = combine_hosts(hosts, work_from=topo.host, work_phase=self.settings.default_phase)
        self._record_job(job, len(hosts))
        return job

    def _record_job(self, job: Footprint, hosts: int) -> None:
        """The job's totals as the run's summary: its own journal, then MLflow."""
        if self._run_id is None or not self.settings.log_to_mlflow:
            return
        from greenml.sinks import setup
        from greenml.sinks.mlflow import MlflowTarget

        assert self._uri is not None
        target = MlflowTarget(self._uri, run_id=self._run_id, owns_run=self._owns_run)
        now = time.monotonic()
        recording = setup.open_recording(
            self.settings,
            [target],
            clock=time.monotonic,
            start_s=now - job.duration_s,
            wall_start_s=time.time() - job.duration_s,
            snapshot=lambda: None,
            gpu_joules=None,
            step=(lambda: self._step) if self._step else None,
            intensity_is_final=True,
        )
        if recording is None:
            return
        more = {k: str(v) for k, v in (self.topology.tags if self.topology else {}).items()}
        more[schema.TAG_HOSTS] = str(hosts)
        if self._stop_reason is not None:
            more[schema.TAG_BUDGET_STOP] = self._stop_reason
        recording.finish(job, "FINISHED", more_tags=more)

    def __enter__(self) -> JobRun:
        """``with JobRun({...}) as job:`` in a plain ``torchrun`` script: started on
        entry (unless :meth:`start` was called with the run's details first)."""
        if not self._started:
            self.start()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        status = "FINISHED"
        if isinstance(exc, KeyboardInterrupt):
            status = "KILLED"
        elif exc is not None and not (isinstance(exc, SystemExit) and exc.code in (0, None)):
            status = "FAILED"
        self.stop(status)

    @property
    def footprint(self) -> Footprint | None:
        """After :meth:`stop`: the job's footprint on global rank 0 of a multi-host job,
        this host's on a measuring process, None on the others."""
        return self._footprint

    def _safely(self, call: Any, *args: Any) -> None:
        try:
            call(*args)
        except GreenMLError as e:
            warn(f"greenml: {e}")


# -- helpers ------------------------------------------------------------------------------


def _env(environ: Mapping[str, str] | None, name: str) -> str | None:
    env = os.environ if environ is None else environ
    return env.get(name, "").strip() or None


def _cuda_device() -> list[int | str] | None:
    """The CUDA device this process uses, where CUDA is initialised; None otherwise
    (a CPU process, or one that has not touched CUDA: its host measures every visible
    GPU)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            return [int(torch.cuda.current_device())]
    except Exception:  # a broken CUDA setup: leave the choice to the host
        return None
    return None


def _union(lists: Any) -> list[int | str] | None:
    """The GPUs a host's ranks use together; None (every visible GPU) if any rank did
    not say."""
    out: list[int | str] = []
    for gpus in lists:
        if gpus is None:
            return None
        out.extend(g for g in gpus if g not in out)
    return out


def _agree(everyone: Sequence[Mapping[str, Any]], key: str, what: str) -> None:
    """Every rank that gave ``key`` gave the same value, else a ConfigError (on every
    rank, naming two of the values and their ranks)."""
    seen: dict[Any, int] = {}
    for e in everyone:
        if e[key] is not None:
            seen.setdefault(e[key], e["rank"])
    if len(seen) > 1:
        (a, ra), (b, rb) = list(seen.items())[:2]
        raise ConfigError(
            f"the job's ranks disagree on {what}: rank {ra} has {a!r}, rank {rb} has {b!r}; "
            "give every rank the same value (one MLflow run and one location per job)"
        )


def sum_node_metrics(metrics: Mapping[str, float]) -> tuple[dict[str, float], set[str]]:
    """The job's figures from a run's per-host metrics (``greenml/node/<host>/<figure>``):
    energies, CO2e and cost add up, the duration is the longest; and the hosts seen."""
    totals: dict[str, float] = {}
    hosts: set[str] = set()
    figures = {m[len(schema.PREFIX) :]: m for m in schema.FIGURE_METRICS.values()}
    for key, value in metrics.items():
        if not key.startswith(schema.NODE_PREFIX):
            continue
        host, _, figure = key[len(schema.NODE_PREFIX) :].partition("/")
        if figure not in figures:
            continue
        hosts.add(host)
        name = figures[figure]
        if name == schema.METRIC_DURATION_S:
            totals[name] = max(totals.get(name, 0.0), value)
        else:
            totals[name] = totals.get(name, 0.0) + value
    return totals, hosts


def _metrics(values: Mapping[str, float], step: int) -> list[Any]:
    from mlflow.entities import Metric

    now = round(time.time() * 1000)
    return [Metric(k, float(v), now, step) for k, v in values.items()]


def _tags(values: Mapping[str, str]) -> list[Any]:
    from mlflow.entities import RunTag

    return [RunTag(k, v) for k, v in values.items()]


def combine_hosts(
    hosts: Mapping[str, Footprint], *, work_from: str | None = None, work_phase: str = "train"
) -> Footprint:
    """The footprint of a job from its hosts' footprints (measured with the same factors):
    energies, CO2e, cost and embodied carbon add up, phase by phase; the duration is the
    longest host's; the devices are every host's, keyed ``<host>/<key>`` and numbered
    across the job; the work is the job's, as ``work_from`` (rank 0's host) counted it,
    and the MFU is over the job's GPUs and the longest time a host spent in ``work_phase``."""
    if not hosts:
        raise ValueError("combine_hosts() needs at least one host's footprint")
    fps = list(hosts.values())
    first = fps[0]

    def total(name: str, parts: Sequence[Footprint]) -> float | None:
        values = [getattr(p, name) for p in parts]
        return None if any(v is None for v in values) else sum(values)

    def merged(parts: Sequence[Footprint]) -> dict[str, Any]:
        return {
            "duration_s": max(p.duration_s for p in parts),
            "energy_kwh": sum(p.energy_kwh for p in parts),
            "gpu_energy_kwh": sum(p.gpu_energy_kwh for p in parts),
            "cpu_energy_kwh": sum(p.cpu_energy_kwh for p in parts),
            "ram_energy_kwh": sum(p.ram_energy_kwh for p in parts),
            "co2e_kg": total("co2e_kg", parts),
            "co2e_market_kg": total("co2e_market_kg", parts),
            "cost_usd": total("cost_usd", parts),
        }

    phases = {}
    for name in dict.fromkeys(n for fp in fps for n in fp.phases):
        parts = [fp.phases[name] for fp in fps if name in fp.phases]
        phases[name] = dataclasses.replace(parts[0], **merged(parts))
    devices: list[DeviceEnergy] = []
    gpu_index = 0
    for host, fp in hosts.items():
        renumber: dict[int, int] = {}
        for d in fp.devices:
            index = d.index
            if d.kind == "gpu" and d.index is not None:
                if d.index not in renumber:
                    renumber[d.index] = gpu_index
                    gpu_index += 1
                index = renumber[d.index]
            devices.append(
                dataclasses.replace(
                    d, key=f"{host}/{d.key}", index=index, details=(*d.details, ("host", host))
                )
            )
    figures = merged(fps)
    source = hosts.get(work_from or "", first)
    work = source.work if source.steps is not None else None
    mfu = None
    if work is not None and work.flops:
        peak = next((f for f in first.factors if f.name == "gpu_peak_flops"), None)
        seconds = max(
            (fp.phases[work_phase].duration_s for fp in fps if work_phase in fp.phases),
            default=figures["duration_s"],
        )
        if peak is not None and gpu_index and seconds > 0:
            mfu = work.flops / (seconds * gpu_index * peak.value)
    embodied = total("embodied_co2e_kg", fps)
    grid = first.grid_intensity_g_per_kwh
    return dataclasses.replace(
        first,
        **figures,
        phases=MappingProxyType(phases),
        devices=tuple(devices),
        measurement=measurement_of(devices),
        flags=tuple(dict.fromkeys(f for fp in fps for f in fp.flags)),
        embodied_co2e_kg=embodied,
        grid_intensity_g_per_kwh=grid,
        steps=work.steps if work is not None else None,
        samples=work.samples if work is not None else None,
        tokens=work.tokens if work is not None else None,
        flops=work.flops if work is not None else None,
        mfu=mfu,
    )


__all__ = ["JobRun", "Topology", "combine_hosts", "topology"]
