"""Work counted by the training loop, the per-unit figures and MFU, budgets, the forecast,
and a job's totals from its hosts (greenml.progress, Tracker.step, combine_hosts)."""

from __future__ import annotations

import dataclasses
import time
import warnings

import pytest

import greenml
from greenml import schema
from greenml.config import resolve
from greenml.errors import ConfigError, GreenMLBudgetExceeded, GreenMLWarning
from greenml.footprint import DeviceEnergy, Footprint, Work
from greenml.integrations.distributed import combine_hosts
from greenml.progress import Progress
from greenml.testing.clock import ManualClock
from greenml.testing.meters import ConstantMeter
from greenml.testing.sinks import MemorySink

H100 = "NVIDIA H100 80GB HBM3"  # the name NVML gives; the GPU table knows it as H100 SXM
H100_BF16_DENSE = 1979e12 / 2  # datasheet: 1,979 TFLOPS BF16 with sparsity, half without


def tracker(clock, *meters, **settings):
    settings.setdefault("location", "FR")
    settings.setdefault("pue", 1.0)
    settings.setdefault("log_to_mlflow", False)
    settings.setdefault("journal", False)
    return greenml.Tracker(meters=list(meters), clock=clock, interval_s=3600, **settings)


def gpu(clock, watts=300.0, index=0):
    return ConstantMeter(clock, watts, key=f"gpu:{index}", name=H100, index=index)


def test_work_gives_per_unit_figures_and_mfu():
    clock = ManualClock(0.0)
    run = tracker(clock, gpu(clock)).start()
    for _ in range(10):  # ten 1-second steps of 32 samples x 128 tokens, 1e14 FLOPs each
        clock.advance(1.0)
        run.step(samples=32, tokens=32 * 128, flops=1e14)
    fp = run.stop()
    kwh = 300.0 * 10 / 3.6e6  # 300 W for 10 s, PUE 1
    assert fp.gpu_energy_kwh == pytest.approx(kwh)
    assert (fp.steps, fp.samples, fp.tokens, fp.flops) == (10, 320, 40960, 1e15)
    assert fp.energy_wh_per_1k_samples == pytest.approx(kwh * 1000 / 0.32)
    assert fp.energy_wh_per_1m_tokens == pytest.approx(kwh * 1000 / 0.04096)
    assert fp.energy_wh_per_pflop == pytest.approx(kwh * 1000 / 1.0)
    assert fp.co2e_g_per_1k_samples == pytest.approx(fp.co2e_kg * 1000 / 0.32)
    # MFU: 1e15 FLOPs in 10 s on one GPU whose dense BF16 peak is 989.5 TFLOP/s
    assert fp.mfu == pytest.approx(1e15 / (10 * H100_BF16_DENSE))
    peak = next(f for f in fp.factors if f.name == "gpu_peak_flops")
    assert peak.value == pytest.approx(H100_BF16_DENSE) and peak.source
    doc = fp.to_dict()
    assert doc["energy_wh_per_1k_samples"] == fp.energy_wh_per_1k_samples
    assert Footprint.from_dict(doc).samples == 320


def test_mfu_at_fp8_uses_the_fp8_peak_and_is_none_without_flops():
    clock = ManualClock(0.0)
    run = tracker(clock, gpu(clock), mfu_precision="fp8").start()
    clock.advance(4.0)
    run.step(flops=1e15)
    fp = run.stop()
    assert fp.mfu == pytest.approx(1e15 / (4 * 1979e12))
    clock = ManualClock(0.0)
    run = tracker(clock, gpu(clock)).start()
    clock.advance(1.0)
    run.step(samples=8)
    fp = run.stop()
    assert fp.mfu is None and fp.flops is None and fp.energy_wh_per_pflop is None
    assert fp.tokens is None and fp.energy_wh_per_1m_tokens is None


def test_a_run_that_counts_nothing_has_no_work_figures():
    clock = ManualClock(0.0)
    run = tracker(clock, gpu(clock)).start()
    clock.advance(2.0)
    fp = run.stop()
    assert fp.steps is None and fp.samples is None and fp.energy_wh_per_1k_samples is None
    assert not any(k.startswith(schema.METRIC_STEPS) for k in schema.summary_metrics(fp))


def test_mfu_counts_only_the_training_phase_time():
    clock = ManualClock(0.0)
    run = tracker(clock, gpu(clock)).start()
    clock.advance(6.0)
    run.step(flops=6e14)
    with run.phase("eval"):
        clock.advance(4.0)  # evaluation does no training FLOPs
    fp = run.stop()
    assert fp.mfu == pytest.approx(6e14 / (6 * H100_BF16_DENSE))


def test_a_resumed_run_continues_the_work():
    clock = ManualClock(0.0)
    first = tracker(clock, gpu(clock)).start()
    for _ in range(3):
        clock.advance(1.0)
        first.step(samples=10)
    before = first.stop().to_dict()
    clock = ManualClock(0.0)
    second = tracker(clock, gpu(clock))
    second.start()
    second.resume_from(before)
    for _ in range(2):
        clock.advance(1.0)
        second.step(samples=10)
    fp = second.stop()
    assert (fp.steps, fp.samples) == (5, 50)
    assert fp.gpu_energy_kwh == pytest.approx(300.0 * 5 / 3.6e6)
    assert fp.energy_wh_per_1k_samples == pytest.approx(fp.energy_kwh * 1000 / 0.05)


def test_the_summary_and_points_carry_the_work_metrics():
    clock = ManualClock(0.0)
    sink = MemorySink()
    run = tracker(clock, gpu(clock), sinks=[sink]).start()
    clock.advance(2.0)
    run.step(samples=100, flops=1e15)
    run.stop()
    latest = sink.latest
    assert latest[schema.METRIC_SAMPLES] == 100 and latest[schema.METRIC_FLOPS] == 1e15
    assert latest[schema.METRIC_ENERGY_WH_PER_1K_SAMPLES] == pytest.approx(
        300 * 2 / 3.6e6 * 1000 / 0.1
    )
    assert latest[schema.METRIC_MFU] == pytest.approx(1e15 / (2 * H100_BF16_DENSE))
    # ratios are never added up over a run's blocks; counts are
    assert not schema.is_cumulative(schema.METRIC_MFU)
    assert not schema.is_cumulative(schema.METRIC_FORECAST_ENERGY_KWH)
    assert not schema.is_cumulative(schema.node_metric("h1", schema.METRIC_ENERGY_WH_PER_PFLOP))
    assert schema.is_cumulative(schema.METRIC_SAMPLES)


def test_log_point_records_a_point_at_the_trainers_step():
    clock = ManualClock(0.0)
    sink = MemorySink()
    run = tracker(clock, gpu(clock), sinks=[sink], log_interval_s=3600).start()
    for step in range(1, 6):
        clock.advance(1.0)
        run.step(step=step * 10)
    run.sample_now()
    run.log_point()
    deadline = time.monotonic() + 5
    while schema.METRIC_STEPS not in sink.latest and time.monotonic() < deadline:
        time.sleep(0.01)
    run.stop()
    steps = [step for step, _ in sink.history(schema.METRIC_ENERGY_KWH)]
    assert 50 in steps[:-1]  # the logged point, at the trainer's global step
    assert steps[-1] == 50  # and the summary at the last step
    assert sink.history(schema.METRIC_STEPS)[0] == (50, 5)  # five steps counted


# -- the forecast ----------------------------------------------------------------------


def footprint(energy_kwh, cost_usd=None, co2e_kg=None):
    return Footprint(
        duration_s=1.0,
        energy_kwh=energy_kwh,
        gpu_energy_kwh=energy_kwh,
        cpu_energy_kwh=0.0,
        ram_energy_kwh=0.0,
        co2e_kg=co2e_kg,
        cost_usd=cost_usd,
    )


def progress(**settings):
    s = resolve({"location": "FR", **settings}, environ={})
    return Progress(s, s.voice())


def test_the_forecast_projects_the_marginal_rate_to_the_last_step():
    p = progress(forecast_after_steps=5)
    p.total_steps = 100
    # a run that spent 0.2 kWh before its first step, then 0.01 kWh per step
    for step in (1, 3, 10):
        while p.steps < step:
            p.count()
        p.evaluate(footprint(0.2 + 0.01 * step, cost_usd=5 + 0.5 * step))
        if step < 5:
            assert p.forecast_now() == {}  # not before forecast_after_steps
    assert p.forecast_now()["energy_kwh"] == pytest.approx(0.2 + 0.01 * 100)
    assert p.forecast_now()["cost_usd"] == pytest.approx(5 + 0.5 * 100)
    assert "co2e_kg" not in p.forecast_now()  # unknown figures are not forecast


def test_no_forecast_without_the_total_steps():
    p = progress(forecast_after_steps=1)
    for step in (1, 5):
        while p.steps < step:
            p.count()
        p.evaluate(footprint(0.01 * step))
    assert p.forecast_now() == {}


# -- budgets -----------------------------------------------------------------------------


def test_a_crossed_budget_warns_once_and_flags_the_run():
    clock = ManualClock(0.0)
    budget = 300.0 * 5 / 3.6e6  # 300 W for 5 s
    run = tracker(clock, gpu(clock), max_energy_kwh=budget).start()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for _ in range(8):
            clock.advance(1.0)
            run.step()
            run.sample_now()
            run._progress.evaluate(run.snapshot())
    crossed = [w for w in seen if "budget crossed" in str(w.message)]
    assert len(crossed) == 1 and issubclass(crossed[0].category, GreenMLWarning)
    assert "max_energy_kwh=0.000416667" in str(crossed[0].message)
    assert "stop_on_budget=True stops it" in str(crossed[0].message)
    assert run.stop_requested is None  # warned only: training goes on
    fp = run.stop()
    assert "budget:max_energy_kwh" in fp.flags


def test_stop_on_budget_raises_once_at_the_next_step_and_tags_the_run():
    clock = ManualClock(0.0)
    sink = MemorySink()
    budget = 300.0 * 3 / 3.6e6  # crossed at 3 s
    run = tracker(
        clock, gpu(clock), sinks=[sink], max_energy_kwh=budget, stop_on_budget=True
    ).start()
    stopped_at = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step in range(1, 10):
            clock.advance(1.0)
            try:
                run.step()
            except GreenMLBudgetExceeded as e:
                stopped_at = step
                assert (e.budget, e.limit, e.basis) == ("max_energy_kwh", budget, "actual")
                assert e.value >= budget
                break
            run.sample_now()
            run._progress.evaluate(run.snapshot())
    # the energy reached the budget at 3 s (checked after step 3): step 4 raises
    assert stopped_at == 4
    run.step()  # once only: a loop that catches it and goes on is not stopped again
    run.stop()
    assert sink.tags[schema.TAG_BUDGET_STOP].startswith("max_energy_kwh=0.00025 (0.00025 kWh")


def test_a_budget_on_the_forecast_stops_a_run_that_will_overshoot():
    p = progress(
        max_cost_usd=40.0, budget_on="forecast", stop_on_budget=True, forecast_after_steps=2
    )
    p.total_steps = 100
    for step in (1, 2, 4):
        while p.steps < step:
            p.count()
        p.evaluate(footprint(0.01, cost_usd=0.5 * step))  # 0.5 USD a step: 50 USD in all
    assert p.stop is not None and p.stop.basis == "forecast"
    assert p.stop.value == pytest.approx(50.0)
    assert "forecast for the whole run at step 2" in p.stop.text()  # the first forecast


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"max_energy_kwh": 0}, "max_energy_kwh=0 is invalid: it must be a number > 0"),
        ({"max_co2e_kg": -1}, "max_co2e_kg=-1 is invalid: it must be a number > 0"),
        ({"max_cost_usd": "lots"}, "max_cost_usd='lots' is not a number"),
        ({"budget_on": "predicted"}, "budget_on='predicted' is invalid: use one of 'actual'"),
        ({"forecast_after_steps": 2.5}, "forecast_after_steps=2.5 is invalid: give a whole"),
        ({"stop_on_budget": "maybe"}, "stop_on_budget='maybe' is invalid: give true or false"),
        ({"mfu_precision": "int4"}, "mfu_precision='int4' is invalid: use one of 'bf16'"),
    ],
)
def test_bad_budget_settings_name_the_value(settings, message):
    with pytest.raises(ConfigError) as e:
        greenml.Tracker(location="FR", **settings)
    assert message in str(e.value)


def test_budget_from_the_environment_names_the_variable():
    with pytest.raises(ConfigError) as e:
        greenml.Tracker(location="FR", environ={"GREENML_MAX_ENERGY_KWH": "-2"})
    assert "GREENML_MAX_ENERGY_KWH='-2'" in str(e.value)


# -- a job's totals from its hosts -------------------------------------------------------------


def host_fp(gpu_kwh, gpus, cost, *, steps=10, samples=320.0, train_s=100.0):
    devices = tuple(
        DeviceEnergy(f"gpu:{i}", "gpu", H100, "counter", gpu_kwh / gpus, index=i)
        for i in range(gpus)
    )
    train = footprint(gpu_kwh, cost_usd=cost, co2e_kg=gpu_kwh * 0.05)
    return Footprint(
        duration_s=train_s + 5,
        energy_kwh=gpu_kwh,
        gpu_energy_kwh=gpu_kwh,
        cpu_energy_kwh=0.0,
        ram_energy_kwh=0.0,
        co2e_kg=gpu_kwh * 0.05,
        co2e_market_kg=gpu_kwh * 0.05,
        cost_usd=cost,
        devices=devices,
        measurement="counter",
        phases={"train": dataclasses.replace(train, duration_s=train_s)},
        steps=steps,
        samples=samples,
        flops=1e18,
    )


def test_job_totals_are_the_sum_of_the_hosts_and_count_each_gpu_once():
    a, b = host_fp(2.0, 2, 10.0), host_fp(3.0, 3, 15.0, train_s=120.0)
    job = combine_hosts({"node-a": a, "node-b": b}, work_from="node-a")
    assert job.energy_kwh == pytest.approx(5.0) and job.cost_usd == pytest.approx(25.0)
    assert job.co2e_kg == pytest.approx(0.25)
    assert job.phases["train"].energy_kwh == pytest.approx(5.0)
    assert job.duration_s == 125.0  # the longest host
    keys = [d.key for d in job.devices]
    assert keys == ["node-a/gpu:0", "node-a/gpu:1", "node-b/gpu:0", "node-b/gpu:1", "node-b/gpu:2"]
    assert sorted(schema.gpu_energy_by_index(job)) == [0, 1, 2, 3, 4]
    assert schema.run_params(job)[schema.PARAM_GPU_COUNT] == "5"
    assert (job.steps, job.samples) == (10, 320.0)  # the job's work, not twice over
    assert job.energy_wh_per_1k_samples == pytest.approx(5.0 * 1000 / 0.32)


def test_work_plus_keeps_unknown_counts_unknown():
    assert Work(2, None, 5.0, None).plus(Work(3, None, 1.0, None)) == Work(5, None, 6.0, None)
    assert Work(1, 2.0).plus(Work(1)) == Work(2, 2.0)
