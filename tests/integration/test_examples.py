"""The plain-loop and SLURM examples in integrations/, run as a user would, against
greenml's simulated GPUs (a real process; SLURM's srun and scontrol played by scripts)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from greenml import schema
from greenml.progress import CHECK_S, FRESH_S
from greenml.testing import SimGPU, SimulatedNVML, traces

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which(os.environ.get("CC", "cc")) is None,
        reason="needs a C compiler to build the simulated libnvidia-ml.so.1",
    ),
]

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path, sim, **more):
    env = {**os.environ, **sim.export(tmp_path / "driver")}
    env.update(GREENML_LOCATION="FR", GREENML_PUE="1.0", GREENML_CPU_TDP_W="10", **more)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def test_plain_loop_stops_at_the_step_where_its_budget_is_crossed(tmp_path):
    sim = SimulatedNVML([SimGPU(trace=traces.constant(1000.0))])
    env = _env(tmp_path, sim, GREENML_LOG_TO_MLFLOW="false", GREENML_JOURNAL="false")
    budget_kwh = 1000.0 * 2.0 / 3.6e6  # about 2 s of the GPU alone
    out = subprocess.run(
        [sys.executable, str(ROOT / "integrations" / "pytorch" / "train.py"), "--steps", "400",
         "--min-step-s", "0.02", "--max-energy-kwh", str(budget_kwh), "--stop-on-budget"],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    stopped = int(re.search(r"stopped at step (\d+)", out.stdout).group(1))
    steps = int(re.search(r"steps=(\d+)", out.stdout).group(1))
    energy = float(re.search(r"energy_kwh=([0-9.e-]+)", out.stdout).group(1))
    assert steps == stopped  # the step that raised had trained: it is counted
    assert "budget crossed: max_energy_kwh=" in out.stderr  # a warning, with no logging set up
    # the run's mean power (GPU 1000 W, CPU and RAM estimated) says when the budget was
    # crossed; the loop must stop after it, within the documented detection time
    watts = energy * 3.6e6 / (steps * 0.02)
    crossed_step = budget_kwh * 3.6e6 / watts / 0.02
    late_steps = (CHECK_S + FRESH_S + 0.3) / 0.02
    assert crossed_step <= stopped <= crossed_step + late_steps, (crossed_step, stopped)
    assert steps < 400


FAKE_SRUN = textwrap.dedent(
    """\
    #!/usr/bin/env python3
    # srun, played: SLURM_NNODES nodes x SLURM_NTASKS_PER_NODE tasks on this machine
    import os, subprocess, sys
    nodes, per = int(os.environ["SLURM_NNODES"]), int(os.environ["SLURM_NTASKS_PER_NODE"])
    procs = []
    for node in range(nodes):
        for local in range(per):
            env = dict(os.environ, SLURM_PROCID=str(node * per + local),
                       SLURM_NTASKS=str(nodes * per), SLURM_LOCALID=str(local),
                       SLURM_NODEID=str(node), GREENML_NODE=f"node-{node}")
            procs.append(subprocess.Popen(sys.argv[1:], env=env))
    sys.exit(max(p.wait() for p in procs))
    """
)
FAKE_SCONTROL = "#!/bin/sh\necho 127.0.0.1\necho 127.0.0.2\n"


def test_the_sbatch_script_logs_one_run_with_the_sum_of_the_nodes(
    tmp_path, mlflow_server, plain_cwd
):
    from mlflow import MlflowClient

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    sim = SimulatedNVML([SimGPU(trace=traces.constant(w)) for w in (200.0, 300.0)])
    experiment = f"slurm-{uuid.uuid4().hex[:8]}"
    env = _env(
        tmp_path,
        sim,
        PATH=f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}",
        MLFLOW_TRACKING_URI=mlflow_server.uri,
        GREENML_EXPERIMENT=experiment,
        SLURM_NNODES="2",
        SLURM_JOB_NUM_NODES="2",
        SLURM_NTASKS_PER_NODE="2",
        SLURM_JOB_ID="777",
        SLURM_JOB_NODELIST="gpu[01-02]",
        MASTER_PORT=str(_free_port()),
        STEPS="40",
    )
    out = subprocess.run(
        ["bash", str(ROOT / "integrations" / "slurm" / "train.sbatch"), "--min-step-s", "0.05",
         "--gpu-per-rank"],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    client = MlflowClient(tracking_uri=mlflow_server.uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    m, tags = runs[0].data.metrics, runs[0].data.tags
    per_node = [m[schema.node_metric(f"node-{i}", schema.METRIC_GPU_ENERGY_KWH)] for i in (0, 1)]
    for kwh, node in zip(per_node, ("node-0", "node-1"), strict=True):
        seconds = m[schema.node_metric(node, schema.METRIC_DURATION_S)]
        assert kwh * 3.6e6 == pytest.approx(500.0 * seconds, rel=0.05)  # GPUs 0 and 1, once
    assert m[schema.METRIC_GPU_ENERGY_KWH] == pytest.approx(sum(per_node), rel=1e-9)
    assert tags[schema.TAG_SLURM_JOB_ID] == "777"
    assert tags[schema.TAG_SLURM_NODELIST] == "gpu[01-02]"
    assert tags[schema.TAG_HOSTS] == "2" and tags[schema.TAG_WORLD_SIZE] == "4"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
