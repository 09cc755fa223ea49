"""What a user must act on reaches stderr in a plain script with no logging set up,
once each, and the standard ways of silencing warnings silence it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent(
    """
    import json, logging, sys, time, warnings
    import greenml

    mode = sys.argv[2]
    if mode == "filtered":
        warnings.filterwarnings("ignore", category=greenml.GreenMLWarning)
    elif mode == "logger":
        logging.getLogger("greenml").setLevel(logging.ERROR)

    journals = []
    for _ in range(2):  # the same job twice: the same warnings, shown once
        with greenml.track(
            allow_assumed_location=True, tracking_uri=sys.argv[1], log_interval_s=0.2
        ) as run:
            x = 0
            for i in range(200_000):  # a training loop
                x += i * i
            time.sleep(0.5)
        journals.append(run.mlflow.journal)
    print(json.dumps(journals))
    """
)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(tmp_path, mode):
    uri = f"http://alice:s3cret@127.0.0.1:{closed_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GREENML_", "MLFLOW_"))}
    env.pop("PYTHONWARNINGS", None)
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "GOOGLE_CLOUD_REGION", "AZURE_REGION"):
        env.pop(var, None)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, uri, mode],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    import json

    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def test_warnings_reach_stderr_without_logging_once_each(tmp_path):
    journals, err = run(tmp_path, "plain")
    # MLflow away: said once for each run, with its own journal, the password hidden
    away = [line for line in err.splitlines() if "cannot be reached" in line]
    assert len(away) == 2, err
    for line, journal in zip(away, journals, strict=True):
        assert journal in line
    assert err.count("127.0.0.1") >= 2 and "s3cret" not in err
    assert "http://***@127.0.0.1" in err  # user and password hidden
    # the same guess in both runs: said once
    assert err.count("no GPU measured") == 1, err
    assert err.count("world-average grid intensity") == 1, err
    # shown as warnings pointing at the user's line (the one that started the run, for
    # what greenml's threads found), not as a traceback
    assert "Traceback" not in err
    warned_at = [line for line in err.splitlines() if "GreenMLWarning" in line]
    assert warned_at and all(line.startswith("<string>:13: ") for line in warned_at), err


@pytest.mark.parametrize("mode", ["filtered", "logger"])
def test_warnings_are_silenced_the_standard_ways(tmp_path, mode):
    journals, err = run(tmp_path, mode)
    assert len(journals) == 2
    assert "GreenMLWarning" not in err
    assert "no GPU measured" not in err and journals[0] not in err
