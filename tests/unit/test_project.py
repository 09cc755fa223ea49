"""The README's promises: its test command is the one CI runs, and the demo runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text)


def test_ci_runs_exactly_the_readme_test_command():
    commands = readme_commands()
    test_cmd = next(c for c in commands if "pytest" in c)
    ci_lines = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci_lines[-1] == test_cmd
    assert "pip install -q torch==2.13.0" in ci_lines


def test_readme_demo_command_is_the_demo():
    demo_cmd = next(c for c in readme_commands() if "greenml demo" in c)
    assert demo_cmd == "pip install . && greenml demo --simulated-gpu"


def test_no_two_test_files_share_a_name():
    # without packages, pytest imports test modules by basename: a clash stops collection
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []
