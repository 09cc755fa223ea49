"""greenml.testing.MemorySink: what MLflow would get, kept in memory for users' tests."""

from __future__ import annotations

import time

import pytest

import greenml
from greenml.testing import ConstantMeter, ManualClock, MemorySink


def test_memory_sink_gets_the_summary_params_tags_and_footprint(tmp_path):
    clock = ManualClock(0.0)
    sink = MemorySink()
    run = greenml.Tracker(
        meters=[ConstantMeter(clock, 360.0, index=0)],
        sinks=[sink],
        clock=clock,
        environ={},
        location="FR",
        pue=1.0,
        log_to_mlflow=False,
        journal=True,
        journal_dir=str(tmp_path),
        interval_s=3600,
        log_interval_s=3600,
    ).start()
    clock.advance(100.0)
    fp = run.stop()
    # 360 W x 100 s = 36,000 J = 0.01 kWh, PUE 1.0
    assert sink.latest["greenml/energy_kwh"] == pytest.approx(0.01)
    assert sink.latest["greenml/gpu_power_w"] == pytest.approx(360.0)
    assert sink.params["greenml.location"] == "FR"
    assert sink.tags["greenml.status"] == "finished"
    assert sink.status == "FINISHED"
    assert greenml.Footprint.from_dict(sink.footprint) == fp
    assert sink.run_id == run.greenml_run_id


def test_a_down_memory_sink_leaves_the_records_in_the_journal(tmp_path):
    sink = MemorySink(down=True)
    clock = ManualClock(0.0)
    with pytest.warns(greenml.GreenMLWarning, match="the memory sink cannot be reached"):
        run = greenml.Tracker(
            meters=[ConstantMeter(clock, 100.0)],
            sinks=[sink],
            clock=clock,
            environ={},
            location="FR",
            log_to_mlflow=False,
            journal_dir=str(tmp_path),
            interval_s=3600,
            log_interval_s=0.05,
        ).start()
        time.sleep(0.2)
        clock.advance(1.0)
        run.stop()
    assert sink.points == []
