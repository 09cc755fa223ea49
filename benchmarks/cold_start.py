"""Cold start: how long the first ``greenml.track(...)`` of a fresh process takes.

    python benchmarks/cold_start.py [--runs 7] [--budget-ms 100] [--location FR]

Each run is a new Python process that times, from just before ``import greenml`` to just
after the run has stopped::

    import greenml                                                # import greenml
    track = greenml.track                                         # load the tracker
    run = track(location="FR", log_to_mlflow=False, journal=False)  # track() construction
    with run: pass                                                # start + stop

(loading the tracker is the first ``greenml.track``, which imports
:mod:`greenml.tracker` and what it needs; it is part of what ``track()`` costs a user).
The machine's real meters are used: no GPU here means NVML and amdsmi are probed and found
absent, as on a user's CPU-only machine. The script prints the median and the spread
(min..max) of each part over the runs, and exits 1 when the median total exceeds the
budget (100 ms), 0 otherwise.

How the processes are set up, so that they measure greenml and not the machine's state:

- they run in an empty temporary folder (no ``pyproject.toml`` or ``greenml.toml`` to read;
  ``--cwd`` picks another folder);
- Python's bytecode cache is on, in a temporary ``PYTHONPYCACHEPREFIX`` filled by one
  untimed warm-up run, as for an installed package (pip compiles a wheel's modules when it
  installs them). Where ``PYTHONDONTWRITEBYTECODE`` is set, an editable install would
  otherwise compile every module from source in every process, ~40 ms more that is not
  greenml's; ``--no-bytecode-cache`` measures that case too.
- warnings (no GPU, the CPU's TDP estimated) are shown as usual, to a pipe.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = """\
import time

t0 = time.perf_counter()
import greenml

t1 = time.perf_counter()
track = greenml.track
t2 = time.perf_counter()
run = track(location={location!r}, log_to_mlflow=False, journal=False)
t3 = time.perf_counter()
with run:
    pass
t4 = time.perf_counter()

import json
import sys

print(json.dumps({{
    "import greenml": t1 - t0,
    "load the tracker": t2 - t1,
    "track() construction": t3 - t2,
    "start + stop": t4 - t3,
    "total": t4 - t0,
    "modules": sorted(sys.modules),
}}))
"""

PARTS = ("import greenml", "load the tracker", "track() construction", "start + stop", "total")
HEAVY = ("pandas", "numpy", "codecarbon", "mlflow", "pycountry", "pynvml", "psutil", "torch")


def run_once(script: str, cwd: str, env: dict[str, str]) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, script], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        raise SystemExit(f"the measured process failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", "-n", type=int, default=7, help="fresh processes (7)")
    parser.add_argument("--budget-ms", type=float, default=100.0, help="median limit (100)")
    parser.add_argument("--location", default="FR", help="the run's location (FR)")
    parser.add_argument("--cwd", help="folder the processes run in (an empty temporary one)")
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="honour PYTHONDONTWRITEBYTECODE: modules without bytecode compile every time",
    )
    parser.add_argument("--json", action="store_true", help="print the runs as JSON too")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    with tempfile.TemporaryDirectory(prefix="greenml-cold-start-") as tmp:
        script = os.path.join(tmp, "cold_start_child.py")
        with open(script, "w", encoding="utf-8") as f:
            f.write(CHILD.format(location=args.location))
        cwd = args.cwd or os.path.join(tmp, "project")
        os.makedirs(cwd, exist_ok=True)
        env = dict(os.environ)
        if not args.no_bytecode_cache:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = os.path.join(tmp, "pycache")
        run_once(script, cwd, env)  # warm-up: bytecode cache, the OS's file cache
        runs = [run_once(script, cwd, env) for _ in range(args.runs)]

    print(
        f"greenml cold start: {args.runs} fresh processes, track(location={args.location!r}, "
        f"log_to_mlflow=False, journal=False), bytecode cache "
        f"{'off' if args.no_bytecode_cache else 'on'}, Python {sys.version.split()[0]}"
    )
    for part in PARTS:
        ms = sorted(1000.0 * float(r[part]) for r in runs)  # type: ignore[arg-type]
        print(
            f"  {part:<22} median {statistics.median(ms):7.1f} ms   "
            f"spread {ms[0]:6.1f} .. {ms[-1]:6.1f} ms"
        )
    loaded = set.union(*(set(r["modules"]) for r in runs))  # type: ignore[arg-type]
    heavy = [m for m in HEAVY if m in loaded]
    print(
        f"  heavy modules loaded: {', '.join(heavy) if heavy else 'none'} (of {', '.join(HEAVY)})"
    )
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "modules"} for r in runs]))
    median_ms = statistics.median(1000.0 * float(r["total"]) for r in runs)  # type: ignore[arg-type]
    verdict = "within" if median_ms <= args.budget_ms else "OVER"
    print(f"median total {median_ms:.1f} ms: {verdict} the budget of {args.budget_ms:g} ms")
    return 0 if median_ms <= args.budget_ms else 1


if __name__ == "__main__":
    sys.exit(main())
