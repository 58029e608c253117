"""Workers in the store: registering, heartbeats (which also carry stop and cancel requests and the lease check,
and stop students' runs over the class's time limit), the live workers, and reaping the ones that died.

A worker heartbeats every second. `reap` marks a worker dead when its process is gone, or when its heartbeat is
stale and its process cannot be checked or is frozen, and marks its running runs interrupted with what happened
(gone, frozen, hung, or the worker's own last words such as a full disk; resumable from their last checkpoint); it
also marks the runs of scripts that stopped without finishing interrupted (engine.runs.store.scripts says when).
Run reads reap too (`reap_if_due`, throttled, never raising), so whoever reads a run's status sees the truth within
seconds of its worker's death, even when every worker died and no one runs the dashboard or the CLI.

Faults (each has a test): a worker frozen while it holds the write lock would stop every writer, the reaper
included, for as long as it stays frozen; the reaper finds it in the kernel's lock table
(engine.runs.store.holder) and ends it. While a write must wait for another program, a read shows the lost
worker's run as not responding (`not_responding`) instead of running.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time

import pandas as pd

from engine import settings
from engine.records import RunStatus
from engine.runs.procs import last_words, leave_last_words, pid_alive, pulse_age
from engine.runs.store.classes import class_limits
from engine.runs.store.holder import STOPPED_STATES, process_state, write_lock_holder
from engine.runs.store.schema import StoreBase


class WorkersMixin(StoreBase):
    """Worker registration, heartbeats, live workers and reaping."""

    # a worker heartbeats every second; this long without one (with no process to check) means it is gone
    STALE_AFTER_S = settings.value_or_default("TRAINLENS_STALE_AFTER_S")  # an operator may lengthen it (slow disks)
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
        """Mark workers that stopped heartbeating (or whose process is gone) dead, and their runs interrupted with
        what happened to the process (gone, frozen, hung, or its own last words: see `lost_reason`).

        `stale_after_s` defaults to STALE_AFTER_S as it is when called (an operator's or a test's setting), the
        limit `reap_if_due` decides with. `is_alive(pid, host) -> bool | None` lets the caller check processes on
        its own host at once instead of waiting for the heartbeat to go stale. Returns the run ids that were
        interrupted.

        The processes are looked at before the write transaction, which then only writes (and checks that each lost
        worker's heartbeat is still the one that was read: a worker that came back is left alone). A lost worker of
        this host that is frozen while holding the write lock would block this transaction, and every other
        writer, for as long as it stays frozen: it is ended first (`_end_frozen_lock_holder`)."""
        if stale_after_s is None:
            stale_after_s = self.STALE_AFTER_S
        lost = self._lost_workers(time.time(), stale_after_s, is_alive)
        if not lost and not self.scripts_lost(time.time()):  # type: ignore[attr-defined]  # ScriptsMixin
            return []
        self._end_frozen_lock_holder(lost)
        interrupted: list[str] = []
        now = time.time()
        with self._tx() as c:
            for worker in lost:
                if c.execute("UPDATE workers SET status='dead' WHERE worker_id=? AND heartbeat_at=? AND status IN "
                             "('idle', 'busy')", (worker["worker_id"], worker["heartbeat_at"])).rowcount != 1:
                    continue  # it heartbeat (or was stopped) since it was read: not lost
                for run in c.execute(f"SELECT run_id, step FROM runs WHERE worker_id=? AND status='{RunStatus.RUNNING}'",
                                     (worker["worker_id"],)).fetchall():
                    reason = _reason(worker, run["step"])
                    c.execute(f"UPDATE runs SET status='{RunStatus.INTERRUPTED}', error=?, finished_at=? WHERE run_id=?",
                              (f"{reason}; resume the run to continue from its last checkpoint", now, run["run_id"]))
                    interrupted.append(run["run_id"])
            interrupted += self.reap_scripts(c, now)  # type: ignore[attr-defined]  # ScriptsMixin
        return interrupted

    def _lost_workers(self, now: float, stale_after_s: float, is_alive) -> list[dict]:
        """The live-registered workers that are lost (see _worker_lost), each with the reason its runs will carry
        (a template with {step}). Plain reads and /proc: no lock taken."""
        lost = []
        for row in self.conn.execute("SELECT worker_id, pid, host, heartbeat_at FROM workers "
                                     "WHERE status IN ('idle', 'busy')").fetchall():
            worker = dict(row)
            alive = is_alive(worker["pid"], worker["host"]) if is_alive else None
            if _worker_lost(worker["heartbeat_at"], alive, now, stale_after_s, pulse_age(worker["worker_id"], now)):
                worker.update(alive=alive, state=process_state(worker["pid"]) if alive else None,
                              words=last_words(worker["worker_id"]), silent_s=now - worker["heartbeat_at"])
                lost.append(worker)
        return lost

    def _end_frozen_lock_holder(self, lost: list[dict]) -> None:
        """When the store's write lock is held by one of these lost workers (frozen on this host inside a write
        transaction: SIGSTOP, a debugger, a suspended terminal), end that process: the lock goes with it, and its
        run was lost anyway (a frozen worker's run is interrupted and its lease revoked; woken, it could never write
        again). Nothing else can free the lock: SQLite waits for its holder, and every writer waits with it."""
        holder = write_lock_holder(self.path)
        frozen = [w for w in lost if w["alive"] and w["pid"] == holder]
        if not frozen or frozen[0]["pid"] == os.getpid():
            return
        worker = frozen[0]
        # its last words, left for it: every reaper (this one or another that gets the lock first) then says why
        words = ("it was frozen (stopped by a signal, a debugger or a suspended terminal) while holding the store's "
                 "write lock, which stopped every other writer; TrainLens ended it")
        leave_last_words(worker["worker_id"], words)
        try:
            os.kill(worker["pid"], signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + 5.0
        while pid_alive(worker["pid"], worker["host"]) and time.monotonic() < deadline:
            time.sleep(0.02)  # the kernel releases the lock as the process exits
        worker.update(alive=False, words=words)

    def reap_if_due(self) -> list[str]:
        """`reap` for readers: at most once every READ_REAP_EVERY_S seconds per Store object, never raising.

        Run reads (`get_run`, `list_runs`) call it, so whoever reads a run's status (`show`, `runs`, a page,
        a script) sees a killed worker's run as interrupted within seconds, even when every worker died and no
        one runs the dashboard, `workers` or `train`. The write lock is taken only when a worker really is lost,
        so healthy reads stay plain reads; a busy store skips this reap (a later read retries) instead of
        failing or stalling the read, and its lost workers' runs read as not responding meanwhile
        (`not_responding`). Returns the run ids that were interrupted.
        """
        clock = time.monotonic()
        if clock - self._read_reaped_at < self.READ_REAP_EVERY_S:
            return []
        self._read_reaped_at = clock
        conn = self.conn
        try:
            lost = self._lost_workers(time.time(), self.STALE_AFTER_S, pid_alive)
            self._not_responding = {}
            if not lost and not self.scripts_lost(time.time()):  # type: ignore[attr-defined]  # ScriptsMixin
                return []
            lock_wait_ms = conn.execute("PRAGMA busy_timeout").fetchone()[0]
            conn.execute(f"PRAGMA busy_timeout={int(self.READ_REAP_LOCK_WAIT_MS)}")
            try:
                return self.reap(is_alive=pid_alive)
            except sqlite3.OperationalError:  # the write must wait: say meanwhile that those runs do not respond
                self._not_responding = self._runs_of(lost)
                raise
            finally:
                conn.execute(f"PRAGMA busy_timeout={int(lock_wait_ms)}")
        except sqlite3.OperationalError:  # "database is locked" (or a transaction already open on this connection)
            return []
        except sqlite3.DatabaseError:  # a full disk or a damaged file: the read that follows reports it
            return []

    _not_responding: dict[str, str] = {}  # run_id -> reason, while a busy store keeps the reap from writing it

    def _runs_of(self, lost: list[dict]) -> dict[str, str]:
        found = {}
        for worker in lost:
            for run in self.conn.execute(f"SELECT run_id, step FROM runs WHERE worker_id=? AND "
                                         f"status='{RunStatus.RUNNING}'", (worker["worker_id"],)).fetchall():
                found[run["run_id"]] = (f"not responding: {_reason(worker, run['step'])}; it is marked interrupted "
                                        "as soon as the store can be written")
        return found

    def not_responding(self, run_id: str) -> str | None:
        """Why a run recorded as running is not: its worker is lost, but the store could not yet be written to say
        so (a program holds its write lock). None when nothing is known against it."""
        return self._not_responding.get(run_id)


def _reason(worker: dict, step: int) -> str:
    return lost_reason(worker["pid"], worker["host"], worker["alive"], worker["state"], worker["words"],
                       worker["silent_s"], step)


def lost_reason(pid: int, host: str, alive: bool | None, state: str | None, words: str | None, silent_s: float,
                step: int) -> str:
    """What happened to a lost worker's process, for its runs' error: its own last words when it left some (a full
    disk, a lease it lost), else gone (killed, or out of memory), frozen, hung, or silent on another machine."""
    where = f"worker process {pid} on {host}"
    if words and not alive:
        return f"{where} stopped at step {step}: {words}"
    if alive is False:
        return f"{where} exited unexpectedly at step {step} (killed, or out of memory)"
    if state in STOPPED_STATES:
        return (f"{where} was frozen at step {step} (stopped by a signal, a debugger or a suspended terminal) and "
                "stopped responding")
    if alive:
        return f"{where} stopped responding at step {step} (its process is alive but hung: no heartbeat, no pulse)"
    return f"{where} stopped responding at step {step} (no heartbeat for {silent_s:.0f} s: that machine may be down)"


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
