"""The simulated NVML driver, driven through pynvml's public functions.

Expected figures are worked out by hand from the traces' definitions (a constant 300 W
for 1.25 s read with a 0.1 s refresh is 300 W x 1.2 s = 360 J), never read back from the
simulation's own helpers.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time

import pynvml
import pytest

from greenml.testing import ManualClock, SimGPU, SimulatedNVML, traces

NEEDS_CC = pytest.mark.skipif(
    shutil.which(os.environ.get("CC", "cc")) is None,
    reason="needs a C compiler to build the shim",
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start_s=1000.0)


def handle(i: int = 0):
    return pynvml.nvmlDeviceGetHandleByIndex(i)


# -- traces -------------------------------------------------------------------------------


def test_steps_trace_by_hand() -> None:
    t = traces.steps([(2.0, 100.0), (1.0, 400.0)])
    assert t.power_w(-5.0) == 100.0  # before 0: the first value
    assert t.power_w(1.999) == 100.0
    assert t.power_w(2.0) == 400.0  # segments are closed on the left
    assert t.power_w(50.0) == 400.0  # not repeating: the last value holds
    assert t.energy_j(0.0, 4.0) == pytest.approx(2 * 100 + 1 * 400 + 1 * 400)
    assert t.energy_j(-1.0, 1.0) == pytest.approx(2 * 100)
    assert t.mean_w(1.0, 3.0) == pytest.approx((100 + 400) / 2)
    assert t.mean_w(2.5, 2.5) == 400.0


def test_square_and_spiky_shapes() -> None:
    sq = traces.square(high_w=400.0, low_w=100.0, high_s=0.3, low_s=0.2)
    assert [sq.power_w(x) for x in (0.0, 0.29, 0.31, 0.49, 0.5, 0.81)] == [
        400.0,
        400.0,
        100.0,
        100.0,
        400.0,
        100.0,
    ]
    # one period: 0.3 s x 400 W + 0.2 s x 100 W = 140 J
    assert sq.energy_j(0.0, 0.5) == pytest.approx(140.0)
    assert sq.energy_j(0.5, 10.5) == pytest.approx(20 * 140.0)

    sp = traces.spiky(base_w=100.0, spike_w=500.0, spike_s=0.05, period_s=0.1)
    assert sp.power_w(0.0) == 100.0 and sp.power_w(0.06) == 500.0 and sp.power_w(0.11) == 100.0
    assert sp.mean_w(0.0, 1.0) == pytest.approx((0.05 * 100 + 0.05 * 500) / 0.1)


def test_repeat_over_many_periods_matches_a_fine_grid_sum() -> None:
    # Binary-exact times: period 0.5 s = 128 cells of 2**-8 s, high for the first 96
    # cells (0.375 s). Every cell lies inside one segment, so the midpoint sum is exact.
    dt = 2.0**-8
    trace = traces.square(high_w=400.0, low_w=100.0, high_s=0.375, low_s=0.125)
    first, last = 37, 1000 * 256 + 411  # cells: about 2000 periods
    brute = sum((400.0 if k % 128 < 96 else 100.0) * dt for k in range(first, last))
    assert trace.energy_j(first * dt, last * dt) == pytest.approx(brute, rel=1e-12)
    assert trace.mean_w(first * dt, last * dt) == pytest.approx(brute / ((last - first) * dt))


def test_repeat_costs_the_same_for_any_span() -> None:
    trace = traces.square(high_w=400.0, low_w=100.0, high_s=0.375, low_s=0.125)
    # 10**9 periods of 0.375 x 400 + 0.125 x 100 = 162.5 J; a loop per period would hang.
    assert trace.energy_j(0.0, 0.5e9) == pytest.approx(162.5e9, rel=1e-12)
    assert trace.energy_j(0.5e9, 0.5e9 + 0.25) == pytest.approx(0.25 * 400.0, rel=1e-6)


@pytest.mark.parametrize(
    ("build", "bad"),
    [
        (lambda: traces.constant(-5.0), "-5.0"),
        (lambda: traces.steps([(1.0, 100.0), (0.0, 50.0)]), "0.0"),
        (lambda: traces.steps([(-2.0, 100.0)]), "-2.0"),
        (lambda: traces.steps([(1.0, float("nan"))]), "nan"),
        (lambda: traces.square(300.0, -1.0, 0.1, 0.1), "-1.0"),
        (lambda: traces.spiky(100.0, 500.0, 0.2, 0.1), "0.2"),
    ],
)
def test_trace_validation_names_the_bad_value(build, bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape(bad)):
        build()


def test_empty_trace_and_backwards_interval_are_rejected() -> None:
    with pytest.raises(ValueError, match="at least one"):
        traces.steps([])
    with pytest.raises(ValueError, match="a <= b"):
        traces.constant(1.0).energy_j(2.0, 1.0)


# -- energy counter -----------------------------------------------------------------------


def test_counter_is_stale_within_a_refresh_and_jumps_at_it(clock: ManualClock) -> None:
    gpu = SimGPU(trace=traces.constant(300.0), counter_start_mj=1_000_000)
    with SimulatedNVML([gpu], clock=clock, counter_refresh_s=0.1) as sim:
        pynvml.nvmlInit()
        h = handle()
        assert pynvml.nvmlDeviceGetTotalEnergyConsumption(h) == 1_000_000  # not zero
        clock.advance(1.25)  # last refresh at 1.2 s: 300 W x 1.2 s = 360 J
        assert pynvml.nvmlDeviceGetTotalEnergyConsumption(h) == 1_360_000
        clock.advance(0.04)  # 1.29 s: same refresh interval, same stale value
        assert pynvml.nvmlDeviceGetTotalEnergyConsumption(h) == 1_360_000
        clock.advance(0.01)  # 1.30 s: refreshed, 300 W x 1.3 s = 390 J
        assert pynvml.nvmlDeviceGetTotalEnergyConsumption(h) == 1_390_000
        assert sim.calls["nvmlDeviceGetTotalEnergyConsumption"] == 4
        assert sim.time_s() == pytest.approx(1.3)


def test_counter_follows_a_step_trace(clock: ManualClock) -> None:
    gpu = SimGPU(trace=traces.steps([(0.5, 100.0), (1.0, 400.0)]), counter_start_mj=7)
    with SimulatedNVML([gpu], clock=clock, counter_refresh_s=0.25):
        pynvml.nvmlInit()
        clock.advance(1.0)  # 0.5 s x 100 W + 0.5 s x 400 W = 250 J
        assert pynvml.nvmlDeviceGetTotalEnergyConsumption(handle()) == 7 + 250_000
        clock.advance(2.2)  # 3.2 s, refreshed at 3.0: 50 J + 1 s x 400 + 1.5 s x 400 (held)
        assert pynvml.nvmlDeviceGetTotalEnergyConsumption(handle()) == 7 + 1_050_000


def test_device_without_a_counter(clock: ManualClock) -> None:
    with SimulatedNVML([SimGPU("Tesla P100-PCIE-16GB", has_counter=False)], clock=clock):
        pynvml.nvmlInit()
        with pytest.raises(pynvml.NVMLError_NotSupported):
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle())
        assert pynvml.nvmlDeviceGetPowerUsage(handle()) == 300_000


# -- power readings -----------------------------------------------------------------------


def test_averaged_vs_instantaneous_power_on_a_spiky_trace(clock: ManualClock) -> None:
    # 50 ms spikes to 500 W close every 100 ms period; the rest is 100 W. True mean: 300 W.
    spiky = traces.spiky(base_w=100.0, spike_w=500.0, spike_s=0.05, period_s=0.1)
    gpus = [
        SimGPU("NVIDIA H100 80GB HBM3", spiky, power_reading="average_1s"),
        SimGPU(
            "NVIDIA A100-SXM4-40GB", spiky, power_reading="instantaneous", architecture="ampere"
        ),
    ]
    with SimulatedNVML(gpus, clock=clock):
        pynvml.nvmlInit()
        clock.advance(2.0)
        for step in (0.0, 0.037, 0.043, 0.02):
            clock.advance(step)
            # 1 s window = 10 whole periods, whatever the phase: the true mean
            assert pynvml.nvmlDeviceGetPowerUsage(handle(0)) == 300_000
            # 25 ms windows at each 100 ms boundary only ever see the base
            assert pynvml.nvmlDeviceGetPowerUsage(handle(1)) == 100_000


def test_power_readings_lag_a_step(clock: ManualClock) -> None:
    step = traces.steps([(1.0, 100.0), (1.0, 400.0)])
    gpus = [
        SimGPU(trace=step, power_reading="average_1s"),
        SimGPU(trace=step, power_reading="instantaneous", architecture="ampere"),
    ]
    with SimulatedNVML(gpus, clock=clock):
        pynvml.nvmlInit()
        clock.advance(1.02)  # last full window [0.9, 0.925]: still 100 W
        assert pynvml.nvmlDeviceGetPowerUsage(handle(1)) == 100_000
        clock.advance(0.005)  # window [1.0, 1.025] is complete: 400 W
        assert pynvml.nvmlDeviceGetPowerUsage(handle(1)) == 400_000
        clock.advance(0.475)  # 1.5 s: mean over [0.5, 1.5] = (0.5 x 100 + 0.5 x 400) / 1
        assert pynvml.nvmlDeviceGetPowerUsage(handle(0)) == 250_000


# -- faults -------------------------------------------------------------------------------


def test_gpu_lost_mid_run(clock: ManualClock) -> None:
    with SimulatedNVML([SimGPU(lost_at_s=2.0), SimGPU()], clock=clock):
        pynvml.nvmlInit()
        h = handle(0)
        clock.advance(1.5)
        assert pynvml.nvmlDeviceGetPowerUsage(h) == 300_000
        clock.advance(0.5)  # 2.0 s: lost from here on
        for read in (
            pynvml.nvmlDeviceGetTotalEnergyConsumption,
            pynvml.nvmlDeviceGetPowerUsage,
            pynvml.nvmlDeviceGetName,
            pynvml.nvmlDeviceGetEnforcedPowerLimit,
        ):
            with pytest.raises(pynvml.NVMLError_GpuIsLost):
                read(h)
        with pytest.raises(pynvml.NVMLError_GpuIsLost):
            handle(0)
        assert pynvml.nvmlDeviceGetPowerUsage(handle(1)) == 300_000  # the other GPU is fine


def test_not_supported_fields(clock: ManualClock) -> None:
    gpu = SimGPU(not_supported={"power", "power_limit", "architecture"})
    with SimulatedNVML([gpu], clock=clock):
        pynvml.nvmlInit()
        h = handle()
        for read in (
            pynvml.nvmlDeviceGetPowerUsage,
            pynvml.nvmlDeviceGetEnforcedPowerLimit,
            pynvml.nvmlDeviceGetPowerManagementLimit,
            pynvml.nvmlDeviceGetArchitecture,
        ):
            with pytest.raises(pynvml.NVMLError_NotSupported):
                read(h)
        assert pynvml.nvmlDeviceGetTotalEnergyConsumption(h) == 123_456_789


def test_unknown_error_window(clock: ManualClock) -> None:
    with SimulatedNVML([SimGPU(unknown_error_windows=((1.0, 1.5),))], clock=clock):
        pynvml.nvmlInit()
        h = handle()
        clock.advance(1.2)
        with pytest.raises(pynvml.NVMLError_Unknown):
            pynvml.nvmlDeviceGetPowerUsage(h)
        with pytest.raises(pynvml.NVMLError_Unknown):
            pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
        assert pynvml.nvmlDeviceGetName(h) == "NVIDIA H100 80GB HBM3"
        clock.advance(0.3)  # 1.5 s: the window is half-open
        assert pynvml.nvmlDeviceGetTotalEnergyConsumption(h) == 123_456_789 + 450_000


def test_static_fields(clock: ManualClock) -> None:
    gpu = SimGPU(architecture="ampere", power_limit_w=400.0)
    with SimulatedNVML([gpu], clock=clock, driver_version="535.104.05"):
        pynvml.nvmlInit()
        h = handle()
        assert pynvml.nvmlSystemGetDriverVersion() == "535.104.05"
        assert pynvml.nvmlDeviceGetArchitecture(h) == pynvml.NVML_DEVICE_ARCH_AMPERE
        assert pynvml.nvmlDeviceGetEnforcedPowerLimit(h) == 400_000
        assert pynvml.nvmlDeviceGetPowerManagementLimit(h) == 400_000
        assert pynvml.nvmlErrorString(pynvml.NVML_ERROR_GPU_IS_LOST) == "GPU is lost"


# -- devices, MIG, UUIDs ------------------------------------------------------------------


def test_handles_by_index_and_uuid(clock: ManualClock) -> None:
    uuid = "GPU-12345678-9abc-def0-1234-56789abcdef0"
    with SimulatedNVML([SimGPU(), SimGPU(uuid=uuid)], clock=clock):
        pynvml.nvmlInit()
        assert pynvml.nvmlDeviceGetCount() == 2
        assert pynvml.nvmlDeviceGetIndex(pynvml.nvmlDeviceGetHandleByUUID(uuid)) == 1
        assert pynvml.nvmlDeviceGetUUID(handle(1)) == uuid
        generated = pynvml.nvmlDeviceGetUUID(handle(0))
        assert re.fullmatch(r"GPU-[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}", generated)
        with pytest.raises(pynvml.NVMLError_NotFound):
            pynvml.nvmlDeviceGetHandleByUUID("GPU-00000000-0000-0000-0000-000000000000")
        with pytest.raises(pynvml.NVMLError_InvalidArgument):
            handle(2)
    # default UUIDs are deterministic: the same index gives the same UUID in a new driver
    with SimulatedNVML([SimGPU()], clock=clock):
        pynvml.nvmlInit()
        assert pynvml.nvmlDeviceGetUUID(handle(0)) == generated


def test_mig_handles_and_parent_mapping(clock: ManualClock) -> None:
    gpus = [
        SimGPU("NVIDIA A100-SXM4-40GB", architecture="ampere", mig_instances=3),
        SimGPU("NVIDIA H100 80GB HBM3"),
        SimGPU("Tesla V100-SXM2-16GB", architecture="volta"),
    ]
    with SimulatedNVML(gpus, clock=clock):
        pynvml.nvmlInit()
        parent = handle(0)
        assert pynvml.nvmlDeviceGetMigMode(parent) == [1, 1]
        assert pynvml.nvmlDeviceGetMaxMigDeviceCount(parent) == 7
        migs = [pynvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, j) for j in range(3)]
        with pytest.raises(pynvml.NVMLError_NotFound):
            pynvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, 3)
        mig_uuids = [pynvml.nvmlDeviceGetUUID(m) for m in migs]
        assert all(u.startswith("MIG-") for u in mig_uuids) and len(set(mig_uuids)) == 3
        for m in migs:
            assert pynvml.nvmlDeviceIsMigDeviceHandle(m).value == 1
            assert pynvml.nvmlDeviceGetName(m).startswith("NVIDIA A100-SXM4-40GB")
            back = pynvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(m)
            assert pynvml.nvmlDeviceGetIndex(back) == 0
            with pytest.raises(pynvml.NVMLError_NotSupported):
                pynvml.nvmlDeviceGetPowerUsage(m)
            with pytest.raises(pynvml.NVMLError_NotSupported):
                pynvml.nvmlDeviceGetTotalEnergyConsumption(m)
        by_uuid = pynvml.nvmlDeviceGetHandleByUUID(mig_uuids[2])
        assert pynvml.nvmlDeviceIsMigDeviceHandle(by_uuid).value == 1
        assert pynvml.nvmlDeviceGetUUID(by_uuid) == mig_uuids[2]
        assert pynvml.nvmlDeviceIsMigDeviceHandle(parent).value == 0
        with pytest.raises(pynvml.NVMLError_InvalidArgument):
            pynvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(parent)
        # MIG-capable but off; and a GPU that has no MIG at all
        assert pynvml.nvmlDeviceGetMigMode(handle(1)) == [0, 0]
        assert pynvml.nvmlDeviceGetMaxMigDeviceCount(handle(1)) == 0
        with pytest.raises(pynvml.NVMLError_NotSupported):
            pynvml.nvmlDeviceGetMigMode(handle(2))


def test_simgpu_validation() -> None:
    with pytest.raises(ValueError, match="'fermi'"):
        SimGPU(architecture="fermi")
    with pytest.raises(ValueError, match="'volta'"):
        SimGPU(architecture="volta", mig_instances=2)
    with pytest.raises(ValueError, match="temperature"):
        SimGPU(not_supported={"temperature"})
    with pytest.raises(ValueError, match="'sometimes'"):
        SimGPU(power_reading="sometimes")
    with pytest.raises(ValueError, match="share the UUID"):
        SimulatedNVML([SimGPU(uuid="GPU-same"), SimGPU(uuid="GPU-same")])


# -- library lifecycle and pynvml state ---------------------------------------------------


def test_install_uninstall_restores_pynvml_state(clock: ManualClock) -> None:
    lib_before = pynvml.nvmlLib
    refcount_before = pynvml._nvmlLib_refcount
    cache_before = dict(pynvml._nvmlGetFunctionPointer_cache)
    outer = SimulatedNVML([SimGPU("outer GPU")], clock=clock)
    inner = SimulatedNVML([SimGPU("inner GPU"), SimGPU("inner GPU")], clock=clock)
    with outer:
        assert pynvml.nvmlLib is not lib_before
        pynvml.nvmlInit()
        assert pynvml.nvmlDeviceGetName(handle()) == "outer GPU"
        with inner:
            pynvml.nvmlInit()
            assert pynvml.nvmlDeviceGetCount() == 2
            assert pynvml.nvmlDeviceGetName(handle()) == "inner GPU"
        assert pynvml.nvmlDeviceGetCount() == 1  # outer is back, cache flushed
        assert pynvml._nvmlLib_refcount == 1
        pynvml.nvmlShutdown()
    assert pynvml.nvmlLib is lib_before
    assert pynvml._nvmlLib_refcount == refcount_before
    assert pynvml._nvmlGetFunctionPointer_cache == cache_before
    assert not outer.installed and not inner.installed
    with pytest.raises(RuntimeError, match="not installed"):
        outer.uninstall()


def test_init_refcount_and_uninitialized_calls(clock: ManualClock) -> None:
    with SimulatedNVML([SimGPU()], clock=clock) as sim:
        with pytest.raises(pynvml.NVMLError_Uninitialized):
            pynvml.nvmlDeviceGetCount()
        pynvml.nvmlInit()
        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        assert pynvml.nvmlDeviceGetCount() == 1  # still one init outstanding
        pynvml.nvmlShutdown()
        with pytest.raises(pynvml.NVMLError_Uninitialized):
            pynvml.nvmlDeviceGetCount()
        with pytest.raises(pynvml.NVMLError_Uninitialized):
            pynvml.nvmlShutdown()
        assert sim.calls["nvmlInitWithFlags"] == 2


def test_unimplemented_functions_do_not_exist(clock: ManualClock) -> None:
    with SimulatedNVML([SimGPU()], clock=clock):
        pynvml.nvmlInit()
        with pytest.raises(pynvml.NVMLError_FunctionNotFound):
            pynvml.nvmlDeviceGetTemperature(handle(), pynvml.NVML_TEMPERATURE_GPU)


def test_reads_from_two_threads(clock: ManualClock) -> None:
    reads_per_thread = 300
    errors: list[BaseException] = []
    seen: dict[str, list[int]] = {"a": [], "b": []}

    def reader(key: str) -> None:
        try:
            h = handle()
            for _ in range(reads_per_thread):
                seen[key].append(pynvml.nvmlDeviceGetTotalEnergyConsumption(h))
                pynvml.nvmlDeviceGetPowerUsage(h)
        except BaseException as e:
            errors.append(e)

    with SimulatedNVML([SimGPU()], clock=clock) as sim:
        pynvml.nvmlInit()
        threads = [threading.Thread(target=reader, args=(k,)) for k in seen]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            clock.advance(0.01)
            time.sleep(0.0005)
        for t in threads:
            t.join()
        assert errors == []
        for values in seen.values():
            assert len(values) == reads_per_thread
            assert values == sorted(values)  # the counter never goes back
        assert sim.calls["nvmlDeviceGetTotalEnergyConsumption"] == 2 * reads_per_thread
        assert sim.calls["nvmlDeviceGetPowerUsage"] == 2 * reads_per_thread


# -- cross-process ------------------------------------------------------------------------


def test_export_needs_the_shared_monotonic_clock(clock: ManualClock, tmp_path) -> None:
    with pytest.raises(ValueError, match=re.escape("clock=time.monotonic")):
        SimulatedNVML([SimGPU()], clock=clock).export(tmp_path)


def test_export_names_a_missing_compiler(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CC", "/nonexistent/greenml-cc")
    with pytest.raises(RuntimeError, match="/nonexistent/greenml-cc"):
        SimulatedNVML([SimGPU()]).export(tmp_path)
