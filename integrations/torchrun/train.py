"""A plain PyTorch DDP loop under torchrun, measured by greenml once per host.

Run it on one machine (two processes)::

    torchrun --nproc-per-node 2 integrations/torchrun/train.py --steps 200

or across two hosts (the same command on each, with --nnodes 2 --node-rank 0|1 and the
first host's address as --master-addr), or under SLURM (integrations/slurm/train.sbatch).
Every process builds a ``JobRun``; the lowest rank on each host measures that host's GPUs,
the others measure nothing, and at the end rank 0 logs the job's totals (the sum of the
hosts) into one MLflow run. Settings come from the
keywords below or ``GREENML_*`` variables (``GREENML_LOCATION``, ``GREENML_EXPERIMENT``...).

It trains a tiny model on random data with the gloo backend, so it runs on CPUs in seconds.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from greenml.integrations.distributed import JobRun


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32, help="per process")
    parser.add_argument(
        "--min-step-s",
        type=float,
        default=0.0,
        help="make each step last at least this long (a bigger model's pace, on a CPU)",
    )
    parser.add_argument(
        "--gpu-per-rank",
        action="store_true",
        help="say that each rank uses the GPU of its LOCAL_RANK (on a CUDA machine greenml "
        "reads it from torch.cuda; this flag is for CPU runs against simulated GPUs)",
    )
    args = parser.parse_args()

    # under srun without torchrun: the process group's variables from SLURM's
    for name, slurm in (("RANK", "SLURM_PROCID"), ("WORLD_SIZE", "SLURM_NTASKS"),
                        ("LOCAL_RANK", "SLURM_LOCALID")):  # fmt: skip
        if name not in os.environ and slurm in os.environ:
            os.environ[name] = os.environ[slurm]
    dist.init_process_group("gloo")
    try:
        world = dist.get_world_size()
        torch.manual_seed(dist.get_rank())
        model = DistributedDataParallel(
            torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
        )
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        # a Linear layer's forward and backward: 6 FLOPs per weight per sample (2 + 4)
        weights = sum(p.numel() for p in model.parameters() if p.dim() > 1)
        flops_per_step = 6 * weights * args.batch_size * world

        gpus = [int(os.environ.get("LOCAL_RANK", "0"))] if args.gpu_per_rank else None
        job = JobRun({"log_interval_s": 1.0})  # every other setting from GREENML_* variables
        job.start(total_steps=args.steps, gpu_ids=gpus, framework="torchrun")
        with job:  # stops the measurement at the end (FAILED if the loop raises)
            for step in range(1, args.steps + 1):
                began = time.monotonic()
                x = torch.randn(args.batch_size, 64)
                loss = model(x).pow(2).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                time.sleep(max(args.min_step_s - (time.monotonic() - began), 0.0))
                # the job's work in this step: every process's batch
                job.step(step, samples=args.batch_size * world, flops=flops_per_step)
                if step % 20 == 0:
                    job.log_point()
                if job.stop_requested:  # a budget crossed with stop_on_budget
                    break
        if job.footprint is not None and dist.get_rank() == 0:
            fp = job.footprint
            print(f"job: {fp.energy_kwh:.6f} kWh, {len(fp.devices)} devices, {fp.duration_s:.1f} s")
    finally:
        # left alive at exit, gloo's threads can abort the process (SIGABRT)
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
