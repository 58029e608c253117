"""The Ray executor against a real two-node Ray cluster on this machine (ray.cluster_utils.Cluster).

Not collected by a plain `pytest` run: tests/test_ray_executor.py runs this file inside a private network namespace
(`unshare -n`, loopback only), so Ray's processes can neither reach nor be reached from any network. One cluster
serves every case (starting it is the slow part): a head without CPUs (only the driver's bookkeeping and the
dispatcher's channel live there) and two worker nodes of 2 CPUs each, so every run lands on a node that can be
removed. Runs are queued through the Runner exactly as the dashboard does; with TRAINLENS_EXECUTOR=ray the runner
starts the dispatcher process, which trains them on the cluster and is the store's only writer.
"""

from __future__ import annotations

import functools
import os
import signal
import time

import numpy as np
import pytest
import ray
from ray.cluster_utils import Cluster
from ui_helpers import fresh_app, wait_for

from engine.config import RunConfig
from engine.records import PLACEMENT, RAY_ATTEMPTS, RunStatus

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]  # a Ray cluster: processes (tests/conftest.py)

SMALL = RunConfig(model="mlp", hidden=32, train_limit=256, batch_size=32, epochs=2, layer_stats_every=0)  # 16 steps
# long enough to be caught mid-run on a busy machine: 6 epochs of 250 steps, a checkpoint after each
LONG = RunConfig(model="mlp", hidden=256, train_limit=2000, batch_size=8, epochs=6, layer_stats_every=0)
STEPS_PER_EPOCH = 250
TIMING_KEYS = {"examples_per_s"}  # wall-clock measurements differ between any two runs
# a removed node is declared dead in seconds, not Ray's default half minute; not quicker: on a busy 2-core machine a
# live node (the head, whose death ends the dispatcher) must never miss that many checks
FAST_NODE_DEATH = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 1000,
                   "health_check_timeout_ms": 2000, "health_check_failure_threshold": 5}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    home = tmp_path_factory.mktemp("ray_home")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "_system_config": FAST_NODE_DEATH})
    nodes = [cluster.add_node(num_cpus=2) for _ in range(2)]
    cluster.wait_for_nodes()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {"TRAINLENS_HOME": str(home), "TRAINLENS_EXECUTOR": "ray",
                           "TRAINLENS_RAY_ADDRESS": cluster.address, "TRAINLENS_RAY_RETRIES": "1",
                           "TRAINLENS_WORKER_IDLE_S": "300"}.items():
            mp.setenv(key, value)
        from engine.runs.runner import Runner

        runner = Runner()
        try:
            yield cluster, nodes, runner
        finally:
            runner.shutdown()
            runner.store.close()
            if ray.is_initialized():
                ray.shutdown()
            cluster.shutdown()


@pytest.fixture(autouse=True)
def trainlens_home(cluster):  # every case uses the cluster's home (the conftest would give each its own)
    return os.environ["TRAINLENS_HOME"]


def rows(store, run_id) -> list[tuple]:
    frame = store.get_metrics(run_id)
    return sorted(zip(frame["step"], frame["epoch"], frame["key"], frame["value"]))


@functools.cache
def reference_rows(config_json: str) -> list[tuple]:
    """The same run trained in this process by the same job code the local workers run."""
    config = RunConfig.from_json(config_json)
    from engine.runs.jobs import run_job
    from engine.train import MemorySink

    sink = MemorySink()
    status, _ = run_job({"run_id": None, "kind": "train", "config": config}, sink, lambda: False, "cpu")
    assert status == RunStatus.COMPLETED
    return sorted(sink.rows)


def finished(runner, run_id, timeout=240) -> dict:
    wait_for(lambda: runner.store.get_run(run_id)["status"] not in ("queued", "running"), timeout,
             what=f"run {run_id} to finish")
    return runner.store.get_run(run_id)


@pytest.fixture(scope="module")
def eight(cluster) -> list[str]:
    """Eight small runs (seeds 0..7) queued at once, as a race from the dashboard would, all finished."""
    _, _, runner = cluster
    ids = [runner.submit(SMALL.with_updates(seed=seed), name=f"seed {seed}", group="eight").run_id for seed in range(8)]
    for run_id in ids:
        finished(runner, run_id)
    return ids


def test_a_run_on_ray_logs_the_same_rows_as_the_local_executor(cluster, eight):
    _, _, runner = cluster
    run_id = eight[0]  # seed 0: SMALL itself
    run = runner.store.get_run(run_id)
    assert run["status"] == RunStatus.COMPLETED, run["error"]
    got, want = rows(runner.store, run_id), reference_rows(SMALL.to_json())
    assert len(got) == len(want)
    assert [r[:3] for r in got] == [r[:3] for r in want]  # the same (step, epoch, key) rows, none lost or doubled
    same = [(g[3], w[3]) for g, w in zip(got, want) if g[2] not in TIMING_KEYS]
    np.testing.assert_array_equal(*zip(*same))  # same seed, same values on CPU
    # the checkpoints came back to the head as bytes and are recorded where the pages look for them
    checkpoints = runner.store.list_checkpoints(run_id)
    assert set(checkpoints["kind"]) == {"epoch", "best"} and all(os.path.exists(p) for p in checkpoints["path"])
    placement = runner.store.get_artifact(run_id, PLACEMENT)
    assert placement["executor"] == "ray" and placement["device"] == "cpu" and placement["threads"] == 1
    live = runner.store.live_workers()
    assert list(live["device"]) == ["ray"]  # one dispatcher, no local worker pool


def test_eight_concurrent_runs_on_two_nodes_lose_no_rows(cluster, eight):
    _, nodes, runner = cluster
    expected = len(reference_rows(SMALL.to_json()))  # the row count depends on the config's steps, not on its seed
    for run_id in eight:
        run = runner.store.get_run(run_id)
        assert run["status"] == RunStatus.COMPLETED, run["error"]
        assert runner.store.count_metrics(run_id) == expected
        steps = runner.store.metric_history(run_id, "loss")["step"].tolist()
        assert steps == list(range(1, len(steps) + 1))
    used = {runner.store.get_artifact(r, PLACEMENT)["node_id"] for r in eight}
    assert used == {node.node_id for node in nodes}  # both nodes trained some of them


def test_a_helper_job_runs_on_ray_and_files_its_result_on_the_run_it_serves(cluster, eight):
    from engine.records import OVERFIT_ONE_BATCH, RunKind

    _, _, runner = cluster
    parent = eight[0]
    job = runner.submit(SMALL, kind=RunKind.OVERFIT, parent_id=parent).run_id
    run = finished(runner, job)
    assert run["status"] == RunStatus.COMPLETED, run["error"]
    result = runner.store.get_artifact(parent, OVERFIT_ONE_BATCH)  # mirrored by the head's writer onto the run
    assert result is not None and result == runner.store.get_artifact(job, OVERFIT_ONE_BATCH)
    assert runner.store.get_artifact(job, PLACEMENT)["executor"] == "ray"


def test_the_runs_page_shows_a_ray_run_live_and_cancel_reaches_it(cluster):
    _, nodes, runner = cluster
    at = fresh_app()
    at.run()  # the first run of the app imports the pages: seconds, before the run starts
    run_id = runner.submit(LONG, name="watched").run_id
    wait_for(lambda: runner.store.get_run(run_id)["step"] > 0, 120, what="the run to train on Ray")
    at.switch_page("views/runs.py").run()
    assert not at.exception, [e.value for e in at.exception]
    row = at.dataframe(key="runs_table").value.set_index("run_id").loc[run_id]
    assert "running" in row["status"] and row["progress"] > 0
    node_id = runner.store.get_artifact(run_id, PLACEMENT)["node_id"]
    assert row["runs on"].startswith("ray 127.0.0.1") and node_id[:8] in row["runs on"] and row["runs on"].endswith("cpu")
    wait_for(lambda: any("Ray cluster at" in c.value for c in at.run().caption), 30, what="the cluster's resources")
    caption = next(c.value for c in at.caption if "Ray cluster at" in c.value)
    assert "3 node(s)" in caption and "of 4 CPUs free" in caption  # the head (no CPUs) and two nodes of two
    from engine.runs.placement import read_cluster

    head = cluster[0].head_node.node_id
    assert read_cluster()["dispatcher_node"] == head  # its channel too: a worker node's death must not take it
    asked = time.monotonic()
    runner.cancel(run_id)
    wait_for(lambda: runner.store.get_run(run_id)["status"] == RunStatus.CANCELLED, 30, interval=0.05,
             what="the cancel to reach the task")
    assert time.monotonic() - asked < 3.0  # about a second (dispatcher tick + push interval) on a busy machine


def node_of(nodes, node_id):
    return next(node for node in nodes if node.node_id == node_id)


def test_a_lost_worker_and_a_lost_node_interrupt_the_run_and_it_continues_from_its_checkpoint(cluster):
    cluster_, nodes, runner = cluster
    store = runner.store
    run_id = runner.submit(LONG, name="survivor").run_id
    # 1. kill the worker process training it, after its first checkpoint: retried (TRAINLENS_RAY_RETRIES=1)
    wait_for(lambda: len(store.list_checkpoints(run_id)) > 0 and store.get_run(run_id)["step"] > STEPS_PER_EPOCH,
             180, what="the first checkpoint")
    first = store.get_artifact(run_id, PLACEMENT)
    os.kill(first["pid"], signal.SIGKILL)
    wait_for(lambda: store.get_artifact(run_id, RAY_ATTEMPTS), 60, what="the lost worker to be noticed")
    assert "lost" in store.get_artifact(run_id, RAY_ATTEMPTS)[0]
    wait_for(lambda: (store.get_artifact(run_id, PLACEMENT) or {}).get("pid") not in (None, first["pid"]), 120,
             what="the run to be retried")
    # 2. remove the node it now trains on, after its next checkpoint: no retry left, so it stays interrupted
    epochs_done = len(store.list_checkpoints(run_id).query("kind == 'epoch'"))
    wait_for(lambda: len(store.list_checkpoints(run_id).query("kind == 'epoch'")) > epochs_done, 120,
             what="a checkpoint of the retried run")
    second = store.get_artifact(run_id, PLACEMENT)
    cluster_.remove_node(node_of(nodes, second["node_id"]), allow_graceful=False)
    run = finished(runner, run_id, timeout=120)
    assert run["status"] == RunStatus.INTERRUPTED and "lost" in run["error"] and "resume" in run["error"]
    assert len(store.get_artifact(run_id, RAY_ATTEMPTS)) == 2
    # 3. resumed by hand, it finishes on the node that is left, from its last checkpoint
    runner.resume(run_id)
    run = finished(runner, run_id)
    assert run["status"] == RunStatus.COMPLETED, run["error"]
    survivor = next(node for node in nodes if node.node_id != second["node_id"])
    assert store.get_artifact(run_id, PLACEMENT)["node_id"] == survivor.node_id
    loss_steps = store.metric_history(run_id, "loss")["step"].tolist()
    assert loss_steps == list(range(1, LONG.epochs * STEPS_PER_EPOCH + 1))  # continuous: none doubled, none missing
    assert store.metric_history(run_id, "val_acc")["epoch"].tolist() == list(range(LONG.epochs))


def test_an_unreachable_cluster_is_reported_and_the_runs_wait(tmp_path, monkeypatch):
    import subprocess
    import sys

    from engine.runs.placement import cluster_summary, read_cluster

    env = dict(os.environ, TRAINLENS_HOME=str(tmp_path), TRAINLENS_RAY_ADDRESS="127.0.0.1:9",
               TRAINLENS_RAY_CONNECT_TIMEOUT_S="3")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "engine.runs.ray_dispatch"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1 and time.monotonic() - started < 60
    assert "cannot reach the Ray cluster at 127.0.0.1:9" in result.stderr
    monkeypatch.setenv("TRAINLENS_HOME", str(tmp_path))  # what the Runs page of that home says
    summary = cluster_summary(read_cluster())
    assert summary.startswith("Ray: cannot reach the Ray cluster at 127.0.0.1:9") and "queued runs wait" in summary
