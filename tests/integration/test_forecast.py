"""The forecast of a steady run, and a plain loop's budget, in real time with the
simulated GPU driver (in-process) and the in-memory sink."""

from __future__ import annotations

import time

import pytest

import greenml
from greenml import schema
from greenml.testing import SimGPU, SimulatedNVML, traces
from greenml.testing.sinks import MemorySink

pytestmark = pytest.mark.slow


def test_the_forecast_after_a_tenth_of_a_steady_run_is_within_5_percent():
    sink = MemorySink()
    steps, step_s = 100, 0.05
    with SimulatedNVML(
        [SimGPU(trace=traces.constant(400.0)), SimGPU(trace=traces.constant(250.0))]
    ), greenml.track(
        location="FR", price_usd_per_hour=32.0, cpu_tdp_w=10, log_to_mlflow=False,
        journal=False, sinks=[sink], forecast_after_steps=5, log_interval_s=3600,
    ) as run:  # fmt: skip
        run.set_total_steps(steps)
        time.sleep(0.5)  # loading the model: before the first step, not in the rate
        start = time.monotonic()
        for step in range(1, steps + 1):
            time.sleep(max(start + step * step_s - time.monotonic(), 0.0))
            run.step(samples=8)
            if step % 5 == 0:
                run.log_point()
    fp = run.footprint
    for figure, metric in schema.FORECAST_METRICS.items():
        points = dict(sink.history(metric))
        assert 10 in points, sorted(points)  # a forecast at 10 % of the run
        final = getattr(fp, figure)
        assert points[10] == pytest.approx(final, rel=0.05), (figure, points[10], final)
    # and it stays close as the run goes on
    late = dict(sink.history(schema.METRIC_FORECAST_ENERGY_KWH))
    assert late[max(late)] == pytest.approx(fp.energy_kwh, rel=0.02)
