"""Writing a script's rows off its own thread: the caller appends to a list under a lock (a fraction of a
microsecond per row); a flusher thread takes the list every FLUSH_S seconds (or at once when it holds FLUSH_ROWS
rows) and writes it through the store in one transaction (`Store.log_batch`).

The same rules as the workers' sink (engine.runs.worker.StoreSink), for a writer without a lease: a busy store
("database is locked") or a failing one keeps the rows for the next try, so nothing is lost; when the caller
logs faster than the store takes rows, `append` waits once MAX_PENDING rows are queued rather than grow without
bound. Other writes (histograms, texts, config updates) go through the same thread in order.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Callable

FLUSH_S = 0.5
FLUSH_ROWS = 50_000  # a batch this large is written at once: a transaction per ~0.4 s of SQLite at 140k rows/s
MAX_PENDING = 2_000_000  # rows queued before a logging call waits for the flusher (about 200 MB of tuples)
WRITE_PATIENCE_S = 3600.0  # how long close() waits out a locked store for the last rows


class ScriptSink:
    """Rows (run_id, step, epoch, key, value, wall_time) and other writes of one process's runs, written by one
    flusher thread through `store`."""

    def __init__(self, store, on_non_finite: Callable[[str, str, int, float], None] | None = None):
        self.store = store
        self.lock = threading.Lock()
        self.rows: list[tuple] = []  # appended under `lock` by Run.log, swapped out by the flusher
        self.on_non_finite = on_non_finite
        self._writes: list[Callable[[], None]] = []
        self._pending: list[tuple] = []  # taken but not yet written (the store was busy)
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._flushing = threading.Lock()
        self.failing: str | None = None  # the last write error, while writes fail
        self._warned_failing = False
        self._thread = threading.Thread(target=self._loop, name="trainlens-flush", daemon=True)
        self._thread.start()

    def full(self) -> None:
        """Called by a caller that saw FLUSH_ROWS rows queued: wake the flusher, and wait while MAX_PENDING are."""
        self._wake.set()
        while len(self.rows) + len(self._pending) >= MAX_PENDING and not self._closed.is_set():
            time.sleep(0.01)

    def write(self, operation: Callable[[], None]) -> None:
        """Run a store write (an artifact, a config update) on the flusher thread, after the rows queued before it."""
        with self.lock:
            self._writes.append(operation)
        self._wake.set()

    def flush(self, patience_s: float = 0.0) -> bool:
        """Write everything queued now; with `patience_s`, wait out a busy store that long. True when all landed."""
        from engine.runs.store.errors import is_locked

        deadline = time.monotonic() + patience_s
        wait = 0.05
        while True:
            try:
                self._flush_once()
                return True
            except Exception as exc:  # noqa: BLE001 - sqlite3 errors and anything a write raises: keep the rows
                import sqlite3

                if not isinstance(exc, sqlite3.DatabaseError):
                    raise
                self._note_failure(exc)
                if time.monotonic() + wait > deadline:
                    return False
                if not is_locked(exc):
                    wait = max(wait, 0.5)
            time.sleep(wait)
            wait = min(1.0, wait * 2)

    def _flush_once(self) -> None:
        with self._flushing:
            with self.lock:
                taken, self.rows = self.rows, []
                writes, self._writes = self._writes, []
            self._check(taken)
            self._pending += taken
            try:
                if self._pending:
                    self.store.log_batch(self._pending)
                    self._pending = []
                while writes:
                    writes[0]()
                    writes.pop(0)
            finally:
                if writes:  # not written yet: first in line next time
                    with self.lock:
                        self._writes[:0] = writes
            self.failing, self._warned_failing = None, False

    def _check(self, rows: list[tuple]) -> None:
        """Off the caller's thread: tell the run about non-finite values (a diverged loss)."""
        if self.on_non_finite is None:
            return
        for run_id, step, _, key, value, _ in rows:
            if value != value or value in (math.inf, -math.inf):
                self.on_non_finite(run_id, key, step, value)

    def _note_failure(self, exc: Exception) -> None:
        from engine.runs.store.errors import is_locked

        self.failing = f"{type(exc).__name__}: {exc}"
        if not is_locked(exc) and not self._warned_failing:
            self._warned_failing = True
            from trainlens._values import warn

            warn(f"trainlens: the store could not be written ({exc}); rows are kept in memory and retried")

    def _loop(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(FLUSH_S)
            self._wake.clear()
            self.flush()

    def close(self, patience_s: float = WRITE_PATIENCE_S) -> bool:
        """Stop the flusher and write what is left, waiting out a busy store up to `patience_s`."""
        self._closed.set()
        self._wake.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()
        return self.flush(patience_s)
