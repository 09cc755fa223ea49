"""docs/testing.md's examples run as written: the in-process simulation and the pytest
fixture (the child-process recipe is what test_cross_process.py does)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_in_process_example_prints_what_the_doc_says(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", python_blocks()[0]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    measurement, joules, names = out.stdout.strip().splitlines()
    assert measurement == "simulated"
    # 300 W + a 400/100 W square wave (mean 250 W) for the 2 s sleep plus start/stop
    assert 1100 * 0.98 <= int(joules) <= 1100 * 1.1
    assert names == "['NVIDIA H100 80GB HBM3', 'NVIDIA A100-SXM4-40GB']"


def test_pytest_example_passes(tmp_path):
    test_file = tmp_path / "test_example.py"
    test_file.write_text(
        "import time\n\n\ndef train_one_epoch():\n    time.sleep(0.5)\n\n\n"
        + textwrap.dedent(python_blocks()[1])
    )
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed" in out.stdout


def test_memory_sink_example_runs(tmp_path):
    block = next(b for b in python_blocks() if "MemorySink" in b)
    out = subprocess.run(
        [sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
