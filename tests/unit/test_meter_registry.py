"""Meter discovery: the ordered registry in greenml.meters.registry.

This machine has neither ``libnvidia-ml`` nor ``amdsmi``: without a simulation
installed, both GPU vendors are absent.
"""

from __future__ import annotations

import sys
import warnings

import pytest

from greenml import config
from greenml.errors import ConfigError, GreenMLWarning, NotSupportedError
from greenml.meters import registry
from greenml.meters.amdsmi import AmdMeter
from greenml.meters.cpu import CpuEstimateMeter
from greenml.meters.nvml import NvmlMeter
from greenml.meters.rapl import RaplDramMeter, RaplMeter
from greenml.meters.registry import (
    AMDSMI_NOT_INSTALLED,
    DISCOVERERS,
    GPU_VENDORS,
    NVML_LIBRARY_NOT_FOUND,
    Context,
    GpuVendor,
    _nvml_library_loads,
    default_meters,
    discover_cpu,
    discover_gpu,
    discover_ram,
)
from greenml.testing import (
    FakePowercap,
    ManualClock,
    SimAMDGPU,
    SimGPU,
    SimulatedAMDSMI,
    SimulatedNVML,
)


@pytest.fixture
def powercap(tmp_path):
    FakePowercap(tmp_path).add_package(0, dram=True)
    return str(tmp_path)


@pytest.fixture
def no_amdsmi(monkeypatch):
    monkeypatch.setitem(sys.modules, "amdsmi", None)  # as if amdsmi were not installed


def settings(**kw):
    return config.Settings(**kw)


def test_order_is_gpu_vendors_then_cpu_then_ram():
    assert [v.name for v in GPU_VENDORS] == ["NVIDIA", "AMD"]
    assert (discover_gpu, discover_cpu, discover_ram) == DISCOVERERS


def test_no_gpu_of_either_vendor_warns_once_and_flags_no_gpu(powercap, no_amdsmi, capfd):
    with pytest.warns(GreenMLWarning) as caught:
        meters, flags = default_meters(settings(powercap_root=powercap), clock=ManualClock(0.0))
    assert flags == ["no_gpu"]
    assert [type(m) for m in meters] == [RaplMeter, RaplDramMeter]
    gpu_warnings = [str(w.message) for w in caught if "GPU" in str(w.message)]
    assert len(gpu_warnings) == 1
    assert "no GPU measured" in gpu_warnings[0] and "flagged no_gpu" in gpu_warnings[0]
    assert "NVIDIA" in gpu_warnings[0] and "AMD" in gpu_warnings[0]
    assert capfd.readouterr() == ("", "")  # the AMD discoverer prints nothing


def test_gpu_ids_without_any_gpu_is_a_config_error(powercap, no_amdsmi):
    with pytest.raises(ConfigError, match=r"gpu_ids=\[0\] but no NVIDIA GPU can be measured"):
        default_meters(settings(gpu_ids=(0,), powercap_root=powercap), clock=ManualClock(0.0))


def test_nvidia_first_and_amd_not_consulted(powercap):
    clock = ManualClock(0.0)
    amd = SimulatedAMDSMI([SimAMDGPU()], clock=clock)
    with SimulatedNVML([SimGPU()], clock=clock), amd, warnings.catch_warnings():
        warnings.simplefilter("error", GreenMLWarning)
        meters, flags = default_meters(settings(powercap_root=powercap), clock=clock, environ={})
        for m in meters:
            m.close()
    assert isinstance(meters[0], NvmlMeter) and flags == []
    assert sum(amd.calls.values()) == 0


def test_amd_when_there_is_no_nvidia(powercap):
    clock = ManualClock(0.0)
    with SimulatedAMDSMI([SimAMDGPU(), SimAMDGPU()], clock=clock), warnings.catch_warnings():
        warnings.simplefilter("error", GreenMLWarning)
        meters, flags = default_meters(settings(powercap_root=powercap), clock=clock, environ={})
        for m in meters:
            m.close()
    assert isinstance(meters[0], AmdMeter) and flags == []
    assert [c.key for c in meters[0].channels()] == ["gpu:0", "gpu:1"]


@pytest.mark.skipif(
    _nvml_library_loads(), reason="libnvidia-ml.so.1 loads here: NVML is not absent"
)
def test_without_the_nvml_library_the_quick_answer_is_nvml_meters_own(monkeypatch):
    # The registry tells that NVML is absent without importing pynvml; in NvmlMeter's words.
    with pytest.raises(NotSupportedError) as real:
        NvmlMeter(environ={})
    assert str(real.value) == NVML_LIBRARY_NOT_FOUND
    monkeypatch.delitem(sys.modules, "pynvml")  # a fresh process: pynvml not imported yet
    ctx = Context(settings(), ManualClock(0.0), {})
    with pytest.raises(NotSupportedError) as quick:
        GPU_VENDORS[0].build(ctx)
    assert str(quick.value) == NVML_LIBRARY_NOT_FOUND
    assert "pynvml" not in sys.modules


def test_without_amdsmi_the_quick_answer_is_amd_meters_own(monkeypatch):
    monkeypatch.setitem(sys.modules, "amdsmi", None)  # import amdsmi fails: not installed
    with pytest.raises(NotSupportedError) as real:
        AmdMeter(environ={})
    assert str(real.value) == AMDSMI_NOT_INSTALLED
    monkeypatch.delitem(sys.modules, "amdsmi")
    monkeypatch.setattr(registry, "_installed", lambda module: module != "amdsmi")
    ctx = Context(settings(), ManualClock(0.0), {})
    with pytest.raises(NotSupportedError) as quick:
        GPU_VENDORS[1].build(ctx)
    assert str(quick.value) == AMDSMI_NOT_INSTALLED
    assert "amdsmi" not in sys.modules


def test_a_config_error_from_a_vendor_stops_discovery(powercap):
    tried = []

    def bad(ctx):
        tried.append("bad")
        raise ConfigError("gpu_ids: 9 is not a GPU this job can see")

    def never(ctx):  # pragma: no cover - must not run
        tried.append("never")
        raise AssertionError

    ctx = Context(settings(gpu_ids=(9,)), ManualClock(0.0), {})
    vendors = (GpuVendor("A", bad), GpuVendor("B", never))
    with pytest.raises(ConfigError, match="9 is not a GPU"):
        discover_gpu(ctx, [], vendors)
    assert tried == ["bad"]


def test_cpu_estimate_with_the_tdp_setting_when_rapl_is_missing(tmp_path):
    ctx = Context(settings(powercap_root=str(tmp_path), cpu_tdp_w=125.0), ManualClock(0.0), {})
    flags: list[str] = []
    (meter,) = discover_cpu(ctx, flags)
    assert isinstance(meter, CpuEstimateMeter)
    assert meter.tdp_per_socket_w == 125.0
    assert flags == []


def test_a_meter_that_cannot_be_built_is_flagged(monkeypatch, tmp_path):
    import greenml.meters.ram as ram

    def broken(**kw):
        raise RuntimeError("psutil is broken")

    monkeypatch.setattr(ram, "make_ram_meter", broken)
    ctx = Context(settings(powercap_root=str(tmp_path)), ManualClock(0.0), {})
    flags: list[str] = []
    with pytest.warns(GreenMLWarning, match="RAM energy not measured .*flagged no_ram"):
        assert discover_ram(ctx, flags) == []
    assert flags == ["no_ram"]
