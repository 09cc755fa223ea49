"""greenml's peers on greenml's simulated NVIDIA driver: CodeCarbon, MLflow's system
metrics and Zeus, measured on the scenarios of benchmarks/scenarios.py.

    pip install -e '.[bench]'
    python benchmarks/peers.py [--json peers.json] [--quick] [--peers zeus,codecarbon,mlflow]

Every peer reads GPUs through pynvml, so each sees the simulated GPUs of
``greenml.testing.SimulatedNVML`` installed in its process, plus the few NVML functions
the simulation leaves out, answered by ``_peer_driver.py`` (memory, utilisation, the
power field values Zeus reads; constants that are never part of a figure). Each
measurement runs in a fresh subprocess (``--job``): CodeCarbon initialises NVML when it is
imported and caches its hardware per process, Zeus caches its GPUs per process, so a
peer never sees a previous scenario's driver. Jobs of different peers run side by side
(``--serial`` to not); the CPU rows run alone.

Rows (n/a where a peer cannot do it; the footnotes say why):

1. CPU while training sleeps: 4 counter GPUs, the peer tracking with its default settings
   while the main thread sleeps; process CPU seconds per wall second (``time.process_time``
   around the sleep, after the peer's start-up and a 1 s settling time) and NVML driver
   calls per second (the simulation's count plus the extra functions').
2. CodeCarbon: construction + ``start()`` + ``stop()`` of a first tracker in a fresh
   process, offline (``OfflineEmissionsTracker(country_iso_code="USA")``: no geo or cloud
   look-up, no API), no GPU, no ``nvidia-smi`` on PATH; median of 3 processes.
3. Energy error against the exact integral of the trace (``scenarios.exact_j``) over
   windows at random offsets (``scenarios.windows``), mean |error| % / worst signed %.

Which instants a measurement covers (the truth is the exact energy between them):

- A peer that reads the energy counter covers the span between its counter reads. The
  driver logs the instant of every ``nvmlDeviceGetTotalEnergyConsumption`` call, and the
  instants are the reads inside the monotonic brackets taken just before and after the
  peer's begin and end calls: Zeus's one read in ``begin_window`` and in ``end_window``;
  CodeCarbon's ``hardware.start()`` read in ``start()`` (the second-last of that call: its
  last is ``start()``'s own first measurement, whose delta is in the total) or the last
  read of ``start_task()``, and the last read at or before the end of ``stop()`` /
  ``stop_task()``. CodeCarbon without a counter still calls the function (and gets Not
  Supported) at the same points, right where it takes its ``perf_counter`` times, so the
  same rule gives the span whose duration it multiplies its mean power by.
- Zeus without a counter integrates the power samples time-stamped inside
  ``[begin_window's time(), end_window's time()]``: the midpoints of the brackets.
- MLflow has no begin/end of its own below a run: a window's instants are the
  benchmark's own schedule, and its energy is the logged ``system/gpu_0_power_usage_watts``
  series integrated over them (trapezoids through the logged points at their logged
  timestamps, linear at the window's edges, held flat past the first and last point). A
  run's total integrates the series over the run's own ``start_time``..``end_time``.
  MLflow stamps a sample when it logs it, one sampling interval after reading it.

Wall-clock timestamps (MLflow's) are mapped to ``time.monotonic`` with one offset
measured at the job's start.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import datetime
import itertools
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from unittest import mock

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import scenarios as sc  # noqa: E402
from _peer_driver import PeerDriver  # noqa: E402

from greenml.testing import SimulatedNVML  # noqa: E402

PEERS = ("codecarbon", "mlflow", "zeus")
JOB_MARK = "PEERS-JOB-RESULT "
CHILD_ENV = "GREENML_PEERS_CHILD_DRIVER"  # Zeus's spawned polling process reads it
SMI_ENV = "GREENML_PEERS_SMI_GPUS"  # what the nvidia-smi stand-in lists

# Scenario name -> (GPUs, trace); the CPU row uses 4 counter GPUs, accuracy rows 1 GPU.
GPU_KINDS: dict[str, tuple[Callable[..., list[Any]], Any]] = {
    "counter": (sc.counter_gpus, sc.BURSTY),
    "averaged": (sc.averaged_gpus, sc.BURSTY),
    "instantaneous": (sc.instantaneous_gpus, sc.SPIKY),
}

ENERGY = "nvmlDeviceGetTotalEnergyConsumption"
J_PER_KWH = 3.6e6


# -- sizes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How long things run: the full plan, or a shorter one for a smoke run."""

    cpu_sleep_s: float = 10.0
    total_s: float = 20.0
    n_windows: int = 8
    short_span_s: float = 10.0  # 1 s and 0.3 s windows
    long_span_s: float = 60.0  # 5 s windows
    latency_repeats: int = 3

    @classmethod
    def quick(cls) -> Plan:
        return cls(3.0, 6.0, 4, 5.0, 25.0, 1)

    def windows(self, length_s: float) -> list[sc.Window]:
        span = self.long_span_s if length_s >= 5 else self.short_span_s
        return sc.windows(length_s, self.n_windows, span_s=span)


@dataclass(frozen=True)
class Options:
    plan: Plan
    mlflow_interval_s: float
    zeus_period_s: float


# -- time ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bracket:
    """Monotonic instants just before and just after one call of a peer."""

    before: float
    after: float

    @property
    def mid(self) -> float:
        return (self.before + self.after) / 2

    @property
    def width(self) -> float:
        return self.after - self.before


def bracket(fn: Callable[[], Any]) -> tuple[Bracket, Any]:
    t0 = time.monotonic()
    out = fn()
    return Bracket(t0, time.monotonic()), out


def sleep_until(t: float) -> None:
    while (left := t - time.monotonic()) > 0:
        time.sleep(left)


def wall_offset_s() -> float:
    """``time.time() - time.monotonic()``, from the tightest of a few paired reads."""
    best = None
    for _ in range(5):
        m0 = time.monotonic()
        w = time.time()
        m1 = time.monotonic()
        if best is None or m1 - m0 < best[0]:
            best = (m1 - m0, w - (m0 + m1) / 2)
    assert best is not None
    return best[1]


@dataclass
class Measured:
    """One window or run: the instants it covered, what the peer said, the truth."""

    label: str
    a_s: float
    b_s: float
    measured_j: float
    exact_j: float = 0.0
    bracket_s: float = 0.0  # widest begin/end bracket, a bound on the instants' error

    @property
    def error_pct(self) -> float:
        return sc.error_pct(self.measured_j, self.exact_j)


def run_schedule(
    t0: float,
    sets: dict[str, Sequence[sc.Window]],
    begin: Callable[[str], Any],
    end: Callable[[str], Any],
) -> dict[str, tuple[Bracket, Bracket, Any]]:
    """Call ``begin(key)`` and ``end(key)`` at ``t0 + window`` for every window of every
    set (sets may overlap in time, windows within a set do not), in time order.
    Returns key -> (begin bracket, end bracket, what ``end`` returned)."""
    events = []
    for name, wins in sets.items():
        for i, w in enumerate(wins):
            key = f"{name}#{i}"
            events.append((t0 + w.start_s, 0, key))
            events.append((t0 + w.end_s, 1, key))
    events.sort()
    begun: dict[str, Bracket] = {}
    out: dict[str, tuple[Bracket, Bracket, Any]] = {}
    for t, is_end, key in events:
        sleep_until(t)
        if is_end:
            br, res = bracket(lambda k=key: end(k))
            out[key] = (begun.pop(key), br, res)
        else:
            begun[key], _ = bracket(lambda k=key: begin(k))
    return out


def score(sim: SimulatedNVML, trace: Any, items: Sequence[Measured]) -> dict[str, Any]:
    for m in items:
        m.exact_j = sc.exact_j(sim, trace, m.a_s, m.b_s)
    s = sc.summarise([m.error_pct for m in items])
    return {
        "summary": asdict(s),
        "cell": s.cell(),
        "items": [asdict(m) | {"error_pct": m.error_pct} for m in items],
    }


# -- the simulated driver, in this process and in Zeus's polling process -----------------


def install_driver(
    kind: str, n: int, epoch_s: float | None = None, architecture: str | None = None
) -> tuple[SimulatedNVML, PeerDriver]:
    """Install the scenario's GPUs in this process; ``architecture`` relabels them (same
    trace, same readings)."""
    gpus = GPU_KINDS[kind][0](n)
    if architecture:
        gpus = [dataclasses.replace(g, architecture=architecture) for g in gpus]
    sim = SimulatedNVML(gpus, epoch_s=epoch_s)
    sim.install()
    return sim, PeerDriver().__enter__()


@contextlib.contextmanager
def driver(kind: str, n: int, architecture: str | None = None) -> Iterator[tuple[Any, Any]]:
    sim, drv = install_driver(kind, n, architecture=architecture)
    try:
        yield sim, drv
    finally:
        drv.__exit__()
        sim.uninstall()


def _install_child_driver() -> None:
    """In a process Zeus spawned (it re-imports this file as ``__mp_main__``), install the
    parent's scenario on the parent's epoch: the same traces on the same clock. It stays
    installed for the life of the process."""
    spec = json.loads(os.environ[CHILD_ENV])
    globals()["_CHILD_DRIVER"] = install_driver(
        spec["kind"], spec["n"], spec["epoch_s"], spec["architecture"]
    )


if __name__ == "__mp_main__" and os.environ.get(CHILD_ENV):
    _install_child_driver()


# -- Zeus -------------------------------------------------------------------------------


@contextlib.contextmanager
def zeus_monitor(
    sim: SimulatedNVML,
    kind: str,
    n: int,
    opts: Options,
    architecture: str | None = None,
    **kw: Any,
) -> Iterator[Any]:
    """A ZeusMonitor on the simulated GPUs. For GPUs without a counter, ZeusMonitor starts
    a PowerMonitor with ``update_period=None`` and has no argument to change it; Zeus
    0.16.0 then infers a period of 0.0 (``infer_counter_update_period`` seeds ``min()``
    with 0.0; fixed upstream in ml-energy/zeus#261) and its polling process never sleeps.
    So the PowerMonitor it builds gets a fixed ``update_period`` (the 0.1 s cap Zeus's own
    inference intends). Its process is spawned: it re-imports this file, which installs the
    same simulation there (CHILD_ENV)."""
    from zeus.monitor import ZeusMonitor
    from zeus.monitor.power import PowerMonitor

    os.environ[CHILD_ENV] = json.dumps(
        {"kind": kind, "n": n, "epoch_s": sim.epoch_s, "architecture": architecture}
    )

    def fixed(**kw: Any) -> PowerMonitor:  # ZeusMonitor passes update_period=None itself
        return PowerMonitor(**(kw | {"update_period": opts.zeus_period_s}))

    if opts.zeus_period_s > 0:
        with mock.patch("zeus.monitor.energy.PowerMonitor", fixed):
            mon = ZeusMonitor(**kw)
    else:  # Zeus's own inference
        mon = ZeusMonitor(**kw)
    try:
        yield mon
    finally:
        if mon.power_monitor is not None:
            mon.power_monitor.stop()


# begin/end_window(sync_execution=False): torch here has no CUDA, and Zeus's sync raises
# then; in a real loop the default adds a cudaSynchronize at each call.
NOSYNC = {"sync_execution": False}


def zeus_job(task: str, opts: Options) -> dict[str, Any]:
    plan = opts.plan
    if task == "label_probe":
        with driver("averaged", 1) as (sim, _), zeus_monitor(sim, "averaged", 1, opts) as mon:
            try:
                mon.begin_window("probe", **NOSYNC)
                return {"begin_window": "ok"}
            except Exception as e:
                return {"begin_window": f"{type(e).__name__}: {e}"}
    if task == "own_period":
        # The 20 s total of row 3b with Zeus's own (inferred) polling period.
        import psutil

        own = dataclasses.replace(opts, zeus_period_s=0.0)
        with (
            driver("averaged", 1, "pascal") as (sim, drv),
            zeus_monitor(sim, "averaged", 1, own, "pascal", gpu_indices=[0]) as mon,
        ):
            children = psutil.Process().children()
            c0 = sum(sum(c.cpu_times()[:2]) for c in children)
            b0, _ = bracket(lambda: mon.begin_window("total", **NOSYNC))
            sleep_until(b0.after + plan.total_s)
            b1, m = bracket(lambda: mon.end_window("total", **NOSYNC))
            c1 = sum(sum(c.cpu_times()[:2]) for c in children)
            r = score(
                sim, GPU_KINDS["averaged"][1], [Measured("total", b0.mid, b1.mid, m.gpu_energy[0])]
            )
            r["polling_process_cpu_ms_per_s"] = 1000 * (c1 - c0) / (b1.mid - b0.mid)
            r["inferred_update_period_s"] = mon.power_monitor.update_period
            return r
    if task == "cpu":
        with driver("counter", sc.GPUS) as (sim, drv), zeus_monitor(sim, "counter", 4, opts) as mon:
            mon.begin_window("run", **NOSYNC)
            r = cpu_while_sleeping(sim, drv, plan.cpu_sleep_s)
            mon.end_window("run", **NOSYNC)
        return r

    kind = {"acc_counter": "counter", "acc_avg": "averaged", "acc_inst": "instantaneous"}[task]
    trace = GPU_KINDS[kind][1]
    counter = kind == "counter"
    out: dict[str, Any] = {}
    # Zeus decides that a GPU has the energy counter from its architecture (Volta or
    # newer), never by trying: the scenarios' Ampere GPUs without a counter (vGPU) make
    # begin_window raise (the "label_probe" job shows it). So they are relabelled Pascal,
    # same trace and readings, for Zeus to take its power-polling path.
    architecture = None if counter else "pascal"
    out["relabelled_architecture"] = architecture
    with (
        driver(kind, 1, architecture=architecture) as (sim, drv),
        zeus_monitor(sim, kind, 1, opts, architecture, gpu_indices=[0]) as mon,
    ):

        def instants(b0: Bracket, b1: Bracket) -> tuple[float, float]:
            if counter:  # the one counter read inside each call
                return (
                    drv.reads_between(b0.before, b0.after, ENERGY)[0],
                    drv.reads_between(b1.before, b1.after, ENERGY)[-1],
                )
            return b0.mid, b1.mid

        def measure(sets: dict[str, Sequence[sc.Window]]) -> dict[str, list[Measured]]:
            res = run_schedule(
                time.monotonic() + 0.2,
                sets,
                lambda k: mon.begin_window(k, **NOSYNC),
                lambda k: mon.end_window(k, **NOSYNC),
            )
            by_set: dict[str, list[Measured]] = {name: [] for name in sets}
            for key, (b0, b1, m) in res.items():
                a, b = instants(b0, b1)
                by_set[key.split("#")[0]].append(
                    Measured(key, a, b, m.gpu_energy[0], bracket_s=max(b0.width, b1.width))
                )
            return by_set

        if not counter:
            total = measure({"total": [sc.Window(0.0, plan.total_s)]})["total"]
            out["total"] = score(sim, trace, total)
        if kind != "instantaneous":
            lengths = (1.0, 0.3) if counter else (5.0, 1.0, 0.3)
            # All window sets in one session, as concurrent ZeusMonitor windows.
            by_set = measure({f"{L:g}s": plan.windows(L) for L in lengths})
            for name, items in by_set.items():
                out[name] = score(sim, trace, items)
    out["zeus_update_period_s"] = None if counter else opts.zeus_period_s
    return out


# -- CodeCarbon -------------------------------------------------------------------------


def codecarbon_tracker(**kw: Any) -> Any:
    # Imported here, with the simulation installed: CodeCarbon calls nvmlInit on import.
    from codecarbon import OfflineEmissionsTracker

    # Offline: a fixed country, so no geo look-up, no cloud metadata, no API.
    return OfflineEmissionsTracker(country_iso_code="USA", **kw)


def codecarbon_job(task: str, opts: Options) -> dict[str, Any]:
    plan = opts.plan
    if task == "cpu":
        with driver("counter", sc.GPUS) as (sim, drv):
            tr = codecarbon_tracker()  # default settings (measure_power_secs=15)
            tr.start()
            assert tr._conf.get("gpu_count") == sc.GPUS, "CodeCarbon found no GPU"
            r = cpu_while_sleeping(sim, drv, plan.cpu_sleep_s)
            tr.stop()
        return r

    kind = {"acc_counter": "counter", "acc_avg": "averaged", "acc_inst": "instantaneous"}[task]
    trace = GPU_KINDS[kind][1]
    out: dict[str, Any] = {}
    with driver(kind, 1) as (sim, drv):

        def last_read_until(t: float) -> float:
            return drv.reads_between(0.0, t, ENERGY)[-1]

        if kind != "counter":
            # A run's total at CodeCarbon's own cadence (default measure_power_secs=15;
            # power sampled every 1 s by its monitor thread).
            tr = codecarbon_tracker()
            b0, _ = bracket(tr.start)
            sleep_until(b0.after + plan.total_s)
            b1, _ = bracket(tr.stop)
            # hardware.start()'s read is start()'s second-last (see the module doc).
            a = drv.reads_between(b0.before, b0.after, ENERGY)[-2]
            m = Measured(
                "total",
                a,
                last_read_until(b1.after),
                tr.final_emissions_data.gpu_energy * J_PER_KWH,
                bracket_s=max(b0.width, b1.width),
            )
            out["total"] = score(sim, trace, [m])
        if kind != "instantaneous":
            lengths = (1.0, 0.3) if kind == "counter" else (5.0, 1.0, 0.3)
            for L in lengths:
                # Windows as CodeCarbon tasks (one active at a time), measure_power_secs=1.
                tr = codecarbon_tracker(measure_power_secs=1)
                # The first start_task detects the hardware (~1 s here): a warm-up task
                # first, so that the windows start on time.
                tr.start_task("warm-up")
                tr.stop_task("warm-up")
                res = run_schedule(
                    time.monotonic() + 0.2,
                    {f"{L:g}s": plan.windows(L)},
                    tr.start_task,
                    tr.stop_task,
                )
                tr.stop()
                items = []
                for key, (b0, b1, data) in res.items():
                    a = drv.reads_between(b0.before, b0.after, ENERGY)[-1]
                    items.append(
                        Measured(
                            key,
                            a,
                            last_read_until(b1.after),
                            data.gpu_energy * J_PER_KWH,
                            bracket_s=max(b0.width, b1.width),
                        )
                    )
                out[f"{L:g}s"] = score(sim, trace, items)
    return out


def codecarbon_latency_job() -> dict[str, Any]:
    """A first tracker in a fresh process, no GPU: import, construct, start, stop."""
    t0 = time.perf_counter()
    from codecarbon import OfflineEmissionsTracker

    t1 = time.perf_counter()
    tr = OfflineEmissionsTracker(country_iso_code="USA")
    t2 = time.perf_counter()
    tr.start()
    t3 = time.perf_counter()
    tr.stop()
    t4 = time.perf_counter()
    return {"import_s": t1 - t0, "init_s": t2 - t1, "start_s": t3 - t2, "stop_s": t4 - t3}


# -- MLflow -----------------------------------------------------------------------------


def integrate(points: Sequence[tuple[float, float]], a: float, b: float) -> float:
    """∫ over [a, b] of the piecewise-linear function through ``points`` (time, W), held
    flat before the first and after the last point."""
    if not points:
        return float("nan")
    pts = sorted(points)
    pts = [(min(a, pts[0][0]) - 1.0, pts[0][1]), *pts, (max(b, pts[-1][0]) + 1.0, pts[-1][1])]

    def at(t: float) -> float:
        for (t0, p0), (t1, p1) in itertools.pairwise(pts):
            if t0 <= t <= t1:
                return p0 if t1 == t0 else p0 + (p1 - p0) * (t - t0) / (t1 - t0)
        raise AssertionError(t)

    knots = [a] + [t for t, _ in pts if a < t < b] + [b]
    return sum((t1 - t0) * (at(t0) + at(t1)) / 2 for t0, t1 in itertools.pairwise(knots))


@contextlib.contextmanager
def mlflow_run(folder: str, interval_s: float | None) -> Iterator[Any]:
    import mlflow
    from mlflow.system_metrics import set_system_metrics_sampling_interval

    mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
    set_system_metrics_sampling_interval(interval_s)  # None: MLflow's default, 10 s
    with mlflow.start_run(log_system_metrics=True) as run:
        yield run


def mlflow_power_series(run_id: str, offset_s: float) -> tuple[list[tuple[float, float]], Any]:
    """The logged GPU power, on the monotonic clock, and the finished run's info."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    hist = client.get_metric_history(run_id, "system/gpu_0_power_usage_watts")
    points = [(m.timestamp / 1000 - offset_s, m.value) for m in hist]
    return points, client.get_run(run_id).info


def mlflow_job(task: str, opts: Options, folder: str) -> dict[str, Any]:
    plan = opts.plan
    offset = wall_offset_s()
    if task == "cpu":
        with driver("counter", sc.GPUS) as (sim, drv), mlflow_run(folder, None):
            r = cpu_while_sleeping(sim, drv, plan.cpu_sleep_s)
        return r

    kind = {"acc_counter": "counter", "acc_avg": "averaged", "acc_inst": "instantaneous"}[task]
    trace = GPU_KINDS[kind][1]
    out: dict[str, Any] = {"mlflow_sampling_interval_s": opts.mlflow_interval_s}
    with driver(kind, 1) as (sim, drv):
        if kind != "counter":
            with mlflow_run(folder, opts.mlflow_interval_s) as run:
                time.sleep(plan.total_s)
            points, info = mlflow_power_series(run.info.run_id, offset)
            a, b = info.start_time / 1000 - offset, info.end_time / 1000 - offset
            out["total"] = score(sim, trace, [Measured("total", a, b, integrate(points, a, b))])
            out["total"]["samples"] = len(points)
        if kind != "instantaneous":
            lengths = (1.0, 0.3) if kind == "counter" else (5.0, 1.0, 0.3)
            sets = {f"{L:g}s": plan.windows(L) for L in lengths}
            span = max(w.end_s for wins in sets.values() for w in wins)
            # One run across every window; a window is the logged series integrated
            # between its two scheduled instants (MLflow has nothing below a run).
            with mlflow_run(folder, opts.mlflow_interval_s) as run:
                t0 = time.monotonic() + 1.0  # a few samples before the first window
                sleep_until(t0 + span + 1.0)
            points, _ = mlflow_power_series(run.info.run_id, offset)
            for name, wins in sets.items():
                items = [
                    Measured(
                        f"{name}#{i}",
                        t0 + w.start_s,
                        t0 + w.end_s,
                        integrate(points, t0 + w.start_s, t0 + w.end_s),
                    )
                    for i, w in enumerate(wins)
                ]
                out[name] = score(sim, trace, items)
            out["samples_per_s"] = len(points) / (span + 2.0)
    return out


# -- row 1: CPU while the main thread sleeps --------------------------------------------


def cpu_while_sleeping(sim: SimulatedNVML, drv: PeerDriver, seconds: float) -> dict[str, Any]:
    time.sleep(1.0)  # past the peer's start-up
    c0, w0, n0 = time.process_time(), time.monotonic(), drv.total_calls(sim)
    time.sleep(seconds)
    c1, w1, n1 = time.process_time(), time.monotonic(), drv.total_calls(sim)
    return {
        "cpu_ms_per_s": 1000 * (c1 - c0) / (w1 - w0),
        "driver_calls_per_s": (n1 - n0) / (w1 - w0),
        "seconds": w1 - w0,
        "calls_by_function": dict(sim.calls) | dict(drv.calls),
    }


# -- jobs in subprocesses ----------------------------------------------------------------


def run_job(peer: str, task: str, opts: Options) -> dict[str, Any]:
    """Inside the job's subprocess (cwd: a temporary folder)."""
    logging.basicConfig(level=logging.WARNING)
    if peer == "zeus":
        return zeus_job(task, opts)
    if peer == "codecarbon":
        return codecarbon_latency_job() if task == "latency" else codecarbon_job(task, opts)
    if peer == "mlflow":
        return mlflow_job(task, opts, os.getcwd())
    raise ValueError(f"unknown peer {peer!r}")


def smi_folder(root: Path) -> Path:
    """A folder holding an ``nvidia-smi`` that runs the stand-in with this Python."""
    folder = root / "smi"
    folder.mkdir(exist_ok=True)
    exe = folder / "nvidia-smi"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{HERE / "_nvidia_smi_standin.py"}" "$@"\n')
    exe.chmod(0o755)
    return folder


def spawn_job(peer: str, task: str, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Run one job in a fresh process in its own temporary folder; return its result."""
    folder = Path(tempfile.mkdtemp(prefix=f"{peer}-{task}-", dir=root))
    env = dict(os.environ)
    env.pop(CHILD_ENV, None)
    if peer == "codecarbon" and task != "latency":
        # CodeCarbon looks for NVIDIA GPUs only if `nvidia-smi --help` succeeds.
        env["PATH"] = f"{smi_folder(root)}{os.pathsep}{env.get('PATH', '')}"
        kind = {
            "cpu": "counter",
            "acc_counter": "counter",
            "acc_avg": "averaged",
            "acc_inst": "instantaneous",
        }[task]
        env[SMI_ENV] = "\n".join(g.name for g in GPU_KINDS[kind][0](1))
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--job",
        peer,
        task,
        "--mlflow-interval",
        str(args.mlflow_interval),
        "--zeus-period",
        str(args.zeus_period),
    ]
    if args.quick:
        cmd.append("--quick")
    t0 = time.monotonic()
    with open(folder / "stderr.log", "w") as err:
        proc = subprocess.run(
            cmd, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=err, text=True, timeout=600
        )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(JOB_MARK)]
    if proc.returncode != 0 or not lines:
        tail = (folder / "stderr.log").read_text()[-1500:]
        return {"error": f"exit {proc.returncode}", "stderr_tail": tail, "log": str(folder)}
    result = json.loads(lines[-1][len(JOB_MARK) :])
    result["job_wall_s"] = time.monotonic() - t0
    return result


# -- report -------------------------------------------------------------------------------


ROWS = [
    ("cpu", None, "1. CPU while training sleeps, 4 counter GPUs, defaults: ms/s · NVML calls/s"),
    ("latency", None, "2. CodeCarbon 1st tracker, fresh process, no GPU: construct+start+stop"),
    ("acc_counter", "1s", "3a. counter GPU, BURSTY, 1 s windows"),
    ("acc_counter", "0.3s", "3a. counter GPU, BURSTY, 0.3 s windows"),
    ("acc_avg", "total", "3b. no counter, 1 s-avg power, BURSTY: 20 s run total"),
    ("acc_avg", "5s", "3b. no counter, 1 s-avg power, BURSTY: 5 s windows"),
    ("acc_avg", "1s", "3b. no counter, 1 s-avg power, BURSTY: 1 s windows"),
    ("acc_avg", "0.3s", "3b. no counter, 1 s-avg power, BURSTY: 0.3 s windows"),
    ("acc_inst", "total", "3c. no counter, instantaneous, SPIKY: 20 s run total"),
]
NA = {
    ("latency", "mlflow"): "n/a ¹",
    ("latency", "zeus"): "n/a ¹",
    ("acc_counter", "mlflow"): None,  # measured: MLflow integrates power even with a counter
}


def cell(task: str, key: str | None, peer: str, results: dict[str, Any]) -> str:
    if na := NA.get((task, peer)):
        return na
    r = results.get(peer, {}).get(task)
    if r is None:
        return "not run"
    if "error" in r:
        return f"failed ({r['error']})"
    if task == "cpu":
        return f"{r['cpu_ms_per_s']:.2f} ms/s · {r['driver_calls_per_s']:.1f}/s"
    if task == "latency":
        return (
            f"{r['init_s'] + r['start_s'] + r['stop_s']:.2f} s (construct {r['init_s']:.2f}"
            f" + start {r['start_s']:.2f} + stop {r['stop_s']:.2f}; import {r['import_s']:.2f})"
        )
    return r[key]["cell"] if key in r else "n/a"


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("greenml", "codecarbon", "mlflow-skinny", "zeus", "nvidia-ml-py", "torch"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


FOOTNOTES = """\
Cells: mean |error| % / worst signed % over the windows (one run: its error twice).
Driver: greenml's SimulatedNVML in each peer's process (counter refresh 100 ms), plus the
NVML functions the peers ask for that it leaves out (benchmarks/_peer_driver.py).

- CodeCarbon {codecarbon}: OfflineEmissionsTracker(country_iso_code="USA"). It finds
  NVIDIA GPUs only when `nvidia-smi --help` exits 0, so its jobs get a stand-in
  nvidia-smi first on PATH (benchmarks/_nvidia_smi_standin.py); all readings then come
  through pynvml. Default cadence: energy every measure_power_secs=15 s, plus a 1 s
  monitor thread (utilisation of every GPU, CPU load, and the power of GPUs without a
  counter). Windows are its task API (start_task/stop_task, one task at a time, the
  periodic measurement paused) with measure_power_secs=1. Without a counter it multiplies
  the mean of its 1 s power samples (or one reading at the end when a window holds none)
  by the window's duration.
- MLflow {mlflow}: mlflow.start_run(log_system_metrics=True); its GPUMonitor reads
  nvmlDeviceGetPowerUsage (never the energy counter), plus memory and utilisation, once
  per sampling interval (default 10 s; no minimum enforced, and 0 means the default; the
  accuracy rows use {mlflow_interval:g} s), and logs system/gpu_N_power_usage_watts
  stamped when logged, one interval after the reading. Each sample also reads the run
  back from the tracking store. Windows and totals are that series integrated by the
  benchmark (trapezoids, see the module doc); MLflow has no window API. Samples taken
  since the last log are dropped at end_run.
- Zeus {zeus}: ZeusMonitor, windows by begin_window/end_window (sync_execution=False: no
  CUDA here) inside one monitor, concurrent where sets overlap. With a counter (Volta+)
  it reads nvmlDeviceGetTotalEnergyConsumption at each call and runs no thread (row 1:
  no background work at all). Without one, it spawns a process polling power through
  nvmlDeviceGetFieldValues(NVML_FI_DEV_POWER_INSTANT) and integrates the samples time-
  stamped inside the window (no interpolation to the window's edges). ZeusMonitor has no
  argument for the polling period, and 0.16.0 infers 0.0 (a busy loop; ml-energy/zeus#261),
  so the PowerMonitor it builds is given update_period={zeus_period:g} s. With its own
  period instead, row 3b's run total is {own_cell} and its polling process uses
  {own_cpu} ms/s of CPU (a core). It sends a sample only when the reading changes and
  needs two inside a window: a reading that stays put (row 3c: the part-time samples
  here never catch a spike, so every reading is the 120 W base) gives 0 J. It takes a
  GPU to have the counter from its architecture (Volta or newer) without trying: on the
  scenarios' Ampere GPUs without a counter begin_window raises ({probe}), so rows 3b/3c
  relabel the same simulated GPU as Pascal.
¹ Row 2 is CodeCarbon's: its first start() detects the hardware (CPU model, TDP table,
  GPUs) and loads its data files.
"""


def report(results: dict[str, Any], meta: dict[str, Any], peers: Sequence[str]) -> str:
    lines = [
        f"machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, "
        f"python {meta['machine']['python']}; {meta['machine']['date']}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        "",
        "| row | " + " | ".join(peers) + " |",
        "|---|" + "---|" * len(peers),
    ]
    for task, key, label in ROWS:
        if meta["quick"]:
            label = label.replace("20 s", f"{meta['plan']['total_s']:g} s")
        lines.append(
            f"| {label} | " + " | ".join(cell(task, key, p, results) for p in peers) + " |"
        )
    lines.append("")
    v = meta["versions"]
    zeus = results.get("zeus", {})
    own = zeus.get("own_period", {})
    lines.append(
        FOOTNOTES.format(
            codecarbon=v["codecarbon"],
            mlflow=v["mlflow-skinny"],
            zeus=v["zeus"],
            mlflow_interval=meta["mlflow_interval_s"],
            zeus_period=meta["zeus_period_s"],
            own_cell=own.get("cell", "not measured"),
            own_cpu=f"{own['polling_process_cpu_ms_per_s']:.0f}" if "cell" in own else "?",
            probe=zeus.get("label_probe", {}).get("begin_window", "not probed"),
        )
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="write the raw numbers here")
    ap.add_argument("--quick", action="store_true", help="shorter runs, for a smoke test")
    ap.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset")
    ap.add_argument("--serial", action="store_true", help="run the peers' accuracy jobs one by one")
    ap.add_argument(
        "--mlflow-interval",
        type=float,
        default=0.1,
        help="MLflow sampling interval for the accuracy rows (s)",
    )
    ap.add_argument(
        "--zeus-period",
        type=float,
        default=0.1,
        help="Zeus polling period for GPUs without a counter (s); 0: Zeus's own",
    )
    ap.add_argument("--job", nargs=2, metavar=("PEER", "TASK"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    plan = Plan.quick() if args.quick else Plan()
    opts = Options(plan, args.mlflow_interval, args.zeus_period)

    if args.job:
        result = run_job(*args.job, opts)
        print(JOB_MARK + json.dumps(result), flush=True)
        return

    peers = [p for p in args.peers.split(",") if p]
    unknown = set(peers) - set(PEERS)
    if unknown:
        ap.error(f"unknown peers {sorted(unknown)}; choose from {PEERS}")
    meta = {
        "machine": machine(),
        "versions": versions(),
        "quick": args.quick,
        "plan": asdict(plan),
        "mlflow_interval_s": args.mlflow_interval,
        "zeus_period_s": args.zeus_period,
    }
    print(
        f"machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, "
        f"python {meta['machine']['python']}; {meta['machine']['date']}",
        file=sys.stderr,
    )
    results: dict[str, dict[str, Any]] = {p: {} for p in peers}
    lock = threading.Lock()
    root = Path(tempfile.mkdtemp(prefix="greenml-peers-"))

    def do(peer: str, task: str) -> None:
        print(f"  {peer} {task} ...", file=sys.stderr, flush=True)
        r = spawn_job(peer, task, args, root)
        with lock:
            results[peer][task] = r
        if "error" in r:
            print(f"  {peer} {task} FAILED, see {r['log']}:\n{r['stderr_tail']}", file=sys.stderr)

    # The CPU rows alone, one at a time.
    for peer in peers:
        do(peer, "cpu")
    if "zeus" in peers:
        do("zeus", "own_period")  # busy-polls a core: alone too
    if "codecarbon" in peers:
        runs = [spawn_job("codecarbon", "latency", args, root) for _ in range(plan.latency_repeats)]
        ok = [r for r in runs if "error" not in r]
        results["codecarbon"]["latency"] = (
            {k: statistics.median(r[k] for r in ok) for k in ok[0] if k.endswith("_s")}
            | {"runs": runs}
            if ok
            else runs[0]
        )

    # Accuracy: each peer's jobs in sequence, peers side by side.
    def accuracy(peer: str) -> None:
        tasks = ("acc_counter", "acc_avg", "acc_inst")
        for task in ("label_probe", *tasks) if peer == "zeus" else tasks:
            do(peer, task)

    workers = 1 if args.serial else len(peers)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(accuracy, peers))

    print(report(results, meta, peers))
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
        print(f"\nraw numbers: {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
