"""The run store and workers under faults, reproduced for real: a write lock held past the busy timeout, a worker
frozen (SIGSTOP) past the reaper and woken after its run completed elsewhere, unreadable rows, a full disk.

Each test reproduces what a hostile tester did to main and shows it handled: the run completes, no metric row is
lost or duplicated, a stale worker's late writes are refused and it exits.
"""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from ui_helpers import wait_for

from engine import records
from engine.config import RunConfig
from engine.runs.store import LeaseLost, Store, UnreadableRun
from engine.runs.store.errors import StoreUnavailable, describe

MNIST5K_TRAIN = 5000 - math.ceil(5000 * 0.05)


def slow_run(**changes) -> RunConfig:
    """A run of several seconds on mnist5k: batches of 2 make many steps (and checkpoints every epoch)."""
    base = dict(model="mlp", hidden=16, depth=1, epochs=4, train_limit=200, batch_size=2, val_fraction=0.05,
                device="cpu", layer_stats_every=0)
    return RunConfig(**{**base, **changes}).validate()


def assert_one_row_per_step(store: Store, run_id: str, config: RunConfig) -> None:
    """Every step's loss exactly once, no gap, no duplicate: nothing lost, nothing written twice."""
    metrics = store.get_metrics(run_id)
    assert not metrics.duplicated(["step", "key"]).any(), "a step was written twice"
    steps_per_epoch = math.ceil(config.train_limit / config.batch_size)
    assert metrics[metrics["key"] == "loss"]["step"].tolist() == list(range(1, config.epochs * steps_per_epoch + 1))
    epoch_rows = metrics[metrics["key"] == "val_loss"]
    assert epoch_rows["epoch"].tolist() == list(range(config.epochs))


@pytest.fixture
def pool(trainlens_home, monkeypatch):
    """A Runner whose pool size the test sets (monkeypatch TRAINLENS_WORKERS before the first submit)."""
    from engine.runs.runner import Runner

    runners = []

    def make(workers: int) -> Runner:
        monkeypatch.setenv("TRAINLENS_WORKERS", str(workers))
        runners.append(Runner())
        return runners[-1]

    yield make
    for runner in runners:
        runner.shutdown()


@pytest.mark.slow
def test_a_write_lock_held_35_s_mid_run_loses_no_row_and_the_run_completes(pool):
    runner = pool(1)
    # 900 steps: on an idle machine the 300 of `slow_run(epochs=3)` could end between the read that saw step 21
    # and the lock being taken, and the lock must fall mid-run
    config = slow_run(epochs=3, train_limit=600)
    handle = runner.submit(config)
    wait_for(lambda: runner.store.get_run(handle.run_id)["step"] > 20, 120, what="the run to be training")
    worker_pid = int(runner.store.live_workers()["pid"].iloc[0])

    holder = sqlite3.connect(runner.store.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another program holds the write lock past the 30 s busy timeout
    try:
        time.sleep(35)
        assert runner.store.get_run(handle.run_id)["status"] == "running"  # reads still answer, truthfully
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert handle.wait(timeout=180) == "completed", runner.store.get_run(handle.run_id)["error"]
    assert_one_row_per_step(runner.store, handle.run_id, config)
    # the worker came through alive and seen: same process, still registered, heartbeat fresh, and it serves on
    workers = runner.store.live_workers()
    assert workers["pid"].tolist() == [worker_pid]
    assert time.time() - workers["heartbeat_at"].iloc[0] < 5
    assert runner.submit(slow_run(epochs=1, train_limit=20)).wait(timeout=120) == "completed"


@pytest.mark.slow
def test_a_frozen_worker_woken_after_its_run_completed_elsewhere_writes_nothing_and_exits(pool, monkeypatch):
    monkeypatch.setenv("TRAINLENS_STALE_AFTER_S", "2")  # the workers' and this reader's staleness limit
    monkeypatch.setattr(Store, "STALE_AFTER_S", 2.0)
    runner = pool(2)
    config = slow_run(epochs=3)
    handle = runner.submit(config)
    wait_for(lambda: not runner.store.list_checkpoints(handle.run_id).empty, 120, what="the first checkpoint")
    run = runner.store.get_run(handle.run_id)
    frozen = int(runner.store.live_workers().set_index("worker_id").loc[run["worker_id"], "pid"])
    os.kill(frozen, signal.SIGSTOP)  # a laptop suspend, a long GC pause, a swap storm
    try:
        wait_for(lambda: runner.store.get_run(handle.run_id)["status"] == "interrupted", 30,
                 what="the frozen worker's run to be interrupted")
        assert "frozen" in runner.store.get_run(handle.run_id)["error"]  # not "killed or out of memory"
        resumed = runner.resume(handle.run_id)
        assert resumed.wait(timeout=180) == "completed"
        completed = runner.store.get_run(handle.run_id)
        rows_before = runner.store.count_metrics(handle.run_id)
    finally:
        os.kill(frozen, signal.SIGCONT)

    # the stale worker finds its lease gone, writes nothing and leaves
    wait_for(lambda: not _alive(frozen), 30, what="the stale worker to exit")
    run = runner.store.get_run(handle.run_id)
    assert run["status"] == "completed" and run["step"] == completed["step"] and run["lease"] == completed["lease"]
    assert runner.store.count_metrics(handle.run_id) == rows_before
    assert_one_row_per_step(runner.store, handle.run_id, config)
    from engine.checkpoints import list_epochs, load_checkpoint, resolve

    assert list_epochs(handle.run_id) == [0, 1, 2]
    assert load_checkpoint(resolve(handle.run_id, "last")).step == completed["step"]  # not overwritten


@pytest.mark.slow
def test_a_worker_frozen_inside_a_write_transaction_is_named_ended_and_its_run_interrupted(pool, monkeypatch):
    """The cause of the frozen-worker flake: a worker stopped while it held SQLite's write lock kept every writer
    out (the reapers included), so its run stayed `running` for ever. Caught here on purpose: stopped at moments
    until the kernel's lock table shows it holding the lock (about 1 moment in 150)."""
    from engine.runs.store.holder import STOPPED_STATES, describe_holder, process_state, write_lock_holder

    monkeypatch.setenv("TRAINLENS_STALE_AFTER_S", "2")
    monkeypatch.setattr(Store, "STALE_AFTER_S", 2.0)
    runner = pool(2)
    config = slow_run(epochs=6)  # long enough to be caught while it trains, even on a loaded machine
    handle = runner.submit(config)
    wait_for(lambda: runner.store.get_run(handle.run_id)["step"] > 5, 120, what="the run to be training")
    run = runner.store.get_run(handle.run_id)
    frozen = int(runner.store.live_workers().set_index("worker_id").loc[run["worker_id"], "pid"])
    deadline = time.monotonic() + 90
    while True:
        os.kill(frozen, signal.SIGSTOP)
        # a stop takes effect when the process next runs: on a loaded machine it may wait in the run queue for a
        # while, still "running" (and able to end its transaction); look at the lock only once it is stopped
        stopped_by = time.monotonic() + 10
        while process_state(frozen) not in STOPPED_STATES and time.monotonic() < stopped_by:
            time.sleep(0.001)
        if write_lock_holder(runner.store.path) == frozen:
            break
        os.kill(frozen, signal.SIGCONT)
        assert time.monotonic() < deadline, "never caught the worker inside a write transaction"
        assert runner.store.get_run(handle.run_id)["status"] == "running", "the run ended before it was caught"
        time.sleep(0.003)
    try:
        holder = describe_holder(runner.store.path)  # what a "store busy" message says now
        assert holder is not None and f"(pid {frozen}) training run {handle.run_id} (frozen" in holder, holder
        wait_for(lambda: runner.store.get_run(handle.run_id)["status"] == "interrupted", 30,
                 what="the frozen lock holder's run to be interrupted")
        error = runner.store.get_run(handle.run_id)["error"]
        assert "frozen" in error and "write lock" in error and "TrainLens ended it" in error, error
        assert not _alive(frozen)  # ended: the lock went with it
        assert runner.resume(handle.run_id).wait(timeout=180) == "completed"
    finally:
        if _alive(frozen):
            os.kill(frozen, signal.SIGCONT)
    assert_one_row_per_step(runner.store, handle.run_id, config)


def test_a_busy_store_names_the_process_holding_its_write_lock(trainlens_home):
    import socket

    store = Store()
    run_id = store.create_run(slow_run())
    lease = store.claim_next("w1", "cpu")["lease"]
    store.register_worker("w1", os.getpid(), socket.gethostname(), "cpu")
    store.heartbeat("w1", "busy", run_id, lease)
    holder = sqlite3.connect(store.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        message = str(describe(sqlite3.OperationalError("database is locked"), store.path))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert f"is busy: TrainLens worker w1 (pid {os.getpid()}) training run {run_id} has held its write lock" in message
    assert "end that process" in message
    assert "another program" in str(describe(sqlite3.OperationalError("database is locked"), store.path))  # free now


def test_a_lost_worker_run_reads_as_not_responding_while_writes_wait(trainlens_home, monkeypatch):
    import socket

    store = Store()
    run_id = store.create_run(slow_run())
    store.claim_next("w1", "cpu")
    gone = 4_194_303  # above any pid in use: a process that is not there
    store.register_worker("w1", gone, socket.gethostname(), "cpu")
    store.conn.execute("UPDATE runs SET worker_id='w1' WHERE run_id=?", (run_id,))
    monkeypatch.setattr(Store, "READ_REAP_LOCK_WAIT_MS", 50)
    reader = Store(store.path)
    holder = sqlite3.connect(store.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another program holds the write lock: the reaper cannot write
    try:
        before = reader.runs_fingerprint()
        run = reader.get_run(run_id)
        assert run["status"] == "running" and run["error"].startswith(f"not responding: worker process {gone}")
        assert "not responding" in before  # the dashboard's shared listing is rebuilt to show it
        assert "marked interrupted as soon as the store can be written" in run["error"]
        assert reader.list_runs().set_index("run_id").loc[run_id, "error"] == run["error"]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    reader._read_reaped_at = float("-inf")  # its next read reaps
    run = reader.get_run(run_id)
    assert run["status"] == "interrupted" and "exited unexpectedly" in run["error"]


def test_a_worker_that_stopped_itself_is_reported_with_its_own_words(trainlens_home):
    """A full disk stops a worker (it fences itself); the reaper used to call that "killed or out of memory"."""
    import socket

    from engine.runs.procs import leave_last_words, touch_pulse
    from engine.runs.store.workers import lost_reason

    store = Store()
    run_id = store.create_run(slow_run())
    store.claim_next("w1", "cpu")
    gone = 4_194_303
    store.register_worker("w1", gone, socket.gethostname(), "cpu")
    store.conn.execute("UPDATE runs SET worker_id='w1', step=40 WHERE run_id=?", (run_id,))
    touch_pulse("w1")
    leave_last_words("w1", "the store could not be written for over 6 s (database or disk is full)")
    from engine.runs.procs import pid_alive

    assert store.reap(is_alive=pid_alive) == [run_id]
    error = store.get_run(run_id)["error"]
    assert error.startswith(f"worker process {gone} on {socket.gethostname()} stopped at step 40: the store could "
                            "not be written for over 6 s (database or disk is full); resume the run")
    assert "killed" not in error
    assert "was frozen at step 7 (stopped by a signal" in lost_reason(1, "h", True, "T", None, 9.0, 7)
    assert "exited unexpectedly at step 7 (killed, or out of memory)" in lost_reason(1, "h", False, None, None, 9.0, 7)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_every_write_under_a_stale_lease_is_refused(trainlens_home, tmp_path):
    store = Store()
    run_id = store.create_run(slow_run())
    first = store.claim_next("w1", "cpu")
    fence = (run_id, first["lease"])
    store.log_batch([(run_id, 1, 0, "loss", 1.0, time.time())], fence=fence)
    store.update_status(run_id, "interrupted", "reaped")
    store.resume_run(run_id)
    second = store.claim_next("w2", "cpu")
    assert second["lease"] == first["lease"] + 1
    staged = tmp_path / "staged.safetensors"
    staged.write_bytes(b"stale")
    for write in (lambda: store.log_batch([(run_id, 2, 0, "loss", 2.0, time.time())], fence=fence),
                  lambda: store.update_progress(run_id, 2, 10, 0, fence=fence),
                  lambda: store.put_artifact(run_id, "x", 1, fence=fence),
                  lambda: store.delete_metrics_after(run_id, 0, fence=fence),
                  lambda: store.add_checkpoint(run_id, 0, "epoch", str(tmp_path / "final"), {}, fence=fence,
                                               staged=str(staged))):
        with pytest.raises(LeaseLost):
            write()
    assert staged.exists() and not (tmp_path / "final").exists()  # the stale file was never moved into place
    assert store.update_status(run_id, "failed", "stale", fence=fence) is False
    assert store.get_run(run_id)["status"] == "running" and store.count_metrics(run_id) == 1
    assert store.heartbeat("w1", "busy", run_id, first["lease"])["lease_lost"] is True
    assert store.heartbeat("w2", "busy", run_id, second["lease"])["lease_lost"] is False


def test_unreadable_rows_are_quarantined_failed_and_deletable(trainlens_home):
    store = Store()
    queued_bad = store.create_run(slow_run(seed=2), name="queued bad")  # first in the queue
    good = store.create_run(slow_run(seed=1), name="good")
    running_bad = store.create_run(slow_run(seed=3), name="running bad")
    store.conn.execute("UPDATE runs SET config='{not json' WHERE run_id IN (?, ?)", (queued_bad, running_bad))
    store.conn.execute("UPDATE runs SET status='running' WHERE run_id=?", (running_bad,))

    frame = Store(store.path).list_runs()
    assert frame["run_id"].tolist() == [good]  # the listing of the others is intact
    unreadable = {row["run_id"]: row for row in frame.attrs["unreadable"]}
    assert set(unreadable) == {queued_bad, running_bad} and "config" in unreadable[queued_bad]["problem"]
    with pytest.raises(UnreadableRun, match="mark it failed and delete it on the Runs page"):
        store.get_run(running_bad)  # where it can be done: the CLI has no delete command

    # a worker's claim fails the unreadable queued run with the reason and takes the next one
    claimed = store.claim_next("w", "cpu")
    assert claimed["run_id"] == good
    row = store.conn.execute("SELECT status, error FROM runs WHERE run_id=?", (queued_bad,)).fetchone()
    assert row["status"] == "failed" and "unreadable" in row["error"]

    store.mark_unreadable_failed(running_bad, "config is not JSON")
    store.delete_run(running_bad)
    store.delete_run(queued_bad)
    assert store.list_runs().attrs["unreadable"] == []


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["empty", "not sqlite", "garbled", "truncated"])
def test_a_damaged_store_is_reported_never_replaced(trainlens_home, damage):
    store = Store()
    for seed in range(40):  # several pages of rows, so truncation and garbling hit real data
        run_id = store.create_run(slow_run(seed=seed), name=f"run {seed}")
        store.log_batch([(run_id, step, 0, "loss", 1.0, time.time()) for step in range(200)])
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    path = store.path
    data = path.read_bytes()
    damaged = {"empty": b"", "not sqlite": b"name,loss\nrun,1.0\n" * 100,
               "garbled": data[:4096] + bytes((b * 7 + 13) % 256 for b in data[4096:]),
               "truncated": data[: len(data) // 3]}[damage]
    path.write_bytes(damaged)
    with pytest.raises((StoreUnavailable, sqlite3.DatabaseError)) as info:
        Store(path).list_runs()
    if isinstance(info.value, StoreUnavailable):
        assert str(path) in str(info.value) and "damaged" in str(info.value)
    assert path.read_bytes() == damaged  # left exactly as it was: never silently replaced

    cli = subprocess.run([sys.executable, "-m", "engine", "runs"], capture_output=True, text=True, timeout=120)
    assert cli.returncode == 2 and "Traceback" not in cli.stderr, cli.stderr
    lines = cli.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "damaged" in lines[0], cli.stderr
    assert path.read_bytes() == damaged


def test_the_damage_message_names_the_newest_backup(trainlens_home):
    store = Store()
    store.create_run(slow_run(), name="kept")
    backup = store.backup()
    store.close()
    store.path.write_bytes(b"")
    with pytest.raises(StoreUnavailable) as info:
        Store(store.path)
    assert f"cp {backup} {store.path}" in str(info.value)
    assert Store(backup).list_runs()["name"].tolist() == ["kept"]  # the backup is a whole, readable store


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB tmpfs: a disk that can really fill up. Needs root (mount); skipped with the reason otherwise."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_full_disk_keeps_the_store_readable_and_says_so(small_disk, monkeypatch):
    home = small_disk / "home"
    monkeypatch.setenv("TRAINLENS_HOME", str(home))
    store = Store()
    run_id = store.create_run(slow_run(), name="before the disk filled")
    store.log_batch([(run_id, step, 0, "loss", 1.0, time.time()) for step in range(1, 101)])
    store.close()
    filler = small_disk / "filler"
    with open(filler, "wb") as f:  # fill every last block
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass

    reader = Store()  # opening writes nothing, so it works
    assert reader.list_runs()["name"].tolist() == ["before the disk filled"]
    assert reader.count_metrics(run_id) == 100
    with pytest.raises(sqlite3.OperationalError) as info:
        for step in range(101, 100_000, 500):  # the WAL takes a few pages before the disk refuses
            reader.log_batch([(run_id, s, 0, "loss", 1.0, time.time()) for s in range(step, step + 500)])
    assert "disk is full" in str(describe(info.value, reader.path))
    cli = subprocess.run([sys.executable, "-m", "engine", "train", "--set", "epochs=1"], capture_output=True,
                         text=True, timeout=120)
    assert cli.returncode == 2 and "Traceback" not in cli.stderr
    assert len(cli.stderr.strip().splitlines()) == 1 and "disk is full" in cli.stderr and str(home) in cli.stderr
    listing = subprocess.run([sys.executable, "-m", "engine", "runs"], capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0 and "before the disk filled" in listing.stdout, listing.stderr
    filler.unlink()
    assert Store().count_metrics(run_id) >= 100  # nothing already saved was lost


def test_a_sink_keeps_rows_through_a_failing_store_and_writes_them_after(trainlens_home, monkeypatch):
    from engine.runs import worker

    store = Store()
    run_id = store.create_run(slow_run())
    lease = store.claim_next("w", "cpu")["lease"]
    monkeypatch.setattr(worker, "FLUSH_S", 3600.0)  # flushes only when the test says
    sink = worker.StoreSink(store, run_id, lease=lease)
    real = store.log_batch
    failing = threading.Event()
    failing.set()

    def log_batch(rows, fence=None):
        if failing.is_set():
            raise sqlite3.OperationalError("database or disk is full")
        return real(rows, fence=fence)

    monkeypatch.setattr(store, "log_batch", log_batch)
    for step in range(1, 51):
        sink.log(step, 0, {"loss": 1.0 / step})
    assert sink.flush() is False and sink.failing_since is not None
    for step in range(51, 101):
        sink.log(step, 0, {"loss": 1.0 / step})
    assert sink.flush() is False
    failing.clear()  # space was freed
    assert sink.close() is True
    assert store.metric_history(run_id, "loss")["step"].tolist() == list(range(1, 101))


def test_a_worker_whose_store_keeps_failing_fences_itself(trainlens_home, monkeypatch):
    from engine.runs import worker

    monkeypatch.setattr(Store, "STALE_AFTER_S", 0.1)
    store = Store()
    run_id = store.create_run(slow_run())
    lease = store.claim_next("w", "cpu")["lease"]
    w = worker.Worker.__new__(worker.Worker)  # the fencing rule only, without a process around it
    w.cancel, w.stop, w.fenced = threading.Event(), threading.Event(), threading.Event()
    w.run_id, w.worker_id, w.fence_reason = run_id, "w", ""
    w.sink = worker.StoreSink(store, run_id, lease=lease)
    assert w.should_stop() is False
    w.sink.failing_since = time.monotonic() - 1.0
    assert w.should_stop() is True and w.fenced.is_set() and "could not be written" in w.fence_reason
    w.sink.close(give_up=lambda: True)


def test_names_are_capped_and_long_stored_names_are_cut_when_read(trainlens_home):
    store = Store()
    with pytest.raises(ValueError, match="at most 120"):
        store.create_run(slow_run(), name="n" * 10_000)
    with pytest.raises(ValueError, match="at most 120"):
        store.create_run(slow_run(group="g" * 121))
    with pytest.raises(ValueError, match="at most 120"):
        slow_run(name="x" * 50_000)
    run_id = store.create_run(slow_run(), name="short")
    store.conn.execute("UPDATE runs SET name=? WHERE run_id=?", ("N" * 50_000_000, run_id))  # written before the cap
    started = time.time()
    frame = store.list_runs()
    assert len(frame["name"].iloc[0]) == 1000 and time.time() - started < 2
    assert len(store.get_run(run_id)["name"]) == 1000
    assert records.NAME_MAX == 120


def test_data_dir_outside_the_data_roots_is_refused(trainlens_home, tmp_path, monkeypatch):
    from engine.data.loading import load_dataset
    from engine.paths import check_data_dir, data_dir

    store = Store()
    outside = tmp_path / "etc"
    for bad in (str(outside), "../../..", "/etc"):
        with pytest.raises(ValueError, match="outside the allowed data folders"):
            store.create_run(slow_run(dataset="mnist", data_dir=bad))
    with pytest.raises(ValueError, match="outside the allowed data folders"):
        load_dataset("mnist", data_dir=str(outside), download=True)
    assert not outside.exists() and not (tmp_path / "MNIST").exists()  # nothing created, nothing downloaded
    (data_dir() / "link").symlink_to(tmp_path)  # a link inside the data folder cannot lead out
    with pytest.raises(ValueError):
        check_data_dir("link/MNIST")
    assert check_data_dir("mnist_files") == data_dir() / "mnist_files"  # relative: under TRAINLENS_HOME/data
    monkeypatch.setenv("TRAINLENS_DATA_DIRS", str(outside))  # the server's operator allows a folder
    assert check_data_dir(outside) == outside.resolve()


def test_a_garbled_schema_version_is_named_with_the_fix_not_move_the_store_aside(trainlens_home):
    from engine.runs.store import SCHEMA_VERSION

    store = Store()
    store.create_run(slow_run(), name="kept")
    store.conn.execute("UPDATE meta SET value='3x!' WHERE key='schema_version'")
    store.close()
    with pytest.raises(StoreUnavailable) as info:
        Store(store.path)
    message = str(info.value)
    assert "has an unreadable schema version ('3x!' in its meta table" in message
    assert (f"`sqlite3 {store.path} \"UPDATE meta SET value='{SCHEMA_VERSION}' WHERE key='schema_version'\"`"
            in message)
    assert "aside" not in message and "damaged" not in message  # the runs are all there: nothing to move aside
    sqlite3.connect(store.path).execute(
        f"UPDATE meta SET value='{SCHEMA_VERSION}' WHERE key='schema_version'").connection.commit()
    assert Store(store.path).list_runs()["name"].tolist() == ["kept"]  # the advice works
