"""What ``greenml report`` costs over a team's MLflow store, next to what MLflow itself
needs to return the same runs (issue 12, "Scale"): 10,000 runs by default, on an MLflow
server backed by PostgreSQL (as teams deploy it) and on a local sqlite store.

    apt-get install postgresql && pip install psycopg2-binary   # the server's driver
    python benchmarks/report_scale.py [--runs 10000] [--stores postgres,sqlite]
                                      [--repeats 3] [--json FILE]

For each store, in a temporary folder removed at the end (also on Ctrl-C):

1. the store: for ``postgres``, a PostgreSQL cluster of its own (Debian's ``initdb`` and
   ``pg_ctl`` from /usr/lib/postgresql/<version>/bin, run as the ``postgres`` user when
   this script runs as root, which PostgreSQL refuses; trust authentication, 127.0.0.1
   only, a free port, default settings otherwise) and ``mlflow server --backend-store-uri
   postgresql+psycopg2://...`` on 127.0.0.1 (MLflow's default of 4 workers, as a team
   would run it; ``+psycopg2`` because SQLAlchemy 2.1 reads a bare ``postgresql://`` as
   psycopg 3); for ``sqlite``, a ``sqlite:///`` file used directly by the client;
2. populating: the same N runs in each store (made from a fixed seed, none copied between
   stores), spread over the 12 months of 2025 in a few experiments, with greenml's
   metrics, params and tags (names from ``greenml.schema``) and a few of a training
   script's own; ~2 % without greenml data, ~1 % simulated, ~1 % multi-host jobs with
   per-host (``greenml/node/...``) figures. Each run is ``create_run`` + one ``log_batch``
   (metrics, params, tags) + ``set_terminated``, in a thread pool; the time is recorded;
3. MLflow's own fetch: ``MlflowClient.search_runs`` over the experiments, paged
   (``--page-size``, 1000 by default: MLflow's default page) until no ``page_token`` is
   left, with the filter the report pushes down (the period's ``start_time`` range);
   also, for reference, ``mlflow.search_runs`` to a pandas DataFrame (MLflow's own
   DataFrame of runs, which pages by 10,000 where the store allows);
4. the report: ``greenml.report.load_runs(...)`` + ``summarize(...)`` + rendering JSON,
   CSV, Markdown and HTML, each stage timed.

Each of ``--repeats`` rounds (default 3) times MLflow's fetch, then the report at once
(the pair sees the same machine), then MLflow's DataFrame; the medians are compared:
the target is a report that costs at most 1.5 x MLflow's own fetch. The ratio of each
pair is printed too: on a machine shared with other work, it varies less than either
figure. Until ``greenml.report.load_runs`` exists the script says ``report: not available
yet`` and still measures (3); the report's functions are looked up as the command uses
them (``load_runs``, ``summarize``, ``render.render(summary, fmt)``), and only the
keyword arguments that ``summarize`` takes are passed. Exits 1 when a target is missed or
the report could not be measured (absent or raised), 130 when interrupted, 0 when every
store met it.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime
import functools
import glob
import importlib
import importlib.util
import inspect
import json
import os
import pwd
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _greenml_runs import machine, now_utc, quiet_greenml

from greenml import schema

TARGET_RATIO = 1.5
PAGE_SIZE = 1000  # MLflow's default page (SEARCH_MAX_RESULTS_DEFAULT)
SINCE = datetime.date(2025, 1, 1)
UNTIL = datetime.date(2025, 12, 31)  # inclusive, as the report's --until
STARTUP_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
DB_NAME = "mlflow"

# experiment -> share of the runs
EXPERIMENTS = {
    "bert-finetune": 0.35,
    "llama-pretrain": 0.10,
    "vit-imagenet": 0.25,
    "whisper-asr": 0.15,
    "recsys-ranking": 0.15,
}
USERS = ("alice", "bob", "chen", "dana", "emeka", "farah", "goran", "hana")


@dataclasses.dataclass(frozen=True)
class Site:
    """Where runs execute, with the factors greenml would have used there."""

    location: str
    grid_intensity_g_per_kwh: float
    grid_source: str
    pue: float
    scope: str
    gpu_model: str
    gpu_tdp_w: float
    gpu_count: int
    instance_type: str | None = None
    price_usd_per_hour: float | None = None  # the instance's, when known
    electricity_usd_per_kwh: float | None = None  # own hardware with a known tariff


_EMBER = "Ember yearly electricity data (via CodeCarbon), 2024"
_PRICES = "SkyPilot public cloud catalog, 2026-01-21"
SITES = (
    Site("aws:us-east-1", 384.0, "EIA state data US-VA, 2023", 1.14, "scope3-cat1",
         "NVIDIA H100 80GB HBM3", 700.0, 8, "p5.48xlarge", 55.04),
    Site("aws:eu-north-1", 41.0, _EMBER, 1.14, "scope3-cat1",
         "NVIDIA A100-SXM4-40GB", 400.0, 8, "p4d.24xlarge", 23.26),
    Site("gcp:europe-west4", 270.0, "GoogleCloudPlatform/region-carbon-info, 2025", 1.10,
         "scope3-cat1", "NVIDIA A100-SXM4-40GB", 400.0, 1, "a2-highgpu-1g", 3.67),
    Site("azure:swedencentral", 41.0, _EMBER, 1.18, "scope3-cat1",
         "NVIDIA A100 80GB PCIe", 300.0, 1, "Standard_NC24ads_A100_v4", 3.67),
    Site("FR", 56.0, _EMBER, 1.4, "scope2", "NVIDIA A100-SXM4-80GB", 400.0, 4,
         electricity_usd_per_kwh=0.21),
    Site("DE", 381.0, _EMBER, 1.5, "scope2", "NVIDIA L40S", 350.0, 2),  # no price
    Site("US-CA", 230.0, "EIA state data US-CA, 2023", 1.3, "scope2",
         "NVIDIA H100 80GB HBM3", 700.0, 8, electricity_usd_per_kwh=0.19),
)  # fmt: skip
SITE_WEIGHTS = (0.30, 0.10, 0.15, 0.10, 0.15, 0.10, 0.10)
# the run-level metrics of a multi-host job (its hosts' own GPUs are in their node metrics)
JOB_METRICS = (*schema.FIGURE_METRICS.values(), schema.METRIC_GPU_POWER_W)
STAGES = ("load_runs_s", "summarize_s", "render_s")  # the report's, timed one by one
# the report's formats and their functions in greenml.report.render
RENDER_FUNCTIONS = {"html": "to_html", "md": "to_markdown", "csv": "to_csv", "json": "to_json"}
MEASUREMENTS = (("counter", 0.75), ("sampled", 0.15), ("estimated", 0.08), ("imported", 0.02))


# -- the runs ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One MLflow run to create: what a tracked training run leaves in a team's store."""

    experiment: str
    name: str
    user: str
    start_ms: int
    end_ms: int
    kind: str  # greenml | plain (no greenml data) | simulated | multi-host
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]


def _ms(d: datetime.date) -> int:
    return (
        int(datetime.datetime(d.year, d.month, d.day, tzinfo=datetime.timezone.utc).timestamp())
        * 1000
    )


def period_filter(since: datetime.date, until: datetime.date) -> str:
    """The ``start_time`` range of the period [since, until] (inclusive), as the report
    pushes it to MLflow (UTC days)."""
    end = until + datetime.timedelta(days=1)
    return f"attributes.start_time >= {_ms(since)} AND attributes.start_time < {_ms(end)}"


def _footprint(rng: random.Random, site: Site, gpu_count: int, duration_s: float) -> dict:
    """Figures of one host's run at ``site``: a GPU load between 45 % and 90 % of TDP."""
    gpu_w = [site.gpu_tdp_w * rng.uniform(0.45, 0.9) for _ in range(gpu_count)]
    gpu_kwh = [w * duration_s / 3.6e6 for w in gpu_w]
    cpu_kwh = rng.uniform(90.0, 320.0) * duration_s / 3.6e6
    ram_kwh = rng.uniform(20.0, 70.0) * duration_s / 3.6e6
    it_kwh = sum(gpu_kwh) + cpu_kwh + ram_kwh
    energy_kwh = it_kwh * site.pue
    co2e_kg = energy_kwh * site.grid_intensity_g_per_kwh / 1000.0
    fig: dict[str, float | None] = {
        "energy_kwh": energy_kwh,
        "co2e_kg": co2e_kg,
        # a renewable contract on a third of the runs lowers the market-based figure
        "co2e_market_kg": co2e_kg * (rng.uniform(0.1, 0.6) if rng.random() < 0.33 else 1.0),
        "cost_usd": None,
        "duration_s": duration_s,
        "gpu_energy_kwh": sum(gpu_kwh),
        "cpu_energy_kwh": cpu_kwh,
        "ram_energy_kwh": ram_kwh,
        # SCI's embodied share: 1000 kg a server + 150 kg a GPU over 4 years (embodied.csv)
        "embodied_co2e_kg": (1000.0 + 150.0 * gpu_count) * duration_s / (4 * 365 * 86_400.0),
    }
    if site.price_usd_per_hour is not None:
        fig["cost_usd"] = site.price_usd_per_hour * duration_s / 3600.0
    elif site.electricity_usd_per_kwh is not None:
        fig["cost_usd"] = site.electricity_usd_per_kwh * energy_kwh
    metrics = {
        name: v for f, name in schema.FIGURE_METRICS.items() if (v := fig.get(f)) is not None
    }
    metrics[schema.METRIC_GPU_POWER_W] = sum(gpu_w)
    for i, (w, kwh) in enumerate(zip(gpu_w, gpu_kwh, strict=True)):
        metrics[schema.metric_gpu_energy_kwh(i)] = kwh
        metrics[schema.metric_gpu_power_w(i)] = w
    return metrics


def _params(site: Site, gpu_count: int) -> dict[str, str]:
    price = site.price_usd_per_hour
    return {
        schema.PARAM_LOCATION: site.location,
        schema.PARAM_GRID_INTENSITY: repr(site.grid_intensity_g_per_kwh),
        schema.PARAM_GRID_SOURCE: site.grid_source,
        schema.PARAM_PUE: repr(site.pue),
        schema.PARAM_PRICE_USD_PER_HOUR: repr(price) if price is not None else schema.NA,
        schema.PARAM_PRICE_SOURCE: _PRICES if price is not None else schema.NA,
        schema.PARAM_INSTANCE_TYPE: site.instance_type or schema.NA,
        schema.PARAM_GPU_MODEL: site.gpu_model,
        schema.PARAM_GPU_COUNT: str(gpu_count),
    }


def make_runs(n: int, seed: int = 12) -> list[RunSpec]:
    """``n`` runs, the same for a given seed: start times uniform over the period."""
    rng = random.Random(seed)
    kinds = ["greenml"] * n
    special = max(1, n // 100)  # at least one of each, whatever n
    picks = rng.sample(range(n), min(n, 4 * special))
    for i in picks[: 2 * special]:
        kinds[i] = "plain"
    for i in picks[2 * special : 3 * special]:
        kinds[i] = "simulated"
    for i in picks[3 * special :]:
        kinds[i] = "multi-host"
    t0, t1 = _ms(SINCE) + 3_600_000, _ms(UNTIL)  # inside the period whatever the time zone
    names, shares = list(EXPERIMENTS), list(EXPERIMENTS.values())
    out = []
    for i, kind in enumerate(kinds):
        experiment = rng.choices(names, shares)[0]
        start_ms = rng.randrange(t0, t1)
        duration_s = min(max(rng.lognormvariate(8.8, 1.3), 60.0), 5 * 86_400.0)
        metrics = {"train_loss": rng.uniform(0.05, 2.5), "eval_accuracy": rng.uniform(0.5, 0.99)}
        params = {
            "learning_rate": repr(10 ** rng.uniform(-5, -3)),
            "batch_size": str(rng.choice((16, 32, 64, 128, 256))),
            "epochs": str(rng.randint(1, 30)),
            "seed": str(rng.randint(0, 9999)),
        }
        user = rng.choice(USERS)
        tags = {"mlflow.source.type": "LOCAL"}
        if kind != "plain":
            site = rng.choices(SITES, SITE_WEIGHTS)[0]
            measurement = rng.choices(*zip(*MEASUREMENTS, strict=True))[0]
            if kind == "simulated":
                measurement = "simulated"
            tags |= {
                schema.TAG_VERSION: "0.1.0",
                schema.TAG_SCOPE: site.scope,
                schema.TAG_MEASUREMENT: measurement,
                schema.TAG_NODE: f"gpu-{rng.randint(1, 64):02d}",
                schema.TAG_RUN_ID: uuid.UUID(int=rng.getrandbits(128)).hex,
                schema.TAG_STATUS: "finished",
                schema.TAG_BLOCKS: "1",
            }
            if kind == "multi-host":
                hosts = [f"gpu-{rng.randint(1, 64):02d}-{h}" for h in range(rng.randint(2, 4))]
                job: dict[str, float] = {}
                for host in hosts:
                    own = _footprint(rng, site, site.gpu_count, duration_s)
                    metrics |= {schema.node_metric(host, k): v for k, v in own.items()}
                    own_params = _params(site, site.gpu_count)
                    params |= {schema.node_param(host, k): v for k, v in own_params.items()}
                    tags[schema.node_param(host, schema.TAG_MEASUREMENT)] = measurement
                    for k in JOB_METRICS:  # the job's totals: all but the duration add up
                        if k in own:
                            add = k != schema.METRIC_DURATION_S
                            job[k] = own[k] + (job.get(k, 0.0) if add else 0.0)
                metrics |= job
                params |= _params(site, site.gpu_count * len(hosts))
                tags |= {
                    schema.TAG_HOSTS: str(len(hosts)),
                    schema.TAG_WORLD_SIZE: str(site.gpu_count * len(hosts)),
                    schema.TAG_SLURM_JOB_ID: str(rng.randint(100_000, 999_999)),
                    schema.TAG_SLURM_NODELIST: ",".join(hosts),
                }
            else:
                gpu_count = rng.choice([c for c in (1, 2, 4, 8) if c <= site.gpu_count])
                metrics |= _footprint(rng, site, gpu_count, duration_s)
                params |= _params(site, gpu_count)
                train_kwh = metrics[schema.METRIC_ENERGY_KWH] * rng.uniform(0.8, 0.95)
                metrics[schema.metric_phase_energy_kwh("train")] = train_kwh
                metrics[schema.metric_phase_energy_kwh("eval")] = (
                    metrics[schema.METRIC_ENERGY_KWH] - train_kwh
                )
                if rng.random() < 0.5:
                    steps = rng.randint(1_000, 200_000)
                    metrics[schema.METRIC_STEPS] = float(steps)
                    metrics[schema.METRIC_SAMPLES] = float(steps * int(params["batch_size"]))
        out.append(
            RunSpec(
                experiment=experiment,
                name=f"{experiment}-{i:05d}",
                user=user,
                start_ms=start_ms,
                end_ms=start_ms + int(duration_s * 1000),
                kind=kind,
                metrics=metrics,
                params=params,
                tags=tags,
            )
        )
    return out


# -- the stores ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_bin() -> Path:
    """The newest installed PostgreSQL's bin folder (Debian keeps it off PATH)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql")


class Postgres:
    """A PostgreSQL cluster of its own in ``folder``, on 127.0.0.1 and a free port.

    PostgreSQL refuses to run as root: then every command runs as the ``postgres`` user
    (Debian's package creates it) through ``runuser``, in a folder it owns.
    """

    def __init__(self, folder: Path, root: Path) -> None:
        self.folder = folder
        self.root = root  # the temporary folder it sits in, which it may open to the user
        self.data = folder / "data"
        self.log_path = folder / "postgres.log"
        self.port = _free_port()
        self.bin = _pg_bin()
        self.user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(
                    "running as root, and there is no 'postgres' user to run PostgreSQL as "
                    "(Debian's postgresql package creates it)"
                ) from None
            self.user = "postgres"
        # +psycopg2: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3
        self.uri = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{DB_NAME}"
        self._started = False

    def _cmd(self, tool: str, *args: str) -> list[str]:
        cmd = [str(self.bin / tool), *args]
        return ["runuser", "-u", self.user, "--", *cmd] if self.user else cmd

    def _run(self, tool: str, *args: str) -> None:
        p = subprocess.run(
            self._cmd(tool, *args),
            capture_output=True,
            text=True,
            start_new_session=True,  # Ctrl-C reaches this script only, which stops the cluster
            timeout=STARTUP_TIMEOUT_S,
        )
        if p.returncode != 0:
            raise RuntimeError(
                f"{tool} failed ({p.returncode}): {p.stderr.strip() or p.stdout.strip()}\n"
                f"{self.log_tail()}"
            )

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(self.folder, pw.pw_uid, pw.pw_gid)
            # the user must reach the folder: open the way down from our temporary folder
            for parent in self.folder.parents:
                if parent == self.root.parent:
                    break
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    os.chmod(parent, mode | 0o001)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync")  # fmt: skip
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        self._started = True  # from here on, stop() tries to stop it
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-w", "-t",
                  str(int(STARTUP_TIMEOUT_S)), "-o", options, "start")  # fmt: skip
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", DB_NAME)

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def version(self) -> str:
        p = subprocess.run(
            [str(self.bin / "postgres"), "--version"], capture_output=True, text=True
        )
        return p.stdout.strip()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no postgres log)"


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 over ``backend_uri``, in a process group of its own
    (as tests/integration/conftest.py starts it)."""

    def __init__(self, folder: Path, backend_uri: str, workers: int | None) -> None:
        self.folder = folder
        self.backend_uri = backend_uri
        self.workers = workers
        self.port = _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / "mlflow-server.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "mlflow", "server",
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--backend-store-uri", self.backend_uri,
            "--serve-artifacts",
            "--artifacts-destination", str(self.folder / "artifacts"),
        ]  # fmt: skip
        if self.workers:
            cmd += ["--workers", str(self.workers)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        env["PYTHONUNBUFFERED"] = "1"
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if self._proc.poll() is not None:
                _progress(self.log_tail())
                raise RuntimeError(
                    f"mlflow server exited with code {self._proc.returncode} (its log above)"
                )
            with (
                contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
                urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response,
            ):
                if response.status == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"mlflow server not healthy after {STARTUP_TIMEOUT_S:.0f} s")
            time.sleep(0.3)

    def stop(self) -> None:
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(STOP_TIMEOUT_S)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@contextlib.contextmanager
def postgres_store(folder: Path, server_workers: int | None) -> Iterator[dict[str, Any]]:
    """PostgreSQL + ``mlflow server`` over it; yields the tracking URI and what runs."""
    pg = Postgres(folder / "pg", root=folder.parent)
    server = MlflowServer(folder / "server", pg.uri, server_workers)
    try:
        t0 = time.monotonic()
        pg.start()
        t1 = time.monotonic()
        server.start()
        t2 = time.monotonic()
        yield {
            "uri": server.uri,
            "backend": pg.uri,
            "postgres": pg.version(),
            "postgres_start_s": round(t1 - t0, 2),
            "server_start_s": round(t2 - t1, 2),
            "server_workers": server_workers or "mlflow's default (4)",
        }
    finally:
        server.stop()
        pg.stop()


@contextlib.contextmanager
def sqlite_store(folder: Path) -> Iterator[dict[str, Any]]:
    folder.mkdir(parents=True, exist_ok=True)
    yield {"uri": f"sqlite:///{folder / 'mlflow.db'}"}


# -- populating ----------------------------------------------------------------------------


def populate(uri: str, specs: Sequence[RunSpec], workers: int) -> dict[str, Any]:
    """Create the experiments and runs; return their ids and how long it took."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    t0 = time.monotonic()
    ids = {name: client.create_experiment(name) for name in EXPERIMENTS}

    def one(spec: RunSpec) -> None:
        run = client.create_run(
            ids[spec.experiment],
            start_time=spec.start_ms,
            tags={"mlflow.user": spec.user},
            run_name=spec.name,
        )
        rid = run.info.run_id
        client.log_batch(
            rid,
            metrics=[Metric(k, v, spec.end_ms, 0) for k, v in spec.metrics.items()],
            params=[Param(k, v) for k, v in spec.params.items()],
            tags=[RunTag(k, v) for k, v in spec.tags.items()],
            synchronous=True,
        )
        client.set_terminated(rid, "FINISHED", end_time=spec.end_ms)

    ex = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="populate")
    try:
        futures = [ex.submit(one, s) for s in specs]
        step = max(1, len(specs) // 10)
        for done, f in enumerate(as_completed(futures), 1):
            f.result()
            if done % step == 0 or done == len(specs):
                el = time.monotonic() - t0
                _progress(
                    f"  populated {done:,}/{len(specs):,} runs, {el:.0f} s ({done / el:.0f}/s)"
                )
    finally:
        ex.shutdown(wait=False, cancel_futures=True)
    seconds = time.monotonic() - t0
    return {
        "experiment_ids": ids,
        "populate_s": round(seconds, 2),
        "populate_runs_per_s": round(len(specs) / seconds, 1),
        "workers": workers,
    }


# -- measuring -----------------------------------------------------------------------------


class ReportUnavailable(Exception):
    """greenml.report (or the part of it to be measured) does not exist yet."""


def mlflow_fetch(uri: str, experiment_ids: list[str], filter_string: str, page_size: int) -> int:
    """Every run of the period, as MLflow's client returns them: paged search_runs."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    n, token = 0, None
    while True:
        page = client.search_runs(
            experiment_ids, filter_string, max_results=page_size, page_token=token
        )
        n += len(page)
        token = page.token
        if not token:
            return n


def mlflow_dataframe(uri: str, experiment_ids: list[str], filter_string: str) -> int:
    """The same runs through ``mlflow.search_runs``, MLflow's own DataFrame of runs."""
    import mlflow

    old = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        df = mlflow.search_runs(experiment_ids, filter_string, output_format="pandas")
    finally:
        mlflow.set_tracking_uri(old)
    return len(df)


def _report_parts() -> tuple[Callable, Callable | None, dict[str, Callable]]:
    """load_runs, summarize and a renderer per format, as far as they exist."""
    try:
        report = importlib.import_module("greenml.report")
    except ModuleNotFoundError as e:
        if e.name in ("greenml.report", "greenml"):
            raise ReportUnavailable("greenml.report does not exist") from None
        raise
    load_runs = getattr(report, "load_runs", None)
    if load_runs is None:
        raise ReportUnavailable("greenml.report has no load_runs")

    def part(module: str, name: str) -> Any:
        try:
            return getattr(importlib.import_module(f"greenml.report.{module}"), name, None)
        except ModuleNotFoundError as e:
            if e.name == f"greenml.report.{module}":
                return None
            raise

    render = part("render", "render")
    if render is not None:  # render(summary, fmt), as the command calls it
        formats = part("render", "FORMATS") or RENDER_FUNCTIONS
        renderers = {fmt: functools.partial(render, fmt=fmt) for fmt in formats}
    else:
        renderers = {
            fmt: fn for fmt, name in RENDER_FUNCTIONS.items() if (fn := part("render", name))
        }
    return load_runs, part("summarize", "summarize"), renderers


def _accepted(fn: Callable, **kwargs: Any) -> dict[str, Any]:
    """The keyword arguments that ``fn`` takes (the report's API is being written)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


def greenml_report(uri: str, experiments: list[str]) -> dict[str, Any]:
    """One report as ``greenml report --format X`` makes it, stage by stage: seconds of
    each, the rows read and the size of each output. Raises ReportUnavailable when
    ``load_runs`` does not exist yet."""
    load_runs, summarize, renderers = _report_parts()
    out: dict[str, Any] = {"missing": []}
    t0 = time.perf_counter()
    df = load_runs(uri, experiments, SINCE, UNTIL)
    t1 = time.perf_counter()
    out["load_runs_s"] = t1 - t0
    out["rows"] = len(df)
    if summarize is None:
        out["missing"].append("summarize")
        return out
    options = _accepted(
        summarize,
        group_by="experiment",
        organisation="greenml benchmark",
        include_simulated=False,
        period=(SINCE, UNTIL),
        tracking_uri=uri,
    )
    summary = summarize(df, **options)
    t2 = time.perf_counter()
    out["summarize_s"] = t2 - t1
    out["summary_runs"] = (summary.get("header") or {}).get("runs")
    sizes, times = {}, {}
    for fmt, fn in renderers.items():
        t = time.perf_counter()
        sizes[fmt] = len(fn(summary))
        times[fmt] = time.perf_counter() - t
    out["render_s"] = time.perf_counter() - t2
    out["render_by_format_s"] = times
    out["output_chars"] = sizes
    out["missing"] += [f"{f} output" for f in RENDER_FUNCTIONS if f not in sizes]
    return out


def measure(
    store: str, info: dict[str, Any], specs: Sequence[RunSpec], args: argparse.Namespace
) -> dict[str, Any]:
    """Populate ``store`` and time MLflow's fetch and the report, alternately."""
    uri = info["uri"]
    res: dict[str, Any] = {"store": store, "runs": len(specs), **info}
    res["expected_in_totals"] = sum(s.kind in ("greenml", "multi-host") for s in specs)
    _progress(f"{store}: populating {len(specs):,} runs at {uri} ...")
    workers = args.workers if store == "postgres" else args.sqlite_workers
    res |= populate(uri, specs, workers)
    exp_ids = list(res["experiment_ids"].values())
    flt = period_filter(SINCE, UNTIL)
    res["filter"] = flt
    fetch_s, frame_s, report_runs = [], [], []
    report_state = "ok"
    for i in range(args.repeats):
        # the report right after MLflow's fetch, so that each pair sees the same machine
        t0 = time.perf_counter()
        n = mlflow_fetch(uri, exp_ids, flt, args.page_size)
        fetch_s.append(time.perf_counter() - t0)
        if n != len(specs):
            raise RuntimeError(f"search_runs returned {n} runs, {len(specs)} expected")
        _progress(f"  {store} #{i + 1}: MLflow fetch {fetch_s[-1]:.2f} s")
        if report_state == "ok":
            try:
                r = greenml_report(uri, list(EXPERIMENTS))
            except ReportUnavailable as e:
                report_state = f"not available yet ({e})"
                _progress(f"  {store}: report: {report_state}")
            except Exception as e:  # greenml.report is being written while this runs
                report_state = f"error: {type(e).__name__}: {e}"
                traceback.print_exc(file=sys.stderr)
            else:
                r["mlflow_fetch_s"] = fetch_s[-1]
                report_runs.append(r)
                stages = "/".join(f"{r[k]:.2f}" for k in STAGES if k in r)
                _progress(f"  {store} #{i + 1}: report {stages} s (load_runs/summarize/render)")
        t0 = time.perf_counter()
        mlflow_dataframe(uri, exp_ids, flt)
        frame_s.append(time.perf_counter() - t0)
        _progress(f"  {store} #{i + 1}: mlflow.search_runs DataFrame {frame_s[-1]:.2f} s")
    res["report_state"] = report_state
    res["mlflow_fetch_s"] = fetch_s
    res["mlflow_fetch_median_s"] = statistics.median(fetch_s)
    res["mlflow_dataframe_s"] = frame_s
    res["mlflow_dataframe_median_s"] = statistics.median(frame_s)
    res["fetch_runs_per_s"] = round(len(specs) / res["mlflow_fetch_median_s"], 1)
    if report_runs:
        res["report"] = report_runs
        for k in STAGES:
            vals = [r[k] for r in report_runs if k in r]
            if vals:
                res[f"report_{k[:-2]}_median_s"] = statistics.median(vals)
        totals = [sum(r.get(k, 0.0) for k in STAGES) for r in report_runs]
        res["report_s"] = totals
        res["report_median_s"] = statistics.median(totals)
        res["paired_ratios"] = [
            t / r["mlflow_fetch_s"] for t, r in zip(totals, report_runs, strict=True)
        ]
        res["report_complete"] = not report_runs[-1]["missing"]
        res["ratio"] = res["report_median_s"] / res["mlflow_fetch_median_s"]
        res["load_runs_ratio"] = res["report_load_runs_median_s"] / res["mlflow_fetch_median_s"]
        res["ok"] = res["report_complete"] and res["ratio"] <= TARGET_RATIO
    else:
        res["ok"] = False
        if report_state != "ok":
            res["report_error"] = report_state
    return res


# -- output --------------------------------------------------------------------------------


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| store | runs | populate s (runs/s) | MLflow fetch s | mlflow.search_runs "
        "DataFrame s | report s (load_runs / summarize / render) | ratio report / fetch | "
        f"target <= {TARGET_RATIO:g}x |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        if "error" in r:
            error = r["error"].splitlines()[0][:200]
            lines.append(f"| {r['store']} | {r['runs']:,} | error: {error} | | | | | ERROR |")
            continue
        if "report_median_s" in r:
            parts = " / ".join(
                _s(r.get(f"report_{k}_median_s")) for k in ("load_runs", "summarize", "render")
            )
            report = f"{r['report_median_s']:.2f} ({parts})"
            if not r["report_complete"]:
                report += " incomplete: " + ", ".join(r["report"][-1]["missing"]) + " missing"
            ratio = f"{r['ratio']:.2f} (load_runs alone {r['load_runs_ratio']:.2f})"
            verdict = "ok" if r["ok"] else "**MISS**"
        else:
            state = r["report_state"].splitlines()[0][:200]
            report, ratio, verdict = f"report: {state}", "-", "not measured"
        lines.append(
            f"| {r['store']} | {r['runs']:,} | "
            f"{r['populate_s']:.0f} ({r['populate_runs_per_s']:.0f}/s) "
            f"| {r['mlflow_fetch_median_s']:.2f} | {r['mlflow_dataframe_median_s']:.2f} | "
            f"{report} | {ratio} | {verdict} |"
        )
    return "\n".join(lines)


def _list(xs: Sequence[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in xs)


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _raise_interrupt(signum: int, frame: Any) -> None:
    # once: a second Ctrl-C must not cut the clean-up short (stopping PostgreSQL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=10_000, help="runs per store (default 10000)")
    ap.add_argument(
        "--stores", default="postgres,sqlite", help="postgres, sqlite or both (default)"
    )
    ap.add_argument(
        "--repeats", type=int, default=3, help="timings per figure; medians (default 3)"
    )
    ap.add_argument(
        "--page-size", type=int, default=PAGE_SIZE, help="search_runs max_results (1000)"
    )
    ap.add_argument("--workers", type=int, default=8, help="threads populating the server (8)")
    ap.add_argument(
        "--sqlite-workers", type=int, default=1, help="threads populating sqlite (1: one writer)"
    )
    ap.add_argument(
        "--server-workers", type=int, default=None, help="mlflow server --workers (MLflow's: 4)"
    )
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args()
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    if not stores or set(stores) - {"postgres", "sqlite"}:
        ap.error("--stores takes postgres, sqlite or both")
    if args.runs < 1 or args.repeats < 1:
        ap.error("--runs and --repeats must be positive")
    if "postgres" in stores and importlib.util.find_spec("psycopg2") is None:
        ap.error("mlflow server needs a PostgreSQL driver: pip install psycopg2-binary")
    json_path = Path(args.json).resolve() if args.json else None

    quiet_greenml()
    # MLflow's client prints a link for every run it ends (and reads the run back to do it)
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    # stop the servers and remove the folder on Ctrl-C and on kill (SIGTERM) alike, also
    # when started in the background (where a shell starts a job with SIGINT ignored)
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    m = machine()
    import mlflow

    print("# greenml report at scale\n")
    print(f"command: python {' '.join(sys.argv)}")
    print(f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']} ({m['platform']})")
    dirty = " + uncommitted changes in greenml/" if m["greenml_uncommitted_changes"] else ""
    print(f"greenml: {m['greenml']} at {m['commit']}{dirty}; MLflow {mlflow.__version__}")
    print(f"date: {now_utc()}; load average at the start: {_load()} (other work slows both sides)")
    print(f"period: {SINCE} .. {UNTIL}; filter pushed to MLflow: {period_filter(SINCE, UNTIL)}\n")

    t_start = time.monotonic()
    t0 = time.monotonic()
    specs = make_runs(args.runs)
    kinds = collections.Counter(s.kind for s in specs)
    print(
        f"runs: {len(specs):,} per store in {len(EXPERIMENTS)} experiments ({kinds['plain']} "
        f"without greenml data, {kinds['simulated']} simulated, {kinds['multi-host']} "
        f"multi-host); {statistics.mean(len(s.metrics) for s in specs):.0f} metrics, "
        f"{statistics.mean(len(s.params) for s in specs):.0f} params, "
        f"{statistics.mean(len(s.tags) + 2 for s in specs):.0f} tags a run on average "
        f"(made in {time.monotonic() - t0:.1f} s)\n",
        flush=True,
    )
    results: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="greenml-report-scale-"))
    interrupted = False
    try:
        for store in stores:
            opener = (
                postgres_store(tmp / store, args.server_workers)
                if store == "postgres"
                else sqlite_store(tmp / store)
            )
            try:
                with opener as info:
                    results.append(measure(store, info, specs, args))
            except KeyboardInterrupt:
                raise
            except Exception as e:
                traceback.print_exc(file=sys.stderr)
                error = f"{type(e).__name__}: {e}"
                results.append({"store": store, "runs": len(specs), "error": error, "ok": False})
    except KeyboardInterrupt:
        interrupted = True
        _progress("interrupted: stopped the servers; partial results below")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(table(results))
    for r in results:
        if "postgres" in r:
            print(
                f"\n- postgres: {r['postgres']}, started in {r['postgres_start_s']} s; mlflow "
                f"server ({r['server_workers']} workers) healthy {r['server_start_s']} s later"
            )
        if "mlflow_fetch_median_s" in r:
            print(
                f"- {r['store']}: MLflow fetch {r['fetch_runs_per_s']:.0f} runs/s "
                f"(pages of {args.page_size}); populate {r['populate_runs_per_s']:.0f} runs/s "
                f"with {r['workers']} threads; fetch s: {_list(r['mlflow_fetch_s'])}"
                + (
                    f"; report s: {_list(r['report_s'])}; ratio of each pair: "
                    f"{_list(r['paired_ratios'])}"
                    if "report_s" in r
                    else ""
                )
            )
        if "report" in r:
            last = r["report"][-1]
            formats = ", ".join(
                f"{f} {t:.2f} s / {last['output_chars'].get(f, 0) / 1e6:.1f} MB"
                for f, t in last.get("render_by_format_s", {}).items()
            )
            counted = last.get("summary_runs")
            print(
                f"- {r['store']}: load_runs read {last['rows']:,} runs ({r['runs']:,} in the "
                f"store); the totals count {counted if counted is not None else '-'} "
                f"({r['expected_in_totals']:,} expected: with greenml data, not simulated); "
                f"last rendering: {formats or '-'}"
            )
    runtime = time.monotonic() - t_start
    print(f"\nruntime: {runtime:.0f} s; load average at the end: {_load()}")
    if json_path:
        doc = {
            "title": "greenml report at scale",
            "date": now_utc(),
            "machine": m,
            "mlflow": mlflow.__version__,
            "args": vars(args),
            "period": [str(SINCE), str(UNTIL)],
            "target_ratio": TARGET_RATIO,
            "runtime_s": round(runtime, 1),
            "load_average_end": os.getloadavg(),
            "interrupted": interrupted,
            "stores": results,
        }
        json_path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        print(f"json: {json_path}")
    if interrupted:
        # populating threads may still wait on the stopped server (MLflow retries):
        # leave without joining them
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    if all(r["ok"] for r in results):
        print(f"all targets met (report <= {TARGET_RATIO:g}x MLflow's fetch)")
        return 0
    missing = [r["store"] for r in results if "report_median_s" not in r]
    if missing:
        print("report not measured on: " + ", ".join(missing))
    missed = [r["store"] for r in results if "report_median_s" in r and not r["ok"]]
    if missed:
        print(f"MISSED the {TARGET_RATIO:g}x target on: " + ", ".join(missed))
    return 1


if __name__ == "__main__":
    sys.exit(main())
