"""What benchmarks/cost.py and benchmarks/accuracy.py share: the machine line, the
results table with a target beside each figure, ``--json``, the exit status, and small
helpers that read figures from greenml through its public API only.

A row is *measured* (a figure and, where there is one, a target it meets or misses),
*informational* (no target) or an *error* (greenml raised while it was measured: the
code under measurement is being edited while these scripts run, so a row that cannot be
measured is reported, not hidden). Errors and misses both make the script exit non-zero.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import greenml
from greenml.footprint import J_PER_KWH

ROOT = Path(__file__).resolve().parent.parent
BENCH_SETTINGS: dict[str, Any] = {"location": "FR", "log_to_mlflow": False, "journal": False}


# -- the machine -------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def machine() -> dict[str, Any]:
    dirty = _git("status", "--porcelain", "--", "greenml")
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "greenml": greenml.__version__,
        "commit": _git("rev-parse", "--short", "HEAD"),
        # other engineers edit greenml/ while benchmarks run: say what was measured
        "greenml_uncommitted_changes": bool(dirty) if dirty is not None else None,
    }


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# -- the report ------------------------------------------------------------------------


@dataclass
class Row:
    key: str
    what: str
    result: str = ""
    target: str = ""
    ok: bool | None = None  # None: informational, no target
    error: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        if self.error is not None:
            return "ERROR"
        if self.ok is None:
            return "info"
        return "ok" if self.ok else "**MISS**"


class Report:
    """Collects rows, prints the header at once and the table at the end."""

    def __init__(self, title: str, argv: Sequence[str], args: dict[str, Any]) -> None:
        self.title = title
        self.machine = machine()
        self.date = now_utc()
        self.args = args
        self.rows: list[Row] = []
        self.details: list[str] = []  # markdown printed after the table
        self.notes: list[str] = []
        self.only: set[str] | None = None  # row keys to run (None: all)
        self.t0 = time.perf_counter()
        m = self.machine
        print(f"# {title}\n")
        print(f"command: python {' '.join(argv)}")
        print(f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']} ({m['platform']})")
        changes = " + uncommitted changes in greenml/" if m["greenml_uncommitted_changes"] else ""
        print(f"greenml: {m['greenml']} at {m['commit']}{changes}")
        print(f"date: {self.date}\n", flush=True)

    def measure(self, key: str, what: str, target: str, fn: Callable[[Row], None]) -> Row | None:
        """Run ``fn(row)``, which fills in ``result``, ``ok`` and ``data``; an exception
        becomes an ERROR row (traceback on stderr) and the script goes on. A row that
        :attr:`only` leaves out is not run."""
        if self.only is not None and key not in self.only:
            return None
        row = Row(key, what, target=target)
        t0 = time.perf_counter()
        try:
            fn(row)
        except Exception as e:  # the code under measurement may be mid-edit
            row.error = f"{type(e).__name__}: {e}"
            row.result = f"error: {row.error}"
            traceback.print_exc(file=sys.stderr)
        row.data.setdefault("elapsed_s", round(time.perf_counter() - t0, 2))
        self.rows.append(row)
        print(
            f"[{time.perf_counter() - self.t0:6.1f} s] {key}: {row.verdict}: {row.result}",
            file=sys.stderr,
            flush=True,
        )
        return row

    def table(self) -> str:
        def esc(s: str) -> str:
            return s.replace("|", "\\|").replace("\n", " ")

        lines = ["| # | what | result | target | verdict |", "| --- | --- | --- | --- | --- |"]
        for r in self.rows:
            lines.append(
                f"| {r.key} | {esc(r.what)} | {esc(r.result)} | {esc(r.target) or '-'} | "
                f"{r.verdict} |"
            )
        return "\n".join(lines)

    def finish(self, json_path: str | None) -> int:
        runtime = time.perf_counter() - self.t0
        print(self.table())
        for block in self.details:
            print()
            print(block)
        if self.notes:
            print()
            for n in self.notes:
                print(f"- {n}")
        missed = [r for r in self.rows if r.ok is False and r.error is None]
        errors = [r for r in self.rows if r.error is not None]
        print(f"\nruntime: {runtime:.1f} s")
        if json_path:
            doc = {
                "title": self.title,
                "date": self.date,
                "machine": self.machine,
                "args": self.args,
                "runtime_s": round(runtime, 1),
                "rows": [asdict(r) | {"verdict": r.verdict} for r in self.rows],
                "notes": self.notes,
            }
            Path(json_path).write_text(json.dumps(doc, indent=2, default=str) + "\n")
            print(f"json: {json_path}")
        if missed or errors:
            if missed:
                print("MISSED targets: " + "; ".join(f"{r.key} ({r.what})" for r in missed))
            if errors:
                print(
                    "NOT MEASURED (greenml raised): "
                    + "; ".join(f"{r.key} ({r.error})" for r in errors)
                )
            return 1
        print("all targets met")
        return 0


# -- small helpers -------------------------------------------------------------------------


@contextlib.contextmanager
def in_temp_dir(prefix: str) -> Iterator[Path]:
    """Run in a fresh folder (MLflow's default store, the journal, no greenml.toml or
    [tool.greenml] of this repository's), back to the old one afterwards."""
    old = os.getcwd()
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        os.chdir(d)
        try:
            yield Path(d)
        finally:
            os.chdir(old)


def quiet_greenml() -> None:
    """This machine's CPU is not in CodeCarbon's table: greenml says so once per run,
    which is right for a user and noise here."""
    warnings.filterwarnings("ignore", category=greenml.GreenMLWarning)


def sleep_until(t_s: float) -> None:
    while True:
        d = t_s - time.monotonic()
        if d <= 0:
            return
        time.sleep(d)


def pcts(values: Sequence[float], qs: Sequence[float] = (50, 99)) -> list[float]:
    arr = np.asarray(values, dtype=float)
    return [float(np.percentile(arr, q)) for q in qs]


def gpu_j(fp: greenml.Footprint) -> float:
    """A footprint's GPU energy (IT, before PUE), in joules."""
    return fp.gpu_energy_kwh * J_PER_KWH


def gpu_device_j(fp: greenml.Footprint) -> dict[str, float]:
    """Joules per GPU device entry (``fp.devices``, run level only: the phases of a
    Footprint carry no per-device breakdown)."""
    return {d.key: d.energy_kwh * J_PER_KWH for d in fp.devices if d.kind == "gpu"}


def phase_gpu_j(fp: greenml.Footprint, name: str) -> float:
    """GPU joules of phase ``name`` (all GPUs together)."""
    return fp.phases[name].gpu_energy_kwh * J_PER_KWH


def nvml_calls(sim: Any) -> int:
    return sum(sim.calls.values())


def sampler_default_interval_s() -> str:
    """What the code says its sampling cadence is right now (the sampler is being
    rewritten; read, not assumed)."""
    parts = []
    from greenml import config, sampler

    for name in dir(sampler):
        if "INTERVAL" in name.upper() or "CADENCE" in name.upper() or "PERIOD" in name.upper():
            v = getattr(sampler, name)
            if isinstance(v, (int, float)):
                parts.append(f"greenml.sampler.{name}={v}")
    with contextlib.suppress(Exception):
        parts.append(f"Settings.interval_s default={config.Settings().interval_s}")
    with contextlib.suppress(Exception):
        import inspect

        for p in inspect.signature(sampler.Sampler.__init__).parameters.values():
            if p.name.endswith("_s") and isinstance(p.default, (int, float)):
                parts.append(f"Sampler({p.name}={p.default})")
    return ", ".join(parts) or "not found"
