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
from typing import Callable

from engine import settings
from engine.classroom import Actor
from engine.config import RunConfig
from engine.paths import logs_dir, trainlens_home
from engine.records import TERMINAL, RunKind, RunStatus
from engine.runs import pool_health, template
from engine.runs.access import check_may_teach, may_act
from engine.runs.executor import executor_name, local_pool_size, worker_module
from engine.runs.pool_health import PoolFailure
from engine.runs.procs import PROJECT_ROOT, pid_alive, worker_env
from engine.runs.store import Store



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
        self._workers = workers

    # pool facts are computed lazily: counting GPUs imports torch (seconds), which `cancel` does not need
    @functools.cached_property
    def gpus(self) -> int:
        return gpu_count()

    @functools.cached_property
    def size(self) -> int:
        if executor_name() == "ray":
            return 1  # one dispatcher on this host; Ray schedules the runs on the cluster
        size = self._asked_size()
        return local_pool_size(self.gpus) if size is None else size

    def _asked_size(self) -> int | None:
        """The pool size given to this runner or by TRAINLENS_WORKERS (None: the default, which counts GPUs). 0 starts
        no worker here: runs queue and wait (tests; a host that only shows runs)."""
        return self._workers if self._workers is not None else settings.value("TRAINLENS_WORKERS")

    @property
    def threads(self) -> int:
        return max(1, (os.cpu_count() or 1) // max(1, self.size))

    # ---- runs ----
    def submit(self, config: RunConfig, *, owner: str | None = None, name: str | None = None,
               group: str | None = None, kind: str = RunKind.TRAIN, parent_id: str | None = None,
               actor: Actor | None = None) -> RunHandle:
        """Queue a run (kind 'train') or a helper job ('lr_find', 'overfit' for `parent_id`) and make sure workers run.

        With an `actor` the run is theirs and must fit the class limits (CapReached); otherwise it is the OS
        user's (or `owner`'s)."""
        settings.check()  # a value no worker could start with is refused before anything is queued
        run_id = self.store.create_run(config, kind=kind, owner=owner if owner is not None else _user(), name=name,
                                       group=group, parent_id=parent_id, actor=actor)
        self.ensure_workers()
        return RunHandle(self.store, run_id)

    def submit_lesson(self, lesson: str, runs: list[tuple[str, RunConfig]], group: str, *, owner: str | None = None,
                      actor: Actor | None = None, for_class: bool = False,
                      sources: dict[str, str] | None = None) -> tuple[str, list[str]]:
        """Queue every (name, config) of one launch of `lesson` at once, as one item for the class limits (see
        engine.runs.store.launches); returns (group, run ids). Whole or not at all: CapReached queues nothing.
        `sources`: {run name: the launch's run it starts from}, a lesson's pretraining."""
        launched = self.store.create_launch(lesson, runs, group, owner=owner if owner is not None else _user(),
                                            actor=actor, for_class=for_class, sources=sources)
        self.ensure_workers()
        return launched

    def cancel(self, run_id: str, actor: Actor | None = None) -> str:
        return self.store.request_cancel(run_id, actor=actor)

    def resume(self, run_id: str, actor: Actor | None = None) -> RunHandle:
        settings.check()
        self.store.resume_run(run_id, actor=actor)
        self.ensure_workers()
        return RunHandle(self.store, run_id)

    def delete(self, run_id: str, actor: Actor | None = None) -> None:
        import shutil

        self.store.delete_run(run_id, actor=actor)
        shutil.rmtree(trainlens_home() / "checkpoints" / run_id, ignore_errors=True)

    def remove_owner_runs(self, owner_id: str, owner_role: str = "student", actor: Actor | None = None) -> int:
        """Cancel and delete every run of one class member (teacher only); returns how many were removed. A running
        run is asked to stop and deleted once its worker lets go of it (within seconds)."""
        check_may_teach(actor, "remove a student's runs")
        runs = self.store.list_runs()
        mine = runs[(runs["owner_id"] == owner_id) & (runs["owner_role"] == owner_role)] if owner_id else runs.iloc[:0]
        for run_id in mine["run_id"]:
            self.store.request_cancel(run_id, actor=actor)
        removed, deadline = 0, time.time() + 15.0
        pending = list(mine["run_id"])
        while pending and time.time() < deadline:
            for run_id in list(pending):
                try:
                    self.delete(run_id, actor=actor)
                    pending.remove(run_id)
                    removed += 1
                except KeyError:  # already gone
                    pending.remove(run_id)
                except ValueError:  # still running: its worker stops it after the current step
                    pass
            if pending:
                time.sleep(0.2)
        return removed

    def as_actor(self, actor: Actor, on_change: Callable[[], None] | None = None) -> ActingRunner:
        """This runner, every call made on behalf of `actor` (the dashboard's per-session handle); `on_change` is
        called before each call that changes runs (the dashboard then reads its next views exactly)."""
        return ActingRunner(self, actor, on_change)

    # ---- workers ----
    def reap(self) -> list[str]:
        return self.store.reap(is_alive=pid_alive)

    def recover(self) -> list[str]:
        """Reap dead workers, then start the pool if queued work is left without a live worker.

        Workers reap each other; this covers the case where every worker died (killed, out of memory), for
        whoever is watching: the dashboard and `train --wait`. A pool that failed to start is not restarted
        sooner than its backoff allows, nor at all after a few failed tries (engine.runs.pool_health). Returns
        the run ids that were interrupted."""
        interrupted = self.reap()
        if not self.store.list_runs(status=[RunStatus.QUEUED]).empty and self.store.live_workers().empty:
            self.ensure_workers(explicit=False)
        return interrupted

    def ensure_workers(self, explicit: bool = True) -> int:
        """Reap dead workers, then start enough to fill the pool on this host; returns how many started.

        Every setting is checked first (SettingError: nothing starts). After a failed start, processes start again
        only as engine.runs.pool_health allows: `explicit` is a person asking for work (a new run, a resume), who may
        try once a minute after automatic restarts stopped; a page refresh or a watcher is not."""
        settings.check()
        lock_path = trainlens_home() / "runner.lock"
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two dashboards/CLIs must not both fill the pool
            self.reap()
            missing = self.size - len(self._live_here())
            if missing <= 0 or pool_health.may_start(explicit) is not None:
                return 0
            if worker_module() == "engine.runs.worker" and template.state() == "starting":
                # the dashboard's warm-up fills the pool from the template the moment it is ready (seconds): a fresh
                # interpreter started now would import torch beside it and be ready no sooner
                return 0
            for index in range(missing):
                self._start_worker(self.size - missing + index)
            return missing

    def warm_pool(self, template_wait_s: float = 120.0) -> int:
        """Fill the pool before anyone asks, from a long-lived process (the dashboard's server). First this home's
        worker template (engine.runs.template), started and waited for: the workers then fork from it, torch imported
        once instead of once per worker, and a pool started after this one idled out forks in milliseconds too. The
        template lives as long as this process. Without a ready template, workers start as fresh interpreters.
        Returns how many workers started."""
        settings.check()
        if worker_module() == "engine.runs.worker" and self._asked_size() != 0:  # its size, without counting GPUs
            template.wait_ready(template_wait_s, template.start())
        return self.ensure_workers()

    def _live_here(self):
        """The live workers of this host for the configured executor."""
        live = self.store.live_workers()
        live = live[live["host"] == socket.gethostname()]
        # the Ray dispatcher registers with device 'ray': it is not a local worker, nor the other way round
        return live[(live["device"] == "ray") == (executor_name() == "ray")]

    def start_now(self) -> int:
        """Forget a failed start and fill the pool at once (`trainlens workers --start`, the Runs page's Try again):
        for after the cause was fixed (a Ray head started, space freed). Returns how many processes started."""
        pool_health.clear()
        return self.ensure_workers()

    def pool_problem(self) -> PoolFailure | None:
        """Why queued runs wait for a worker that cannot start: the recorded failure while no worker of this host is
        alive to take them (None when workers are up, starting, or nothing failed)."""
        failure = pool_health.current()
        if failure is None:
            return None
        try:
            return failure if self._live_here().empty else None
        except ValueError:  # the settings changed under us to a value the runner refuses: the failure still holds
            return failure

    def _start_worker(self, index: int) -> int:
        """Start one worker process and register it; returns its pid. A fork of the home's worker template when one
        is ready (engine.runs.template: ready in milliseconds), else a fresh interpreter."""
        env = worker_env()
        module = worker_module()
        if module == "engine.runs.worker" and self.gpus:  # TRAINLENS_WORKERS_PER_GPU workers share each GPU
            env["CUDA_VISIBLE_DEVICES"] = str(index % self.gpus)
        worker_id = uuid.uuid4().hex[:8]
        argv = ["--threads", str(self.threads), "--worker-id", worker_id]
        log_path = logs_dir() / "workers.log"
        pid = None
        if module == "engine.runs.worker":
            pid = template.fork_worker(argv, env, str(log_path), str(PROJECT_ROOT))
        if pid is None:
            # A fresh interpreter (fork+exec), never a bare fork of this process: forking after torch ran hangs.
            # start_new_session: the worker outlives the dashboard, and Ctrl-C in the terminal does not kill runs.
            with open(log_path, "ab") as log:
                pid = subprocess.Popen([sys.executable, "-m", module, *argv], cwd=str(PROJECT_ROOT), env=env,
                                       stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True).pid
        # Register it now (the worker registers again once torch is imported, seconds later): otherwise the
        # next ensure_workers (every submit calls it) would not count it and would start another pool.
        self.store.register_worker(worker_id, pid, socket.gethostname(),
                                   "ray" if module == "engine.runs.ray_dispatch" else "starting")
        return pid

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


class ActingRunner:
    """A Runner bound to one Actor: the same calls, each checked by the store against that actor's rights.
    `on_change()`, when given, runs before every call that changes runs (submit, cancel, resume, delete...)."""

    def __init__(self, runner: Runner, actor: Actor, on_change: Callable[[], None] | None = None):
        self.runner, self.actor, self.store = runner, actor, runner.store
        self._on_change = on_change or (lambda: None)

    def may_act_on(self, owner_id: str, owner_role: str) -> bool:
        return may_act(self.actor, owner_id, owner_role)

    def submit(self, config: RunConfig, **kwargs) -> RunHandle:
        self._on_change()
        return self.runner.submit(config, actor=self.actor, **kwargs)

    def submit_lesson(self, lesson: str, runs: list[tuple[str, RunConfig]], group: str,
                      **kwargs) -> tuple[str, list[str]]:
        self._on_change()
        return self.runner.submit_lesson(lesson, runs, group, actor=self.actor, **kwargs)

    def cancel(self, run_id: str) -> str:
        self._on_change()
        return self.runner.cancel(run_id, actor=self.actor)

    def resume(self, run_id: str) -> RunHandle:
        self._on_change()
        return self.runner.resume(run_id, actor=self.actor)

    def delete(self, run_id: str) -> None:
        self._on_change()
        self.runner.delete(run_id, actor=self.actor)

    def remove_owner_runs(self, owner_id: str, owner_role: str = "student") -> int:
        self._on_change()
        return self.runner.remove_owner_runs(owner_id, owner_role, actor=self.actor)

    def cancel_all(self) -> int:
        self._on_change()
        return self.store.cancel_all(actor=self.actor)

    def __getattr__(self, name: str):  # pool operations (ensure_workers, recover, size...) need no actor
        return getattr(self.runner, name)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return ""
