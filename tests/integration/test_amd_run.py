"""A tracked run on a simulated AMD GPU, found by the default meter registry (no NVIDIA
driver here), measured within the same bound as the NVML path."""

from __future__ import annotations

import time

import pytest

import greenml
from greenml.testing import SimAMDGPU, SimulatedAMDSMI, traces

pytestmark = pytest.mark.slow


def test_default_meters_find_and_measure_the_amd_gpu(tmp_path):
    amd = SimulatedAMDSMI([SimAMDGPU(trace=traces.constant(300.0))])
    with amd, greenml.track(location="FR", interval_s=0.05, powercap_root=str(tmp_path)) as run:
        time.sleep(1.2)
        with run.phase("eval"):
            time.sleep(0.4)
    fp = run.footprint
    gpus = [d for d in fp.devices if d.kind == "gpu"]
    assert [(d.name, d.method, d.simulated) for d in gpus] == [
        ("AMD Instinct MI300X", "counter", True)
    ]
    assert "no_gpu" not in fp.flags and fp.measurement == "simulated"
    # 300 W for the tracked duration, by hand, within the NVML path's 0.5 %
    assert fp.gpu_energy_kwh * 3.6e6 == pytest.approx(300.0 * fp.duration_s, rel=0.005)
    eval_fp = fp.phases["eval"]
    assert eval_fp.gpu_energy_kwh * 3.6e6 == pytest.approx(300.0 * eval_fp.duration_s, rel=0.02)
