"""GreenMLCallback on a real Lightning Trainer: a tiny module on the CPU, the simulated
NVIDIA driver at a constant power, and a real MLflow server.

The CPU and DRAM are read through a fake RAPL tree whose counters stand still and the PUE
is 1, so a run's energy is the simulated GPU's alone: ``POWER_W`` x the time measured.
That time is bracketed by hand: it contains the module's ``on_fit_start`` ..
``on_fit_end`` (the callback starts before the first and stops after the second) and lies
inside the ``trainer.fit()`` call. The counter refreshes every ``REFRESH_S``, the slack
allowed at each end.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

pytest.importorskip("lightning", reason="needs the lightning extra (greenml[lightning])")

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import MLFlowLogger
from mlflow.tracking import MlflowClient
from torch.utils.data import DataLoader, TensorDataset

from greenml import schema
from greenml.errors import ConfigError, GreenMLWarning
from greenml.integrations.lightning import GreenMLCallback
from greenml.progress import CHECK_S, FRESH_S
from greenml.testing import FakePowercap, SimGPU, SimulatedNVML, traces

pytestmark = pytest.mark.slow

POWER_W = 400.0
REFRESH_S = 0.1  # the simulated energy counter's refresh period
J_PER_KWH = 3.6e6
BATCH = 8
EXAMPLE = Path(__file__).resolve().parents[2] / "integrations" / "lightning" / "train.py"

needs_cc = pytest.mark.skipif(
    shutil.which(os.environ.get("CC", "cc")) is None,
    reason="needs a C compiler to build the simulated libnvidia-ml.so.1 for the child",
)


class TinyRegressor(LightningModule):
    """A Linear layer on random tensors. ``step_s``/``eval_s``: a controlled time per
    training / validation-or-test batch; ``fail_at``: the global step whose
    ``training_step`` raises. It notes its own times: the fit window, the time spent in
    validation and test steps, and the end of each training batch."""

    def __init__(self, step_s: float = 0.0, eval_s: float = 0.0, fail_at: int | None = None):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.step_s, self.eval_s, self.fail_at = step_s, eval_s, fail_at
        self.fit_window: tuple[float, float] | None = None
        self.eval_time_s = 0.0
        self.step_ends: list[tuple[int, float]] = []

    def _loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def training_step(self, batch, batch_idx):
        if self.global_step == self.fail_at:
            raise RuntimeError("boom in training_step")
        time.sleep(self.step_s)
        loss = self._loss(batch)
        self.log("train_loss", loss)
        return loss

    def _timed_eval(self, batch, name: str) -> None:
        t0 = time.monotonic()
        time.sleep(self.eval_s)
        self.log(name, self._loss(batch))
        self.eval_time_s += time.monotonic() - t0

    def validation_step(self, batch, batch_idx):
        self._timed_eval(batch, "val_loss")

    def test_step(self, batch, batch_idx):
        self._timed_eval(batch, "test_loss")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def setup(self, stage: str) -> None:  # before the callback's on_fit_start
        self.setup_s = time.monotonic()

    def on_fit_start(self) -> None:  # after it
        self._fit_start = time.monotonic()

    def on_fit_end(self) -> None:
        self.fit_window = (self._fit_start, time.monotonic())

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.step_ends.append((self.global_step, time.monotonic()))


def loader(n: int = 64) -> DataLoader:
    return DataLoader(TensorDataset(torch.randn(n, 4), torch.randn(n, 1)), batch_size=BATCH)


def make_trainer(callbacks: list, logger, **kwargs) -> Trainer:
    options = {
        "accelerator": "cpu",
        "devices": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "logger": logger,
        "callbacks": callbacks,
    }
    return Trainer(**{**options, **kwargs})


def gpu_joules(fp) -> float:
    return fp.gpu_energy_kwh * J_PER_KWH


def assert_gpu_energy_between(joules: float, inner_s: float, outer_s: float) -> None:
    """``joules`` is POWER_W over a time between ``inner_s`` and ``outer_s``."""
    assert POWER_W * (inner_s - REFRESH_S) <= joules <= POWER_W * (outer_s + REFRESH_S), (
        joules,
        POWER_W * inner_s,
        POWER_W * outer_s,
    )


def steps_of(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return [m.step for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


@pytest.fixture
def gpu():
    with SimulatedNVML([SimGPU(trace=traces.constant(POWER_W))], counter_refresh_s=REFRESH_S):
        yield


@pytest.fixture
def settings(tmp_path):
    """greenml's keywords for these runs: the GPU's energy only (see the module docstring),
    logged to MLflow (the test folder's greenml.toml turns it off), no journal."""
    root = tmp_path / "powercap"
    FakePowercap(root).add_package(0, dram=True)
    return {
        "location": "FR",
        "pue": 1.0,
        "usd_per_kwh": 0.25,
        "powercap_root": str(root),
        "log_to_mlflow": True,
        "journal": False,
    }


@pytest.fixture
def mlflow_logger(mlflow_server, request):
    return MLFlowLogger(tracking_uri=mlflow_server.uri, experiment_name=request.node.name)


@pytest.fixture
def client(mlflow_server):
    return MlflowClient(mlflow_server.uri)


def test_fit_logs_into_the_mlflow_loggers_run_at_global_steps(gpu, settings, mlflow_logger, client):
    cb = GreenMLCallback(**settings)
    model = TinyRegressor(step_s=0.02, eval_s=0.03)
    trainer = make_trainer([cb], mlflow_logger, max_steps=24, log_every_n_steps=4)
    before = time.monotonic()
    trainer.fit(model, loader(64), loader(16))  # 8 steps an epoch: 3 epochs, 3 validations
    after = time.monotonic()

    fp = cb.footprint
    inner = model.fit_window[1] - model.fit_window[0]
    assert_gpu_energy_between(gpu_joules(fp), inner, after - before)
    assert fp.energy_kwh == pytest.approx(fp.gpu_energy_kwh)  # PUE 1, CPU and RAM still
    assert (fp.steps, fp.samples) == (24, 24 * BATCH)

    run = client.get_run(mlflow_logger.run_id)  # the logger's run, with the module's metrics
    assert run.info.status == "FINISHED"
    assert run.data.tags[schema.TAG_STATUS] == "finished"
    assert {"train_loss", "val_loss"} <= set(run.data.metrics)
    assert run.data.metrics[schema.METRIC_ENERGY_KWH] == pytest.approx(fp.energy_kwh)
    assert run.data.metrics[schema.METRIC_SAMPLES] == 24 * BATCH
    # validation (2 sanity-check batches, then 2 per epoch x 3, 30 ms each) is "eval"
    eval_j = run.data.metrics[schema.metric_phase_energy_kwh("eval")] * J_PER_KWH
    assert eval_j == pytest.approx(fp.phases["eval"].energy_kwh * J_PER_KWH)
    assert POWER_W * (model.eval_time_s - REFRESH_S) <= eval_j < gpu_joules(fp)
    # points at the trainer's global steps: its log cadence, the epoch ends, the end
    steps = steps_of(client, run.info.run_id, schema.METRIC_ENERGY_KWH)
    allowed = {s for s in range(25) if s % 4 == 0} | {8, 16, 24}
    assert set(steps) <= allowed, steps
    assert steps[-1] == 24 and len(steps) >= 2
    assert set(steps_of(client, run.info.run_id, "train_loss")) <= set(range(25))


def test_an_exception_in_training_ends_the_run_failed(gpu, settings, mlflow_logger, client):
    cb = GreenMLCallback(**settings)
    trainer = make_trainer([cb], mlflow_logger, max_steps=20, limit_val_batches=0)
    with pytest.raises(RuntimeError, match="boom in training_step"):
        trainer.fit(TinyRegressor(step_s=0.01, fail_at=5), loader())
    assert cb.footprint is not None and cb.footprint.steps == 5
    run = client.get_run(mlflow_logger.run_id)
    assert run.data.tags[schema.TAG_STATUS] == "failed"
    assert run.info.status == "FAILED"
    assert run.data.metrics[schema.METRIC_ENERGY_KWH] == pytest.approx(cb.footprint.energy_kwh)


def test_a_fit_resumed_from_a_checkpoint_continues_the_cumulative_energy(
    gpu, settings, mlflow_server, client, request, tmp_path
):
    def part(max_steps: int, ckpt_path: Path | None):
        logger = MLFlowLogger(tracking_uri=mlflow_server.uri, experiment_name=request.node.name)
        cb = GreenMLCallback(**settings)
        model = TinyRegressor(step_s=0.02)
        trainer = make_trainer([cb], logger, max_steps=max_steps, limit_val_batches=0)
        before = time.monotonic()
        trainer.fit(model, loader(), ckpt_path=ckpt_path)
        outer = time.monotonic() - before
        inner = model.fit_window[1] - model.fit_window[0]
        return trainer, cb, logger, inner, outer

    trainer1, first, _, inner1, outer1 = part(10, None)
    ckpt = tmp_path / "part-1.ckpt"
    trainer1.save_checkpoint(ckpt)
    kept = torch.load(ckpt, weights_only=False)["callbacks"]["GreenMLCallback"]
    json.dumps(kept)  # what the checkpoint keeps is plain JSON
    trainer2, second, logger2, inner2, outer2 = part(20, ckpt)

    part1_j, total_j = gpu_joules(first.footprint), gpu_joules(second.footprint)
    assert_gpu_energy_between(part1_j, inner1, outer1)
    assert total_j > part1_j
    assert_gpu_energy_between(total_j - part1_j, inner2, outer2)  # part 1 + part 2 by hand
    assert trainer2.global_step == 20
    run = client.get_run(logger2.run_id)
    assert run.data.metrics[schema.METRIC_ENERGY_KWH] == pytest.approx(second.footprint.energy_kwh)
    assert run.data.metrics[schema.METRIC_COST_USD] == pytest.approx(
        second.footprint.energy_kwh * 0.25
    )
    assert max(steps_of(client, logger2.run_id, schema.METRIC_ENERGY_KWH)) == 20


def test_a_budget_stops_training_at_the_expected_step(gpu, settings, mlflow_logger, client):
    step_s = 0.05
    budget_s = 1.0  # the budget lasts 1 s at POWER_W: about step 20
    cb = GreenMLCallback(
        **settings, max_energy_kwh=POWER_W * budget_s / J_PER_KWH, stop_on_budget=True
    )
    model = TinyRegressor(step_s=step_s)
    trainer = make_trainer(
        [cb], mlflow_logger, max_steps=400, limit_val_batches=0, log_every_n_steps=10
    )
    with pytest.warns(GreenMLWarning, match="max_energy_kwh"):
        trainer.fit(model, loader(BATCH * 400))

    # The energy crosses the budget budget_s after the measurement began: between the
    # module's setup and its on_fit_start. The callback stops training at the first
    # step that ends once greenml noticed, which takes at most CHECK_S plus a fresh
    # reading (FRESH_S, and the counter's refresh): docs of greenml.progress.
    latency_s = CHECK_S + FRESH_S + REFRESH_S
    earliest = model.setup_s + budget_s
    latest = model.fit_window[0] + budget_s + latency_s
    ends = model.step_ends

    def first_after(t: float) -> float:  # the first step ending at or after t
        return next((s for s, end in ends if end >= t), float("inf"))

    stopped = trainer.global_step
    assert first_after(earliest) <= stopped <= first_after(latest), (
        stopped,
        first_after(earliest),
        first_after(latest),
        [(s, round(end - model.setup_s, 3)) for s, end in ends[-5:]],
    )
    assert stopped < 400
    assert cb.footprint.energy_kwh * J_PER_KWH >= POWER_W * budget_s
    run = client.get_run(mlflow_logger.run_id)
    assert run.data.tags[schema.TAG_BUDGET_STOP].startswith("max_energy_kwh=")
    assert run.data.tags[schema.TAG_STATUS] == "finished"


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"pue": -1}, "pue"),
        ({"max_energy_kwh": 0}, "max_energy_kwh"),
        ({"stop_on_budget": "perhaps"}, "stop_on_budget"),
        ({"energy_budget": 1.0}, "energy_budget"),
        ({"tokens_per_sample": 0}, "tokens_per_sample"),
        ({"tokens_per_sample": 1.5}, "tokens_per_sample"),
        ({"flops_per_step": float("nan")}, "flops_per_step"),
        ({"flops_per_step": -5}, "flops_per_step"),
        ({"location": "Narnia"}, "location='Narnia' is invalid"),  # factors, at build time
        ({"location": None}, "the job's location is unknown"),
    ],
)
def test_a_bad_argument_is_a_config_error_naming_it(kwargs, named):
    with pytest.raises(ConfigError, match=named):
        GreenMLCallback(**kwargs)


def test_without_mlflow_logger_greenml_opens_a_run_of_its_own(
    gpu, settings, mlflow_server, client, request, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    cb = GreenMLCallback(**settings, experiment=request.node.name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):  # two fits: two runs, one message
            trainer = make_trainer([cb], False, max_steps=6, limit_val_batches=0)
            trainer.fit(TinyRegressor(), loader())
    told = [w for w in caught if "no MLFlowLogger" in str(w.message)]
    assert len(told) == 1 and told[0].category is GreenMLWarning
    experiment = client.get_experiment_by_name(request.node.name)
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2
    for run in runs:
        assert run.data.metrics[schema.METRIC_STEPS] == 6
        assert steps_of(client, run.info.run_id, schema.METRIC_ENERGY_KWH)[-1] == 6


def test_a_callback_added_twice_measures_once(gpu, settings, mlflow_logger, client):
    first, second = GreenMLCallback(**settings), GreenMLCallback(**settings)
    # Lightning itself refuses two stateful callbacks with one state key...
    with pytest.raises(RuntimeError, match="more than one stateful callback"):
        make_trainer([first, second], mlflow_logger)
    # ...but callbacks appended later, and the same one again, get past it
    trainer = make_trainer([first], mlflow_logger, max_steps=8, limit_val_batches=0)
    trainer.callbacks.extend([second, first])
    with pytest.warns(GreenMLWarning, match="trainer.callbacks 3 times"):
        trainer.fit(TinyRegressor(), loader())
    assert second.footprint is None
    assert (first.footprint.steps, first.footprint.samples) == (8, 8 * BATCH)  # not doubled
    run = client.get_run(mlflow_logger.run_id)
    assert run.data.metrics[schema.METRIC_SAMPLES] == 8 * BATCH
    assert run.data.metrics[schema.METRIC_ENERGY_KWH] == pytest.approx(first.footprint.energy_kwh)


def test_a_test_after_fit_is_a_measurement_of_its_own_in_the_same_run(
    gpu, settings, mlflow_logger, client
):
    cb = GreenMLCallback(**settings)
    model = TinyRegressor(step_s=0.01, eval_s=0.05)
    trainer = make_trainer([cb], mlflow_logger, max_steps=8, limit_val_batches=0)
    trainer.fit(model, loader())
    fit = cb.footprint
    model.eval_time_s = 0.0
    trainer.test(model, loader(32))  # 4 batches of 50 ms
    test = cb.footprint
    assert test is not fit and "test" not in fit.phases
    test_j = test.phases["test"].energy_kwh * J_PER_KWH
    assert POWER_W * (model.eval_time_s - REFRESH_S) <= test_j <= gpu_joules(test)
    run = client.get_run(mlflow_logger.run_id)
    assert "test_loss" in run.data.metrics
    assert run.data.metrics[schema.metric_phase_energy_kwh("test")] == pytest.approx(
        test.phases["test"].energy_kwh
    )
    # the run's greenml figures add up over the fit and the test
    assert run.data.metrics[schema.METRIC_ENERGY_KWH] == pytest.approx(
        fit.energy_kwh + test.energy_kwh
    )


def test_the_callback_costs_under_50_us_per_training_step(gpu, settings, mlflow_logger):
    cb = GreenMLCallback(**settings, tokens_per_sample=16, flops_per_step=1e6)
    hook, durations_ns = cb.on_train_batch_end, []

    def timed(*args, **kwargs):
        t0 = time.perf_counter_ns()
        hook(*args, **kwargs)
        durations_ns.append(time.perf_counter_ns() - t0)

    cb.on_train_batch_end = timed  # Lightning looks each hook up on the instance
    trainer = make_trainer([cb], mlflow_logger, max_steps=400, limit_val_batches=0)
    trainer.fit(TinyRegressor(), loader(BATCH * 100))  # log points every 50 steps
    assert len(durations_ns) == 400
    median_us = statistics.median(durations_ns) / 1000
    p90_us = statistics.quantiles(durations_ns, n=10)[-1] / 1000
    assert median_us < 50, f"median {median_us:.1f} us, p90 {p90_us:.1f} us"
    assert cb.footprint.tokens == 400 * BATCH * 16
    assert cb.footprint.flops == pytest.approx(400 * 1e6)


@pytest.mark.parametrize(
    ("batch", "samples"),
    [
        (torch.zeros(5, 3), 5),
        ((torch.zeros(6, 3), torch.zeros(6)), 6),
        ({"input_ids": torch.zeros(7, 10), "labels": torch.zeros(7)}, 7),
        ([[torch.zeros(3, 2)], torch.zeros(3)], 3),
        (["a text", "another", "a third"], 3),
        (torch.tensor(1.0), 1),
        (object(), None),
    ],
)
def test_count_samples_rule(batch, samples):
    assert GreenMLCallback(location="FR").count_samples(batch) == samples


def test_without_lightning_the_import_says_what_to_install(monkeypatch):
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning"):
        monkeypatch.setitem(sys.modules, name, None)  # None: "import name" fails
    monkeypatch.delitem(sys.modules, "greenml.integrations.lightning")
    with pytest.raises(ImportError, match=r'pip install "greenml\[lightning\]"'):
        importlib.import_module("greenml.integrations.lightning")


@needs_cc
def test_the_example_runs_in_seconds(tmp_path, mlflow_server, client):
    sim = SimulatedNVML([SimGPU(trace=traces.constant(POWER_W))], counter_refresh_s=REFRESH_S)
    env = {**os.environ, **sim.export(tmp_path / "driver")}
    powercap = tmp_path / "powercap"
    FakePowercap(powercap).add_package(0, dram=True)
    env.update(GREENML_POWERCAP_ROOT=str(powercap), GREENML_PUE="1.0", GREENML_JOURNAL="false")
    start = time.monotonic()
    out = subprocess.run(
        [
            sys.executable, str(EXAMPLE),
            "--tracking-uri", mlflow_server.uri,
            "--experiment", "lightning-example",
            "--max-steps", "30",
            "--json",
        ],
        cwd=tmp_path,  # no greenml.toml here: greenml's defaults
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )  # fmt: skip
    elapsed = time.monotonic() - start
    assert out.returncode == 0, out.stderr[-3000:]
    assert elapsed < 60, f"the example took {elapsed:.0f} s"
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["global_step"] == 30
    gpu_j = result["gpu_energy_kwh"] * J_PER_KWH
    assert gpu_j == pytest.approx(POWER_W * result["duration_s"], abs=POWER_W * REFRESH_S)
    assert result["phases"]["eval"] > 0
    run = client.get_run(result["run_id"])
    assert {"train_loss", "val_loss"} <= set(run.data.metrics)
    assert run.data.metrics[schema.METRIC_ENERGY_KWH] == pytest.approx(result["energy_kwh"])
    # forward and backward of Linear(32, 64) -> ReLU -> Linear(64, 1) on 16 samples, by
    # hand: forward 2*16*32*64 + 2*16*64*1; backward the weight gradients of both layers
    # and the input gradient of the second (the data needs none)
    flops_per_step = (2 * 16 * 32 * 64 + 2 * 16 * 64) + (2 * 16 * 32 * 64 + 2 * 2 * 16 * 64)
    assert run.data.metrics[schema.METRIC_FLOPS] == 30 * flops_per_step


DDP_SCRIPT = r"""
import json, sys, time, torch
from torch.utils.data import DataLoader, TensorDataset
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import MLFlowLogger
from greenml.integrations.lightning import GreenMLCallback

class Module(LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
    def training_step(self, batch, batch_idx):
        time.sleep(0.02)
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss)
        return loss
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

uri, experiment, budget_kwh = sys.argv[1], sys.argv[2], float(sys.argv[3])
cb = GreenMLCallback(location="FR", pue=1.0, max_energy_kwh=budget_kwh, stop_on_budget=True)
logger = MLFlowLogger(tracking_uri=uri, experiment_name=experiment)
trainer = Trainer(
    accelerator="cpu", devices=2, strategy="ddp", max_steps=200, log_every_n_steps=5,
    logger=logger, callbacks=[cb], enable_progress_bar=False, enable_model_summary=False,
    enable_checkpointing=False,
)
data = TensorDataset(torch.randn(3200, 4), torch.randn(3200, 1))
trainer.fit(Module(), DataLoader(data, batch_size=8))
fp = cb.footprint
print("RESULT " + json.dumps({
    "rank": trainer.global_rank, "step": trainer.global_step,
    "run_id": logger.run_id if trainer.global_rank == 0 else None,
    "samples": fp.samples if fp else None, "steps": fp.steps if fp else None,
}))
"""


@needs_cc
def test_ddp_ranks_share_the_loggers_run_and_stop_together(
    tmp_path, mlflow_server, client, run_job
):
    sim = SimulatedNVML([SimGPU(trace=traces.constant(POWER_W))], counter_refresh_s=REFRESH_S)
    env = {**os.environ, **sim.export(tmp_path / "driver")}
    powercap = tmp_path / "powercap"
    FakePowercap(powercap).add_package(0, dram=True)
    env.update(GREENML_POWERCAP_ROOT=str(powercap), GREENML_JOURNAL="false")
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    budget_kwh = POWER_W * 1.0 / J_PER_KWH  # about 1 s of the GPU: well before step 200

    def launch() -> list[subprocess.Popen]:
        command = [sys.executable, str(script), mlflow_server.uri, "lightning-ddp"]
        return [
            subprocess.Popen(
                [*command, repr(budget_kwh)],
                cwd=tmp_path,  # no greenml.toml here: greenml's defaults
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        ]

    ((returncode, stdout, stderr),) = run_job(launch, timeout_s=240)
    assert returncode == 0, stderr[-3000:]
    results = sorted(
        (json.loads(line.split(" ", 1)[1]) for line in stdout.splitlines() if "RESULT" in line),
        key=lambda r: r["rank"],
    )
    assert [r["rank"] for r in results] == [0, 1]
    rank0, rank1 = results
    # one measuring process (rank 0, the lowest on the host); both ranks stop at one step
    assert rank0["step"] == rank1["step"] < 200
    assert rank0["step"] % 5 == 0  # the ranks agree on the Trainer's log cadence
    assert rank1["samples"] is None
    assert (rank0["steps"], rank0["samples"]) == (rank0["step"], rank0["step"] * BATCH * 2)
    run = client.get_run(rank0["run_id"])
    assert "train_loss" in run.data.metrics
    assert run.data.metrics[schema.METRIC_SAMPLES] == rank0["step"] * BATCH * 2  # job-wide
    assert run.data.tags[schema.TAG_BUDGET_STOP].startswith("max_energy_kwh=")
