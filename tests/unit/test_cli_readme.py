"""The README's "Estimates and tables" commands run as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from click.testing import CliRunner

from greenml.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"


def section_commands() -> list[list[str]]:
    text = README.read_text()
    section = text.split("## Estimates and tables", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```text\n(.+?)\n```", section, re.S).group(1)
    joined = re.sub(r"\\\n\s*", "", block)  # continuation lines
    return [shlex.split(line, comments=True) for line in joined.splitlines() if line.strip()]


def test_every_command_of_the_section_runs():
    commands = section_commands()
    assert len(commands) >= 5
    for argv in commands:
        assert argv[0] == "greenml", argv
        result = CliRunner().invoke(main, argv[1:])
        assert result.exit_code == 0, (argv, result.output)
        assert result.stdout.strip(), argv


def test_the_sixteen_gpu_example_rents_two_machines():
    argv = next(c for c in section_commands() if "16" in c)
    result = CliRunner().invoke(main, argv[1:])
    # 2 x p4d.24xlarge x 100 h x 21.957642 USD/h = 4,391.53 USD
    assert "2 x p4d.24xlarge" in result.output and "4,391.53 USD" in result.output


def test_the_bloom_example_gives_the_papers_figure():
    argv = next(c for c in section_commands() if "--energy-kwh" in c)
    result = CliRunner().invoke(main, argv[1:])
    # 433,196 kWh x 57 g/kWh = 24,692.172 kg = 24.69 t
    assert "24,692.172 kg" in result.output
