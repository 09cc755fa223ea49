"""The AMD meter, driven through the simulated AMD SMI (a fake ``amdsmi`` module).

As in test_nvml_meter.py: a ManualClock shared by the simulation and the meter, whose
``sleep`` advances it, and expected joules from the trace's definition, integrated here
on a fine grid, never from the simulated counter.
"""

from __future__ import annotations

import sys

import pytest
from sim_drive import integral

from greenml.errors import ConfigError, NotSupportedError
from greenml.meters.amdsmi import AmdMeter
from greenml.sampler import Ledger, Sampler
from greenml.testing import ManualClock, SimAMDGPU, SimulatedAMDSMI, traces


def drive(meter, clock, start_s, stop_s, step_s=0.1):
    """The tracker's order: a first reading at start, prepare(), a reading every step,
    the final reading at stop."""
    clock.set(start_s)
    ledger = Ledger(meter.channels(), start_s)
    sampler = Sampler([meter], ledger, clock=clock, interval_s=step_s)
    sampler.sample()
    meter.prepare()
    while clock() < stop_s:
        clock.advance(min(step_s, stop_s - clock()))
        sampler.sample()
    sampler.stop(stop_s)
    return ledger


@pytest.fixture
def clock():
    return ManualClock(0.0)


def meter_for(clock, **kw):
    return AmdMeter(clock=clock, sleep=clock.advance, environ=kw.pop("environ", {}), **kw)


@pytest.mark.parametrize(
    ("trace", "start", "duration", "refresh_s"),
    [
        (traces.constant(300.0), 5.037, 1.0, 0.1),
        (traces.square(650.0, 150.0, 0.23, 0.31), 5.037, 20.0, 0.1),
        (traces.square(650.0, 150.0, 0.23, 0.31), 12.511, 7.3, 0.1),
        (traces.constant(300.0), 5.037, 1.0, 0.001),
        (traces.square(650.0, 150.0, 0.23, 0.31), 12.511, 7.3, 0.001),
    ],
)
def test_counter_energy_within_half_a_percent(clock, trace, start, duration, refresh_s):
    sim = SimulatedAMDSMI([SimAMDGPU(trace=trace)], clock=clock, counter_refresh_s=refresh_s)
    with sim:
        meter = meter_for(clock)
        assert meter.channels()[0].method == "counter"
        ledger = drive(meter, clock, start, start + duration)
    got = ledger.totals()["gpu:0"].energy_j
    assert got == pytest.approx(integral(trace, start, start + duration), rel=0.005)


def test_counterless_gpu_integrates_power(clock):
    # No accumulator (a VM guest): whole-watt power readings every 0.1 s, trapezoid.
    trace = traces.steps([(10.0, 200.0), (5.0, 500.0), (100.0, 200.0)])
    gpu = SimAMDGPU(trace=trace, has_counter=False, power_field="average_socket_power")
    with SimulatedAMDSMI([gpu], clock=clock):
        meter = meter_for(clock)
        ch = meter.channels()[0]
        assert ch.method == "sampled"
        assert dict(ch.details)["power_reading"] == "instantaneous"
        ledger = drive(meter, clock, 8.0, 18.0)
    # By hand: 2 s at 200 W + 5 s at 500 W + 3 s at 200 W = 3,500 J; the trapezoid
    # misplaces at most one 0.1 s step at each of the two edges: 2 x 0.05 x 300 = 30 J.
    assert ledger.totals()["gpu:0"].energy_j == pytest.approx(3500.0, abs=30.0)


def test_records_name_uuid_power_cap_and_simulated(clock):
    gpu = SimAMDGPU(name="AMD Instinct MI250X", power_cap_w=560.0, uuid="a1b2c3d4-0000-1111")
    with SimulatedAMDSMI([gpu], clock=clock):
        meter = meter_for(clock)
        (ch,) = meter.channels()
        meter.close()
        meter.close()  # safe twice
    assert (ch.key, ch.kind, ch.name, ch.uuid) == (
        "gpu:0",
        "gpu",
        "AMD Instinct MI250X",
        "a1b2c3d4-0000-1111",
    )
    assert ch.power_limit_w == pytest.approx(560.0)
    assert ch.simulated
    assert dict(ch.details)["library"] == "amdsmi"


def test_unknown_error_window_loses_no_counter_energy(clock):
    trace = traces.constant(400.0)
    gpu = SimAMDGPU(trace=trace, unknown_error_windows=((6.0, 6.5),))
    with SimulatedAMDSMI([gpu], clock=clock), pytest.warns(UserWarning, match="gpu:0"):
        ledger = drive(meter_for(clock), clock, 5.0, 8.0)
    st = ledger.totals()["gpu:0"]
    assert st.errors > 0
    assert st.energy_j == pytest.approx(400.0 * 3.0, rel=0.005)


class TestSelection:
    def sim(self, clock):
        gpus = [SimAMDGPU(uuid=f"uuid-{i}") for i in range(3)]
        return SimulatedAMDSMI(gpus, clock=clock)

    def test_hip_visible_devices_and_gpu_ids(self, clock):
        with self.sim(clock):
            meter = meter_for(clock, environ={"HIP_VISIBLE_DEVICES": "2,uuid-0"}, gpu_ids=[1])
            assert [c.key for c in meter.channels()] == ["gpu:0"]
            meter = meter_for(clock, environ={"ROCR_VISIBLE_DEVICES": "1,2"})
            assert [c.key for c in meter.channels()] == ["gpu:1", "gpu:2"]

    def test_unknown_gpu_ids_names_value_and_valid_ones(self, clock):
        with self.sim(clock), pytest.raises(ConfigError, match=r"gpu_ids: 7 .*uuid-2"):
            meter_for(clock, gpu_ids=[7])

    def test_empty_visible_list_means_no_gpu(self, clock):
        with self.sim(clock), pytest.raises(NotSupportedError, match="no AMD GPU"):
            meter_for(clock, environ={"HIP_VISIBLE_DEVICES": ""})


class TestWithoutAmdsmi:
    def test_not_installed_says_how_to_install_and_prints_nothing(self, clock, monkeypatch, capfd):
        monkeypatch.setitem(sys.modules, "amdsmi", None)  # import amdsmi fails
        with pytest.raises(NotSupportedError, match=r"greenml\[amd\]"):
            AmdMeter(clock=clock, environ={})
        assert capfd.readouterr() == ("", "")

    def test_library_missing_prints_nothing(self, clock, monkeypatch, tmp_path, capfd):
        # What the real package does without libamd_smi.so: print, then fail (KeyError).
        pkg = tmp_path / "amdsmi"
        pkg.mkdir()
        (pkg / "__init__.py").write_text(
            "print('Could not load libamd_smi.so')\n"
            "import sys; print('Unable to find libamd_smi.so', file=sys.stderr)\n"
            "raise KeyError('libamd_smi.so')\n"
        )
        monkeypatch.delitem(sys.modules, "amdsmi", raising=False)
        monkeypatch.syspath_prepend(str(tmp_path))
        with pytest.raises(NotSupportedError, match=r"libamd_smi\.so"):
            AmdMeter(clock=clock, environ={})
        assert capfd.readouterr() == ("", "")
