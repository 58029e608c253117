"""The store's file: its schema and version, creating and migrating it, backups, the per-thread connection and the
write transaction every other part of the store uses (`StoreBase`, the base of each concern's mixin).

WAL lets readers (pages, the CLI) read while a worker writes; a busy timeout makes a write wait for another
connection's lock instead of failing at once. Each thread gets its own connection (Streamlit serves sessions from
several threads), and a forked process opens its own. The schema is versioned in `meta` so a later change can
migrate it.

Opening writes nothing when the schema is current, so a store on a full or read-only disk still reads. A new store
is built under a temporary name and linked into place, so an empty or non-SQLite `trainlens.db` is always damage:
it is reported (engine.runs.store.errors), never silently replaced.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from engine.classroom import LOCAL
from engine.paths import db_path, make_private, private_dir
from engine.runs.store.errors import BACKUPS_DIR, StoreUnavailable, damaged, describe, unreadable_version
from engine.runs.store.migrations import MEMBERS_SCHEMA, members_by_id

SCHEMA_VERSION = 5  # 2: runs.lease; 3: runs.owner_role, members, queue_turns (class mode); 4: members by id
# (runs.owner_id, seats, rejoin_requests) and runs.claimed_at (the class's time limit): see store.migrations;
# 5: launches (lessons queued whole), runs.pace, pace_at, pace_since (ETAs from a measured pace)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL DEFAULT 'train',      -- a RunKind: train | lr_find | overfit
    name TEXT NOT NULL,
    grp TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL DEFAULT '',           -- the owner's display name when the run was made: a label only
    owner_role TEXT NOT NULL DEFAULT '',      -- local (the OS user) | student | teacher: see engine.classroom
    owner_id TEXT NOT NULL DEFAULT '',        -- class mode: the member who owns it (members.member_id); '' = local
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
    lease INTEGER NOT NULL DEFAULT 0,         -- claim number: a worker's writes apply only under the current one
    claimed_at REAL,                          -- Unix time of the latest claim: the class's time limit counts from it
    pace REAL,                                -- steps per second, smoothed over this claim's progress reports
    pace_at REAL,                             -- Unix time of the last progress report of this claim
    pace_since REAL                           -- Unix time of its first: the pace is measured from there on
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
-- class mode: who is in the class (a member owns runs; the name is a label), their seats (a signed-in browser
-- each), the requests to rejoin that wait for the teacher, and when each owner's queue was last served
""" + MEMBERS_SCHEMA + """
CREATE TABLE IF NOT EXISTS queue_turns (owner TEXT PRIMARY KEY, served_at REAL NOT NULL);
-- lesson launches: every run of one has its group (no other run may take it), one item for the class limits
CREATE TABLE IF NOT EXISTS launches (
    grp TEXT PRIMARY KEY, lesson TEXT NOT NULL, owner TEXT NOT NULL, owner_role TEXT NOT NULL,
    owner_id TEXT NOT NULL DEFAULT '',        -- the class member who launched it ('' for the local user)
    for_class INTEGER NOT NULL DEFAULT 0,     -- 1: the teacher ran it for the whole class (every Lessons page shows it)
    created_at REAL NOT NULL
);
"""


class StoreBase:
    """The store's file and connections; every concern's mixin builds on it (engine.runs.store.Store joins them)."""

    BUSY_TIMEOUT_S = 30.0  # how long a write waits for another connection's lock before "database is locked"

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        try:
            self._create_if_missing()
            for part in ("", "-wal", "-shm"):  # a store made before files were private: made so now
                make_private(f"{self.path}{part}")
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
            make_private(staging)  # the class's names and runs are the owner's alone; SQLite gives -wal/-shm its mode
            try:
                os.link(staging, self.path)
            except FileExistsError:
                pass  # another process created it first: use theirs
        finally:
            for leftover in (staging, staging.with_name(staging.name + "-wal"), staging.with_name(staging.name + "-shm")):
                leftover.unlink(missing_ok=True)

    def _migrate(self) -> None:
        conn = self.conn
        row = None
        try:
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row["value"]) if row else 0
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            version = 0
        except (ValueError, TypeError):
            shown = SCHEMA_VERSION if _has_current_shape(conn) else None
            raise unreadable_version(self.path, row["value"], shown) from None
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
            if "claimed_at" not in columns:  # schema 3 -> 4
                c.execute("ALTER TABLE runs ADD COLUMN claimed_at REAL")
            if "owner_id" not in columns:  # schema 3 -> 4: runs owned by a member, not a name
                c.execute("ALTER TABLE runs ADD COLUMN owner_id TEXT NOT NULL DEFAULT ''")
                members_by_id(c)
            for column in ("pace", "pace_at", "pace_since"):  # schema 4 -> 5 (the launches table is new in 5)
                if column not in columns:
                    c.execute(f"ALTER TABLE runs ADD COLUMN {column} REAL")
            c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def check_readable(self) -> None:
        """Read the runs table once: sqlite3.DatabaseError when the file cannot be read (damaged, not a store).
        The dashboard's health probe before a page draws; opening alone may not touch a damaged page."""
        self.conn.execute("SELECT COUNT(*) FROM runs").fetchone()

    def backup(self, keep: int = 3) -> Path:
        """Copy the store with SQLite's online backup (consistent while workers write) to
        TRAINLENS_HOME/backups/trainlens-YYYYmmdd-HHMMSS.db, keeping the newest `keep`. Returns the copy's path."""
        folder = private_dir(self.path.parent / BACKUPS_DIR)
        target = folder / f"trainlens-{time.strftime('%Y%m%d-%H%M%S')}.db"
        staging = target.with_suffix(".partial")
        dest = sqlite3.connect(staging)
        try:
            self.conn.backup(dest)
        finally:
            dest.close()
        make_private(staging)
        os.replace(staging, target)
        for old in sorted(folder.glob("trainlens-*.db"))[:-keep]:
            old.unlink(missing_ok=True)
        return target

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _has_current_shape(conn: sqlite3.Connection) -> bool:
    """Whether the file's tables and columns are exactly those of this version's schema (so its version number can
    only be SCHEMA_VERSION)."""
    fresh = sqlite3.connect(":memory:")
    try:
        fresh.executescript(_SCHEMA)
        return _shape(fresh) == _shape(conn)
    except sqlite3.DatabaseError:
        return False
    finally:
        fresh.close()


def _shape(conn: sqlite3.Connection) -> dict[str, tuple[str, ...]]:
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()]
    return {t: tuple(r[1] for r in conn.execute(f"PRAGMA table_info('{t}')").fetchall()) for t in tables}


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT: takes the write lock up front so read-then-write cannot deadlock."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def _connect(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    """A connection to an existing store file (mode=rw: never creates one; see StoreBase._create_if_missing)."""
    from urllib.parse import quote

    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=rw", uri=True, timeout=busy_timeout_s,
                               isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode").fetchone()  # opens the file (and WAL's shared-memory file) now
    except sqlite3.OperationalError as exc:
        # A full or read-only disk cannot create WAL's -shm file. With no -wal file, every committed row is in the
        # main file (the last connection checkpointed it), so the store is read as an immutable file: pages still
        # show the runs, and writes fail with a message that names the cause (errors.describe).
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
