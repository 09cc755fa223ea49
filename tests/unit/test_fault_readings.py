"""Readings a broken driver or sensor gives: dropped or bridged, flagged, never summed.

Two levels: the ledger fed hand-made readings (the arithmetic in each comment), and whole
runs on the simulated NVIDIA driver with its broken-driver faults (an answer of
0xFFFFFFFF mW, a driver reload that restarts the counter, a counter that freezes, a sensor
that reads zero), timed with the real clock.
"""

from __future__ import annotations

import math
import time
import warnings

import pytest

import greenml
from greenml.assemble import measurement_of
from greenml.errors import GreenMLWarning
from greenml.footprint import DeviceEnergy
from greenml.ledger import Ledger
from greenml.meters.base import Channel, Reading, implausible_power, power_ceiling_w
from greenml.testing import SimGPU, SimulatedNVML, traces

SAMPLED = Channel("gpu:0", "gpu", "a counterless GPU", "sampled", 0, power_limit_w=300.0)
COUNTER = Channel("gpu:0", "gpu", "a GPU with a counter", "counter", 0, power_limit_w=700.0)
UNKNOWN_LIMIT = Channel("gpu:0", "gpu", "a GPU of unknown limit", "sampled", 0)
CPU = Channel("cpu:package-0", "cpu", "a CPU package", "counter")


def power(t, w, key="gpu:0"):
    return Reading(key, t, power_w=w)


def energy(t, j, key="gpu:0", **kw):
    return Reading(key, t, energy_j=j, **kw)


def fed(channel, readings, stop):
    led = Ledger([channel], start_s=0.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for r in readings:
            led.add_many([r])
        led.close(stop)
    return led.totals()[channel.key], [str(w.message) for w in caught]


# -- the plausibility rule --------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "watts", "says"),
    [
        (SAMPLED, math.nan, "a power reading of nan W"),
        (SAMPLED, math.inf, "a power reading of inf W"),
        (SAMPLED, -5.0, "a negative power reading (-5 W)"),
        (SAMPLED, 450.001, "above 1.5 x its 300 W power limit"),
        (SAMPLED, 4_294_967.295, "4,294,967.295 W, above 1.5 x its 300 W power limit"),
        (UNKNOWN_LIMIT, 2000.5, "above the 2000 W any GPU can draw"),
        (CPU, 1000.5, "above the 1000 W any CPU can draw"),
    ],
)
def test_what_cannot_be_a_power_reading(channel, watts, says):
    assert says in implausible_power(channel, watts)


@pytest.mark.parametrize(
    ("channel", "watts"), [(SAMPLED, 0.0), (SAMPLED, 450.0), (UNKNOWN_LIMIT, 2000.0)]
)
def test_what_can(channel, watts):
    assert implausible_power(channel, watts) is None
    assert power_ceiling_w(channel) >= watts


# -- the ledger ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-5.0, math.nan, math.inf, 4_294_967.295, 451.0])
def test_a_bad_power_reading_is_dropped_and_the_run_integrates_around_it(bad):
    # 100 W read every second from 0 to 4 s, one bad reading at 2 s: the trapezoid over
    # the good ones (1 -> 3 s bridges the hole at 100 W) = 400 J
    readings = [power(t, 100.0) for t in (0.0, 1.0)] + [power(2.0, bad)]
    readings += [power(t, 100.0) for t in (3.0, 4.0)]
    st, said = fed(SAMPLED, readings, 4.0)
    assert st.energy_j == pytest.approx(400.0)
    assert st.implausible == 1 and st.errors == 0  # not a failed read: a wrong answer
    assert [m for m in said if "implausible_readings:gpu:0" in m]


def test_a_nan_energy_is_dropped():
    readings = [energy(0.0, 0.0), energy(1.0, math.nan), energy(2.0, 200.0)]
    st, said = fed(COUNTER, readings, 2.0)
    assert st.energy_j == pytest.approx(200.0) and st.implausible == 1
    assert any("an energy reading of nan J" in m for m in said)


def test_a_counter_jump_beyond_the_ceiling_is_bridged():
    # 100 W for 1 s, then a garbage value 1 MJ higher (1 MJ in 1 s > 1.5 x 700 W), then
    # 100 W again: the jumped second is bridged at the 100 W on both sides
    readings = [energy(0.0, 0.0), energy(1.0, 100.0), energy(2.0, 1e6 + 100.0)]
    readings += [energy(3.0, 1e6 + 200.0)]
    st, said = fed(COUNTER, readings, 3.0)
    assert st.energy_j == pytest.approx(300.0)
    assert st.bridges == {"jump": 1} and st.implausible == 1
    assert any("counter_bridged:gpu:0" in m for m in said)


def test_a_reset_between_two_powers_is_bridged_at_their_mean():
    # 100 W before the reload, 300 W after: [1, 2] at 200 W
    readings = [energy(0.0, 1000.0), energy(1.0, 1100.0), energy(2.0, 50.0)]
    readings += [energy(3.0, 350.0)]
    st, _ = fed(COUNTER, readings, 3.0)
    assert st.energy_j == pytest.approx(100.0 + 200.0 + 300.0)
    assert st.bridged_s == pytest.approx(1.0)


def test_a_reset_at_the_end_is_bridged_with_the_power_before():
    readings = [energy(0.0, 1000.0), energy(1.0, 1100.0), energy(2.0, 5.0)]
    st, _ = fed(COUNTER, readings, 2.0)
    assert st.energy_j == pytest.approx(200.0)  # 100 W measured, 100 W carried over [1, 2]


def still(t, watts, still_s):
    return Reading("gpu:0", t, power_w=watts, extra={"counter_still_s": still_s})


def test_a_counter_that_stands_still_while_the_gpu_draws_is_bridged():
    # 300 W counted to 1 s; the counter then stops; power reads of 300 W at 1 s and 3 s
    # (the meter has seen the counter still for 2 s): [1, 3] bridged = 600 J
    readings = [energy(0.0, 0.0), energy(1.0, 300.0), still(1.0, 300.0, 0.0)]
    readings += [still(3.0, 300.0, 2.0)]
    st, said = fed(COUNTER, readings, 3.0)
    assert st.energy_j == pytest.approx(900.0)
    assert st.bridges == {"stuck": 1} and st.bridged_s == pytest.approx(2.0)
    assert any("counted far less than the 300 W" in m for m in said)


def test_the_slow_segment_before_a_stuck_one_is_bridged_too():
    # counted 300 W to 1 s; the counter stops at 1.2 s: [1, 3] holds only 60 J (30 W, a
    # tenth of the 300 W read at both ends); [3, 4] holds nothing: both are bridged
    readings = [energy(0.0, 0.0), energy(1.0, 300.0), still(1.0, 300.0, 0.0)]
    readings += [energy(3.0, 360.0), still(3.0, 300.0, 0.0), still(4.0, 300.0, 1.0)]
    st, _ = fed(COUNTER, readings, 4.0)
    assert st.energy_j == pytest.approx(1200.0)
    assert st.bridged_s == pytest.approx(3.0)


def test_a_dip_between_two_busy_reads_is_left_as_counted():
    # 30 W counted over [1, 3] with 300 W read at both ends, and the counter moving after:
    # a workload can idle between two reads; a slow segment alone is not a stuck counter
    readings = [energy(0.0, 0.0), energy(1.0, 300.0), still(1.0, 300.0, 0.0)]
    readings += [energy(3.0, 360.0), still(3.0, 300.0, 0.0), energy(4.0, 660.0)]
    readings += [still(4.0, 300.0, 0.0)]
    st, _ = fed(COUNTER, readings, 4.0)
    assert st.energy_j == pytest.approx(660.0) and st.bridged_s == 0.0


def test_an_idle_gpu_whose_counter_stands_still_is_not_bridged():
    # power reads 0.5 W (below the 1 W that shows work): nothing to bridge
    readings = [energy(0.0, 0.0), energy(1.0, 1.0), still(1.0, 0.5, 0.0), still(3.0, 0.5, 2.0)]
    st, _ = fed(COUNTER, readings, 3.0)
    assert st.bridged_s == 0.0


def test_zero_forever_is_flagged_and_a_short_zero_is_not():
    readings = [power(t, 0.0) for t in (0.0, 0.5, 1.0, 1.5, 2.0)]
    st, said = fed(SAMPLED, readings, 2.0)
    assert st.energy_j == 0.0 and any("zero_readings:gpu:0" in m for m in said)
    short = [power(t, 0.0) for t in (0.0, 0.5, 1.0)]  # 1 s: too short to tell
    _, said = fed(SAMPLED, short, 1.0)
    assert not any("zero_readings" in m for m in said)


def test_bridged_counter_time_makes_the_run_sampled():
    exact = DeviceEnergy("gpu:0", "gpu", "H100", "counter", 1.0)
    bridged = DeviceEnergy("gpu:0", "gpu", "H100", "counter", 1.0, bridged_s=1.0)
    assert measurement_of([exact]) == "counter"
    assert measurement_of([bridged]) == "sampled"


# -- whole runs on the simulated driver ----------------------------------------------------


def tracked(gpu, seconds):
    with SimulatedNVML([gpu]), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with greenml.track(
            location="FR", interval_s=0.05, log_to_mlflow=False, journal=False
        ) as run:
            time.sleep(seconds)
    fp = run.footprint
    return fp, (fp.gpu_energy_kwh * 3.6e6), [str(w.message) for w in caught]


@pytest.mark.parametrize("reading", ["average_1s", "instantaneous"])
def test_a_driver_answering_0xffffffff_mw_adds_nothing(reading):
    # the run: 2 s at 200 W on a counterless GPU, 4,294,967.295 W answered for
    # 0.5 s: 400 J, not megajoules (before the fix: 6.6 MJ, unflagged)
    gpu = SimGPU(
        trace=traces.constant(200.0),
        has_counter=False,
        power_reading=reading,
        power_override_windows=((0.5, 1.0, 0xFFFFFFFF),),
    )
    fp, joules, said = tracked(gpu, 2.0)
    assert joules == pytest.approx(200.0 * fp.duration_s, rel=0.02)
    assert "implausible_readings:gpu:0" in fp.flags
    (dev,) = [d for d in fp.devices if d.kind == "gpu"]
    assert dev.implausible_readings >= 1
    assert any("4,294,967.295 W" in m for m in said)


def test_a_driver_reload_is_bridged_not_lost():
    # the run: 300 W, the counter restarts from 0 at 1 s (a driver reload); before
    # the fix the stretch around the reload was skipped (571 J of 894 J in its report)
    gpu = SimGPU(trace=traces.constant(300.0), counter_resets_at=(1.0,))
    fp, joules, said = tracked(gpu, 2.0)
    assert joules == pytest.approx(300.0 * fp.duration_s, rel=0.02)
    assert "counter_bridged:gpu:0" in fp.flags
    (dev,) = [d for d in fp.devices if d.kind == "gpu"]
    assert dev.bridged_s > 0
    assert any("went back" in m for m in said)


def test_a_counter_that_freezes_mid_run_is_bridged_with_the_power():
    gpu = SimGPU(trace=traces.constant(300.0), counter_frozen_windows=((0.5, 1000.0),))
    fp, joules, _ = tracked(gpu, 3.0)
    assert joules == pytest.approx(300.0 * fp.duration_s, rel=0.03)
    assert "counter_bridged:gpu:0" in fp.flags


def test_a_gpu_that_reads_zero_all_along_is_flagged_not_trusted():
    gpu = SimGPU(
        trace=traces.constant(300.0),
        counter_frozen_windows=((0.0, 1000.0),),
        power_override_windows=((0.0, 1000.0, 0),),
    )
    fp, joules, said = tracked(gpu, 3.0)
    assert joules == 0.0
    assert "zero_readings:gpu:0" in fp.flags
    assert any("its energy is missing, not zero" in m for m in said)


def test_a_healthy_run_raises_no_fault_flag():
    fp, joules, said = tracked(SimGPU(trace=traces.constant(300.0)), 2.0)
    assert joules == pytest.approx(300.0 * fp.duration_s, rel=0.01)
    faults = ("implausible_readings", "counter_bridged", "zero_readings")
    assert not [f for f in fp.flags if f.startswith(faults)]
    assert not [m for m in said if "gpu:0" in m]


def test_warnings_reach_stderr_as_greenml_warnings():
    gpu = SimGPU(
        trace=traces.constant(200.0),
        has_counter=False,
        power_override_windows=((0.2, 0.6, 0xFFFFFFFF),),
    )
    quiet = {"location": "FR", "interval_s": 0.05, "log_to_mlflow": False, "journal": False}
    with (
        SimulatedNVML([gpu]),
        pytest.warns(GreenMLWarning, match="not a measurement"),
        greenml.track(**quiet),
    ):
        time.sleep(1.0)
