"""greenml for the Hugging Face ``Trainer``: :class:`GreenMLCallback`.

::

    from greenml.integrations.huggingface import GreenMLCallback

    trainer = Trainer(model, args, train_dataset=ds, callbacks=[GreenMLCallback(location="FR")])
    trainer.train()

The keywords are those of ``greenml.track()`` (plus the budgets), checked when the callback
is built. One ``trainer.train()`` is one measured job (:class:`JobRun
<greenml.integrations.distributed.JobRun>`), from ``on_train_begin`` to ``on_train_end``:

- **MLflow run.** With ``report_to`` naming MLflow, the Trainer's ``MLflowCallback`` (a
  default callback, so it runs before every callback the user passes) opens or resumes its
  run in ``on_train_begin`` (honouring ``MLFLOW_TRACKING_URI``, ``MLFLOW_EXPERIMENT_NAME``,
  ``MLFLOW_RUN_ID``, ``MLFLOW_NESTED_RUN``); greenml then logs into that same run, given by
  its id and tracking URI (``mlflow.active_run()``, ``mlflow.get_tracking_uri()``), and
  never ends it. Otherwise greenml attaches to the caller's active run if there is one,
  else opens a run of its own and says so once. A ``run_id`` or ``tracking_uri`` given to
  the callback wins over the Trainer's run.
- **Steps.** Each optimizer step (``on_step_end``) passes the global step and its work:
  samples (``train_batch_size x gradient_accumulation_steps x world_size``), input tokens
  (``state.num_input_tokens_seen``, with ``include_num_input_tokens_seen``) and FLOPs
  (``state.total_flos``). The Trainer adds to ``total_flos`` only when it logs, after the
  step's ``on_step_end``: a step passes the FLOPs added since the step before, and those of
  the last logging interval, added after the last step, are added at the end (so
  ``greenml/flops`` is the Trainer's ``total_flos`` for this training). Time-series
  points are taken in the ``on_log`` that carries the Trainer's training ``loss``, at its
  global step, so greenml's points sit at the loss's steps; the summary comes at the end.
- **Phases.** The Trainer has no hook before an evaluation. An evaluation it runs itself
  is announced by ``control.should_evaluate`` (set by ``DefaultFlowCallback``, the first
  callback, in ``on_step_end``/``on_epoch_end``; ``eval_on_start`` at the start): the
  ``eval`` phase opens there and closes in ``on_evaluate``. An evaluation or prediction
  started otherwise during training (from another callback) opens ``eval`` at its first
  ``on_prediction_step`` and closes in ``on_evaluate``/``on_predict``. Boundaries are
  host times: GPU work still queued when a hook runs goes to the phase that follows.
- **Budgets.** When a budget is crossed with ``stop_on_budget=True`` (noticed within
  :data:`greenml.progress.CHECK_S` and a fresh reading), the next step end sets
  ``control.should_training_stop``; the Trainer then ends as usual, and the run is tagged
  ``greenml.budget_stop``.
- **Failures.** ``MLflowCallback`` ends a run it opened in its own ``on_train_end``, before
  this callback's; greenml's summary, params and tags still go to that run by its id. The
  Trainer has no exception hook: a training that raises never reaches ``on_train_end``.
  The job is then closed by whichever comes first: the next ``trainer.train()`` (the
  Trainer retries after an out-of-memory error with ``auto_find_batch_size``; a notebook
  user runs it again), which records the unfinished job as ``FAILED`` and starts a new
  one; or the end of the process, which records it as ``FAILED`` (``KILLED`` after a
  KeyboardInterrupt). At the end of the process, after an uncaught exception, the MLflow
  run greenml logged into, if it is still the active run of MLflow's fluent API (the
  Trainer's run, never ended because ``on_train_end`` never came), is ended as ``FAILED``
  too: MLflow's own exit handler would otherwise mark it ``FINISHED``.
- **Checkpoints.** The callback is an ``ExportableState``: each checkpoint's
  ``trainer_state.json`` keeps the job's figures so far, and a training resumed from it
  continues them (see :class:`GreenMLCallback`).
- **Twice.** The same callback, or two ``GreenMLCallback``, on one Trainer: the first in
  the callback list measures, the others stand aside, with one warning.

Everything greenml does in these hooks is cheap (no I/O, no MLflow call in the training
thread) and never raises into the training: ``JobRun`` catches and warns.
"""

from __future__ import annotations

import atexit
import functools
import json
import logging
import os
import sys
import weakref
from collections.abc import Callable
from typing import Any

try:
    from transformers import TrainerCallback
    from transformers.trainer_callback import ExportableState
except ImportError as e:  # the framework is an optional extra
    raise ImportError(
        "greenml.integrations.huggingface needs transformers (and accelerate): "
        f'pip install "greenml[huggingface]" ({e})'
    ) from e

from greenml.errors import warn
from greenml.footprint import Footprint
from greenml.integrations.distributed import JobRun

logger = logging.getLogger(__name__)

__all__ = ["GreenMLCallback"]

# The Trainer's MLflow integrations: their callback opens the run in on_train_begin.
_MLFLOW_REPORTERS = frozenset({"mlflow", "dagshub"})
# Which GreenMLCallback measures a training: id(TrainerState) -> (the state, the callback),
# both weakly held; every callback of one Trainer gets the same state object in a hook.
_MEASURING: dict[int, tuple[weakref.ref[Any], weakref.ref[GreenMLCallback]]] = {}
# Where a checkpoint keeps the job's figures, in the callback's entry of trainer_state.json.
_CHECKPOINT_KEY = "_greenml_checkpoint"


class GreenMLCallback(TrainerCallback, ExportableState):
    """Measures the energy, carbon and cost of ``trainer.train()`` and logs them to MLflow,
    into the Trainer's own run when it reports to MLflow.

    ``track_kwargs`` are ``greenml.track()``'s keywords (``location``, ``pue``,
    ``experiment``, ``max_energy_kwh``, ``stop_on_budget``...); a bad one raises
    :class:`~greenml.errors.ConfigError` here. After training, :attr:`footprint` holds the
    job's figures (on the process that reports them).

    Checkpoints keep the job's figures so far (the Trainer saves :meth:`state` in
    ``trainer_state.json``); a training resumed from one continues them, whether it logs
    into a new MLflow run or the earlier part's (``MLFLOW_RUN_ID``): the figures start from
    the checkpoint's, once, and the footprint is flagged ``resumed``. What the earlier part
    used after its last checkpoint is not in them.
    """

    def __init__(self, **track_kwargs: Any) -> None:
        self._track_kwargs = dict(track_kwargs)
        self._job = JobRun(self._track_kwargs)  # validates: ConfigError names the value
        self._started = False  # self._job was started (a JobRun measures one job)
        self._active = False  # measuring a training now
        self._state_ref: weakref.ref[Any] | None = None  # that training's TrainerState
        self._exit_hook: Callable[[], None] | None = None
        self._samples_per_step: int | None = None
        self._count_tokens = False
        self._last_step = 0
        self._last_point_step: int | None = None
        self._flos = 0.0
        self._tokens = 0
        self._phase: str | None = None

    # -- results ----------------------------------------------------------------------

    @property
    def footprint(self) -> Footprint | None:
        """The footprint of the latest training, once it ended (``None`` before, and on a
        process that does not report the job's figures)."""
        return self._job.footprint if self._started else None

    @property
    def job(self) -> JobRun:
        """The :class:`~greenml.integrations.distributed.JobRun` of the latest training."""
        return self._job

    # -- training ---------------------------------------------------------------------

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        owner = _owner(state)
        if owner is not self and self._active:  # the last train() never ended: it raised
            self._finish("FAILED")
        if owner is not None:  # listed twice, or another GreenMLCallback came first
            warn(
                "GreenMLCallback was added to this Trainer more than once; greenml measures "
                "the training once, with the first one in the callback list, and ignores "
                "the others (and their settings)"
            )
            return
        if self._started:  # a JobRun measures one job: this is a new train()
            self._job = JobRun(self._track_kwargs)
        run_id, tracking_uri = self._trainer_run(args, state)
        self._resume(args, state)
        _MEASURING[id(state)] = (weakref.ref(state), weakref.ref(self))
        self._state_ref = weakref.ref(state)
        try:
            self._job.start(
                run_id=run_id,
                tracking_uri=tracking_uri,
                total_steps=state.max_steps if state.max_steps > 0 else None,
                gpu_ids=self._gpu_ids(args),
                framework="huggingface",
                global_step=state.global_step,
            )
        except BaseException:  # bad settings (a run id the store does not have...)
            self._release()
            raise
        self._started = self._active = True
        fluent = run_id if run_id is not None else self._attachable_run()
        self._exit_hook = functools.partial(_end_at_exit, self._job, fluent)
        atexit.register(self._exit_hook)
        per_device = state.train_batch_size or args.train_batch_size
        self._samples_per_step = per_device * args.gradient_accumulation_steps * args.world_size
        tokens_seen = getattr(args, "include_num_input_tokens_seen", "no")
        self._count_tokens = tokens_seen not in ("no", False, None)
        self._last_step = state.global_step
        self._last_point_step = None
        self._flos = float(state.total_flos)
        self._tokens = int(state.num_input_tokens_seen)
        self._phase = None
        if getattr(args, "eval_on_start", False):
            self._begin_phase("eval")

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._phase is not None and self._active:  # announced, but no evaluation came
            self._end_phase()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self._active:
            return
        step = state.global_step
        if step == self._last_step:  # the same event again: this callback is listed twice
            return
        tokens = state.num_input_tokens_seen
        flos = state.total_flos
        self._job.step(
            step,
            samples=self._samples_per_step * (step - self._last_step)
            if self._samples_per_step
            else None,
            tokens=tokens - self._tokens if self._count_tokens else None,
            flops=flos - self._flos if flos > self._flos else None,
        )
        self._last_step, self._tokens, self._flos = step, tokens, flos
        if self._job.stop_requested and not control.should_training_stop:
            logger.info("greenml: stopping the training (%s)", self._job.stop_requested)
            control.should_training_stop = True
        if control.should_evaluate and self._phase is None:
            self._begin_phase("eval")

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._active and control.should_evaluate and self._phase is None:
            self._begin_phase("eval")

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        # A point with the Trainer's training loss, once per step: its evaluation and
        # end-of-training logs add none (the summary comes at the end).
        if self._active and logs and "loss" in logs and state.global_step != self._last_point_step:
            self._last_point_step = state.global_step
            self._job.log_point()

    def on_prediction_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._phase is None and self._active:  # an evaluation nobody announced
            self._begin_phase("eval")

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._phase is not None and self._active:
            self._end_phase()

    def on_predict(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._phase is not None and self._active:
            self._end_phase()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self._active:
            return
        if state.total_flos > self._flos:  # the Trainer adds its last FLOPs at its last log
            self._job.add_work(flops=state.total_flos - self._flos)
            self._flos = float(state.total_flos)
        self._finish("FINISHED")

    # -- checkpoints ------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps (transformers' ``ExportableState``): the settings, from
        which the Trainer rebuilds the callback when
        ``restore_callback_states_from_checkpoint`` is set, and, while a training is
        measured, the job's figures so far."""
        saved = self._job.state_dict() if self._active else {}
        settings = json.loads(json.dumps(self._track_kwargs, default=str))  # JSON-able
        return {"args": settings, "attributes": {_CHECKPOINT_KEY: saved}}

    def _resume(self, args: Any, state: Any) -> None:
        """On a training resumed from a checkpoint (its global step is past 0), continue
        the job's figures the checkpoint kept (before the job starts: into the MLflow run
        of the earlier part, the run's totals then continue from them, once).

        A checkpoint holds the figures of the host that wrote it: the main process's,
        unless every node saves its own (``save_on_each_node``); only the process that
        wrote them takes them back, so that no host counts another's."""
        if state.global_step <= 0 or not (state.is_world_process_zero or args.save_on_each_node):
            return
        saved = _checkpointed(state, type(self).__name__)
        if saved is not None:
            self._job.load_state_dict(saved)

    # -- helpers ----------------------------------------------------------------------

    def _trainer_run(self, args: Any, state: Any) -> tuple[str | None, str | None]:
        """The Trainer's MLflow run (id, tracking URI) when its MLflow integration is on
        and opened one (on the main process), else ``(None, None)``: greenml then finds
        the active run or ``MLFLOW_RUN_ID``, or opens a run of its own (and says so). The
        caller's ``run_id``/``tracking_uri`` win; nothing with ``log_to_mlflow=False``."""
        s = self._job.settings
        if s.run_id or s.tracking_uri or not s.log_to_mlflow:
            return None, None
        mlflow = sys.modules.get("mlflow")  # MLflowCallback imported it, if it is there
        run = mlflow.active_run() if mlflow is not None else None
        if not _MLFLOW_REPORTERS & set(args.report_to or ()):
            if run is None and state.is_world_process_zero and not os.environ.get("MLFLOW_RUN_ID"):
                warn(
                    "the Trainer does not report to MLflow, so greenml records in an MLflow "
                    'run of its own; add "mlflow" to TrainingArguments(report_to=...) to '
                    "have greenml's figures in the training's run"
                )
            return None, None
        if run is None:  # not the main process: the run id comes from rank 0
            return None, None
        logger.info("greenml: logging into the Trainer's MLflow run %s", run.info.run_id)
        return run.info.run_id, mlflow.get_tracking_uri()

    def _attachable_run(self) -> str | None:
        """The run of MLflow's fluent API that greenml attaches to when given no run (the
        caller's active run), if any and if MLflow is loaded."""
        s = self._job.settings
        if s.run_id or s.tracking_uri or not s.log_to_mlflow:
            return None
        mlflow = sys.modules.get("mlflow")
        run = mlflow.active_run() if mlflow is not None else None
        return run.info.run_id if run is not None else None

    def _gpu_ids(self, args: Any) -> list[int] | None:
        """The GPUs this process trains on, as positions among the visible ones: its
        device, or all of them under DataParallel; ``None`` on the CPU (JobRun then
        measures every visible GPU). A ``gpu_ids`` setting wins (JobRun sees to it)."""
        device = args.device
        if device.type != "cuda":
            return None
        if args.n_gpu > 1:
            return list(range(args.n_gpu))
        return [device.index or 0]

    def _begin_phase(self, name: str) -> None:
        self._phase = name
        self._job.begin_phase(name)

    def _end_phase(self) -> None:
        name, self._phase = self._phase, None
        self._job.end_phase(name)

    def _finish(self, status: str) -> None:
        if self._phase is not None:
            self._end_phase()
        self._active = False
        self._release()
        if self._exit_hook is not None:
            atexit.unregister(self._exit_hook)
            self._exit_hook = None
        self._job.stop(status)

    def _release(self) -> None:
        """Forget the training this callback measured (or stood aside from)."""
        state = self._state_ref() if self._state_ref is not None else None
        if state is not None:
            entry = _MEASURING.get(id(state))
            if entry is not None and entry[1]() is self:
                del _MEASURING[id(state)]
        self._state_ref = None


def _checkpointed(state: Any, name: str) -> dict[str, Any] | None:
    """What a checkpoint's ``trainer_state.json`` kept for callback class ``name`` (the
    latest that measured, where the Trainer kept several)."""
    kept = (
        state.stateful_callbacks.get(name) if isinstance(state.stateful_callbacks, dict) else None
    )
    for entry in reversed(kept if isinstance(kept, list) else [kept]):
        if isinstance(entry, dict):
            saved = (entry.get("attributes") or {}).get(_CHECKPOINT_KEY)
            if isinstance(saved, dict) and saved.get("footprint"):
                return saved
    return None


def _owner(state: Any) -> GreenMLCallback | None:
    """The callback measuring the training of ``state``, if any (dead entries dropped)."""
    for key, (state_ref, cb_ref) in list(_MEASURING.items()):
        if state_ref() is None or cb_ref() is None:
            del _MEASURING[key]
    entry = _MEASURING.get(id(state))
    if entry is None or entry[0]() is not state:
        return None
    return entry[1]()


def _end_at_exit(job: JobRun, fluent_run_id: str | None) -> None:
    """At the end of a process whose training never reached ``on_train_end``: record the
    job as failed (killed after Ctrl-C); if the run it logged into is still MLflow's active
    run, end it with that status before MLflow's own exit handler marks it FINISHED."""
    last = getattr(sys, "last_value", None)  # the uncaught exception, if that is why
    status = "KILLED" if isinstance(last, KeyboardInterrupt) else "FAILED"
    job.stop(status)
    mlflow = sys.modules.get("mlflow")
    if last is None or fluent_run_id is None or mlflow is None:
        return
    run = mlflow.active_run()
    if run is not None and run.info.run_id == fluent_run_id:
        try:
            mlflow.end_run(status)
        except Exception:  # the process is ending; MLflow's own handler follows
            logger.warning("greenml: ending MLflow run %s failed", fluent_run_id, exc_info=True)
