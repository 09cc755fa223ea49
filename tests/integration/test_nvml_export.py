"""The simulated driver exported to child processes (a compiled shim, real subprocesses)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from greenml.testing import SimGPU, SimulatedNVML, traces

NEEDS_CC = pytest.mark.skipif(
    shutil.which(os.environ.get("CC", "cc")) is None,
    reason="needs a C compiler to build the shim",
)


CHILD = r"""
import json, time, pynvml
pynvml.nvmlInit()
out = {"count": pynvml.nvmlDeviceGetCount(), "devices": []}
for i in range(out["count"]):
    h = pynvml.nvmlDeviceGetHandleByIndex(i)
    dev = {"name": pynvml.nvmlDeviceGetName(h), "uuid": pynvml.nvmlDeviceGetUUID(h)}
    dev["t_before"] = time.monotonic()
    try:
        dev["energy_mj"] = pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
    except pynvml.NVMLError as e:
        dev["energy_mj"] = type(e).__name__
    dev["t_after"] = time.monotonic()
    dev["power_mw"] = pynvml.nvmlDeviceGetPowerUsage(h)
    out["devices"].append(dev)
pynvml.nvmlShutdown()
print(json.dumps(out))
"""


@NEEDS_CC
def test_child_process_sees_the_exported_devices(tmp_path) -> None:
    epoch_s = time.monotonic() - 5.0  # the driver has been up for 5 s
    gpus = [
        SimGPU("NVIDIA H100 80GB HBM3", traces.constant(250.0), counter_start_mj=1_000_000),
        SimGPU(
            "Tesla P100-PCIE-16GB",
            traces.constant(120.0),
            has_counter=False,
            architecture="pascal",
            uuid="GPU-00000000-1111-2222-3333-444444444444",
        ),
    ]
    sim = SimulatedNVML(gpus, epoch_s=epoch_s, counter_refresh_s=0.1)
    env = sim.export(tmp_path)
    assert (tmp_path / "libnvidia-ml.so.1").is_file()
    child = subprocess.run(
        [sys.executable, "-c", CHILD],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    seen = json.loads(child.stdout)
    assert seen["count"] == 2
    h100, p100 = seen["devices"]
    assert (h100["name"], h100["uuid"]) == ("NVIDIA H100 80GB HBM3", sim.gpus[0].uuid)
    assert (p100["name"], p100["uuid"]) == (
        "Tesla P100-PCIE-16GB",
        "GPU-00000000-1111-2222-3333-444444444444",
    )
    # 250 W since the epoch, counted up to the last 0.1 s refresh before the read
    low = 1_000_000 + 250_000 * (h100["t_before"] - epoch_s - 0.1) - 1
    high = 1_000_000 + 250_000 * (h100["t_after"] - epoch_s) + 1
    assert low <= h100["energy_mj"] <= high
    assert h100["power_mw"] == 250_000
    assert p100["energy_mj"] == "NVMLError_NotSupported"
    assert p100["power_mw"] == 120_000


@NEEDS_CC
def test_shim_without_config_fails_nvml_init_cleanly(tmp_path) -> None:
    env = SimulatedNVML([SimGPU()]).export(tmp_path)
    child_env = {**os.environ, "LD_LIBRARY_PATH": env["LD_LIBRARY_PATH"]}
    child_env.pop("GREENML_SIM_NVML_CONFIG", None)
    code = (
        "import pynvml\n"
        "try:\n    pynvml.nvmlInit()\n"
        "except pynvml.NVMLError as e:\n    print(type(e).__name__)\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", code],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "NVMLError_DriverNotLoaded"
    assert "GREENML_SIM_NVML_CONFIG is not set" in child.stderr
