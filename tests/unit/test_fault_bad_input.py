"""Fault injection, bad input: one table of invalid inputs, from every place a user can give
one (keyword arguments, GREENML_* variables, greenml.toml / pyproject.toml, the user's
factor tables and hourly intensity files, and every command's options).

Each case names the input, where it comes from and the fragments the message must hold:
the setting / variable / file / flag (first), the bad value as given and what would be
valid (or a suggestion). The API must raise greenml's own ConfigError from track(), before
the with-block runs and with no greenml thread started; a command must exit with a usage
error (status 2, "Error:", no traceback), except where docs/esg-reporting.md documents
status 1 (`greenml import codecarbon`'s file errors) or the value can only be judged
against the MLflow store. Inputs greenml mishandles are kept with a strict xfail naming the
bug. There is no randomness here: every input is written out below.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import greenml
from greenml.cli import main
from greenml.errors import ConfigError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

PUE_HEADER = "provider,region,pue,year,source,licence,note\n"
PRICE_HEADER = (
    "provider,instance_type,region,gpu_model,gpu_count,usd_per_hour,pricing,as_of,source,"
    "licence,note\n"
)
GPU_HEADER = "model,aliases,tdp_w,form_factor,memory_gb,source,year,licence,note\n"
EMBODIED_HEADER = "item,kg_co2e,lifetime_years,source,year,licence,note\n"
REGION_HEADER = "provider,region,name,country,zone,city,source,source_year,licence,note\n"
GCP_HEADER = "region,year,grid_intensity_g_per_kwh,cfe_percent,source,licence\n"
HOURLY_HEADER = "timestamp,g_per_kwh\n"
SKYPILOT_AWS = (
    "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,"
    "Region,AvailabilityZone,Arch\n"
    "p5.48xlarge,H100,8.0,192.0,2048.0,,55.04,14.582000,us-east-1,use1-az1,x86_64\n"
)
GOOD_PRICE = "aws,p4d.24xlarge,us-east-1,A100,8,{price},on-demand,2026-01-05,quote,internal,\n"
GOOD_GPU = "Z100,Z100-SXM,{tdp},SXM,80,{source},{year},datasheet,\n"
GOOD_REGION = "aws,us-east-1,US East,{country},{zone},Virginia,AWS docs,{year},facts,\n"
BLURB = "valid settings are"  # the list every unknown-setting message ends with


@dataclass(frozen=True)
class Case:
    """One invalid input. ``{dir}`` in any text stands for the test's working folder (the
    tmp folder the case's files are written to), ``{store}`` for an empty sqlite MLflow
    store, ``{down}`` for a tracking URI nothing listens on."""

    id: str
    where: str  # keyword, env, greenml.toml, pyproject.toml, tables_dir, hourly csv, cli
    fragments: tuple[str, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str | bytes] = field(default_factory=dict)
    argv: tuple[str, ...] = ()
    exit_code: int = 2
    drop: tuple[str, ...] = ()  # base keywords the case must not get
    prepare: Callable[[Path], None] | None = None
    bug: str | None = None


def kw(id: str, kwargs: dict[str, Any], *fragments: str, **more: Any) -> Case:
    return Case(id, "keyword", fragments, kwargs=kwargs, **more)


def env(id: str, environ: dict[str, str], *fragments: str, **more: Any) -> Case:
    return Case(id, "env", fragments, env=environ, **more)


def cfg(id: str, name: str, text: str | bytes, *fragments: str, **more: Any) -> Case:
    return Case(id, name, fragments, files={name: text}, **more)


def table(id: str, name: str, text: str | bytes, *fragments: str, **more: Any) -> Case:
    files = {f"t/{name}": text}
    return Case(id, "tables_dir", fragments, kwargs={"tables_dir": "{dir}/t"}, files=files, **more)


def hourly(id: str, text: str | bytes, *fragments: str, **more: Any) -> Case:
    return Case(
        id,
        "hourly csv",
        fragments,
        kwargs={"hourly_intensity_csv": "{dir}/h.csv"},
        files={"h.csv": text},
        **more,
    )


def cli(id: str, argv: tuple[str, ...], *fragments: str, **more: Any) -> Case:
    return Case(id, "cli", fragments, argv=argv, **more)


def _journal_of_a_run(folder: Path) -> None:
    """A journal under {dir}/j of a short run whose MLflow was down (what sync replays)."""
    from greenml.testing import ConstantMeter, ManualClock

    clock = ManualClock(0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", greenml.GreenMLWarning)  # "MLflow is unreachable"
        run = greenml.Tracker(
            meters=[ConstantMeter(clock, 100.0)],
            clock=clock,
            environ={},
            location="FR",
            tracking_uri=_DOWN[0],
            journal_dir=str(folder / "j"),
            log_to_mlflow=True,
            journal=True,
            interval_s=0.05,
            log_interval_s=0.05,
        ).start()
        clock.advance(2.0)
        run.stop()
    assert len(list((folder / "j").glob("*.jsonl"))) == 1


CASES: list[Case] = [
    # -- keyword arguments of track(): every setting, wrong type / out of range ----------
    kw("pue-below-1", {"pue": 0.9}, "pue=0.9", ">= 1.0"),
    kw("pue-text", {"pue": "abc"}, "pue='abc'", "is not a number"),
    kw("pue-nan", {"pue": float("nan")}, "pue=nan", "not a finite number"),
    kw("pue-bool", {"pue": True}, "pue=True", "is not a number"),
    kw("interval-zero", {"interval_s": 0}, "interval_s=0", "> 0"),
    kw("interval-inf", {"interval_s": float("inf")}, "interval_s=inf", "finite"),
    kw("log-interval-negative", {"log_interval_s": -1}, "log_interval_s=-1", "> 0"),
    kw("grid-negative", {"grid_intensity_g_per_kwh": -5}, "grid_intensity_g_per_kwh=-5", ">= 0"),
    kw("price-text", {"price_usd_per_hour": "cheap"}, "price_usd_per_hour='cheap'", "not a number"),
    kw("usd-per-kwh-negative", {"usd_per_kwh": -0.1}, "usd_per_kwh=-0.1", ">= 0"),
    kw(
        "hourly-and-kwh-price",
        {"price_usd_per_hour": 3.5, "usd_per_kwh": 0.2},
        "price_usd_per_hour=3.5",
        "usd_per_kwh=0.2",
        "not both",
    ),
    kw("pricing-reserved", {"pricing": "reserved"}, "pricing='reserved'", "'on-demand', 'spot'"),
    kw("mfu-precision-fp32", {"mfu_precision": "fp32"}, "mfu_precision='fp32'", "'bf16', 'fp16'"),
    kw("budget-on-never", {"budget_on": "never"}, "budget_on='never'", "'actual', 'forecast'"),
    kw("location-narnia", {"location": "Narnia"}, "location='Narnia'", "'aws:<region>'", "'FR'"),
    kw(
        "location-aws-typo",
        {"location": "aws:us-east-9"},
        "location='aws:us-east-9'",
        "did you mean",
        "'us-east-1'",
    ),
    kw("location-country-xx", {"location": "XX"}, "location='XX'", "ISO 3166-1", "'FR'"),
    kw("location-int", {"location": 42}, "location=42", "non-empty string"),
    kw(
        "allow-assumed-maybe",
        {"allow_assumed_location": "maybe"},
        "allow_assumed_location='maybe'",
        "true or false",
    ),
    kw("instance-type-blank", {"instance_type": " "}, "instance_type=' '", "non-empty"),
    kw("instance-share-1.5", {"instance_share": 1.5}, "instance_share=1.5", "<= 1"),
    kw("instance-share-zero", {"instance_share": 0}, "instance_share=0", "> 0"),
    kw("renewable-negative", {"renewable_share": -0.1}, "renewable_share=-0.1", ">= 0"),
    kw("renewable-above-1", {"renewable_share": 1.2}, "renewable_share=1.2", "<= 1"),
    kw("supplier-negative", {"supplier_g_per_kwh": -1}, "supplier_g_per_kwh=-1", ">= 0"),
    kw("residual-text", {"residual_mix_g_per_kwh": "x"}, "residual_mix_g_per_kwh='x'", "number"),
    kw("scope-1", {"scope": "scope1"}, "scope='scope1'", "scope2", "scope3-cat1"),
    kw(
        "tables-dir-missing",
        {"tables_dir": "{dir}/missing"},
        "tables_dir='{dir}/missing'",
        "is not a folder",
        "pue.csv",
    ),
    kw("default-phase-slash", {"default_phase": "a/b"}, "default_phase=", "'a/b'", "1-64"),
    kw("default-phase-int", {"default_phase": 3}, "default_phase=", " 3 ", "not a string"),
    kw("gpu-ids-negative", {"gpu_ids": [-1]}, "gpu_ids=[-1]", "positions start at 0"),
    kw("gpu-ids-cuda", {"gpu_ids": ["cuda:0"]}, "gpu_ids=['cuda:0']", "'GPU-...'"),
    kw("gpu-ids-float", {"gpu_ids": 1.5}, "gpu_ids=1.5", "GPU positions"),
    kw("gpu-ids-empty", {"gpu_ids": []}, "gpu_ids=[]", "names no GPU", "leave it unset"),
    kw("cpu-tdp-zero", {"cpu_tdp_w": 0}, "cpu_tdp_w=0", "> 0"),
    kw("max-co2e-negative", {"max_co2e_kg": -1}, "max_co2e_kg=-1", "> 0"),
    kw("max-energy-zero", {"max_energy_kwh": 0}, "max_energy_kwh=0", "> 0"),
    kw("max-cost-text", {"max_cost_usd": "lots"}, "max_cost_usd='lots'", "not a number"),
    kw("stop-on-budget", {"stop_on_budget": "sometimes"}, "stop_on_budget='sometimes'", "true"),
    kw(
        "forecast-steps-2.5",
        {"forecast_after_steps": 2.5},
        "forecast_after_steps=2.5",
        "whole number >= 1",
    ),
    kw("log-to-mlflow", {"log_to_mlflow": "yesplease"}, "log_to_mlflow='yesplease'", "true"),
    kw("journal-int", {"journal": 5}, "journal=5", "true or false"),
    kw("journal-dir-empty", {"journal_dir": ""}, "journal_dir=''", "non-empty string"),
    kw("tracking-uri-blank", {"tracking_uri": "  "}, "tracking_uri='  '", "non-empty string"),
    kw("run-name-int", {"run_name": 3}, "run_name=3", "non-empty string"),
    kw("experiment-empty", {"experiment": ""}, "experiment=''", "non-empty string"),
    kw("node-empty", {"node": ""}, "node=''", "non-empty string"),
    kw("sink-dir-blank", {"sink_dir": " "}, "sink_dir=' '", "non-empty string"),
    kw("metadata-flag", {"location_from_metadata": "x"}, "location_from_metadata='x'", "true"),
    kw("metadata-endpoint", {"metadata_endpoint": ""}, "metadata_endpoint=''", "non-empty"),
    kw("run-id-blank", {"run_id": " "}, "run_id=' '", "non-empty string"),
    kw("powercap-empty", {"powercap_root": ""}, "powercap_root=''", "non-empty string"),
    # unknown names: a typo gets a suggestion and the list of valid names
    kw("typo-peu", {"peu": 1.2}, "unknown setting 'peu'", "did you mean 'pue'?", BLURB),
    kw(
        "typo-locaton",
        {"locaton": "FR"},
        "unknown setting 'locaton'",
        "did you mean 'location'?",
        BLURB,
    ),
    kw("typo-gpu-id", {"gpu_id": [0]}, "unknown setting 'gpu_id'", "did you mean 'gpu_ids'?"),
    kw(
        "typo-max-energy",
        {"max_energy": 1},
        "unknown setting 'max_energy'",
        "did you mean 'max_energy_kwh'?",
    ),
    kw(
        "typo-tracking-url",
        {"tracking_url": "x"},
        "unknown setting 'tracking_url'",
        "'tracking_uri'?",
    ),
    kw(
        "supplier-and-renewable",
        {"supplier_g_per_kwh": 100, "renewable_share": 0.5},
        "supplier_g_per_kwh",
        "renewable_share",
        "not both",
    ),
    # -- GREENML_<SETTING> environment variables ----------------------------------------
    env("env-pue", {"GREENML_PUE": "0.5"}, "GREENML_PUE='0.5'", ">= 1.0"),
    env("env-interval", {"GREENML_INTERVAL_S": "-2"}, "GREENML_INTERVAL_S='-2'", "> 0"),
    env(
        "env-location",
        {"GREENML_LOCATION": "Narnia"},
        "GREENML_LOCATION='Narnia' (environment variable)",
        "'aws:<region>'",
        drop=("location",),
    ),
    env(
        "env-aws-region",
        {"AWS_REGION": "us-east-9"},
        "AWS_REGION='us-east-9' (environment variable, read as 'aws:us-east-9')",
        "did you mean",
        drop=("location",),
    ),
    env("env-gpu-ids", {"GREENML_GPU_IDS": "0,x"}, "GREENML_GPU_IDS='0,x'", "'x'", "UUID"),
    env(
        "env-allow-assumed",
        {"GREENML_ALLOW_ASSUMED_LOCATION": "perhaps"},
        "GREENML_ALLOW_ASSUMED_LOCATION='perhaps'",
        "true or false",
    ),
    env("env-pricing", {"GREENML_PRICING": "reserved"}, "GREENML_PRICING='reserved'", "'spot'"),
    env("env-share", {"GREENML_INSTANCE_SHARE": "2"}, "GREENML_INSTANCE_SHARE='2'", "<= 1"),
    env(
        "env-renewable-percent",
        {"GREENML_RENEWABLE_SHARE": "150%"},
        "GREENML_RENEWABLE_SHARE='150%'",
        "not a number",
    ),
    env("env-journal", {"GREENML_JOURNAL": "maybe"}, "GREENML_JOURNAL='maybe'", "true or false"),
    env(
        "env-log-to-mlflow",
        {"GREENML_LOG_TO_MLFLOW": "sometimes"},
        "GREENML_LOG_TO_MLFLOW='sometimes'",
        "true or false",
    ),
    env(
        "env-forecast-steps",
        {"GREENML_FORECAST_AFTER_STEPS": "1.5"},
        "GREENML_FORECAST_AFTER_STEPS='1.5'",
        "whole number >= 1",
    ),
    env("env-mfu", {"GREENML_MFU_PRECISION": "int8"}, "GREENML_MFU_PRECISION='int8'", "'fp8'"),
    env("env-phase", {"GREENML_DEFAULT_PHASE": "a/b"}, "GREENML_DEFAULT_PHASE=", "'a/b'", "1-64"),
    env(
        "env-scope",
        {"GREENML_SCOPE": "scope1"},
        "GREENML_SCOPE='scope1' (environment variable)",
        "scope2, scope3-cat1",
    ),
    env(
        "env-tables-dir",
        {"GREENML_TABLES_DIR": "{dir}/missing"},
        "GREENML_TABLES_DIR='{dir}/missing' (environment variable)",
        "is not a folder",
    ),
    env("env-cpu-tdp-nan", {"GREENML_CPU_TDP_W": "nan"}, "GREENML_CPU_TDP_W='nan'", "finite"),
    env(
        "env-usd-dollar", {"GREENML_USD_PER_KWH": "$0.20"}, "GREENML_USD_PER_KWH='$0.20'", "number"
    ),
    env("env-budget", {"GREENML_MAX_ENERGY_KWH": "0"}, "GREENML_MAX_ENERGY_KWH='0'", "> 0"),
    env(
        "env-metadata-flag",
        {"GREENML_LOCATION_FROM_METADATA": "sometimes"},
        "GREENML_LOCATION_FROM_METADATA='sometimes'",
        "true or false",
    ),
    env(
        "env-hourly-missing",
        {"GREENML_HOURLY_INTENSITY_CSV": "{dir}/none.csv"},
        "GREENML_HOURLY_INTENSITY_CSV",
        "{dir}/none.csv",
    ),
    # -- greenml.toml (the working folder's) ------------------------------------------------
    cfg("toml-pue", "greenml.toml", "pue = 0.8\n", "{dir}/greenml.toml", "pue = 0.8", ">= 1.0"),
    cfg(
        "toml-unknown-key",
        "greenml.toml",
        "peu = 1.2\n",
        "{dir}/greenml.toml",
        "unknown setting 'peu' (did you mean 'pue'?)",
        "'pue'",
    ),
    cfg(
        "toml-broken",
        "greenml.toml",
        "pue = \n",
        "{dir}/greenml.toml",
        "cannot read it as TOML",
        "line 1",
    ),
    cfg(
        "toml-duplicate-key",
        "greenml.toml",
        "pue = 1.2\npue = 1.3\n",
        "{dir}/greenml.toml",
        "cannot read it as TOML",
    ),
    cfg(
        "toml-location",
        "greenml.toml",
        "location = 'Narnia'\n",
        "location = 'Narnia' in {dir}/greenml.toml",
        "'aws:<region>'",
    ),
    cfg(
        "toml-gpu-ids",
        "greenml.toml",
        "gpu_ids = [0, 'cuda:1']\n",
        "{dir}/greenml.toml",
        "'cuda:1'",
        "'GPU-...'",
    ),
    cfg("toml-interval", "greenml.toml", "interval_s = '1s'\n", "{dir}/greenml.toml", "'1s'"),
    cfg(
        "toml-journal",
        "greenml.toml",
        "journal = 'sometimes'\n",
        "{dir}/greenml.toml",
        "journal = 'sometimes'",
        "true or false",
    ),
    cfg(
        "toml-tool-section",
        "greenml.toml",
        "[tool.greenml]\npue = 0.5\n",
        "{dir}/greenml.toml",
        "pue = 0.5",
        ">= 1.0",
    ),
    cfg(
        "toml-location-list",
        "greenml.toml",
        "location = [1, 2]\n",
        "{dir}/greenml.toml",
        "[1, 2]",
        "non-empty string",
    ),
    cfg(
        "toml-pue-table",
        "greenml.toml",
        "pue = {value = 1.2}\n",
        "{dir}/greenml.toml",
        "{'value': 1.2}",
        "not a number",
    ),
    cfg(
        "toml-tables-dir",
        "greenml.toml",
        "tables_dir = '{dir}/missing'\n",
        "tables_dir = '{dir}/missing' in {dir}/greenml.toml",
        "is not a folder",
    ),
    cfg(
        "toml-not-utf8",
        "greenml.toml",
        b"pue = 1.2 # \xe9t\xe9\n",
        "{dir}/greenml.toml",
    ),
    cfg(
        "toml-tool-is-text",
        "greenml.toml",
        "tool = 'greenml'\n",
        "{dir}/greenml.toml",
    ),
    # -- pyproject.toml [tool.greenml] ----------------------------------------------------
    cfg(
        "pyproject-pue",
        "pyproject.toml",
        "[tool.greenml]\npue = 0.5\n",
        "{dir}/pyproject.toml [tool.greenml] pue = 0.5",
        ">= 1.0",
    ),
    cfg(
        "pyproject-typo",
        "pyproject.toml",
        "[tool.greenml]\nlocaton = 'FR'\n",
        "{dir}/pyproject.toml",
        "'locaton' (did you mean 'location'?)",
        "'location'",
    ),
    cfg(
        "pyproject-broken-header",
        "pyproject.toml",
        "[tool.greenml\npue = 1.2\n",
        "{dir}/pyproject.toml",
        "cannot read it as TOML",
        "line 1",
    ),
    cfg(
        "pyproject-share",
        "pyproject.toml",
        "[tool.greenml]\ninstance_share = 3\n",
        "{dir}/pyproject.toml [tool.greenml] instance_share = 3",
        "<= 1",
    ),
    cfg(
        "pyproject-flag",
        "pyproject.toml",
        "[tool.greenml]\nallow_assumed_location = 'perhaps'\n",
        "{dir}/pyproject.toml",
        "'perhaps'",
        "true or false",
    ),
    cfg(
        "pyproject-region",
        "pyproject.toml",
        "[tool.greenml]\nlocation = 'aws:us-east-9'\n",
        "location = 'aws:us-east-9' in {dir}/pyproject.toml [tool.greenml]",
        "did you mean",
    ),
    cfg(
        "pyproject-forecast",
        "pyproject.toml",
        "[tool.greenml]\nforecast_after_steps = 0.5\n",
        "{dir}/pyproject.toml",
        "forecast_after_steps = 0.5",
        "whole number >= 1",
    ),
    cfg(
        "pyproject-both-prices",
        "pyproject.toml",
        "[tool.greenml]\nprice_usd_per_hour = 2.5\nusd_per_kwh = 0.1\n",
        "price_usd_per_hour = 2.5 in",
        "usd_per_kwh = 0.1 in",
        "not both",
    ),
    cfg(
        "pyproject-greenml-is-text",
        "pyproject.toml",
        "[tool]\ngreenml = 'FR'\n",
        "{dir}/pyproject.toml",
        "[tool.greenml]",
    ),
    # -- the user's factor tables (tables_dir) --------------------------------------------
    table(
        "pue-cell",
        "pue.csv",
        PUE_HEADER + "aws,*,0.9,2026,audit,internal,\n",
        "{dir}/t/pue.csv, row 2, column 'pue'",
        "'0.9'",
        "at least 1.0",
    ),
    table(
        "pue-provider",
        "pue.csv",
        PUE_HEADER + "ibm,*,1.2,2026,audit,internal,\n",
        "{dir}/t/pue.csv, row 2, column 'provider'",
        "'ibm'",
        "aws, gcp, azure, onprem",
    ),
    table(
        "pue-missing-columns",
        "pue.csv",
        "provider,region,pue\naws,*,1.2\n",
        "{dir}/t/pue.csv, row 1",
        "missing column(s) 'year', 'source', 'licence', 'note'",
        "the header must name",
    ),
    table(
        "pue-empty-source",
        "pue.csv",
        PUE_HEADER + "aws,*,1.2,2026,,internal,\n",
        "{dir}/t/pue.csv, row 2, column 'source'",
        "a value is required",
    ),
    table(
        "pue-not-utf8",
        "pue.csv",
        (PUE_HEADER + "aws,*,1.2,2026,\xe9t\xe9,internal,\n").encode("latin-1"),
        "{dir}/t/pue.csv",
        "cannot read the file",
        "utf-8",
    ),
    table(
        "price-negative",
        "instance_prices.csv",
        PRICE_HEADER + GOOD_PRICE.format(price="-3"),
        "{dir}/t/instance_prices.csv, row 2, column 'usd_per_hour'",
        "'-3'",
        "> 0",
    ),
    table(
        "price-gpu-count",
        "instance_prices.csv",
        PRICE_HEADER + GOOD_PRICE.format(price="3").replace(",8,", ",eight,"),
        "{dir}/t/instance_prices.csv, row 2, column 'gpu_count'",
        "'eight'",
        "whole number",
    ),
    table(
        "price-pricing",
        "instance_prices.csv",
        PRICE_HEADER + GOOD_PRICE.format(price="3").replace("on-demand", "reserved"),
        "{dir}/t/instance_prices.csv, row 2, column 'pricing'",
        "'reserved'",
        "on-demand or spot",
    ),
    table(
        "price-date",
        "instance_prices.csv",
        PRICE_HEADER + GOOD_PRICE.format(price="3").replace("2026-01-05", "05/01/2026"),
        "{dir}/t/instance_prices.csv, row 2, column 'as_of'",
        "'05/01/2026'",
        "YYYY-MM-DD",
    ),
    table(
        "price-missing-columns",
        "instance_prices.csv",
        "provider,instance_type,region,usd_per_hour\naws,p4d.24xlarge,us-east-1,3\n",
        "{dir}/t/instance_prices.csv, row 1",
        "missing column(s) 'gpu_model'",
        "the header must name",
    ),
    table(
        "price-bom-bad-cell",
        "instance_prices.csv",
        "\ufeff" + PRICE_HEADER + GOOD_PRICE.format(price="-3"),
        "{dir}/t/instance_prices.csv, row 2, column 'usd_per_hour'",
        "'-3'",
    ),
    table(
        "gpu-tdp",
        "gpus.csv",
        GPU_HEADER + GOOD_GPU.format(tdp="-400", source="sheet", year="2024"),
        "{dir}/t/gpus.csv, row 2, column 'tdp_w'",
        "'-400'",
        "> 0",
    ),
    table(
        "gpu-year",
        "gpus.csv",
        GPU_HEADER + GOOD_GPU.format(tdp="400", source="sheet", year="1850"),
        "{dir}/t/gpus.csv, row 2, column 'year'",
        "'1850'",
        "1990..2100",
    ),
    table(
        "gpu-missing-columns",
        "gpus.csv",
        "model,tdp_w\nZ100,400\n",
        "{dir}/t/gpus.csv, row 1",
        "missing column(s) 'aliases'",
        "the header must name model, aliases, tdp_w",
    ),
    table("gpu-no-rows", "gpus.csv", GPU_HEADER, "{dir}/t/gpus.csv", "no rows"),
    table(
        "embodied-cell",
        "embodied.csv",
        EMBODIED_HEADER + "server_base,heavy,4,CCF,2021,Apache-2.0,\n",
        "{dir}/t/embodied.csv, row 2, column 'kg_co2e'",
        "'heavy'",
        "not a number",
    ),
    table(
        "embodied-lifetime",
        "embodied.csv",
        EMBODIED_HEADER + "server_base,1000,0,CCF,2021,Apache-2.0,\n",
        "{dir}/t/embodied.csv, row 2, column 'lifetime_years'",
        "'0'",
        "> 0",
    ),
    table(
        "embodied-missing-item",
        "embodied.csv",
        EMBODIED_HEADER + "server_base,1000,4,CCF,2021,Apache-2.0,\n",
        "{dir}/t/embodied.csv",
        "missing item(s) gpu",
    ),
    table(
        "region-country",
        "cloud_regions.csv",
        REGION_HEADER + GOOD_REGION.format(country="USA", zone="US-VA", year="2025"),
        "{dir}/t/cloud_regions.csv, row 2, column 'country'",
        "'USA'",
        "alpha-2",
    ),
    table(
        "region-zone",
        "cloud_regions.csv",
        REGION_HEADER + GOOD_REGION.format(country="US", zone="FR", year="2025"),
        "{dir}/t/cloud_regions.csv, row 2, column 'zone'",
        "'FR'",
        "not in country 'US'",
    ),
    table(
        "region-year",
        "cloud_regions.csv",
        REGION_HEADER + GOOD_REGION.format(country="US", zone="US-VA", year="twenty"),
        "{dir}/t/cloud_regions.csv, row 2, column 'source_year'",
        "'twenty'",
        "e.g. 2025",
    ),
    table(
        "region-missing-columns",
        "cloud_regions.csv",
        "provider,region,zone\naws,us-east-1,US-VA\n",
        "{dir}/t/cloud_regions.csv, row 1",
        "missing column(s) 'name', 'country'",
    ),
    table(
        "gcp-cfe",
        "gcp_region_carbon.csv",
        GCP_HEADER + "europe-west9,2025,30,150,Google,Apache-2.0\n",
        "{dir}/t/gcp_region_carbon.csv, row 2, column 'cfe_percent'",
        "'150'",
        "outside 0..100",
    ),
    table(
        "gcp-intensity",
        "gcp_region_carbon.csv",
        GCP_HEADER + "europe-west9,2025,-1,90,Google,Apache-2.0\n",
        "{dir}/t/gcp_region_carbon.csv, row 2, column 'grid_intensity_g_per_kwh'",
        "'-1'",
        "negative",
    ),
    table(
        "gcp-missing-columns",
        "gcp_region_carbon.csv",
        "region,year,grid_intensity_g_per_kwh\neurope-west9,2025,30\n",
        "{dir}/t/gcp_region_carbon.csv, row 1",
        "missing column(s) 'cfe_percent', 'source', 'licence'",
    ),
    table(
        "file-name-gpu",
        "gpu.csv",
        GPU_HEADER,
        "tables_dir='{dir}/t'",
        "gpu.csv is not a table greenml reads",
        "did you mean 'gpus.csv'?",
    ),
    table(
        "file-name-txt",
        "notes.txt",
        "my notes\n",
        "tables_dir='{dir}/t'",
        "notes.txt is not a table greenml reads",
        "instance_prices.csv",
    ),
    table(
        "file-name-prices",
        "prices.csv",
        PRICE_HEADER,
        "tables_dir='{dir}/t'",
        "prices.csv is not a table greenml reads",
        "did you mean 'instance_prices.csv'?",
    ),
    Case(
        "tables-dir-empty-folder",
        "tables_dir",
        ("tables_dir='{dir}/t'", "holds none of the table files", "pue.csv"),
        kwargs={"tables_dir": "{dir}/t"},
        files={"t/.keep": ""},
    ),
    # -- hourly_intensity_csv files --------------------------------------------------------
    hourly(
        "hourly-header",
        "time,intensity\n2026-01-01T00:00:00Z,50\n",
        "{dir}/h.csv",
        "needs a time column (timestamp",
        "found ['time', 'intensity']",
    ),
    hourly(
        "hourly-timestamp",
        HOURLY_HEADER + "yesterday,50\n",
        "{dir}/h.csv, row 2, column 'timestamp'",
        "'yesterday'",
        "ISO 8601",
    ),
    hourly(
        "hourly-value",
        HOURLY_HEADER + "2026-01-01T00:00:00Z,lots\n",
        "{dir}/h.csv, row 2, column 'g_per_kwh'",
        "'lots'",
        "not a number",
    ),
    hourly(
        "hourly-negative",
        HOURLY_HEADER + "2026-01-01T00:00:00Z,-5\n",
        "{dir}/h.csv, row 2, column 'g_per_kwh'",
        "'-5'",
        ">= 0",
    ),
    hourly("hourly-no-rows", HOURLY_HEADER, "{dir}/h.csv", "no rows"),
    hourly(
        "hourly-duplicate-hour",
        HOURLY_HEADER + "2026-01-01T00:00:00Z,5\n2026-01-01T00:00:00+00:00,6\n",
        "{dir}/h.csv",
        "two rows for 2026-01-01T00:00:00+00:00",
    ),
    Case(
        "hourly-is-a-folder",
        "hourly csv",
        ("{dir}/h.csv", "cannot be read", "Is a directory"),
        kwargs={"hourly_intensity_csv": "{dir}/h.csv"},
        files={"h.csv/.keep": ""},
    ),
    hourly(
        "hourly-not-utf8",
        (HOURLY_HEADER + "2026-01-01T00:00:00Z,5 \xe9\n").encode("latin-1"),
        "{dir}/h.csv",
    ),
    Case(
        "hourly-missing-file",
        "keyword",
        ("hourly_intensity_csv", "{dir}/none.csv"),
        kwargs={"hourly_intensity_csv": "{dir}/none.csv"},
    ),
    hourly(
        "hourly-does-not-cover-now",
        HOURLY_HEADER + "2020-01-01T00:00:00Z,50\n",
        "{dir}/h.csv",
        "2020-01-01T00:00:00+00:00",
    ),
    # -- CLI: greenml estimate --------------------------------------------------------------
    cli(
        "estimate-hours-text",
        ("estimate", "--gpu", "A100", "--hours", "abc", "--location", "FR"),
        "'--hours'",
        "'abc'",
        "not a valid float",
    ),
    cli(
        "estimate-count-float",
        ("estimate", "--gpu", "A100", "--count", "2.5", "--location", "FR"),
        "'--count'",
        "'2.5'",
        "not a valid integer",
    ),
    cli(
        "estimate-pricing",
        ("estimate", "--gpu", "A100", "--pricing", "reserved", "--location", "FR"),
        "'--pricing'",
        "'reserved'",
        "'on-demand', 'spot'",
    ),
    cli(
        "estimate-mfu",
        ("estimate", "--gpu", "A100", "--flops", "1e20", "--mfu", "1.5", "--location", "FR"),
        "--mfu 1.5",
        "(0, 1]",
    ),
    cli(
        "estimate-params",
        ("estimate", "--gpu", "A100", "--params", "7X", "--tokens", "2T", "--location", "FR"),
        "'--params'",
        "'7X'",
        "7B",
    ),
    cli(
        "estimate-typo",
        ("estimate", "--gpu", "A100", "--locaton", "FR"),
        "No such option '--locaton'",
        "'--location'",
    ),
    cli(
        "estimate-compare",
        ("estimate", "--gpu", "A100", "--compare", "Narnia", "--location", "FR"),
        "--compare 'Narnia'",
        "'aws:<region>'",
    ),
    cli(
        "estimate-instance",
        ("estimate", "--instance", "p9.huge", "--location", "aws:us-east-1"),
        "--instance 'p9.huge'",
        "--price-usd-per-hour",
        "instance_prices.csv",
    ),
    cli(
        "estimate-tables-empty",
        ("estimate", "--gpu", "A100", "--location", "FR", "--tables-dir", ""),
        "--tables-dir ''",
        "is empty",
        "leave --tables-dir unset",
    ),
    cli(
        "estimate-tables-bad-cell",
        ("estimate", "--gpu", "A100", "--location", "FR", "--tables-dir", "{dir}/t"),
        "{dir}/t/pue.csv, row 2, column 'pue'",
        "'0.9'",
        "at least 1.0",
        files={"t/pue.csv": PUE_HEADER + "aws,*,0.9,2026,audit,internal,\n"},
    ),
    # -- CLI: greenml report ----------------------------------------------------------------
    cli(
        "report-since-text",
        ("report", "--tracking-uri", "{down}", "--since", "yesterday"),
        "--since 'yesterday'",
        "YYYY-MM-DD",
    ),
    cli(
        "report-since-feb-30",
        ("report", "--tracking-uri", "{down}", "--since", "2024-02-30"),
        "--since '2024-02-30'",
        "YYYY-MM-DD",
    ),
    cli(
        "report-year-1800",
        ("report", "--tracking-uri", "{down}", "--year", "1800"),
        "--year",
        "1800",
        "from 1970",
    ),
    cli(
        "report-year-and-since",
        ("report", "--tracking-uri", "{down}", "--year", "2024", "--since", "2024-01-01"),
        "--year",
        "--since/--until",
        "not both",
    ),
    cli(
        "report-group-by",
        ("report", "--tracking-uri", "{down}", "--group-by", "colour"),
        "--group-by",
        "'colour'",
        "tag:<key>",
    ),
    cli(
        "report-format",
        ("report", "--tracking-uri", "{down}", "--format", "pdf"),
        "'--format'",
        "'pdf'",
        "'html', 'md', 'csv', 'json'",
    ),
    cli(
        "report-training-type",
        ("report", "--model-card", "r1", "--training-type", "pretraining"),
        "'--training-type'",
        "'pretraining'",
        "'pre-training'",
    ),
    cli(
        "report-model-card-no-ids",
        ("report", "--tracking-uri", "{down}", "--model-card"),
        "--model-card needs the MLflow run ids",
    ),
    cli(
        "report-stray-argument",
        ("report", "--tracking-uri", "{down}", "abc"),
        "unexpected argument(s) abc",
        "--model-card",
    ),
    cli(
        "report-unknown-experiment",
        ("report", "--tracking-uri", "{store}", "--experiment", "nope"),
        "no experiment named 'nope'",
        "(--experiment)",
        "'Default'",
        exit_code=1,
    ),
    cli(
        "report-since-after-until",
        ("report", "--tracking-uri", "{down}", "--since", "2024-05-01", "--until", "2024-04-01"),
        "--since 2024-05-01",
        "--until 2024-04-01",
    ),
    cli(
        "report-uri-scheme",
        ("report", "--tracking-uri", "nosuchscheme://x"),
        "--tracking-uri",
        "nosuchscheme://x",
    ),
    cli(
        "report-uri-blank",
        ("report", "--tracking-uri", "  "),
        "--tracking-uri",
    ),
    cli(
        "report-output-folder",
        ("report", "--tracking-uri", "{store}", "--output", "{dir}/no/such/folder/r.html"),
        "--output",
        "{dir}/no/such/folder/r.html",
    ),
    # -- CLI: greenml sync ------------------------------------------------------------------
    cli(
        "sync-typo",
        ("sync", "--include-locals"),
        "No such option '--include-locals'",
        "'--include-local'",
    ),
    cli(
        "sync-journal-dir-missing",
        ("sync", "--journal-dir", "{dir}/missing"),
        "--journal-dir",
        "{dir}/missing",
    ),
    cli(
        "sync-journal-dir-empty",
        ("sync", "--journal-dir", ""),
        "--journal-dir",
        "''",
    ),
    cli(
        "sync-uri-blank",
        ("sync", "--journal-dir", "{dir}/j", "--tracking-uri", "  "),
        "--tracking-uri",
        "is blank",
        prepare=_journal_of_a_run,
    ),
    # -- CLI: greenml tables show / import-prices -----------------------------------------
    cli("show-table-name", ("tables", "show", "grids"), "'grids'", "'grid', 'regions'"),
    cli(
        "show-zone",
        ("tables", "show", "grid", "--zone", "Narnia"),
        "--zone 'Narnia'",
        "ISO 3166-1",
        "did you mean",
    ),
    cli(
        "show-zone-empty",
        ("tables", "show", "grid", "--zone", ""),
        "--zone ''",
        "is empty",
        "give a zone (FR)",
    ),
    cli(
        "show-provider",
        ("tables", "show", "prices", "--provider", "oracle"),
        "--provider 'oracle'",
        "aws, azure, gcp",
    ),
    cli(
        "show-zone-not-for-gpus",
        ("tables", "show", "gpus", "--zone", "FR"),
        "--zone does not apply to `tables show gpus`",
        "grid",
    ),
    cli(
        "show-tables-dir-missing",
        ("tables", "show", "pue", "--tables-dir", "{dir}/missing"),
        "--tables-dir '{dir}/missing'",
        "is not a folder",
        "pue.csv",
    ),
    cli(
        "show-tables-dir-file-name",
        ("tables", "show", "gpus", "--tables-dir", "{dir}/t"),
        "--tables-dir '{dir}/t'",
        "gpu.csv is not a table",
        "did you mean 'gpus.csv'?",
        files={"t/gpu.csv": GPU_HEADER},
    ),
    cli(
        "import-prices-format",
        ("tables", "import-prices", "csv", "{dir}/vms.csv", "--tables-dir", "{dir}/t"),
        "'FORMAT'",
        "'csv'",
        "'skypilot'",
        files={"vms.csv": SKYPILOT_AWS},
    ),
    cli(
        "import-prices-no-file",
        ("tables", "import-prices", "skypilot", "{dir}/none.csv", "--tables-dir", "{dir}/t"),
        "{dir}/none.csv",
        "cannot read the file",
        "No such file",
    ),
    cli(
        "import-prices-provider",
        (
            "tables",
            "import-prices",
            "skypilot",
            "{dir}/vms.csv",
            "--provider",
            "oracle",
            "--tables-dir",
            "{dir}/t",
        ),
        "'--provider'",
        "'oracle'",
        "'aws', 'gcp', 'azure'",
        files={"vms.csv": SKYPILOT_AWS},
    ),
    cli(
        "import-prices-wrong-provider",
        (
            "tables",
            "import-prices",
            "skypilot",
            "{dir}/vms.csv",
            "--provider",
            "gcp",
            "--tables-dir",
            "{dir}/t",
        ),
        "--provider gcp does not match the file",
        "--provider aws",
        files={"vms.csv": SKYPILOT_AWS},
    ),
    cli(
        "import-prices-as-of",
        (
            "tables",
            "import-prices",
            "skypilot",
            "{dir}/vms.csv",
            "--as-of",
            "last week",
            "--tables-dir",
            "{dir}/t",
        ),
        "--as-of 'last week'",
        "YYYY-MM-DD",
        files={"vms.csv": SKYPILOT_AWS},
    ),
    cli(
        "import-prices-no-folder",
        ("tables", "import-prices", "skypilot", "{dir}/vms.csv"),
        "no tables folder",
        "--tables-dir <folder>",
        files={"vms.csv": SKYPILOT_AWS},
    ),
    cli(
        "import-prices-family",
        (
            "tables",
            "import-prices",
            "skypilot",
            "{dir}/vms.csv",
            "--family",
            "zzz",
            "--tables-dir",
            "{dir}/t",
        ),
        "--family",
        "zzz",
        "p5",
        files={"vms.csv": SKYPILOT_AWS},
    ),
    cli(
        "import-prices-tables-dir-file",
        ("tables", "import-prices", "skypilot", "{dir}/vms.csv", "--tables-dir", "{dir}/vms.csv"),
        "--tables-dir",
        "is a file",
        files={"vms.csv": SKYPILOT_AWS},
    ),
    cli(
        "import-prices-tables-dir-empty",
        ("tables", "import-prices", "skypilot", "{dir}/vms.csv", "--tables-dir", ""),
        "--tables-dir",
        "''",
        files={"vms.csv": SKYPILOT_AWS},
    ),
    # -- CLI: greenml import codecarbon (file errors exit 1: docs/esg-reporting.md) ----------
    cli(
        "codecarbon-no-file",
        ("import", "codecarbon", "{dir}/none.csv", "--tracking-uri", "{down}"),
        "{dir}/none.csv: no such file",
        exit_code=1,
    ),
    cli(
        "codecarbon-header",
        ("import", "codecarbon", "{dir}/e.csv", "--tracking-uri", "{down}"),
        "{dir}/e.csv: not a CodeCarbon emissions.csv",
        "run_id",
        "energy_consumed",
        exit_code=1,
        files={"e.csv": "timestamp,project_name\n2024-01-01T00:00:00,x\n"},
    ),
    cli(
        "codecarbon-bad-cell",
        (
            "import",
            "codecarbon",
            str(FIXTURES / "codecarbon" / "bad_energy.csv"),
            "--tracking-uri",
            "{down}",
            "--timezone",
            "UTC",
        ),
        "bad_energy.csv: line 3, column 'energy_consumed'",
        "'0.5kWh'",
        "not a number",
        exit_code=1,
    ),
    cli(
        "codecarbon-timezone",
        ("import", "codecarbon", "{dir}/e.csv", "--timezone", "Mars/Olympus"),
        "--timezone",
        "'Mars/Olympus'",
        "'Europe/Paris'",
        files={"e.csv": "timestamp,project_name\n"},
    ),
    # -- CLI: greenml demo ------------------------------------------------------------------
    cli("demo-seconds-negative", ("demo", "--seconds", "-1"), "--seconds", "-1", "> 0"),
    cli("demo-seconds-text", ("demo", "--seconds", "abc"), "'--seconds'", "'abc'", "float"),
    cli("demo-pue", ("demo", "--pue", "0.5"), "--pue 0.5", ">= 1.0"),
    cli("demo-location", ("demo", "--location", "Narnia"), "--location 'Narnia'", "'aws:<region>'"),
    cli("demo-instance-share", ("demo", "--instance-share", "2"), "--instance-share 2", "<= 1"),
    cli("demo-grid", ("demo", "--grid-intensity", "-1"), "--grid-intensity -1", ">= 0"),
    cli("demo-experiment", ("demo", "--experiment", ""), "--experiment ''", "non-empty"),
    cli("demo-format", ("demo", "--format", "xml"), "'--format'", "'xml'", "'text', 'json'"),
    cli(
        "demo-tables-dir",
        ("demo", "--tables-dir", "{dir}/t"),
        "--tables-dir '{dir}/t'",
        "did you mean 'gpus.csv'?",
        files={"t/gpu.csv": GPU_HEADER},
    ),
    cli(
        "demo-seconds-inf",
        ("demo", "--seconds", "inf"),
        "--seconds: inf",
        "> 0",
    ),
    cli(
        "demo-seconds-nan",
        ("demo", "--seconds", "nan"),
        "--seconds: nan",
        "> 0",
    ),
]


def _fill(value: Any, folder: Path, store: str = "") -> Any:
    """``value`` with {dir}, {store} and {down} replaced (in strings, lists, tuples, dicts)."""
    if isinstance(value, str):
        return (
            value.replace("{dir}", str(folder))
            .replace("{store}", store)
            .replace("{down}", _DOWN[0])
        )
    if isinstance(value, list | tuple):
        return type(value)(_fill(v, folder, store) for v in value)
    if isinstance(value, dict):
        return {k: _fill(v, folder, store) for k, v in value.items()}
    return value


def _closed_port_uri() -> str:
    """An http URI on a port of this host that nothing listens on (bound, then freed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


_DOWN = [_closed_port_uri()]


def _greenml_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("greenml")}


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Callable[[], str]:
    """An empty sqlite MLflow store, made on first use (about 2 s of migrations)."""
    made: list[str] = []

    def get() -> str:
        if not made:
            from mlflow import MlflowClient

            uri = f"sqlite:///{tmp_path_factory.mktemp('store')}/mlflow.db"
            MlflowClient(tracking_uri=uri).search_experiments()
            made.append(uri)
        return made[0]

    return get


def _sets(case: Case, name: str) -> bool:
    """Whether the case gives setting ``name`` itself (so the base must not)."""
    if name in case.kwargs or name in case.drop or f"GREENML_{name.upper()}" in case.env:
        return True
    texts = [t for t in case.files.values() if isinstance(t, str)]
    return any(re.search(rf"(?m)^\s*{name}\s*=", t) for t in texts)


BASE = {"location": "FR", "log_to_mlflow": False, "journal": False, "interval_s": 0.05}


def _params() -> list[Any]:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    return [
        pytest.param(
            c,
            id=f"{c.where}:{c.id}",
            marks=[pytest.mark.xfail(strict=True, reason=f"BUG: {c.bug}")] if c.bug else [],
        )
        for c in CASES
    ]


@pytest.mark.parametrize("case", _params())
def test_bad_input_is_refused_naming_value_and_what_is_valid(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_store: Callable[[], str]
) -> None:
    monkeypatch.chdir(tmp_path)
    store = empty_store() if any("{store}" in a for a in case.argv) else ""
    for name, content in case.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(_fill(content, tmp_path), encoding="utf-8")
    if case.prepare is not None:
        case.prepare(tmp_path)
    fragments = _fill(case.fragments, tmp_path, store)
    what = f"case {case.id} ({case.where})"
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        if case.where == "cli":
            _check_cli(case, _fill(case.argv, tmp_path, store), fragments, what)
        else:
            _check_api(case, tmp_path, fragments, what)
    finally:  # a run whose stop() failed leaves its SIGTERM handler: not for later tests
        signal.signal(signal.SIGTERM, sigterm)


def _check_api(case: Case, folder: Path, fragments: tuple[str, ...], what: str) -> None:
    kwargs = {k: v for k, v in BASE.items() if not _sets(case, k)}
    kwargs.update(_fill(case.kwargs, folder))
    environ = _fill(case.env, folder)
    before, sigterm = _greenml_threads(), signal.getsignal(signal.SIGTERM)
    ran: list[list[str]] = []
    with pytest.raises(ConfigError) as info, greenml.track(environ=environ, **kwargs):
        ran.append(sorted(t.name for t in _greenml_threads()))
    message = str(info.value)
    # raised by track() itself: the with-block (training) never ran, no thread started
    assert ran == [], f"{what}: training started (threads {ran}) before: {message}"
    assert _greenml_threads() - before == set(), what
    assert signal.getsignal(signal.SIGTERM) == sigterm, f"{what}: SIGTERM handler left"
    # greenml's own validation: its ConfigError, naming the setting / variable / file first
    assert type(info.value) is ConfigError, (what, type(info.value))
    for fragment in fragments:
        assert fragment in message, f"{what}: {fragment!r} not in {message!r}"


def _check_cli(case: Case, argv: tuple[str, ...], fragments: tuple[str, ...], what: str) -> None:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("GREENML_")}
    env["MLFLOW_TRACKING_URI"] = _DOWN[0]  # a store nothing answers on: never the default
    result = CliRunner().invoke(main, list(argv), env=env)
    output = result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{what}: raw {type(result.exception).__name__}: {result.exception!r}"
    )
    assert result.exit_code == case.exit_code, f"{what}: exit {result.exit_code}: {output}"
    assert "Error:" in output, f"{what}: {output}"
    assert "Traceback" not in output, f"{what}: {output}"
    for fragment in fragments:
        assert fragment in output, f"{what}: {fragment!r} not in {output!r}"


def test_the_table_is_spread_over_every_source_and_command() -> None:
    """The table keeps at least 60 inputs, from every place the task names."""
    assert len(CASES) >= 60
    where = {c.where for c in CASES}
    assert {"keyword", "env", "greenml.toml", "pyproject.toml", "tables_dir"} <= where
    assert "hourly csv" in where
    tables = {Path(n).name for c in CASES if c.where == "tables_dir" for n in c.files}
    assert {
        "instance_prices.csv",
        "pue.csv",
        "gpus.csv",
        "cloud_regions.csv",
        "embodied.csv",
        "gcp_region_carbon.csv",
    } <= tables
    commands = {
        " ".join(c.argv[:2]) if c.argv[0] in ("tables", "import") else c.argv[0]
        for c in CASES
        if c.where == "cli"
    }
    assert commands == {
        "estimate",
        "report",
        "sync",
        "tables show",
        "tables import-prices",
        "import codecarbon",
        "demo",
    }
    from greenml.config import NAMES

    given = {k for c in CASES for k in c.kwargs} | {
        k[len("GREENML_") :].lower() for c in CASES for k in c.env if k.startswith("GREENML_")
    }
    missing = [n for n in NAMES if n not in given]
    assert missing == [], missing
    # an API message names where the value came from first: the setting (keyword or
    # GREENML_ variable), the cloud SDK's variable, the file, or the unknown name
    for c in CASES:
        first = c.fragments[0]
        if c.where != "cli":
            assert (
                "{dir}/" in first
                or first.startswith(("unknown setting", "AWS_REGION="))
                or any(n in first or f"GREENML_{n.upper()}" in first for n in NAMES)
            ), (c.id, first)
