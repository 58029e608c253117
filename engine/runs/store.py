"""The run store: SQLite (WAL, busy timeout) holding runs, the queue, metrics, checkpoints and artifacts.

The store is the source of truth shared by the dashboard, the CLI and the workers. Workers write
metrics in batched transactions; the app only reads and writes intents (enqueue, cancel, resume).
Reads of runs first reap workers that died (throttled; see `Store.reap_if_due`), so a run's status is true
within seconds of its worker's death whoever reads it.
Reads return pandas DataFrames. The schema is versioned in `meta` so a later change can migrate it.
Each thread gets its own connection (Streamlit serves sessions from several threads).

Faults the store is built to survive (each has a test):
- Leases (fencing): every claim of a run takes a new `lease` number; a worker's writes carry `fence=(run_id,
  lease)` and apply only while that lease is current and the run is running, so a worker frozen past the reaper
  and woken after its run was resumed elsewhere cannot write a duplicated step or overwrite the final status
  (`LeaseLost`). Checkpoint files are moved into place inside the same fenced transaction.
- Unreadable rows are quarantined: listing skips and reports them (`frame.attrs["unreadable"]`), a claim fails
  them with the reason, and they can still be cancelled and deleted.
- Opening writes nothing when the schema is current, so a store on a full or read-only disk still reads. A new
  store is built under a temporary name and linked into place, so an empty or non-SQLite `trainlens.db` is always
  damage: it is reported (engine.runs.store_errors), never silently replaced.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from engine.classroom import LOCAL, Actor, name_key
from engine.config import RunConfig
from engine.paths import check_data_dir, db_path
from engine.records import (DELETABLE, NAME_MAX, RESUMABLE, STATUSES, TERMINAL, RunKind, RunStatus, check_name,
                            fit_name)
from engine.runs.access import (LIMIT_PREFIX, ClassLimits, check_limit, check_may_act, check_may_teach,
                                 check_queue_room, check_submission, run_examples)
from engine.runs.procs import pid_alive, pulse_age
from engine.runs.store_errors import BACKUPS_DIR, StoreUnavailable, damaged, describe

SCHEMA_VERSION = 3  # 2: runs.lease; 3: runs.owner_role, members, queue_turns (class mode)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL DEFAULT 'train',      -- a RunKind: train | lr_find | overfit
    name TEXT NOT NULL,
    grp TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL DEFAULT '',
    owner_role TEXT NOT NULL DEFAULT '',      -- local (the OS user) | student | teacher: see engine.classroom
    config TEXT NOT NULL,                    -- RunConfig as JSON
    status TEXT NOT NULL,
    device TEXT,
    worker_id TEXT,
    created_at REAL NOT NULL,
    queued_at REAL NOT NULL,                  -- queue order; reset when a run is resumed (created_at is kept)
    parent_id TEXT,                           -- for helper jobs (lr_find, overfit): the run they serve
    started_at REAL,
    finished_at REAL,
    heartbeat_at REAL,
    step INTEGER NOT NULL DEFAULT 0,
    total_steps INTEGER NOT NULL DEFAULT 0,
    epoch INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    resume_from TEXT,                         -- 'last' when a resumed run must continue from its last checkpoint
    lease INTEGER NOT NULL DEFAULT 0          -- claim number: a worker's writes apply only under the current one
);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status, queued_at);
CREATE TABLE IF NOT EXISTS metrics (
    id INTEGER PRIMARY KEY,                   -- monotonic: readers fetch only rows newer than the last id they saw
    run_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    key TEXT NOT NULL,
    value REAL,
    wall_time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics(run_id, id);
CREATE INDEX IF NOT EXISTS metrics_run_key ON metrics(run_id, key, step);
CREATE TABLE IF NOT EXISTS checkpoints (
    run_id TEXT NOT NULL, epoch INTEGER NOT NULL, kind TEXT NOT NULL, path TEXT NOT NULL,
    created_at REAL NOT NULL, metrics TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (run_id, epoch, kind)
);
CREATE TABLE IF NOT EXISTS artifacts (
    run_id TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE IF NOT EXISTS workers (
    worker_id TEXT PRIMARY KEY, pid INTEGER NOT NULL, host TEXT NOT NULL, device TEXT NOT NULL,
    started_at REAL NOT NULL, heartbeat_at REAL NOT NULL,
    status TEXT NOT NULL,                     -- idle | busy | stopped | dead
    run_id TEXT, stop_requested INTEGER NOT NULL DEFAULT 0
);
-- class mode: display names taken in the class (one seat each), and when each owner's queue was last served
CREATE TABLE IF NOT EXISTS members (
    name_key TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, seat_id TEXT NOT NULL,
    joined_at REAL NOT NULL, left_at REAL
);
CREATE TABLE IF NOT EXISTS queue_turns (owner TEXT PRIMARY KEY, served_at REAL NOT NULL);
"""

METRIC_COLUMNS = ["id", "run_id", "step", "epoch", "key", "value", "wall_time"]
RUN_COLUMNS = ("run_id", "kind", "name", "grp", "owner", "owner_role", "config", "status", "device", "worker_id", "created_at",
               "queued_at", "parent_id", "started_at", "finished_at", "heartbeat_at", "step", "total_steps", "epoch",
               "error", "cancel_requested", "resume_from", "lease")
# Names are capped when written (engine.records.NAME_MAX); rows written before the cap are cut when read, so one
# 50 MB name cannot take every page down.
_RUN_SELECT = ", ".join(f"substr({c}, 1, 1000) AS {c}" if c in ("name", "grp", "owner", "error") else c
                        for c in RUN_COLUMNS)

Fence = tuple[str, int]  # (run_id, lease): the claim a worker's write is made under


class LeaseLost(RuntimeError):
    """A worker's write was refused: the run is no longer its own (reaped, resumed elsewhere, deleted)."""


class UnreadableRun(ValueError):
    """A run row that cannot be parsed (damaged config JSON, unknown status or kind)."""


class Store:
    BUSY_TIMEOUT_S = 30.0  # how long a write waits for another connection's lock before "database is locked"

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        try:
            self._create_if_missing()
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise describe(exc, self.path) from None

    # ---- connection ----
    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = _connect(self.path, self.BUSY_TIMEOUT_S)
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _tx(self):
        return _Transaction(self.conn)

    def _create_if_missing(self) -> None:
        """Build a new store under a temporary name and link it into place (never over an existing file), so
        `trainlens.db` is never seen half made: an empty or non-SQLite file there is damage, reported by _migrate."""
        if self.path.exists():
            if self.path.stat().st_size == 0:
                raise damaged(self.path, "the file is empty (0 bytes)")
            return
        staging = self.path.with_name(f".{self.path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.new")
        try:
            conn = sqlite3.connect(staging, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            conn.execute("INSERT INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            conn.close()
            try:
                os.link(staging, self.path)
            except FileExistsError:
                pass  # another process created it first: use theirs
        finally:
            for leftover in (staging, staging.with_name(staging.name + "-wal"), staging.with_name(staging.name + "-shm")):
                leftover.unlink(missing_ok=True)

    def _migrate(self) -> None:
        conn = self.conn
        try:
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row["value"]) if row else 0
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            version = 0
        except ValueError:
            raise damaged(self.path, "its schema version is unreadable") from None
        if version > SCHEMA_VERSION:
            raise StoreUnavailable(self.path, f"was written by a newer TrainLens (schema {version} > {SCHEMA_VERSION})",
                                   "Upgrade TrainLens to open it")
        if version == SCHEMA_VERSION:
            return  # nothing to write: a store on a full or read-only disk still opens for reading
        conn.executescript(_SCHEMA)  # commits implicitly, so it runs outside an explicit transaction
        with self._tx() as c:
            columns = {r["name"] for r in c.execute("PRAGMA table_info(runs)")}
            if "lease" not in columns:  # schema 1 -> 2
                c.execute("ALTER TABLE runs ADD COLUMN lease INTEGER NOT NULL DEFAULT 0")
            if "owner_role" not in columns:  # schema 2 -> 3 (older runs: the OS user's, role local)
                c.execute("ALTER TABLE runs ADD COLUMN owner_role TEXT NOT NULL DEFAULT ''")
                c.execute(f"UPDATE runs SET owner_role='{LOCAL}'")
            c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def backup(self, keep: int = 3) -> Path:
        """Copy the store with SQLite's online backup (consistent while workers write) to
        TRAINLENS_HOME/backups/trainlens-YYYYmmdd-HHMMSS.db, keeping the newest `keep`. Returns the copy's path."""
        folder = self.path.parent / BACKUPS_DIR
        folder.mkdir(exist_ok=True)
        target = folder / f"trainlens-{time.strftime('%Y%m%d-%H%M%S')}.db"
        staging = target.with_suffix(".partial")
        dest = sqlite3.connect(staging)
        try:
            self.conn.backup(dest)
        finally:
            dest.close()
        os.replace(staging, target)
        for old in sorted(folder.glob("trainlens-*.db"))[:-keep]:
            old.unlink(missing_ok=True)
        return target

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ---- runs ----
    def create_run(self, config: RunConfig, *, kind: str = RunKind.TRAIN, owner: str = "", name: str | None = None,
                   group: str | None = None, parent_id: str | None = None, actor: Actor | None = None) -> str:
        """Validate and enqueue a run; returns its run_id.

        With an `actor` the run is theirs (owner = display name, owner_role = role), and a student's run must fit
        the class limits (`CapReached`), checked in the same transaction that inserts it, so 1,000 submissions at
        once cannot slip past the queued cap. Without a `name` the run gets a unique readable default
        (`unique_name`)."""
        config.validate()
        kind = RunKind(kind)  # ValueError names the allowed kinds
        if name is not None:
            check_name("run name", name)
        if group is not None:
            check_name("group", group)
        owner, owner_role = (actor.name, actor.role) if actor is not None else (owner, LOCAL)
        check_name("owner", owner)
        if config.data_dir:
            check_data_dir(config.data_dir)  # ValueError: a dashboard user cannot point a worker anywhere on disk
        run_id = uuid.uuid4().hex[:12]
        now = time.time()
        with self._tx() as c:
            if actor is not None and actor.is_student:
                check_submission(actor, self._limits(c), epochs=config.epochs, examples=run_examples(config),
                                 queued=_queued_of(c, actor))
            if name is None:
                name = _unique_name(c, default_name(config, actor))
            c.execute(
                "INSERT INTO runs(run_id, kind, name, grp, owner, owner_role, config, status, created_at, queued_at, "
                "parent_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, kind, name, group if group is not None else config.group, owner, owner_role,
                 config.to_json(), RunStatus.QUEUED, now, now, parent_id),
            )
        return run_id

    def unique_name(self, config: RunConfig, actor: Actor | None = None) -> str:
        """The default name a run of `config` by `actor` would get now (the Train form suggests it)."""
        return _unique_name(self.conn, default_name(config, actor))

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        """One run as a dict (None when there is no such run). Reaps dead workers first: see `reap_if_due`."""
        self.reap_if_due()
        row = self.conn.execute(f"SELECT {_RUN_SELECT} FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            return None
        run = dict(row)
        run["group"] = run.pop("grp")
        try:
            run["config"] = _parse_run(run)
        except UnreadableRun as exc:
            raise UnreadableRun(f"run {run_id} is unreadable ({exc}); delete it (`python -m engine delete {run_id}`) "
                                "or mark it failed") from None
        run.update(_progress(run))
        return run

    def mark_unreadable_failed(self, run_id: str, problem: str) -> None:
        """Fail a quarantined run (whatever its recorded status) so it can be deleted; its worker, if one still
        trains it, loses its lease."""
        self.conn.execute(f"UPDATE runs SET status='{RunStatus.FAILED}', error=?, finished_at=?, lease=lease+1 "
                          "WHERE run_id=?", (f"unreadable run record: {problem}"[:1000], time.time(), run_id))

    def find_run(self, prefix: str) -> str | None:
        """Resolve a run id or a unique prefix of one (the CLI accepts short ids)."""
        if not prefix:
            return None
        rows = self.conn.execute("SELECT run_id FROM runs WHERE substr(run_id, 1, ?) = ?", (len(prefix), prefix)).fetchall()
        return rows[0]["run_id"] if len(rows) == 1 else None

    def list_runs(self, *, status: Iterable[str] | None = None, group: str | None = None,
                  kind: str | None = None) -> pd.DataFrame:
        """All runs, newest first, with progress/ETA and one `cfg.<field>` column per config field.

        Reaps dead workers first (see `reap_if_due`), so a status filter sees the truth too."""
        self.reap_if_due()
        query, args = "SELECT * FROM runs WHERE 1=1", []
        if status:
            status = list(status)
            query += f" AND status IN ({','.join('?' * len(status))})"
            args += status
        if group is not None:
            query += " AND grp=?"
            args.append(group)
        if kind is not None:
            query += " AND kind=?"
            args.append(kind)
        query = query.replace("SELECT *", f"SELECT {_RUN_SELECT}", 1)
        rows = [dict(r) for r in self.conn.execute(query + " ORDER BY created_at DESC, rowid DESC", args)]
        records, unreadable = [], []
        for run in rows:
            run["group"] = run.pop("grp")
            try:
                config = _parse_run(run).to_dict()
            except UnreadableRun as exc:  # quarantined: listed apart, never breaks the listing of the others
                unreadable.append({"run_id": run["run_id"], "name": run["name"], "status": run["status"],
                                   "problem": str(exc)})
                continue
            del run["config"]
            run.update(_progress(run))
            run.update({f"cfg.{k}": v for k, v in config.items()})
            records.append(run)
        columns = ["run_id", "kind", "name", "group", "owner", "owner_role", "status", "device", "created_at", "queued_at", "started_at",
                   "finished_at", "step", "total_steps", "epoch", "progress", "eta_s", "duration_s", "error"]
        frame = pd.DataFrame.from_records(records)
        if frame.empty:
            frame = pd.DataFrame(columns=columns + [f"cfg.{k}" for k in RunConfig().to_dict()])
        frame.attrs["unreadable"] = unreadable
        return frame

    def runs_fingerprint(self) -> str:
        """A value that changes whenever anything `list_runs` shows changes (status, progress, names, owners,
        errors, configs...): readers that share one listing (the dashboard's sessions) compare it instead of
        listing again. One aggregate query in SQLite."""
        row = self.conn.execute(
            "SELECT COUNT(*) || ':' || COALESCE(group_concat(run_id || status || step || '/' || total_steps || '/' || "
            "epoch || '/' || lease || '/' || queued_at || '/' || COALESCE(started_at, '') || '/' || "
            "COALESCE(finished_at, '') || '/' || COALESCE(device, '') || '/' || length(name) || name || grp || owner || "
            "owner_role || kind || length(COALESCE(error, '')) || '/' || length(config) || '/' || cancel_requested, "
            "'|'), '') FROM runs").fetchone()
        return row[0]

    def set_running(self, run_id: str, worker_id: str, device: str, fence: Fence | None = None) -> None:
        now = time.time()
        with self._tx() as c:
            _check_fence(c, fence)
            c.execute(f"UPDATE runs SET status='{RunStatus.RUNNING}', worker_id=?, device=?, started_at=COALESCE(started_at, ?), "
                      "heartbeat_at=?, error=NULL WHERE run_id=?", (worker_id, device, now, now, run_id))

    def update_status(self, run_id: str, status: str, error: str | None = None, fence: Fence | None = None) -> bool:
        """Set a run's status. Under a `fence` it applies only while that lease still owns the running run;
        returns whether it applied (a stale worker's final word is dropped, not an error)."""
        if status not in STATUSES:
            raise ValueError(f"status={status!r}: allowed values are {', '.join(STATUSES)}")
        finished = time.time() if status in TERMINAL else None
        with self._tx() as c:
            try:
                _check_fence(c, fence)
            except LeaseLost:
                return False
            c.execute("UPDATE runs SET status=?, error=?, finished_at=? WHERE run_id=?",
                      (status, None if error is None else str(error)[:4000], finished, run_id))
        return True

    def update_progress(self, run_id: str, step: int, total_steps: int, epoch: int, fence: Fence | None = None) -> None:
        with self._tx() as c:
            _check_fence(c, fence)
            c.execute("UPDATE runs SET step=?, total_steps=?, epoch=?, heartbeat_at=? WHERE run_id=?",
                      (step, total_steps, epoch, time.time(), run_id))

    def claim_next(self, worker_id: str, device: str) -> dict[str, Any] | None:
        """Atomically take the next queued run for this worker, under a new lease (`run["lease"]`); None when no
        queued run may start. A queued run whose record cannot be read is failed with the reason and skipped.

        Owners are served round-robin (the owner served longest ago goes first; among owners never served, the one
        whose oldest run waited longest), each owner's own runs in the order queued: one student's 20 queued runs
        cannot starve the others. A student at the class's running limit waits, and while the teacher has paused
        the queue only the teacher's (and the local user's) runs start. With a single owner this is first come,
        first served."""
        with self._tx() as c:
            while True:
                row = _next_in_turn(c, self._limits(c), self._settings(c).get("queue_paused") == "1")
                if row is None:
                    return None
                try:
                    _parse_run(dict(row))
                    break
                except UnreadableRun as exc:
                    c.execute(f"UPDATE runs SET status='{RunStatus.FAILED}', error=?, finished_at=? WHERE run_id=?",
                              (f"unreadable run record: {exc}"[:1000], time.time(), row["run_id"]))
            now = time.time()
            c.execute(f"UPDATE runs SET status='{RunStatus.RUNNING}', worker_id=?, device=?, started_at=COALESCE(started_at, ?), "
                      "heartbeat_at=?, error=NULL, finished_at=NULL, lease=lease+1 WHERE run_id=?",
                      (worker_id, device, now, now, row["run_id"]))
            c.execute("INSERT OR REPLACE INTO queue_turns(owner, served_at) VALUES (?, ?)", (_turn_key(row), now))
            run = dict(c.execute(f"SELECT {_RUN_SELECT} FROM runs WHERE run_id=?", (row["run_id"],)).fetchone())
        run["group"] = run.pop("grp")
        run["config"] = _parse_run(run)
        run.update(_progress(run))
        return run

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

    def waiting_reason(self, run: dict[str, Any] | pd.Series) -> str:
        """Why a queued run has not started yet, in a sentence for its owner."""
        settings, limits = self.settings(), self.limits()
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

    # ---- class settings ----
    def _settings(self, c: sqlite3.Connection) -> dict[str, str]:
        return {r["key"]: r["value"] for r in c.execute(
            "SELECT key, value FROM meta WHERE key='queue_paused' OR key LIKE ?", (LIMIT_PREFIX + "%",))}

    def settings(self) -> dict[str, str]:
        """The class settings the teacher stored: `queue_paused` ('1' / '0') and `limit.<name>`."""
        return self._settings(self.conn)

    def _limits(self, c: sqlite3.Connection) -> ClassLimits:
        try:
            return ClassLimits.from_settings(self._settings(c))
        except ValueError:  # a hand-edited meta row: fall back to the environment's limits
            return ClassLimits.from_settings()

    def limits(self) -> ClassLimits:
        return self._limits(self.conn)

    def set_queue_paused(self, paused: bool, actor: Actor | None = None) -> None:
        check_may_teach(actor, "pause or resume the queue")
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('queue_paused', ?)", ("1" if paused else "0",))

    def set_limit(self, name: str, value: int, actor: Actor | None = None) -> None:
        check_may_teach(actor, "change the class limits")
        value = check_limit(name, value)
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (LIMIT_PREFIX + name, str(value)))

    def cancel_all(self, actor: Actor | None = None) -> int:
        """Cancel every queued run and ask every running one to stop (teacher only); returns how many."""
        check_may_teach(actor, "cancel every run")
        with self._tx() as c:
            queued = c.execute(f"UPDATE runs SET status='{RunStatus.CANCELLED}', finished_at=? "
                               f"WHERE status='{RunStatus.QUEUED}'", (time.time(),)).rowcount
            running = c.execute(f"UPDATE runs SET cancel_requested=1 WHERE status='{RunStatus.RUNNING}'").rowcount
        return queued + running

    # ---- class members (display names) ----
    def join_class(self, actor: Actor, seat_id: str) -> None:
        """Take `actor.name` for this seat; ValueError when another seat (a classmate) holds the same name."""
        key = name_key(actor.name)
        with self._tx() as c:
            row = c.execute("SELECT seat_id, left_at FROM members WHERE name_key=?", (key,)).fetchone()
            if row is not None and row["left_at"] is None and row["seat_id"] != seat_id:
                raise ValueError(f"Someone in the class already uses the name {actor.name!r}; choose another "
                                 "(add an initial, say)")
            c.execute("INSERT OR REPLACE INTO members(name_key, name, role, seat_id, joined_at, left_at) "
                      "VALUES (?,?,?,?,?,NULL)", (key, actor.name, actor.role, seat_id, time.time()))

    def seat_holds(self, actor: Actor, seat_id: str) -> bool:
        """Whether this seat still holds its name (the teacher may have freed it, or the student signed out)."""
        row = self.conn.execute("SELECT seat_id, role, left_at FROM members WHERE name_key=?",
                                (name_key(actor.name),)).fetchone()
        return row is not None and row["left_at"] is None and row["seat_id"] == seat_id and row["role"] == actor.role

    def leave_class(self, seat_id: str) -> None:
        self.conn.execute("UPDATE members SET left_at=? WHERE seat_id=? AND left_at IS NULL", (time.time(), seat_id))

    def free_name(self, name: str, actor: Actor | None = None) -> None:
        """Sign a name out of the class (teacher only): its seat token stops working, the name can be taken again."""
        check_may_teach(actor, "free a student's name")
        self.conn.execute("UPDATE members SET left_at=? WHERE name_key=? AND left_at IS NULL", (time.time(), name_key(name)))

    def members(self) -> pd.DataFrame:
        rows = self.conn.execute("SELECT name, role, joined_at FROM members WHERE left_at IS NULL ORDER BY joined_at")
        return pd.DataFrame([dict(r) for r in rows], columns=["name", "role", "joined_at"])

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
            if actor is not None and actor.is_student:
                check_queue_room(actor, self._limits(c), _queued_of(c, actor))
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

    # ---- metrics ----
    def log_batch(self, rows: list[tuple[str, int, int, str, float, float]], fence: Fence | None = None) -> None:
        """Insert (run_id, step, epoch, key, value, wall_time) rows in one transaction (LeaseLost under a stale
        fence: none of them is written)."""
        if rows:
            with self._tx() as c:
                _check_fence(c, fence)
                c.executemany("INSERT INTO metrics(run_id, step, epoch, key, value, wall_time) VALUES (?,?,?,?,?,?)", rows)

    def delete_metrics_after(self, run_id: str, step: int, fence: Fence | None = None) -> None:
        """Drop rows logged after a checkpoint's step (a resumed run logs them again)."""
        with self._tx() as c:
            _check_fence(c, fence)
            c.execute("DELETE FROM metrics WHERE run_id=? AND step>?", (run_id, step))

    def get_metrics(self, run_ids: str | Iterable[str], keys: Iterable[str] | None = None,
                    after_id: int = 0) -> pd.DataFrame:
        """Metric rows of the given runs (newer than `after_id`), ordered by id; columns METRIC_COLUMNS."""
        run_ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
        if not run_ids:
            return pd.DataFrame(columns=METRIC_COLUMNS)
        query = (f"SELECT {', '.join(METRIC_COLUMNS)} FROM metrics WHERE run_id IN ({','.join('?' * len(run_ids))}) "
                 "AND id>?")
        args: list[Any] = [*run_ids, after_id]
        if keys is not None:
            keys = list(keys)
            query += f" AND key IN ({','.join('?' * len(keys))})"
            args += keys
        cursor = self.conn.execute(query + " ORDER BY id", args)
        frame = pd.DataFrame(cursor.fetchall(), columns=METRIC_COLUMNS)
        return frame.astype({"id": "int64", "step": "int64", "epoch": "int64", "value": "float64", "wall_time": "float64"})

    def metric_history(self, run_id: str, key: str) -> pd.DataFrame:
        """One metric of one run as (step, epoch, value, wall_time)."""
        cursor = self.conn.execute("SELECT step, epoch, value, wall_time FROM metrics WHERE run_id=? AND key=? ORDER BY step",
                                   (run_id, key))
        return pd.DataFrame(cursor.fetchall(), columns=["step", "epoch", "value", "wall_time"])

    def last_values(self, run_id: str) -> dict[str, float]:
        """The latest value of every key of a run (final metrics)."""
        cursor = self.conn.execute("SELECT key, value FROM metrics WHERE id IN "
                                   "(SELECT MAX(id) FROM metrics WHERE run_id=? GROUP BY key)", (run_id,))
        return {row["key"]: row["value"] for row in cursor}

    def count_metrics(self, run_id: str | None = None) -> int:
        if run_id is None:
            return self.conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
        return self.conn.execute("SELECT COUNT(*) FROM metrics WHERE run_id=?", (run_id,)).fetchone()[0]

    # The dashboard's metrics cache (app/server/metrics_cache.py) reads through the next five: bounded by what a chart
    # draws, never a long history row by row. `+id` keeps SQLite on the (run_id, key, step) index: with a bound on id
    # it would otherwise pick metrics_run(run_id, id) and visit every row of the run.
    def last_metric_id(self, run_id: str) -> int:
        """The id of the run's newest metric row, 0 when it has none (a reader's snapshot bound)."""
        row = self.conn.execute("SELECT MAX(id) FROM metrics WHERE run_id=?", (run_id,)).fetchone()
        return int(row[0] or 0)

    def metric_keys(self, run_id: str) -> list[str]:
        """The keys a run has logged, sorted: one index seek per key, not a read of the run's rows."""
        cursor = self.conn.execute(
            "WITH RECURSIVE k(key) AS (SELECT MIN(key) FROM metrics WHERE run_id=:run UNION ALL "
            "SELECT (SELECT MIN(key) FROM metrics WHERE run_id=:run AND key>k.key) FROM k WHERE k.key IS NOT NULL) "
            "SELECT key FROM k WHERE key IS NOT NULL", {"run": run_id})
        return [row[0] for row in cursor]

    def sample_metrics(self, run_id: str, key: str, max_rows: int | None = None, *,
                       upto_id: int | None = None) -> pd.DataFrame:
        """One key of one run (rows with id <= upto_id), ordered by step: every row, or at most max_rows of them.

        When more rows exist, the key's step range is cut into max_rows - 1 equal buckets and the first row of each
        is kept, plus the last row: evenly spaced by step, the first and the latest point always in. One index seek
        per bucket finds them, so the cost is the same for 50,000 or 5 million rows. `.attrs["sampled"]` says whether
        rows were left out. Columns METRIC_COLUMNS.
        """
        if max_rows is not None and max_rows < 2:
            raise ValueError(f"max_rows={max_rows}: a sample keeps at least the first and the last row")
        args = {"run": run_id, "key": key, "upto": upto_id}
        where = "run_id=:run AND key=:key" + ("" if upto_id is None else " AND +id<=:upto")
        columns = ", ".join(f"m.{column}" for column in METRIC_COLUMNS)
        fits = max_rows is None or self.conn.execute(
            f"SELECT COUNT(*) FROM (SELECT 1 FROM metrics WHERE {where} LIMIT :limit)",
            {**args, "limit": max_rows + 1}).fetchone()[0] <= max_rows
        if fits:
            frame = self._metrics_frame(f"SELECT {columns} FROM metrics m WHERE {where} ORDER BY step, id", args)
            frame.attrs["sampled"] = False
            return frame
        first = self.conn.execute(f"SELECT step FROM metrics WHERE {where} ORDER BY step, id LIMIT 1", args).fetchone()[0]
        last = self.conn.execute(f"SELECT id, step FROM metrics WHERE {where} ORDER BY step DESC, id DESC LIMIT 1",
                                 args).fetchone()
        width = -(-(last["step"] - first + 1) // (max_rows - 1))  # at most max_rows - 1 buckets
        # a skip scan: from each kept row, seek to the first row of the next bucket
        following = ("(SELECT n.{} FROM metrics n WHERE n.run_id=:run AND n.key=:key AND "
                     "n.step >= :first + ((b.step - :first) / :width + 1) * :width"
                     f"{'' if upto_id is None else ' AND +n.id<=:upto'} ORDER BY n.step, n.id LIMIT 1)")
        frame = self._metrics_frame(
            f"WITH RECURSIVE b(id, step) AS (SELECT id, step FROM (SELECT id, step FROM metrics WHERE {where} "
            f"ORDER BY step, id LIMIT 1) UNION ALL SELECT {following.format('id')}, {following.format('step')} "
            f"FROM b WHERE b.id IS NOT NULL) "
            f"SELECT {columns} FROM metrics m WHERE m.id IN (SELECT id FROM b WHERE id IS NOT NULL UNION SELECT :last) "
            "ORDER BY m.step, m.id", {**args, "first": first, "width": width, "last": last["id"]})
        frame.attrs["sampled"] = True
        return frame

    def metric_extremes(self, run_id: str, key: str, buckets: int, *, upto_id: int | None = None) -> pd.DataFrame:
        """The lowest and the highest row of each of `buckets` equal step ranges of one key of one run (rows with id
        <= upto_id), ordered by step: at most 2 x buckets rows, the key's minimum and maximum among them. NaN values
        (stored as NULL) are left out. Unlike sample_metrics this reads every row's value (~10 ms per 50,000 rows)."""
        if buckets < 1:
            raise ValueError(f"buckets={buckets}: need at least 1")
        args = {"run": run_id, "key": key, "upto": upto_id}
        where = "run_id=:run AND key=:key" + ("" if upto_id is None else " AND +id<=:upto")
        first, last = self.conn.execute(f"SELECT MIN(step), MAX(step) FROM metrics WHERE {where}", args).fetchone()
        if first is None:
            return self._metrics_frame(None)
        # SQLite's bare columns: with a single min() or max(), the other columns come from the row holding it
        pick = (f"SELECT {', '.join(METRIC_COLUMNS)}, {{}}(value) FROM metrics WHERE {where} AND value IS NOT NULL "
                "GROUP BY (step - :first) / :width")
        frame = self._metrics_frame(f"{pick.format('MIN')} UNION ALL {pick.format('MAX')}",
                                    {**args, "first": first, "width": -(-(last - first + 1) // buckets)})
        return frame.drop_duplicates("id").sort_values(["step", "id"], ignore_index=True)

    def metrics_at_steps(self, run_id: str, key: str, steps: Iterable[int], *, upto_id: int | None = None) -> pd.DataFrame:
        """The rows of one key of one run logged at the given steps (id <= upto_id), ordered by step."""
        steps = sorted({int(step) for step in steps})
        where = "run_id=? AND key=?" + ("" if upto_id is None else " AND +id<=?")
        frames = [self._metrics_frame(None)]
        for start in range(0, len(steps), 500):  # well under SQLite's limit on bound parameters
            chunk = steps[start:start + 500]
            frames.append(self._metrics_frame(
                f"SELECT {', '.join(METRIC_COLUMNS)} FROM metrics WHERE {where} AND step IN ({','.join('?' * len(chunk))})",
                [run_id, key, *([] if upto_id is None else [upto_id]), *chunk]))
        frames = [frame for frame in frames if len(frame)] or frames[:1]
        return pd.concat(frames, ignore_index=True).sort_values(["step", "id"], ignore_index=True)

    def _metrics_frame(self, query: str | None, args: Any = ()) -> pd.DataFrame:
        """The rows of a query selecting METRIC_COLUMNS (none for None), with get_metrics' columns and dtypes.
        Plain tuples and one array per column: several times faster than sqlite3.Row objects through pandas."""
        import numpy as np  # local: the store's other readers do without it

        rows = []
        if query is not None:
            cursor = self.conn.cursor()
            cursor.row_factory = None
            rows = cursor.execute(query, args).fetchall()
        columns = list(zip(*rows))[:len(METRIC_COLUMNS)] if rows else [()] * len(METRIC_COLUMNS)
        ids, run_ids, steps, epochs, keys, values, walls = columns
        return pd.DataFrame({"id": np.array(ids, dtype=np.int64), "run_id": list(run_ids),
                             "step": np.array(steps, dtype=np.int64), "epoch": np.array(epochs, dtype=np.int64),
                             "key": list(keys), "value": np.array(values, dtype=np.float64),
                             "wall_time": np.array(walls, dtype=np.float64)})

    # ---- checkpoints and artifacts ----
    def add_checkpoint(self, run_id: str, epoch: int, kind: str, path: str, metrics: dict[str, float],
                       fence: Fence | None = None, staged: str | None = None) -> None:
        """Record a checkpoint file. `staged`: the file was written there and is moved to `path` inside the
        fenced transaction, so a stale worker can never overwrite the file of the run's current owner."""
        with self._tx() as c:
            _check_fence(c, fence)
            if staged is not None:
                os.replace(staged, path)
            c.execute("INSERT OR REPLACE INTO checkpoints(run_id, epoch, kind, path, created_at, metrics) "
                      "VALUES (?,?,?,?,?,?)", (run_id, epoch, kind, path, time.time(), json.dumps(metrics)))

    def list_checkpoints(self, run_id: str) -> pd.DataFrame:
        cursor = self.conn.execute("SELECT epoch, kind, path, created_at, metrics FROM checkpoints WHERE run_id=? "
                                   "ORDER BY epoch, kind", (run_id,))
        return pd.DataFrame(cursor.fetchall(), columns=["epoch", "kind", "path", "created_at", "metrics"])

    def put_artifact(self, run_id: str, name: str, value: Any, fence: Fence | None = None) -> None:
        """File a JSON artifact on `run_id`; `fence` is the writer's claim (for a helper job mirroring its result
        onto the run it serves, the job's own claim)."""
        with self._tx() as c:
            _check_fence(c, fence)
            c.execute("INSERT OR REPLACE INTO artifacts(run_id, name, value, created_at) VALUES (?,?,?,?)",
                      (run_id, name, json.dumps(value), time.time()))

    def get_artifact(self, run_id: str, name: str) -> Any | None:
        """An artifact's value; None when there is none, or when its stored JSON is unreadable (a damaged row
        must not take the report page down: the section that needed it says it is missing)."""
        row = self.conn.execute("SELECT value FROM artifacts WHERE run_id=? AND name=?", (run_id, name)).fetchone()
        if row is None:
            return None
        try:
            return json.loads(row["value"])
        except (ValueError, TypeError, RecursionError):
            return None

    def list_artifacts(self, run_id: str) -> list[str]:
        return [r["name"] for r in self.conn.execute("SELECT name FROM artifacts WHERE run_id=? ORDER BY name", (run_id,))]

    # ---- workers ----
    def register_worker(self, worker_id: str, pid: int, host: str, device: str) -> None:
        now = time.time()
        # an upsert, not INSERT OR REPLACE: the runner registers a starting worker first, and a stop requested
        # while it was starting must survive its own registration
        self.conn.execute("INSERT INTO workers(worker_id, pid, host, device, started_at, heartbeat_at, status) "
                          "VALUES (?,?,?,?,?,?, 'idle') ON CONFLICT(worker_id) DO UPDATE SET pid=excluded.pid, "
                          "host=excluded.host, device=excluded.device, heartbeat_at=excluded.heartbeat_at, status='idle'",
                          (worker_id, pid, host, device, now, now))

    def worker_heartbeat(self, worker_id: str, status: str, run_id: str | None, lease: int | None = None) -> bool:
        """Refresh a worker's (and its run's) heartbeat; returns True when the worker must stop: asked to, or
        declared dead by a reaper (its runs are someone else's now)."""
        return self.heartbeat(worker_id, status, run_id, lease)["stop"]

    def heartbeat(self, worker_id: str, status: str, run_id: str | None, lease: int | None = None) -> dict[str, bool]:
        """One heartbeat transaction: {"stop": the worker must stop, "cancel": its run's cancel was requested,
        "lease_lost": its run (claimed under `lease`) is no longer its own}."""
        now = time.time()
        with self._tx() as c:
            c.execute("UPDATE workers SET heartbeat_at=?, status=?, run_id=? WHERE worker_id=? AND status!='dead'",
                      (now, status, run_id, worker_id))
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

    # a worker heartbeats every second; this long without one (with no process to check) means it is gone
    STALE_AFTER_S = float(os.environ.get("TRAINLENS_STALE_AFTER_S", "6"))  # an operator may lengthen it (slow disks)
    # Reads reap (see reap_if_due) at most this often per Store object: the dashboard reads many times a second.
    READ_REAP_EVERY_S = 2.0
    # How long a read waits for the write lock to reap before giving up until its next turn: a read must not
    # hang on a busy store for the 30 s a writer waits.
    READ_REAP_LOCK_WAIT_MS = 2000
    _read_reaped_at = float("-inf")  # set on the instance by its first reap_if_due

    def reap(self, stale_after_s: float = STALE_AFTER_S, is_alive=None) -> list[str]:
        """Mark workers that stopped heartbeating (or whose process is gone) dead, and their runs interrupted.

        `is_alive(pid, host) -> bool | None` lets the caller check processes on its own host at once
        instead of waiting for the heartbeat to go stale. Returns the run ids that were interrupted.
        """
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
                       for w in workers.fetchall()):
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


def _status_in_tx(c: sqlite3.Connection, run_id: str, actor: Actor | None = None, what: str = "change") -> str:
    """A run's status read inside a write transaction, after checking that `actor` may `what` it (PermissionDenied);
    KeyError when there is no such run."""
    row = c.execute("SELECT status, owner, owner_role FROM runs WHERE run_id=?", (run_id,)).fetchone()
    if row is None:
        raise KeyError(f"no run {run_id}")
    check_may_act(actor, run_id, row["owner"], row["owner_role"], what)
    return row["status"]


def default_name(config: RunConfig, actor: Actor | None) -> str:
    """A run's readable default name: the config's own name, else model-optimizer-lr-seed, led by the owner's
    display name in a class (where thirty people start the same default run)."""
    base = config.display_name()
    if actor is not None and actor.role != LOCAL and not config.name:
        base = f"{actor.name}-{base}"
    return fit_name(base)


def _unique_name(c: sqlite3.Connection, base: str) -> str:
    """`base`, or `base #2`, `base #3`...: the first one no run has (a short counter keeps names readable)."""
    taken = {r["name"] for r in c.execute("SELECT name FROM runs WHERE name=? OR substr(name, 1, ?)=?",
                                         (base, len(base) + 2, base + " #"))}
    if base not in taken:
        return base
    counter = 2
    while f"{base} #{counter}" in taken:
        counter += 1
    return fit_name(f"{base[:NAME_MAX - 8]} #{counter}") if len(base) > NAME_MAX - 8 else f"{base} #{counter}"


def _queued_of(c: sqlite3.Connection, actor: Actor) -> int:
    """How many runs `actor` has waiting in the queue (read inside the caller's transaction)."""
    return c.execute(f"SELECT COUNT(*) FROM runs WHERE status='{RunStatus.QUEUED}' AND owner=? AND owner_role=?",
                     (actor.name, actor.role)).fetchone()[0]


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
    return c.execute(f"SELECT {_RUN_SELECT} FROM runs WHERE run_id=?", (chosen["run_id"],)).fetchone()


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT: takes the write lock up front so read-then-write cannot deadlock."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


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


def _connect(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    """A connection to an existing store file (mode=rw: never creates one; see Store._create_if_missing)."""
    from urllib.parse import quote

    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=rw", uri=True, timeout=busy_timeout_s,
                               isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode").fetchone()  # opens the file (and WAL's shared-memory file) now
    except sqlite3.OperationalError as exc:
        # A full or read-only disk cannot create WAL's -shm file. With no -wal file, every committed row is in the
        # main file (the last connection checkpointed it), so the store is read as an immutable file: pages still
        # show the runs, and writes fail with a message that names the cause (store_errors.describe).
        text = str(exc).lower()
        wal = path.with_name(path.name + "-wal")
        if (wal.exists() and wal.stat().st_size > 0) or not ("i/o" in text or "full" in text or "unable to open" in text
                                                                 or "readonly" in text):
            raise
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro&immutable=1", uri=True, isolation_level=None,
                               check_same_thread=False)
        conn.row_factory = sqlite3.Row
        return conn
    try:
        conn.row_factory = sqlite3.Row
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":  # a write: only when it is not WAL yet
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
    except BaseException:
        conn.close()
        raise
    return conn


def _parse_run(run: dict[str, Any]) -> RunConfig:
    """The RunConfig of a run row; UnreadableRun says what is wrong with the row."""
    if run.get("status") not in STATUSES:
        raise UnreadableRun(f"unknown status {str(run.get('status'))[:40]!r}")
    if run.get("kind") not in tuple(RunKind):
        raise UnreadableRun(f"unknown kind {str(run.get('kind'))[:40]!r}")
    try:
        return RunConfig.from_json(run["config"])
    except (ValueError, TypeError, KeyError, RecursionError) as exc:
        raise UnreadableRun(f"its config is not readable: {str(exc)[:200]}") from None


def _check_fence(c: sqlite3.Connection, fence: Fence | None) -> None:
    """Inside a write transaction: LeaseLost unless `fence` (run_id, lease) still owns its running run."""
    if fence is None:
        return
    run_id, lease = fence
    row = c.execute("SELECT status, lease FROM runs WHERE run_id=?", (run_id,)).fetchone()
    if row is None or row["lease"] != lease or row["status"] != RunStatus.RUNNING:
        state = "deleted" if row is None else (f"{row['status']}" if row["lease"] == lease else "claimed again")
        raise LeaseLost(f"run {run_id} is no longer this worker's (lease {lease}; the run is {state})")


ETA_AFTER_S = 5.0  # seconds a run trains before its ETA is shown


def _progress(run: dict[str, Any]) -> dict[str, Any]:
    """Progress fraction, ETA and duration derived from the stored step counters and timestamps."""
    total, step = run.get("total_steps") or 0, run.get("step") or 0
    progress = min(1.0, step / total) if total else 0.0
    started, finished = run.get("started_at"), run.get("finished_at")
    now = time.time()
    duration = ((finished or now) - started) if started else None
    eta = None
    # no ETA until it is stable: the first seconds (data loading, warm-up) say little about the pace
    if run.get("status") == RunStatus.RUNNING and started and 0 < step < total and now - started >= ETA_AFTER_S:
        eta = (now - started) / progress * (1 - progress)
    if run.get("status") == RunStatus.COMPLETED:
        progress = 1.0
    return {"progress": progress, "eta_s": eta, "duration_s": duration}
