"""Changing a run's course: cancel (one run, or every run for the teacher), resume from the last checkpoint, delete.

Each change runs in one write transaction that first checks who asks (`actor=`, engine.runs.access): a student may
change only their own runs, the teacher and the local user every run, so the rule holds whoever calls, a page, a
forged request or the CLI. `actor=None` is the local user. A cancelled running run is asked to stop
(`cancel_requested`); its worker reads the request with its heartbeat (engine.runs.store.workers).
"""

from __future__ import annotations

import sqlite3
import time

from engine.classroom import Actor
from engine.records import DELETABLE, RESUMABLE, SCRIPT_INFO, RunKind, RunStatus
from engine.runs.access import check_may_act, check_may_teach, check_queue_room
from engine.runs.store.classes import class_limits, queued_of
from engine.runs.store.schema import StoreBase


class ControlMixin(StoreBase):
    """Cancel, resume and delete, under the access rules."""

    def request_cancel(self, run_id: str, actor: Actor | None = None) -> str:
        """Cancel a queued run at once, or ask a running one to stop; returns the resulting status.
        PermissionDenied when `actor` may not (a student and another's run)."""
        with self._tx() as c:
            status = _status_in_tx(c, run_id, actor, "cancel")
            if status == RunStatus.QUEUED:
                c.execute("UPDATE runs SET status=?, finished_at=? WHERE run_id=?",
                          (RunStatus.CANCELLED, time.time(), run_id))
                return RunStatus.CANCELLED
            if status == RunStatus.RUNNING:
                _check_script_cancellable(c, run_id)
                c.execute("UPDATE runs SET cancel_requested=1 WHERE run_id=?", (run_id,))
            return status

    def cancel_requested(self, run_id: str) -> bool:
        row = self.conn.execute("SELECT cancel_requested FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return bool(row and row["cancel_requested"])

    def resume_run(self, run_id: str, actor: Actor | None = None) -> None:
        """Re-queue an interrupted/cancelled/failed run to continue from its last checkpoint (PermissionDenied when
        `actor` may not; CapReached when a student's queue is full)."""
        with self._tx() as c:
            status = _status_in_tx(c, run_id, actor, "resume")
            if status not in RESUMABLE:
                raise ValueError(f"run {run_id} is {status}; only {', '.join(RESUMABLE)} runs can be resumed")
            if _kind_in_tx(c, run_id) == RunKind.SCRIPT:
                raise ValueError(f"run {run_id} was trained by a script, not by TrainLens's workers: run the script "
                                 "again to train it anew")
            if actor is not None and actor.is_student:
                check_queue_room(actor, class_limits(c), queued_of(c, actor))
            c.execute(f"UPDATE runs SET status='{RunStatus.QUEUED}', resume_from='last', cancel_requested=0, error=NULL, "
                      "finished_at=NULL, worker_id=NULL, queued_at=? WHERE run_id=?", (time.time(), run_id))

    def delete_run(self, run_id: str, actor: Actor | None = None) -> None:
        """Delete a run's rows (the caller removes its checkpoint folder). Running runs must be cancelled first.
        PermissionDenied when `actor` may not."""
        with self._tx() as c:
            status = _status_in_tx(c, run_id, actor, "delete")
            if status not in DELETABLE:
                raise ValueError(f"run {run_id} is running; cancel it before deleting it")
            for table in ("metrics", "checkpoints", "artifacts", "runs"):
                c.execute(f"DELETE FROM {table} WHERE run_id=?", (run_id,))

    def cancel_all(self, actor: Actor | None = None) -> int:
        """Cancel every queued run and ask every running one to stop (teacher only); returns how many."""
        check_may_teach(actor, "cancel every run")
        with self._tx() as c:
            queued = c.execute(f"UPDATE runs SET status='{RunStatus.CANCELLED}', finished_at=? "
                               f"WHERE status='{RunStatus.QUEUED}'", (time.time(),)).rowcount
            running = c.execute(f"UPDATE runs SET cancel_requested=1 WHERE status='{RunStatus.RUNNING}'").rowcount
        return queued + running


def _status_in_tx(c: sqlite3.Connection, run_id: str, actor: Actor | None = None, what: str = "change") -> str:
    """A run's status read inside a write transaction, after checking that `actor` may `what` it (PermissionDenied);
    KeyError when there is no such run."""
    row = c.execute("SELECT status, owner, owner_role, owner_id FROM runs WHERE run_id=?", (run_id,)).fetchone()
    if row is None:
        raise KeyError(f"no run {run_id}")
    check_may_act(actor, run_id, row["owner_id"], row["owner_role"], what, owner=row["owner"])
    return row["status"]


def _kind_in_tx(c: sqlite3.Connection, run_id: str) -> str | None:
    row = c.execute("SELECT kind FROM runs WHERE run_id=?", (run_id,)).fetchone()
    return row["kind"] if row else None


def _check_script_cancellable(c: sqlite3.Connection, run_id: str) -> None:
    """ValueError for a script run whose script opted out of cancels (`trainlens.init(cancellable=False)`): the
    request would never be honoured, so it is refused with what to do instead."""
    if _kind_in_tx(c, run_id) != RunKind.SCRIPT:
        return
    row = c.execute("SELECT json_extract(value, '$.cancellable') AS cancellable FROM artifacts WHERE run_id=? AND "
                    "name=?", (run_id, SCRIPT_INFO)).fetchone()
    if row is not None and row["cancellable"] == 0:
        raise ValueError(f"run {run_id}'s script asked not to be stopped from the dashboard "
                         "(cancellable=False); stop the script itself (Ctrl-C) where it runs")
