"""Tracker.use_steps: time-series points carry the trainer's global step in MLflow."""

from __future__ import annotations

import time

import pytest

import greenml

pytestmark = pytest.mark.slow


def test_points_carry_the_trainers_step(plain_cwd):
    from mlflow.tracking import MlflowClient

    step = {"now": 0}
    with greenml.track(location="FR", log_interval_s=0.3, experiment="steps") as run:
        run.use_steps(lambda: step["now"])
        for _ in range(12):  # a training loop: 12 optimizer steps of 0.1 s
            time.sleep(0.1)
            step["now"] += 1
    assert run.mlflow.delivered
    client = MlflowClient(tracking_uri=run.mlflow.uri)
    history = client.get_metric_history(run.mlflow.run_id, "greenml/energy_kwh")
    steps = [m.step for m in sorted(history, key=lambda m: m.timestamp)]
    assert steps[-1] == 12  # the summary at the last step
    assert steps == sorted(steps) and set(steps) <= set(range(13))
    assert len(steps) >= 4  # a point every 0.3 s over 1.2 s, and the summary
    energies = [m.value for m in sorted(history, key=lambda m: m.timestamp)]
    assert energies == sorted(energies)  # cumulative


def test_a_failing_step_provider_falls_back_to_seconds(tmp_path):
    def broken():
        raise RuntimeError("no trainer")

    with greenml.track(
        location="FR",
        log_to_mlflow=False,
        journal=True,
        journal_dir=str(tmp_path),
        log_interval_s=0.2,
    ) as run:
        run.use_steps(broken)
        with pytest.warns(greenml.GreenMLWarning, match="step provider failed"):
            time.sleep(0.5)
    assert run.footprint.duration_s > 0.4
