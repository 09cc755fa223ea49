"""The scenarios every sampler benchmark shares: the simulated GPUs, their power traces,
the measurement windows and how an error is computed and summarised.

greenml and its peers (CodeCarbon, MLflow's system metrics, Zeus) are measured on the
same simulated driver (:class:`greenml.testing.SimulatedNVML`), so every figure in the
side-by-side table of docs/performance.md comes from one definition of the truth: the
exact integral of the trace the driver draws, never a sum of samples.

Traces (driver time τ = ``clock() - sim.epoch_s``):

- ``BURSTY``: a training-like square wave, 0.23 s at 650 W then 0.31 s at 150 W
  (compute bursts and input-pipeline dips, period 0.54 s, not a multiple of any refresh or
  sampling period, so windows land at every phase of it);
- ``SPIKY``: 120 W with a 20 ms spike to 700 W every 250 ms (short kernels between
  waits): the trace that part-time instantaneous readings (A100-like, 25 ms seen in every
  100 ms) miss.

Windows are drawn with a fixed seed inside a run, each starting at a random offset, so
that boundaries fall anywhere relative to the counter's refresh grid and the trace.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from greenml.testing import SimGPU, SimulatedNVML, traces

GPUS = 4
SEED = 20261201
BURSTY = traces.square(650.0, 150.0, 0.23, 0.31)
SPIKY = traces.spiky(base_w=120.0, spike_w=700.0, spike_s=0.02, period_s=0.25)


def counter_gpus(n: int = GPUS, trace: traces.Trace = BURSTY) -> list[SimGPU]:
    """H100-like GPUs with an energy counter (refreshing every 100 ms)."""
    return [SimGPU(trace=trace) for _ in range(n)]


def averaged_gpus(n: int = 1, trace: traces.Trace = BURSTY) -> list[SimGPU]:
    """GPUs without a counter whose power reading is a 1 s trailing average (Ampere
    non-GA100, e.g. an A10G under vGPU)."""
    return [
        SimGPU(
            name="NVIDIA A10G",
            architecture="ampere",
            has_counter=False,
            power_reading="average_1s",
            power_limit_w=300.0,
            trace=trace,
        )
        for _ in range(n)
    ]


def instantaneous_gpus(n: int = 1, trace: traces.Trace = SPIKY) -> list[SimGPU]:
    """GPUs without a counter whose power reading sees 25 ms of every 100 ms (A100-like
    part-time sampling)."""
    return [
        SimGPU(
            name="NVIDIA A100-SXM4-40GB",
            architecture="ampere",
            has_counter=False,
            power_reading="instantaneous",
            power_limit_w=400.0,
            trace=trace,
        )
        for _ in range(n)
    ]


@dataclass(frozen=True)
class Window:
    """``[start_s, start_s + length_s]`` relative to the run's (or the series') start."""

    start_s: float
    length_s: float

    @property
    def end_s(self) -> float:
        return self.start_s + self.length_s


def windows(
    length_s: float, n: int = 8, *, span_s: float = 10.0, gap_s: float = 0.2, seed: int = SEED
) -> list[Window]:
    """``n`` non-overlapping windows of ``length_s`` inside ``[0.5, 0.5 + span_s]`` at
    random offsets (fixed seed), at least ``gap_s`` apart, in time order. Used as
    phases inside one run, and as the relative start of separate runs."""
    rng = random.Random(f"{seed}-{length_s}-{n}")
    free = span_s - n * (length_s + gap_s)
    if free < 0:
        raise ValueError(f"{n} windows of {length_s} s do not fit in {span_s} s")
    cuts = sorted(rng.uniform(0.0, free) for _ in range(n))
    out, t = [], 0.5
    prev = 0.0
    for c in cuts:
        t += c - prev
        prev = c
        out.append(Window(round(t, 6), length_s))
        t += length_s + gap_s
    return out


def exact_j(sim: SimulatedNVML, trace: traces.Trace, a_s: float, b_s: float) -> float:
    """The energy the simulated GPU drew between monotonic instants ``a_s`` and ``b_s``."""
    return trace.energy_j(a_s - sim.epoch_s, b_s - sim.epoch_s)


def error_pct(measured_j: float, exact: float) -> float:
    return 100.0 * (measured_j - exact) / exact


@dataclass(frozen=True)
class Summary:
    """Mean |error| and the worst (signed) error of a set of windows, in percent."""

    mean_abs_pct: float
    worst_pct: float
    n: int

    def cell(self) -> str:
        return f"{self.mean_abs_pct:.2f} / {self.worst_pct:+.1f}"


def summarise(errors_pct: Sequence[float]) -> Summary:
    if not errors_pct:
        raise ValueError("no windows measured")
    worst = max(errors_pct, key=abs)
    return Summary(statistics.fmean(abs(e) for e in errors_pct), worst, len(errors_pct))
