"""Overhead of greenml's measurement: sampler CPU, training slowdown, start/stop latency,
memory over long runs, and the cost of recording (journal + MLflow's local store).

    python benchmarks/overhead.py [--seconds 10] [--gpus 8]

It runs in a temporary folder, so MLflow's default store (sqlite:///mlflow.db) and the
journal land there. Tracked runs use greenml's defaults (MLflow + journal) unless a line
says otherwise; the recording lines log every second, 30 times the default cadence.

GPUs are simulated (greenml.testing.SimulatedNVML), whose driver calls are Python callbacks
and so cost more than real NVML's C calls: the CPU figures are an upper bound. CPU and RAM
use the machine's real meters (RAPL if readable, else the TDP x load estimate).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import tempfile
import time
import tracemalloc

import numpy as np

import greenml
from greenml.meters.base import Channel, Reading
from greenml.sampler import Ledger
from greenml.testing import SimGPU, SimulatedNVML, traces


def workload(steps: int) -> float:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((192, 192))
    t0 = time.perf_counter()
    for _ in range(steps):
        a = np.tanh(a @ a.T / 192.0)
        sum(range(2000))  # some pure-Python work per step, as a data loader would have
    return time.perf_counter() - t0


def sampler_cpu(seconds: float, **recording: object) -> tuple[float, int]:
    """CPU seconds per wall second used by the process while the main thread sleeps."""
    with greenml.track(interval_s=0.1, **recording) as run:
        time.sleep(0.5)  # let the grid synchronisation finish
        c0, w0 = time.process_time(), time.monotonic()
        time.sleep(seconds)
        c1, w1 = time.process_time(), time.monotonic()
        samples = run._sampler.samples if run._sampler else 0
    return (c1 - c0) / (w1 - w0), samples


def slowdown(steps: int, repeats: int, **recording: object) -> tuple[float, float, float]:
    """Median wall time of the workload untracked, tracked, and the median relative
    difference of untracked pairs (the machine's own noise, an A/A comparison)."""
    base, tracked, noise = [], [], []
    workload(steps // 10)  # warm up
    for _ in range(repeats):
        a = workload(steps)
        with greenml.track(interval_s=0.1, **recording):
            t = workload(steps)
        b = workload(steps)
        base.extend([a, b])
        tracked.append(t)
        noise.append(abs(b / a - 1))
    return statistics.median(base), statistics.median(tracked), statistics.median(noise)


def latency(repeats: int, **recording: object) -> tuple[float, float]:
    starts, stops = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run = greenml.Tracker(interval_s=0.1, **recording).start()
        starts.append(time.perf_counter() - t0)
        time.sleep(0.3)
        t0 = time.perf_counter()
        run.stop()
        stops.append(time.perf_counter() - t0)
    return statistics.median(starts), statistics.median(stops)


def ledger_memory(readings: int, channels: int = 10) -> int:
    """Peak bytes allocated while a ledger takes ``readings`` readings per channel, with
    a phase switch every 100 readings."""
    chans = [Channel(f"gpu:{i}", "gpu", "g", "counter") for i in range(channels)]
    gc.collect()
    tracemalloc.start()
    led = Ledger(chans, 0.0)
    for i in range(1, readings + 1):
        t = i * 0.1
        if i % 100 == 0:
            led.set_phase(t, f"phase-{(i // 100) % 5}")
        led.add_many([Reading(c.key, t, energy_j=300.0 * t) for c in chans])
    led.close(readings * 0.1)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()

    gpus = [SimGPU(trace=traces.square(600.0, 250.0, 0.3, 0.2)) for _ in range(args.gpus)]
    print(
        f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}"
    )
    os.chdir(tempfile.mkdtemp(prefix="greenml-bench-"))
    os.environ.setdefault("GREENML_LOCATION", "aws:us-east-1")
    off = {"log_to_mlflow": False, "journal": False}
    every_second = {"log_interval_s": 1.0}
    with SimulatedNVML(gpus):
        t0 = time.perf_counter()
        greenml.Tracker(**off).start().stop()
        print(f"| first track() in a process (factor tables) | {time.perf_counter() - t0:.2f} s |")
        t0 = time.perf_counter()
        greenml.Tracker(interval_s=0.1).start().stop()
        print(
            f"| first track() logging to MLflow (import mlflow, create the store) | "
            f"{time.perf_counter() - t0:.2f} s |"
        )
        cpu, samples = sampler_cpu(args.seconds, **off)
        print(
            f"| sampler CPU, {args.gpus} simulated GPUs + CPU + RAM, no recording | "
            f"{cpu * 100:.2f} % of one core ({samples} samples in {args.seconds:.0f} s) |"
        )
        budgets = {**off, "max_energy_kwh": 1e6, "max_cost_usd": 1e6}
        cpu, samples = sampler_cpu(args.seconds, **budgets)
        print(
            f"| sampler + budget watcher CPU, {args.gpus} simulated GPUs, budgets set | "
            f"{cpu * 100:.2f} % of one core ({samples} samples in {args.seconds:.0f} s) |"
        )
        cpu, samples = sampler_cpu(args.seconds, **every_second)
        print(
            f"| sampler + recorder CPU, journal + MLflow every 1 s | "
            f"{cpu * 100:.2f} % of one core |"
        )
        for label, recording in (
            ("no recording", off),
            ("journal + MLflow every 1 s", every_second),
        ):
            base, tracked, noise = slowdown(args.steps, args.repeats, **recording)
            print(
                f"| training loop, {label}, median of {args.repeats} | untracked {base:.3f} s, "
                f"tracked {tracked:.3f} s ({(tracked / base - 1) * 100:+.2f} %; untracked runs "
                f"differ by {noise * 100:.1f} % among themselves) |"
            )
        start, stop = latency(args.repeats, **off)
        print(
            f"| start() / stop() latency, no recording, median | {start * 1000:.1f} ms / "
            f"{stop * 1000:.1f} ms |"
        )
        start, stop = latency(args.repeats)
        print(
            f"| start() / stop() latency, journal + MLflow local store, median | "
            f"{start * 1000:.1f} ms / {stop * 1000:.1f} ms |"
        )
    for channels, n in ((10, 10_000), (10, 100_000), (1, 1_000_000)):
        peak = ledger_memory(n, channels)
        print(
            f"| ledger peak memory, {channels} channels x {n:,} readings "
            f"({n * 0.1 / 3600:.1f} h at 0.1 s) | {peak / 1024:.0f} KiB |"
        )


if __name__ == "__main__":
    main()
