"""The runner: enqueue runs and keep a pool of warm worker processes alive to take them.

Workers are detached processes (their own session), so runs keep training when the dashboard or
CLI that started them exits; any later dashboard or CLI finds them through the store. The pool size
defaults to one worker per GPU, else 2 on CPU, each with cores // workers threads: measured on a 2-core machine
(a 1024-wide MLP, aggregate steps/s), 2 jobs x 1 thread gave 140 against 105 for 1 job x 2 threads and 57 for
2 jobs x 2 threads, because oversubscribed threads fight over the cores.
"""

from __future__ import annotations

import fcntl
import functools
import getpass
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from engine.config import RunConfig
from engine.paths import logs_dir, trainlens_home
from engine.records import TERMINAL, RunKind, RunStatus
from engine.runs.executor import executor_name, local_pool_size, worker_module
from engine.runs.store import Store
from engine.runs.procs import pid_alive

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # no torch/CUDA: CPU workers only
        return 0


class RunHandle:
    """A submitted run: status(), cancel(), wait() (the MLflow-style executor handle)."""

    def __init__(self, store: Store, run_id: str):
        self.store, self.run_id = store, run_id

    def status(self) -> str:
        run = self.store.get_run(self.run_id)
        return run["status"] if run else "deleted"

    def cancel(self) -> str:
        return self.store.request_cancel(self.run_id)

    def wait(self, timeout: float | None = None, poll: float = 0.25) -> str:
        deadline = None if timeout is None else time.time() + timeout
        while True:
            status = self.status()
            if status in TERMINAL or status == "deleted":
                return status
            if deadline is not None and time.time() > deadline:
                raise TimeoutError(f"run {self.run_id} still {status} after {timeout} s")
            time.sleep(poll)


class Runner:
    def __init__(self, store: Store | None = None, workers: int | None = None):
        self.store = store or Store()
        env_workers = os.environ.get("TRAINLENS_WORKERS")
        self._workers, self._env_workers = workers, env_workers

    # pool facts are computed lazily: counting GPUs imports torch (seconds), which `cancel` does not need
    @functools.cached_property
    def gpus(self) -> int:
        return gpu_count()

    @functools.cached_property
    def size(self) -> int:
        if executor_name() == "ray":
            return 1  # one dispatcher on this host; Ray schedules the runs on the cluster
        size = self._workers or (int(self._env_workers) if self._env_workers else local_pool_size(self.gpus))
        if size < 1:
            raise ValueError(f"TRAINLENS_WORKERS={size}: the worker pool needs at least 1 worker")
        return size

    @property
    def threads(self) -> int:
        return max(1, (os.cpu_count() or 1) // self.size)

    # ---- runs ----
    def submit(self, config: RunConfig, *, owner: str | None = None, name: str | None = None,
               group: str | None = None, kind: str = RunKind.TRAIN, parent_id: str | None = None) -> RunHandle:
        """Queue a run (kind 'train') or a helper job ('lr_find', 'overfit' for `parent_id`) and make sure workers run."""
        run_id = self.store.create_run(config, kind=kind, owner=owner if owner is not None else _user(), name=name,
                                       group=group, parent_id=parent_id)
        self.ensure_workers()
        return RunHandle(self.store, run_id)

    def cancel(self, run_id: str) -> str:
        return self.store.request_cancel(run_id)

    def resume(self, run_id: str) -> RunHandle:
        self.store.resume_run(run_id)
        self.ensure_workers()
        return RunHandle(self.store, run_id)

    def delete(self, run_id: str) -> None:
        import shutil

        self.store.delete_run(run_id)
        shutil.rmtree(trainlens_home() / "checkpoints" / run_id, ignore_errors=True)

    # ---- workers ----
    def reap(self) -> list[str]:
        return self.store.reap(is_alive=pid_alive)

    def recover(self) -> list[str]:
        """Reap dead workers, then start the pool if queued work is left without a live worker.

        Workers reap each other; this covers the case where every worker died (killed, out of memory), for
        whoever is watching: the dashboard and `train --wait`. Returns the run ids that were interrupted."""
        interrupted = self.reap()
        if not self.store.list_runs(status=[RunStatus.QUEUED]).empty and self.store.live_workers().empty:
            self.ensure_workers()
        return interrupted

    def ensure_workers(self) -> int:
        """Reap dead workers, then start enough to fill the pool on this host; returns how many started."""
        lock_path = trainlens_home() / "runner.lock"
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two dashboards/CLIs must not both fill the pool
            self.reap()
            live = self.store.live_workers()
            live = live[live["host"] == socket.gethostname()]
            # the Ray dispatcher registers with device 'ray': it is not a local worker, nor the other way round
            live = live[(live["device"] == "ray") == (executor_name() == "ray")]
            missing = self.size - len(live)
            for index in range(max(0, missing)):
                self._start_worker(len(live) + index)
            return max(0, missing)

    def _start_worker(self, index: int) -> subprocess.Popen:
        env = dict(os.environ)
        env["TRAINLENS_HOME"] = str(trainlens_home())
        env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        module = worker_module()
        if module == "engine.runs.worker" and self.gpus:  # TRAINLENS_WORKERS_PER_GPU workers share each GPU
            env["CUDA_VISIBLE_DEVICES"] = str(index % self.gpus)
        log = open(logs_dir() / "workers.log", "ab")
        worker_id = uuid.uuid4().hex[:8]
        # A fresh interpreter (fork+exec), never a bare fork of this process: forking after torch ran hangs.
        # start_new_session: the worker outlives the dashboard, and Ctrl-C in the terminal does not kill runs.
        proc = subprocess.Popen([sys.executable, "-m", module, "--threads", str(self.threads),
                                 "--worker-id", worker_id],
                                cwd=str(PROJECT_ROOT), env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        # Register it now (the worker registers again once torch is imported, seconds later): otherwise the
        # next ensure_workers (every submit calls it) would not count it and would start another pool.
        self.store.register_worker(worker_id, proc.pid, socket.gethostname(),
                                   "ray" if module == "engine.runs.ray_dispatch" else "starting")
        return proc

    def shutdown(self, timeout: float = 15.0) -> None:
        """Ask every worker on this host to stop after its current step, then kill stragglers."""
        import signal

        self.reap()  # dead workers' pids may have been reused: only signal workers that are still ours
        live = self.store.live_workers()
        self.store.request_worker_stop()
        deadline = time.time() + timeout
        # never our own pid: a worker object run inside this process (a test, a notebook) is registered with it
        pids = [int(p) for p, h in zip(live["pid"], live["host"]) if h == socket.gethostname() and int(p) != os.getpid()]
        while time.time() < deadline and any(pid_alive(pid, socket.gethostname()) for pid in pids):
            time.sleep(0.1)
        for pid in pids:
            if pid_alive(pid, socket.gethostname()):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.reap()


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return ""
