"""What can go wrong with the run store's file, said in one line, and waiting out a busy store.

SQLite reports every problem as a `sqlite3.DatabaseError` (or its `OperationalError` subclass) whose text is
terse ("file is not a database", "database or disk is full"). `StoreUnavailable` carries a sentence a user can act
on: which file, what is wrong, what to do (free space, restore the automatic backup). The CLI prints it and exits
2; the dashboard shows it as a page-level error; a worker stops cleanly.

`retry_locked` is for the writers that must not give up on a busy store (a worker's heartbeat, metric flushes,
run claims): "database is locked" means another process holds the write lock longer than the connection's busy
timeout (30 s for the store's own connections, `Store.BUSY_TIMEOUT_S`; 2 s per try for a worker's, which then
retries), which a long transaction, a backup or a stalled disk can do. Their work is kept and retried with backoff.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")

BACKUPS_DIR = "backups"  # under TRAINLENS_HOME: trainlens-YYYYmmdd-HHMMSS.db, the newest few kept


class StoreUnavailable(RuntimeError):
    """The store's file cannot be used as it is. `str()` is the whole user-facing sentence."""

    def __init__(self, path: Path, problem: str, advice: str):
        self.path, self.problem, self.advice = Path(path), problem, advice
        super().__init__(f"the run store {self.path} {problem}. {advice}")


def is_locked(exc: BaseException) -> bool:
    """True for SQLite's transient contention errors (another connection holds the lock)."""
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def describe(exc: sqlite3.DatabaseError, path: Path) -> StoreUnavailable:
    """The StoreUnavailable that says what `exc`, raised while using the store at `path`, means for a user."""
    import shutil

    text = str(exc).lower()
    try:
        disk_full = shutil.disk_usage(path.parent).free < 1024 * 1024
    except OSError:
        disk_full = False
    if "full" in text or disk_full:
        return StoreUnavailable(path, "cannot be written: the disk is full",
                                f"Free space on the disk holding {path.parent} and try again; nothing was lost "
                                "that was already saved")
    if is_locked(exc):
        from engine.runs.store.holder import describe_holder

        holder = describe_holder(path)  # the kernel's lock table names the process, when this OS shows it
        return StoreUnavailable(path, f"is busy: {holder or 'another program'} has held its write lock for over 30 s",
                                "Try again in a moment; if it persists, end " + ("that process" if holder else
                                                                                 "the program holding it"))
    if "readonly" in text or "read-only" in text or "unable to open" in text or "permission" in text:
        return StoreUnavailable(path, f"cannot be opened for writing ({exc})",
                                f"Check that {path.parent} exists and is writable by this user")
    return damaged(path, str(exc))


def damaged(path: Path, problem: str) -> StoreUnavailable:
    """The message for a store file that is not a readable SQLite database; it names the newest backup."""
    backup = newest_backup(path.parent)
    if backup is not None:
        advice = (f"TrainLens left it as it is. Restore the automatic backup of {time.ctime(backup.stat().st_mtime)}: "
                  f"stop TrainLens, then `cp {backup} {path}`; or move the damaged file aside to start an empty store")
    else:
        advice = ("TrainLens left it as it is and has no backup of it. Move it aside (e.g. `mv "
                  f"{path} {path}.damaged`) to start an empty store; checkpoints under {path.parent / 'checkpoints'} "
                  "are kept")
    return StoreUnavailable(path, f"is damaged ({problem})", advice)


def unreadable_version(path: Path, value: object, current_version: int | None) -> StoreUnavailable:
    """The message for a store whose schema_version row is not a number: only that value is unreadable, not the
    whole file, so the advice is to put the value right (`current_version`: the number its tables show, when they
    are exactly this TrainLens's schema) or to restore the backup, never to move the whole store aside."""
    problem = (f"has an unreadable schema version ({str(value)[:40]!r} in its meta table, where a number belongs); "
               "the rest of the file may well be intact")
    fixes = []
    if current_version is not None:  # its tables are exactly this version's: the number can only be that one
        fixes.append(f"its tables are those of schema {current_version}, so set the number back: stop TrainLens, then "
                     f"`sqlite3 {path} \"UPDATE meta SET value='{current_version}' WHERE key='schema_version'\"`")
    backup = newest_backup(path.parent)
    if backup is not None:
        fixes.append(f"restore the automatic backup of {time.ctime(backup.stat().st_mtime)}: stop TrainLens, then "
                     f"`cp {backup} {path}`")
    if not fixes:
        fixes.append("its tables do not show which number it needs and there is no backup: ask whoever changed the "
                     "file which version it was")
    advice = "TrainLens left it as it is. " + "; or ".join(f[:1].upper() + f[1:] if i == 0 else f
                                                          for i, f in enumerate(fixes))
    return StoreUnavailable(path, problem, advice)


def newest_backup(home: Path) -> Path | None:
    folder = Path(home) / BACKUPS_DIR
    backups = sorted(folder.glob("trainlens-*.db")) if folder.is_dir() else []
    return backups[-1] if backups else None


def retry_locked(operation: Callable[[], T], *, give_up_after_s: float, first_wait_s: float = 0.05,
                 max_wait_s: float = 1.0, stop: Callable[[], bool] | None = None) -> T:
    """Call `operation` until it does not fail with "database is locked", waiting longer between tries (up to
    `max_wait_s`), for at most `give_up_after_s` seconds (then the last error is raised). Other errors are raised
    at once. `stop()` returning True ends the waiting early (the caller is shutting down)."""
    deadline = time.monotonic() + give_up_after_s
    wait = first_wait_s
    while True:
        try:
            return operation()
        except sqlite3.OperationalError as exc:
            if not is_locked(exc) or time.monotonic() + wait > deadline or (stop is not None and stop()):
                raise
        time.sleep(wait)
        wait = min(max_wait_s, wait * 2)
