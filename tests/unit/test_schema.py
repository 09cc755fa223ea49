"""greenml.schema: the one module that holds the names, and Footprint.from_dict reading
back what to_dict and footprint.json hold."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from types import MappingProxyType

import pytest

import greenml
from greenml import schema
from greenml._version import __version__
from greenml.footprint import DeviceEnergy, Factor, Footprint
from greenml.meters.base import Channel
from greenml.testing import ConstantMeter, ManualClock


def _run() -> Footprint:
    """A real run: a 300 W GPU and a 100 W CPU, 60 s of training then 30 s of eval."""
    clock = ManualClock(0.0)
    gpu = Channel("gpu:0", "gpu", "GPU under test", "counter", index=0, details=(("a", "b"),))
    cpu = Channel("cpu:package-0", "cpu", "CPU under test", "counter")
    run = greenml.Tracker(
        meters=[ConstantMeter(clock, 300.0, channel=gpu), ConstantMeter(clock, 100.0, channel=cpu)],
        clock=clock,
        environ={},
        interval_s=3600,
        log_to_mlflow=False,
        journal=False,
        pue=1.2,
        grid_intensity_g_per_kwh=400.0,
        price_usd_per_hour=3.6,
    ).start()
    clock.advance(60.0)
    with run.phase("eval"):
        clock.advance(30.0)
    return run.stop()


def test_a_runs_footprint_reads_back_from_json() -> None:
    fp = _run()
    back = Footprint.from_dict(json.loads(json.dumps(fp.to_dict())))
    assert back == fp
    assert set(back.phases) == {"train", "eval"}
    assert isinstance(back.phases, MappingProxyType)  # read-only, as the constructor's
    eval_fp = back.phases["eval"]
    assert isinstance(eval_fp, Footprint) and eval_fp == fp.phases["eval"]
    # 400 W of IT power for 30 s, x PUE 1.2, by hand
    assert eval_fp.energy_kwh == pytest.approx(400.0 * 30.0 / 3.6e6 * 1.2)
    gpu = next(d for d in back.devices if d.kind == "gpu")
    assert isinstance(gpu, DeviceEnergy) and gpu.index == 0
    assert gpu.details == (("a", "b"),)
    assert gpu.energy_kwh == pytest.approx(300.0 * 90.0 / 3.6e6)
    assert all(isinstance(f, Factor) for f in back.factors) and back.factors == fp.factors
    assert isinstance(back.flags, tuple)


def test_a_footprint_document_reads_back_too() -> None:
    fp = _run()
    doc = json.loads(json.dumps(schema.footprint_document(fp, "abc"), default=str))
    assert doc[schema.DOC_GREENML_VERSION] == __version__
    assert doc[schema.DOC_GREENML_RUN_ID] == "abc"
    assert Footprint.from_dict(doc) == fp


def test_from_dict_takes_an_earlier_documents_defaults_and_refuses_a_non_footprint() -> None:
    fp = Footprint(
        duration_s=1.0, energy_kwh=2.0, gpu_energy_kwh=1.0, cpu_energy_kwh=0.5, ram_energy_kwh=0.1
    )
    older = {k: v for k, v in fp.to_dict().items() if k not in ("final", "embodied_co2e_kg")}
    assert Footprint.from_dict({**older, "a_later_field": 1}) == fp
    with pytest.raises(ValueError, match="not a greenml footprint"):
        Footprint.from_dict({"duration_s": 1.0})


def test_names_match_the_public_contract() -> None:
    # DESIGN.md's "Public contracts", typed out here on purpose
    assert schema.METRIC_ENERGY_KWH == "greenml/energy_kwh"
    assert schema.METRIC_GPU_POWER_W == "greenml/gpu_power_w"
    assert schema.metric_gpu_power_w(3) == "greenml/gpu_3/power_w"
    assert schema.metric_gpu_energy_kwh(3) == "greenml/gpu_3/energy_kwh"
    assert schema.metric_phase_energy_kwh("eval") == "greenml/phase/eval/energy_kwh"
    assert schema.PARAM_LOCATION == "greenml.location"
    assert schema.PARAM_GRID_INTENSITY == "greenml.grid_intensity_g_per_kwh"
    assert schema.TAG_STATUS == "greenml.status" and schema.TAG_RUN_ID == "greenml.run_id"
    assert schema.FOOTPRINT_ARTIFACT == "greenml/footprint.json"
    assert schema.TIMESERIES_ARTIFACT == "greenml/timeseries.csv"


# string constants that are not schema names, where they are
_NOT_NAMES = {
    ("factors/metadata.py", "greenml/"),  # the HTTP user agent, f"greenml/{__version__}"
    ("factors/csvtable.py", "greenml/factors/data/"),  # a shipped table's path
}
_NAME = re.compile(
    r"^greenml/|^greenml\.(location|grid_|pue|price_|instance_type|gpu_|version|scope|"
    r"measurement|node|run_id|status|blocks)"
)


def _strings(tree: ast.AST) -> list[str]:
    """The module's string constants, docstrings left out."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_no_other_module_types_a_name() -> None:
    package = Path(schema.__file__).parent
    typed = [
        f"{rel}: {s!r}"
        for path in sorted(package.rglob("*.py"))
        if path.name != "schema.py"
        for rel in [path.relative_to(package).as_posix()]
        for s in _strings(ast.parse(path.read_text("utf-8")))
        if _NAME.match(s) and (rel, s) not in _NOT_NAMES
    ]
    assert typed == [], "use the names in greenml/schema.py"
