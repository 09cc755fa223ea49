"""Tracker: the lifecycle of one measured run.

``greenml.track(...)`` returns a :class:`Tracker`, usable three ways::

    with greenml.track(pue=1.2) as run:      # context manager
        train()
        with run.phase("eval"):
            evaluate()
    run.footprint

    @greenml.track(pue=1.2)                  # decorator: a fresh Tracker per call,
    def main(): ...                          # the latest one at main.last_run

    run = greenml.Tracker(pue=1.2).start()   # explicit; stop() is safe to call twice
    ...
    run.stop()

Arguments are validated when the Tracker is built and the GPUs when it starts, both
before any thread runs. After that, measurement trouble is logged, recorded in the
footprint's ``flags`` and never raised into the training code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import logging
import os
import threading
import time
import typing
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from greenml import config
from greenml.assemble import (
    Allocation,
    Usage,
    allocation_for,
    assemble,
    combined,
    hourly_grid,
    peak_flops_for,
    usage_from_ledger,
    usage_of,
    with_durations,
    with_work,
)
from greenml.errors import ConfigError, GreenMLError, note_run_site, warn
from greenml.factors.resolve import resolve_run_factors
from greenml.footprint import J_PER_KWH, Footprint
from greenml.ledger import Ledger
from greenml.meters.base import Clock, Meter
from greenml.meters.registry import default_meters
from greenml.progress import Crossing, Progress, Watcher
from greenml.sampler import Sampler
from greenml.schema import FORECAST_METRICS, TAG_BUDGET_STOP
from greenml.signals import SigtermGuard, unwatch_forks, watch_forks
from greenml.sinks import setup as sink_setup
from greenml.sinks.base import Target
from greenml.sinks.recorder import Delivery, Recorder

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


class Tracker:
    """Measures one run. See the module docstring for the three ways to use it.

    ``meters``, ``clock`` and ``environ`` let tests (and unusual hosts) pass the world in;
    by default the real hardware, ``time.monotonic`` and ``os.environ`` are used.
    ``meters`` is a list of meters for one run, or a callable returning fresh ones (which
    the decorator needs: each call is a new run, and a run closes its meters).
    """

    def __init__(
        self,
        *,
        meters: Sequence[Meter] | Callable[[], Sequence[Meter]] | None = None,
        sinks: Sequence[Target] = (),
        clock: Clock = time.monotonic,
        environ: Mapping[str, str] | None = None,
        config_dir: str | None = None,
        voice: config.Voice | None = None,
        **settings: Any,
    ) -> None:
        # The settings (location=, pue=, ...) are declared once, in config.Settings; an
        # unknown one is a ConfigError listing the valid names.
        self._arguments = {k: v for k, v in settings.items() if v is not None}
        self._environ = environ
        self._sinks = list(sinks)  # targets of the caller's own, beside the configured ones
        self._config_dir = config_dir
        self.settings = config.resolve(
            self._arguments, environ=environ, config_dir=config_dir, voice=voice
        )
        self._voice = voice  # handed on to the decorator's fresh Trackers
        # how messages name the settings: keywords and their origins, or the CLI's flags
        self._speech = self.settings.voice(voice.flags if voice is not None else None)
        self.run_factors = resolve_run_factors(
            self.settings, environ=environ, voice=self._speech, missing_price="warn"
        )
        hourly = self.run_factors.hourly
        if hourly is not None:
            try:  # a file that does not cover the start cannot weigh the run: say so now
                hourly.at(time.time())
            except ConfigError as e:
                what = self._speech.given(
                    "hourly_intensity_csv", self.settings.hourly_intensity_csv
                )
                raise ConfigError(f"{what}: {e}; give a file that covers the run") from None
        self._wall_start_s: float | None = None
        self._given_meters = meters
        self._clock = clock
        self._lock = threading.Lock()
        self._phase_stack: list[str] = []
        self._meters: list[Meter] = []
        self._flags: list[str] = []
        self._ledger: Ledger | None = None
        self._sampler: Sampler | None = None
        # What the footprint's assembly keeps for the run (allocation, factors, embodied
        # per hour): the GPUs measured and the factors do not change once started.
        self._allocation: Allocation | None = None
        self._assembly_memo: dict[str, Any] = {}
        self._usage_memo: tuple[tuple[int, int], Usage, dict[str, Any]] | None = None
        self._start_s: float | None = None
        self._stop_s: float | None = None
        self._footprint: Footprint | None = None
        self._recorder: Recorder | None = None
        self._guard = SigtermGuard(lambda: self.stop("KILLED"))
        self._stopping = False
        self._pid: int | None = None  # the process that started the run (and measures it)
        self._carried: Usage | None = None  # what an earlier part of the job used (resume)
        self._step_provider: Callable[[], int | None] | None = None
        self._progress = Progress(self.settings, self._speech)  # steps, budgets, forecast
        self._watcher: Watcher | None = None
        self._tags: dict[str, str] = {}  # more tags for the run's summary (add_tags)
        self.greenml_run_id: str | None = None
        self.last_run: Tracker | None = None  # set on the decorator's Tracker

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> Tracker:
        """Open the meters and start sampling. Raises only for bad settings."""
        note_run_site()
        with self._lock:
            if self._start_s is not None:
                raise GreenMLError(
                    "this Tracker was already started; a Tracker measures one run "
                    "(use greenml.track(...) again, or the decorator, for another)"
                )
            # where the records go; a bad run_id fails here, before any meter
            targets = [*sink_setup.open_targets(self.settings, self._environ), *self._sinks]
            if callable(self._given_meters):
                self._meters, self._flags = list(self._given_meters()), []
            elif self._given_meters is not None:
                self._meters, self._flags = list(self._given_meters), []
            else:
                self._meters, self._flags = default_meters(
                    self.settings, clock=self._clock, environ=self._environ
                )
            channels = [c for m in self._meters for c in m.channels()]
            rf = self.run_factors
            if (
                rf.gpu_count_on_instance is not None
                and rf.share_override is None
                and not any(c.kind == "gpu" for c in channels)
            ):
                self._flags.append("whole_instance")
                voice = self._speech
                warn(
                    f"{voice.given('instance_type', self.settings.instance_type)} has "
                    f"{rf.gpu_count_on_instance} GPUs but this run measures none, so the "
                    "whole instance is charged (its cost and embodied carbon; flagged "
                    "whole_instance). If the job used part of the machine, give "
                    f"{voice.set('instance_share', '<fraction>')}"
                )
            self._pid = os.getpid()
            self._start_s = self._clock()
            self._wall_start_s = time.time()
            self._ledger = Ledger(
                channels, self._start_s, default_phase=self.settings.default_phase
            )
            self._sampler = Sampler(
                self._meters, self._ledger, clock=self._clock, interval_s=self.settings.interval_s
            )
            self._sampler.start()
            self._recorder = sink_setup.open_recording(
                self.settings,
                targets,
                clock=self._clock,
                start_s=self._start_s,
                wall_start_s=self._wall_start_s,
                snapshot=self._live_snapshot,
                gpu_joules=self._gpu_joules_now,
                step=self._current_step,
                intensity_is_final=self.run_factors.hourly is None,
                extras=self._point_extras,
                fresh=self._sampler.poke,
                resumed=self._carried is not None,
            )
            if self._recorder is not None:
                self.greenml_run_id = self._recorder.greenml_run_id
                self._recorder.start()
            if self._progress.budgets:
                self._watcher = Watcher(self._progress, self._figures_now, self._sampler.poke)
                self._watcher.start()
            watch_forks(self)
            _running_at_exit(self)
        self._guard.install()
        return self

    def _forked_child(self) -> bool:
        """True in a process forked from the one that started the run (a data-loader
        worker, a pool process): there greenml stands aside, and only the parent measures."""
        return self._pid is not None and self._pid != os.getpid()

    def _leave_forked_child(self) -> None:
        """Called in a freshly forked child, after :mod:`greenml.signals` has put SIGTERM's
        previous handling back: the inherited journal file is pointed at /dev/null so that
        the child's exit cannot write the parent's unflushed bytes a second time. The
        threads, and any lock they held, did not come along; nothing here takes a lock."""
        if self._recorder is not None:
            self._recorder.journal.disown()

    def stop(self, status: str = "FINISHED") -> Footprint:
        """Stop sampling, compute the footprint and record it (journal, then MLflow).
        Safe to call twice; never raises because of measurement or MLflow trouble.

        ``status`` is the run's end state for MLflow: ``FINISHED``, ``FAILED`` (the
        with-block raised) or ``KILLED`` (KeyboardInterrupt, SIGTERM)."""
        if status not in ("FINISHED", "FAILED", "KILLED"):
            raise ValueError(f"status={status!r}: use FINISHED, FAILED or KILLED")
        if self._forked_child():
            raise GreenMLError(
                f"this run is measured by process {self._pid}, which started it; a forked "
                "child (a data-loader or pool worker) does not measure and cannot stop it"
            )
        self._stopping = True
        self._guard.hold()  # a SIGTERM from here on waits for this stop to finish
        try:
            return self._stop(status)
        finally:
            # whatever failed above, a SIGTERM held meanwhile is delivered and the user's
            # handler is back: greenml never swallows a signal
            self._guard.restore()

    def _stop(self, status: str) -> Footprint:
        with self._lock:
            if self._footprint is not None:
                return self._footprint
            if self._sampler is None or self._ledger is None or self._start_s is None:
                raise GreenMLError("stop() called on a Tracker that was never started")
            self._stop_s = self._clock()
            try:
                if self._watcher is not None:
                    self._watcher.stop()
                try:
                    self._sampler.stop(self._stop_s)
                except Exception:  # pragma: no cover - defensive: keep what was measured
                    logger.warning("greenml: stopping the sampler failed", exc_info=True)
                    self._ledger.close(self._stop_s)
                try:
                    self._footprint = self._build(self._stop_s, final=True)
                except Exception as e:
                    # A factor that fails only at the end (an hourly file that stops
                    # before the run did): keep the measurement, leave out what needs it.
                    logger.warning("greenml: the run's factors failed at the end", exc_info=True)
                    warn(
                        f"the run's CO2e could not be computed at the end ({e}); its energy is "
                        "kept and its CO2e left out (flagged factors_failed)"
                    )
                    self._footprint = self._build(self._stop_s, final=True, plain=True)
                if self._recorder is not None:
                    try:
                        stop = self._progress.stop
                        more = dict(self._tags)
                        if stop is not None:
                            more[TAG_BUDGET_STOP] = stop.text()
                        self._recorder.finish(self._footprint, status, more_tags=more)
                    except Exception:  # the footprint is computed; recording trouble is logged
                        logger.warning("greenml: recording the run's summary failed", exc_info=True)
                        warn(
                            "recording the run's summary failed; the footprint is computed "
                            "(run.footprint) but may be missing from the journal and MLflow"
                        )
            finally:
                unwatch_forks(self)
                _RUNNING.discard(self)
        return self._footprint

    def __repr__(self) -> str:
        if self._start_s is None:
            state = "not started"
        elif self._footprint is None:
            state = f"running for {self._clock() - self._start_s:.1f} s"
        else:
            state = f"stopped after {self._footprint.duration_s:.1f} s"
        loc = self.run_factors.location
        parts = [state, f"location={(loc.text or loc.zone) if loc else None!r}"]
        if self.settings.instance_type is not None:
            parts.append(f"instance_type={self.settings.instance_type!r}")
        if self._meters:
            keys = [c.key for m in self._meters for c in m.channels()]
            parts.append(f"devices={keys!r}")
        if self._recorder is not None:
            d = self._recorder.delivery()
            if d.run_id is not None:
                parts.append(f"mlflow_run_id={d.run_id!r}")
            parts.append(f"journal={d.journal!r}")
        if self._footprint is not None:
            fp = self._footprint
            parts.append(f"energy_kwh={fp.energy_kwh:.6g}")
            if fp.co2e_kg is not None:
                parts.append(f"co2e_kg={fp.co2e_kg:.6g}")
        return f"<greenml.Tracker {', '.join(parts)}>"

    def __enter__(self) -> Tracker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if self._forked_child():
            return  # a forked child leaving the block: the parent's run is not its own
        status = "FINISHED"  # also for sys.exit(0) inside the block
        if isinstance(exc, KeyboardInterrupt):
            status = "KILLED"
        elif exc is not None and not (isinstance(exc, SystemExit) and exc.code in (0, None)):
            status = "FAILED"
        try:
            self.stop(status)
        except Exception as e:  # never replace the user's exception, never fail their run
            logger.warning("greenml: stopping the tracker failed", exc_info=True)
            warn(f"stopping the tracker failed ({e!r}); what was measured may be incomplete")

    def __call__(self, func: F) -> F:
        """Use as a decorator: each call is measured by a fresh Tracker with the same
        settings; the latest is available as ``func.last_run``."""

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            run = self._fresh()
            wrapper.last_run = run  # type: ignore[attr-defined]
            with run:
                return func(*args, **kwargs)

        wrapper.last_run = None  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    def _fresh(self) -> Tracker:
        return Tracker(
            **self._arguments,
            meters=self._given_meters,
            sinks=self._sinks,
            clock=self._clock,
            environ=self._environ,
            config_dir=self._config_dir,
            voice=self._voice,
        )

    # -- phases -----------------------------------------------------------------------

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Attribute the energy used inside the block to phase ``name``.

        Phases nest: energy goes to the innermost open phase. Time outside every phase
        goes to ``default_phase`` ("train" unless configured). For framework hooks that
        have no block (``on_validation_start`` / ``_end``), use :meth:`begin_phase` and
        :meth:`end_phase`.
        """
        self.begin_phase(name)
        try:
            yield
        finally:
            self.end_phase(name)

    def begin_phase(self, name: str) -> None:
        """Open phase ``name`` inside the current one; close it with :meth:`end_phase`."""
        config.validate_phase_name(name)
        if self._ledger is None:
            raise GreenMLError(f"phase {name!r} begun before the Tracker was started")
        if self._forked_child():  # the parent measures; its ledger is not this process's
            return
        self._phase_stack.append(name)
        self._ledger.set_phase(self._clock(), name)
        if self._sampler is not None:
            self._sampler.poke()

    def end_phase(self, name: str | None = None) -> None:
        """Close the innermost open phase (``name``, if given, must be it): energy goes
        to the phase around it again, or to ``default_phase``."""
        if self._ledger is None or self._forked_child():
            return
        if not self._phase_stack:
            raise GreenMLError(f"end_phase({name!r}) with no phase open")
        if name is not None and self._phase_stack[-1] != name:
            raise GreenMLError(
                f"end_phase({name!r}), but the innermost open phase is "
                f"{self._phase_stack[-1]!r}; phases close innermost first"
            )
        self._phase_stack.pop()
        outer = self._phase_stack[-1] if self._phase_stack else self.settings.default_phase
        self._ledger.set_phase(self._clock(), outer)
        if self._sampler is not None:
            self._sampler.poke()

    def use_steps(self, provider: Callable[[], int | None] | None) -> None:
        """Give the time-series points the caller's step (a trainer's global step)
        instead of seconds since the start: ``provider()`` is asked at each point and at
        the end; ``None`` from it (or ``use_steps(None)``) means seconds again. Call it
        before or during the run (a callback does it when training begins)."""
        if provider is not None and not callable(provider):
            raise TypeError(f"use_steps() takes a callable returning the step, not {provider!r}")
        self._step_provider = provider

    def _current_step(self) -> int | None:
        """The step of a point now: the provider's (a trainer's global step), else the
        steps the loop counted (from a resumed part's on), else None: seconds."""
        provider = self._step_provider
        if provider is not None:
            return provider()
        p = self._progress
        return p.position if p.position is not None else (p.offset or None)

    # -- the training loop's steps ------------------------------------------------------

    def step(
        self,
        samples: float | None = None,
        tokens: float | None = None,
        flops: float | None = None,
        *,
        step: int | None = None,
        raise_on_budget: bool = True,
    ) -> None:
        """One optimizer step done, with the work it did where known (``samples``,
        ``tokens``, model ``flops``): they give the per-unit figures
        (``energy_wh_per_1k_samples``...), the MFU, and the steps of the time-series
        points. ``step`` is a trainer's global step (else the steps are counted here).

        O(1) in the training thread. With ``stop_on_budget=True``, the first call after a
        budget was crossed raises :class:`~greenml.errors.GreenMLBudgetExceeded`
        (``raise_on_budget=False``: never; read :attr:`stop_requested` instead)."""
        if self._forked_child():
            return
        self._progress.count(step, samples, tokens, flops)
        if raise_on_budget and self._progress.stop is not None:
            self._progress.raise_if_stopped()

    def add_work(
        self, samples: float | None = None, tokens: float | None = None, flops: float | None = None
    ) -> None:
        """Work done that belongs to no single step (a trainer's FLOPs counted at its last
        log, after the last step): added to the run's, no step counted."""
        if not self._forked_child():
            self._progress.add(samples, tokens, flops)

    def set_total_steps(self, steps: int | None) -> None:
        """The steps the whole run will take (a trainer's max steps): with it, the
        forecast (``greenml/forecast/...``) projects the run's figures from the steps done."""
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int)):
            raise TypeError(f"set_total_steps() takes an int, not {steps!r}")
        self._progress.total_steps = steps if steps and steps > 0 else None

    @property
    def stop_requested(self) -> Crossing | None:
        """The budget crossing that asks training to stop (``stop_on_budget=True``), or
        None. Callbacks read it after each step; ``str()`` of its ``text()`` says which."""
        return self._progress.stop

    @property
    def forecast(self) -> dict[str, float]:
        """The projected figures of the whole run (``energy_kwh``, ``co2e_kg``,
        ``cost_usd``); empty until it can be made (see :mod:`greenml.progress`)."""
        return self._progress.forecast_now()

    def add_tags(self, tags: Mapping[str, str]) -> None:
        """Tags for the run, sent with its summary (an integration's: the job's SLURM id,
        its world size; names from :mod:`greenml.schema`)."""
        self._tags.update({str(k): str(v) for k, v in tags.items()})

    def log_point(self, step: int | None = None) -> None:
        """Record a time-series point now, at ``step`` (default: the current step), as a
        framework does on its logging steps. The recorder's thread takes it: no I/O here."""
        if self._recorder is None or self._forked_child():
            return
        self._recorder.request_point(step if step is not None else self._current_step())

    def _point_extras(self, fp: Footprint) -> dict[str, float]:
        """A time-series point's forecast metrics (updating the forecast and checking the
        budgets on the point's figures, brought up to now, first)."""
        self._progress.evaluate(self._brought_up(fp))
        forecast = self._progress.forecast_now()
        return {name: forecast[f] for f, name in FORECAST_METRICS.items() if f in forecast}

    def resume_from(self, previous: Footprint | Mapping[str, Any]) -> None:
        """Carry over what an earlier, interrupted part of this job used (a footprint,
        or the dict of ``Footprint.to_dict()`` / a ``greenml/footprint.json``, as saved
        with a checkpoint): its IT energy, per phase too, and its duration are added to
        this run's, before the factors apply. The footprint is flagged ``resumed``. Call
        it once, best before :meth:`start` (callbacks do it in ``load_state_dict``): a
        resumed run that logs into the MLflow run of its earlier part then continues that
        run's totals instead of adding the earlier part twice."""
        if self._footprint is not None:
            raise GreenMLError("resume_from() after the run stopped: call it before stop()")
        if self._carried is not None:
            raise GreenMLError("resume_from() was already called for this run")
        fp = previous if isinstance(previous, Footprint) else Footprint.from_dict(previous)
        self._carried = usage_of(fp)
        self._progress.offset = fp.steps or 0  # counted steps continue the earlier part's
        if self._recorder is not None and not self._recorder.mark_resumed():
            warn(
                "resume_from() came after the run reached MLflow: if that run already holds "
                "the earlier part's figures, they are counted twice there (the footprint is "
                "right); call resume_from() before start()"
            )

    # -- results ----------------------------------------------------------------------

    @property
    def footprint(self) -> Footprint:
        """The final footprint; available once the run has stopped."""
        if self._footprint is None:
            raise GreenMLError(
                "the run is still going: footprint is final only after stop() or the end "
                "of the with-block; use snapshot() for the figures so far"
            )
        return self._footprint

    def snapshot(self) -> Footprint:
        """The figures so far (``final=False``), without stopping."""
        if self._footprint is not None:
            return self._footprint
        if self._ledger is None:
            raise GreenMLError("snapshot() called before the Tracker was started")
        if self._forked_child():
            raise GreenMLError(
                f"snapshot() in a forked child: the run is measured by process {self._pid}"
            )
        return self._build(self._clock(), final=False)

    @property
    def mlflow(self) -> Delivery | None:
        """Where this run was recorded: its MLflow run id, experiment and store, whether
        MLflow has every record, and the journal file. ``None`` when nothing is recorded
        (``log_to_mlflow=False`` and ``journal=False``) or before the start."""
        return self._recorder.delivery() if self._recorder is not None else None

    def _live_snapshot(self) -> Footprint | None:
        """The recorder's view: figures so far, or ``None`` once the run is stopping."""
        if self._stopping:
            return None
        return self.snapshot()

    def _figures_now(self) -> Footprint | None:
        """The figures so far, brought up to now (see :meth:`_brought_up`); None once the
        run is stopping."""
        fp = self._live_snapshot()
        return self._brought_up(fp) if fp is not None else None

    def _brought_up(self, fp: Footprint) -> Footprint:
        """``fp`` with its energy (and CO2e, and a per-kWh cost) brought from each device's
        last reading up to the snapshot's time at the device's last power. Figures taken
        at different moments then compare at equal footing: the forecast's rate and the
        budgets do not see a counter's refresh steps. An hourly price already runs to now."""
        if self._ledger is None or self._start_s is None or fp.final:
            return fp
        it_j = fp.it_energy_kwh * J_PER_KWH
        ahead = self._ledger.joules_ahead(self._start_s + fp.duration_s)
        if it_j <= 0 or ahead <= 0:
            return fp
        k = (it_j + ahead) / it_j
        hourly = any(f.name == "price" for f in fp.factors)

        def scaled(x: float | None) -> float | None:
            return None if x is None else x * k

        return dataclasses.replace(
            fp,
            energy_kwh=fp.energy_kwh * k,
            co2e_kg=scaled(fp.co2e_kg),
            co2e_market_kg=scaled(fp.co2e_market_kg),
            cost_usd=fp.cost_usd if hourly else scaled(fp.cost_usd),
        )

    def _gpu_joules_now(self) -> tuple[float, dict[int, float]]:
        """(seconds since the start, joules per GPU up to now), for the recorder."""
        assert self._ledger is not None and self._start_s is not None
        now = self._clock()
        return now - self._start_s, self._ledger.gpu_joules_now(now)

    def sample_now(self) -> None:
        """Take one reading of every meter now, in the caller's thread."""
        if self._sampler is None or self._footprint is not None or self._forked_child():
            raise GreenMLError(
                "sample_now() needs a running Tracker in the process that started it"
            )
        self._sampler.sample()

    def _build(self, now_s: float, *, final: bool, plain: bool = False) -> Footprint:
        """The footprint so far (``final=False``) or at the end: the ledger's usage (plus a
        resumed job's earlier part) through :func:`greenml.assemble.assemble`. ``plain``
        drops the factors that can fail only at the end (the hourly file, the market
        inputs): the energy without the CO2e they would give, flagged ``factors_failed``."""
        assert self._ledger is not None and self._start_s is not None
        assert self._wall_start_s is not None
        end = now_s if self._stop_s is None else self._stop_s
        rf = self.run_factors
        if plain:
            rf = dataclasses.replace(
                rf, hourly=None, market={}, flags=(*rf.flags, "factors_failed")
            )
        # Between two readings only the durations move: the energies are the ledger's
        # last ones, so a snapshot taken at every training step reuses them.
        version = self._ledger.version()
        if final or self._usage_memo is None or self._usage_memo[0] != version:
            states = self._ledger.totals()
            usage = usage_from_ledger(
                states,
                duration_s=0.0,
                phase_durations={},
                phase_names=self._ledger.phase_names(),
                flags=[*self._flags, *rf.flags],
            )
            usage = dataclasses.replace(usage, flags=usage.flags + tuple(self._ledger.warnings))
            self._usage_memo = (version, usage, states)
        _, usage, states = self._usage_memo
        usage = with_durations(usage, end - self._start_s, self._ledger.phase_durations(now_s))
        usage = with_work(usage, self._progress.work())
        crossed = self._progress.crossed
        if crossed:
            flags = tuple(f"budget:{key}" for key in crossed)
            usage = dataclasses.replace(usage, flags=usage.flags + flags)
        if self._carried is not None:
            usage = combined(usage, self._carried)
        grid = rf.grid
        if grid is None and rf.hourly is not None:
            grid = hourly_grid(
                rf.hourly,
                states,
                epoch_offset_s=self._wall_start_s - self._start_s,
                start_s=self._start_s,
                end_s=end,
            )
        if self._allocation is None:
            gpus = sum(1 for st in states.values() if st.channel.kind == "gpu")
            self._allocation = allocation_for(rf, gpus)
        if "peak_flops" not in self._assembly_memo:
            self._assembly_memo["peak_flops"] = peak_flops_for(
                usage.devices, rf, self.settings.mfu_precision
            )
        loc = rf.location
        return assemble(
            usage,
            rf,
            self._allocation,
            memo=self._assembly_memo,
            grid=grid,
            location=(loc.text or loc.zone) if loc is not None else self.settings.location,
            instance_type=self.settings.instance_type,
            final=final,
            peak_flops=self._assembly_memo["peak_flops"],
            work_phase=self.settings.default_phase,
        )


def _signature() -> inspect.Signature:
    """``Tracker``'s keywords as help() and introspecting tools should show them: the
    world (meters, clock...) and every setting of :class:`config.Settings`."""
    world = list(inspect.signature(Tracker.__init__).parameters.values())[:-1]
    settings = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None)
        for name in config.NAMES
    ]
    return inspect.Signature(world + settings)


Tracker.__init__.__signature__ = _signature()  # type: ignore[attr-defined]


@typing.overload
def track(func: F, /) -> F: ...
@typing.overload
def track(func: None = None, /, **kwargs: Any) -> Tracker: ...
def track(func: F | None = None, /, **kwargs: Any) -> Tracker | F:
    """Measure a run: ``with greenml.track(...) as run:``, ``@greenml.track(...)`` or
    ``@greenml.track`` (no parentheses: the default settings).

    Keywords are those of :class:`Tracker`; each can also come from a ``GREENML_<NAME>``
    environment variable or ``[tool.greenml]`` in ``pyproject.toml``.
    """
    if func is None:
        return Tracker(**kwargs)
    if not callable(func):
        raise TypeError(
            f"track() takes keyword arguments only (track(location='FR', ...)); got the "
            f"positional argument {func!r}"
        )
    return Tracker(**kwargs)(func)


#: Runs started and not yet stopped in this process: stopped at interpreter exit.
_RUNNING: weakref.WeakSet[Tracker] = weakref.WeakSet()
_EXIT_HOOK: list[bool] = []


def _running_at_exit(run: Tracker) -> None:
    _RUNNING.add(run)
    if not _EXIT_HOOK:
        import atexit

        atexit.register(_stop_at_exit)
        _EXIT_HOOK.append(True)


def _stop_at_exit() -> None:
    """At interpreter exit, stop the runs the script never stopped (``Tracker().start()``
    without ``stop()``, a ``track()`` entered by hand), so each is recorded with its
    summary: FINISHED after a normal exit, FAILED (KILLED for Ctrl-C) after an uncaught
    exception."""
    import sys

    last = getattr(sys, "last_value", None)  # the uncaught exception that ended the script
    if isinstance(last, KeyboardInterrupt):
        status = "KILLED"
    elif last is not None and not (isinstance(last, SystemExit) and last.code in (0, None)):
        status = "FAILED"
    else:
        status = "FINISHED"
    for run in list(_RUNNING):
        if run._pid != os.getpid():
            continue  # a forked child's copy: the parent's run
        try:
            warn(
                "a greenml run was still measuring when the script ended: stopped at exit "
                f"and recorded as {status} (stop it yourself, or use `with greenml.track()`)"
            )
            run.stop(status)
        except Exception:  # the process is ending: never turn that into a failure
            logger.warning("greenml: stopping a run at exit failed", exc_info=True)
