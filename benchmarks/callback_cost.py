"""What greenml's callbacks cost the training thread at each step, with eight GPUs.

Real training loops (a tiny BERT in ``transformers.Trainer``, a tiny module in
``lightning.Trainer``, and a plain loop with ``run.step``) run on the CPU with eight simulated
H100s (greenml's simulated NVML driver, in-process), budgets set (so the budget check is in
the path) and a forecast (the total steps known). Each per-step hook of greenml's callback is
wrapped in a ``perf_counter_ns`` timer on the instance, so what is timed is exactly the work
the hook does in the training thread, in context: counting the step and its work, reading
whether a budget asks to stop, and, on logging steps, asking the recorder thread for a point.
Snapshots, MLflow and the budget checks themselves run in greenml's own threads.

    python benchmarks/callback_cost.py [--steps 400] [--json out.json]

Target (issue 11): under 50 us per step. The figures are in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

GPUS = 8
SETTINGS: dict[str, Any] = {
    "location": "FR",
    "log_to_mlflow": False,
    "journal": False,
    "cpu_tdp_w": 10,
    "max_energy_kwh": 1e6,  # never crossed: the check runs, training goes on
    "max_cost_usd": 1e6,
    "price_usd_per_hour": 98.32,
}


def timed(obj: Any, names: tuple[str, ...], into: dict[str, list[int]]) -> None:
    """Wrap the methods ``names`` of ``obj`` (on the instance) in a timer."""
    for name in names:
        method = getattr(obj, name)
        samples = into.setdefault(name, [])

        def wrapper(*args: Any, _m: Callable[..., Any] = method, _s: list[int] = samples,
                    **kwargs: Any) -> Any:  # fmt: skip
            t0 = time.perf_counter_ns()
            try:
                return _m(*args, **kwargs)
            finally:
                _s.append(time.perf_counter_ns() - t0)

        setattr(obj, name, wrapper)


def huggingface(steps: int, log_every: int) -> dict[str, list[int]]:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    from greenml.integrations.huggingface import GreenMLCallback

    config = BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=64,
    )  # fmt: skip
    model = BertForSequenceClassification(config)

    class Data(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 64

        def __getitem__(self, i: int) -> dict[str, Any]:
            g = torch.Generator().manual_seed(i)
            return {"input_ids": torch.randint(0, 100, (16,), generator=g), "labels": i % 2}

    from transformers import TrainerCallback

    callback = GreenMLCallback(**SETTINGS)
    baseline = TrainerCallback()  # the same hooks doing nothing: what timing one costs
    times: dict[str, list[int]] = {}
    hooks = ("on_step_begin", "on_step_end", "on_log")
    timed(callback, hooks, times)
    timed(baseline, hooks, baseline_times := {})
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, max_steps=steps, logging_steps=log_every, per_device_train_batch_size=4,
            report_to="none", use_cpu=True, save_strategy="no", disable_tqdm=True,
        )  # fmt: skip
        trainer = Trainer(model=model, args=args, train_dataset=Data(), callbacks=[callback])
        trainer.add_callback(baseline)
        trainer.train()
    return times | {f"baseline {k}": v for k, v in baseline_times.items()}


def lightning(steps: int, log_every: int) -> dict[str, list[int]]:
    import lightning.pytorch as pl
    import torch

    from greenml.integrations.lightning import GreenMLCallback

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(32, 1)

        def training_step(self, batch: Any, i: int) -> Any:
            return self.layer(batch).pow(2).mean()

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.01)

        def train_dataloader(self) -> Any:
            return torch.utils.data.DataLoader(torch.randn(256, 32), batch_size=8)

    callback = GreenMLCallback(**SETTINGS)
    baseline = pl.Callback()  # the same hooks doing nothing: what timing one costs
    times: dict[str, list[int]] = {}
    hooks = ("on_train_batch_start", "on_train_batch_end")
    timed(callback, hooks, times)
    timed(baseline, hooks, baseline_times := {})
    with tempfile.TemporaryDirectory() as out:
        trainer = pl.Trainer(
            accelerator="cpu", max_steps=steps, log_every_n_steps=log_every, logger=False,
            enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
            default_root_dir=out, callbacks=[callback, baseline],
        )  # fmt: skip
        trainer.fit(Module())
    return times | {f"baseline {k}": v for k, v in baseline_times.items()}


def plain(steps: int, log_every: int) -> dict[str, list[int]]:
    import torch

    import greenml

    times: dict[str, list[int]] = {"run.step": [], "run.log_point": [], "baseline (empty)": []}
    x, w = torch.randn(64, 256), torch.randn(256, 256)
    with greenml.track(**SETTINGS) as run:
        run.set_total_steps(steps)
        for step in range(1, steps + 1):
            for _ in range(20):  # the training step
                x = torch.tanh(x @ w)
            t0 = time.perf_counter_ns()
            times["baseline (empty)"].append(time.perf_counter_ns() - t0)
            t0 = time.perf_counter_ns()
            run.step(samples=32, tokens=4096, flops=1e12)
            times["run.step"].append(time.perf_counter_ns() - t0)
            if step % log_every == 0:
                t0 = time.perf_counter_ns()
                run.log_point()
                times["run.log_point"].append(time.perf_counter_ns() - t0)
    return times


def summary(times: dict[str, list[int]]) -> dict[str, dict[str, float]]:
    out = {}
    for name, ns in times.items():
        if not ns:
            continue
        us = sorted(x / 1000 for x in ns)
        out[name] = {
            "calls": len(us),
            "p50_us": statistics.median(us),
            "p99_us": us[min(len(us) - 1, int(0.99 * len(us)))],
            "max_us": us[-1],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from greenml.testing import SimGPU, SimulatedNVML

    results: dict[str, Any] = {"gpus": GPUS, "steps": args.steps, "python": sys.version.split()[0]}
    with SimulatedNVML([SimGPU() for _ in range(GPUS)]):
        for name, run in (("huggingface", huggingface), ("lightning", lightning), ("plain", plain)):
            results[name] = summary(run(args.steps, args.log_every))
    print(f"greenml per-step cost in the training thread, {GPUS} simulated GPUs, "
          f"{args.steps} steps, a logging step every {args.log_every}")  # fmt: skip
    print(f"{'loop':<12} {'hook':<28} {'calls':>6} {'p50 us':>8} {'p99 us':>8} {'max us':>8}")
    for loop in ("huggingface", "lightning", "plain"):
        for hook, s in results[loop].items():
            print(f"{loop:<12} {hook:<28} {s['calls']:>6} {s['p50_us']:>8.1f} "
                  f"{s['p99_us']:>8.1f} {s['max_us']:>8.1f}")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
