"""Defects a new user hit: where a bad setting came from, a missing price, the bare
decorator, a CPU-only run on a GPU instance, readable reprs, the CPU TDP setting."""

from __future__ import annotations

import pytest

import greenml
from greenml.errors import ConfigError, GreenMLWarning
from greenml.testing import ConstantMeter, ManualClock

P4D_US_EAST_1_USD_PER_H = 21.957642  # AWS on-demand, us-east-1, as of 2026-01-21 (prices.csv)
HOURS_PER_YEAR = 365 * 24
# Cloud Carbon Footprint: 1,000 kg per server and 150 kg per GPU, over 4 years (embodied.csv)
SERVER_KG, GPU_KG, LIFETIME_Y = 1000.0, 150.0, 4


def run_for(seconds, **kwargs):
    clock = ManualClock(0.0)
    kwargs.setdefault("meters", [ConstantMeter(clock, 100.0, "cpu:0")])
    run = greenml.Tracker(clock=clock, environ={}, interval_s=3600, **kwargs).start()
    clock.advance(seconds)
    return run.stop()


# -- 7: a bad setting names where it came from ------------------------------------------


def test_bad_location_from_an_argument_names_the_keyword():
    with pytest.raises(ConfigError, match=r"^location='Narnia' is invalid"):
        greenml.Tracker(location="Narnia", environ={})


def test_bad_location_from_the_environment_names_the_variable():
    with pytest.raises(ConfigError) as e:
        greenml.Tracker(environ={"GREENML_LOCATION": "Narnia"})
    assert "GREENML_LOCATION='Narnia' (environment variable) is invalid" in str(e.value)


def test_bad_location_from_greenml_toml_names_the_file(own_cwd):
    (own_cwd / "greenml.toml").write_text('location = "Narnia"\n')
    with pytest.raises(ConfigError) as e:
        greenml.Tracker(environ={})
    assert f"location = 'Narnia' in {own_cwd / 'greenml.toml'} is invalid" in str(e.value)


def test_bad_location_from_pyproject_names_the_file_and_table(own_cwd):
    (own_cwd / "greenml.toml").unlink()
    (own_cwd / "pyproject.toml").write_text('[tool.greenml]\nlocation = "aws:mars-north-1"\n')
    with pytest.raises(ConfigError) as e:
        greenml.Tracker(environ={})
    msg = str(e.value)
    assert f"in {own_cwd / 'pyproject.toml'} [tool.greenml]" in msg
    assert "unknown aws region 'mars-north-1'" in msg


def test_bad_cloud_sdk_region_names_the_sdk_variable():
    with pytest.raises(ConfigError) as e:
        greenml.Tracker(environ={"AWS_REGION": "us-east-9"})
    assert str(e.value).startswith("AWS_REGION='us-east-9' (environment variable")


def test_unknown_location_advice_uses_python_terms():
    with pytest.raises(ConfigError) as e:
        greenml.Tracker(environ={})
    msg = str(e.value)
    assert "location=<place>" in msg and "allow_assumed_location=True" in msg
    assert "--" not in msg


# -- 3: a missing price never stops a measured run ---------------------------------------


@pytest.mark.parametrize(
    ("location", "instance", "says"),
    [
        (
            "aws:eu-north-1",
            "p4d.24xlarge",
            "has no price for region 'eu-north-1'; it is sold in ap-northeast-1, ",
        ),
        ("aws:us-east-1", "p4d.24xlage", "did you mean p4d.24xlarge, "),
        ("FR", "p4d.24xlarge", "location 'FR' is not one"),
    ],
)
def test_missing_price_warns_flags_and_measures(location, instance, says):
    with pytest.warns(GreenMLWarning) as caught:
        fp = run_for(10.0, location=location, instance_type=instance)
    messages = [str(w.message) for w in caught if "price" in str(w.message)]
    assert len(messages) == 1, messages
    msg = messages[0]
    assert says in msg
    assert "price_usd_per_hour=" in msg and "prices.csv in your tables_dir" in msg
    assert "table=" not in msg.replace("tables_dir", "")  # track() has no table= keyword
    assert fp.cost_usd is None and "no_price" in fp.flags
    assert fp.cpu_energy_kwh * 3.6e6 == pytest.approx(100.0 * 10.0)  # measured all the same


def test_missing_price_still_knows_the_instance_gpus_for_embodied_carbon():
    # p4d.24xlarge carries 8 GPUs whatever the region; one measured GPU is 1/8 of the box
    clock = ManualClock(0.0)
    meter = ConstantMeter(clock, 300.0, key="gpu:0", kind="gpu")
    with pytest.warns(GreenMLWarning, match="no price for region"):
        run = greenml.Tracker(
            clock=clock,
            environ={},
            interval_s=3600,
            meters=[meter],
            location="aws:eu-north-1",
            instance_type="p4d.24xlarge",
        ).start()
    clock.advance(3600.0)
    fp = run.stop()
    hour = 1.0 / (LIFETIME_Y * HOURS_PER_YEAR)
    assert fp.embodied_co2e_kg == pytest.approx((SERVER_KG + 8 * GPU_KG) * hour / 8)


# -- 4 (last bullet): a run that measures no GPU on a GPU instance -----------------------


def test_cpu_only_run_on_a_gpu_instance_is_charged_the_whole_instance_and_says_so():
    with pytest.warns(GreenMLWarning, match="has 8 GPUs but this run measures none") as caught:
        fp = run_for(1800.0, location="aws:us-east-1", instance_type="p4d.24xlarge")
    assert any("instance_share=" in str(w.message) for w in caught)
    assert "whole_instance" in fp.flags
    assert fp.cost_usd == pytest.approx(P4D_US_EAST_1_USD_PER_H * 0.5)
    half_hour = 0.5 / (LIFETIME_Y * HOURS_PER_YEAR)
    # the same rule for embodied carbon: the whole server, its 8 GPUs included
    assert fp.embodied_co2e_kg == pytest.approx((SERVER_KG + 8 * GPU_KG) * half_hour)


def test_instance_share_decides_when_no_gpu_is_measured():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", GreenMLWarning)  # nothing to warn about
        fp = run_for(
            1800.0, location="aws:us-east-1", instance_type="p4d.24xlarge", instance_share=0.25
        )
    assert "whole_instance" not in fp.flags
    assert fp.cost_usd == pytest.approx(P4D_US_EAST_1_USD_PER_H * 0.5 * 0.25)
    half_hour = 0.5 / (LIFETIME_Y * HOURS_PER_YEAR)
    assert fp.embodied_co2e_kg == pytest.approx((SERVER_KG + 8 * GPU_KG) * half_hour * 0.25)


# -- 9: the bare decorator ---------------------------------------------------------------


def test_bare_decorator_measures_each_call(monkeypatch, tmp_path):
    monkeypatch.setenv("GREENML_LOCATION", "FR")
    monkeypatch.setenv("GREENML_POWERCAP_ROOT", str(tmp_path))  # no RAPL: CPU estimated
    monkeypatch.setenv("GREENML_CPU_TDP_W", "100")

    with pytest.warns(GreenMLWarning):  # no GPU here

        @greenml.track
        def train(x):
            return x * 2

        assert train(21) == 42
    first = train.last_run
    assert first.footprint.location == "FR" and first.footprint.final
    assert train(1) == 2
    assert train.last_run is not first  # a fresh run per call
    assert train.__name__ == "train"


def test_track_rejects_a_positional_setting():
    with pytest.raises(TypeError, match=r"keyword arguments only .*'FR'"):
        greenml.track("FR")


# -- 5: the CPU TDP is a setting the user has --------------------------------------------


def test_cpu_tdp_w_is_a_setting_used_by_the_cpu_estimate(tmp_path):
    clock = ManualClock(0.0)
    with pytest.warns(GreenMLWarning, match="no GPU measured"):
        run = greenml.Tracker(
            clock=clock,
            environ={},
            interval_s=3600,
            location="FR",
            powercap_root=str(tmp_path),
            cpu_tdp_w=200,
        ).start()
    clock.advance(1.0)
    fp = run.stop()
    cpu = next(d for d in fp.devices if d.kind == "cpu")
    assert dict(cpu.details)["tdp_source"] == "user-supplied tdp_w=200 W per package"


def test_cpu_tdp_w_from_the_environment_is_checked():
    with pytest.raises(ConfigError, match=r"GREENML_CPU_TDP_W='two hundred' is not a number"):
        greenml.Tracker(environ={"GREENML_CPU_TDP_W": "two hundred"}, location="FR")


# -- 10: reprs a person can read ---------------------------------------------------------


def test_tracker_and_footprint_reprs_are_short_and_say_what_matters():
    clock = ManualClock(0.0)
    run = greenml.Tracker(
        clock=clock,
        environ={},
        interval_s=3600,
        location="FR",
        meters=[ConstantMeter(clock, 100.0, "cpu:0")],
    )
    assert repr(run) == "<greenml.Tracker not started, location='FR'>"
    run.start()
    clock.advance(2.0)
    assert repr(run).startswith("<greenml.Tracker running for 2.0 s, location='FR'")
    with run.phase("eval"):
        clock.advance(1.0)
    fp = run.stop()
    text = repr(run)
    assert text.startswith("<greenml.Tracker stopped after 3.0 s, location='FR'")
    # 100 W x 3 s = 300 J = 8.333e-5 kWh of IT energy, x PUE 1.56 (own hardware) = 1.3e-4
    assert "energy_kwh=0.00013," in text
    r = repr(fp)
    assert r.startswith("Footprint(energy_kwh=0.00013, co2e_kg=")
    assert "phases=['train', 'eval']" in r and "devices=['cpu:0']" in r
    assert len(r) < 600
