"""The recorder's time-series points and its bounded timeseries.csv, driven by hand-built
footprints (no threads, no store)."""

from __future__ import annotations

import csv
import io
import itertools

import pytest

from greenml.footprint import DeviceEnergy, Footprint
from greenml.sinks.journal import Journal, MemoryJournal, read
from greenml.sinks.recorder import MAX_CSV_ROWS, Recorder

WATTS = (500.0, 250.0)  # two GPUs at constant power


def _fp(t: float) -> Footprint:
    kwh = [w * t / 3.6e6 for w in WATTS]
    return Footprint(
        duration_s=t,
        energy_kwh=sum(kwh) * 1.2,
        gpu_energy_kwh=sum(kwh),
        cpu_energy_kwh=0.0,
        ram_energy_kwh=0.0,
        pue=1.2,
        devices=tuple(
            DeviceEnergy(f"gpu:{i}", "gpu", "H100", "counter", k, index=i)
            for i, k in enumerate(kwh)
        ),
    )


def _recorder() -> Recorder:
    return Recorder(
        snapshot=lambda: None,
        journal=MemoryJournal(),
        targets=(),
        start={"greenml_run_id": "r", "node": "n"},
        interval_s=30.0,
        wall_start_s=1_700_000_000.0,
    )


def test_points_carry_interval_power_and_wall_time() -> None:
    rec = _recorder()
    first = rec.tick(_fp(0.0))
    second = rec.tick(_fp(30.0))
    assert first["step"] == 0 and "greenml/gpu_power_w" not in first["metrics"]
    assert second["step"] == 30 and second["ts"] == 1_700_000_030_000
    assert second["metrics"]["greenml/gpu_0/power_w"] == pytest.approx(500.0)
    assert second["metrics"]["greenml/gpu_1/power_w"] == pytest.approx(250.0)
    assert second["metrics"]["greenml/gpu_power_w"] == pytest.approx(750.0)
    # 750 W for 30 s = 22,500 J = 0.00625 kWh IT, x 1.2 PUE
    assert second["metrics"]["greenml/energy_kwh"] == pytest.approx(0.0075)


def test_timeseries_csv_stays_bounded_and_even_over_a_long_run() -> None:
    rec = _recorder()
    n = 10_000  # 83 hours at the default 30 s
    for k in range(n):
        rec.tick(_fp(30.0 * k))
    rec.finish(_fp(30.0 * n - 7.0), "FINISHED")
    rows = list(csv.DictReader(io.StringIO(rec.timeseries_csv())))
    assert len(rows) <= MAX_CSV_ROWS
    assert len(rows) >= MAX_CSV_ROWS // 2  # thinned evenly, not truncated
    t = [float(r["elapsed_s"]) for r in rows]
    gaps = {round(b - a, 3) for a, b in itertools.pairwise(t[:-1])}
    assert len(gaps) == 1  # one spacing for every kept point but the final one
    assert t[0] == 0.0 and t[-1] == pytest.approx(30.0 * n - 7.0)  # start and end kept
    # power from the cumulative columns of kept rows: the constant draw, whatever thinning
    for r in rows[1:]:
        assert float(r["gpu_0_power_w"]) == pytest.approx(500.0)
        assert float(r["gpu_power_w"]) == pytest.approx(750.0)
    assert rows[0]["gpu_power_w"] == ""
    assert len(rec.timeseries_csv()) < 200_000


def test_a_gpu_without_a_rate_yet_gets_no_power_until_it_has_one() -> None:
    # (elapsed, joules per GPU brought up to then), asked for from the second point on
    # (the first is the start, at zero); GPU 1 has no rate at 0.3 s
    live = iter([(0.3, {0: 150.0}), (0.6, {0: 300.0, 1: 150.0})])
    rec = Recorder(
        snapshot=lambda: None,
        gpu_joules=lambda: next(live),
        journal=MemoryJournal(),
        targets=(),
        start={"greenml_run_id": "r", "node": "n"},
        interval_s=0.3,
        wall_start_s=0.0,
    )
    rec.tick(_fp(0.004))
    second = rec.tick(_fp(0.3))["metrics"]
    third = rec.tick(_fp(0.6))["metrics"]
    assert second["greenml/gpu_0/power_w"] == pytest.approx(500.0)  # 150 J in 0.3 s
    assert "greenml/gpu_1/power_w" not in second  # unknown, not 0
    assert "greenml/gpu_power_w" not in second  # no total of some GPUs
    assert third["greenml/gpu_0/power_w"] == pytest.approx(500.0)
    assert third["greenml/gpu_1/power_w"] == pytest.approx(250.0)  # 150 J since the start
    assert third["greenml/gpu_power_w"] == pytest.approx(750.0)


@pytest.mark.parametrize(
    ("last_point_s", "end_s", "summary_ms"),
    [
        (0.6, 0.6, 601),  # the point was taken as the run stopped: it carries the end's time
        (0.6002, 0.6004, 601),  # the block ended within the point's millisecond
        (0.6, 0.65, 650),  # apart: the end keeps its own time
    ],
)
def test_the_summary_is_a_point_of_its_own_after_the_last_one(
    tmp_path, last_point_s: float, end_s: float, summary_ms: int
) -> None:
    # MLflow knows a point by name, step, millisecond and value, and sync skips the points
    # a run has: a summary sharing the last point's step and millisecond would be lost
    rec = Recorder(
        snapshot=lambda: None,
        journal=Journal(tmp_path / "run.jsonl"),
        targets=(),
        start={"greenml_run_id": "r", "node": "n"},
        interval_s=0.2,
        wall_start_s=1_700_000_000.0,
    )
    rec.tick(_fp(0.0))
    rec.tick(_fp(last_point_s))
    rec.finish(_fp(end_s), "FINISHED")
    c = read(tmp_path / "run.jsonl")
    points = [(r["step"], r["ts"]) for r in c.records if r["t"] in ("metrics", "summary")]
    assert points == [
        (0, 1_700_000_000_000),
        (0, 1_700_000_000_600),
        (0, 1_700_000_000_000 + summary_ms),
    ]
    assert c.end["ts"] == c.summary["ts"]
    assert c.summary["metrics"]["greenml/duration_s"] == end_s  # the figures are the end's
