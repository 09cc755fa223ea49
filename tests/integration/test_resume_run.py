"""A job resumed from a checkpoint into the MLflow run of its earlier part: the run's
totals continue from the earlier part once, not twice (the carried footprint has it)."""

from __future__ import annotations

import pytest

import greenml
from greenml import schema
from greenml.testing.clock import ManualClock
from greenml.testing.meters import ConstantMeter

pytestmark = pytest.mark.slow


def part(run_id=None, before=None, seconds=10.0):
    clock = ManualClock(0.0)
    run = greenml.Tracker(
        meters=[ConstantMeter(clock, 360.0)], clock=clock, interval_s=3600, location="FR",
        pue=1.0, log_to_mlflow=True, journal=False, run_id=run_id, experiment="resume",
    )  # fmt: skip
    if before is not None:
        run.resume_from(before)
    run.start()
    clock.advance(seconds)
    run.step(samples=100)
    run.stop()
    assert run.mlflow.delivered
    return run


def test_resuming_into_the_same_run_continues_its_totals_once(plain_cwd):
    from mlflow import MlflowClient

    first = part()
    second = part(run_id=first.mlflow.run_id, before=first.footprint.to_dict(), seconds=5.0)
    # 360 W: 10 s then 5 s, 1 Wh per 10 s
    assert first.footprint.gpu_energy_kwh == pytest.approx(0.001)
    assert second.footprint.gpu_energy_kwh == pytest.approx(0.0015)
    m = MlflowClient(tracking_uri=first.mlflow.uri).get_run(first.mlflow.run_id).data.metrics
    assert m[schema.METRIC_GPU_ENERGY_KWH] == pytest.approx(0.0015)
    assert m[schema.METRIC_SAMPLES] == 200
