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


# A catalog file as the README's import command expects one (SkyPilot's AWS columns).
VMS_CSV = (
    "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,"
    "Region,AvailabilityZone,Arch\n"
    "p5.48xlarge,H100,8.0,192.0,2048.0,,50.0,20.0,us-east-1,use1-az1,x86_64\n"
)


def test_every_command_of_the_section_runs():
    commands = section_commands()
    assert len(commands) >= 5
    runner = CliRunner()
    with runner.isolated_filesystem():
        Path("vms.csv").write_text(VMS_CSV)  # a downloaded catalog file
        for argv in commands:
            assert argv[0] == "greenml", argv
            result = runner.invoke(main, argv[1:])
            assert result.exit_code == 0, (argv, result.output)
            assert result.stdout.strip(), argv
        assert (
            "p5.48xlarge,us-east-1,H100,8,50,on-demand"
            in Path("my-tables/instance_prices.csv").read_text()
        )


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
