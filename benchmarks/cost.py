"""What measuring costs a training job, row by row against greenml's targets:

1. process CPU while training sleeps (4 counter GPUs, default settings) and NVML calls/s;
2. the training thread's cost of a phase switch (begin_phase + end_phase), 120,000 of them
   as fast as possible while the sampler runs, block by block (does it stay flat?);
3. ``run.snapshot()`` latency at the start and after those switches;
4. memory over a 30-day run on a manual clock (tracemalloc growth after the first hour);
5. the first ``track()`` in a fresh process (benchmarks/cold_start.py, when present).

    python benchmarks/cost.py [--quick] [--full] [--json FILE] [--cadence-s 1.0]

GPUs are simulated (greenml.testing.SimulatedNVML, scenarios.counter_gpus()): each driver
call is a Python callback, costlier than real NVML's C calls, so CPU figures are upper
bounds. CPU and RAM use this machine's real meters. Runs use ``location="FR",
log_to_mlflow=False, journal=False`` unless a row says otherwise, in a temporary folder.
Exits 1 when a target is missed (or a row could not be measured), listing which.
"""

from __future__ import annotations

import argparse
import gc
import re
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

import greenml
from greenml.testing import ManualClock, SimulatedNVML

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scenarios
from _greenml_runs import (
    BENCH_SETTINGS,
    Report,
    Row,
    in_temp_dir,
    nvml_calls,
    pcts,
    quiet_greenml,
    sampler_default_interval_s,
)

CPU_TARGET_MS_PER_S = 1.0
SWITCH_P99_TARGET_US = 20.0
# The figure for snapshot() (0.14-0.22 ms before, target 200 us) is a typical
# latency: the target applies to the median; the 99th percentile is reported beside it
# (on 2 cores it includes waits for the GIL while the sampler thread reads).
SNAPSHOT_P50_TARGET_US = 200.0
FLAT_RATIO = 2.0
MEMORY_TARGET_B = 2_000_000  # 2 MB
BLOCK = 10_000
DAY_S = 86_400.0


# -- 1. CPU while training sleeps ------------------------------------------------------


def cpu_while_sleeping(seconds: float, warmup_s: float = 1.0, **settings: object) -> dict:
    """Process CPU ms per wall second and NVML calls per second while the main thread
    sleeps, after ``warmup_s`` (the counter-grid synchronisation) ."""
    with SimulatedNVML(scenarios.counter_gpus()) as sim:
        run = greenml.Tracker(**settings).start()
        try:
            time.sleep(warmup_s)
            c0, n0, w0 = time.process_time(), nvml_calls(sim), time.monotonic()
            time.sleep(seconds)
            c1, n1, w1 = time.process_time(), nvml_calls(sim), time.monotonic()
        finally:
            run.stop()
    wall = w1 - w0
    return {
        "cpu_ms_per_s": (c1 - c0) * 1000.0 / wall,
        "nvml_calls_per_s": (n1 - n0) / wall,
        "wall_s": wall,
        "calls_by_function": dict(sim.calls),
    }


def row_cpu(row: Row, seconds: float) -> None:
    r = cpu_while_sleeping(seconds, **BENCH_SETTINGS)
    row.data.update(r)
    row.result = (
        f"{r['cpu_ms_per_s']:.2f} ms/s CPU ({r['cpu_ms_per_s'] / 10:.2f} % of a core), "
        f"{r['nvml_calls_per_s']:.0f} NVML calls/s"
    )
    row.ok = r["cpu_ms_per_s"] <= CPU_TARGET_MS_PER_S


def row_cpu_recording(row: Row, seconds: float, store: Path) -> None:
    rec = {"location": "FR", "tracking_uri": f"sqlite:///{store / 'mlflow.db'}"}
    # A first recorded run imports mlflow and creates the store (one-off costs that
    # overhead.py reports); the measured run is the second.
    with SimulatedNVML(scenarios.counter_gpus()):
        greenml.Tracker(**rec).start().stop()
    r = cpu_while_sleeping(seconds, **rec)
    row.data.update(r)
    row.result = (
        f"{r['cpu_ms_per_s']:.2f} ms/s CPU, {r['nvml_calls_per_s']:.0f} NVML calls/s "
        "(journal + MLflow sqlite store, default log_interval_s, store created beforehand)"
    )


# -- 2 and 3. phase switches and snapshots -----------------------------------------------


def time_snapshots(run: greenml.Tracker, n: int, gap_s: float = 0.001) -> list[float]:
    """``n`` snapshot() latencies in microseconds, ``gap_s`` apart (so they meet the
    sampler at every point of its cycle)."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        run.snapshot()
        out.append((time.perf_counter_ns() - t0) / 1000.0)
        time.sleep(gap_s)
    return out


def switches_and_snapshots(
    switches: int, snapshots: int, cap_s: float = 180.0
) -> tuple[np.ndarray, float, list[float], list[float]]:
    """One run, 4 GPUs: snapshots at the start (after 1 s), ``switches`` phase switches
    timed one by one in the training thread as fast as possible, snapshots again at once."""
    ns = np.zeros(switches, dtype=np.int64)
    with SimulatedNVML(scenarios.counter_gpus()):
        run = greenml.Tracker(**BENCH_SETTINGS).start()
        try:
            time.sleep(1.0)
            snap_start = time_snapshots(run, snapshots)
            pc, begin, end = time.perf_counter_ns, run.begin_phase, run.end_phase
            deadline = time.monotonic() + cap_s
            t_start = time.monotonic()
            n = 0
            while n < switches:
                t0 = pc()
                begin("eval")
                end("eval")
                ns[n] = pc() - t0
                n += 1
                if n % 1000 == 0 and time.monotonic() > deadline:
                    break
            elapsed = time.monotonic() - t_start
            snap_after = time_snapshots(run, snapshots)
        finally:
            run.stop()
    return ns[:n], elapsed, snap_start, snap_after


def row_switches(row: Row, ns: np.ndarray, elapsed: float, target_n: int, report: Report) -> None:
    us = ns / 1000.0
    blocks = [us[i : i + BLOCK] for i in range(0, len(us), BLOCK) if len(us[i : i + BLOCK])]
    stats = [(*pcts(b, (50, 99)), float(b.max())) for b in blocks]
    p50, p99 = pcts(us)
    (f50, f99, _), (l50, l99, _) = stats[0], stats[-1]
    r50, r99 = l50 / f50, l99 / f99
    row.result = (
        f"{len(us):,} switches in {elapsed:.1f} s; all: p50 {p50:.1f} / p99 {p99:.1f} / max "
        f"{us.max():.0f} us; block 1 p50/p99 {f50:.1f}/{f99:.1f} us, block {len(blocks)} "
        f"{l50:.1f}/{l99:.1f} us (x{r50:.2f}/x{r99:.2f})"
    )
    if len(us) < target_n:
        row.result += f" (stopped at the time cap, {target_n:,} asked)"
    row.ok = p99 <= SWITCH_P99_TARGET_US and r50 <= FLAT_RATIO and r99 <= FLAT_RATIO
    row.data.update(
        switches=len(us),
        switching_s=round(elapsed, 2),
        p50_us=p50,
        p99_us=p99,
        max_us=float(us.max()),
        blocks=[{"p50_us": a, "p99_us": b, "max_us": c} for a, b, c in stats],
    )
    lines = [
        f"Phase switch (begin_phase + end_phase), per block of {BLOCK:,}:",
        "",
        "| block | p50 us | p99 us | max us |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {i + 1} | {a:.1f} | {b:.1f} | {c:.0f} |" for i, (a, b, c) in enumerate(stats)]
    report.details.append("\n".join(lines))


def row_snapshots(row: Row, start: list[float], after: list[float], switches: int) -> None:
    s50, s99 = pcts(start)
    a50, a99 = pcts(after)
    r50, r99 = a50 / s50, a99 / s99
    row.result = (
        f"start p50/p99 {s50:.0f}/{s99:.0f} us; after {switches:,} switches "
        f"{a50:.0f}/{a99:.0f} us (x{r50:.2f}/x{r99:.2f}; max {max(after):.0f} us)"
    )
    row.ok = max(s50, a50) <= SNAPSHOT_P50_TARGET_US and r50 <= FLAT_RATIO and r99 <= FLAT_RATIO
    row.data.update(
        start_p50_us=s50,
        start_p99_us=s99,
        after_p50_us=a50,
        after_p99_us=a99,
        after_max_us=max(after),
        n=len(start),
    )


# -- 4. memory over a long run -----------------------------------------------------------


def memory(cadence_s: float, span_s: float, switch_every_s: float = 180.0) -> dict:
    """Drive a run on a manual clock: a sample every ``cadence_s``, a phase switch (eval
    in or out) every ``switch_every_s`` of simulated time, for ``span_s``. tracemalloc
    from before the start; growth = current at the end - current after the first hour;
    peak growth = the peak after the first hour - current after it."""
    clock = ManualClock(1000.0)
    t_origin = clock()
    checkpoints: list[tuple[float, int]] = []
    with SimulatedNVML(scenarios.counter_gpus(), clock=clock):
        gc.collect()
        tracemalloc.start()
        # interval_s=3600: the sampler thread (real time) stays idle; this loop drives
        # every sample with sample_now() at the cadence under test.
        run = greenml.Tracker(clock=clock, interval_s=3600.0, **BENCH_SETTINGS).start()
        try:
            time.sleep(0.2)  # the thread's counter-grid search ends on a frozen clock
            i, in_eval, next_switch = 0, False, switch_every_s
            t_wall = time.perf_counter()

            def drive(until_s: float) -> None:
                nonlocal i, in_eval, next_switch
                while i * cadence_s < until_s - 1e-9:
                    i += 1
                    t = i * cadence_s
                    clock.set(t_origin + t)
                    run.sample_now()
                    if t >= next_switch:
                        if in_eval:
                            run.end_phase("eval")
                        else:
                            run.begin_phase("eval")
                        in_eval = not in_eval
                        next_switch += switch_every_s

            drive(3600.0)
            gc.collect()
            cur_1h, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            checkpoints.append((3600.0, cur_1h))
            t = 3600.0
            while t < span_s:
                t = min(t + DAY_S, span_s)
                drive(t)
                gc.collect()
                checkpoints.append((t, tracemalloc.get_traced_memory()[0]))
                print(
                    f"    row 4: day {t / DAY_S:.2f}, held {checkpoints[-1][1] / 1024:.0f} KiB, "
                    f"{time.perf_counter() - t_wall:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
            cur_end, peak = tracemalloc.get_traced_memory()
            sampling_s = time.perf_counter() - t_wall
            fp = run.snapshot()
        finally:
            run.stop()
            tracemalloc.stop()
    return {
        "cadence_s": cadence_s,
        "span_s": span_s,
        "samples": i,
        "phase_switches": int(span_s // switch_every_s),
        "current_1h_b": cur_1h,
        "current_end_b": cur_end,
        "peak_after_1h_b": peak,
        "growth_b": cur_end - cur_1h,
        "peak_growth_b": peak - cur_1h,
        "sampling_wall_s": sampling_s,
        "us_per_sample": sampling_s / max(i, 1) * 1e6,
        "checkpoints": checkpoints,
        "phases": list(fp.phases),
    }


def row_memory(row: Row, cadence_s: float, span_days: float, full: bool) -> None:
    span_s = span_days * DAY_S
    m = memory(cadence_s, span_s)
    row.data.update(m)
    month_s = 30 * DAY_S
    if full:
        growth, peak_growth = m["growth_b"], m["peak_growth_b"]
        how = f"measured over the full 30 days ({m['samples']:,} samples)"
    else:
        # Linear in the run's length from the first hour on: the held memory's growth
        # (none if it shrank), plus the transient headroom the peak showed above it.
        scale = (month_s - 3600.0) / (span_s - 3600.0)
        held = max(m["growth_b"], 0) * scale
        headroom = m["peak_after_1h_b"] - m["current_end_b"]
        growth, peak_growth = held, held + headroom
        how = (
            f"projected from a {span_days:g}-day run ({m['samples']:,} samples: growth "
            f"{m['growth_b'] / 1024:+.0f} KiB, peak growth {m['peak_growth_b'] / 1024:+.0f} KiB), "
            f"growth x{scale:.1f} linearly; --full runs the 30 days"
        )
    row.data.update(growth_30d_b=growth, peak_growth_30d_b=peak_growth, full=full)
    row.result = (
        f"30-day growth {growth / 1024:+.0f} KiB, peak growth {peak_growth / 1024:+.0f} KiB "
        f"(current after 1 h {m['current_1h_b'] / 1024:.0f} KiB); {how}; "
        f"{m['us_per_sample']:.0f} us/sample under tracemalloc"
    )
    row.ok = growth < MEMORY_TARGET_B and peak_growth < MEMORY_TARGET_B


# -- 5. cold start -----------------------------------------------------------------------


def row_cold_start(row: Row, quick: bool, report: Report) -> None:
    """Run benchmarks/cold_start.py (another script, its own process and budget) and
    report its verdict; its exit status is the verdict, its summary line the result."""
    script = Path(__file__).resolve().parent / "cold_start.py"
    if not script.exists():
        row.result = "skipped: benchmarks/cold_start.py does not exist (yet)"
        return
    cmd = [sys.executable, str(script)] + (["--runs", "3"] if quick else [])
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if p.returncode == 2 and "unrecognized arguments" in p.stderr:
        cmd = [sys.executable, str(script)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    verdict = lines[-1] if lines else f"no output; stderr: {p.stderr.strip()[-300:]}"
    budget = re.search(r"budget of ([0-9.]+ ?ms)", p.stdout)
    row.target = (
        f"median total <= {budget.group(1)} (cold_start.py's budget)"
        if budget
        else ("cold_start.py's own budget")
    )
    row.result = f"{verdict} (`{' '.join(['python', *cmd[1:]])}` exited {p.returncode})"
    row.result = row.result.replace(str(Path(__file__).resolve().parent.parent) + "/", "")
    row.ok = p.returncode == 0
    row.data.update(cmd=cmd, returncode=p.returncode, stdout=p.stdout[-4000:])
    report.details.append(
        "benchmarks/cold_start.py said:\n\n```text\n" + "\n".join(lines) + "\n```"
    )


# -- main ----------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--quick", action="store_true", help="shorter runs (3 s CPU, 30k switches, 6 h memory)"
    )
    ap.add_argument(
        "--full", action="store_true", help="row 4 over the full 30 days (~2.6M samples at 1 s)"
    )
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument(
        "--cadence-s", type=float, default=1.0, help="row 4's sampling cadence (default 1.0)"
    )
    ap.add_argument(
        "--seconds", type=float, default=None, help="row 1's measured span (default 10)"
    )
    ap.add_argument("--switches", type=int, default=None, help="row 2's switches (default 120000)")
    ap.add_argument(
        "--memory-days", type=float, default=None, help="row 4's span when not --full (default 1)"
    )
    ap.add_argument("--rows", default="1,1r,2,3,4,5", help="rows to run (default: all)")
    args = ap.parse_args()
    rows = {r.strip() for r in args.rows.split(",")}
    if "3" in rows:
        rows.add("2")  # row 3's second half comes after row 2's switches
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    switches = args.switches or (30_000 if args.quick else 120_000)
    days = 30.0 if args.full else (args.memory_days or (0.25 if args.quick else 1.0))
    if days * DAY_S <= 3600.0:
        ap.error("--memory-days must be more than an hour")
    json_path = str(Path(args.json).resolve()) if args.json else None

    quiet_greenml()
    report = Report("greenml cost benchmark", sys.argv, vars(args))
    report.only = rows
    report.notes.append(
        f"sampler cadence in the code now: {sampler_default_interval_s()}; row 4 drives "
        f"samples at --cadence-s {args.cadence_s:g}"
    )
    with in_temp_dir("greenml-cost-") as tmp:
        report.measure(
            "1",
            f"CPU while training sleeps, 4 counter GPUs, defaults, {seconds:g} s",
            f"<= {CPU_TARGET_MS_PER_S:g} ms/s",
            lambda r: row_cpu(r, seconds),
        )
        report.measure(
            "1r",
            "same, default recording (journal + MLflow local store)",
            "informational",
            lambda r: row_cpu_recording(r, seconds, tmp),
        )
        res: dict = {}

        def run_switches(r: Row) -> None:
            ns, elapsed, s0, s1 = switches_and_snapshots(switches, snapshots=300)
            res.update(s0=s0, s1=s1, n=len(ns))
            row_switches(r, ns, elapsed, switches, report)

        report.measure(
            "2",
            f"phase switch (enter + exit), training thread, 4 GPUs, {switches:,} switches",
            f"p99 <= {SWITCH_P99_TARGET_US:g} us; last block p50, p99 <= {FLAT_RATIO:g}x first",
            run_switches,
        )

        def run_snapshots(r: Row) -> None:
            if "s0" not in res:
                raise RuntimeError("row 2 did not run, so there is nothing to compare")
            row_snapshots(r, res["s0"], res["s1"], res["n"])

        report.measure(
            "3",
            "run.snapshot(), 4 GPUs, at the start and after row 2's switches",
            f"p50 <= {SNAPSHOT_P50_TARGET_US:g} us; after <= {FLAT_RATIO:g}x start",
            run_snapshots,
        )
        report.measure(
            "4",
            f"memory, 30-day run, manual clock, a sample every {args.cadence_s:g} s, "
            "a phase switch every 3 min, 4 GPUs",
            "growth after the first hour < 2 MB (current and peak)",
            lambda r: row_memory(r, args.cadence_s, days, args.full),
        )
        report.measure(
            "5",
            "first track() in a fresh process",
            "",
            lambda r: row_cold_start(r, args.quick, report),
        )
    return report.finish(json_path)


if __name__ == "__main__":
    sys.exit(main())
