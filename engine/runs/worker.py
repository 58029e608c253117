"""A warm worker process: imports torch once, then takes queued runs from the store one after another.

Started by engine.runs.runner as `python -m engine.runs.worker` (a fresh interpreter, never a fork of a process
that ran torch). A heartbeat thread refreshes the worker's and its run's heartbeat every second, relays
cancel requests, and reaps dead peers, so a killed worker's run is marked interrupted within seconds.
Metrics are buffered and written by a flusher thread in batched transactions, off the training step.
"""

from __future__ import annotations

import argparse
import os
import queue
import socket
import sys
import threading
import time
import traceback
import uuid

from engine.records import RunStatus
from engine.runs.procs import pid_alive

HEARTBEAT_S = 1.0
FLUSH_S = 0.5
FLUSH_ROWS = 2000
POLL_S = 0.2


class StoreSink:
    """Buffers metric rows in a queue; a thread commits them every FLUSH_S seconds or FLUSH_ROWS rows.

    `mirror_to`: a helper job's sink also files every artifact (its result) on the run the job serves, where
    the run report finds it."""

    def __init__(self, store, run_id: str, mirror_to: str | None = None):
        self.store, self.run_id, self.mirror_to = store, run_id, mirror_to
        self._rows: queue.SimpleQueue = queue.SimpleQueue()
        self._progress: tuple[int, int, int] | None = None
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._flush_loop, name=f"flush-{run_id}", daemon=True)
        self._thread.start()

    def log(self, step, epoch, values):
        now = time.time()
        for key, value in values.items():
            self._rows.put((self.run_id, step, epoch, key, float(value), now))

    def progress(self, step, total_steps, epoch):
        self._progress = (step, total_steps, epoch)  # latest wins; written with the next flush

    def checkpoint(self, epoch, kind, path, metrics):
        self.flush()
        self.store.add_checkpoint(self.run_id, epoch, kind, path, metrics)

    def artifact(self, name, value):
        self.store.put_artifact(self.run_id, name, value)
        if self.mirror_to:
            self.store.put_artifact(self.mirror_to, name, value)

    def rewind(self, step):
        self.flush()
        self.store.delete_metrics_after(self.run_id, step)

    def flush(self) -> None:
        rows = []
        while True:
            try:
                rows.append(self._rows.get_nowait())
            except queue.Empty:
                break
        self.store.log_batch(rows)
        progress, self._progress = self._progress, None
        if progress is not None:
            self.store.update_progress(self.run_id, *progress)

    def _flush_loop(self) -> None:
        while not self._closed.wait(FLUSH_S):
            self.flush()

    def close(self) -> None:
        self._closed.set()
        self._thread.join()
        self.flush()


class Worker:
    def __init__(self, worker_id: str, threads: int, idle_exit_s: float):
        import torch

        from engine.runs.store import Store

        torch.set_num_threads(threads)  # cores // concurrent workers: oversubscription halves throughput
        self.store = Store()
        self.worker_id, self.idle_exit_s = worker_id, idle_exit_s
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.host = socket.gethostname()
        self.run_id: str | None = None
        self.cancel = threading.Event()
        self.stop = threading.Event()
        self.store.register_worker(worker_id, os.getpid(), self.host, self.device)

    def heartbeat_loop(self) -> None:
        from engine.runs.store import Store

        store = Store(self.store.path)  # own connection for this thread
        last_reap = 0.0
        while not self.stop.is_set():
            run_id = self.run_id
            if store.worker_heartbeat(self.worker_id, "busy" if run_id else "idle", run_id):
                self.stop.set()
                self.cancel.set()
            if run_id and store.cancel_requested(run_id):
                self.cancel.set()
            if time.time() - last_reap > 2.0:
                store.reap(is_alive=pid_alive)
                last_reap = time.time()
            time.sleep(HEARTBEAT_S)

    def serve(self) -> None:
        threading.Thread(target=self.heartbeat_loop, name="heartbeat", daemon=True).start()
        idle_since = time.time()
        try:
            while not self.stop.is_set():
                run = self.store.claim_next(self.worker_id, self.device)
                if run is None:
                    if time.time() - idle_since > self.idle_exit_s:
                        break
                    time.sleep(POLL_S)
                    continue
                self.execute(run)
                idle_since = time.time()
        finally:
            self.stop.set()
            self.store.mark_worker(self.worker_id, "stopped")

    def execute(self, run: dict) -> None:
        from engine.runs.jobs import job_device, run_job

        run_id = run["run_id"]
        self.cancel.clear()
        self.run_id = run_id
        sink = StoreSink(self.store, run_id, mirror_to=run.get("parent_id"))
        status, error = RunStatus.FAILED, None
        try:
            device = job_device(run["config"], self.device)
            if device != run.get("device"):  # e.g. device='cpu' on a GPU worker: the run must show where it trains
                self.store.set_running(run_id, self.worker_id, device)
            status, error = run_job(run, sink, self.cancel.is_set, device)
        except Exception as exc:  # a bug or bad data must fail the run, never the worker
            error = f"{type(exc).__name__}: {exc}"
            _write_log(run_id, traceback.format_exc())
        finally:
            sink.close()
            if self.cancel.is_set() and status == RunStatus.CANCELLED:
                # a shutdown interrupts (the run can be resumed); a user's cancel cancels
                status = RunStatus.INTERRUPTED if self.stop.is_set() else RunStatus.CANCELLED
                error = "the worker was shut down; resume the run to continue from its last checkpoint" if self.stop.is_set() else error
            self.store.update_status(run_id, status, error)
            self.run_id = None


def _write_log(run_id: str, text: str) -> None:
    from engine.paths import logs_dir

    (logs_dir() / f"{run_id}.log").write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.runs.worker", description="TrainLens training worker")
    parser.add_argument("--threads", type=int, default=max(1, os.cpu_count() or 1))
    parser.add_argument("--idle-exit", type=float, default=float(os.environ.get("TRAINLENS_WORKER_IDLE_S", "1800")),
                        help="exit after this many seconds without work")
    parser.add_argument("--worker-id", default=None)
    args = parser.parse_args(argv)
    Worker(args.worker_id or uuid.uuid4().hex[:8], args.threads, args.idle_exit).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
