"""A real ``mlflow server`` on 127.0.0.1, for tests that log over HTTP.

``start_mlflow_server(workdir)`` runs ``python -m mlflow server`` (uvicorn, one worker) with a
SQLite backend store and proxied artifact storage (``--serve-artifacts``), both under
``workdir``, and returns once ``GET /health`` answers 200. The server can be stopped and
restarted on the same port and store, to test clients that outlive an outage.

Fixtures:

* ``mlflow_server`` (session scope): one shared server. Tests must not stop it; to stay
  independent of each other they create their own experiments.
* ``private_mlflow_server`` (function scope): a server of the test's own, which it may stop and
  restart; it is stopped at teardown.
* ``run_job``: runs a multi-process torch job and returns each process's (returncode, stdout,
  stderr); once more, with a warning, if torch's gloo teardown aborted a process at exit.

Startup takes several seconds (the server imports MLflow twice: in the CLI process that
migrates the database and in the uvicorn worker), hence the shared fixture.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_env() -> dict[str, str]:
    """The environment of the server: the test's, without its MLflow settings.

    Client-side settings such as ``MLFLOW_TRACKING_URI`` or ``MLFLOW_SERVER_ALLOWED_HOSTS``
    must not leak into the server. Job execution is switched off: it would start a job runner
    and a pool of huey consumers that the tests do not need and that slow startup.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to the process group ``pgid``, if it still exists."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


class MlflowServer:
    """An ``mlflow server`` subprocess, in a process group of its own.

    Attributes:
        port: the TCP port it listens on, on 127.0.0.1.
        uri: its tracking URI, ``http://127.0.0.1:<port>``.
        backend_uri: the SQLite backend store, ``sqlite:///<workdir>/mlflow.db``.
        artifacts_dir: the directory behind its proxied artifact store.
        log_path: the server's stdout and stderr, appended to across restarts.
    """

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port if port is not None else _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.backend_uri = f"sqlite:///{self.workdir / 'mlflow.db'}"
        self.artifacts_dir = self.workdir / "artifacts"
        self.log_path = self.workdir / "mlflow-server.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """Whether the server process is alive (it may not be healthy yet)."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Start the server and wait until ``GET /health`` answers 200."""
        if self.running:
            raise RuntimeError(f"the MLflow server at {self.uri} is already running")
        cmd = [
            sys.executable, "-m", "mlflow", "server",
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--workers", "1",
            "--backend-store-uri", self.backend_uri,
            "--serve-artifacts",
            "--artifacts-destination", str(self.artifacts_dir),
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                env=_server_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Terminate the server's whole process group and wait for it; kill it if it lingers."""
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        pgid = proc.pid  # start_new_session: the server leads its own group
        _signal_group(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(pgid, signal.SIGKILL)
            proc.wait(timeout)
        # The CLI process exits after its uvicorn child; this only reaps stragglers.
        _signal_group(pgid, signal.SIGKILL)

    def restart(self, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Stop the server if it runs, then start it again on the same port and store."""
        self.stop()
        self.start(timeout)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(
                    f"the MLflow server exited with code {self._proc.returncode} "
                    f"before it was healthy; log tail:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the MLflow server at {self.uri} was not healthy after {timeout:.0f} s; "
                    f"log tail:\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"MlflowServer({self.uri}, {self.backend_uri}, {state})"


def start_mlflow_server(workdir: Path, port: int | None = None) -> MlflowServer:
    """Start an ``mlflow server`` whose store lives in ``workdir``; return it once healthy.

    ``port`` defaults to a free one. The caller must ``stop()`` the server.
    """
    server = MlflowServer(workdir, port)
    server.start()
    return server


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A running MLflow server shared by the session; do not stop it."""
    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_mlflow_server(tmp_path: Path) -> Iterator[MlflowServer]:
    """A running MLflow server of the test's own, which it may stop and restart."""
    server = start_mlflow_server(tmp_path / "mlflow-server")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def mlflow_defaults_restored() -> Iterator[None]:
    """Each test starts from MLflow's own defaults. The frameworks under test change
    MLflow's process-wide state: the Trainer's ``MLflowCallback`` calls
    ``mlflow.set_tracking_uri`` with the server of its test and ``mlflow.set_experiment``
    (which also sets ``MLFLOW_EXPERIMENT_ID`` in the environment), and a training that
    raises leaves its fluent run open; a later test that relies on the local default store
    would then log to that server, or into an experiment its store does not have."""
    before = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    yield
    for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
        if key not in before:
            del os.environ[key]
    os.environ.update(before)
    mlflow = sys.modules.get("mlflow")
    if mlflow is None:
        return
    while mlflow.active_run() is not None:
        mlflow.end_run()
    # MLflow has no public way to unset these (set_tracking_uri("") means ./mlruns)
    from mlflow.tracking import fluent
    from mlflow.tracking._tracking_service import utils

    utils._tracking_uri = None
    fluent._active_experiment_id = None


# -- multi-process torch jobs ------------------------------------------------------------


#: torch's own teardown race: a process that used a gloo group (or DDP) is aborted at exit,
#: after its work, in about 1 exit in 60 on a loaded machine, with greenml or without it
#: (reproduced here with a bare DDP script that closes its group). torchrun reports the
#: worker as SIGABRT and the other host's agent then waits out its exit barrier.
def _aborted_by_torch(returncode: int | None, err: str) -> bool:
    return returncode in (-signal.SIGABRT, 128 + signal.SIGABRT) or (
        returncode != 0 and ("(SIGABRT)" in err or "without an active exception" in err)
    )


def _finish(procs: list[subprocess.Popen], timeout_s: float) -> list[tuple[int | None, str, str]]:
    """Each process's (returncode, stdout, stderr). Once one has failed, the others get
    15 s to end before they are killed (a torchrun agent would wait minutes for its peer)."""
    deadline = time.monotonic() + timeout_s
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        if any(p.poll() not in (None, 0) for p in procs):
            deadline = min(deadline, time.monotonic() + 15.0)
        time.sleep(0.2)
    out = []
    for p in procs:
        if p.poll() is None:
            p.kill()
        stdout, stderr = p.communicate()
        out.append((p.returncode, stdout, stderr))
    return out


def _run_job(launch: Callable[[], list[subprocess.Popen]], timeout_s: float):
    """Run a multi-process job from ``launch``; once more if torch's teardown aborted a
    process (said in a warning), so that the test's assertions hold the second job to
    the same account. A job that fails in any other way is not run again."""
    results = _finish(launch(), timeout_s)
    if any(_aborted_by_torch(rc, err) for rc, _, err in results):
        warnings.warn(
            "a process of the job was aborted by torch's gloo teardown at exit (SIGABRT), "
            "not by greenml: the job is run again",
            stacklevel=2,
        )
        results = _finish(launch(), timeout_s)
    return results


@pytest.fixture
def run_job() -> Callable[..., list[tuple[int | None, str, str]]]:
    """:func:`_run_job`: ``run_job(launch, timeout_s=...)``."""
    return _run_job
