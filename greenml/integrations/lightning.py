"""greenml for PyTorch Lightning: the energy, CO2e and cost of a Trainer's work, in MLflow.

::

    from lightning.pytorch import Trainer
    from lightning.pytorch.loggers import MLFlowLogger
    from greenml.integrations.lightning import GreenMLCallback

    trainer = Trainer(
        logger=MLFlowLogger(experiment_name="bert"),
        callbacks=[GreenMLCallback(location="aws:us-east-1", max_energy_kwh=5.0)],
    )
    trainer.fit(model)

``GreenMLCallback(**track_kwargs)`` takes every ``greenml.track()`` keyword (checked when
it is built: a :class:`~greenml.errors.ConfigError` names a bad one) and two of its own,
``tokens_per_sample`` and ``flops_per_step`` (below). It works with ``lightning.pytorch``,
or with ``pytorch_lightning`` where that is what is installed (when both are, the callback
is a ``lightning.pytorch`` one).

**Where it logs.** Into the run of the Trainer's first ``MLFlowLogger`` (its ``run_id``
and its client's ``tracking_uri``), next to the module's own ``self.log`` metrics; without
one, into the caller's active MLflow run if there is one, else a run of its own (it says so
once). A ``run_id`` or ``tracking_uri`` given to the callback wins over the logger's run.
The logger creates its run on global rank 0 only, so rank 0 reads it and
``trainer.strategy.broadcast`` tells the other ranks.

**What one measurement is.** Each ``trainer.fit`` is one measurement, from
``on_fit_start`` to the fit's ``teardown``; its validation (the sanity check included) is
the ``eval`` phase. A ``trainer.validate``, ``test`` or ``predict`` called on its own (a
test after the fit, say) is a measurement of its own, all of it in its phase (``eval``,
``test``, ``predict``), logged into the logger's run too: with the same ``MLFlowLogger`` as
the fit, the run's greenml figures keep adding up over both. :attr:`footprint` is the
latest measurement's. An exception in the Trainer ends the measurement as ``FAILED``
(``KILLED`` for Ctrl+C and SIGTERM).

**Steps and work.** Time-series points carry ``trainer.global_step``. After each optimizer
step the callback reports the step's work: samples (:meth:`count_samples`: a tensor's size
along dim 0; a list, tuple or mapping: that of its first element, or value, recursively; a
list of non-tensors, such as strings: its length), tokens (``tokens_per_sample`` x samples,
see :meth:`count_tokens`) and ``flops_per_step`` (one optimizer step's FLOPs in one
process, e.g. from ``lightning.fabric.utilities.throughput.measure_flops``, times the
micro-batches accumulated into a step). Work is reported job-wide: one process's figures x
``trainer.world_size`` (under Lightning's distributed sampler every rank sees a batch of the
same size). A point is recorded on the Trainer's log cadence (every ``log_every_n_steps``
optimizer steps) and at each training epoch's end.

**Budgets.** With ``max_energy_kwh`` / ``max_co2e_kg`` / ``max_cost_usd`` and
``stop_on_budget=True``, a crossing sets ``trainer.should_stop``: at the next optimizer step
in a single process; in a multi-process job at the next logging step or epoch end, where
the ranks agree through ``trainer.strategy.reduce_boolean_decision``. Lightning then ends
the step in progress (and the validation due) and stops, once ``min_steps`` /
``min_epochs`` are met. ``trainer.estimated_stepping_batches`` is the forecast's total.

**Resume.** :meth:`state_dict` keeps the fit's cumulative figures in the checkpoint; a fit
resumed from it (``trainer.fit(model, ckpt_path=...)``) continues the energy, CO2e and cost
instead of starting again at zero.

**Twice in one Trainer.** Lightning refuses two stateful callbacks of one type in
``Trainer(callbacks=[...])``. One that gets in anyway (appended to ``trainer.callbacks``)
stands aside with a warning: the first measures, the job is measured once.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Mapping
from typing import Any

try:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import Callback
    from lightning.pytorch.loggers import MLFlowLogger
except ImportError:  # the standalone package, where that is what is installed
    try:
        import pytorch_lightning as pl
        from pytorch_lightning.callbacks import Callback
        from pytorch_lightning.loggers import MLFlowLogger
    except ImportError as e:
        raise ImportError(
            "greenml.integrations.lightning needs PyTorch Lightning: "
            'pip install "greenml[lightning]"'
        ) from e
import torch
from typing_extensions import override

from greenml.errors import ConfigError, warn
from greenml.footprint import Footprint
from greenml.integrations.distributed import JobRun

__all__ = ["GreenMLCallback"]

logger = logging.getLogger(__name__)

_NESTED = (torch.Tensor, list, tuple, Mapping)  # the cheap checks first


class GreenMLCallback(Callback):
    """Measures the Trainer's work with greenml; see the module docstring.

    Args:
        tokens_per_sample: tokens in one sample (fixed-length sequences); tokens are then
            counted as samples x this. Override :meth:`count_tokens` for other batches.
        flops_per_step: FLOPs of one optimizer step in one process.
        **track_kwargs: ``greenml.track()`` keywords (``location``, ``pue``,
            ``max_energy_kwh``, ``stop_on_budget``, ...).

    Raises:
        ConfigError: a bad argument, named.
    """

    def __init__(
        self,
        *,
        tokens_per_sample: int | None = None,
        flops_per_step: float | None = None,
        **track_kwargs: Any,
    ) -> None:
        super().__init__()
        if tokens_per_sample is not None and (
            isinstance(tokens_per_sample, bool)
            or not isinstance(tokens_per_sample, int)
            or tokens_per_sample < 1
        ):
            raise ConfigError(
                f"GreenMLCallback(tokens_per_sample={tokens_per_sample!r}): give the tokens "
                "in one sample, an integer >= 1 (or override count_tokens())"
            )
        if flops_per_step is not None and (
            isinstance(flops_per_step, bool)
            or not isinstance(flops_per_step, (int, float))
            or not math.isfinite(flops_per_step)
            or flops_per_step <= 0
        ):
            raise ConfigError(
                f"GreenMLCallback(flops_per_step={flops_per_step!r}): give the FLOPs of one "
                "optimizer step, a positive number (lightning.fabric.utilities.throughput."
                "measure_flops measures them)"
            )
        self.tokens_per_sample = tokens_per_sample
        self.flops_per_step = None if flops_per_step is None else float(flops_per_step)
        self._track_kwargs = dict(track_kwargs)
        self._job: JobRun | None = JobRun(self._track_kwargs)  # checks the settings now
        self._fit_job: JobRun | None = None  # the latest fit's, whose state a checkpoint keeps
        self._pending_state: dict[str, Any] | None = None  # loaded before the fit starts
        self._footprint: Footprint | None = None
        self._active = True  # False: another GreenMLCallback in this Trainer measures
        self._stage: str | None = None  # the entry point measured now: fit, validate, ...
        self._phase: str | None = None
        self._reset_steps(0)

    @property
    def footprint(self) -> Footprint | None:
        """The latest measurement's footprint, once it has ended (``None`` before, and on
        ranks that report nothing)."""
        return self._footprint

    def count_samples(self, batch: Any) -> int | None:
        """The samples in a training batch (the rule is in the module docstring);
        ``None`` when not known. Override it for other batch types."""
        obj = batch
        for _ in range(8):
            if isinstance(obj, torch.Tensor):
                return int(obj.shape[0]) if obj.ndim else 1
            if isinstance(obj, (list, tuple)):
                if not obj or not isinstance(obj[0], _NESTED):
                    return len(obj)
                obj = obj[0]
            elif isinstance(obj, Mapping):
                obj = next(iter(obj.values()), None)
            else:
                return None
        return None

    def count_tokens(self, batch: Any, samples: int | None) -> int | None:
        """The tokens in a training batch: ``samples x tokens_per_sample``, ``None``
        without ``tokens_per_sample``. Override it to count padded batches exactly."""
        if self.tokens_per_sample is None or samples is None:
            return None
        return samples * self.tokens_per_sample

    # -- measurements: fit, and validate / test / predict on their own -----------------

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        ours = [cb for cb in trainer.callbacks if isinstance(cb, GreenMLCallback)]
        self._active = ours[0] is self
        if self._active and len(ours) > 1:
            warn(
                f"GreenMLCallback is in trainer.callbacks {len(ours)} times; only the first "
                "measures, so the job is measured once (remove the others)"
            )

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._begin(trainer, "fit")

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._end("FINISHED")

    @override
    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        # SIGTERM reaches Lightning's loops as SIGTERMException, a SystemExit
        interrupted = isinstance(exception, (KeyboardInterrupt, SystemExit))
        self._end("KILLED" if interrupted else "FAILED")

    def _begin(self, trainer: pl.Trainer, stage: str) -> None:
        if not self._active or self._stage is not None:
            return
        job = self._job if self._job is not None else JobRun(self._track_kwargs)
        state, self._pending_state = self._pending_state, None
        if stage == "fit":
            if state:
                job.load_state_dict(state)
            self._fit_job = job
        run_id, tracking_uri = self._logger_run(trainer, job)
        job.start(
            run_id=run_id,
            tracking_uri=tracking_uri,
            total_steps=_total_steps(trainer) if stage == "fit" else None,
            gpu_ids=self._gpu_ids(trainer),
            framework="lightning",
            global_step=trainer.global_step,
        )
        self._job, self._stage = job, stage
        self._world = trainer.world_size
        self._log_every = trainer.log_every_n_steps
        self._reset_steps(trainer.global_step)
        if stage == "fit":  # a resumed job may be over its budget already
            self._check_budget(trainer, together=self._world > 1)

    def _end(self, status: str) -> None:
        job, self._job = self._job, None
        if self._stage is None or job is None:
            self._job = job
            return
        self._stage = None
        if self._phase is not None:
            job.end_phase(self._phase)
            self._phase = None
        footprint = job.stop(status)
        if footprint is not None:
            self._footprint = footprint

    def _logger_run(self, trainer: pl.Trainer, job: JobRun) -> tuple[str | None, str | None]:
        """The first MLFlowLogger's run id and tracking URI, read on global rank 0 and
        broadcast; ``(None, None)`` when the user named a run or store (that wins), when
        greenml does not log to MLflow, or when the Trainer has no MLFlowLogger."""
        s = job.settings
        if s.run_id or s.tracking_uri or not s.log_to_mlflow:
            return None, None
        loggers = [lg for lg in trainer.loggers if isinstance(lg, MLFlowLogger)]
        if not loggers:  # the same on every rank: no collective
            if trainer.global_rank == 0 and not _mlflow_run_active():
                warn(
                    "the Trainer has no MLFlowLogger, so greenml records in an MLflow run of "
                    "its own; add MLFlowLogger to the Trainer's loggers to have greenml's "
                    "figures in the training's run"
                )
            return None, None
        found: tuple[str | None, str | None] = (None, None)
        if trainer.global_rank == 0:
            try:
                client = loggers[0].experiment  # creates the logger's run if need be
                found = (loggers[0].run_id, client.tracking_uri)
            except Exception as e:  # every rank must still reach the broadcast
                logger.debug("greenml: reading MLFlowLogger's run failed", exc_info=True)
                warn(
                    f"greenml could not read the MLFlowLogger's run ({e}); it records in a "
                    "run of its own instead"
                )
        return trainer.strategy.broadcast(found, src=0)

    def _gpu_ids(self, trainer: pl.Trainer) -> list[int] | None:
        """The node's CUDA devices the Trainer uses, unless the user chose ``gpu_ids``."""
        if "gpu_ids" in self._track_kwargs or trainer.strategy.root_device.type != "cuda":
            return None
        return list(trainer.device_ids)

    # -- training steps -----------------------------------------------------------------

    def _reset_steps(self, global_step: int) -> None:
        self._last_step = global_step
        self._last_point: int | None = None
        self._last_batch: tuple[int, int] | None = None
        self._samples: int | None = 0
        self._tokens: int | None = 0
        self._stopping = False

    @override
    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        job = self._job
        if self._stage != "fit" or job is None:
            return
        this_batch = (batch_idx, trainer.current_epoch)
        if this_batch == self._last_batch:  # the same instance listed twice in callbacks
            return
        self._last_batch = this_batch
        samples = self.count_samples(batch)
        tokens = self.count_tokens(batch, samples)
        self._samples = (
            None if samples is None or self._samples is None else self._samples + samples
        )
        self._tokens = None if tokens is None or self._tokens is None else self._tokens + tokens
        step = trainer.global_step
        if step == self._last_step:  # gradients accumulate: no optimizer step yet
            return
        world, steps = self._world, step - self._last_step
        flops = self.flops_per_step
        job.step(
            step,
            samples=None if self._samples is None else self._samples * world,
            tokens=None if self._tokens is None else self._tokens * world,
            flops=None if flops is None else flops * steps * world,
        )
        self._last_step, self._samples, self._tokens = step, 0, 0
        on_cadence = self._log_every > 0 and step % self._log_every == 0
        if on_cadence:
            self._point(step)
        if world == 1 or on_cadence:
            self._check_budget(trainer, together=world > 1)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._stage == "fit" and self._job is not None:
            self._point(trainer.global_step)
            self._check_budget(trainer, together=self._world > 1)

    def _point(self, step: int) -> None:
        if self._job is not None and step != self._last_point:
            self._last_point = step
            self._job.log_point()

    def _check_budget(self, trainer: pl.Trainer, *, together: bool) -> None:
        """Stop training when greenml asks; ``together``: every rank calls this at the
        same step and they agree (only measuring ranks know of a crossing)."""
        reason = self._job.stop_requested if self._job is not None else None
        stop = bool(reason)
        if together:
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop and not self._stopping:
            self._stopping = True
            trainer.should_stop = True
            logger.info("greenml: budget reached (%s); stopping training", reason)

    # -- phases -------------------------------------------------------------------------

    @override
    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._enter(trainer, "validate", "eval")

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._leave("validate", "eval")

    @override
    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._enter(trainer, "test", "test")

    @override
    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._leave("test", "test")

    @override
    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._enter(trainer, "predict", "predict")

    @override
    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._leave("predict", "predict")

    def _enter(self, trainer: pl.Trainer, stage: str, phase: str) -> None:
        if self._stage is None:  # called on its own, not inside a fit
            self._begin(trainer, stage)
        if self._job is not None and self._stage is not None and self._phase is None:
            self._job.begin_phase(phase)
            self._phase = phase

    def _leave(self, stage: str, phase: str) -> None:
        if self._job is not None and self._phase == phase:
            self._job.end_phase(phase)
            self._phase = None
        if self._stage == stage:
            self._end("FINISHED")

    # -- checkpoints --------------------------------------------------------------------

    @override
    def state_dict(self) -> dict[str, Any]:
        """The latest fit's cumulative figures (JSON-able), kept in the checkpoint."""
        if self._fit_job is not None:
            return self._fit_job.state_dict()
        return dict(self._pending_state or {})

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue from a checkpoint's figures: before the fit starts (the usual order),
        or during it (strategies that restore after ``on_fit_start``)."""
        if not state_dict:
            return
        if self._stage == "fit" and self._job is not None:
            self._job.load_state_dict(dict(state_dict))
        else:
            self._pending_state = dict(state_dict)

    def __getstate__(self) -> dict[str, Any]:
        # Lightning pickles callbacks (ddp_spawn); a JobRun holds locks and threads, and
        # a copy measures afresh, with a JobRun of its own built from the same settings
        state = self.__dict__.copy()
        state["_job"] = state["_fit_job"] = None
        state["_stage"] = state["_phase"] = None
        return state


def _mlflow_run_active() -> bool:
    """Whether the caller opened an MLflow run (``mlflow.start_run()``) that greenml then
    attaches to; mlflow is not imported for this."""
    mlflow = sys.modules.get("mlflow")
    return mlflow is not None and mlflow.active_run() is not None


def _total_steps(trainer: pl.Trainer) -> int | None:
    """The fit's optimizer steps in all, for the forecast; ``None`` when unknown."""
    try:
        total = trainer.estimated_stepping_batches
    except Exception:  # a dataloader without a length, an unusual strategy
        logger.debug("greenml: no estimated_stepping_batches", exc_info=True)
        return None
    return int(total) if math.isfinite(total) else None
