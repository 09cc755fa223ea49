"""Where a GPU is sold: `greenml estimate --gpu` across the three clouds, and --compare.

Each option's cost is checked against the price table's own rows (whole instances x price x
hours), worked out here from ``load_prices()``, not from the code that picks the option; its
CO2e against the single-place estimate of the same job at that place.
"""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from greenml.cli import main
from greenml.factors.prices import load_prices


def run(*args):
    return CliRunner().invoke(main, ["estimate", *args])


def as_json(*args):
    result = run(*args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def rows_for(model_names, pricing="on-demand"):
    return [p for p in load_prices() if p.gpu_model in model_names and p.pricing == pricing]


def test_eight_h100s_are_priced_on_each_cloud_in_at_least_three_regions():
    out = as_json("--gpu", "H100", "--count", "8", "--hours", "10")
    options = out["options"]
    by_cloud = {}
    for o in options:
        by_cloud.setdefault(o["location"].split(":")[0], []).append(o)
    assert set(by_cloud) == {"aws", "gcp", "azure"}
    for cloud, opts in by_cloud.items():
        eight = [o for o in opts if o["instances"] == 1 and o["gpus_per_instance"] == 8]
        assert len(eight) >= 3, (cloud, [o["location"] for o in opts])
    # every option: whole instances x the table's price x 10 h
    table = {(p.provider, p.instance_type, p.region): p for p in rows_for({"H100"})}
    for o in options:
        provider, region = o["location"].split(":")
        row = table[(provider, o["instance_type"], region)]
        assert o["instances"] == math.ceil(8 / row.gpu_count)
        assert o["cost_usd"] == pytest.approx(o["instances"] * row.usd_per_hour * 10)
    # AWS us-east-1: one p5.48xlarge at 55.04 USD/h (the catalog's figure) for 10 h
    (east,) = [o for o in options if o["location"] == "aws:us-east-1"]
    assert (east["instance_type"], east["cost_usd"]) == ("p5.48xlarge", pytest.approx(550.4))
    # no place is assumed: the place-dependent figures are left to the options
    assert out["location"] is None and out["co2e_kg"] is None and out["cost_usd"] is None
    assert out["it_energy_kwh"] == pytest.approx(8 * 0.7 * 10)  # 8 x 700 W x 10 h


def test_the_text_names_the_cheapest_and_the_lowest_co2e_place():
    out = as_json("--gpu", "H100", "--count", "8", "--hours", "10")
    cheapest = min(out["options"], key=lambda o: o["cost_usd"])
    greenest = min(
        (o for o in out["options"] if o["co2e_kg"] is not None), key=lambda o: o["co2e_kg"]
    )
    result = run("--gpu", "H100", "--count", "8", "--hours", "10")
    assert result.exit_code == 0, result.output
    assert f"cheapest: {cheapest['location']} (1 x {cheapest['instance_type']})" in result.output
    assert f"lowest CO2e: {greenest['location']}" in result.output
    assert "world-average" not in result.stderr and "WORLD" not in result.output


def test_an_option_has_the_co2e_of_the_same_job_estimated_at_that_place():
    out = as_json("--gpu", "H100", "--count", "8", "--hours", "10")
    for place in ("aws:us-west-2", "gcp:europe-west4", "azure:eastus"):
        (option,) = [o for o in out["options"] if o["location"] == place]
        alone = as_json("--gpu", "H100", "--count", "8", "--hours", "10", "--location", place)
        assert option["co2e_kg"] == pytest.approx(alone["co2e_kg"])
        assert option["cost_usd"] == pytest.approx(alone["cost_usd"])
        assert alone["hardware"]["instance_type"] == option["instance_type"]


def test_a_gpu_at_a_cloud_location_is_priced_on_that_regions_instance_and_says_so():
    out = as_json("--gpu", "H100", "--count", "8", "--hours", "2", "--location", "aws:us-east-1")
    assert out["hardware"]["instance_type"] == "p5.48xlarge"
    assert out["cost_usd"] == pytest.approx(2 * 55.04)
    assert any("priced as 1 x p5.48xlarge" in n for n in out["notes"])
    assert "options" not in out  # a place was given: no list of others unless --compare


def test_a_region_that_does_not_sell_the_gpu_says_where_it_is_sold():
    out = as_json("--gpu", "A100", "--count", "8", "--location", "aws:eu-north-1")
    assert out["cost_usd"] is None
    (reason,) = [r for r in out["reasons"] if r.startswith("cost:")]
    # p4d.24xlarge's and p4de.24xlarge's regions (the 40 GB and 80 GB SXM4 boards are alike)
    sold = sorted({p.region for p in rows_for({"A100", "A100-80GB"}) if p.provider == "aws"})
    assert "eu-north-1" in reason and ", ".join(sold) in reason


def test_alike_boards_only():
    # a bare A100 takes the SXM4 40GB and 80GB boards (same 400 W and peak) ...
    out = as_json("--gpu", "A100", "--count", "8", "--hours", "1")
    types = {o["instance_type"] for o in out["options"]}
    assert {"p4d.24xlarge", "Standard_ND96asr_v4", "a2-highgpu-8g"} <= types
    models = {o["gpu_model"] for o in out["options"]}
    assert models <= {"A100", "A100-80GB"}
    # ... never Azure's NC A100 v4 (A100 PCIe 80GB, not in the GPU table)
    assert not any("ads_A100_v4" in t for t in types)
    # a bare H100 is the SXM board: Azure's NC H100 v5 (H100 NVL, 400 W) is another job
    h100 = as_json("--gpu", "H100", "--count", "2", "--hours", "1")
    assert not any("NC80adis" in o["instance_type"] for o in h100["options"])
    nvl = as_json("--gpu", "H100-NVL", "--count", "2", "--hours", "1")
    assert {o["instance_type"] for o in nvl["options"]} == {"Standard_NC80adis_H100_v5"}


def test_spot_options_use_spot_rows_and_stale_spot_prices_are_flagged():
    result = run("--gpu", "H100", "--count", "8", "--hours", "10", "--pricing", "spot")
    assert result.exit_code == 0, result.output
    assert "(spot, 10 h" in result.output
    assert "spot prices move daily" in result.stderr
    out = as_json("--gpu", "H100", "--count", "8", "--hours", "10", "--pricing", "spot")
    spot = {(p.provider, p.instance_type, p.region): p for p in rows_for({"H100"}, "spot")}
    for o in out["options"]:
        provider, region = o["location"].split(":")
        assert o["pricing"] == "spot"
        row = spot[(provider, o["instance_type"], region)]
        assert o["cost_usd"] == pytest.approx(o["instances"] * row.usd_per_hour * 10)
        assert "spot prices move daily" in o["price_stale"]


def test_compare_all_prices_every_region_on_its_own_instance():
    out = as_json(
        "--instance", "p5.48xlarge", "--location", "aws:us-east-1", "--hours", "10",
        "--compare", "all",
    )  # fmt: skip
    alts = {a["location"]: a for a in out["alternatives"]}
    assert {loc.split(":")[0] for loc in alts} == {"aws", "gcp", "azure"}
    assert all(a["cost_usd"] is not None for a in alts.values()), [
        (k, a["reasons"]) for k, a in alts.items() if a["cost_usd"] is None
    ]
    gcp = alts["gcp:us-east4"]
    assert gcp["hardware"]["instance_type"].startswith("a3-")
    assert gcp["hardware"]["gpu_count"] == 8
    assert any("priced as 1 x a3-" in n for n in gcp["notes"])
    # the same instance where it is sold: eu-west-2 has p5.48xlarge
    assert alts["aws:eu-west-2"]["hardware"]["instance_type"] == "p5.48xlarge"


def test_compare_names_a_cloud_and_explicit_places():
    result = run(
        "--gpu", "A100", "--count", "8", "--location", "gcp:us-central1", "--hours", "10",
        "--compare", "azure,FR",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "compare: azure:eastus" in result.output and "compare: FR" in result.output
    assert "lowest cost: " in result.output and "lowest CO2e: FR" in result.output


def test_compare_all_without_a_gpu_is_an_error():
    result = run("--power-w", "300", "--location", "FR", "--compare", "all")
    assert result.exit_code == 2
    assert "--compare 'all'" in result.output and "--gpu" in result.output


def test_azure_instance_names_in_any_case():
    out = as_json("--instance", "standard_nd96isr_h100_v5", "--location", "azure:eastus")
    assert out["hardware"]["instance_type"] == "Standard_ND96isr_H100_v5"
    assert out["hardware"]["gpus_per_instance"] == 8  # the catalog's 12 corrected
    assert out["cost_usd"] == pytest.approx(98.32)


def test_an_unknown_instance_suggests_names_in_its_region():
    result = run("--instance", "a3-highgpu-8", "--location", "gcp:us-east4")
    assert result.exit_code == 2
    assert "did you mean" in result.output and "a3-highgpu-8g" in result.output


def test_an_n1_vm_alone_is_told_how_its_gpus_are_named():
    result = run("--instance", "n1-standard-8", "--location", "gcp:us-central1")
    assert result.exit_code == 2
    assert "n1-standard-8+T4:1" in result.output and "VM + GPU:count" in result.output
    out = as_json("--instance", "n1-standard-8+T4:1", "--location", "gcp:us-central1")
    # the catalog's rows in us-central1-a: n1-standard-8 VM 0.38 + T4:1 0.35 (1 h)
    assert out["cost_usd"] == pytest.approx(0.38 + 0.35)
    assert out["hardware"]["gpu_model"] == "T4" and out["hardware"]["gpu_count"] == 1


def test_an_unknown_instance_with_nothing_close_names_the_families():
    result = run("--instance", "zzz", "--location", "azure:eastus")
    assert result.exit_code == 2
    assert "families Standard_NC, Standard_ND, Standard_NV" in result.output
