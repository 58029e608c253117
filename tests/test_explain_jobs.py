"""Tests of app.server.explain_jobs.JobBoard: background jobs keyed by what they compute, shared across threads.

Jobs are plain functions gated by threading.Events, so each test decides when a job runs, reports and ends.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.server.explain_jobs import DONE, FAILED, QUEUED, RUNNING, JobBoard

WAIT = 10.0  # seconds: generous, a job here takes microseconds once released


def gated(release: threading.Event, value=None, reached: threading.Event | None = None):
    """A job that reports 0.5, then waits for `release` and returns `value`."""
    def job(progress):
        progress(0.5)
        if reached is not None:
            reached.set()
        assert release.wait(WAIT)
        return value
    return job


def test_submit_progress_and_result():
    board = JobBoard()
    release, reached = threading.Event(), threading.Event()
    assert board.status("map") is None and board.progress("map") == 0.0
    board.submit("map", gated(release, {"seconds": 1.0}, reached))
    assert reached.wait(WAIT)
    assert board.status("map") == RUNNING
    assert board.progress("map") == 0.5  # reported from the worker thread
    release.set()
    assert board.result("map", timeout=WAIT) == {"seconds": 1.0}
    assert board.status("map") == DONE and board.progress("map") == 1.0


def test_arguments_reach_the_job():
    board = JobBoard()
    board.submit("sum", lambda a, b, *, scale, progress: (a + b) * scale, 1, 2, scale=10)
    assert board.result("sum", timeout=WAIT) == 30


def test_a_failing_job_raises_its_own_error():
    board = JobBoard()

    def broken(progress):
        raise RuntimeError("CUDA out of memory")

    board.submit("bad", broken)
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        board.result("bad", timeout=WAIT)
    assert board.status("bad") == FAILED


def test_unknown_key_and_timeout():
    board = JobBoard()
    with pytest.raises(KeyError):
        board.result("never")
    release = threading.Event()
    board.submit("slow", gated(release))
    with pytest.raises(TimeoutError):
        board.result("slow", timeout=0.01)
    release.set()


def test_jobs_wait_their_turn_on_one_worker():
    board = JobBoard(max_workers=1)
    release, reached = threading.Event(), threading.Event()
    board.submit("first", gated(release, 1, reached))
    board.submit("second", lambda progress: 2)
    assert reached.wait(WAIT)
    assert board.status("second") == QUEUED and board.progress("second") == 0.0
    release.set()
    assert board.result("second", timeout=WAIT) == 2


def test_finished_jobs_beyond_the_cap_are_dropped_oldest_first():
    board = JobBoard(keep=3)
    for i in range(3):
        board.submit(i, lambda progress, i=i: i)
        assert board.result(i, timeout=WAIT) == i
    release, reached = threading.Event(), threading.Event()
    board.submit("running", gated(release, "late", reached))  # one over the cap: the oldest finished job goes
    assert reached.wait(WAIT)
    assert board.status(0) is None and [board.status(i) for i in (1, 2)] == [DONE, DONE]
    board.submit("queued", lambda progress: "queued")  # one over again: the next oldest finished job goes
    assert board.status(1) is None and board.status(2) == DONE
    board.submit("more", lambda progress: "more")
    board.submit("again", lambda progress: "again")  # unfinished jobs stay, even beyond the cap
    assert board.status(2) is None
    assert board.status("running") == RUNNING and [board.status(k) for k in ("queued", "more", "again")] == [QUEUED] * 3
    release.set()
    assert board.result("running", timeout=WAIT) == "late"
    board.submit(0, lambda progress: "resubmitted")  # a dropped key is simply computed again
    assert board.result(0, timeout=WAIT) == "resubmitted"


def test_concurrent_submits_of_one_key_run_it_once():
    board = JobBoard(max_workers=2)
    calls = []
    calls_lock = threading.Lock()
    start = threading.Barrier(8)

    def job(progress):
        with calls_lock:
            calls.append(threading.current_thread().name)
        return "map"

    def session(_):  # what each browser session's script thread does
        start.wait(WAIT)
        board.submit("same map", job)
        return board.result("same map", timeout=WAIT)

    with ThreadPoolExecutor(max_workers=8) as sessions:
        assert list(sessions.map(session, range(8))) == ["map"] * 8
    assert len(calls) == 1


def test_a_resubmitted_key_keeps_its_own_progress():
    # a job dropped from the board and resubmitted: the old job's late reports must not move the new one's bar
    board = JobBoard(keep=1)
    old_report = []
    board.submit("map", lambda progress: old_report.append(progress))
    board.result("map", timeout=WAIT)
    board.submit("other", lambda progress: None)  # beyond the cap: drops the finished "map"
    assert board.status("map") is None
    release, reached = threading.Event(), threading.Event()
    board.submit("map", gated(release, reached=reached))
    assert reached.wait(WAIT)
    old_report[0](0.9)
    assert board.progress("map") == 0.5
    release.set()
