"""``greenml sync``: replay journal records that MLflow does not have.

For each journal file: check that its store accepts a connection (a store that is down is
reported at once, its journals left as they are, rather than after MLflow's minutes of
retries); find the MLflow run (the one recorded in the journal if the store has it, else
the run tagged with the journal's greenml run id, else a new one); place the records in it
as the journal recorded (a block attached to a run after other greenml blocks continues
their steps and totals); send every record without a ``sent`` mark, skipping metric points
the run already has (so a second sync, or a sync after a send whose answer was lost,
duplicates nothing), and mark them sent. A run whose process died without a summary
(SIGKILL, power loss) is ended as ``KILLED`` with the figures of its last recorded point.

The journal's ``sent`` marks are per target: what counts here is MLflow's. A run that also
had the directory sink, whose folder could not be written for part of the run, gets the
records the folder missed written there first (and marked as the folder's).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from greenml.errors import scrub
from greenml.schema import Block
from greenml.sinks import journal as jr
from greenml.sinks.directory import DirectoryTarget
from greenml.sinks.mlflow import (
    MlflowTarget,
    absolute_uri,
    default_tracking_uri,
    reachable,
    redact_uri,
)


@dataclass
class SyncResult:
    """What sync did with one journal file."""

    path: Path
    greenml_run_id: str
    run_id: str | None = None
    tracking_uri: str | None = None
    sent: int = 0  # records sent now
    already: int = 0  # records that were marked sent before
    ended_killed: bool = False
    skipped: str | None = None  # why nothing was done
    error: str | None = None
    unreachable: bool = False  # the store did not accept a connection: nothing was tried
    refused: bool = False  # not a journal sync can read: left as it was, sync fails
    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # params the run already had, kept
    folder: str | None = None  # the directory sink's folder, if records were written there
    folder_sent: int = 0  # records written there now
    folder_error: str | None = None  # the folder could not be written
    # the store answered that it has the run (asked for a journal with everything marked
    # sent; true after a send that went through): what pruning needs before removing it
    confirmed: bool = False
    unconfirmed: str | None = None  # why the store could not be asked


def sync_all(
    journal_dir: str | os.PathLike[str],
    *,
    tracking_uri: str | None = None,
    include_local: bool = False,
) -> list[SyncResult]:
    """Sync every journal in ``journal_dir`` (see :func:`sync_file`). A store found
    down is not tried again for the journals after it."""
    down: set[str] = set()
    return [
        sync_file(p, tracking_uri=tracking_uri, include_local=include_local, down=down)
        for p in jr.journal_files(journal_dir)
    ]


def sync_file(
    path: str | os.PathLike[str],
    *,
    tracking_uri: str | None = None,
    include_local: bool = False,
    down: set[str] | None = None,
) -> SyncResult:
    """Replay one journal into MLflow. ``tracking_uri`` overrides the store the run
    was logging to; ``include_local`` also sends runs recorded with
    ``log_to_mlflow=False``. Errors are reported in the result, never raised.

    Before any MLflow call the store must accept a TCP connection (see
    :func:`~greenml.sinks.mlflow.reachable`); if it does not, the journal is left as it
    was and the result says so (``unreachable``). ``down`` holds the stores already found
    down in this sync: they are not tried again, and one found down is added."""
    contents = jr.read(path)
    result = SyncResult(Path(path), contents.greenml_run_id, bad_lines=contents.bad_lines)
    start = contents.start
    result.already = sum(1 for r in contents.records if r["seq"] in contents.sent)
    if start is None:
        result.refused = True
        result.skipped = (
            "no start record (not a greenml journal, or its first line is lost): nothing "
            "can be sent from it; it is left as it was"
        )
        return result
    _fill_folder(contents, result)
    if not start.get("mlflow", True) and not include_local:
        result.skipped = "recorded with log_to_mlflow=False (use --include-local to send it)"
        return result
    unsent = contents.unsent
    needs_end = contents.end is None and contents.summary is None
    if needs_end and _still_running(start):
        result.skipped = f"its process (pid {start.get('pid')}) is still running"
        return result
    uri = tracking_uri or _journal_uri(start)
    if not unsent and not needs_end:
        result.run_id = contents.run_id
        if not _store_lost_run(result, uri, down):
            return result
        # marked sent, but the store answers that it does not have the run (restarted
        # on an empty backend, or --tracking-uri names another store): sent again below
    if uri is None:
        result.skipped = (
            "the journal's tracking URI had credentials (not stored); give --tracking-uri"
        )
        return result
    uri = absolute_uri(uri)
    result.tracking_uri = redact_uri(uri)
    if _down(uri, down):
        result.unreachable = True
        result.error = (
            f"MLflow at {result.tracking_uri} cannot be reached (it does not accept "
            f"connections); nothing was sent, the journal {result.path} is left as it was: "
            "run `greenml sync` again once the store is up"
        )
        return result
    target = MlflowTarget(
        uri,
        experiment=start.get("experiment"),
        run_name=start.get("run_name"),
        run_id=contents.run_id,
        owns_run=bool(start.get("owns_run", True)),
        node=start.get("mlflow_node") or None,  # type: ignore[arg-type]
    )
    journal = jr.Journal(path)
    try:
        recorded = None  # where the journal placed its records in the run, if it did
        if contents.block is not None:
            recorded = Block.from_record(contents.block)
        elif contents.sent:
            recorded = Block()  # an older journal, partly sent as a run's only block
        known = target.run_id
        placed = target.ensure_run(start, block=recorded)
        run_id = result.run_id = target.run_id
        if known is not None and run_id != known:
            # The journal's run is not in this store (it was restarted empty, or this is
            # another store): what was sent went to a run that is gone. Everything goes
            # to the new one (sent with dedupe: nothing is doubled).
            unsent = list(contents.records)
            result.notes.append(
                f"run {known} is not in {result.tracking_uri}: all {len(unsent)} record(s) "
                f"are sent to run {run_id}"
            )
        if run_id != known or recorded is None:
            # on disk before anything is sent, so a later replay places the records alike
            journal.append({"t": "run", "target": target.name, **placed, "by": "sync"})
            journal.flush()
        sent: list[int] = []
        try:
            for rec in unsent:
                result.notes.extend(target.send(rec, dedupe=True))
                sent.append(rec["seq"])
        finally:
            journal.mark_sent(sent, target.name)
            result.sent = len(sent)
        if needs_end:
            last = max((r["ts"] for r in contents.records if "ts" in r), default=None)
            target.end("KILLED", last)
            journal.append({"t": "end", "status": "KILLED", "by": "sync", "ts": last})
            result.ended_killed = True
        result.confirmed = True
    except Exception as e:
        result.error = _first_line(e)
    finally:
        journal.close()
    return result


def _first_line(e: Exception) -> str:
    """An error's first line, credentials scrubbed (its type's name if it says nothing)."""
    return scrub(str(e).splitlines()[0]) if str(e) else type(e).__name__


def _down(uri: str, down: set[str] | None) -> bool:
    """Whether the store at ``uri`` is down: found so earlier in this sync (``down``), or
    refusing a connection now (then added to ``down``)."""
    if down is not None and uri in down:
        return True
    if reachable(uri):
        return False
    if down is not None:
        down.add(uri)
    return True


def _store_lost_run(result: SyncResult, uri: str | None, down: set[str] | None) -> bool:
    """For a journal with everything marked sent: whether its store answers that it does
    not have the run (then everything is sent again). Sets ``result.confirmed`` when the
    store has it, ``result.unconfirmed`` (why) when it could not be asked."""
    run_id = result.run_id
    if run_id is None:
        result.unconfirmed = "the journal names no MLflow run"
        return False
    if uri is None:
        result.unconfirmed = (
            "the journal's tracking URI had credentials (not stored): give --tracking-uri "
            f"to confirm the store has run {run_id}"
        )
        return False
    uri = absolute_uri(uri)
    shown = redact_uri(uri)
    if _down(uri, down):
        result.unconfirmed = f"MLflow at {shown} cannot be reached to confirm it has run {run_id}"
        return False
    try:
        exists = MlflowTarget(uri, run_id=run_id).run_exists(run_id)
    except Exception as e:
        result.unconfirmed = (
            f"MLflow at {shown} could not be asked for run {run_id}: {_first_line(e)}"
        )
        return False
    result.confirmed = exists
    return not exists


def _fill_folder(contents: jr.JournalContents, result: SyncResult) -> None:
    """Write the records the directory sink has no ``sent`` mark for (its folder could
    not be written during the run) and mark them; a journal without the directory sink,
    or with nothing missing, is not touched. A run still going is left to its process."""
    start = contents.start or {}
    folder = start.get("sink_dir")
    name = DirectoryTarget.name
    unsent = contents.unsent_to(name)
    if name not in (start.get("targets") or ()) or not isinstance(folder, str) or not unsent:
        return
    if contents.end is None and _still_running(start):
        return
    target = DirectoryTarget(folder)
    result.folder = target.uri
    if not target.reachable():
        result.folder_error = f"{target.where} cannot be reached ({target.unreachable_why})"
        return
    journal = jr.Journal(contents.path)
    sent: list[int] = []
    try:
        placed = target.ensure_run(start, search=True)
        if name not in contents.runs:
            journal.append({"t": "run", "target": name, **placed, "by": "sync"})
            journal.flush()
        for rec in unsent:
            target.send(rec, dedupe=True)
            sent.append(rec["seq"])
        if contents.end is None and contents.summary is None:
            target.end("KILLED")
    except Exception as e:
        result.folder_error = _first_line(e)
    finally:
        journal.mark_sent(sent, name)
        journal.close()
        result.folder_sent = len(sent)


def _journal_uri(start: dict[str, object]) -> str | None:
    uri = start.get("tracking_uri")
    if start.get("credentials_redacted"):
        return None
    if isinstance(uri, str) and uri:
        return uri
    return default_tracking_uri(None)


def _still_running(start: dict[str, object]) -> bool:
    """Whether the journal's process is alive (only knowable on its own host)."""
    pid = start.get("pid")
    if start.get("node") != socket.gethostname() or not isinstance(pid, int):
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _not_zombie(pid)


def _not_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


#: ``greenml sync`` removes journals that are fully delivered and older than this (by the
#: file's last write); ``--prune`` removes every fully delivered one, ``--keep`` none.
PRUNE_AFTER_DAYS = 30


def undelivered(contents: jr.JournalContents) -> str | None:
    """Why a journal must be kept (something not delivered, or not known to be), or None
    when every record is with every target it was meant for and the run has ended."""
    start = contents.start
    if start is None:
        return "no start record: not known what it holds"
    if contents.bad_lines:
        return f"{len(contents.bad_lines)} line(s) could not be read"
    targets = [str(t) for t in start.get("targets") or []]
    if not start.get("mlflow", True) or not targets:
        return "recorded with log_to_mlflow=False: the journal is the run's only record"
    for target in targets:
        missing = len(contents.unsent_to(target))
        if missing:
            return f"{missing} record(s) not yet with {target}"
    if contents.end is None and contents.summary is None:
        if _still_running(start):
            return f"its process (pid {start.get('pid')}) is still running"
        return "the run has no end (run greenml sync to end it)"
    return None


@dataclass
class Pruned:
    """What pruning did with one journal."""

    path: Path
    removed: bool
    why: str  # the reason it was kept, or "delivered"


def prune(
    journal_dir: str | os.PathLike[str],
    synced: Sequence[SyncResult],
    *,
    older_than_days: float | None = PRUNE_AFTER_DAYS,
) -> list[Pruned]:
    """Remove the journals in ``journal_dir`` that are fully delivered (see
    :func:`undelivered`), whose store confirmed in this sync that it has their run (the
    ``confirmed`` of their result in ``synced``), and were last written more than
    ``older_than_days`` ago (None: whatever their age). A journal with anything unsent,
    or whose run the store did not confirm, is never removed: the marks in a journal say
    what was sent, not that the store still has it."""
    import time

    out = []
    now = time.time()
    results = {r.path.resolve(): r for r in synced}
    for path in jr.journal_files(journal_dir):
        why = undelivered(jr.read(path))
        result = results.get(path.resolve())
        if why is None and (result is None or not result.confirmed):
            why = (
                result.unconfirmed
                if result is not None and result.unconfirmed
                else "not synced in this run: not known that the store has it"
            )
        if why is None and older_than_days is not None:
            age_days = (now - path.stat().st_mtime) / 86400.0
            if age_days <= older_than_days:
                why = (
                    f"delivered, kept for {older_than_days:g} days "
                    f"(last written {age_days:.1f} days ago)"
                )
        if why is not None:
            out.append(Pruned(path, False, why))
            continue
        path.unlink()
        out.append(Pruned(path, True, "delivered"))
    return out
