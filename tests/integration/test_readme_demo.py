"""The README's main command, as a new user runs it: a fresh virtual environment, a copy
of the project, ``pip install . && greenml demo --simulated-gpu``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _project_files() -> list[str]:
    if (ROOT / ".git").exists() and shutil.which("git"):
        out = subprocess.run(
            ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        return [f for f in out.splitlines() if (ROOT / f).is_file()]
    pytest.fail("the README test copies the project's tracked files: it needs git")


def test_readme_demo_command_in_a_fresh_venv(tmp_path):
    readme = (ROOT / "README.md").read_text()
    command = next(c for c in re.findall(r"```bash\n(.+?)\n```", readme) if "greenml demo" in c)
    project = tmp_path / "project"
    for f in _project_files():
        (project / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, project / f)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "GREENML_"))}
    env.pop("PYTHONPATH", None)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    env["VIRTUAL_ENV"] = str(venv)
    t0 = time.monotonic()
    out = subprocess.run(
        ["bash", "-c", command],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    took = time.monotonic() - t0
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "measurement       simulated" in out.stdout
    assert f"mlflow ui --backend-store-uri sqlite:///{project}/mlflow.db" in out.stdout
    assert (project / "mlflow.db").is_file()
    assert not list(venv.glob("lib/python*/site-packages/torch"))  # the demo needs no torch
    # the demo itself, once installed: well under a minute
    t0 = time.monotonic()
    again = subprocess.run(
        ["greenml", "demo", "--simulated-gpu"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    demo_s = time.monotonic() - t0
    assert again.returncode == 0, again.stderr[-3000:]
    assert demo_s < 30.0, f"greenml demo took {demo_s:.1f} s"
    print(
        f"README command in a fresh venv: {took:.1f} s with the install; demo alone {demo_s:.1f} s"
    )
