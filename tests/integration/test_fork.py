"""A process forked inside a tracked block (a data-loader or pool worker, a bare
``os.fork()``) behaves as if greenml were not there: default SIGTERM handling, no greenml
thread, no journal write, no MLflow call, a clean exit. Only the process that started
the run measures and records it.

Each case runs as a real script with greenml's defaults (MLflow's local store and the
journal on) in a folder of its own, bounded by a timeout so that a hang fails the test
instead of stalling the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

POOL = textwrap.dedent(
    """
    import json, multiprocessing as mp, os, signal, threading, time
    import greenml

    def work(q):
        q.put({
            "pid": os.getpid(),
            "sigterm_default": signal.getsignal(signal.SIGTERM) is signal.SIG_DFL,
            "greenml_threads": [t.name for t in threading.enumerate() if "greenml" in t.name],
        })
        time.sleep(60)

    if __name__ == "__main__":
        ctx = mp.get_context("fork")
        with greenml.track(location="FR", log_interval_s=0.2) as run:
            q = ctx.Queue()
            ps = [ctx.Process(target=work, args=(q,)) for _ in range(2)]
            for p in ps:
                p.start()
            seen = [q.get(timeout=20) for _ in ps]
            time.sleep(0.6)  # the parent's recorder writes points while the children live
            t0 = time.monotonic()
            for p in ps:
                p.terminate()
            for p in ps:
                p.join(20)
            joined_s = time.monotonic() - t0
            codes = [p.exitcode for p in ps]
            for p in ps:
                if p.is_alive():
                    os.kill(p.pid, signal.SIGKILL)
        print(json.dumps({
            "parent": os.getpid(), "children": seen, "codes": codes, "joined_s": joined_s,
            "journal": run.mlflow.journal, "run_id": run.mlflow.run_id,
            "sigterm_restored": signal.getsignal(signal.SIGTERM) is signal.SIG_DFL,
        }))
    """
)

BARE = textwrap.dedent(
    """
    import json, os, signal, sys, time
    import greenml

    def reap(pid, limit_s=20.0):
        end = time.monotonic() + limit_s
        while time.monotonic() < end:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.02)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return "hung"

    with greenml.track(location="FR", log_interval_s=0.2) as outer:
        with greenml.track(location="FR", log_interval_s=0.2, run_name="inner") as inner:
            time.sleep(0.3)
            exiting = os.fork()
            if exiting == 0:  # leaves both with-blocks through SystemExit
                time.sleep(0.2)
                sys.exit(0)
            killed = os.fork()
            if killed == 0:  # terminated as a scheduler would
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(30)
                os._exit(7)
            t0 = time.monotonic()
            codes = [reap(exiting), reap(killed)]
            reaped_s = time.monotonic() - t0
            time.sleep(0.3)
    print(json.dumps({
        "parent": os.getpid(), "codes": codes, "reaped_s": reaped_s,
        "journals": [outer.mlflow.journal, inner.mlflow.journal],
        "run_ids": [outer.mlflow.run_id, inner.mlflow.run_id],
    }))
    """
)


def run_script(tmp_path, source):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GREENML_", "MLFLOW_"))}
    out = subprocess.run(
        [sys.executable, "-c", source],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def journal_records(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def check_journal_written_once_by(path, pid):
    records = journal_records(path)
    kinds = [r["t"] for r in records]
    assert kinds.count("start") == 1 and kinds.count("summary") == 1 and kinds.count("end") == 1
    assert records[0]["pid"] == pid
    seqs = [r["seq"] for r in records if "seq" in r]
    assert seqs == sorted(set(seqs)), "a record was written twice"
    assert kinds[-1] in ("end", "sent", "run")
    return records


def mlflow_status(tmp_path, run_id):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(run_id)
    return run.info.status, run.data.tags.get("greenml.status")


def test_terminated_pool_workers_exit_at_once_and_leave_the_run_alone(tmp_path):
    result, _ = run_script(tmp_path, POOL)
    assert result["codes"] == [-15, -15]  # killed by SIGTERM, as without greenml
    assert result["joined_s"] < 5.0
    for child in result["children"]:
        assert child["pid"] != result["parent"]
        assert child["sigterm_default"] is True
        assert child["greenml_threads"] == []
    assert result["sigterm_restored"] is True
    check_journal_written_once_by(result["journal"], result["parent"])
    assert mlflow_status(tmp_path, result["run_id"]) == ("FINISHED", "finished")


def test_bare_fork_child_exits_cleanly_and_sigterm_kills_it(tmp_path):
    result, _ = run_script(tmp_path, BARE)
    assert result["codes"] == [0, -15]
    assert result["reaped_s"] < 10.0
    for journal in result["journals"]:
        check_journal_written_once_by(journal, result["parent"])
    outer_id, inner_id = result["run_ids"]
    assert mlflow_status(tmp_path, outer_id) == ("FINISHED", "finished")
    assert mlflow_status(tmp_path, inner_id) == ("FINISHED", "finished")
