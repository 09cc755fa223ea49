"""From settings to a recording: the targets a run's records go to, and its recorder.

:func:`open_targets` reads the settings (``log_to_mlflow``, ``tracking_uri``, ``run_id``...
for MLflow; ``sink_dir`` for the directory sink) and builds the targets; a new sink is a
module in this package and a line here. :func:`open_recording` opens the journal and the
:class:`~greenml.sinks.recorder.Recorder` that feeds the targets. The tracker calls these
two and knows no sink.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from greenml._version import __version__
from greenml.errors import ConfigError, warn
from greenml.sinks.base import Target
from greenml.sinks.recorder import Recorder

if TYPE_CHECKING:
    from greenml.config import Settings
    from greenml.footprint import Footprint
    from greenml.sinks.mlflow import MlflowTarget


def open_targets(settings: Settings, environ: Mapping[str, str] | None) -> list[Target]:
    """The run's targets, MLflow first (see :func:`mlflow_target`), then the directory
    sink if ``sink_dir`` is set. Raises :class:`ConfigError` for a ``run_id`` the store
    does not have: called before any meter opens."""
    targets: list[Target] = []
    mlflow = mlflow_target(settings, environ)
    if mlflow is not None:
        targets.append(mlflow)
    if settings.sink_dir is not None:
        from greenml.sinks.directory import DirectoryTarget

        targets.append(DirectoryTarget(settings.sink_dir))
    return targets


def mlflow_target(settings: Settings, environ: Mapping[str, str] | None) -> MlflowTarget | None:
    """Where the run goes in MLflow (``None`` with ``log_to_mlflow=False``). Attaches
    to ``run_id``, else the caller's active run, else ``MLFLOW_RUN_ID`` (what `mlflow
    run` sets); otherwise a run is created later, by the recorder thread. A run id the
    store does not have is a ConfigError."""
    s = settings
    if not s.log_to_mlflow:
        return None
    from greenml.sinks import mlflow as sink

    uri = sink.absolute_uri(s.tracking_uri or sink.default_tracking_uri(environ))
    run_id, owns, named = s.run_id, False, "run_id"
    if run_id is None:
        same_store = s.tracking_uri is None or uri == sink.absolute_uri(
            sink.default_tracking_uri(None)
        )
        run_id = sink.active_run_id() if same_store else None
        if run_id is None and same_store:  # set by `mlflow run` for the job's run
            env = os.environ if environ is None else environ
            run_id, named = env.get("MLFLOW_RUN_ID", "").strip() or None, "MLFLOW_RUN_ID"
        else:
            named = ""
        owns = run_id is None
    target = sink.MlflowTarget(
        uri, experiment=s.experiment, run_name=s.run_name, run_id=run_id, owns_run=owns
    )
    if run_id is not None and named:
        if not target.reachable():
            warn(
                f"cannot check {named}={run_id!r}: MLflow at {sink.redact_uri(uri)} does "
                "not answer; the run is measured and its records wait in the journal "
                "until MLflow is back (or `greenml sync`)"
            )
            return target
        try:
            target.check_run(run_id, named=named)
        except ConfigError:
            raise
        except Exception as e:  # a malformed URI or a store error: warn, keep measuring
            warn(f"cannot check {named}={run_id!r} in MLflow at {sink.redact_uri(uri)} ({e})")
    return target


def open_recording(
    settings: Settings,
    targets: Sequence[Target],
    *,
    clock: Callable[[], float],
    start_s: float,
    wall_start_s: float,
    snapshot: Callable[[], Footprint | None],
    gpu_joules: Callable[[], tuple[float, dict[int, float]]] | None,
    step: Callable[[], int | None] | None,
    intensity_is_final: bool,
    extras: Callable[[Footprint], Mapping[str, float]] | None = None,
    fresh: Callable[[], None] | None = None,
    resumed: bool = False,
) -> Recorder | None:
    """The journal (a file, or memory with ``journal=False`` or an unwritable folder)
    and the recorder that feeds ``targets`` from it, its start record written; ``None``
    when there is nowhere to record (no target and no journal). Not started."""
    from greenml.sinks.journal import SUFFIX, Journal, MemoryJournal

    s = settings
    if not targets and not s.journal:
        return None
    greenml_run_id = uuid.uuid4().hex
    log: Journal | MemoryJournal = MemoryJournal()
    if s.journal:
        path = os.path.join(s.journal_dir, greenml_run_id + SUFFIX)
        try:
            log = Journal(os.path.abspath(path))
        except OSError as e:
            warn(
                f"cannot write the journal {path} ({e}); records are kept in memory only "
                "and are lost if the process dies (set journal_dir= to a writable folder)"
            )
    start = _start_record(s, targets, greenml_run_id, wall_start_s)
    start["resumed"] = resumed  # figures carry an earlier part: a run's totals are not added

    def recorder(journal: Journal | MemoryJournal) -> Recorder:
        return Recorder(
            snapshot=snapshot,
            gpu_joules=gpu_joules,
            journal=journal,
            targets=targets,
            start=start,
            interval_s=s.log_interval_s,
            intensity_is_final=intensity_is_final,
            clock=clock,
            start_s=start_s,
            wall_start_s=wall_start_s,
            step=step,
            extras=extras,
            fresh=fresh,
        )

    try:
        return recorder(log)  # writes the start record
    except OSError as e:  # a full or read-only disk must not stop the training
        warn(
            f"cannot write the journal {log.path} ({e}); records are kept in memory only "
            "and are lost if the process dies (set journal_dir= to a writable folder)"
        )
        return recorder(MemoryJournal())


def _start_record(
    s: Settings, targets: Sequence[Target], greenml_run_id: str, wall_start_s: float
) -> dict[str, object]:
    """The journal's start record: the run, and where it logs (what sync needs)."""
    from greenml.sinks.directory import DirectoryTarget
    from greenml.sinks.mlflow import MlflowTarget, redact_uri

    mlflow = next((t for t in targets if isinstance(t, MlflowTarget)), None)
    folder = next((t for t in targets if isinstance(t, DirectoryTarget)), None)
    return {
        "greenml_run_id": greenml_run_id,
        "greenml_version": __version__,
        "node": socket.gethostname(),
        "pid": os.getpid(),
        "wall_start_ms": round(wall_start_s * 1000),
        "targets": [t.name for t in targets],
        "mlflow": mlflow is not None,
        "tracking_uri": redact_uri(mlflow.tracking_uri) if mlflow else None,
        "credentials_redacted": bool(
            mlflow and redact_uri(mlflow.tracking_uri) != mlflow.tracking_uri
        ),
        "run_id": mlflow.run_id if mlflow else None,
        "owns_run": bool(mlflow and mlflow.owns_run),
        "mlflow_node": mlflow.node if mlflow else None,  # a host's records in a job's run
        "experiment": s.experiment,
        "run_name": s.run_name,
        "sink_dir": folder.uri if folder else None,
    }
