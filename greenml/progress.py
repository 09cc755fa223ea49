"""A run's progress: the work its training loop counts, its budgets, and its forecast.

The training thread only counts (:meth:`Progress.count`: a few attribute updates, no lock,
no clock); everything that needs the figures runs in greenml's own threads, on a
footprint snapshot: :meth:`Progress.evaluate` projects the whole run from the steps done
and checks the budgets. It runs at each time-series point, and, when a budget is set, every
``CHECK_S`` in the :class:`Watcher` thread, which first asks the sampler for fresh readings
(:meth:`greenml.sampler.Sampler.poke`) so that the figures it compares are at most a
fraction of a second old.

**Forecast.** After ``forecast_after_steps`` steps of this run, with the trainer's total
steps ``S`` known: ``F(S) = F + (F - F0) / (p - p0) * (S - p)`` for each figure ``F``
(energy, CO2e, cost), at the current step ``p``, from the first evaluation after training
began (``p0``, ``F0``). The marginal rate leaves out what came before the first step
(loading, compiling); evaluation phases interleaved with training are in the rate, as they
will be in the rest of the run.

**Budgets.** ``max_energy_kwh``, ``max_co2e_kg``, ``max_cost_usd`` are compared with the
run's figures so far (``budget_on="actual"``) or with the forecast as well
(``budget_on="forecast"``). A crossing warns once per budget and is flagged
``budget:<setting>`` in the footprint; with ``stop_on_budget=True`` it asks the training
loop to stop (:attr:`Progress.stop`): callbacks through the framework, a plain loop by
:class:`~greenml.errors.GreenMLBudgetExceeded` from its next ``run.step()``. Detection lags
the crossing by at most ``CHECK_S`` plus the time a fresh reading takes (docs/integrations.md).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from greenml.errors import GreenMLBudgetExceeded, warn
from greenml.footprint import Work

if TYPE_CHECKING:
    from greenml.config import Settings, Voice
    from greenml.footprint import Footprint

logger = logging.getLogger(__name__)

CHECK_S = 0.5  # the budget watcher's period
FRESH_S = 0.15  # after asking the sampler for readings, how long the watcher waits
THREAD_NAME = "greenml-budget"

#: Each budget setting, the Footprint figure it limits, and its unit.
BUDGETS: tuple[tuple[str, str, str], ...] = (
    ("max_energy_kwh", "energy_kwh", "kWh"),
    ("max_co2e_kg", "co2e_kg", "kg CO2e"),
    ("max_cost_usd", "cost_usd", "USD"),
)
FORECAST_FIGURES = ("energy_kwh", "co2e_kg", "cost_usd")


@dataclass(frozen=True)
class Crossing:
    """A budget crossed: the setting, its limit, the figure that crossed it (in the
    setting's unit), on which basis (``actual`` or ``forecast``), and at which step."""

    budget: str
    limit: float
    value: float
    basis: str
    step: int | None
    unit: str

    def text(self) -> str:
        """``max_energy_kwh=0.5 (0.503 kWh at step 120)``: the run's tag and messages."""
        what = "so far" if self.basis == "actual" else "forecast for the whole run"
        at = f" at step {self.step}" if self.step is not None else ""
        return f"{self.budget}={self.limit:g} ({self.value:.4g} {self.unit} {what}{at})"


class Progress:
    """The work counted, the forecast and the budgets of one run."""

    def __init__(self, settings: Settings, voice: Voice) -> None:
        self.budgets = [
            (key, figure, unit, getattr(settings, key))
            for key, figure, unit in BUDGETS
            if getattr(settings, key) is not None
        ]
        self.stop_on_budget = settings.stop_on_budget
        self.on_forecast = settings.budget_on == "forecast"
        self.forecast_after = settings.forecast_after_steps
        self._voice = voice
        # counted in the training thread (plain attribute updates under the GIL)
        self.steps = 0
        self.samples: float | None = None
        self.tokens: float | None = None
        self.flops: float | None = None
        self.position: int | None = None  # the trainer's global step, else steps counted
        self.offset = 0  # steps of an earlier part of the job (a resumed run counts on)
        self.total_steps: int | None = None
        # set by evaluate(), in greenml's threads
        self.stop: Crossing | None = None  # the crossing that asks training to stop
        self.crossed: dict[str, Crossing] = {}
        self.forecast: dict[str, float] = {}
        self._raised = False
        self._base: tuple[int, dict[str, float]] | None = None
        self._lock = threading.Lock()

    @property
    def counting(self) -> bool:
        """Whether the training loop has counted anything (its steps stamp the points)."""
        return self.position is not None

    def count(
        self,
        step: int | None = None,
        samples: float | None = None,
        tokens: float | None = None,
        flops: float | None = None,
    ) -> None:
        """One optimizer step done (training thread; O(1)): ``step`` is the trainer's
        global step now (else the steps counted), the others this step's work."""
        self.steps += 1
        self.position = self.offset + self.steps if step is None else step
        self.add(samples, tokens, flops)

    def add(
        self, samples: float | None = None, tokens: float | None = None, flops: float | None = None
    ) -> None:
        """Work done without a step of its own (a trainer that counts its FLOPs only when
        it logs, after the last step)."""
        if samples is not None:
            self.samples = (self.samples or 0.0) + samples
        if tokens is not None:
            self.tokens = (self.tokens or 0.0) + tokens
        if flops is not None:
            self.flops = (self.flops or 0.0) + flops

    def work(self) -> Work | None:
        """The work counted so far, or None if the loop counted nothing."""
        if self.position is None:
            return None
        return Work(self.steps, self.samples, self.tokens, self.flops)

    def raise_if_stopped(self) -> None:
        """In a plain loop's ``run.step()``: raise GreenMLBudgetExceeded once, after a
        crossing with ``stop_on_budget``."""
        stop = self.stop
        if stop is None or self._raised:
            return
        self._raised = True
        raise GreenMLBudgetExceeded(
            f"budget crossed: {stop.text()}; training stopped (stop_on_budget=True). The run's "
            "figures so far are recorded when it stops (leave the with-block or call stop())",
            budget=stop.budget,
            limit=stop.limit,
            value=stop.value,
            basis=stop.basis,
        )

    # -- in greenml's threads ------------------------------------------------------------

    def evaluate(self, fp: Footprint) -> None:
        """Update the forecast and check the budgets against the figures ``fp``."""
        with self._lock:
            position = self.position
            if position is not None:
                self._project(fp, position)
            for key, figure, unit, limit in self.budgets:
                if key in self.crossed:
                    continue
                value = getattr(fp, figure)
                basis = "actual"
                if (value is None or value < limit) and self.on_forecast:
                    value, basis = self.forecast.get(figure), "forecast"
                if value is None or value < limit:
                    continue
                self._cross(Crossing(key, limit, value, basis, position, unit))

    def _project(self, fp: Footprint, position: int) -> None:
        figures = {f: getattr(fp, f) for f in FORECAST_FIGURES if getattr(fp, f) is not None}
        if self._base is None:
            self._base = (position, figures)
            return
        p0, f0 = self._base
        total = self.total_steps
        if total is None or self.steps < self.forecast_after or position <= p0:
            return
        ahead = max(total - position, 0)
        self.forecast = {
            f: v + (v - f0[f]) / (position - p0) * ahead for f, v in figures.items() if f in f0
        }

    def _cross(self, crossing: Crossing) -> None:
        self.crossed[crossing.budget] = crossing
        if self.stop_on_budget and self.stop is None:
            self.stop = crossing
        announce(crossing.text(), stopping=self.stop_on_budget, voice=self._voice)

    def forecast_now(self) -> dict[str, float]:
        return dict(self.forecast)


def announce(what: str, *, stopping: bool, voice: Voice) -> None:
    """Warn once that a budget was crossed (``what``: :meth:`Crossing.text`, or a job's
    figure), and whether training is being stopped or how to have it stopped."""
    if stopping:
        action = "training is being stopped (stop_on_budget)"
    else:
        action = f"training goes on; {voice.switch('stop_on_budget')} stops it at a budget"
    warn(f"budget crossed: {what}; {action}")


class Watcher:
    """The budget watcher: every ``period_s``, fresh readings (``poke``), then the
    figures (``snapshot``) through :meth:`Progress.evaluate`. A named daemon thread;
    ``stop()`` is immediate and safe to call twice."""

    def __init__(
        self,
        progress: Progress,
        snapshot: Callable[[], Footprint | None],
        poke: Callable[[], None],
        period_s: float = CHECK_S,
    ) -> None:
        self._progress = progress
        self._snapshot = snapshot
        self._poke = poke
        self._period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=THREAD_NAME, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        while not self._stop.wait(self._period_s - FRESH_S):
            self._poke()
            if self._stop.wait(FRESH_S):
                return
            try:
                fp = self._snapshot()
                if fp is not None:
                    self._progress.evaluate(fp)
            except Exception:  # never let a check end the watching
                logger.warning("greenml: checking the budgets failed", exc_info=True)
