"""A run's status is true whoever reads it: when every worker is killed, `python -m engine show` reports the run
interrupted within 10 s, with no dashboard, `workers` or `train` around to reap. Reads reap (Store.reap_if_due):
a worker whose process is gone or whose heartbeat is old is marked dead on the next read, its run interrupted;
the reap is throttled per Store object and a busy database skips it instead of failing the read.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import engine_env
from ui_helpers import wait_for

from engine.config import RunConfig
from engine.runs.runner import Runner
from engine.runs.store import Store

PROJECT = str(Path(__file__).resolve().parent.parent)
HOST = socket.gethostname()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_show_reports_interrupted_within_10_s_of_every_worker_being_killed(trainlens_home):
    runner = Runner(workers=1)
    # thousands of steps (tens of seconds on a CPU): it is still training long after the kill
    config = RunConfig(dataset="mnist5k", model="mlp", hidden=16, depth=1, train_limit=2000, epochs=20, batch_size=8,
                       val_fraction=0.05, device="cpu", layer_stats_every=0).validate()
    run_id = runner.submit(config).run_id

    def training():
        run = runner.store.get_run(run_id)
        assert run["status"] in ("queued", "running"), run
        return run["status"] == "running" and run["step"] > 0

    wait_for(training, 180, what="the run to train")
    pids = [int(pid) for pid, host in zip(runner.store.live_workers()["pid"], runner.store.live_workers()["host"])
            if host == HOST]
    assert len(pids) == 1
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    killed_at = time.time()

    # From here on only a separate `show` process reads the store: nothing in this process reaps.
    seen = []
    while True:
        shown = subprocess.run([sys.executable, "-m", "engine", "show", run_id, "--json"], cwd=PROJECT,
                               capture_output=True, text=True, timeout=60, env=engine_env(trainlens_home))
        assert shown.returncode == 0, shown.stderr
        summary = json.loads(shown.stdout)
        seen.append(summary["status"])
        if summary["status"] != "running":
            break
        assert time.time() - killed_at < 10, f"still {seen[-1]} {time.time() - killed_at:.1f} s after the kill"
        time.sleep(0.2)
    assert summary["status"] == "interrupted" and time.time() - killed_at < 10, seen
    assert str(pids[0]) in summary["error"] and "resume" in summary["error"]
    assert runner.store.live_workers().empty  # the worker was marked dead too, by that read


def _running_run(store: Store, worker_id: str, pid: int, host: str) -> str:
    """A run taken by a registered worker, set up through another Store object (a worker's, in real life).

    The worker registers after its claim: claim_next reads the run back, and that read would already reap a
    worker registered with a dead pid."""
    worker_side = Store(store.path)
    run_id = worker_side.create_run(RunConfig())
    assert worker_side.claim_next(worker_id, "cpu")["run_id"] == run_id
    worker_side.update_progress(run_id, 7, 100, 0)
    worker_side.register_worker(worker_id, pid, host, "cpu")
    worker_side.close()
    return run_id


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # exited and waited for: no such process any more
    return child.pid


@pytest.fixture
def live_pid():
    """A live process of this host standing in for a worker (never pytest's own pid: the teardown stops the
    workers left live in the store, with SIGKILL if they do not leave)."""
    child = subprocess.Popen(["sleep", "600"])
    yield child.pid
    child.kill()
    child.wait()


@pytest.mark.parametrize("host, pid, age_s", [("elsewhere", 4242, 60.0),  # another host: the heartbeat is all we have
                                              (HOST, "live", 60.0),  # alive here but silent for a minute: hung
                                              (HOST, "dead", 0.0)],  # this host, process gone: at once
                         ids=["old heartbeat elsewhere", "old heartbeat of a live pid", "dead pid here"])
@pytest.mark.slow
def test_the_next_read_interrupts_a_run_whose_worker_is_lost(trainlens_home, request, host, pid, age_s):
    store = Store()
    pid = {"live": lambda: request.getfixturevalue("live_pid"), "dead": _dead_pid}.get(pid, lambda: pid)()
    run_id = _running_run(store, "w1", pid, host)
    store.conn.execute("UPDATE workers SET heartbeat_at=heartbeat_at-? WHERE worker_id='w1'", (age_s,))

    reader = Store(store.path)  # a fresh reader, as `show` is; no reap, recover or ensure_workers anywhere
    run = reader.get_run(run_id)
    assert run["status"] == "interrupted" and run["finished_at"]
    assert f"worker process {pid} on {host}" in run["error"] and "step 7" in run["error"]
    assert reader.live_workers().empty
    assert Store(store.path).list_runs()["status"].tolist() == ["interrupted"]


@pytest.mark.slow
def test_a_healthy_worker_is_left_alone_and_list_runs_reaps_too(trainlens_home, live_pid):
    store = Store()
    healthy = _running_run(store, "alive", live_pid, HOST)
    assert Store(store.path).get_run(healthy)["status"] == "running"
    lost = _running_run(store, "lost", _dead_pid(), HOST)
    frame = Store(store.path).list_runs(status=["running"])  # the filter sees the reaped truth
    assert frame["run_id"].tolist() == [healthy]
    assert store.get_run(lost)["status"] == "interrupted"


@pytest.mark.slow
def test_reads_reap_at_most_once_per_interval_per_store(trainlens_home):
    store = Store()
    reader = Store(store.path)
    reader.READ_REAP_EVERY_S = 3600.0  # its first read reaps; none of the next ones may (whatever the clock)
    first = _running_run(store, "w1", _dead_pid(), HOST)
    assert reader.get_run(first)["status"] == "interrupted"
    second = _running_run(store, "w2", _dead_pid(), HOST)
    assert reader.get_run(second)["status"] == "running"  # throttled: not checked again yet
    assert Store(store.path).get_run(second)["status"] == "interrupted"  # another Store object has its own turn


@pytest.mark.slow
def test_a_locked_store_skips_the_reap_and_never_fails_the_read(trainlens_home):
    store = Store()
    run_id = _running_run(store, "w1", _dead_pid(), HOST)
    reader = Store(store.path)  # opened first: opening a Store writes its schema version
    reader.READ_REAP_LOCK_WAIT_MS = 100  # unlike any writer's patience, so the test can tell them apart
    holder = sqlite3.connect(store.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock (a long write)
    try:
        started = time.time()
        run = reader.get_run(run_id)
        assert run["status"] == "running"  # could not reap this time; the read still answers
        assert time.time() - started < 5, "the read waited for the write lock as long as a writer would"
        # a writer's patience is back (30 s; 2 s where a worker ran in this process: it sets its own)
        assert reader.conn.execute("PRAGMA busy_timeout").fetchone()[0] == int(reader.BUSY_TIMEOUT_S * 1000)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert Store(store.path).get_run(run_id)["status"] == "interrupted"  # the next turn reaps
