"""The CLI and the package as real processes: exit codes and stderr, and what a bare
``import greenml`` loads."""

from __future__ import annotations

import subprocess
import sys

FR = ["--location", "FR"]


def test_an_error_is_a_usage_error_in_a_real_process_too():
    proc = subprocess.run(
        [sys.executable, "-m", "greenml.cli", "estimate", "--gpu", "A100", "--hours", "inf", *FR],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "--hours inf" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_import_greenml_is_cheap():
    code = (
        "import sys, greenml\n"
        "greenml.track, greenml.Tracker, greenml.Footprint\n"
        "import greenml.testing\n"
        "heavy = {'torch', 'mlflow', 'pynvml', 'pandas', 'transformers', 'lightning'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_table_is_read_without_importing_codecarbon_or_pandas():
    code = (
        "import sys; from greenml.meters.cpu import TdpTable; t = TdpTable.codecarbon(); "
        "assert len(t) > 4000, len(t); "
        "bad = [m for m in ('codecarbon', 'pandas', 'rapidfuzz') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_run_with_a_location_loads_neither_pandas_nor_codecarbon(tmp_path):
    """A run's first start and stop loads only what it needs, which is what keeps it
    within benchmarks/cold_start.py's budget: CodeCarbon's tables and pycountry's codes
    are read as files, not through their packages; the shipped tables without
    importlib.resources, CodeCarbon's version without importlib.metadata; difflib only
    for an error's hint; tomllib only with a settings file (tmp_path has none); psutil
    nowhere on Linux (/proc is read); pynvml not where libnvidia-ml cannot be loaded."""
    from greenml.meters.registry import _nvml_library_loads

    lazy = {"pandas", "numpy", "codecarbon", "mlflow", "pycountry", "rapidfuzz"}
    lazy |= {"importlib.metadata", "importlib.resources", "difflib", "tomllib"}
    if sys.platform.startswith("linux"):
        lazy.add("psutil")
        if not _nvml_library_loads():
            lazy |= {"pynvml", "greenml.meters.nvml"}
    code = (
        "import sys, warnings, greenml\n"
        "warnings.simplefilter('ignore')\n"
        "greenml.track(location='FR', log_to_mlflow=False, journal=False)\n"
        "greenml.track(location='US-CA', log_to_mlflow=False, journal=False)\n"
        "with greenml.track(location='FR', log_to_mlflow=False, journal=False) as run:\n"
        "    pass\n"
        "assert run.footprint.co2e_kg is not None\n"
        f"print(sorted(set({sorted(lazy)!r}) & set(sys.modules)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
