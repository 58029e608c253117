"""ETAs only once a pace is measured: the store computes `eta_s` from a smoothed pace measured from a run's first
progress report on (engine.runs.store.runs), and the CLI's progress bar shows that ETA, each update once."""

from __future__ import annotations

import io

import pytest

from engine.cli.runs import follow_progress
from engine.config import RunConfig
from engine.records import RunStatus
from engine.runs.store import ETA_AFTER_S, Store


class Clock:
    def __init__(self, now: float = 1_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr("engine.runs.store.runs.time.time", clock)
    return clock


def test_the_first_eta_is_close_to_the_truth_after_a_slow_start(trainlens_home, clock):
    """A 13 s run: 8 s of data loading and warm-up, then 100 steps/s for 500 steps (5 s). Timing from the start,
    the first ETA said 1m 37s; at the measured pace it is a few seconds, and none before the pace is measured."""
    store = Store()
    run_id = store.create_run(RunConfig(epochs=1))
    store.claim_next("w", "cpu")
    clock.now += 8.0  # loading the data, building the model, the first slow steps
    store.update_progress(run_id, 1, 500, 0)
    eta = None
    while eta is None and clock.now < 1_013.0:  # a report every 0.25 s, at 100 steps/s
        clock.now += 0.25
        store.update_progress(run_id, store.get_run(run_id)["step"] + 25, 500, 0)
        run = store.get_run(run_id)
        eta = run["eta_s"]
        assert eta is not None or clock.now - 1_008.0 < ETA_AFTER_S + 0.25  # none until the pace is measured
    assert clock.now - 1_008.0 >= ETA_AFTER_S
    truth = (500 - run["step"]) / 100.0
    assert abs(eta - truth) < 0.1 * truth, (eta, truth)
    clock.now += 0.5  # between reports it counts down
    assert store.get_run(run_id)["eta_s"] == pytest.approx(eta - 0.5, abs=0.01)
    # a resumed run is measured afresh (it may train at another pace, on another device)
    store.update_status(run_id, RunStatus.INTERRUPTED)
    store.resume_run(run_id)
    store.claim_next("w2", "cpu")
    store.update_progress(run_id, 200, 500, 0)
    assert store.get_run(run_id)["eta_s"] is None
    store.close()


def fake_runs(*updates):
    config = RunConfig(epochs=2)
    return iter([{"status": status, "epoch": step // 11, "step": step, "total_steps": 0 if status == "queued" else 20,
                  "eta_s": eta, "config": config} for status, step, eta in updates])


def test_the_cli_draws_each_progress_update_once_with_the_stores_eta():
    runs = fake_runs(("queued", 0, None), ("running", 0, None), ("running", 5, None), ("running", 5, None),
                     ("running", 10, 12.4), ("running", 10, 12.3), ("running", 20, 3.0), ("completed", 20, None))
    out = io.StringIO()
    assert follow_progress(lambda: next(runs), lambda: None, out, poll_s=0) == "completed"
    lines = [line.rstrip() for line in out.getvalue().replace("\r", "\n").splitlines() if line.strip()]
    assert len(lines) == len(set(lines)) == 6, lines  # queued, then five changes: no poll drawn twice
    assert [line for line in lines if "ETA" in line] == [
        "running epoch 1/2:   50%|#####     | 10/20 steps, ETA 0:12", "running epoch 2/2:  100%|##########| 20/20 steps, ETA 0:03"]
    assert lines[-1].startswith("completed") and out.getvalue().endswith("\n")
