"""assemble(): one way from energy to figures, for runs and estimates alike."""

from __future__ import annotations

import pytest

import greenml
from greenml.assemble import Allocation, Usage, assemble
from greenml.estimate import estimate
from greenml.factors.resolve import resolve_run_factors
from greenml.meters.base import Channel, Reading
from greenml.testing import ManualClock


def resolved(**kw):
    base = dict(
        location=None,
        allow_assumed_location=False,
        grid_intensity_g_per_kwh=None,
        hourly_intensity_csv=None,
        pue=None,
        price_usd_per_hour=None,
        usd_per_kwh=None,
        instance_type=None,
        instance_share=None,
        scope=None,
        environ={},
    )
    return resolve_run_factors(**{**base, **kw})


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


class Gpu:
    def __init__(self, clock, index, watts):
        self.clock, self.watts = clock, watts
        self.channel = Channel(f"gpu:{index}", "gpu", "NVIDIA A100-SXM4-40GB", "counter", index)

    def channels(self):
        return [self.channel]

    def read(self):
        return [Reading(self.channel.key, self.clock(), energy_j=self.watts * self.clock())]

    def close(self):
        pass


def test_a_run_and_an_estimate_of_the_same_job_agree():
    # 8 GPUs at 400 W for 1 h on a p4d.24xlarge in us-east-1, measured and modelled
    clock = ManualClock(0.0)
    run = greenml.Tracker(
        clock=clock,
        environ={},
        interval_s=3600,
        meters=[Gpu(clock, i, 400.0) for i in range(8)],
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
    assert measured.cost_usd == pytest.approx(21.958)  # the whole instance for an hour
