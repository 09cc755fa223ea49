"""The simulated driver seen by other processes, as torchrun's workers would see it.

The parent exports the simulation (a shim compiled with the system C compiler, found through
LD_LIBRARY_PATH); a child process runs ``greenml.track()`` with its default meters and no
knowledge of the simulation, and must measure exactly the GPU its CUDA_VISIBLE_DEVICES names.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from greenml.testing import FakePowercap, SimGPU, SimulatedNVML, traces

needs_cc = pytest.mark.skipif(
    shutil.which(os.environ.get("CC", "cc")) is None,
    reason="needs a C compiler to build the simulated libnvidia-ml.so.1",
)

CHILD = textwrap.dedent(
    """
    import json, sys, time
    import greenml
    with greenml.track(powercap_root=sys.argv[1]) as run:
        time.sleep(1.2)
        with run.phase("eval"):
            time.sleep(0.4)
    fp = run.footprint
    print(json.dumps({
        "gpu_j": fp.gpu_energy_kwh * 3.6e6,
        "duration_s": fp.duration_s,
        "eval_j": fp.phases["eval"].gpu_energy_kwh * 3.6e6,
        "eval_s": fp.phases["eval"].duration_s,
        "devices": [[d.kind, d.uuid, d.method] for d in fp.devices],
        "measurement": fp.measurement,
    }))
    """
)


@needs_cc
def test_child_process_measures_only_its_visible_gpu(tmp_path):
    sim = SimulatedNVML(
        [SimGPU(trace=traces.constant(250.0)), SimGPU(trace=traces.constant(420.0))]
    )
    env = {**os.environ, **sim.export(tmp_path / "driver")}
    env["CUDA_VISIBLE_DEVICES"] = sim.gpus[1].uuid
    env["AWS_REGION"] = "us-east-1"  # as on an AWS host: the location is detected
    powercap = tmp_path / "powercap"
    FakePowercap(powercap).add_package(0)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(powercap)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    gpus = [d for d in result["devices"] if d[0] == "gpu"]
    assert gpus == [["gpu", sim.gpus[1].uuid, "counter"]]
    assert result["measurement"] == "simulated"
    # 420 W constant: by hand, 420 x the duration the child measured.
    assert result["gpu_j"] == pytest.approx(420.0 * result["duration_s"], rel=0.005)
    assert result["eval_j"] == pytest.approx(420.0 * result["eval_s"], rel=0.02)
