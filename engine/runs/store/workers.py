"""Workers in the store: registering, heartbeats (which also carry stop and cancel requests and the lease check,
and stop students' runs over the class's time limit), the live workers, and reaping the ones that died.

A worker heartbeats every second. `reap` marks a worker dead when its process is gone, or when its heartbeat is
stale and its process cannot be checked or is frozen, and marks its running runs interrupted with the reason
(resumable from their last checkpoint); it also marks the runs of scripts that stopped without finishing
interrupted (engine.runs.store.scripts says when). Run reads reap too (`reap_if_due`, throttled, never
raising), so whoever reads a run's status sees the truth within seconds of its worker's death, even when every
worker died and no one runs the dashboard or the CLI.
"""

from __future__ import annotations

import os
import sqlite3
import time

import pandas as pd

from engine.records import RunStatus
from engine.runs.procs import pid_alive, pulse_age
from engine.runs.store.classes import class_limits
from engine.runs.store.schema import StoreBase


class WorkersMixin(StoreBase):
    """Worker registration, heartbeats, live workers and reaping."""

    # a worker heartbeats every second; this long without one (with no process to check) means it is gone
    STALE_AFTER_S = float(os.environ.get("TRAINLENS_STALE_AFTER_S", "6"))  # an operator may lengthen it (slow disks)
    # Reads reap (see reap_if_due) at most this often per Store object: the dashboard reads many times a second.
    READ_REAP_EVERY_S = 2.0
    # How long a read waits for the write lock to reap before giving up until its next turn: a read must not
    # hang on a busy store for the 30 s a writer waits.
    READ_REAP_LOCK_WAIT_MS = 2000
    _read_reaped_at = float("-inf")  # set on the instance by its first reap_if_due

    def register_worker(self, worker_id: str, pid: int, host: str, device: str) -> None:
        now = time.time()
        # an upsert, not INSERT OR REPLACE: the runner registers a starting worker first, and a stop requested
        # while it was starting must survive its own registration
        self.conn.execute("INSERT INTO workers(worker_id, pid, host, device, started_at, heartbeat_at, status) "
                          "VALUES (?,?,?,?,?,?, 'idle') ON CONFLICT(worker_id) DO UPDATE SET pid=excluded.pid, "
                          "host=excluded.host, device=excluded.device, heartbeat_at=excluded.heartbeat_at, status='idle'",
                          (worker_id, pid, host, device, now, now))

    def heartbeat(self, worker_id: str, status: str, run_id: str | None, lease: int | None = None) -> dict[str, bool]:
        """One heartbeat transaction: {"stop": the worker must stop, "cancel": its run's cancel was requested,
        "lease_lost": its run (claimed under `lease`) is no longer its own}."""
        now = time.time()
        with self._tx() as c:
            c.execute("UPDATE workers SET heartbeat_at=?, status=?, run_id=? WHERE worker_id=? AND status!='dead'",
                      (now, status, run_id, worker_id))
            stop_overtime(c, now)
            owned = cancel = False
            if run_id:
                owned = c.execute(f"UPDATE runs SET heartbeat_at=? WHERE run_id=? AND status='{RunStatus.RUNNING}'"
                                  + ("" if lease is None else " AND lease=?"),
                                  (now, run_id) + (() if lease is None else (lease,))).rowcount == 1
                row = c.execute("SELECT cancel_requested FROM runs WHERE run_id=?", (run_id,)).fetchone()
                cancel = bool(row and row["cancel_requested"])
            row = c.execute("SELECT stop_requested, status FROM workers WHERE worker_id=?", (worker_id,)).fetchone()
        return {"stop": bool(row is None or row["stop_requested"] or row["status"] == "dead"), "cancel": cancel,
                "lease_lost": bool(run_id) and not owned}

    def live_workers(self) -> pd.DataFrame:
        cursor = self.conn.execute("SELECT * FROM workers WHERE status IN ('idle', 'busy') ORDER BY started_at")
        return pd.DataFrame([dict(r) for r in cursor],
                            columns=["worker_id", "pid", "host", "device", "started_at", "heartbeat_at", "status",
                                     "run_id", "stop_requested"])

    def mark_worker(self, worker_id: str, status: str) -> None:
        self.conn.execute("UPDATE workers SET status=? WHERE worker_id=?", (status, worker_id))

    def request_worker_stop(self, worker_id: str | None = None) -> None:
        if worker_id is None:
            self.conn.execute("UPDATE workers SET stop_requested=1 WHERE status IN ('idle', 'busy')")
        else:
            self.conn.execute("UPDATE workers SET stop_requested=1 WHERE worker_id=?", (worker_id,))

    def reap(self, stale_after_s: float | None = None, is_alive=None) -> list[str]:
        """Mark workers that stopped heartbeating (or whose process is gone) dead, and their runs interrupted.

        `stale_after_s` defaults to STALE_AFTER_S as it is when called (an operator's or a test's setting), the
        limit `reap_if_due` decides with. `is_alive(pid, host) -> bool | None` lets the caller check processes on
        its own host at once instead of waiting for the heartbeat to go stale. Returns the run ids that were
        interrupted.
        """
        if stale_after_s is None:
            stale_after_s = self.STALE_AFTER_S
        now = time.time()
        interrupted: list[str] = []
        with self._tx() as c:
            for worker in c.execute("SELECT * FROM workers WHERE status IN ('idle', 'busy')").fetchall():
                alive = is_alive(worker["pid"], worker["host"]) if is_alive else None
                if _worker_lost(worker["heartbeat_at"], alive, now, stale_after_s, pulse_age(worker["worker_id"], now)):
                    c.execute("UPDATE workers SET status='dead' WHERE worker_id=?", (worker["worker_id"],))
                    for run in c.execute(f"SELECT run_id, step FROM runs WHERE worker_id=? AND status='{RunStatus.RUNNING}'",
                                         (worker["worker_id"],)).fetchall():
                        reason = (f"worker process {worker['pid']} on {worker['host']} stopped responding at step "
                                  f"{run['step']} (killed or out of memory); resume the run to continue from its last checkpoint")
                        c.execute(f"UPDATE runs SET status='{RunStatus.INTERRUPTED}', error=?, finished_at=? WHERE run_id=?",
                                  (reason, now, run["run_id"]))
                        interrupted.append(run["run_id"])
            interrupted += self.reap_scripts(c, now)  # type: ignore[attr-defined]  # ScriptsMixin
        return interrupted

    def reap_if_due(self) -> list[str]:
        """`reap` for readers: at most once every READ_REAP_EVERY_S seconds per Store object, never raising.

        Run reads (`get_run`, `list_runs`) call it, so whoever reads a run's status (`show`, `runs`, a page,
        a script) sees a killed worker's run as interrupted within seconds, even when every worker died and no
        one runs the dashboard, `workers` or `train`. The write lock is taken only when a worker really is lost,
        so healthy reads stay plain reads; a busy store skips this reap (a later read retries) instead of
        failing or stalling the read. Returns the run ids that were interrupted.
        """
        clock = time.monotonic()
        if clock - self._read_reaped_at < self.READ_REAP_EVERY_S:
            return []
        self._read_reaped_at = clock
        conn = self.conn
        try:
            now = time.time()
            workers = conn.execute("SELECT worker_id, pid, host, heartbeat_at FROM workers WHERE status IN ('idle', 'busy')")
            if not any(_worker_lost(w["heartbeat_at"], pid_alive(w["pid"], w["host"]), now, self.STALE_AFTER_S,
                                    pulse_age(w["worker_id"], now))
                       for w in workers.fetchall()) and not self.scripts_lost(now):  # type: ignore[attr-defined]
                return []
            lock_wait_ms = conn.execute("PRAGMA busy_timeout").fetchone()[0]
            conn.execute(f"PRAGMA busy_timeout={int(self.READ_REAP_LOCK_WAIT_MS)}")
            try:
                return self.reap(is_alive=pid_alive)
            finally:
                conn.execute(f"PRAGMA busy_timeout={int(lock_wait_ms)}")
        except sqlite3.OperationalError:  # "database is locked" (or a transaction already open on this connection)
            return []
        except sqlite3.DatabaseError:  # a full disk or a damaged file: the read that follows reports it
            return []


def stop_overtime(c: sqlite3.Connection, now: float) -> int:
    """Inside a write transaction: ask every student's run that has trained longer than the class limit (minutes
    since its latest claim) to stop, with the reason as its error (its final `cancelled` keeps it: see
    RunsMixin.update_status). Every heartbeat runs it, a local worker's or the Ray dispatcher's, so a run over the
    limit stops within a second or two wherever it trains. Returns how many were asked."""
    minutes = class_limits(c).minutes
    reason = (f"stopped after {minutes} minutes of training, the class limit per run; resume it to continue from "
              "its last checkpoint (or ask the teacher to raise the limit)")
    return c.execute(f"UPDATE runs SET cancel_requested=1, error=? WHERE status='{RunStatus.RUNNING}' "
                     "AND owner_role='student' AND cancel_requested=0 AND claimed_at < ?",
                     (reason, now - minutes * 60)).rowcount


def _worker_lost(heartbeat_at: float, alive: bool | None, now: float, stale_after_s: float,
                 pulse_age_s: float | None = None) -> bool:
    """A worker is lost when its process is gone, or its heartbeat is stale and its process cannot be checked
    (another host). A live local process whose heartbeat stopped counts as lost once its pulse (a file its own
    thread touches every second, see engine.runs.procs) stopped too: a frozen process. With no pulse to look at,
    a heartbeat silent for 3x the limit means a hung worker or a pid reused after a reboot. A heartbeat that
    stopped while the pulse goes on is a worker waiting out a busy store: never lost (its writes wait, then land)."""
    stale = now - heartbeat_at > stale_after_s
    if alive is False:
        return True
    if pulse_age_s is not None:
        return stale and pulse_age_s > stale_after_s
    return (alive is None and stale) or (stale and now - heartbeat_at > 3 * stale_after_s)
