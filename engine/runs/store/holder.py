"""Who holds the store's write lock: the process, named for a person (a worker and its run, the dashboard, the
command line, another program), read from the kernel's own lock table.

In WAL mode SQLite's write lock is a POSIX lock on byte 120 of the `-shm` file, and Linux lists every such lock
with the pid of its owner in /proc/locks. So a "store busy" message can say who holds the lock, whatever the
program (a TrainLens worker, `sqlite3` in a terminal, a backup tool), without any writer having to announce
itself first, and without a record that could be stale: the kernel drops the lock with the process. Elsewhere
(another OS, /proc hidden) the holder is simply unknown and the message says "another program".

A holder that is one of our own workers, frozen (SIGSTOP, a debugger, a suspended terminal) while inside a write
transaction, blocks every writer for as long as it stays frozen: the reaper ends it (engine.runs.store.workers).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

WAL_WRITE_LOCK_BYTE = 120  # SQLite's WAL_WRITE_LOCK: 120 + 0 in the shm file's lock bytes (sqlite3.c, WALINDEX_LOCK_OFFSET)


def write_lock_holder(path: Path) -> int | None:
    """The pid of the process holding the write lock of the store at `path`; None when free or unknown."""
    try:
        inode = os.stat(f"{path}-shm").st_ino
        with open("/proc/locks") as locks:
            lines = locks.read().splitlines()
    except OSError:
        return None
    for line in lines:
        # "13: POSIX  ADVISORY  WRITE 28432 fe:00:2228407 120 120" (a blocked waiter's line starts "13: ->")
        parts = line.split()
        if len(parts) < 8 or parts[1] == "->" or parts[3] != "WRITE":
            continue
        try:
            if int(parts[5].rsplit(":", 1)[1]) == inode and int(parts[6]) <= WAL_WRITE_LOCK_BYTE <= _end(parts[7]):
                return int(parts[4])
        except (ValueError, IndexError):
            continue
    return None


def _end(text: str) -> int:
    return 2**63 if text == "EOF" else int(text)


def process_state(pid: int) -> str | None:
    """The kernel's one-letter state of a process on this host (R, S, D, T stopped, t traced, Z...); None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


STOPPED_STATES = ("T", "t")  # SIGSTOP / Ctrl-Z, or stopped under a debugger


def describe_process(pid: int, worker: dict | None) -> str:
    """A person's name for process `pid`: the TrainLens worker (`worker`: its row in the workers table) and its run,
    else what its command line says it is."""
    state = process_state(pid)
    frozen = " (frozen: stopped by a signal, a debugger or a suspended terminal)" if state in STOPPED_STATES else ""
    if worker is not None:
        role = "the Ray dispatcher" if worker.get("device") == "ray" else f"TrainLens worker {worker['worker_id']}"
        run = f" training run {worker['run_id']}" if worker.get("run_id") else ""
        return f"{role} (pid {pid}){run}{frozen}"
    return f"{_program(pid)} (pid {pid}){frozen}"


def _program(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return "a process"
    text = " ".join(argv)
    if pid == os.getpid():
        return "this very process"
    if "streamlit" in text:
        return "the TrainLens dashboard"
    if "-m engine" in text or (argv and os.path.basename(argv[0]) == "trainlens") or " trainlens " in f" {text} ":
        return "a TrainLens command (" + " ".join(argv[1:5])[:80] + ")"
    shown = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(argv[:4]))[:80]
    return f"another program ({shown})" if shown else "another program"


def describe_holder(path: Path) -> str | None:
    """Who holds the write lock of the store at `path`, in words (None when nobody or unknown). Reads the workers
    table with a connection of its own, which a held write lock does not block (WAL)."""
    pid = write_lock_holder(path)
    if pid is None:
        return None
    return describe_process(pid, _worker_with_pid(path, pid))


def _worker_with_pid(path: Path, pid: int) -> dict | None:
    import socket
    from urllib.parse import quote

    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=1.0)
        try:
            conn.row_factory = sqlite3.Row
            # the run from the runs table: a claim records its worker at once, the worker's heartbeat a second later
            row = conn.execute("SELECT w.worker_id, w.device, (SELECT r.run_id FROM runs r WHERE r.worker_id=w.worker_id "
                               "AND r.status='running' LIMIT 1) AS run_id FROM workers w WHERE w.pid=? AND w.host=? "
                               "AND w.status IN ('idle', 'busy') ORDER BY w.heartbeat_at DESC LIMIT 1",
                               (pid, socket.gethostname())).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return dict(row) if row else None
