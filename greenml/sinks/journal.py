"""The local journal: every record bound for a sink (MLflow, the directory sink), written
down first.

One file per run, ``<journal_dir>/<greenml run id>.jsonl``, one JSON object a line,
append-only. Each flush ends with ``fsync``, so a crash (even SIGKILL) loses at most what
was gathered since the last flush. Records carry a sequence number ``seq``; once a target
has a record, a ``sent`` line naming the target and the ``seq`` is appended (nothing is
rewritten). ``greenml sync`` replays the records a target has no ``sent`` line for.

Record types (``"t"``):

``start``     the run: greenml run id, host, pid, wall-clock start, where it logs
              (``targets``: the sinks' names; ``mlflow``, ``tracking_uri``... for MLflow,
              ``sink_dir`` for the directory sink)
``run``       per ``target``: the run the records belong to (once it is known); for MLflow
              also ``block``, where this block sits in that run (number, first step, the
              run's totals before it): written before anything is sent to the target, so a
              replay sends the same values
``metrics``   one time-series point: ``ts`` (ms), ``step`` (and ``trainer_step``: true when the
              step is the trainer's, from ``Tracker.use_steps``), ``metrics`` {name: value}
``params``    params known at the start (the factors)
``summary``   the end: metrics, params, tags, footprint, time-series CSV, status
``sent``      ``seqs`` that a ``target`` has
``end``       the run's status, written when the process (or sync) ends it

A ``sent`` or ``run`` line without a ``target`` (journals written before sinks had names)
is MLflow's.

Journals hold a run's figures and where it logs: the folders greenml creates for them are
user-only (0700) and each journal file is created user-only (0600), whatever the umask.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUFFIX = ".jsonl"
SEQ_TYPES = ("metrics", "params", "summary")  # the records sync replays
LEGACY_TARGET = "mlflow"  # the target of sent and run lines that name none


class Journal:
    """An append-only journal file for one run. Thread-safe."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        private_folder(self.path.parent)
        self._lock = threading.Lock()
        self._seq = 0
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")
        if _torn(self.path):  # a crash left half a line: what follows starts a line of its own
            self._file.write("\n")

    def disown(self) -> None:
        """In a process forked from the journal's writer: point the inherited file at
        /dev/null, so that this process's exit cannot write the writer's unflushed bytes a
        second time. Takes no lock (a thread of the writer may have held it at the fork)."""
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._file.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # pragma: no cover - a closed or odd handle
            pass

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        """Write a record (not yet synced to disk). Records of a replayed type get the
        next ``seq``; the record as written is returned."""
        with self._lock:
            if record.get("t") in SEQ_TYPES:
                self._seq += 1
                record = {**record, "seq": self._seq}
            self._file.write(json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n")
        return record

    def flush(self) -> None:
        """Push what was appended to the disk (write + fsync)."""
        with self._lock:
            if self._file.closed:
                return
            self._file.flush()
            os.fsync(self._file.fileno())

    def mark_sent(self, seqs: Iterable[int], target: str = LEGACY_TARGET) -> None:
        """Record that ``target`` has the records ``seqs`` (on disk before it returns)."""
        seqs = sorted(seqs)
        if seqs:
            self.append({"t": "sent", "target": target, "seqs": seqs})
            self.flush()

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()


class MemoryJournal:
    """The journal's interface without a file (``journal=False``): records live only
    as long as the process."""

    path = None

    def disown(self) -> None:
        """Nothing to disown: no file."""

    def __init__(self) -> None:
        self._seq = 0
        self._lock = threading.Lock()

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if record.get("t") in SEQ_TYPES:
                self._seq += 1
                record = {**record, "seq": self._seq}
        return record

    def flush(self) -> None:
        pass

    def mark_sent(self, seqs: Iterable[int], target: str = LEGACY_TARGET) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class JournalContents:
    """A journal file as read back: good records in order, and the lines skipped."""

    path: Path
    start: dict[str, Any] | None = None
    run_id: str | None = None  # the MLflow run, once known
    block: dict[str, Any] | None = None  # where the records sit in that run, if recorded
    tracking_uri: str | None = None
    records: list[dict[str, Any]] = field(default_factory=list)  # metrics/params/summary
    sent_to: dict[str, set[int]] = field(default_factory=dict)  # target -> seqs it has
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # target -> its run line
    end: dict[str, Any] | None = None
    bad_lines: list[tuple[int, str]] = field(default_factory=list)  # (line number, why)

    @property
    def sent(self) -> set[int]:
        """The seqs MLflow has."""
        return self.sent_to.get(LEGACY_TARGET, set())

    @property
    def unsent(self) -> list[dict[str, Any]]:
        """The records MLflow does not have."""
        return self.unsent_to(LEGACY_TARGET)

    def unsent_to(self, target: str) -> list[dict[str, Any]]:
        """The records ``target`` does not have."""
        sent = self.sent_to.get(target, set())
        return [r for r in self.records if r["seq"] not in sent]

    @property
    def summary(self) -> dict[str, Any] | None:
        return next((r for r in reversed(self.records) if r["t"] == "summary"), None)

    @property
    def greenml_run_id(self) -> str:
        return str((self.start or {}).get("greenml_run_id") or self.path.stem)


def read(path: str | os.PathLike[str]) -> JournalContents:
    """Read a journal, keeping every good line. A line that is not a complete JSON
    record (a crash can truncate the last one) is skipped and reported by number."""
    out = JournalContents(Path(path))
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as e:
                out.bad_lines.append((number, f"not valid JSON ({e.msg})"))
                continue
            kind = rec.get("t") if isinstance(rec, dict) else None
            if kind == "start":
                out.start = rec
                out.run_id = rec.get("run_id") or out.run_id
                out.tracking_uri = rec.get("tracking_uri")
            elif kind == "run" and isinstance(rec.get("run_id"), str):
                target = str(rec.get("target") or LEGACY_TARGET)
                out.runs[target] = rec
                if target == LEGACY_TARGET:
                    out.run_id = rec["run_id"]
                    block = rec.get("block")
                    out.block = block if isinstance(block, dict) else None
            elif kind in SEQ_TYPES and isinstance(rec.get("seq"), int):
                out.records.append(rec)
            elif kind == "sent" and isinstance(rec.get("seqs"), list):
                seqs = out.sent_to.setdefault(str(rec.get("target") or LEGACY_TARGET), set())
                seqs.update(s for s in rec["seqs"] if isinstance(s, int))
            elif kind == "end":
                out.end = rec
            else:
                out.bad_lines.append((number, f"not a journal record: {line.strip()[:60]!r}"))
    return out


def _torn(path: Path) -> bool:
    """Whether the file's last byte is not a newline (a write cut short by a crash)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return False
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
    except OSError:
        return False


def private_folder(folder: Path) -> None:
    """Create ``folder`` and any missing parent user-only (0700). A folder that already
    exists keeps its mode (it may be the user's, shared on purpose)."""
    missing = []
    for d in (folder, *folder.parents):
        if d.exists():
            break
        missing.append(d)
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            continue  # another process made it meanwhile
        os.chmod(d, 0o700)  # mkdir's mode is masked by the umask


def journal_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The journal files in ``folder``, oldest first."""
    d = Path(folder)
    if not d.is_dir():
        return []
    return sorted(d.glob(f"*{SUFFIX}"), key=lambda p: (p.stat().st_mtime, p.name))
