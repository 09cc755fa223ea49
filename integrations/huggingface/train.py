"""Fine-tune a tiny BERT with the Hugging Face Trainer while greenml measures it.

The model is built from a config (nothing is downloaded) and trained on random token ids,
so the example runs anywhere in seconds; swap in your own model and dataset. greenml's
figures land in the Trainer's MLflow run (``report_to="mlflow"``): set
``MLFLOW_TRACKING_URI`` (and ``MLFLOW_EXPERIMENT_NAME``) as for any Trainer run.

    pip install "greenml[huggingface]"
    python integrations/huggingface/train.py --location FR
    python integrations/huggingface/train.py --max-energy-kwh 0.001   # stop at a budget
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainingArguments,
)

from greenml.integrations.huggingface import GreenMLCallback


class RandomIds(torch.utils.data.Dataset):
    """``n`` sequences of ``length`` random token ids with a random binary label."""

    def __init__(self, n: int, length: int = 32, vocab: int = 100, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, vocab, (n, length), generator=g)
        self.labels = torch.randint(0, 2, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max-steps", type=int, default=40)
    p.add_argument("--logging-steps", type=int, default=10)
    p.add_argument("--eval-steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--report-to", default="mlflow", help='"mlflow" or "none"')
    p.add_argument("--output-dir", default="hf-greenml-example")
    p.add_argument("--location", help="where it runs: aws:us-east-1, FR, US-CA...")
    p.add_argument("--pue", type=float, help="the data centre's PUE")
    p.add_argument("--max-energy-kwh", type=float, help="stop training at this energy")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even with a GPU")
    p.add_argument("--json", help="write the footprint and MLflow run id to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    greenml_settings = {
        "location": opts.location,
        "pue": opts.pue,
        "max_energy_kwh": opts.max_energy_kwh,
        "stop_on_budget": opts.max_energy_kwh is not None,
    }
    callback = GreenMLCallback(**{k: v for k, v in greenml_settings.items() if v is not None})

    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        vocab_size=100,
    )
    args = TrainingArguments(
        output_dir=opts.output_dir,
        max_steps=opts.max_steps,
        logging_steps=opts.logging_steps,
        eval_strategy="steps",
        eval_steps=opts.eval_steps,
        per_device_train_batch_size=opts.batch_size,
        include_num_input_tokens_seen=True,
        report_to=opts.report_to,
        use_cpu=opts.cpu,
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=BertForSequenceClassification(config),
        args=args,
        train_dataset=RandomIds(opts.max_steps * opts.batch_size),
        eval_dataset=RandomIds(64, seed=1),
        callbacks=[callback],
    )
    trainer.train()

    fp = callback.footprint
    if fp is None:  # a process of a multi-process job that does not report
        return 0
    tracker = callback.job.tracker
    delivery = tracker.mlflow if tracker is not None else None
    run_id = delivery.run_id if delivery is not None else None
    parts = [f"{fp.energy_kwh * 1000:.3f} Wh over {fp.duration_s:.1f} s"]
    parts.append(f"{fp.gpu_energy_kwh * 1000:.3f} Wh of it on GPUs")
    if fp.co2e_kg is not None:
        parts.append(f"{fp.co2e_kg * 1000:.3f} g CO2e")
    if "eval" in fp.phases:
        parts.append(f"evaluation {fp.phases['eval'].energy_kwh * 1000:.3f} Wh")
    print(f"greenml: {', '.join(parts)}; {fp.steps} steps")
    if run_id is not None:
        print(f"greenml: MLflow run {run_id}")
    if opts.json:
        with open(opts.json, "w", encoding="utf-8") as f:
            json.dump({"footprint": fp.to_dict(), "run_id": run_id}, f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
