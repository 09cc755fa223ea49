"""Tracker lifecycle, phases, footprint arithmetic and argument validation."""

from __future__ import annotations

import threading
import time

import pytest

import greenml
from greenml.errors import ConfigError, GreenMLError
from greenml.meters.nvml import NvmlMeter
from greenml.sampler import THREAD_NAME
from greenml.testing import ConstantMeter, ManualClock, SimGPU, SimulatedNVML, traces


def sampler_threads():
    return [t for t in threading.enumerate() if t.name == THREAD_NAME and t.is_alive()]


@pytest.fixture
def sim():
    with SimulatedNVML([SimGPU(trace=traces.constant(300.0))]) as s:
        yield s


def test_context_manager_measures_the_simulated_gpu_in_real_time(sim):
    with greenml.track(
        meters=lambda: [NvmlMeter(environ={})], interval_s=0.05, location="FR"
    ) as run:
        time.sleep(0.8)
        with run.phase("eval"):
            time.sleep(0.3)
        time.sleep(0.2)
    fp = run.footprint
    assert fp.final and fp.measurement == "simulated"
    # 300 W for the tracked duration, by hand.
    assert fp.gpu_energy_kwh * 3.6e6 == pytest.approx(300.0 * fp.duration_s, rel=0.005)
    eval_fp = fp.phases["eval"]
    assert eval_fp.duration_s == pytest.approx(0.3, abs=0.05)
    assert eval_fp.gpu_energy_kwh * 3.6e6 == pytest.approx(300.0 * eval_fp.duration_s, rel=0.02)
    assert sum(p.gpu_energy_kwh for p in fp.phases.values()) == pytest.approx(fp.gpu_energy_kwh)
    assert sum(p.duration_s for p in fp.phases.values()) == pytest.approx(fp.duration_s)
    (dev,) = fp.devices
    assert (dev.name, dev.uuid, dev.method, dev.power_limit_w) == (
        "NVIDIA H100 80GB HBM3",
        sim.gpus[0].uuid,
        "counter",
        700.0,
    )
    assert not sampler_threads()


def test_manual_clock_phases_nest_and_outside_time_is_train():
    clock = ManualClock(0.0)
    meter = ConstantMeter(clock, watts=100.0)
    run = greenml.Tracker(meters=[meter], clock=clock, interval_s=3600, location="FR").start()
    clock.advance(2.0)  # train: 2 s
    with run.phase("eval"):
        clock.advance(1.0)  # eval: 1 s
        with run.phase("generate"):
            clock.advance(0.5)  # generate (innermost): 0.5 s
        clock.advance(1.5)  # eval again: 1.5 s
    clock.advance(1.0)  # train: 1 s
    fp = run.stop()
    j = {name: p.gpu_energy_kwh * 3.6e6 for name, p in fp.phases.items()}
    assert j == pytest.approx({"train": 300.0, "eval": 250.0, "generate": 50.0})
    assert {n: p.duration_s for n, p in fp.phases.items()} == pytest.approx(
        {"train": 3.0, "eval": 2.5, "generate": 0.5}
    )
    assert fp.duration_s == pytest.approx(6.0)


def test_default_phase_can_be_other():
    clock = ManualClock(0.0)
    run = greenml.Tracker(
        meters=[ConstantMeter(clock, 10.0)], clock=clock, default_phase="other", location="FR"
    ).start()
    clock.advance(1.0)
    assert set(run.stop().phases) == {"other"}


def test_footprint_arithmetic_by_hand():
    clock = ManualClock(0.0)
    meters = [
        ConstantMeter(clock, 1000.0),
        ConstantMeter(clock, 150.0, key="cpu:package-0", kind="cpu"),
        ConstantMeter(clock, 50.0, key="ram", kind="ram", method="estimated"),
    ]
    run = greenml.Tracker(
        meters=meters,
        clock=clock,
        pue=1.5,
        grid_intensity_g_per_kwh=400.0,
        price_usd_per_hour=3.6,
    ).start()
    clock.advance(36.0)
    fp = run.stop()
    # GPU 1000 W x 36 s = 36,000 J = 0.01 kWh; CPU 150 W -> 0.0015 kWh; RAM 50 W -> 0.0005.
    assert fp.gpu_energy_kwh == pytest.approx(0.01)
    assert fp.cpu_energy_kwh == pytest.approx(0.0015)
    assert fp.ram_energy_kwh == pytest.approx(0.0005)
    assert fp.energy_kwh == pytest.approx(0.012 * 1.5)  # facility = IT x PUE
    assert fp.co2e_kg == pytest.approx(0.018 * 400.0 / 1000.0)
    assert fp.co2e_market_kg == fp.co2e_kg  # no market-based factor configured
    assert fp.cost_usd == pytest.approx(3.6 * 36.0 / 3600.0)
    # Embodied carbon (SCI view), by hand: (1000 kg server + 150 kg GPU) x 36 s over a
    # 4-year life; kept apart from co2e_kg.
    assert fp.embodied_co2e_kg == pytest.approx(1150.0 * (36.0 / 3600.0) / (4 * 8760))
    assert fp.sci_co2e_kg == pytest.approx(fp.co2e_kg + fp.embodied_co2e_kg)
    inventory = [f for f in fp.factors if not f.name.startswith("embodied")]
    assert {f.name: (f.value, f.source) for f in inventory} == {
        "pue": (1.5, "user-supplied"),
        "grid_intensity": (400.0, "user-supplied"),
        "market_intensity": (400.0, "user-supplied"),
        "price": (3.6, "user-supplied"),
    }
    market = next(f for f in fp.factors if f.name == "market_intensity")
    assert "equals location-based" in market.note
    assert "estimated:ram" in fp.flags
    assert fp.measurement == "counter"
    assert fp.scope == "scope2"  # no cloud location: own hardware


def test_own_hardware_in_a_country_uses_the_shipped_factors():
    clock = ManualClock(0.0)
    run = greenml.Tracker(meters=[ConstantMeter(clock, 100.0)], clock=clock, location="FR").start()
    clock.advance(36.0)  # 100 W x 36 s = 3600 J = 0.001 kWh IT
    fp = run.stop()
    grid_f = next(f for f in fp.factors if f.name == "grid_intensity")
    pue_f = next(f for f in fp.factors if f.name == "pue")
    # Own hardware: the Uptime Institute industry average PUE (2024); France's grid figure.
    assert (pue_f.value, pue_f.year) == (1.56, 2024)
    assert fp.energy_kwh == pytest.approx(0.001 * 1.56)
    assert fp.co2e_kg == pytest.approx(0.001 * 1.56 * grid_f.value / 1000.0)
    assert grid_f.source.startswith("CodeCarbon") and grid_f.licence and grid_f.year
    assert fp.cost_usd is None and "no_price" in fp.flags
    assert (fp.location, fp.scope) == ("FR", "scope2")


def test_cloud_instance_priced_by_the_share_of_it_the_job_used():
    clock = ManualClock(0.0)
    gpus = [ConstantMeter(clock, 400.0, key=f"gpu:{i}") for i in range(2)]
    run = greenml.Tracker(
        meters=gpus, clock=clock, location="aws:us-east-1", instance_type="p4d.24xlarge"
    ).start()
    clock.advance(1800.0)  # half an hour on 2 of the instance's 8 GPUs
    fp = run.stop()
    # By hand: 21.957642 USD/h (us-east-1, as of 2026-01-21) x 0.5 h x 2/8 = 2.744705 USD.
    assert fp.cost_usd == pytest.approx(21.957642 * 0.5 * 2 / 8)
    assert fp.pue == 1.14  # AWS fleet average, 2025
    assert fp.gpu_energy_kwh == pytest.approx(2 * 400.0 * 1800.0 / 3.6e6)
    grid_f = next(f for f in fp.factors if f.name == "grid_intensity")
    assert "US-VA" in grid_f.note and "eGRID" in grid_f.source
    assert fp.scope == "scope3-cat1"


def test_a_spot_run_is_priced_at_the_spot_row_and_says_so():
    from greenml import schema
    from greenml.factors.prices import StalePriceWarning, load_prices

    (spot,) = [
        p
        for p in load_prices()
        if (p.provider, p.instance_type, p.region, p.pricing)
        == ("aws", "p5.48xlarge", "us-east-1", "spot")
    ]
    assert spot.usd_per_hour == pytest.approx((14.582 + 14.8686) / 2)  # median of 4 zones
    clock = ManualClock(0.0)
    gpus = [ConstantMeter(clock, 600.0, key=f"gpu:{i}") for i in range(8)]
    with pytest.warns(StalePriceWarning, match="spot prices move daily"):
        run = greenml.Tracker(
            meters=gpus,
            clock=clock,
            location="aws:us-east-1",
            instance_type="p5.48xlarge",
            environ={"GREENML_PRICING": "spot"},
        ).start()
    clock.advance(3600.0)
    fp = run.stop()
    assert fp.cost_usd == pytest.approx(spot.usd_per_hour)  # 1 h of the whole instance
    price = next(f for f in fp.factors if f.name == "price")
    assert (price.basis, price.as_of) == ("spot", spot.as_of.isoformat())
    assert "spot" in price.note
    assert "stale_price" in fp.flags  # every shipped spot price is older than 30 days
    params = schema.run_params(fp)
    assert params["greenml.pricing"] == "spot"
    assert params["greenml.price_as_of"] == spot.as_of.isoformat()


def test_a_bad_pricing_fails_before_the_run_naming_where_it_came_from():
    with pytest.raises(ConfigError, match=r"GREENML_PRICING.*'reserved'.*'on-demand', 'spot'"):
        greenml.track(location="FR", environ={"GREENML_PRICING": "reserved"})
    with pytest.raises(ConfigError, match=r"pricing.*'Spott'.*'on-demand', 'spot'"):
        greenml.track(location="FR", pricing="Spott", environ={})


def test_unknown_location_fails_before_the_run_unless_assumed():
    with pytest.raises(ConfigError, match="location is unknown"):
        greenml.track(environ={})
    clock = ManualClock(0.0)
    run = greenml.Tracker(
        meters=[ConstantMeter(clock, 100.0)],
        clock=clock,
        environ={},
        allow_assumed_location=True,
    ).start()
    clock.advance(36.0)
    fp = run.stop()
    grid_f = next(f for f in fp.factors if f.name == "grid_intensity")
    assert "location_assumed" in fp.flags and "ASSUMED" in grid_f.note
    assert fp.co2e_kg == pytest.approx(fp.energy_kwh * 475.0 / 1000.0)


def test_location_detected_from_the_cloud_sdk_environment():
    run = greenml.track(environ={"AWS_REGION": "eu-north-1"}, meters=[])
    assert run.run_factors.location.zone == "SE-3"
    assert run.run_factors.location.origin == "AWS_REGION"


def test_full_renewable_coverage_makes_market_based_zero():
    clock = ManualClock(0.0)
    run = greenml.Tracker(
        meters=[ConstantMeter(clock, 100.0)], clock=clock, location="DE", renewable_share=1.0
    ).start()
    clock.advance(36.0)
    fp = run.stop()
    assert fp.co2e_market_kg == 0.0 and fp.co2e_kg > 0


def test_hourly_intensity_file_changes_the_answer(tmp_path):
    import time as _time

    hour = int(_time.time() // 3600) * 3600

    def run_with(value):
        f = tmp_path / f"hourly-{value}.csv"
        rows = [
            f"{_time.strftime('%Y-%m-%dT%H:00:00Z', _time.gmtime(hour + k * 3600))},{value}"
            for k in range(-2, 3)
        ]
        f.write_text("timestamp,g_per_kwh\n" + "\n".join(rows) + "\n")
        clock = ManualClock(0.0)
        run = greenml.Tracker(
            meters=[ConstantMeter(clock, 100.0)],
            clock=clock,
            location="FR",
            hourly_intensity_csv=str(f),
        ).start()
        clock.advance(36.0)
        return run.stop()

    low, high = run_with(100.0), run_with(300.0)
    assert low.grid_intensity_g_per_kwh == pytest.approx(100.0)
    assert high.co2e_kg == pytest.approx(3 * low.co2e_kg)


def test_electricity_price_for_own_hardware():
    clock = ManualClock(0.0)
    run = greenml.Tracker(
        meters=[ConstantMeter(clock, 1800.0)],  # below the 2,000 W any GPU can draw
        clock=clock,
        pue=1.2,
        usd_per_kwh=0.25,
        location="FR",
    ).start()
    clock.advance(2000.0)  # 1800 W x 2000 s = 1 kWh IT, 1.2 kWh facility
    assert run.stop().cost_usd == pytest.approx(0.3)


def test_explicit_start_stop_snapshot_and_stop_twice():
    clock = ManualClock(0.0)
    run = greenml.Tracker(meters=[ConstantMeter(clock, 100.0)], clock=clock, location="FR").start()
    with pytest.raises(GreenMLError, match="still going"):
        run.footprint  # noqa: B018
    clock.advance(1.0)
    run.sample_now()
    snap = run.snapshot()
    assert not snap.final
    assert snap.gpu_energy_kwh * 3.6e6 == pytest.approx(100.0)
    clock.advance(1.0)
    first = run.stop()
    assert run.stop() is first
    assert first.gpu_energy_kwh * 3.6e6 == pytest.approx(200.0)
    with pytest.raises(GreenMLError, match="already started"):
        run.start()


def test_decorator_gives_fresh_state_per_call():
    clock = ManualClock(0.0)

    @greenml.track(meters=lambda: [ConstantMeter(clock, 100.0)], clock=clock, location="FR")
    def job(seconds):
        clock.advance(seconds)
        return seconds * 2

    assert job.last_run is None
    assert job(3.0) == 6.0
    first = job.last_run
    assert job(1.0) == 2.0
    second = job.last_run
    assert first is not second
    assert first.footprint.gpu_energy_kwh * 3.6e6 == pytest.approx(300.0)
    assert second.footprint.gpu_energy_kwh * 3.6e6 == pytest.approx(100.0)


def test_exception_in_the_block_propagates_and_keeps_the_measurement():
    clock = ManualClock(0.0)
    with pytest.raises(KeyError):  # noqa: SIM117
        with greenml.track(meters=[ConstantMeter(clock, 100.0)], clock=clock, location="FR") as run:
            clock.advance(4.0)
            raise KeyError("training failed")
    assert run.footprint.gpu_energy_kwh * 3.6e6 == pytest.approx(400.0)


class TestBadInput:
    @pytest.mark.parametrize("value", [0, -0.5, "fast", float("nan")])
    def test_interval(self, value):
        with pytest.raises(ConfigError, match=r"interval_s=") as e:
            greenml.track(interval_s=value)
        assert repr(value) in str(e.value) or str(value) in str(e.value)

    @pytest.mark.parametrize("value", [-1.2, 0.8, 0])
    def test_pue(self, value):
        with pytest.raises(ConfigError, match=r"pue=.*>= 1.0|pue=.*> 0"):
            greenml.track(pue=value)

    def test_phase_name_not_a_string(self):
        clock = ManualClock(0.0)
        run = greenml.Tracker(
            meters=[ConstantMeter(clock, 1.0)], clock=clock, location="FR"
        ).start()
        with pytest.raises(ConfigError, match="phase name 3 is a int, not a string"):  # noqa: SIM117
            with run.phase(3):
                pass
        with pytest.raises(ConfigError, match="letters, digits"):  # noqa: SIM117
            with run.phase("eval/loss"):
                pass
        run.stop()

    def test_unknown_gpu_ids_fail_before_any_thread_starts(self, sim):
        run = greenml.track(gpu_ids=[3], environ={}, location="FR")
        with pytest.raises(ConfigError, match=r"gpu_ids: 3 is not a GPU this job can see"):
            run.start()
        assert not sampler_threads()

    def test_gpu_ids_on_a_machine_without_gpus(self, tmp_path):
        from greenml.testing import FakePowercap

        FakePowercap(tmp_path).add_package(0)
        run = greenml.track(gpu_ids=[0], powercap_root=str(tmp_path), environ={}, location="FR")
        with pytest.raises(ConfigError, match="no NVIDIA GPU can be measured"):
            run.start()
        assert not sampler_threads()

    def test_env_var_named_in_the_error(self):
        with pytest.raises(ConfigError, match="GREENML_PUE='abc' is not a number"):
            greenml.track(environ={"GREENML_PUE": "abc"})

    def test_price_and_electricity_price_together(self):
        with pytest.raises(ConfigError, match="not both"):
            greenml.track(price_usd_per_hour=2.0, usd_per_kwh=0.2)


def test_no_gpu_measures_cpu_and_ram_warns_once_and_says_so(tmp_path):
    # No simulated driver installed and no libnvidia-ml on this machine: NVML is missing.
    from greenml.testing import FakePowercap

    fake = FakePowercap(tmp_path)
    fake.add_package(0, dram=True)
    fake.add_package(1, dram=True)
    clock = ManualClock(0.0)
    # interval_s=3600: only start(), sample_now() and stop() read, so the manual clock
    # and the fake counters move together.
    with pytest.warns(greenml.GreenMLWarning) as caught:
        run = greenml.Tracker(
            powercap_root=str(tmp_path), clock=clock, environ={}, interval_s=3600, location="FR"
        ).start()
    for _ in range(4):  # 4 s: package 0 at 80 W, package 1 at 60 W, DRAM at 5 W each
        clock.advance(1.0)
        fake.add_energy(0, 80.0)
        fake.add_energy(1, 60.0)
        fake.add_energy(0, 5.0, domain="dram")
        fake.add_energy(1, 5.0, domain="dram")
        run.sample_now()
    fp = run.stop()
    assert "no_gpu" in fp.flags
    assert fp.gpu_energy_kwh == 0.0
    assert fp.cpu_energy_kwh * 3.6e6 == pytest.approx(4 * (80.0 + 60.0))
    assert fp.ram_energy_kwh * 3.6e6 == pytest.approx(4 * 10.0)
    assert {d.kind: d.method for d in fp.devices} == {"cpu": "counter", "ram": "counter"}
    assert fp.measurement == "counter"
    warnings = [w for w in caught if "no GPU measured" in str(w.message)]
    assert len(warnings) == 1 and "flagged no_gpu" in str(warnings[0].message)


def test_metadata_service_only_when_asked(tmp_path):
    import http.server
    import threading as _threading

    asked = []

    class Azure(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            if self.path.startswith("/metadata/instance/compute/location") and (
                self.headers.get("Metadata") == "true"
            ):
                body = b"westeurope"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404)

        def do_PUT(self):
            asked.append(self.path)
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Azure)
    _threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(ConfigError, match="location is unknown"):
            greenml.track(environ={}, metadata_endpoint=url)  # not opted in: no request
        assert asked == []
        run = greenml.track(environ={}, location_from_metadata=True, metadata_endpoint=url)
        loc = run.run_factors.location
        assert (loc.provider, loc.region, loc.zone) == ("azure", "westeurope", "NL")
        assert loc.origin == "azure metadata service"
    finally:
        server.shutdown()
        server.server_close()


def test_snapshots_between_readings_move_the_durations_and_keep_the_energies():
    # A snapshot reuses the ledger's figures until the next reading; the run's and the
    # phases' durations (and what depends on them: the price per hour) still move.
    clock = ManualClock(0.0)
    run = greenml.Tracker(
        meters=[ConstantMeter(clock, 100.0)],
        clock=clock,
        location="FR",
        price_usd_per_hour=3.6,
        log_to_mlflow=False,
        journal=False,
    ).start()
    clock.advance(10.0)
    run.sample_now()
    first = run.snapshot()
    clock.advance(5.0)
    run.begin_phase("eval")
    clock.advance(2.0)
    later = run.snapshot()  # no reading since `first`
    assert later.gpu_energy_kwh == first.gpu_energy_kwh == pytest.approx(1000.0 / 3.6e6)
    assert (first.duration_s, later.duration_s) == (10.0, 17.0)
    assert later.cost_usd == pytest.approx(3.6 * 17.0 / 3600.0)
    assert later.phases["eval"].duration_s == pytest.approx(2.0)
    assert later.phases["train"].duration_s == pytest.approx(15.0)
    run.sample_now()
    read = run.snapshot()  # a reading: the energies move, each phase gets its share
    assert read.gpu_energy_kwh == pytest.approx(1700.0 / 3.6e6)
    assert read.phases["eval"].gpu_energy_kwh == pytest.approx(200.0 / 3.6e6)
    run.stop()
