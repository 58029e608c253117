"""Just after Start the live parts look for a run's first points more often (app/ui/live.py): only while a run of
theirs is moments old, active and without a step, so a page of running or finished runs keeps its usual pace."""

from __future__ import annotations

import time

import pandas as pd

from app.ui.live import FIRST_POINTS_S, awaiting_first_points


def runs(*rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["run_id", "status", "step", "created_at"])


def test_a_run_started_moments_ago_without_a_step_is_awaited():
    now = time.time()
    assert awaiting_first_points(runs(("a", "queued", 0, now - 0.5)), ["a"])
    assert awaiting_first_points(runs(("a", "running", 0, now - 2.0)), ["a"])


def test_its_first_step_an_old_run_another_s_run_or_an_ended_one_are_not():
    now = time.time()
    assert not awaiting_first_points(runs(("a", "running", 3, now - 1.0)), ["a"])  # its points are in
    assert not awaiting_first_points(runs(("a", "queued", 0, now - FIRST_POINTS_S - 1)), ["a"])  # a long wait
    assert not awaiting_first_points(runs(("b", "queued", 0, now - 0.5)), ["a"])  # not this panel's run
    assert not awaiting_first_points(runs(("a", "failed", 0, now - 0.5)), ["a"])
    assert not awaiting_first_points(runs(("a", "queued", 0, now - 0.5)), None)  # every run: a listing, not a launch
