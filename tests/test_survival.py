"""Runs outlive whatever started them: killing the dashboard (or CLI) process mid-run loses nothing.

The dashboard starts workers through engine.runs.runner; a worker must not die with the server that
started it (a Streamlit restart, a closed terminal), and a new server must find the run in the store,
still training, and see it complete.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.runs.store import Store

ROOT = Path(__file__).resolve().parent.parent

STARTER = """
import time
from engine.config import RunConfig
from engine.runs.runner import Runner
handle = Runner(workers=1).submit(RunConfig(train_limit=1600, epochs=10, batch_size=16, layer_stats_every=0))
print(handle.run_id, flush=True)
time.sleep(120)  # a server that keeps running until it is killed
"""


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_killing_the_process_that_started_a_run_does_not_stop_it(trainlens_home):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TRAINLENS_HOME=str(trainlens_home))
    # its own process group, like a server started from a terminal: killpg takes down the group
    starter = subprocess.Popen([sys.executable, "-c", STARTER], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        run_id = starter.stdout.readline().strip()
        assert run_id, "the starter printed no run id"
        store = Store(trainlens_home / "trainlens.db")
        deadline = time.time() + 90
        while store.get_run(run_id)["step"] < 5:  # training has begun in the worker
            assert time.time() < deadline, f"the run never started: {store.get_run(run_id)}"
            time.sleep(0.2)
    finally:
        os.killpg(starter.pid, signal.SIGKILL)
        starter.wait()

    step_at_kill = store.get_run(run_id)["step"]
    deadline = time.time() + 120
    while store.get_run(run_id)["status"] in ("queued", "running"):
        assert time.time() < deadline, "the run did not finish after its starter was killed"
        time.sleep(0.3)
    run = store.get_run(run_id)
    assert run["status"] == "completed", run["error"]
    assert run["step"] == run["total_steps"] > step_at_kill
    # every step's loss is there: nothing was lost while no dashboard was watching
    assert len(store.metric_history(run_id, "loss")) == run["total_steps"]
