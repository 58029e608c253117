"""The queue: which queued run a worker takes next (`claim_next`), each queued run's place, and why it waits.

Owners are served round-robin: `queue_turns` records when each owner's queue was last served, and the owner
served longest ago goes first, each owner's own runs in the order queued. `claim_next` and `queue_positions` rank
owners with the same rule (`_turn_rank`), so the places a page shows are the order runs really start in. A claim
takes the write lock up front (BEGIN IMMEDIATE), so two workers, in two processes, never take the same run; it
takes a new lease (see engine.runs.store.runs) and fails a queued run whose record cannot be read (quarantine).
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import pandas as pd

from engine.records import RunRecord, RunStatus
from engine.runs.access import ClassLimits
from engine.runs.store.classes import class_limits, class_settings
from engine.runs.store.runs import RUN_SELECT, UnreadableRun, parse_run, run_record
from engine.runs.store.schema import StoreBase


class QueueMixin(StoreBase):
    """Claiming the next run in turn, queue places and waiting reasons."""

    def claim_next(self, worker_id: str, device: str) -> RunRecord | None:
        """Atomically take the next queued run for this worker, under a new lease (`run["lease"]`); None when no
        queued run may start. A queued run whose record cannot be read is failed with the reason and skipped.

        Owners are served round-robin (the owner served longest ago goes first; among owners never served, the one
        whose oldest run waited longest), each owner's own runs in the order queued: one student's 20 queued runs
        cannot starve the others. A student at the class's running limit waits, and while the teacher has paused
        the queue only the teacher's (and the local user's) runs start. With a single owner this is first come,
        first served."""
        with self._tx() as c:
            while True:
                row = _next_in_turn(c, class_limits(c), class_settings(c).get("queue_paused") == "1")
                if row is None:
                    return None
                try:
                    parse_run(dict(row))
                    break
                except UnreadableRun as exc:
                    c.execute(f"UPDATE runs SET status='{RunStatus.FAILED}', error=?, finished_at=? WHERE run_id=?",
                              (f"unreadable run record: {exc}"[:1000], time.time(), row["run_id"]))
            now = time.time()
            c.execute(f"UPDATE runs SET status='{RunStatus.RUNNING}', worker_id=?, device=?, started_at=COALESCE(started_at, ?), "
                      "heartbeat_at=?, error=NULL, finished_at=NULL, lease=lease+1 WHERE run_id=?",
                      (worker_id, device, now, now, row["run_id"]))
            c.execute("INSERT OR REPLACE INTO queue_turns(owner, served_at) VALUES (?, ?)", (_turn_key(row), now))
            claimed = c.execute(f"SELECT {RUN_SELECT} FROM runs WHERE run_id=?", (row["run_id"],)).fetchone()
        return run_record(claimed)

    def queue_positions(self) -> dict[str, int]:
        """run_id -> place in the queue (1 = next), in the round-robin order `claim_next` serves (class limits and a
        pause can still hold a run back: see `waiting_reason`)."""
        c = self.conn
        queued = c.execute(f"SELECT run_id, owner, owner_role, queued_at FROM runs WHERE status='{RunStatus.QUEUED}' "
                           "ORDER BY queued_at, rowid").fetchall()
        turns = {r["owner"]: r["served_at"] for r in c.execute("SELECT owner, served_at FROM queue_turns")}
        by_owner: dict[str, list] = {}
        for row in queued:
            by_owner.setdefault(_turn_key(row), []).append(row)
        owners = sorted(by_owner, key=lambda o: _turn_rank(turns, by_owner[o][0]))
        positions, place, depth = {}, 1, 0
        while any(depth < len(by_owner[o]) for o in owners):
            for owner in owners:
                if depth < len(by_owner[owner]):
                    positions[by_owner[owner][depth]["run_id"]] = place
                    place += 1
            depth += 1
        return positions

    def waiting_reason(self, run: RunRecord | pd.Series) -> str:
        """Why a queued run has not started yet, in a sentence for its owner: no worker can start (the failure the
        runner recorded, engine.runs.pool_health), the teacher paused the queue, the owner's running limit, or its
        place in the queue. Reads only the run's `run_id`, `owner` and `owner_role` (a listing's row will do)."""
        from engine.runs import pool_health

        failure = pool_health.current()
        if failure is not None and self.live_workers().empty:  # first: nothing else matters while no worker can start
            return f"No worker can take it: {failure.describe()}."
        settings, limits = class_settings(self.conn), class_limits(self.conn)
        if run.get("owner_role") == "student":
            if settings.get("queue_paused") == "1":
                return "The teacher has paused the queue: your run starts when they resume it."
            running = self.conn.execute(f"SELECT COUNT(*) FROM runs WHERE status='{RunStatus.RUNNING}' AND owner=? "
                                        "AND owner_role=?", (run["owner"], run["owner_role"])).fetchone()[0]
            if running >= limits.running:
                return (f"You have {running} run(s) training, the class limit at once; this one starts when one of "
                        "them ends.")
        place = self.queue_positions().get(run["run_id"])
        ahead = f"{place - 1} run(s) are ahead of it" if place and place > 1 else "it is next"
        return f"Every worker is busy; {ahead} (owners take turns, one run each)."


def _turn_key(row) -> str:
    return f"{row['owner_role']}:{row['owner']}"


def _turn_rank(turns: dict[str, float], first_queued) -> tuple[float, float]:
    """Which owner's turn comes first, by their oldest queued run: served longest ago (never = 0) first, then the
    one whose run has waited longest. `claim_next` and `queue_positions` share it, so the page's places are the
    order runs really start in."""
    return turns.get(_turn_key(first_queued), 0.0), first_queued["queued_at"]


def _next_in_turn(c: sqlite3.Connection, limits: ClassLimits, paused: bool):
    """The queued run `claim_next` takes: see there. None when nothing may start."""
    queued = c.execute(f"SELECT run_id, owner, owner_role, queued_at FROM runs WHERE status='{RunStatus.QUEUED}' "
                       "ORDER BY queued_at, rowid").fetchall()
    if not queued:
        return None
    running = {(r["owner"], r["owner_role"]): r["n"] for r in c.execute(
        f"SELECT owner, owner_role, COUNT(*) AS n FROM runs WHERE status='{RunStatus.RUNNING}' GROUP BY owner, owner_role")}
    turns = {r["owner"]: r["served_at"] for r in c.execute("SELECT owner, served_at FROM queue_turns")}
    first: dict[str, Any] = {}
    for row in queued:  # each owner's oldest queued run
        first.setdefault(_turn_key(row), row)
    eligible = [row for row in first.values()
                if row["owner_role"] != "student"
                or (not paused and running.get((row["owner"], row["owner_role"]), 0) < limits.running)]
    if not eligible:
        return None
    chosen = min(eligible, key=lambda r: _turn_rank(turns, r))
    return c.execute(f"SELECT {RUN_SELECT} FROM runs WHERE run_id=?", (chosen["run_id"],)).fetchone()
