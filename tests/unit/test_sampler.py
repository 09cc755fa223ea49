"""Ledger and Sampler with hand-made readings: every expected joule worked out by hand."""

from __future__ import annotations

import threading

import pytest

from greenml.errors import GreenMLWarning
from greenml.meters.base import Channel, Reading
from greenml.sampler import THREAD_NAME, Ledger, Sampler, Series
from greenml.testing import ConstantMeter, ManualClock

COUNTER = Channel("gpu:0", "gpu", "test GPU", "counter")
SAMPLED = Channel("gpu:1", "gpu", "old GPU", "sampled")


def energy(key, t, e, p=None):
    return Reading(key, t, energy_j=e, power_w=p)


def power(key, t, p):
    return Reading(key, t, power_w=p)


class TestLedger:
    def test_counter_segments_split_at_phase_boundaries(self):
        led = Ledger([COUNTER], start_s=0.0)
        led.add_many([energy("gpu:0", 0.0, 1000.0)])
        led.set_phase(0.5, "eval")
        led.add_many([energy("gpu:0", 1.0, 1100.0)])  # 100 W over [0, 1]
        led.set_phase(1.5, "train")
        led.add_many([energy("gpu:0", 2.0, 1300.0)])  # 200 W over [1, 2]
        led.close(2.0)
        st = led.totals()["gpu:0"]
        # Power is steady on both sides of each switch (100 W then 100 W; 200 W then
        # 200 W), so the split follows time: eval = 0.5 s x 100 W + 0.5 s x 200 W.
        assert st.phase_j == pytest.approx({"train": 50.0 + 100.0, "eval": 50.0 + 100.0})
        assert st.energy_j == pytest.approx(300.0)
        assert led.phase_durations(2.0) == pytest.approx({"train": 1.0, "eval": 1.0})

    def test_phase_switch_inside_a_refresh_follows_the_power_on_each_side(self):
        # Refreshes every 0.1 s: 200 W, then a segment in which eval (500 W) starts at
        # 0.25, then 500 W. Shaping by the neighbours gives eval 0.05 s x 500 W = 25 J of
        # the middle segment's 35 J, exactly what happened.
        led = Ledger([COUNTER], start_s=0.0)
        led.add_many([energy("gpu:0", 0.1, 0.0)])
        led.add_many([energy("gpu:0", 0.2, 20.0)])
        led.set_phase(0.25, "eval")
        led.add_many([energy("gpu:0", 0.3, 55.0)])
        led.add_many([energy("gpu:0", 0.4, 105.0)])
        led.close(0.4)
        st = led.totals()["gpu:0"]
        assert st.phase_j["eval"] == pytest.approx(25.0 + 50.0)
        # train: the head 0..0.1 extrapolated at 200 W = 20 J, 20 J, then 10 J
        assert st.phase_j["train"] == pytest.approx(20.0 + 20.0 + 10.0)

    def test_head_gap_is_extrapolated_from_the_first_measured_power(self):
        led = Ledger([COUNTER], start_s=0.0)
        led.add_many([energy("gpu:0", 0.2, 5000.0)])
        led.add_many([energy("gpu:0", 0.3, 5030.0)])  # 300 W
        led.close(0.3)
        st = led.totals()["gpu:0"]
        assert st.energy_j == pytest.approx(0.2 * 300.0 + 30.0)
        assert st.extrapolated_s == pytest.approx(0.2)

    def test_points_before_start_and_after_stop_are_clipped(self):
        led = Ledger([COUNTER], start_s=10.0)
        led.add_many([energy("gpu:0", 9.95, 0.0)])
        led.add_many([energy("gpu:0", 10.05, 10.0)])  # 100 W: half of it after start
        led.mark_stop(10.12)
        led.add_many([energy("gpu:0", 10.15, 20.0)])  # 100 W: 0.07 s of it before stop
        led.close(10.12)
        assert led.totals()["gpu:0"].energy_j == pytest.approx(5.0 + 7.0)

    def test_power_only_channel_uses_the_trapezoid(self):
        led = Ledger([SAMPLED], start_s=0.0)
        for t, p in [(0.0, 100.0), (1.0, 300.0), (2.0, 300.0)]:
            led.add_many([power("gpu:1", t, p)])
        led.close(2.5)  # the last 0.5 s held at the last power
        assert led.totals()["gpu:1"].energy_j == pytest.approx(200.0 + 300.0 + 150.0)
        assert led.totals()["gpu:1"].extrapolated_s == pytest.approx(0.5)

    def test_power_only_reading_on_a_counter_channel_is_not_integrated(self):
        led = Ledger([COUNTER], start_s=0.0)
        led.add_many([energy("gpu:0", 0.0, 0.0)])
        led.add_many([power("gpu:0", 0.5, 999.0)])
        led.add_many([energy("gpu:0", 1.0, 100.0)])
        led.close(1.0)
        assert led.totals()["gpu:0"].energy_j == pytest.approx(100.0)

    def test_failed_reads_lose_nothing_on_a_counter_and_are_logged_once(self):
        led = Ledger([COUNTER], start_s=0.0)
        led.add_many([energy("gpu:0", 0.0, 0.0)])
        with pytest.warns(GreenMLWarning) as caught:
            for t in (0.1, 0.2, 0.3):
                led.add_many([Reading("gpu:0", t, error="NVML unknown error")])
        led.add_many([energy("gpu:0", 1.0, 250.0)])
        led.close(1.0)
        st = led.totals()["gpu:0"]
        assert st.energy_j == pytest.approx(250.0)
        assert st.errors == 3
        assert [str(w.message).count("NVML unknown error") for w in caught] == [1]

    def test_lost_device_stops_counting_and_is_not_extrapolated(self):
        led = Ledger([COUNTER], start_s=0.0)
        led.add_many([energy("gpu:0", 0.0, 0.0)])
        led.add_many([energy("gpu:0", 1.0, 300.0)])
        led.add_many([Reading("gpu:0", 1.1, error="GPU is lost", lost=True)])
        led.add_many([energy("gpu:0", 2.0, 900.0)])  # ignored: the device is gone
        led.close(3.0)
        st = led.totals()["gpu:0"]
        assert st.energy_j == pytest.approx(300.0)
        assert st.lost_at_s == 1.1

    def test_share_scales_the_channel(self):
        mig = Channel("gpu:0", "gpu", "A100 MIG", "counter", share=0.25)
        led = Ledger([mig], start_s=0.0)
        led.add_many([energy("gpu:0", 0.0, 0.0)])
        led.add_many([energy("gpu:0", 2.0, 800.0)])
        led.close(2.0)
        assert led.totals()["gpu:0"].energy_j == pytest.approx(200.0)

    def test_counter_that_goes_back_is_bridged_with_a_warning(self):
        led = Ledger([COUNTER], start_s=0.0)
        led.add_many([energy("gpu:0", 0.0, 500.0)])
        led.add_many([energy("gpu:0", 1.0, 600.0)])
        with pytest.warns(GreenMLWarning, match="went back"):
            led.add_many([energy("gpu:0", 2.0, 10.0)])  # driver reload: the counter restarted
        led.add_many([energy("gpu:0", 3.0, 110.0)])
        led.close(3.0)
        # 100 J counted in [0, 1] and [2, 3]; [1, 2] bridged at the mean of the 100 W on
        # both sides: 300 J, of which 1 s bridged
        st = led.totals()["gpu:0"]
        assert st.energy_j == pytest.approx(300.0)
        assert st.bridged_s == pytest.approx(1.0) and st.bridges == {"reset": 1}

    def test_memory_is_bounded_for_a_long_run(self):
        led = Ledger([COUNTER], start_s=0.0, series_max_points=64)
        e = 0.0
        for i in range(1, 50_001):  # 5,000 s of 100 ms readings with a phase every 10 s
            t = i * 0.1
            if i % 100 == 0:
                led.set_phase(t, "eval" if (i // 100) % 2 else "train")
            e += 25.0
            led.add_many([energy("gpu:0", t, e)])
        led.close(5000.0)
        st = led.totals()["gpu:0"]
        assert st.energy_j == pytest.approx(250.0 * 5000.0)
        assert st.phase_j["eval"] == pytest.approx(st.phase_j["train"], rel=1e-3)
        assert len(led.timeline) <= 3
        assert len(st.series.points) <= 64
        assert st.series.points[-1].energy_j == pytest.approx(st.energy_j)
        assert all(p.power_w == pytest.approx(250.0) for p in st.series.points)


def test_series_merges_pairs_and_keeps_energy():
    s = Series(bucket_s=1.0, max_points=4)
    for i in range(20):
        s.add(float(i), float(i + 1), 10.0 * (i % 2))  # 0 W and 10 W seconds alternately
    s.flush()
    assert len(s.points) <= 4
    assert s.points[-1].energy_j == pytest.approx(100.0)
    covered = sum(p.power_w * (p.t_end_s - p.t_start_s) for p in s.points)
    assert covered == pytest.approx(100.0)


class TestSampler:
    def test_thread_is_a_named_daemon_and_stop_is_idempotent(self):
        clock = ManualClock(0.0)
        meter = ConstantMeter(clock, 100.0, channel=COUNTER)
        led = Ledger(meter.channels(), 0.0)
        sampler = Sampler([meter], led, clock=clock, interval_s=0.01)
        sampler.start()
        threads = [t for t in threading.enumerate() if t.name == THREAD_NAME]
        assert len(threads) == 1 and threads[0].daemon
        clock.advance(2.0)
        sampler.stop(2.0)
        sampler.stop(2.0)
        assert not threads[0].is_alive()
        assert meter.closed == 1
        assert led.totals()["gpu:0"].energy_j == pytest.approx(200.0)  # final sample at stop

    def test_failing_meter_is_logged_once_and_the_others_go_on(self):
        clock = ManualClock(0.0)
        bad, good = (
            ConstantMeter(clock, 100.0, channel=COUNTER, fail_after=1),
            ConstantMeter(clock, 50.0, channel=COUNTER),
        )
        good_ch = Channel("cpu:0", "cpu", "cpu", "counter")
        good.channels = lambda: [good_ch]
        good.read = lambda: [energy("cpu:0", clock(), 50.0 * clock())]
        led = Ledger([COUNTER, good_ch], 0.0)
        sampler = Sampler([bad, good], led, clock=clock)
        with pytest.warns(GreenMLWarning) as caught:
            for _ in range(5):
                sampler.sample()
                clock.advance(1.0)
        sampler.stop(5.0)
        assert [str(w.message).count("meter exploded") for w in caught] == [1]
        assert led.totals()["cpu:0"].energy_j == pytest.approx(250.0)
        assert any("meter exploded" in w for w in led.warnings)

    def test_rejects_non_positive_interval(self):
        led = Ledger([COUNTER], 0.0)
        with pytest.raises(ValueError, match="interval_s"):
            Sampler([], led, interval_s=0)
