"""GreenMLCallback in a real ``transformers.Trainer``: a tiny BERT built from a config,
trained on the CPU, against a real MLflow server, with a simulated GPU at constant power
(so the GPU energy expected is power x the time measured here, independently)."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest
import torch
from mlflow import MlflowClient
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from greenml import schema
from greenml.errors import ConfigError, GreenMLWarning
from greenml.integrations.huggingface import GreenMLCallback
from greenml.progress import CHECK_S, FRESH_S
from greenml.testing import FakePowercap, SimGPU, SimulatedNVML, traces

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "integrations" / "huggingface" / "train.py"
POWER_W = 300.0
# Between two logging steps, longer than the recorder waits for fresh readings before a
# point it is asked for (0.15 s): requests closer than that make one point.
STEP_S = 0.1
BATCH = 4
SEQ = 16
REFRESH_S = 0.1  # the simulated energy counter's refresh period
J_PER_KWH = 3.6e6

needs_cc = pytest.mark.skipif(
    shutil.which(os.environ.get("CC", "cc")) is None,
    reason="needs a C compiler to build the simulated libnvidia-ml.so.1 for a child process",
)


# -- a tiny model and data ----------------------------------------------------------------


class TinyBert(BertForSequenceClassification):
    """BERT from a small config; each training forward takes at least ``step_s`` and the
    ``fail_at``-th one raises ``error``."""

    step_s = 0.0
    eval_step_s = 0.0
    fail_at: int | None = None
    error = "the model broke"
    calls = 0
    batches: tuple[int, ...] = ()  # the sizes of the training batches seen

    def forward(self, input_ids=None, labels=None, **kwargs):  # the Trainer reads the names
        if self.training:
            self.calls += 1
            self.batches = (*self.batches, len(input_ids))
            if self.fail_at is not None and self.calls == self.fail_at:
                self.fail_at = None
                raise RuntimeError(self.error)
            if self.step_s:
                time.sleep(self.step_s)
        elif self.eval_step_s:
            time.sleep(self.eval_step_s)
        return super().forward(input_ids=input_ids, labels=labels, **kwargs)


def tiny_bert(**attributes) -> TinyBert:
    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        vocab_size=100,
    )
    model = TinyBert(config)
    for name, value in attributes.items():
        setattr(model, name, value)
    return model


class RandomIds(torch.utils.data.Dataset):
    def __init__(self, n: int = 64) -> None:
        g = torch.Generator().manual_seed(n)
        self.ids = torch.randint(0, 100, (n, SEQ), generator=g)
        self.labels = torch.randint(0, 2, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def training_args(tmp_path: Path, **overrides) -> TrainingArguments:
    settings = {
        "output_dir": str(tmp_path / "out"),
        "max_steps": 8,
        "logging_steps": 2,
        "per_device_train_batch_size": BATCH,
        "report_to": ["mlflow"],
        "use_cpu": True,
        "save_strategy": "no",
        "disable_tqdm": True,
        **overrides,
    }
    return TrainingArguments(**settings)


class Clock(TrainerCallback):
    """Notes when its hooks run (put one before and one after greenml's callback)."""

    def __init__(self) -> None:
        self.begin = self.end = None
        self.steps: dict[int, float] = {}
        self.evaluations: dict[int, float] = {}  # step -> when on_evaluate ran
        self.run_id = None
        self.total_flos = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.begin = time.monotonic()
        run = mlflow.active_run()
        self.run_id = run.info.run_id if run is not None else None

    def on_step_end(self, args, state, control, **kwargs):
        self.steps[state.global_step] = time.monotonic()

    def on_evaluate(self, args, state, control, **kwargs):
        self.evaluations[state.global_step] = time.monotonic()

    def on_train_end(self, args, state, control, **kwargs):
        self.end = time.monotonic()
        self.total_flos = state.total_flos


class Before(Clock):
    """A clock whose hooks run before greenml's (a class of its own: the Trainer warns
    about two callbacks of one class)."""


class After(Clock):
    """A clock whose hooks run after greenml's."""


# -- the world: MLflow server, simulated GPU, a still RAPL tree -----------------------------


@pytest.fixture
def tracking(mlflow_server, monkeypatch):
    """MLflow as MLflowCallback finds it (MLFLOW_TRACKING_URI, an experiment of the
    test's own); MLflow's fluent state put back afterwards."""
    experiment = f"hf-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", experiment)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)  # set_experiment() sets it
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    yield SimpleNamespace(
        uri=mlflow_server.uri,
        experiment=experiment,
        client=MlflowClient(mlflow_server.uri),
        monkeypatch=monkeypatch,
    )
    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture
def gpu():
    with SimulatedNVML([SimGPU(trace=traces.constant(POWER_W))], counter_refresh_s=REFRESH_S):
        yield


@pytest.fixture
def powercap(tmp_path) -> str:
    """A RAPL tree whose counters stand still: CPU and RAM energy are exactly zero, so the
    run's energy is the simulated GPU's."""
    FakePowercap(tmp_path / "powercap").add_package(0, dram=True)
    return str(tmp_path / "powercap")


def greenml_kwargs(powercap: str, **more):
    return {"location": "FR", "pue": 1.0, "log_to_mlflow": True, "powercap_root": powercap, **more}


def runs_of(tracking) -> list:
    exp = tracking.client.get_experiment_by_name(tracking.experiment)
    assert exp is not None, f"no experiment {tracking.experiment!r}"
    return tracking.client.search_runs([exp.experiment_id])


def steps_of(client: MlflowClient, run_id: str, key: str) -> set[int]:
    return {m.step for m in client.get_metric_history(run_id, key)}


def greenml_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, GreenMLWarning)]


# -- tests --------------------------------------------------------------------------------


def test_figures_land_in_the_trainers_mlflow_run(tmp_path, tracking, gpu, powercap):
    before, after = Before(), After()
    callback = GreenMLCallback(**greenml_kwargs(powercap))
    args = training_args(
        tmp_path,
        eval_strategy="steps",
        eval_steps=4,
        include_num_input_tokens_seen=True,
    )
    trainer = Trainer(
        model=tiny_bert(step_s=STEP_S, eval_step_s=0.05),
        args=args,
        train_dataset=RandomIds(),
        eval_dataset=RandomIds(32),
        callbacks=[before, callback, after],
    )
    trainer.train()

    fp = callback.footprint
    run_id = before.run_id  # the run MLflowCallback opened before greenml's hook
    assert run_id is not None
    assert callback.job.tracker.mlflow.run_id == run_id
    assert callback.job.tracker.mlflow.delivered
    assert [r.info.run_id for r in runs_of(tracking)] == [run_id]  # no run of greenml's own

    client = tracking.client
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"  # ended once, by MLflowCallback, not reopened
    assert run.data.tags[schema.TAG_STATUS] == "finished"
    assert "loss" in run.data.metrics and schema.METRIC_ENERGY_KWH in run.data.metrics
    # greenml's points at the Trainer's loss steps (the summary at the last, step 8), and
    # its first point, at the start: step 0
    loss_steps = steps_of(client, run_id, "loss")
    assert loss_steps == {2, 4, 6, 8}
    assert steps_of(client, run_id, schema.METRIC_ENERGY_KWH) == {0} | loss_steps
    # the GPU at 300 W from greenml's start to its stop (both between the two clocks'
    # hooks), within a counter refresh
    gpu_j = fp.gpu_energy_kwh * J_PER_KWH
    assert POWER_W * (before.end - after.begin - REFRESH_S) <= gpu_j
    assert gpu_j <= POWER_W * (after.end - before.begin + REFRESH_S)
    assert run.data.metrics[schema.METRIC_GPU_ENERGY_KWH] == pytest.approx(fp.gpu_energy_kwh)
    # evaluations at steps 4 and 8 are the eval phase: from greenml's step end (between
    # the clocks' step ends) to its on_evaluate (between the clocks' on_evaluate)
    assert set(before.evaluations) == {4, 8}
    eval_low = sum(before.evaluations[k] - after.steps[k] for k in (4, 8))
    eval_high = sum(after.evaluations[k] - before.steps[k] for k in (4, 8))
    eval_j = run.data.metrics[schema.metric_phase_energy_kwh("eval")] * J_PER_KWH
    # at constant power a phase switch splits the counter's energy by time: exact to the
    # clocks' few milliseconds around each of the four switches
    slack_j = POWER_W * 4 * 0.01
    assert POWER_W * eval_low - slack_j <= eval_j <= POWER_W * eval_high + slack_j
    assert fp.phases["eval"].gpu_energy_kwh * J_PER_KWH == pytest.approx(eval_j)
    assert set(fp.phases) == {"train", "eval"}
    # work: 8 steps of 4 samples of 16 tokens; the Trainer's FLOPs, all of them
    assert (fp.steps, fp.samples, fp.tokens) == (8, 8 * BATCH, 8 * BATCH * SEQ)
    assert run.data.metrics[schema.METRIC_SAMPLES] == 8 * BATCH
    assert fp.flops == after.total_flos > 0
    artifacts = {a.path for a in client.list_artifacts(run_id, "greenml")}
    assert schema.FOOTPRINT_ARTIFACT in artifacts


def test_without_mlflow_reporting_greenml_opens_its_own_run_and_says_so_once(
    tmp_path, tracking, gpu, powercap
):
    callback = GreenMLCallback(**greenml_kwargs(powercap))
    trainer = Trainer(
        model=tiny_bert(step_s=STEP_S),
        args=training_args(tmp_path, report_to="none", max_steps=4),
        train_dataset=RandomIds(),
        callbacks=[callback],
    )
    with pytest.warns(GreenMLWarning) as record:
        trainer.train()
    own = [m for m in greenml_warnings(record) if "run of its own" in m]
    assert len(own) == 1, greenml_warnings(record)
    assert "report_to" in own[0]
    runs = runs_of(tracking)
    assert len(runs) == 1
    assert runs[0].info.run_id == callback.job.tracker.mlflow.run_id
    assert runs[0].info.status == "FINISHED"  # greenml's own run: greenml ends it
    assert runs[0].data.tags[schema.TAG_STATUS] == "finished"
    assert steps_of(tracking.client, runs[0].info.run_id, schema.METRIC_ENERGY_KWH) == {0, 2, 4}


@pytest.mark.parametrize("same_instance", [False, True], ids=["two-callbacks", "one-twice"])
def test_added_twice_measures_once_with_one_warning(
    tmp_path, tracking, gpu, powercap, same_instance
):
    before, after = Before(), After()
    first = GreenMLCallback(**greenml_kwargs(powercap))
    second = first if same_instance else GreenMLCallback(**greenml_kwargs(powercap))
    trainer = Trainer(
        model=tiny_bert(step_s=STEP_S),
        args=training_args(tmp_path, max_steps=6),
        train_dataset=RandomIds(),
        callbacks=[before, first, second, after],
    )
    with pytest.warns(GreenMLWarning) as record:
        trainer.train()
    twice = [m for m in greenml_warnings(record) if "more than once" in m]
    assert len(twice) == 1, greenml_warnings(record)
    assert [r.info.run_id for r in runs_of(tracking)] == [before.run_id]
    fp = first.footprint
    assert fp.steps == 6 and fp.samples == 6 * BATCH  # each step counted once
    if not same_instance:
        assert second.footprint is None
    assert fp.gpu_energy_kwh * J_PER_KWH <= POWER_W * (after.end - before.begin + REFRESH_S)
    # one summary: greenml's last energy is this one job's, not twice it
    run = tracking.client.get_run(before.run_id)
    assert run.data.metrics[schema.METRIC_GPU_ENERGY_KWH] == pytest.approx(fp.gpu_energy_kwh)
    assert run.data.tags.get(schema.TAG_BLOCKS, "1") == "1"


def test_a_budget_stops_training_after_the_crossing(tmp_path, tracking, gpu, powercap):
    step_s = 0.2
    budget_s = 2.0  # the budget is 2 s of the GPU at 300 W
    budget_kwh = POWER_W * budget_s / J_PER_KWH
    before, after = Before(), After()
    callback = GreenMLCallback(
        **greenml_kwargs(powercap, max_energy_kwh=budget_kwh, stop_on_budget=True)
    )
    trainer = Trainer(
        model=tiny_bert(step_s=step_s),
        args=training_args(tmp_path, max_steps=100, logging_steps=5),
        train_dataset=RandomIds(),
        callbacks=[before, callback, after],
    )
    with pytest.warns(GreenMLWarning, match="budget crossed"):
        trainer.train()
    last = max(after.steps)
    assert last < 100
    # Energy counts from greenml's start, between the two clocks' begins: the budget was
    # crossed between before.begin + 2 s and after.begin + 2 s (+ a counter refresh).
    crossed_from = before.begin + budget_s
    crossed_by = after.begin + budget_s + REFRESH_S
    # not stopped before the crossing...
    assert after.steps[last] >= crossed_from
    # ...and at the first step end after greenml noticed it: within the watcher's period
    # plus a fresh reading (greenml.progress), plus a refresh and scheduling slack
    latency_s = CHECK_S + FRESH_S + REFRESH_S + 0.5
    assert before.steps[last - 1] < crossed_by + latency_s
    fp = callback.footprint
    assert fp.energy_kwh >= budget_kwh
    assert "budget:max_energy_kwh" in fp.flags
    run = tracking.client.get_run(before.run_id)
    assert run.data.tags[schema.TAG_BUDGET_STOP].startswith(f"max_energy_kwh={budget_kwh:g}")
    assert run.data.tags[schema.TAG_STATUS] == "finished"
    assert run.info.status == "FINISHED"


def test_a_retried_training_closes_the_failed_attempt(tmp_path, tracking, gpu, powercap):
    """auto_find_batch_size: an out-of-memory error at step 3 makes the Trainer run its
    loop again with half the batch; the first attempt is recorded as failed, the second
    continues the same MLflow run."""
    callback = GreenMLCallback(**greenml_kwargs(powercap))
    before = Before()
    model = tiny_bert(fail_at=3, error="CUDA out of memory. (simulated)")
    trainer = Trainer(
        model=model,
        args=training_args(tmp_path, max_steps=4, auto_find_batch_size=True),
        train_dataset=RandomIds(),
        callbacks=[before, callback],
    )
    trainer.train()
    run = tracking.client.get_run(before.run_id)
    assert [r.info.run_id for r in runs_of(tracking)] == [before.run_id]
    assert run.data.tags[schema.TAG_BLOCKS] == "2"  # the failed attempt, then the retry
    assert run.data.tags[schema.TAG_STATUS] == "finished"
    assert run.info.status == "FINISHED"
    fp = callback.footprint
    # the retry's: its four steps, with the smaller batch the Trainer chose
    assert model.batches[:3] == (BATCH,) * 3 and len(model.batches) == 3 + 4
    assert (fp.steps, fp.samples) == (4, sum(model.batches[3:]))
    assert model.batches[3] < BATCH
    artifacts = {a.path for a in tracking.client.list_artifacts(before.run_id, "greenml")}
    assert {schema.footprint_artifact(1), schema.footprint_artifact(2)} <= artifacts
    path = tracking.client.download_artifacts(
        before.run_id, schema.footprint_artifact(1), str(tmp_path)
    )
    assert json.loads(Path(path).read_text())["steps"] == 2  # it failed in its third step


@pytest.mark.parametrize("same_run", [False, True], ids=["new-run", "same-run"])
def test_a_resumed_training_continues_the_figures(tmp_path, tracking, gpu, powercap, same_run):
    """Four steps with a checkpoint at step 4, then a Trainer resumed from it to step 8, in
    a new MLflow run or in the first one (MLFLOW_RUN_ID): the figures go on from the
    checkpoint's, counted once."""
    first = GreenMLCallback(**greenml_kwargs(powercap))
    clock_a = Before()
    Trainer(
        model=tiny_bert(step_s=STEP_S),
        args=training_args(tmp_path, max_steps=4, save_strategy="steps", save_steps=4),
        train_dataset=RandomIds(),
        callbacks=[clock_a, first],
    ).train()
    checkpoint = tmp_path / "out" / "checkpoint-4"
    kept = json.loads((checkpoint / "trainer_state.json").read_text())
    saved = kept["stateful_callbacks"]["GreenMLCallback"]["attributes"]["_greenml_checkpoint"]
    kept_j = saved["footprint"]["gpu_energy_kwh"] * J_PER_KWH
    # the checkpoint was written before the end: what it kept is less than the whole
    assert 0 < kept_j <= first.footprint.gpu_energy_kwh * J_PER_KWH

    if same_run:
        tracking.monkeypatch.setenv("MLFLOW_RUN_ID", clock_a.run_id)
    second = GreenMLCallback(**greenml_kwargs(powercap))
    before, after = Before(), After()
    Trainer(
        model=tiny_bert(step_s=STEP_S),
        args=training_args(tmp_path, max_steps=8, save_strategy="no"),
        train_dataset=RandomIds(),
        callbacks=[before, second, after],
    ).train(resume_from_checkpoint=str(checkpoint))
    assert (before.run_id == clock_a.run_id) is same_run
    fp = second.footprint
    assert "resumed" in fp.flags
    # the checkpoint's energy, then the GPU at 300 W while the second part was measured
    own_j = fp.gpu_energy_kwh * J_PER_KWH - kept_j
    assert POWER_W * (before.end - after.begin - REFRESH_S) <= own_j
    assert own_j <= POWER_W * (after.end - before.begin + REFRESH_S)
    assert fp.steps == 8 and fp.samples == 8 * BATCH  # the checkpoint's 4 steps, then 4
    run = tracking.client.get_run(before.run_id)
    assert run.data.metrics[schema.METRIC_GPU_ENERGY_KWH] == pytest.approx(fp.gpu_energy_kwh)
    assert run.data.metrics[schema.METRIC_STEPS] == 8
    assert max(steps_of(tracking.client, before.run_id, schema.METRIC_ENERGY_KWH)) == 8


CRASHING = textwrap.dedent(
    """
    import sys, torch
    sys.path.insert(0, sys.argv[1])
    from test_huggingface import RandomIds, tiny_bert, training_args
    from transformers import Trainer
    from greenml.integrations.huggingface import GreenMLCallback
    from pathlib import Path

    trainer = Trainer(
        model=tiny_bert(fail_at=3),
        args=training_args(Path(sys.argv[2]), max_steps=6, logging_steps=1),
        train_dataset=RandomIds(),
        callbacks=[GreenMLCallback(location="FR", pue=1.0, powercap_root=sys.argv[3])],
    )
    trainer.train()
    """
)


@needs_cc
def test_a_training_that_raises_ends_failed(tmp_path, tracking, powercap):
    sim = SimulatedNVML([SimGPU(trace=traces.constant(POWER_W))])
    env = {**os.environ, **sim.export(tmp_path / "driver")}
    child = subprocess.run(
        [sys.executable, "-c", CRASHING, str(Path(__file__).parent), str(tmp_path), powercap],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 1, child.stderr
    assert "RuntimeError: the model broke" in child.stderr
    (run,) = runs_of(tracking)
    assert run.data.tags[schema.TAG_STATUS] == "failed"
    # MLflowCallback never reached its on_train_end; greenml ended the run as FAILED at
    # exit (MLflow's own exit handler would have said FINISHED)
    assert run.info.status == "FAILED"
    assert steps_of(tracking.client, run.info.run_id, "loss") == {1, 2}
    assert run.data.metrics[schema.METRIC_ENERGY_KWH] > 0
    assert run.data.metrics[schema.METRIC_STEPS] == 2
    artifacts = {a.path for a in tracking.client.list_artifacts(run.info.run_id, "greenml")}
    assert schema.FOOTPRINT_ARTIFACT in artifacts


@needs_cc
def test_the_example_script_runs(tmp_path, tracking):
    sim = SimulatedNVML([SimGPU(trace=traces.constant(POWER_W))])
    env = {**os.environ, **sim.export(tmp_path / "driver")}
    out = tmp_path / "footprint.json"
    child = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            "--max-steps=6",
            "--logging-steps=2",
            "--eval-steps=3",
            "--location=FR",
            "--cpu",
            f"--output-dir={tmp_path / 'out'}",
            f"--json={out}",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    result = json.loads(out.read_text())
    fp = result["footprint"]
    assert fp["steps"] == 6
    assert set(fp["phases"]) == {"train", "eval"}
    # the GPU at 300 W over the measured time, within a counter refresh
    gpu_j = fp["gpu_energy_kwh"] * J_PER_KWH
    assert gpu_j == pytest.approx(POWER_W * fp["duration_s"], abs=POWER_W * REFRESH_S)
    (run,) = runs_of(tracking)
    assert run.info.run_id == result["run_id"]
    assert run.info.status == "FINISHED"
    loss_steps = steps_of(tracking.client, run.info.run_id, "loss")
    assert loss_steps == {2, 4, 6}
    # at the loss's steps (fast steps: points asked for within 0.15 s make one), the start
    # and the summary at step 6
    greenml_steps = steps_of(tracking.client, run.info.run_id, schema.METRIC_ENERGY_KWH)
    assert {0, 6} <= greenml_steps <= {0} | loss_steps
    assert "greenml" in child.stdout


def test_a_step_costs_the_training_thread_microseconds(gpu, powercap):
    """on_step_begin + on_step_end with a budget set (the costliest case): well under the
    50 us per step greenml allows itself."""
    callback = GreenMLCallback(
        **greenml_kwargs(powercap, log_to_mlflow=False, max_energy_kwh=1.0, stop_on_budget=True)
    )
    args = training_args(Path("unused"), report_to="none", include_num_input_tokens_seen=True)
    state = TrainerState(max_steps=10**6, train_batch_size=BATCH)
    control = TrainerControl()
    callback.on_train_begin(args, state, control)
    costs = []
    for _ in range(5000):
        state.global_step += 1
        state.num_input_tokens_seen += BATCH * SEQ
        t = time.perf_counter()
        callback.on_step_begin(args, state, control)
        callback.on_step_end(args, state, control)
        costs.append(time.perf_counter() - t)
    callback.on_train_end(args, state, control)
    costs.sort()
    assert costs[len(costs) // 2] < 50e-6
    assert (callback.footprint.steps, callback.footprint.tokens) == (5000, 5000 * BATCH * SEQ)


def test_bad_arguments_are_refused_when_the_callback_is_built():
    with pytest.raises(ConfigError, match="pue="):
        GreenMLCallback(pue=0.5)
    with pytest.raises(ConfigError, match=r"budget_on=.*'actual', 'forecast'"):
        GreenMLCallback(budget_on="sometimes")
    with pytest.raises(ConfigError, match="max_energy_kwh="):
        GreenMLCallback(max_energy_kwh=-1)
    with pytest.raises(ConfigError, match="bogus"):
        GreenMLCallback(bogus=1)
    with pytest.raises(ConfigError, match=r"location='Atlantis' is invalid: give 'aws:<region>'"):
        GreenMLCallback(location="Atlantis")


def test_without_transformers_the_import_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "greenml.integrations.huggingface")
    with pytest.raises(ImportError, match=r'pip install "greenml\[huggingface\]"'):
        importlib.import_module("greenml.integrations.huggingface")
