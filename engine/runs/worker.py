"""A warm worker process: imports torch once, then takes queued runs from the store one after another.

Started by engine.runs.runner as `python -m engine.runs.worker` (a fresh interpreter, never a fork of a process
that ran torch). A heartbeat thread refreshes the worker's and its run's heartbeat every second, relays
cancel requests, and reaps dead peers, so a killed worker's run is marked interrupted within seconds.
Metrics are buffered and written by a flusher thread in batched transactions, off the training step.

Under faults (each has a test in tests/test_faults.py):
- A busy store ("database is locked": another process holds the write lock longer than the worker's 2 s busy
  timeout, STORE_BUSY_TIMEOUT_S) is waited out: the heartbeat tries again every second, the flusher keeps its rows and retries, claims and final statuses retry
  with backoff. Nothing is dropped, and a pulse file (engine.runs.procs) tells reapers the worker is alive.
- Fencing: the run is claimed under a lease and every write carries it. When a write or a heartbeat finds the
  lease gone (the worker was frozen past the reaper and its run resumed elsewhere, or deleted), the worker stops
  training, discards what it had not written, and exits: it never writes a duplicated step or a stale status.
- Self-fencing: when the store fails for another reason (a full disk, a damaged file) for longer than the
  staleness limit, the worker stops training and exits rather than train on unseen.
"""

from __future__ import annotations

import argparse
import os
import queue
import socket
import sqlite3
import sys
import threading
import time
import traceback
import uuid

from engine.records import RunRecord, RunStatus
from engine.runs.procs import leave_last_words, pid_alive, touch_pulse
from engine.runs.store.errors import is_locked, retry_locked

HEARTBEAT_S = 1.0
FLUSH_S = 0.5
POLL_S = 0.2
WRITE_PATIENCE_S = 3600.0  # how long a must-land write (final status, last rows) waits out a locked store
STORE_BUSY_TIMEOUT_S = 2.0  # a worker's own connections wait this long per try, then retry: never 30 s stuck


class StoreSink:
    """Buffers metric rows; a thread commits them every FLUSH_S seconds in one transaction, under the run's lease.

    Rows that could not be written (a locked store, a full disk) are kept and written with the next flush, so a
    busy store delays rows and never loses them. Once a write finds the lease gone (`LeaseLost`), `lost` is set,
    everything not yet written is discarded (it belongs to a run that is someone else's now) and further calls
    write nothing. `mirror_to`: a helper job's sink also files every artifact (its result) on the run the job
    serves, where the run report finds it."""

    def __init__(self, store, run_id: str, mirror_to: str | None = None, lease: int | None = None):
        self.store, self.run_id, self.mirror_to = store, run_id, mirror_to
        self.fence = None if lease is None else (run_id, lease)
        self.lost = threading.Event()
        self.failing_since: float | None = None  # when writes started failing for a reason other than a lock
        self.failure = ""  # what that reason is (SQLite's words: "database or disk is full"...)
        self._rows: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: list[tuple] = []  # taken from the queue, not yet committed
        self._progress: tuple[int, int, int] | None = None
        self._lock = threading.Lock()  # one flush at a time: the flusher thread and the training thread both flush
        self._closed = threading.Event()
        # the run's first rows are written at once, not up to FLUSH_S later: the first point is what a user who
        # just clicked Start waits for; later rows go in batches (set by `log` once, read by the flusher)
        self._first_rows = threading.Event()
        self._thread = threading.Thread(target=self._flush_loop, name=f"flush-{run_id}", daemon=True)
        self._thread.start()

    def log(self, step, epoch, values):
        if self.lost.is_set():
            return
        now = time.time()
        for key, value in values.items():
            self._rows.put((self.run_id, step, epoch, key, float(value), now))
        if not self._first_rows.is_set():
            self._first_rows.set()

    def progress(self, step, total_steps, epoch):
        self._progress = (step, total_steps, epoch)  # latest wins; written with the next flush

    def checkpoint(self, epoch, kind, path, metrics, staged=None):
        def write():
            if self.flush(must_land=True):  # the rows up to the checkpoint first: a resume rewinds to its step
                self.store.add_checkpoint(self.run_id, epoch, kind, path, metrics, fence=self.fence, staged=staged)

        if not self._publish(write) and staged:
            _discard(staged)  # a stale worker's file never replaces the current owner's

    def artifact(self, name, value):
        self._publish(lambda: self.store.put_artifact(self.run_id, name, value, fence=self.fence))
        if self.mirror_to:
            self._publish(lambda: self.store.put_artifact(self.mirror_to, name, value, fence=self.fence))

    def rewind(self, step):
        def write():
            if self.flush(must_land=True):
                self.store.delete_metrics_after(self.run_id, step, fence=self.fence)

        self._publish(write)

    def _publish(self, write) -> bool:
        """Run a write the training thread waits for (a checkpoint, an artifact): retried while the store is
        locked; dropped once the lease is lost. Returns whether it was written."""
        from engine.runs.store import LeaseLost

        if self.lost.is_set():
            return False
        try:
            retry_locked(write, give_up_after_s=WRITE_PATIENCE_S, stop=self.lost.is_set)
        except LeaseLost:
            self.lost.set()
        return not self.lost.is_set()

    def flush(self, must_land: bool = False) -> bool:
        """Write the queued rows and progress. Returns True when everything is written; False when rows wait for
        the next try (the store is busy or failing), or were discarded (lease lost). `must_land`: wait out a locked
        store (the training thread, before a checkpoint) instead of leaving the rows for the next flush."""
        from engine.runs.store import LeaseLost

        with self._lock:
            while True:
                try:
                    self._pending.append(self._rows.get_nowait())
                except queue.Empty:
                    break
            if self.lost.is_set():
                self._pending.clear()
                return False
            progress = self._progress

            def write():
                self.store.log_batch(self._pending, fence=self.fence)
                self._pending = []
                if progress is not None:
                    self.store.update_progress(self.run_id, *progress, fence=self.fence)
                    if self._progress == progress:
                        self._progress = None

            try:
                if must_land:
                    retry_locked(write, give_up_after_s=WRITE_PATIENCE_S, stop=self.lost.is_set)
                else:
                    write()
                self.failing_since = None
                return True
            except LeaseLost:
                self.lost.set()
                self._pending.clear()
                return False
            except sqlite3.DatabaseError as exc:
                if not is_locked(exc) and self.failing_since is None:
                    self.failing_since, self.failure = time.monotonic(), str(exc)
                if must_land:
                    raise
                return False

    def _flush_loop(self) -> None:
        self._first_rows.wait(FLUSH_S)  # woken by the first row (or after FLUSH_S), then every FLUSH_S
        while not self._closed.is_set():
            self.flush()
            if self._closed.wait(FLUSH_S):
                break

    def close(self, give_up=lambda: False) -> bool:
        """Stop the flusher and write what is left, waiting out a locked store; `give_up()` ends the wait
        (the worker is fencing itself). Returns whether every row was written."""
        self._closed.set()
        self._first_rows.set()  # a flusher still waiting for the first row stops now
        self._thread.join()
        while not self.flush():
            if self.lost.is_set() or give_up():
                return False
            time.sleep(0.5)
        return True


def _discard(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class Worker:
    def __init__(self, worker_id: str, threads: int, idle_exit_s: float):
        import torch

        from engine.runs.store import Store

        torch.set_num_threads(threads)  # cores // concurrent workers: oversubscription halves throughput
        Store.BUSY_TIMEOUT_S = STORE_BUSY_TIMEOUT_S  # this process retries instead of blocking 30 s per call
        self.store = Store()
        self.worker_id, self.idle_exit_s = worker_id, idle_exit_s
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.host = socket.gethostname()
        self.run_id: str | None = None
        self.lease: int | None = None
        self.sink: StoreSink | None = None
        self.cancel = threading.Event()
        self.stop = threading.Event()
        self.fenced = threading.Event()  # the run is not ours any more, or the store is unusable: stop, exit
        self.fence_reason = ""
        touch_pulse(worker_id)
        threading.Thread(target=self.pulse_loop, name="pulse", daemon=True).start()
        retry_locked(lambda: self.store.register_worker(worker_id, os.getpid(), self.host, self.device),
                     give_up_after_s=WRITE_PATIENCE_S)

    def pulse_loop(self) -> None:
        """Touch the pulse file every second whatever the store does (see engine.runs.procs): reapers on this host
        then know a worker whose heartbeat stopped is waiting on the store, not frozen."""
        while not self.stop.is_set():
            try:
                touch_pulse(self.worker_id)
            except OSError:
                pass  # a missing pulse only makes reapers fall back to the heartbeat's age
            time.sleep(HEARTBEAT_S)

    def _fence(self, reason: str) -> None:
        """Stop training the current run and leave: it is someone else's, or the store cannot record it."""
        if not self.fenced.is_set():
            self.fence_reason = reason
            leave_last_words(self.worker_id, reason)  # for the reaper: a full disk leaves no room for a log line
            try:
                _write_log(self.run_id or f"worker-{self.worker_id}", f"worker {self.worker_id} stopped: {reason}\n")
            except OSError:
                pass
        self.fenced.set()
        self.cancel.set()
        self.stop.set()

    def should_stop(self) -> bool:
        sink = self.sink
        if sink is not None:
            if sink.lost.is_set():
                self._fence("its run was claimed by another worker, or deleted (lease lost)")
            elif sink.failing_since is not None and time.monotonic() - sink.failing_since > _stale_limit():
                self._fence(f"the store could not be written for over {_stale_limit():.0f} s ({sink.failure})")
        return self.cancel.is_set()

    def heartbeat_loop(self) -> None:
        from engine.runs.store import Store

        store = Store(self.store.path)  # own connection for this thread
        last_reap, failing_since = 0.0, None
        while not self.stop.is_set():
            run_id, lease = self.run_id, self.lease
            try:
                reply = store.heartbeat(self.worker_id, "busy" if run_id else "idle", run_id, lease)
                failing_since = None
                if reply["stop"] and run_id and reply["lease_lost"]:
                    self._fence("a reaper declared this worker dead and its run is no longer its own")
                elif reply["stop"]:
                    self.stop.set()
                    self.cancel.set()
                elif reply["lease_lost"] and run_id == self.run_id:
                    self._fence("its run was claimed by another worker, or deleted (lease lost)")
                if reply["cancel"]:
                    self.cancel.set()
                if time.time() - last_reap > 2.0:
                    store.reap(is_alive=pid_alive)
                    last_reap = time.time()
            except sqlite3.DatabaseError as exc:
                # locked: try again next second (the pulse keeps reapers off); anything else for longer than the
                # staleness limit means nobody can see this worker: fence itself
                if not is_locked(exc):
                    failing_since = failing_since or time.monotonic()
                    if time.monotonic() - failing_since > _stale_limit():
                        self._fence(f"the store could not be reached for over {_stale_limit():.0f} s ({exc})")
            except Exception as exc:  # never let the heartbeat die silently: the worker would train unseen
                _write_log(f"worker-{self.worker_id}", traceback.format_exc())
                self._fence(f"its heartbeat failed ({type(exc).__name__}: {exc})")
            time.sleep(HEARTBEAT_S)

    def serve(self) -> None:
        threading.Thread(target=self.heartbeat_loop, name="heartbeat", daemon=True).start()
        from engine.runs.warmup import warm_up

        warmed = False  # the first run's one-time costs paid (engine/runs/warmup.py), by a warm-up or by a run
        idle_since = time.time()
        try:
            while not self.stop.is_set():
                try:
                    run = retry_locked(lambda: self.store.claim_next(self.worker_id, self.device),
                                       give_up_after_s=60.0, stop=self.stop.is_set)
                except sqlite3.DatabaseError as exc:
                    _write_log(f"worker-{self.worker_id}", f"could not take a run: {exc}\n")
                    if not is_locked(exc):
                        break  # a full disk or a damaged store: leave; the runner reports why workers cannot start
                    continue
                if run is None:
                    if not warmed:
                        # nothing queued yet (a pool warmed at the server's start): pay them now, so the first run
                        # starts at once. A worker started for a queued run takes it first and pays them inside it:
                        # the same work, without a second worker's warm-up sharing the cores before the claim.
                        warm_up(lambda text: _write_log(f"worker-{self.worker_id}", text))
                        warmed = True
                        continue
                    if time.time() - idle_since > self.idle_exit_s:
                        break
                    time.sleep(POLL_S)
                    continue
                self.execute(run)
                warmed = True
                idle_since = time.time()
        finally:
            self.stop.set()
            try:
                self.store.mark_worker(self.worker_id, "stopped")
            except sqlite3.DatabaseError:
                pass  # reapers will mark it dead once its process is gone

    def execute(self, run: RunRecord) -> None:
        from engine.runs.jobs import job_device, run_job

        run_id = run["run_id"]
        self.cancel.clear()
        self.run_id, self.lease = run_id, run.get("lease")
        fence = (run_id, self.lease) if self.lease is not None else None
        self.sink = sink = StoreSink(self.store, run_id, mirror_to=run.get("parent_id"), lease=self.lease)
        status, error = RunStatus.FAILED, None
        try:
            device = job_device(run["config"], self.device)
            if device != run.get("device"):  # e.g. device='cpu' on a GPU worker: the run must show where it trains
                retry_locked(lambda: self.store.set_running(run_id, self.worker_id, device, fence=fence),
                             give_up_after_s=WRITE_PATIENCE_S)
            status, error = run_job(run, sink, self.should_stop, device)
        except Exception as exc:  # a bug or bad data must fail the run, never the worker
            error = f"{type(exc).__name__}: {exc}"
            _write_log(run_id, traceback.format_exc())
        finally:
            self._finish(run_id, fence, sink, status, error)

    def _finish(self, run_id, fence, sink: StoreSink, status, error) -> None:
        from engine.runs.store import LeaseLost

        try:
            sink.close(give_up=lambda: self.should_stop() and self.fenced.is_set())
            if self.fenced.is_set():
                return  # the run is someone else's (or the store is unusable): no final word from this worker
            if self.cancel.is_set() and status == RunStatus.CANCELLED:
                # a shutdown interrupts (the run can be resumed); a user's cancel cancels
                status = RunStatus.INTERRUPTED if self.stop.is_set() else RunStatus.CANCELLED
                error = "the worker was shut down; resume the run to continue from its last checkpoint" if self.stop.is_set() else error
            retry_locked(lambda: self.store.update_status(run_id, status, error, fence=fence),
                         give_up_after_s=WRITE_PATIENCE_S)
        except (sqlite3.DatabaseError, LeaseLost) as exc:
            self._fence(f"its final status could not be written ({exc})")
        finally:
            self.run_id, self.lease, self.sink = None, None, None


def _stale_limit() -> float:
    from engine.runs.store import Store

    return Store.STALE_AFTER_S


def _write_log(run_id: str, text: str) -> None:
    from engine.paths import logs_dir

    (logs_dir() / f"{run_id}.log").write_text(text)


def main(argv: list[str] | None = None) -> int:
    from engine import settings
    from engine.runs import pool_health

    parser = argparse.ArgumentParser(prog="python -m engine.runs.worker", description="TrainLens training worker")
    parser.add_argument("--threads", type=int, default=max(1, os.cpu_count() or 1))
    parser.add_argument("--idle-exit", type=float, default=settings.value_or_default("TRAINLENS_WORKER_IDLE_S"),
                        help="exit after this many seconds without work")
    parser.add_argument("--worker-id", default=None)
    args = parser.parse_args(argv)
    try:
        settings.check()  # started by hand with a bad setting: say so, as the runner would have
        worker = Worker(args.worker_id or uuid.uuid4().hex[:8], args.threads, args.idle_exit)
    except Exception as exc:  # noqa: BLE001 - whatever stops a start is recorded for the pages and the CLI
        reason = " ".join(str(exc).split()) or type(exc).__name__
        pool_health.record_failure(reason, what="worker")
        print(f"worker could not start: {reason}", file=sys.stderr)
        return 1
    pool_health.clear()
    worker.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
