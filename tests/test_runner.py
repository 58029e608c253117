"""The runner with real worker processes on an isolated home: the run lifecycle, cancel, a worker killed
mid-run (interrupted, pool refilled, resumed), concurrent runs losing no metric row, and the rule that
workers are fresh interpreters, never forks of a process that ran torch (a child forked after its parent ran
matrix multiplies hung for over 40 s here, where a fresh interpreter finished the same work in 0.18 s).

Expected metric row counts are computed here from the config, independently of the training loop.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import time

import pytest
import torch

from engine import records
from engine.config import RunConfig
from engine.records import TERMINAL
from engine.runs.jobs import job_device
from engine.runs.runner import RunHandle, Runner
from engine.runs.store import Store
from engine.runs.worker import pid_alive

pytestmark = pytest.mark.timeout(240)

STEP_KEYS = len(records.STEP_KEYS)
EPOCH_KEYS = len(records.EPOCH_KEYS - {"best_epoch"})  # best_epoch: once at the end, with early stopping
MNIST5K_TRAIN = 5000 - math.ceil(5000 * 0.05)  # training images of mnist5k at val_fraction=0.05


def quick(**changes) -> RunConfig:
    """A run of a second or two on mnist5k (250 validation images)."""
    base = dict(model="mlp", hidden=16, depth=1, epochs=1, train_limit=128, batch_size=32, val_fraction=0.05,
                device="cpu", layer_stats_every=0)  # row counts below are of the spine's metrics only
    return RunConfig(**{**base, **changes}).validate()


def expected_rows(config: RunConfig) -> int:
    steps = math.ceil(min(config.train_limit or MNIST5K_TRAIN, MNIST5K_TRAIN) / config.batch_size)
    per_epoch = EPOCH_KEYS + 2 * config.ema + (2 * config.swa)
    rows = config.epochs * (steps * STEP_KEYS + per_epoch)
    return rows + (1 if config.early_stop else 0)  # best_epoch, once at the end


def wait_for(predicate, timeout: float, poll: float = 0.05, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def worker_cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode()


def test_a_run_goes_queued_running_completed(runner):
    config = quick()
    handle = runner.submit(config)
    seen = [handle.status()]
    while seen[-1] not in TERMINAL:
        time.sleep(0.02)
        status = handle.status()
        if status != seen[-1]:
            seen.append(status)
        assert time.time() - runner.store.get_run(handle.run_id)["created_at"] < 180
    assert seen == ["queued", "running", "completed"]
    run = runner.store.get_run(handle.run_id)
    assert run["device"] == "cpu" and run["worker_id"] and run["error"] is None
    assert run["started_at"] <= run["finished_at"] and run["progress"] == 1.0
    assert run["step"] == run["total_steps"] == 4
    assert runner.store.count_metrics(handle.run_id) == expected_rows(config)
    checkpoints = runner.store.list_checkpoints(handle.run_id)
    assert set(checkpoints["kind"]) == {"epoch", "best"} and all(os.path.exists(p) for p in checkpoints["path"])
    assert runner.store.get_artifact(handle.run_id, "model_summary")["total_steps"] == 4
    assert handle.wait(timeout=1) == "completed"


def test_cancel_a_running_run(runner):
    handle = runner.submit(quick(epochs=1000, batch_size=1, train_limit=500))  # would take many minutes
    wait_for(lambda: runner.store.get_run(handle.run_id)["step"] > 0, 120, what="the run to log progress")
    assert runner.cancel(handle.run_id) == "running"  # asked; the worker stops within a step
    assert handle.wait(timeout=30) == "cancelled"
    run = runner.store.get_run(handle.run_id)
    assert run["error"] is None and run["step"] < run["total_steps"] and run["finished_at"]


def test_a_killed_worker_interrupts_its_run_which_resumes_to_completion(runner):
    config = quick(epochs=30, train_limit=200, batch_size=2)
    handle = runner.submit(config)
    # kill only once an epoch checkpoint exists, so the resume continues from it instead of starting over
    wait_for(lambda: not runner.store.list_checkpoints(handle.run_id).empty, 150, what="the first checkpoint")
    run = runner.store.get_run(handle.run_id)
    assert run["status"] == "running", "the run finished before it could be killed: make it longer"
    workers = runner.store.live_workers().set_index("worker_id")
    pid = int(workers.loc[run["worker_id"], "pid"])
    os.kill(pid, signal.SIGKILL)
    killed_at = time.time()

    wait_for(lambda: handle.status() != "running", 10, poll=0.1, what="the killed worker's run to be reaped")
    run = runner.store.get_run(handle.run_id)
    assert run["status"] == "interrupted" and time.time() - killed_at < 10
    assert str(pid) in run["error"] and "resume" in run["error"]

    # the pool refills (or the surviving worker serves): the next run completes
    follow_up = runner.submit(quick(seed=7))
    assert follow_up.wait(timeout=120) == "completed"
    assert len(runner.store.live_workers()) == 2

    resumed = runner.resume(handle.run_id)
    assert resumed.wait(timeout=150) == "completed"
    metrics = runner.store.get_metrics(handle.run_id)
    # the rows the dead worker logged after its checkpoint were replaced, not doubled
    assert not metrics.duplicated(["step", "key"]).any()
    assert len(metrics) == expected_rows(config)
    assert metrics[metrics["key"] == "loss"]["step"].tolist() == list(range(1, 30 * 100 + 1))


def test_concurrent_runs_lose_no_metric_row(runner):
    # a few hundred steps each (about a second): long enough that both workers are busy at once, so the
    # rows of concurrent runs really interleave in the store
    configs = [quick(train_limit=800, batch_size=4, epochs=2, seed=1),
               quick(train_limit=900, batch_size=4, epochs=2, seed=2, ema=True),
               quick(train_limit=600, batch_size=4, epochs=3, seed=3, early_stop=True, patience=10),
               quick(train_limit=1000, batch_size=4, epochs=2, seed=4, swa=True, swa_start=0)]
    runner.ensure_workers()
    # both workers up (registered by themselves, torch imported), so runs really train side by side
    wait_for(lambda: (runner.store.live_workers()["device"] != "starting").sum() == 2, 120, what="two ready workers")
    handles = [runner.submit(config) for config in configs]
    assert [h.wait(timeout=180) for h in handles] == ["completed"] * 4
    for config, handle in zip(configs, handles):
        metrics = runner.store.get_metrics(handle.run_id)
        assert len(metrics) == expected_rows(config), config
        assert not metrics.duplicated(["step", "epoch", "key"]).any()
    runs = [runner.store.get_run(h.run_id) for h in handles]
    assert len({run["worker_id"] for run in runs}) == 2
    assert any(a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"]
               for i, a in enumerate(runs) for b in runs[i + 1:]), "no two runs overlapped in time"


@pytest.mark.slow
def test_workers_are_fresh_interpreters_even_after_torch_ran_here(trainlens_home):
    # compute with torch in this process first (thread pools up, autograd used): a bare fork would now hang
    torch.set_num_threads(2)
    x = torch.randn(256, 256, requires_grad=True)
    (x @ x).tanh().sum().backward()
    assert x.grad is not None
    runner = Runner(workers=2)
    try:
        assert runner.ensure_workers() == 2
        # workers take seconds to import torch: calling again meanwhile must not start another pool
        assert runner.ensure_workers() == 0 and runner.ensure_workers() == 0
        assert len(runner.store.live_workers()) == 2
        handle = runner.submit(quick())
        assert handle.wait(timeout=120) == "completed"
        pids = runner.store.live_workers()["pid"].tolist()
        assert len(pids) == 2
        for pid in pids:
            assert "-m engine.runs.worker" in worker_cmdline(int(pid))  # exec'd, not a fork of pytest
    finally:
        runner.shutdown()
    assert runner.store.live_workers().empty


@pytest.mark.slow
def test_shutdown_stops_workers_that_are_still_starting(trainlens_home):
    runner = Runner(workers=1)
    runner.ensure_workers()
    worker_id, pid = runner.store.live_workers()[["worker_id", "pid"]].iloc[0]
    runner.shutdown(timeout=90)
    assert not pid_alive(int(pid), socket.gethostname())
    # it was asked to stop while importing torch, and left on its own at its first heartbeat: 'stopped' is
    # what a worker writes as it exits; one that had to be SIGKILLed is reaped as 'dead'
    status = runner.store.conn.execute("SELECT status FROM workers WHERE worker_id=?", (worker_id,)).fetchone()[0]
    assert status == "stopped"
    assert runner.store.live_workers().empty


def test_wait_times_out_on_a_run_nobody_takes(trainlens_home):
    runner = Runner(workers=1)
    run_id = runner.store.create_run(quick())  # enqueued without starting any worker
    with pytest.raises(TimeoutError, match="queued"):
        RunHandle(runner.store, run_id).wait(timeout=0.3, poll=0.05)


def test_a_run_records_the_device_it_trains_on_not_the_workers(trainlens_home):
    from engine.runs.worker import Worker

    worker = Worker("gpu-worker", threads=1, idle_exit_s=0)  # in this process: registered with the test's pid
    try:
        worker.device = "cuda"  # a GPU worker (as far as the store can tell) takes a run configured for the CPU
        run_id = worker.store.create_run(quick(device="cpu"))
        run = worker.store.claim_next(worker.worker_id, worker.device)
        assert run["device"] == "cuda"
        worker.execute(run)
    finally:  # as serve() does on exit; a live entry would have the teardown kill this very process
        worker.store.mark_worker(worker.worker_id, "stopped")
    done = worker.store.get_run(run_id)
    assert (done["status"], done["device"]) == ("completed", "cpu")
    assert job_device(quick(device="auto"), "cuda") == "cuda" and job_device(quick(device="cpu"), "cuda") == "cpu"


def test_an_unknown_run_kind_is_refused_when_queued(trainlens_home):
    with pytest.raises(ValueError, match="probe"):
        Store().create_run(quick(), kind="probe")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_recover_starts_the_pool_for_queued_work_left_without_workers(trainlens_home):
    runner = Runner(workers=1)
    run_id = runner.store.create_run(quick())  # queued directly in the store: nobody started a worker
    assert runner.store.live_workers().empty
    try:
        runner.recover()
        assert not runner.store.live_workers().empty
        assert RunHandle(runner.store, run_id).wait(timeout=90) == "completed"
    finally:
        runner.shutdown()
