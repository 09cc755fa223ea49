"""The sink protocol: what the recorder and ``greenml sync`` need of a place records go.

A :class:`Target` knows nothing of threads, the journal or retries: the recorder
(:mod:`greenml.sinks.recorder`) owns those and calls a target only from its own sender
thread, one call at a time. A new sink is one module here implementing this protocol, plus
a setting read in :mod:`greenml.sinks.setup`; the tracker does not change.

The journal keeps one set of ``sent`` marks per target, keyed by :attr:`Target.name`, so
each target gets every record exactly once (a replay sends with ``dedupe``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class Target(Protocol):
    """A place a run's journal records are delivered to (MLflow, a folder of files...).

    ``name`` is the journal's key for the target's ``sent`` marks (``"mlflow"``,
    ``"directory"``); ``label`` and ``uri`` (credentials redacted) name it in messages,
    ``where`` is the two together (``"MLflow at http://host:5000"``), ``unreachable_why``
    what :meth:`reachable` returning ``False`` means. ``run_id`` is the
    target's run once known (``ensure_run``), ``experiment_id`` its group of runs where the
    target has one.
    """

    name: str
    label: str
    unreachable_why: str  # what reachable() == False means, for the user

    @property
    def uri(self) -> str: ...

    @property
    def where(self) -> str: ...

    @property
    def run_id(self) -> str | None: ...

    @property
    def experiment_id(self) -> str | None: ...

    def reachable(self) -> bool:
        """Whether a send can be tried now (cheap: one connection, one ``mkdir``)."""
        ...

    def ensure_run(self, start: Mapping[str, Any], *, search: bool = True) -> dict[str, Any]:
        """Find or create the run the journal's records go to (``start`` is the journal's
        start record; ``search=False``: the run id is fresh, no store can have it). Returns
        what the journal's ``run`` line keeps for this target (``run_id``, where the
        records sit), written before any record is sent so a replay places them alike."""
        ...

    def send(self, record: Mapping[str, Any], *, dedupe: bool) -> list[str]:
        """Deliver one journal record (``metrics``, ``params`` or ``summary``). With
        ``dedupe`` (a replay, or a retry after a send that failed midway) what the target
        already has is not written twice. Returns notes for the user (said once each)."""
        ...

    def end(self, status: str, end_time_ms: int | None = None) -> None:
        """Mark a run that never sent its summary (its process was killed) as ended."""
        ...

    def refused(self, error: BaseException) -> bool:
        """Whether ``error`` says the target refused the record (sending it again cannot
        help), as opposed to not answering (the target is down: try again later)."""
        ...


def where_of(label: str, uri: str) -> str:
    """A target's name in messages: ``"<label> at <uri>"``."""
    return f"{label} at {uri}"
