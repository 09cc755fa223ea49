"""How close greenml's GPU energy is to the truth, against greenml's targets.

Real time, the real sampler thread, one simulated GPU (greenml.testing.SimulatedNVML).
The truth is the exact integral of the trace the driver draws (scenarios.exact_j), over
monotonic instants taken at the calls: for a phase, around ``begin_phase`` /
``end_phase`` (the midpoint of the instants just before and just after each call); for a
whole run, the instant just before ``stop()`` and, back from it, the footprint's
``duration_s`` (greenml does not expose its start/stop instants; the start so found is
checked to fall inside the ``start()`` call). Windows: scenarios.windows (8, fixed seed).
Each cell is mean |error| / worst (signed) error, in percent.

a. counter GPU, BURSTY: 1 s and 0.3 s windows, as separate whole runs and as phases;
b. no counter, 1 s-averaged power, BURSTY: a 20 s run's total; 5 s, 1 s and 0.3 s
   windows as phases;
c. no counter, instantaneous (part-time) readings, SPIKY: a 20 s run's total, and whether
   the footprint's device entry states an uncertainty range that covers the error.

    python benchmarks/accuracy.py [--quick] [--json FILE]

Runs use ``location="FR", log_to_mlflow=False, journal=False`` and greenml's default
sampling, in a temporary folder; all scenarios share this process, one after the other.
Exits 1 when a target is missed (or a row could not be measured), listing which.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import greenml
from greenml.footprint import J_PER_KWH
from greenml.testing import SimulatedNVML

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scenarios
from _greenml_runs import (
    BENCH_SETTINGS,
    Report,
    Row,
    gpu_device_j,
    gpu_j,
    in_temp_dir,
    phase_gpu_j,
    quiet_greenml,
    sleep_until,
)
from scenarios import Summary, Window, error_pct, summarise


def exact(sim: SimulatedNVML, a_s: float, b_s: float) -> float:
    """Joules all simulated GPUs drew between monotonic instants ``a_s`` and ``b_s``."""
    return sum(scenarios.exact_j(sim, g.trace, a_s, b_s) for g in sim.gpus)


def timed(call: Any, *args: Any) -> float:
    """Call, and return the midpoint of the monotonic instants around the call."""
    a = time.monotonic()
    call(*args)
    return (a + time.monotonic()) / 2.0


# -- measurements ------------------------------------------------------------------------


def phases_run(
    sim: SimulatedNVML, wins: Sequence[Window], run_s: float | None = None
) -> tuple[list[float], float, greenml.Footprint, float]:
    """One run with each window as its own phase (``w0``, ``w1``...), relative to the
    run's start; returns the windows' errors, the run total's error, the footprint and
    the exact joules of the whole run."""
    run_s = run_s if run_s is not None else wins[-1].end_s + 0.5
    run = greenml.Tracker(**BENCH_SETTINGS)
    run.start()
    t0 = time.monotonic()
    instants = []
    try:
        for i, w in enumerate(wins):
            sleep_until(t0 + w.start_s)
            a = timed(run.begin_phase, f"w{i}")
            sleep_until(t0 + w.end_s)
            b = timed(run.end_phase, f"w{i}")
            instants.append((a, b))
        sleep_until(t0 + run_s)
    finally:
        t_stop = time.monotonic()
        fp = run.stop()
    errs = [
        error_pct(phase_gpu_j(fp, f"w{i}"), exact(sim, a, b)) for i, (a, b) in enumerate(instants)
    ]
    truth = exact(sim, t_stop - fp.duration_s, t_stop)
    return errs, error_pct(gpu_j(fp), truth), fp, truth


def run_bounds(
    before_start: float, after_start: float, t_stop: float, fp: greenml.Footprint
) -> tuple[float, float, bool]:
    """The run's [start, stop] in monotonic time: stop just before ``stop()``, start
    ``duration_s`` before it; whether that start falls inside the ``start()`` call."""
    start = t_stop - fp.duration_s
    inside = before_start - 1e-4 <= start <= after_start + 1e-4
    return (start if inside else after_start), t_stop, inside


def whole_runs(
    sim: SimulatedNVML, wins: Sequence[Window], slot_s: float = 1.0
) -> tuple[list[float], int]:
    """Each window a run of its own (a Tracker started and stopped), started at
    ``w.start_s`` (plus ``slot_s`` per earlier run, for the previous stop to finish)
    after a common origin, so starts fall at every phase of the trace and refresh grid.
    Returns the errors and how many starts had to be placed from outside the call."""
    origin = time.monotonic() + 0.5
    errs, outside = [], 0
    for i, w in enumerate(wins):
        run = greenml.Tracker(**BENCH_SETTINGS)
        sleep_until(origin + w.start_s + i * slot_s)
        a0 = time.monotonic()
        run.start()
        a1 = time.monotonic()
        sleep_until(a1 + w.length_s)
        t_stop = time.monotonic()
        fp = run.stop()
        a, b, inside = run_bounds(a0, a1, t_stop, fp)
        outside += not inside
        errs.append(error_pct(gpu_j(fp), exact(sim, a, b)))
    return errs, outside


# -- the uncertainty range ---------------------------------------------------------------

_RANGE_WORDS = re.compile(
    r"low|high|lower|upper|min|max|range|uncertain|bound|interval|ci\b|error", re.I
)
_PAIRS = (("low", "high"), ("lower", "upper"), ("min", "max"))


def _num(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def device_range_j(dev: Any) -> tuple[str, tuple[float, float] | None]:
    """Look on a device entry (its fields and its ``details`` pairs) for a stated
    uncertainty: a low/high pair (kWh, J or percent) or a symmetric +-value. Returns
    (what was found, (low_j, high_j) or None). greenml has no documented field for it
    yet, so this reads names, and says what it saw when it cannot interpret them."""
    cands: dict[str, Any] = {}
    for f in fields(dev):
        if f.name != "details":
            cands[f.name] = getattr(dev, f.name)
    for pair in getattr(dev, "details", ()) or ():
        if len(pair) == 2:
            cands[f"details.{pair[0]}"] = pair[1]
    hits = {k: v for k, v in cands.items() if _RANGE_WORDS.search(k) and k != "read_errors"}
    hits = {k: v for k, v in hits.items() if v is not None and v != () and v != ""}
    if not hits:
        return "no range stated", None
    e_j = dev.energy_kwh * J_PER_KWH

    def to_j(key: str, x: float) -> float:
        k = key.lower()
        if "pct" in k or "percent" in k:
            return e_j * (1 + x / 100.0)
        if "kwh" in k:
            return x * J_PER_KWH
        if k.endswith("_j") or "joule" in k:
            return x
        # no unit in the name: kWh if it is of the size of the energy, else a fraction
        return x * J_PER_KWH if 0.1 < x * J_PER_KWH / max(e_j, 1e-12) < 10 else e_j * (1 + x)

    for lo_w, hi_w in _PAIRS:
        lo = [k for k in hits if re.search(rf"(^|[_.]){lo_w}($|[_.])", k.lower())]
        hi = [k for k in hits if re.search(rf"(^|[_.]){hi_w}($|[_.])", k.lower())]
        if lo and hi and _num(hits[lo[0]]) is not None and _num(hits[hi[0]]) is not None:
            a, b = to_j(lo[0], _num(hits[lo[0]])), to_j(hi[0], _num(hits[hi[0]]))  # type: ignore[arg-type]
            if "pct" in lo[0].lower() and a > e_j:  # a "-5" stated as "5"
                a = 2 * e_j - a
            return f"{lo[0]}={hits[lo[0]]}, {hi[0]}={hits[hi[0]]}", (min(a, b), max(a, b))
    for k, v in hits.items():
        x = _num(v)
        if x is not None and re.search(r"uncertain|error|range|interval", k, re.I):
            half = (
                abs(to_j(k, abs(x)) - e_j)
                if not ("kwh" in k.lower() or k.endswith("_j"))
                else abs(to_j(k, x))
            )
            return f"{k}={v} (read as +-)", (e_j - half, e_j + half)
    return "range-like fields not understood: " + ", ".join(
        f"{k}={v!r}" for k, v in hits.items()
    ), None


# -- rows --------------------------------------------------------------------------------


def cell(s: Summary) -> str:
    return f"{s.cell()} % (n={s.n})"


def set_summary(row: Row, errs: Sequence[float], limit: float | None) -> Summary:
    s = summarise(errs)
    row.result = cell(s)
    row.data.update(errors_pct=list(errs), mean_abs_pct=s.mean_abs_pct, worst_pct=s.worst_pct)
    if limit is not None:
        row.ok = abs(s.worst_pct) <= limit
    return s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--quick", action="store_true", help="4 windows instead of 8, shorter long runs (~2 min)"
    )
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args()
    n = 4 if args.quick else 8
    total_s = 10.0 if args.quick else 20.0
    long_span = 25.0 if args.quick else 55.0  # 5 s windows: a ~60 s run (~26 s with --quick)
    json_path = str(Path(args.json).resolve()) if args.json else None

    quiet_greenml()
    report = Report("greenml accuracy benchmark", sys.argv, vars(args))
    w1, w03 = scenarios.windows(1.0, n), scenarios.windows(0.3, n)
    w5 = scenarios.windows(5.0, n, span_s=long_span)
    report.notes.append(
        "cells: mean |error| / worst signed error, in percent, against the trace's exact "
        "integral; targets apply to |worst|"
    )

    with in_temp_dir("greenml-accuracy-"):
        # a. counter GPU, BURSTY ------------------------------------------------------
        with SimulatedNVML(scenarios.counter_gpus(1)) as sim:
            greenml.Tracker(**BENCH_SETTINGS)  # factor tables loaded before any timing

            def runs(row: Row, wins: list[Window]) -> None:
                errs, outside = whole_runs(sim, wins)
                set_summary(row, errs, None)
                if outside:
                    row.result += f"; {outside} start(s) placed after start() returned"
                row.data["starts_outside_call"] = outside

            def phases(row: Row, wins: list[Window], limit: float) -> None:
                errs, total, _, _ = phases_run(sim, wins)
                set_summary(row, errs, limit)
                row.result += f"; the run's total {total:+.2f} %"
                row.data["run_total_pct"] = total

            report.measure(
                "a1",
                "counter, BURSTY, 1 s windows as separate runs",
                "informational",
                lambda r: runs(r, w1),
            )
            report.measure(
                "a2",
                "counter, BURSTY, 1 s windows as phases in a ~11 s run",
                "worst <= 1 %",
                lambda r: phases(r, w1, 1.0),
            )
            report.measure(
                "a3",
                "counter, BURSTY, 0.3 s windows as separate runs",
                "informational",
                lambda r: runs(r, w03),
            )
            report.measure(
                "a4",
                "counter, BURSTY, 0.3 s windows as phases in a ~11 s run",
                "worst <= 3 %",
                lambda r: phases(r, w03, 3.0),
            )

        # b. no counter, 1 s-averaged power, BURSTY -----------------------------------
        with SimulatedNVML(scenarios.averaged_gpus(1)) as sim:

            def total_only(row: Row, seconds: float, limit: float | None) -> None:
                _, total, fp, _ = phases_run(sim, [], run_s=seconds)
                row.result = f"{total:+.2f} %"
                row.data.update(total_pct=total, duration_s=fp.duration_s)
                if limit is not None:
                    row.ok = abs(total) <= limit

            def b_phases(row: Row, wins: list[Window], limit: float) -> None:
                errs, total, fp, _ = phases_run(sim, wins)
                set_summary(row, errs, limit)
                row.result += f"; the {fp.duration_s:.1f} s run's total {total:+.2f} %"
                row.data["run_total_pct"] = total

            report.measure(
                "b1",
                f"1 s-averaged power, BURSTY, a {total_s:g} s run's total",
                "<= 0.5 %",
                lambda r: total_only(r, total_s, 0.5),
            )
            report.measure(
                "b2",
                f"1 s-averaged, 5 s windows as phases in a ~{long_span + 1:.0f} s run",
                "worst <= 2 %",
                lambda r: b_phases(r, w5, 2.0),
            )
            report.measure(
                "b3",
                "1 s-averaged, 1 s windows as phases in a ~11 s run",
                "worst <= 5 %",
                lambda r: b_phases(r, w1, 5.0),
            )
            report.measure(
                "b4",
                "1 s-averaged, 0.3 s windows as phases in a ~11 s run",
                "worst <= 15 %",
                lambda r: b_phases(r, w03, 15.0),
            )

        # c. no counter, instantaneous readings, SPIKY -------------------------------
        with SimulatedNVML(scenarios.instantaneous_gpus(1)) as sim:
            res: dict[str, Any] = {}

            def c_total(row: Row) -> None:
                _, total, fp, truth = phases_run(sim, [], run_s=total_s)
                res.update(total=total, fp=fp, truth=truth)
                row.result = f"{total:+.2f} %"
                row.data.update(
                    total_pct=total, methods=[d.method for d in fp.devices if d.kind == "gpu"]
                )

            def c_range(row: Row) -> None:
                if "fp" not in res:
                    raise RuntimeError("c1 did not run")
                fp, truth = res["fp"], res["truth"]
                gpus = [d for d in fp.devices if d.kind == "gpu"]
                if not gpus:
                    raise RuntimeError("the footprint has no GPU device entry")
                dev = gpus[0]
                measured = gpu_device_j(fp)[dev.key]
                found, rng = device_range_j(dev)
                row.data.update(found=found, range_j=rng, measured_j=measured, exact_j=truth)
                if rng is None:
                    row.result = found
                    row.ok = False
                    return
                covers = rng[0] <= truth <= rng[1]
                lo, hi = error_pct(rng[0], truth), error_pct(rng[1], truth)
                row.result = (
                    f"{found}: [{lo:+.1f} %, {hi:+.1f} %] of the truth, "
                    f"{'covers' if covers else 'does not cover'} it"
                )
                row.ok = covers

            report.measure(
                "c1",
                f"instantaneous readings, SPIKY, a {total_s:g} s run's total",
                "informational",
                c_total,
            )
            report.measure(
                "c2",
                "c1's device entry states an uncertainty range covering its error",
                "range stated, covers the error",
                c_range,
            )
    return report.finish(json_path)


if __name__ == "__main__":
    sys.exit(main())
