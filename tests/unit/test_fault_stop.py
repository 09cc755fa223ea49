"""A stop that meets a failing factor keeps the measurement and gives the signal back.

Before: an hourly file that ended before the run did made ``stop()`` raise inside the
``with`` block's exit; the run had no footprint, its recorder thread kept running, and
greenml's SIGTERM guard stayed in its "hold" mode, so a later SIGTERM to the job was
swallowed.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest

import greenml
from greenml.errors import ConfigError, GreenMLWarning
from greenml.testing import ConstantMeter, ManualClock


def hourly_file(tmp_path, hours):
    """An hourly intensity CSV covering the current hour and ``hours - 1`` after it."""
    hour = int(time.time() // 3600) * 3600
    rows = [
        f"{time.strftime('%Y-%m-%dT%H:00:00Z', time.gmtime(hour + k * 3600))},200"
        for k in range(hours)
    ]
    f = tmp_path / "hourly.csv"
    f.write_text("timestamp,g_per_kwh\n" + "\n".join(rows) + "\n")
    return f


def test_an_hourly_file_that_ends_before_the_run_keeps_the_energy_and_the_signal(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    clock = ManualClock(0.0)
    run = greenml.Tracker(
        meters=[ConstantMeter(clock, 100.0)],
        clock=clock,
        location="FR",
        hourly_intensity_csv=str(hourly_file(tmp_path, 1)),
    ).start()
    clock.advance(3 * 3600.0)  # three hours: past the file's one
    with pytest.warns(GreenMLWarning, match="could not be computed at the end"):
        fp = run.stop()
    assert fp.gpu_energy_kwh == pytest.approx(100.0 * 3 * 3600 / 3.6e6)  # 0.3 kWh, kept
    assert fp.co2e_kg is None and "factors_failed" in fp.flags
    assert signal.getsignal(signal.SIGTERM) is before  # the guard gave the handler back
    assert not [t for t in threading.enumerate() if t.name.startswith("greenml")]


def test_an_hourly_file_that_misses_the_start_is_refused_before_the_run(tmp_path):
    old = tmp_path / "old.csv"
    old.write_text("timestamp,g_per_kwh\n2020-01-01T00:00:00Z,200\n")
    with pytest.raises(ConfigError) as e:
        greenml.track(location="FR", hourly_intensity_csv=str(old), environ={})
    text = str(e.value)
    assert f"hourly_intensity_csv={str(old)!r}" in text and "covers 2020-01-01" in text
    assert "give a file that covers the run" in text
    assert not [t for t in threading.enumerate() if t.name.startswith("greenml")]


def test_contradicting_market_inputs_are_refused_before_the_run():
    with pytest.raises(ConfigError, match=r"supplier_g_per_kwh=100.0 and renewable_share=0.5"):
        greenml.track(location="FR", supplier_g_per_kwh=100, renewable_share=0.5, environ={})
