"""The SQLite run store: schema version, runs and the queue, metrics, workers and reaping, and its behaviour
across processes (a reader sees a live writer's batches; two claimers never take the same run).
"""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.records import RunRecord
from engine.runs.store import RUN_COLUMNS, SCHEMA_VERSION, Store

PROJECT = str(Path(__file__).resolve().parent.parent)


@pytest.fixture
def store(trainlens_home):
    store = Store()
    yield store
    store.close()


def _python(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=PROJECT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_store_lives_in_the_home_and_records_its_schema_version(store, trainlens_home):
    assert store.path == trainlens_home / "trainlens.db"
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (str(SCHEMA_VERSION),)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    Store(store.path)  # reopening an up-to-date store is fine


def test_a_store_from_a_newer_version_is_refused(store):
    store.conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(RuntimeError, match="newer"):
        Store(store.path)


def test_create_and_get_run(store):
    config = RunConfig(model="mlp", lr=0.05, group="race")
    run_id = store.create_run(config, owner="ada")
    run = store.get_run(run_id)
    assert run["config"] == config and run["status"] == "queued" and run["owner"] == "ada"
    assert run["name"] == config.display_name() and run["group"] == "race"
    assert store.find_run(run_id[:6]) == run_id and store.find_run("zz") is None
    assert store.get_run("nope") is None
    with pytest.raises(ValueError, match="lr"):
        store.create_run(RunConfig(lr=-1.0))


def test_list_runs_newest_first_with_config_columns(store):
    first = store.create_run(RunConfig(seed=1))
    second = store.create_run(RunConfig(seed=2), group="g")
    frame = store.list_runs()
    assert frame["run_id"].tolist() == [second, first]
    assert frame["cfg.seed"].tolist() == [2, 1]
    assert store.list_runs(group="g")["run_id"].tolist() == [second]
    assert store.list_runs(status=["running"]).empty


def test_a_run_record_has_every_column_of_the_runs_table(store):
    table = [row["name"] for row in store.conn.execute("PRAGMA table_info(runs)")]
    assert table == list(RUN_COLUMNS)
    keys = list(RunRecord.__annotations__)
    assert [("grp" if key == "group" else key) for key in keys[:len(table)]] == table  # in the table's order
    assert keys[len(table):] == ["progress", "eta_s", "duration_s"]  # then the derived values
    run_id = store.create_run(RunConfig())
    assert list(store.get_run(run_id)) == list(store.claim_next("w", "cpu"))
    assert set(store.get_run(run_id)) == set(keys)


def test_a_listing_has_a_column_for_every_key_of_a_run_record(store):
    empty = store.list_runs()
    store.create_run(RunConfig())
    columns = set(store.list_runs().columns)
    assert set(RunRecord.__annotations__) - {"config"} <= columns
    assert {f"cfg.{field}" for field in RunConfig().to_dict()} <= columns  # the config, one column per field
    assert set(empty.columns) == columns  # an empty store's listing has the same columns


def test_cancel_a_queued_run_at_once_and_a_running_one_by_request(store):
    queued, running = store.create_run(RunConfig()), store.create_run(RunConfig())
    store.set_running(running, "w1", "cpu")
    assert store.request_cancel(queued) == "cancelled"
    assert store.get_run(queued)["status"] == "cancelled" and store.get_run(queued)["finished_at"]
    assert store.request_cancel(running) == "running"
    assert store.get_run(running)["status"] == "running" and store.cancel_requested(running)
    with pytest.raises(KeyError):
        store.request_cancel("nope")


def test_resume_requeues_only_resumable_runs(store):
    run_id = store.create_run(RunConfig())
    store.update_status(run_id, "completed")
    with pytest.raises(ValueError, match="completed"):
        store.resume_run(run_id)
    store.update_status(run_id, "interrupted", "worker lost")
    store.resume_run(run_id)
    run = store.get_run(run_id)
    assert (run["status"], run["resume_from"], run["error"], run["finished_at"]) == ("queued", "last", None, None)
    with pytest.raises(ValueError, match="status"):
        store.update_status(run_id, "paused")


def test_metrics_reads(store):
    run_id, other = store.create_run(RunConfig()), store.create_run(RunConfig())
    store.log_batch([(run_id, step, 0, key, step * 0.5 + (key == "lr"), 1.0) for step in (1, 2, 3) for key in ("loss", "lr")])
    store.log_batch([(other, 1, 0, "loss", 9.0, 1.0)])
    frame = store.get_metrics(run_id)
    assert len(frame) == 6 and set(frame["run_id"]) == {run_id}
    assert frame["id"].is_monotonic_increasing
    newer = store.get_metrics(run_id, after_id=int(frame["id"].iloc[3]))
    assert newer["id"].tolist() == frame["id"].tolist()[4:]
    assert store.get_metrics([run_id, other], keys=["loss"])["value"].tolist() == [0.5, 1.0, 1.5, 9.0]
    assert store.metric_history(run_id, "lr")["value"].tolist() == [1.5, 2.0, 2.5]
    assert store.last_values(run_id) == {"loss": 1.5, "lr": 2.5}
    assert store.count_metrics(run_id) == 6 and store.count_metrics() == 7
    store.delete_metrics_after(run_id, 1)
    assert store.get_metrics(run_id)["step"].tolist() == [1, 1]


def test_a_non_finite_loss_reads_back_as_nan(store):
    run_id = store.create_run(RunConfig())
    store.log_batch([(run_id, 1, 0, "loss", float("nan"), 1.0), (run_id, 2, 0, "loss", float("inf"), 1.0)])
    values = store.get_metrics(run_id)["value"].tolist()
    assert math.isnan(values[0]) and values[1] == math.inf


def test_checkpoints_and_artifacts(store):
    run_id = store.create_run(RunConfig())
    store.add_checkpoint(run_id, 0, "epoch", "/x/epoch_0.safetensors", {"val_loss": 1.0})
    store.add_checkpoint(run_id, 0, "epoch", "/x/epoch_0.safetensors", {"val_loss": 0.5})  # replaced, not doubled
    frame = store.list_checkpoints(run_id)
    assert len(frame) == 1 and json.loads(frame["metrics"][0]) == {"val_loss": 0.5}
    store.put_artifact(run_id, "model_summary", {"parameters": 12})
    assert store.get_artifact(run_id, "model_summary") == {"parameters": 12}
    assert store.list_artifacts(run_id) == ["model_summary"] and store.get_artifact(run_id, "x") is None
    store.delete_run(run_id)
    assert store.get_run(run_id) is None and store.list_checkpoints(run_id).empty


def test_artifact_values_of_many_runs_at_once(store):
    from engine.runs.placement import placements

    run_ids = [store.create_run(RunConfig(seed=seed)) for seed in range(4)]
    store.put_artifact(run_ids[0], "placement", {"node_ip": "10.0.0.7"})
    store.put_artifact(run_ids[1], "placement", [1, 2])
    store.put_artifact(run_ids[2], "model_summary", {"parameters": 12})
    store.put_artifact(run_ids[3], "placement", {})
    store.conn.execute("UPDATE artifacts SET value='{not json' WHERE run_id=?", (run_ids[3],))  # a damaged row
    asked = [f"gone{i}" for i in range(1200)] + run_ids  # more runs than one query's parameters
    assert store.artifact_values("placement", asked) == {run_ids[0]: {"node_ip": "10.0.0.7"}, run_ids[1]: [1, 2]}
    assert placements(store, asked) == {run_ids[0]: {"node_ip": "10.0.0.7"}}
    assert store.artifact_values("placement", []) == {}


def test_check_readable_raises_when_the_runs_cannot_be_read(store):
    store.check_readable()
    store.conn.execute("DROP TABLE runs")
    with pytest.raises(sqlite3.DatabaseError):
        store.check_readable()


def test_reap_marks_dead_workers_and_interrupts_their_runs(store):
    run_id = store.create_run(RunConfig())
    store.register_worker("dead", 999999, "host-a", "cpu")
    store.register_worker("alive", 1, "host-a", "cpu")
    assert store.claim_next("dead", "cpu")["run_id"] == run_id
    store.update_progress(run_id, 42, 100, 0)
    interrupted = store.reap(is_alive=lambda pid, host: pid != 999999)
    assert interrupted == [run_id]
    run = store.get_run(run_id)
    assert run["status"] == "interrupted" and run["finished_at"]
    assert "999999" in run["error"] and "step 42" in run["error"] and "resume" in run["error"]
    assert store.live_workers()["worker_id"].tolist() == ["alive"]
    # a worker on another host (liveness unknown) is reaped only once its heartbeat is stale
    store.register_worker("remote", 5, "host-b", "cpu")
    assert store.reap(stale_after_s=60, is_alive=lambda pid, host: None) == []
    store.conn.execute("UPDATE workers SET heartbeat_at=heartbeat_at-120 WHERE worker_id='remote'")
    store.reap(stale_after_s=60, is_alive=lambda pid, host: None)
    assert "remote" not in store.live_workers()["worker_id"].tolist()


def test_reads_reap_with_the_staleness_limit_in_force(store, monkeypatch):
    # reap_if_due decides with Store.STALE_AFTER_S as set now; the reap it calls must use that limit too, not the
    # default bound when the class was defined (6 s), or a worker it finds lost is not reaped
    monkeypatch.setattr(Store, "STALE_AFTER_S", 1.0)
    run_id = store.create_run(RunConfig())
    store.register_worker("remote", 5, "host-b", "cpu")  # another host: only its heartbeat says it is alive
    assert store.claim_next("remote", "cpu")["run_id"] == run_id
    store.conn.execute("UPDATE workers SET heartbeat_at=heartbeat_at-3 WHERE worker_id='remote'")
    assert store.get_run(run_id)["status"] == "interrupted"
    assert store.live_workers().empty


def test_a_stop_requested_while_starting_survives_registration(store):
    store.register_worker("w", 10, "h", "starting")  # the runner registers a worker it just started
    store.request_worker_stop()
    store.register_worker("w", 10, "h", "cpu")  # the worker itself, once torch is imported
    assert store.live_workers()["device"].tolist() == ["cpu"]
    assert store.heartbeat("w", "idle", None)["stop"] is True  # it is told to stop at its first heartbeat


WRITER = """
import sys, time
from engine.runs.store import Store
store = Store(sys.argv[1])
for batch in range(int(sys.argv[2])):
    store.log_batch([("live", batch, 0, f"k{i}", float(i), time.time()) for i in range(25)])
    time.sleep(0.05)
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_reader_sees_rows_while_another_process_writes(store):
    batches = 40
    writer = _python(WRITER, str(store.path), str(batches))
    seen, counts_while_writing, last_id = [], set(), 0
    deadline = time.time() + 90
    try:
        while time.time() < deadline:
            writing = writer.poll() is None
            frame = store.get_metrics("live", after_id=last_id)
            if not frame.empty:
                seen += frame["id"].tolist()
                last_id = int(frame["id"].iloc[-1])
            if writing:
                counts_while_writing.add(len(seen))
            elif len(seen) == batches * 25:
                break
            time.sleep(0.02)
    finally:
        writer.wait(timeout=60)
    assert writer.returncode == 0, writer.stderr.read()
    assert len(seen) == len(set(seen)) == batches * 25  # every row exactly once
    assert seen == sorted(seen)
    growth = sorted(c for c in counts_while_writing if 0 < c < batches * 25)
    assert len(growth) >= 3, f"the reader saw only {growth} rows while the writer was writing"
    assert all(c % 25 == 0 for c in counts_while_writing)  # batches are atomic: never half a batch


CLAIMER = """
import json, os, sys, time
from engine.runs.store import Store
store = Store(sys.argv[1])
while not os.path.exists(sys.argv[2]):
    time.sleep(0.01)
claimed = []
while (run := store.claim_next(sys.argv[3], "cpu")) is not None:
    claimed.append(run["run_id"])
print(json.dumps(claimed))
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_claim_next_is_atomic_across_processes(store, tmp_path):
    run_ids = {store.create_run(RunConfig(seed=i)) for i in range(40)}
    go = tmp_path / "go"
    claimers = {name: _python(CLAIMER, str(store.path), str(go), name) for name in ("c1", "c2", "c3")}
    time.sleep(1.0)  # let them start and wait at the line
    go.touch()
    claimed = {}
    for name, proc in claimers.items():
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        claimed[name] = json.loads(out)
    everything = [run_id for ids in claimed.values() for run_id in ids]
    assert len(everything) == len(set(everything)) == 40  # no run taken twice
    assert set(everything) == run_ids
    for name, ids in claimed.items():
        for run_id in ids:
            run = store.get_run(run_id)
            assert run["worker_id"] == name and run["status"] == "running"
    assert store.claim_next("late", "cpu") is None
