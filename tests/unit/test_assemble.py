"""assemble(): one way from energy to figures, for runs and estimates alike."""

from __future__ import annotations

import pytest

import greenml
from greenml.assemble import Allocation, Usage, assemble
from greenml.config import Settings
from greenml.estimate import estimate
from greenml.factors.resolve import resolve_run_factors
from greenml.testing import ConstantMeter, ManualClock

A100 = "NVIDIA A100-SXM4-40GB"


def resolved(**kw):
    return resolve_run_factors(Settings(**kw), environ={})


def test_hand_worked_figures():
    # 1 kWh of GPU energy over 1 h; PUE 1.2; 50 g/kWh; 3 USD/h for half an instance
    rf = resolved(grid_intensity_g_per_kwh=50.0, pue=1.2, price_usd_per_hour=3.0)
    fp = assemble(
        Usage(duration_s=3600.0, gpu_j=3.6e6, phases={"eval": Usage(600.0, 0.6e6)}),
        rf,
        Allocation(instances_charged=0.5),
        grid=rf.grid,
        location=None,
        instance_type=None,
    )
    assert fp.energy_kwh == pytest.approx(1.2)
    assert fp.co2e_kg == pytest.approx(1.2 * 50 / 1000)
    assert fp.co2e_market_kg == pytest.approx(fp.co2e_kg)  # no market inputs: same
    assert fp.cost_usd == pytest.approx(3.0 * 0.5)
    assert fp.phases["eval"].energy_kwh == pytest.approx(0.6 / 3.6 * 1.2)
    assert fp.embodied_co2e_kg is None  # hardware unknown


def test_a_run_and_an_estimate_of_the_same_job_agree():
    # 8 GPUs at 400 W for 1 h on a p4d.24xlarge in us-east-1, measured and modelled
    clock = ManualClock(0.0)
    run = greenml.Tracker(
        clock=clock,
        environ={},
        interval_s=3600,
        meters=[ConstantMeter(clock, 400.0, f"gpu:{i}", name=A100, index=i) for i in range(8)],
        location="aws:us-east-1",
        instance_type="p4d.24xlarge",
    ).start()
    clock.advance(3600.0)
    measured = run.stop()
    modelled = estimate(
        location="aws:us-east-1", instance_type="p4d.24xlarge", hours=1.0, power_w=400.0
    ).footprint
    assert measured.gpu_energy_kwh == pytest.approx(3.2)
    for name in ("energy_kwh", "co2e_kg", "co2e_market_kg", "cost_usd", "embodied_co2e_kg"):
        assert getattr(measured, name) == pytest.approx(getattr(modelled, name)), name
    assert measured.cost_usd == pytest.approx(21.957642)  # the whole instance for an hour


def test_begin_and_end_phase_without_a_block():
    clock = ManualClock(0.0)
    run = greenml.Tracker(
        clock=clock,
        environ={},
        interval_s=3600,
        location="FR",
        meters=[ConstantMeter(clock, 100.0, "gpu:0", name=A100, index=0)],
    ).start()
    clock.advance(2.0)
    run.begin_phase("eval")
    clock.advance(3.0)
    run.begin_phase("save")
    clock.advance(1.0)
    with pytest.raises(greenml.GreenMLError, match="innermost open phase is 'save'"):
        run.end_phase("eval")
    run.end_phase("save")
    clock.advance(1.0)
    run.end_phase()
    clock.advance(4.0)
    fp = run.stop()
    joules = {name: p.gpu_energy_kwh * 3.6e6 for name, p in fp.phases.items()}
    assert joules == pytest.approx({"train": 600.0, "eval": 400.0, "save": 100.0})
    with pytest.raises(greenml.GreenMLError, match="no phase open"):
        run.end_phase()


def test_a_resumed_run_carries_the_checkpoints_energy_and_time():
    def part(seconds, eval_seconds):
        clock = ManualClock(0.0)
        run = greenml.Tracker(
            clock=clock,
            environ={},
            interval_s=3600,
            location="FR",
            meters=[ConstantMeter(clock, 200.0, "gpu:0", name=A100, index=0)],
        ).start()
        clock.advance(seconds)
        with run.phase("eval"):
            clock.advance(eval_seconds)
        return run, clock

    first, _ = part(100.0, 20.0)
    before = first.stop()
    import json

    saved = json.loads(json.dumps(before.to_dict()))  # as a checkpoint would keep it
    second, _ = part(50.0, 10.0)
    second.resume_from(saved)
    with pytest.raises(greenml.GreenMLError, match="already called"):
        second.resume_from(saved)
    fp = second.stop()
    # 200 W for 120 s, then for 60 s: 36,000 J in 180 s; eval 30 s of it: 6,000 J
    assert fp.duration_s == pytest.approx(180.0)
    assert fp.gpu_energy_kwh * 3.6e6 == pytest.approx(36_000.0)
    assert fp.phases["eval"].gpu_energy_kwh * 3.6e6 == pytest.approx(6_000.0)
    assert fp.phases["eval"].duration_s == pytest.approx(30.0)
    assert fp.co2e_kg == pytest.approx(before.co2e_kg * 1.5)  # same factors, 1.5 x the energy
    assert "resumed" in fp.flags
