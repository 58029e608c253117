"""The queue: which queued run a worker takes next (`claim_next`), each queued run's place, and why it waits.

Owners are served round-robin: `queue_turns` records when each owner's queue was last served, and the owner
served longest ago goes first, each owner's own runs in the order queued. A lesson the teacher ran for the whole
class goes before every turn: the room is watching it (engine.runs.store.launches). `claim_next` and
`queue_positions` rank owners with the same rule (`_turn_rank`), so the places a page shows are the order runs
really start in. A claim takes the write lock up front (BEGIN IMMEDIATE), so two workers, in two processes, never take the same run; it
takes a new lease (see engine.runs.store.runs) and fails a queued run whose record cannot be read (quarantine).
A run started from another (`init_from`, engine.runs.lineage) waits while its source is queued or training, and is
failed with the reason when its source ended without finishing or was deleted: a lesson's fine-tuning runs are queued
with their pretraining and start once it is done.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import pandas as pd

from engine.records import ACTIVE, SUCCEEDED, RunRecord, RunStatus
from engine.runs.access import ClassLimits
from engine.runs.store.classes import JOIN_LAUNCH, UNIT, class_limits, class_settings, running_units
from engine.runs.store.runs import PACE_RESET, RUN_SELECT, UnreadableRun, parse_run, run_record
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
                    problem = _source_problem(c, parse_run(dict(row)))
                except UnreadableRun as exc:
                    problem = f"unreadable run record: {exc}"
                if problem is None:
                    break
                c.execute(f"UPDATE runs SET status='{RunStatus.FAILED}', error=?, finished_at=? WHERE run_id=?",
                          (problem[:1000], time.time(), row["run_id"]))
            now = time.time()
            c.execute(f"UPDATE runs SET status='{RunStatus.RUNNING}', worker_id=?, device=?, started_at=COALESCE(started_at, ?), "
                      f"claimed_at=?, heartbeat_at=?, error=NULL, finished_at=NULL, lease=lease+1, {PACE_RESET} "
                      "WHERE run_id=?",
                      (worker_id, device, now, now, now, row["run_id"]))
            c.execute("INSERT OR REPLACE INTO queue_turns(owner, served_at) VALUES (?, ?)", (_turn_key(row), now))
            claimed = c.execute(f"SELECT {RUN_SELECT} FROM runs WHERE run_id=?", (row["run_id"],)).fetchone()
        return run_record(claimed)

    def queue_positions(self) -> dict[str, int]:
        """run_id -> place in the queue (1 = next), in the round-robin order `claim_next` serves (class limits and a
        pause can still hold a run back: see `waiting_reason`)."""
        c = self.conn
        queued = _queued(c)
        turns = {r["owner"]: r["served_at"] for r in c.execute("SELECT owner, served_at FROM queue_turns")}
        positions, place = {}, 1
        for row in queued:  # the class's lesson first
            if row["for_class"]:
                positions[row["run_id"]] = place
                place += 1
        by_owner: dict[str, list] = {}
        for row in queued:
            if not row["for_class"]:
                by_owner.setdefault(_turn_key(row), []).append(row)
        owners = sorted(by_owner, key=lambda o: _turn_rank(turns, by_owner[o][0]))
        depth = 0
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
        place in the queue. Reads only the run's `run_id`, `owner_id` and `owner_role` (a listing's row will do)."""
        from engine.runs import pool_health

        failure = pool_health.current()
        if failure is not None and self.live_workers().empty:  # first: nothing else matters while no worker can start
            return f"No worker can take it: {failure.describe()}."
        settings, limits = class_settings(self.conn), class_limits(self.conn)
        source = self.conn.execute("SELECT s.name, s.status FROM runs r JOIN runs s ON s.run_id = " + _SOURCE_ID +
                                   " WHERE r.run_id=?", (run["run_id"],)).fetchone()
        if source is not None and source["status"] in ACTIVE:
            return (f"It starts from run {source['name']}, which is {source['status']}: it starts when that run "
                    "finishes.")
        if run.get("owner_role") == "student":
            if settings.get("queue_paused") == "1":
                return "The teacher has paused the queue: your run starts when they resume it."
            running = running_units(self.conn).get((run["owner_id"], run["owner_role"]), set())
            if len(running) >= limits.running and _unit_of(self.conn, run["run_id"]) not in running:
                return (f"You have {len(running)} run(s) or lesson(s) training, the class limit at once; this one "
                        "starts when one of them ends.")
        place = self.queue_positions().get(run["run_id"])
        ahead = f"{place - 1} run(s) are ahead of it" if place and place > 1 else "it is next"
        return f"Every worker is busy; {ahead} (owners take turns, one run each)."


# The source run id of a queued run `r` (its resolved init_from is RUN_ID:which; NULL for a run from random weights)
# (a damaged config that is not JSON reads as none: the claim quarantines it)
_INIT_FROM = "(CASE WHEN json_valid(r.config) THEN json_extract(r.config, '$.init_from') END)"
_SOURCE_ID = f"substr({_INIT_FROM}, 1, instr({_INIT_FROM} || ':', ':') - 1)"
_ACTIVE = ", ".join(f"'{status}'" for status in ACTIVE)


def _source_problem(c: sqlite3.Connection, config) -> str | None:
    """Why a run cannot start from its source (None when it can, or has none): the source was deleted or ended
    without finishing. Its config is a RunConfig (a script's run is never queued)."""
    from engine.runs.lineage import source_id

    source = source_id(getattr(config, "init_from", ""))
    if not source:
        return None
    row = c.execute("SELECT name, status FROM runs WHERE run_id=?", (source,)).fetchone()
    if row is None:
        return f"the run it starts from ({source}) was deleted"
    if row["status"] not in SUCCEEDED:
        return (f"the run it starts from, {row['name']}, ended {row['status'].replace('_', ' ')}: there are no "
                "finished weights to start from")
    return None


def _turn_key(row) -> str:
    """Whose turn a run waits in: its owner's member id in a class (two people who typed the same name are two
    owners), the owner's name for a local run."""
    return f"{row['owner_role']}:{row['owner_id'] or row['owner']}"


def _turn_rank(turns: dict[str, float], first_queued) -> tuple[float, float]:
    """Which owner's turn comes first, by their oldest queued run: served longest ago (never = 0) first, then the
    one whose run has waited longest. `claim_next` and `queue_positions` share it, so the page's places are the
    order runs really start in."""
    return turns.get(_turn_key(first_queued), 0.0), first_queued["queued_at"]


def _queued(c: sqlite3.Connection, *, startable: bool = False) -> list[sqlite3.Row]:
    """Every queued run in the order queued: id, owner (name, role, member id), time, its item for the class limits
    (`unit`) and whether it belongs to a lesson launched for the whole class. `startable`: without the runs whose
    source (init_from) is still queued or training (they wait, and keep their place)."""
    waiting = (f"LEFT JOIN runs s ON s.run_id = {_SOURCE_ID} WHERE (s.status IS NULL OR s.status NOT IN ({_ACTIVE})) "
               "AND" if startable else "WHERE")
    return c.execute(f"SELECT r.run_id, r.owner, r.owner_role, r.owner_id, r.queued_at, {UNIT} AS unit, "
                     f"COALESCE(l.for_class, 0) AS for_class FROM runs r {JOIN_LAUNCH} "
                     f"{waiting} r.status='{RunStatus.QUEUED}' ORDER BY r.queued_at, r.rowid").fetchall()


def _unit_of(c: sqlite3.Connection, run_id: str) -> str | None:
    row = c.execute(f"SELECT {UNIT} AS unit FROM runs r {JOIN_LAUNCH} WHERE r.run_id=?", (run_id,)).fetchone()
    return row["unit"] if row else None


def _next_in_turn(c: sqlite3.Connection, limits: ClassLimits, paused: bool):
    """The queued run `claim_next` takes: see there. None when nothing may start."""
    queued = _queued(c, startable=True)
    if not queued:
        return None
    running = running_units(c)

    def may_start(row) -> bool:
        if row["owner_role"] != "student":
            return True
        units = running.get((row["owner_id"], row["owner_role"]), set())
        return not paused and (row["unit"] in units or len(units) < limits.running)

    for row in queued:  # a lesson the whole class watches goes first (queued by the teacher: never held)
        if row["for_class"] and may_start(row):
            return c.execute(f"SELECT {RUN_SELECT} FROM runs WHERE run_id=?", (row["run_id"],)).fetchone()
    turns = {r["owner"]: r["served_at"] for r in c.execute("SELECT owner, served_at FROM queue_turns")}
    first: dict[str, Any] = {}
    for row in queued:  # each owner's oldest queued run that may start
        if _turn_key(row) not in first and may_start(row):
            first[_turn_key(row)] = row
    if not first:
        return None
    chosen = min(first.values(), key=lambda r: _turn_rank(turns, r))
    return c.execute(f"SELECT {RUN_SELECT} FROM runs WHERE run_id=?", (chosen["run_id"],)).fetchone()
