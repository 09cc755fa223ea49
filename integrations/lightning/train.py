"""A small Lightning training run measured by greenml, logged into MLFlowLogger's run.

    python integrations/lightning/train.py --tracking-uri http://127.0.0.1:5000

It trains a two-layer network on random data on the CPU (or the GPU Lightning picks with
``--accelerator auto``) and prints the footprint. The FLOPs of one optimizer step come from
Lightning's ``measure_flops`` on a meta-device copy of the model, so MLflow gets
the energy per FLOP as well. ``--max-energy-kwh`` with ``--stop-on-budget`` shows the
budget stop; ``--json`` prints the result as one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import os

import torch
from lightning.fabric.utilities.throughput import measure_flops
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import MLFlowLogger
from torch.utils.data import DataLoader, TensorDataset

from greenml.integrations.lightning import GreenMLCallback

FEATURES, HIDDEN, BATCH = 32, 64, 16


class Regressor(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(FEATURES, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def flops_per_step() -> int:
    """Forward and backward FLOPs of one training batch, counted on the meta device (no
    memory, no compute)."""
    with torch.device("meta"):
        model = Regressor()
        x = torch.randn(BATCH, FEATURES)
    return measure_flops(model, lambda: model(x), lambda y: y.sum())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    )
    p.add_argument("--experiment", default="greenml-lightning-example")
    p.add_argument("--location", default="FR", help="where the job runs, e.g. aws:us-east-1")
    p.add_argument("--max-steps", type=int, default=60)
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--max-energy-kwh", type=float, default=None)
    p.add_argument("--stop-on-budget", action="store_true")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args()

    torch.manual_seed(0)
    data = TensorDataset(torch.randn(512, FEATURES), torch.randn(512, 1))
    train = DataLoader(data, batch_size=BATCH, shuffle=True)
    val = DataLoader(TensorDataset(torch.randn(64, FEATURES), torch.randn(64, 1)), batch_size=32)

    mlflow_logger = MLFlowLogger(tracking_uri=args.tracking_uri, experiment_name=args.experiment)
    greenml_cb = GreenMLCallback(
        location=args.location,
        flops_per_step=flops_per_step(),
        max_energy_kwh=args.max_energy_kwh,
        stop_on_budget=args.stop_on_budget,
    )
    trainer = Trainer(
        accelerator=args.accelerator,
        devices=1,
        max_steps=args.max_steps,
        val_check_interval=20,
        log_every_n_steps=10,
        logger=mlflow_logger,
        callbacks=[greenml_cb],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(Regressor(), train, val)

    fp = greenml_cb.footprint
    result = {
        "run_id": mlflow_logger.run_id,
        "global_step": trainer.global_step,
        "energy_kwh": fp.energy_kwh if fp else None,
        "gpu_energy_kwh": fp.gpu_energy_kwh if fp else None,
        "co2e_kg": fp.co2e_kg if fp else None,
        "cost_usd": fp.cost_usd if fp else None,
        "duration_s": fp.duration_s if fp else None,
        "phases": {name: ph.energy_kwh for name, ph in fp.phases.items()} if fp else {},
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>14}: {value}")


if __name__ == "__main__":
    main()
