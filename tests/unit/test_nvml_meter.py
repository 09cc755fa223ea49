"""The NVML meter, driven through the simulated driver (pynvml's real bindings run).

Time is a ManualClock shared by the simulated driver and the meter; the meter's sleep
advances it, so the counter-grid synchronisation runs exactly as on real hardware but
deterministically. Expected joules come from the trace's *definition* (its power
function), integrated here on a fine grid, never from the simulated counter.
"""

from __future__ import annotations

import pytest
from sim_drive import Timeline, integral

from greenml.errors import ConfigError, GreenMLWarning, NotSupportedError
from greenml.meters.nvml import NvmlMeter
from greenml.sampler import Ledger, Sampler
from greenml.testing import ManualClock, SimGPU, SimulatedNVML, traces


def drive(meter, clock, start_s, stop_s, step_s=0.1, phases=()):
    """Run a ledger over [start_s, stop_s] the way the tracker does: sync in prepare(),
    a reading every step, phase switches at exact times, a final reading at stop."""
    timeline = meter._sleep.__self__
    clock.set(start_s)
    ledger = Ledger(meter.channels(), start_s)
    timeline.ledger, timeline.events = ledger, sorted(phases)
    sampler = Sampler([meter], ledger, clock=clock, interval_s=step_s)
    meter.prepare()
    while clock() < stop_s:
        sampler.sample()
        timeline.sleep(max(0.0, min(step_s, stop_s - clock())))
    sampler.stop(stop_s)
    return ledger


@pytest.fixture
def clock():
    return ManualClock(0.0)


def meter_for(sim, clock, **kw):
    timeline = Timeline(clock)
    return NvmlMeter(clock=clock, sleep=timeline.sleep, environ=kw.pop("environ", {}), **kw)


@pytest.mark.parametrize(
    ("trace", "start", "duration"),
    [
        (traces.constant(300.0), 5.037, 1.0),
        (traces.square(650.0, 150.0, 0.23, 0.31), 5.037, 20.0),
        (traces.square(650.0, 150.0, 0.23, 0.31), 12.511, 7.3),
        (traces.spiky(120.0, 700.0, 0.02, 0.25), 3.0004, 2.0),
    ],
)
def test_counter_energy_within_half_a_percent(clock, trace, start, duration):
    sim = SimulatedNVML([SimGPU(trace=trace)], clock=clock)
    with sim:
        meter = meter_for(sim, clock)
        assert meter.channels()[0].method == "counter"
        ledger = drive(meter, clock, start, start + duration)
    got = ledger.totals()["gpu:0"].energy_j
    want = integral(trace, start, start + duration)
    assert got == pytest.approx(want, rel=0.005)


@pytest.mark.parametrize("start", [5.0 + 0.0137 * k for k in range(12)])
def test_one_second_bursty_window_error_is_within_the_refresh_bound(clock, start):
    # Within one 100 ms refresh, the counter cannot say how the energy was spread; the
    # ledger spreads it evenly. The worst case at one boundary is T/4 x (Pmax - Pmin)
    # (power at Pmax on one side of the boundary, Pmin on the other), so two boundaries
    # give at most 2 x 0.1/4 x 500 = 25 J. Steady power gives ~0 (tested above).
    trace = traces.square(650.0, 150.0, 0.23, 0.31)
    with SimulatedNVML([SimGPU(trace=trace)], clock=clock) as sim:
        ledger = drive(meter_for(sim, clock), clock, start, start + 1.0)
    got = ledger.totals()["gpu:0"].energy_j
    assert abs(got - integral(trace, start, start + 1.0)) <= 25.0


def test_short_phase_gets_its_energy_not_zero(clock):
    # 0.3 s eval phase on a device whose counter refreshes every 100 ms.
    trace = traces.steps([(10.45, 200.0), (0.3, 500.0), (100.0, 200.0)])
    sim = SimulatedNVML([SimGPU(trace=trace)], clock=clock)
    with sim:
        meter = meter_for(sim, clock)
        ledger = drive(meter, clock, 10.0, 11.5, phases=[(10.45, "eval"), (10.75, "train")])
    st = ledger.totals()["gpu:0"]
    # By hand: eval is 0.3 s at 500 W = 150 J; train is 0.45 s + 0.75 s at 200 W = 240 J.
    assert st.phase_j["eval"] == pytest.approx(150.0, rel=0.02)
    assert st.phase_j["train"] == pytest.approx(240.0, rel=0.02)
    assert st.energy_j == pytest.approx(390.0, rel=0.005)


def test_counter_is_read_no_faster_than_it_refreshes(clock):
    sim = SimulatedNVML([SimGPU(trace=traces.constant(100.0))], clock=clock)
    with sim:
        meter = meter_for(sim, clock)
        clock.set(3.0)
        meter.prepare()
        before = sim.calls["nvmlDeviceGetTotalEnergyConsumption"]
        power_before = sim.calls["nvmlDeviceGetPowerUsage"]
        for _ in range(1000):  # 20 s of reads every 20 ms
            clock.advance(0.02)
            meter.read()
        reads = sim.calls["nvmlDeviceGetTotalEnergyConsumption"] - before
        power_reads = sim.calls["nvmlDeviceGetPowerUsage"] - power_before
    # 20 s / 0.1 s = 200 refreshes. The counter is read at most once per refresh, plus
    # the few reads of each re-synchronisation (at 0.5, 1, 2, 4, 8, 16 s, each starting
    # 3 ms before the predicted refresh): far below the 1,000 reads asked for. The power
    # is read once a second at most (POWER_CHECK_S), only to tell a stuck counter from a
    # GPU at rest: the counter's differences give the energy.
    assert 200 <= reads <= 240
    assert 19 <= power_reads <= 21


def test_counterless_averaged_power_within_two_percent(clock):
    # An Ampere (non-GA100) GPU without a counter: its power reading is a 1 s average.
    trace = traces.steps([(2.0, 100.0), (30.0, 400.0)])
    gpu = SimGPU(
        name="NVIDIA A10G",
        architecture="ampere",
        has_counter=False,
        power_reading="average_1s",
        trace=trace,
    )
    sim = SimulatedNVML([gpu], clock=clock)
    with sim:
        meter = meter_for(sim, clock)
        ch = meter.channels()[0]
        assert ch.method == "sampled"
        assert ("power_reading", "1 s average") in ch.details
        ledger = drive(meter, clock, 0.5, 4.5)
    got = ledger.totals()["gpu:0"].energy_j
    # By hand: 1.5 s at 100 W + 2.5 s at 400 W = 1150 J. Integrating the lagging 1 s
    # average at read time would give ~1000 J (13 % short); stamping each reading at the
    # middle of its window removes that lag.
    assert got == pytest.approx(1150.0, rel=0.02)


def test_counterless_instantaneous_gpu_is_not_time_shifted(clock):
    gpu = SimGPU(
        name="Tesla P100-SXM2-16GB",
        architecture="pascal",
        has_counter=False,
        power_reading="instantaneous",
        trace=traces.constant(250.0),
    )
    sim = SimulatedNVML([gpu], clock=clock)
    with sim:
        meter = meter_for(sim, clock)
        assert ("power_reading", "instantaneous") in meter.channels()[0].details
        ledger = drive(meter, clock, 2.0, 4.0)
    assert ledger.totals()["gpu:0"].energy_j == pytest.approx(500.0, rel=1e-3)


def test_gpu_lost_mid_run_keeps_what_was_measured(clock):
    sim = SimulatedNVML(
        [SimGPU(trace=traces.constant(300.0), lost_at_s=6.0), SimGPU(trace=traces.constant(100.0))],
        clock=clock,
    )
    with sim, pytest.warns(GreenMLWarning) as caught:
        meter = meter_for(sim, clock)
        ledger = drive(meter, clock, 5.0, 7.0)
    lost, ok = ledger.totals()["gpu:0"], ledger.totals()["gpu:1"]
    assert lost.lost_at_s is not None and 6.0 <= lost.lost_at_s <= 6.2
    # Measured up to the last good reading, at most one refresh + one step before 6.0 s.
    assert 300.0 * (1.0 - 0.2) <= lost.energy_j <= 300.0 * 1.0 + 1e-6
    assert ok.energy_j == pytest.approx(200.0, rel=0.005)  # the other GPU is unaffected
    assert any("was lost" in str(w.message) for w in caught)


def test_unknown_error_window_loses_no_counter_energy(clock):
    gpu = SimGPU(trace=traces.constant(200.0), unknown_error_windows=((3.3, 3.8),))
    sim = SimulatedNVML([gpu], clock=clock)
    with sim:
        meter = meter_for(sim, clock)
        ledger = drive(meter, clock, 3.0, 5.0)
    st = ledger.totals()["gpu:0"]
    assert st.errors > 0
    assert st.energy_j == pytest.approx(400.0, rel=0.005)  # the counter kept counting


def test_power_not_supported_on_counter_device_still_measures(clock):
    gpu = SimGPU(trace=traces.constant(200.0), not_supported=frozenset({"power"}))
    sim = SimulatedNVML([gpu], clock=clock)
    with sim:
        meter = meter_for(sim, clock)
        ledger = drive(meter, clock, 3.0, 4.5)
    st = ledger.totals()["gpu:0"]
    assert st.errors == 0
    assert st.energy_j == pytest.approx(300.0, rel=0.005)


def test_device_without_counter_or_power_is_refused(clock):
    gpu = SimGPU(has_counter=False, not_supported=frozenset({"power"}))
    with SimulatedNVML([gpu], clock=clock) as sim, pytest.raises(NotSupportedError):
        meter_for(sim, clock)


def test_records_name_uuid_power_limit_and_method(clock):
    gpus = [
        SimGPU(name="NVIDIA H100 80GB HBM3", power_limit_w=700.0),
        SimGPU(
            name="Tesla P100-PCIE-16GB",
            architecture="pascal",
            has_counter=False,
            power_limit_w=250.0,
        ),
    ]
    with SimulatedNVML(gpus, clock=clock) as sim:
        chans = meter_for(sim, clock).channels()
        uuids = [g.uuid for g in sim.gpus]
    assert [(c.name, c.uuid, c.power_limit_w, c.method, c.simulated) for c in chans] == [
        ("NVIDIA H100 80GB HBM3", uuids[0], 700.0, "counter", True),
        ("Tesla P100-PCIE-16GB", uuids[1], 250.0, "sampled", True),
    ]


class TestVisibleDevices:
    def sim(self, clock, n=4, **kw):
        return SimulatedNVML([SimGPU(**kw) for _ in range(n)], clock=clock)

    def test_cuda_visible_devices_with_uuids_in_cuda_order(self, clock):
        with self.sim(clock) as sim:
            u = [g.uuid for g in sim.gpus]
            env = {"CUDA_VISIBLE_DEVICES": f"{u[2]},{u[0][:12]}"}  # a full UUID and a prefix
            chans = meter_for(sim, clock, environ=env).channels()
            assert [c.uuid for c in chans] == [u[2], u[0]]
            # gpu_ids are positions in the visible list (what cuda:<i> means to the job)
            only = meter_for(sim, clock, environ=env, gpu_ids=[1]).channels()
            assert [c.uuid for c in only] == [u[0]]
            by_uuid = meter_for(sim, clock, environ=env, gpu_ids=[u[2]]).channels()
            assert [c.index for c in by_uuid] == [2]

    def test_indices_and_invalid_entry_stops_the_list_like_cuda(self, clock):
        with self.sim(clock) as sim, pytest.warns(GreenMLWarning, match="'9' matches no GPU"):
            env = {"CUDA_VISIBLE_DEVICES": "3,1,9,0"}
            chans = meter_for(sim, clock, environ=env).channels()
        assert [c.index for c in chans] == [3, 1]

    def test_empty_visible_list_means_no_gpu(self, clock):
        with self.sim(clock) as sim, pytest.raises(NotSupportedError, match="no NVIDIA GPU"):
            meter_for(sim, clock, environ={"CUDA_VISIBLE_DEVICES": ""})

    def test_unknown_gpu_ids_names_value_and_valid_ones(self, clock):
        with self.sim(clock, n=2) as sim:
            with pytest.raises(ConfigError) as e:
                meter_for(sim, clock, gpu_ids=[5])
            assert "5" in str(e.value) and "0..1" in str(e.value)
            assert sim.gpus[0].uuid in str(e.value)
            with pytest.raises(ConfigError, match="GPU-nope"):
                meter_for(sim, clock, gpu_ids=["GPU-nope"])

    def test_mig_devices_map_to_parent_with_share(self, clock):
        gpus = [
            SimGPU(name="NVIDIA A100-SXM4-80GB", architecture="ampere", mig_instances=4),
            SimGPU(),
        ]
        with SimulatedNVML(gpus, clock=clock) as sim:
            import pynvml

            pynvml.nvmlInit()
            parent = pynvml.nvmlDeviceGetHandleByIndex(0)
            migs = [
                pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, j))
                for j in range(2)
            ]
            pynvml.nvmlShutdown()
            migs = [m.decode() if isinstance(m, bytes) else m for m in migs]
            env = {"CUDA_VISIBLE_DEVICES": ",".join(migs)}
            chans = meter_for(sim, clock, environ=env).channels()
        # two of the parent's four MIG devices: half of the parent's energy
        assert [(c.index, c.share) for c in chans] == [(0, 0.5)]

    def test_mig_share_scales_energy(self, clock):
        gpus = [SimGPU(architecture="ampere", mig_instances=4, trace=traces.constant(400.0))]
        with SimulatedNVML(gpus, clock=clock) as sim:
            import pynvml

            pynvml.nvmlInit()
            h = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(pynvml.nvmlDeviceGetHandleByIndex(0), 0)
            mig0 = pynvml.nvmlDeviceGetUUID(h)
            pynvml.nvmlShutdown()
            meter = meter_for(sim, clock, environ={"CUDA_VISIBLE_DEVICES": mig0})
            ledger = drive(meter, clock, 2.0, 3.0)
        # one MIG device of four: 400 W x 1 s / 4 = 100 J
        assert ledger.totals()["gpu:0"].energy_j == pytest.approx(100.0, rel=0.005)


def test_run_shorter_than_one_refresh_is_not_zero(clock):
    # 60 ms, inside a single 100 ms refresh interval, at 300 W: 18 J by hand.
    with SimulatedNVML([SimGPU(trace=traces.constant(300.0))], clock=clock) as sim:
        ledger = drive(meter_for(sim, clock), clock, 4.02, 4.08, step_s=0.02)
    assert ledger.totals()["gpu:0"].energy_j == pytest.approx(18.0, rel=0.02)


def test_phase_shorter_than_one_refresh_gets_its_share(clock):
    # A 50 ms phase at steady 250 W: 12.5 J, although the counter never refreshed inside it.
    with SimulatedNVML([SimGPU(trace=traces.constant(250.0))], clock=clock) as sim:
        ledger = drive(
            meter_for(sim, clock), clock, 6.0, 7.0, phases=[(6.33, "eval"), (6.38, "train")]
        )
    st = ledger.totals()["gpu:0"]
    assert st.phase_j["eval"] == pytest.approx(12.5, rel=0.02)
    assert st.energy_j == pytest.approx(250.0, rel=0.005)
