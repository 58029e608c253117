"""The worker template (engine/runs/template.py): workers forked from one process that imported torch once.

A worker forked from it trains a run to the end in a session of its own; the template leaves with the process that
started it and cleans up its socket; a home has one template; a template with threads refuses to fork; and while a
template is starting, the runner leaves the pool to it instead of starting fresh interpreters beside it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.runs import template
from engine.runs.runner import Runner
from engine.runs.store import Store
from tests.ui_helpers import ROOT

TINY = RunConfig(model="mlp", hidden=16, depth=1, epochs=1, train_limit=200)


@pytest.fixture
def short_home(monkeypatch):
    """A home with a short path: a Unix socket's path must fit in 100 bytes (pytest's tmp_path may not)."""
    home = Path(tempfile.mkdtemp(prefix="tl_", dir="/tmp"))
    monkeypatch.setenv("TRAINLENS_HOME", str(home))
    monkeypatch.setenv("TRAINLENS_WORKER_IDLE_S", "60")
    yield home
    from tests.conftest import stop_workers

    stop_workers(home)
    shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def running_template(parent: int | None = None):
    proc = template.start(parent)
    assert proc is not None
    try:
        assert template.wait_ready(120, proc), (Path(os.environ["TRAINLENS_HOME"]) / "logs" / "workers.log").read_text()
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def template_pid() -> int:
    """The pid of the process serving this home's template socket (the kernel's word: SO_PEERCRED)."""
    with contextlib.closing(socket.socket(socket.AF_UNIX)) as conn:
        conn.connect(str(template.socket_path()))
        pid, _, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        return pid


@pytest.mark.slow
def test_after_the_warmed_pool_idled_out_a_run_is_trained_by_a_worker_forked_from_the_template(short_home, monkeypatch):
    monkeypatch.setenv("TRAINLENS_WORKER_IDLE_S", "1")  # the warmed worker leaves after a second without work
    store = Store()
    runner = Runner(store, workers=1)
    assert runner.warm_pool() == 1  # the template first (waited for), then the pool from it
    serving = template_pid()
    try:
        deadline = time.monotonic() + 120
        while not store.live_workers().empty and time.monotonic() < deadline:
            time.sleep(0.2)
        assert store.live_workers().empty  # idled out, as after a pause in a class; the template stays
        assert template.state() == "ready"
        with open(f"/proc/{serving}/maps") as maps:  # idle, it imported what a run needs only at its end
            assert "/sklearn/" in maps.read()
        monkeypatch.setenv("TRAINLENS_WORKER_IDLE_S", "60")  # the next worker takes this process's environment
        handle = runner.submit(TINY)  # forks a worker from the template
        assert handle.wait(timeout=240) == "completed", store.get_run(handle.run_id)["error"]
        worker = store.live_workers().iloc[0]
        pid = int(worker["pid"])
        assert parent_of(pid) == serving  # forked by the template, not started as a fresh interpreter
        assert os.getsid(pid) == pid  # its own session: it outlives the dashboard, Ctrl-C there does not reach it
        assert worker["device"] == "cpu" and store.get_run(handle.run_id)["worker_id"] == worker["worker_id"]
        steps = store.conn.execute("SELECT COUNT(DISTINCT step) FROM metrics WHERE run_id=?", (handle.run_id,))
        assert steps.fetchone()[0] > 1
        runner.shutdown()
    finally:
        os.kill(serving, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while template.socket_path().exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not template.socket_path().exists() and template.state() == "none"  # it cleaned up after itself


@pytest.mark.slow
def test_the_template_leaves_with_the_process_that_started_it(short_home):
    code = "import time; from engine.runs import template; template.start(); time.sleep(600)"
    starter = subprocess.Popen([sys.executable, "-c", code], cwd=str(ROOT), env=dict(os.environ),
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while template.state() != "ready" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert template.state() == "ready"
        starter.kill()  # the server dies without a word: its template must not stay behind
        starter.wait(timeout=10)
        deadline = time.monotonic() + 15
        while template.socket_path().exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not template.socket_path().exists()
        assert template.state() == "none"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(starter.pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_home_has_one_template(short_home):
    with running_template():
        second = subprocess.run([sys.executable, "-m", "engine.runs.template", "--parent", str(os.getpid())],
                                cwd=str(ROOT), env=dict(os.environ), timeout=60, check=False)
        assert second.returncode == 0  # left at once: this home has its template
        assert template.state() == "ready"
        assert template.start() is None  # and the runner's side does not try


def test_a_template_with_a_thread_refuses_to_fork(short_home):
    listener = socket.socket(socket.AF_UNIX)
    path = short_home / "t.sock"
    listener.bind(str(path))
    listener.listen(1)
    answers = []

    def ask():  # this thread is the one that makes a fork unsafe
        with contextlib.closing(socket.socket(socket.AF_UNIX)) as conn:
            conn.connect(str(path))
            conn.sendall(b'{"argv": [], "env": {}, "log": "/dev/null", "cwd": "/"}\n')
            answers.append(template._read_line(conn))

    asker = threading.Thread(target=ask)
    asker.start()
    template._serve_one(listener)  # in this process: it must answer without forking it
    asker.join(10)
    listener.close()
    assert b"thread" in answers[0] and b"pid" not in answers[0]


def test_a_request_whose_log_cannot_be_opened_is_answered_with_the_reason_and_nothing_forks(short_home):
    request = {"argv": [], "env": {}, "log": str(short_home / "missing" / "workers.log"), "cwd": "/"}
    with socket.socket(socket.AF_UNIX) as listener, socket.socket(socket.AF_UNIX) as conn:
        answer = template._fork(request, listener, conn)  # the log fails before any fork: safe in this process
    assert "pid" not in answer and "cannot open the workers' log" in answer["error"]


def test_without_a_ready_template_a_fork_request_gets_none(short_home):
    assert template.state() == "none"
    assert template.fork_worker(["--threads", "1"], dict(os.environ), os.devnull, str(ROOT)) is None


def test_while_a_template_is_starting_the_runner_leaves_the_pool_to_it(short_home, monkeypatch):
    started = []
    monkeypatch.setattr(Runner, "_start_worker", lambda self, index: started.append(index))
    runner = Runner(Store(), workers=2)
    lock_path = template.socket_path().parent / template.LOCK_NAME
    import fcntl

    with open(lock_path, "a") as lock:  # as a template does while it imports torch
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert template.state() == "starting"
        assert runner.ensure_workers() == 0 and started == []
    assert template.state() == "none"
    assert runner.ensure_workers() == 2 and started == [0, 1]  # no template: fresh interpreters, as before


@pytest.mark.slow
@pytest.mark.cuda
@pytest.mark.skipif(not __import__("torch").cuda.is_available(),
                    reason="needs a CUDA device (run benchmarks/gpu_check.sh on a GPU machine)")
def test_a_worker_forked_from_the_template_trains_on_the_gpu(short_home):
    """The template never initialises CUDA (a fork could not use it then): its workers train on the GPU."""
    store = Store()
    runner = Runner(store, workers=1)
    assert runner.warm_pool() == 1
    serving = template_pid()
    try:
        handle = runner.submit(TINY.with_updates(device="cuda"))
        assert handle.wait(timeout=240) == "completed", store.get_run(handle.run_id)["error"]
        assert store.get_run(handle.run_id)["device"].startswith("cuda")
        assert parent_of(int(store.live_workers().iloc[0]["pid"])) == serving
        runner.shutdown()
    finally:
        os.kill(serving, signal.SIGTERM)


def test_off_linux_there_is_no_template_and_workers_start_as_fresh_interpreters(short_home, monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")  # a fork of a process with Apple's frameworks loaded may crash
    assert template.start() is None  # nothing started (a process here would fail this fast test)
    assert template.fork_worker(["--threads", "1"], dict(os.environ), os.devnull, str(ROOT)) is None

