"""AppTest tests of the dashboard's Train, Runs and Compare pages, against real worker processes.

Every test drives app/main.py through streamlit's AppTest on an isolated TRAINLENS_HOME (the
conftest's `trainlens_home`, or the module's `runner_home` for tests using the warm `runner` pool),
with the app's cached Store/Runner cleared first. Charts are checked through the arrays the browser
would receive (tests/ui_helpers.py decodes Plotly's base64 typed arrays).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from ui_helpers import (
    chart_by_key,
    chart_traces,
    figure_spec,
    fresh_app,
    is_band_edge,
    line_points,
    line_traces,
    wait_for,
)

from engine.config import RunConfig
from engine.race import RECOMMENDED_LR

pytestmark = pytest.mark.timeout(300)

TINY = {"train_limit": 300, "epochs": 1}  # 10 steps of batch 32: a couple of seconds on a busy CPU


def errors(at) -> str:
    return " | ".join(str(e.value) for e in at.error)


def assert_no_exception(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def open_page(at, page: str):
    """Run the app once (the Train page is the default), then switch to `page` and run it."""
    at.run()
    assert_no_exception(at)
    at.switch_page(page).run()
    assert_no_exception(at)
    return at


@pytest.fixture(scope="module")
def tiny_runs(runner) -> dict[str, str]:
    """Four finished tiny runs in one group: sgd and adam x seeds 0 and 1 -> {name: run_id}."""
    ids = {}
    for optimizer in ("sgd", "adam"):
        for seed in (0, 1):
            config = RunConfig(**TINY, optimizer=optimizer, lr=RECOMMENDED_LR[optimizer], seed=seed, group="tiny")
            ids[f"{optimizer} s{seed}"] = runner.submit(config, name=f"{optimizer} s{seed}", group="tiny").run_id
    for run_id in ids.values():
        assert runner.store.get_run(run_id) is not None
    from engine.runs.runner import RunHandle

    statuses = {name: RunHandle(runner.store, run_id).wait(timeout=240) for name, run_id in ids.items()}
    assert set(statuses.values()) == {"completed"}, statuses
    return ids


# ---------------------------------------------------------------------------------------------
# Train page
# ---------------------------------------------------------------------------------------------
def test_train_start_run_streams_a_growing_loss_curve(runner):
    at = fresh_app()
    at.run()
    assert_no_exception(at)
    # 600 examples x 2 epochs in batches of 2: 600 tiny steps, long enough (about 2 s) to be seen half drawn
    at.number_input(key="cfg_train_limit").set_value(600)
    at.number_input(key="cfg_batch_size").set_value(2)
    at.number_input(key="cfg_epochs").set_value(2)
    at.run()
    assert_no_exception(at)
    assert not errors(at)
    assert at.button(key="start").label == "Start run" and not at.button(key="start").disabled

    before = set(runner.store.list_runs()["run_id"])
    at.button(key="start").click().run()
    assert_no_exception(at)
    new = runner.store.list_runs()
    new = new[~new["run_id"].isin(before)]
    assert len(new) == 1, "one click on Start must queue exactly one run"
    run_id = new["run_id"].iloc[0]
    assert new["status"].iloc[0] in ("queued", "running")
    assert (new["cfg.train_limit"].iloc[0], new["cfg.batch_size"].iloc[0], new["cfg.epochs"].iloc[0]) == (600, 2, 2)
    assert at.session_state["launched_run_ids"] == [run_id]

    # poll like the live fragment does, until the run is over: the curve appears, then only grows
    total_steps = 2 * 300
    counts, seen_progress = [], []

    def rerun_and_count() -> int:
        at.run()
        assert_no_exception(at)
        chart = chart_by_key(at, "train_live_loss")
        counts.append(line_points(chart) if chart is not None else 0)
        seen_progress.extend(p.value for p in at.get("progress"))
        return counts[-1]

    wait_for(lambda: runner.store.get_run(run_id)["status"] not in ("queued", "running") or rerun_and_count() < 0,
             180, interval=0.2, what="the run to end")
    assert runner.store.get_run(run_id)["status"] == "completed", runner.store.get_run(run_id)["error"]
    # the last rows land within a refresh or two (the metrics cache reads the store at most every 0.3 s)
    wait_for(lambda: rerun_and_count() == total_steps, 10, interval=0.4, what=f"all {total_steps} points")
    assert counts == sorted(counts), f"the live loss curve lost points: {counts}"
    assert total_steps == len(runner.store.metric_history(run_id, "loss"))
    assert any(0 < c < total_steps for c in counts), f"never saw the curve half drawn: {counts}"
    # the drawn values are the run's logged losses, smoothed (TensorBoard EMA, debiased): the first point is raw
    logged = runner.store.metric_history(run_id, "loss")
    smoothed = line_traces(chart_by_key(at, "train_live_loss"))[0]
    assert smoothed["y"][0] == pytest.approx(logged["value"].iloc[0])
    assert list(smoothed["x"]) == list(logged["step"])
    assert seen_progress and max(seen_progress) == 100


def test_train_lr_zero_is_flagged_inline_and_blocks_start():
    at = fresh_app()
    at.run()
    assert not at.button(key="start").disabled
    at.number_input(key="cfg_lr").set_value(0.0)  # lr > 0 is an open bound: the widget allows 0
    at.run()
    assert_no_exception(at)
    assert "lr" in errors(at) and "0" in errors(at), errors(at)
    assert at.button(key="start").disabled
    at.number_input(key="cfg_lr").set_value(0.01)
    at.run()
    assert not errors(at)
    assert not at.button(key="start").disabled


def test_race_bad_sweep_value_is_flagged_and_blocks_start():
    at = fresh_app()
    at.run()
    at.segmented_control(key="launch_mode").set_value("Race")
    at.run()
    assert_no_exception(at)
    assert at.button(key="start").label == "Start race"
    assert at.text_input(key="race_values").disabled  # no field chosen yet
    at.selectbox(key="race_field").set_value("lr")
    at.run()
    at.text_input(key="race_values").input("0.1, abc")
    at.run()
    assert_no_exception(at)
    assert "abc" in errors(at), errors(at)
    assert at.button(key="start").disabled
    at.text_input(key="race_values").input("0.1, 0.01")
    at.run()
    assert not errors(at)
    assert not at.button(key="start").disabled
    assert "6 runs" in " ".join(c.value for c in at.caption)  # 3 default optimizers x 2 values


def test_race_starts_one_run_per_optimizer_with_its_recommended_lr(runner):
    at = fresh_app()
    at.run()
    at.number_input(key="cfg_train_limit").set_value(300)
    at.number_input(key="cfg_epochs").set_value(1)
    at.segmented_control(key="launch_mode").set_value("Race")
    at.run()
    optimizers = ["nesterov", "rmsprop", "adamw"]
    at.multiselect(key="race_optimizers").set_value(optimizers)
    at.text_input(key="race_group").input("ui race")
    at.run()
    assert_no_exception(at)
    assert "3 runs: nesterov, rmsprop, adamw" in " ".join(c.value for c in at.caption)
    at.button(key="start").click().run()
    assert_no_exception(at)

    race = runner.store.list_runs(group="ui race")
    try:
        assert len(race) == 3
        assert sorted(race["name"]) == sorted(optimizers)
        for _, run in race.iterrows():
            assert run["cfg.optimizer"] == run["name"]
            assert run["cfg.lr"] == RECOMMENDED_LR[run["name"]]
            assert run["cfg.group"] == "ui race" and run["group"] == "ui race"
            assert (run["cfg.train_limit"], run["cfg.epochs"], run["cfg.seed"]) == (300, 1, 0)
        assert sorted(at.session_state["launched_run_ids"]) == sorted(race["run_id"])
    finally:
        for run_id in race["run_id"]:
            runner.cancel(run_id)  # free the workers for the next tests


# ---------------------------------------------------------------------------------------------
# Runs page
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_runs_empty_state_offers_the_default_run(monkeypatch):
    monkeypatch.setenv("TRAINLENS_WORKERS", "1")  # the click starts a worker: keep it to one
    at = open_page(fresh_app(), "views/runs.py")
    assert "No runs yet" in " ".join(i.value for i in at.info)
    button = at.button(key="runs_default_run")
    assert button.label == "Start the default run"
    button.click().run()
    assert_no_exception(at)
    from engine.runs.store import Store

    store = Store()
    runs = store.list_runs()
    assert len(runs) == 1 and runs["status"].iloc[0] in ("queued", "running")
    store.request_cancel(runs["run_id"].iloc[0])  # 4,000 images x 3 epochs: not for a test
    assert store.get_run(runs["run_id"].iloc[0])["config"] == RunConfig()
    # the page now shows the table with that run instead of the empty state
    table = at.dataframe(key="runs_table").value
    assert list(table["run_id"]) == list(runs["run_id"])
    assert not [i for i in at.info if "No runs yet" in i.value]


def test_runs_page_lists_runs_and_cancels_a_running_one(runner, tiny_runs):
    long_run = runner.submit(RunConfig(epochs=3, batch_size=8, seed=7), name="long one").run_id
    wait_for(lambda: runner.store.get_run(long_run)["status"] == "running", 120, what="the long run to start")

    at = open_page(fresh_app(), "views/runs.py")
    table = at.dataframe(key="runs_table").value
    assert set(tiny_runs.values()) | {long_run} <= set(table["run_id"])
    row = table.set_index("run_id").loc[long_run]
    assert row["name"] == "long one" and "running" in row["status"]
    assert table.set_index("run_id").loc[tiny_runs["adam s0"], "status"].endswith("completed")
    assert at.button(key="runs_cancel").disabled  # nothing selected yet

    position = list(table["run_id"]).index(long_run)
    at.session_state["runs_table"] = {"selection": {"rows": [position], "columns": [], "cells": []}}
    at.run()
    assert_no_exception(at)
    cancel = at.button(key="runs_cancel")
    assert cancel.label == "Cancel (1)" and not cancel.disabled
    assert at.button(key="runs_delete").disabled  # a running run cannot be deleted
    cancel.click().run()
    assert_no_exception(at)
    wait_for(lambda: runner.store.get_run(long_run)["status"] == "cancelled", 60, what="the run to be cancelled")
    at.run()
    table = at.dataframe(key="runs_table").value.set_index("run_id")
    assert "cancelled" in table.loc[long_run, "status"]
    assert table.loc[tiny_runs["sgd s0"], "status"].endswith("completed")  # the others are untouched
    assert at.button(key="runs_resume").label == "Resume (1)"
    # the selection is now a cancelled run: it can be deleted, after a confirmation naming it
    # (confirming reruns the dialog as a fragment, which AppTest cannot do: tests/test_browser.py does)
    at.button(key="runs_delete").click().run()
    assert_no_exception(at)
    assert at.button(key="runs_delete_confirm").label == "Delete for good"
    listed = next(d.value for d in at.dataframe if "run id" in d.value.columns)  # a table: names show as typed
    assert listed["name"].tolist() == ["long one"] and listed["run id"].tolist() == [long_run]


# ---------------------------------------------------------------------------------------------
# Compare page
# ---------------------------------------------------------------------------------------------
def compare_page(runs: list[str], **params: str):
    at = fresh_app()
    at.query_params["runs"] = ",".join(runs)
    for name, value in params.items():
        at.query_params[name] = value
    return open_page(at, "views/compare.py")


def test_compare_selects_runs_from_the_url_and_follows_the_controls(runner, tiny_runs):
    chosen = [tiny_runs["sgd s0"], tiny_runs["adam s0"]]
    at = compare_page(chosen)
    assert at.multiselect(key="compare_runs").value == chosen
    chart = chart_by_key(at, "chart_0")
    assert chart is not None and chart_by_key(at, "chart_1") is not None  # loss and validation accuracy
    lines = line_traces(chart)
    assert sorted(t["name"] for t in lines) == ["adam s0", "sgd s0"]
    assert len(chart_traces(chart)) == 4  # smoothed by default: a faint raw series behind each line
    assert at.download_button(key="download_csv").label.startswith("Download")
    assert at.query_params["runs"] == ",".join(chosen) and at.query_params["smooth"] == "0.6"

    # smoothing off: one raw line per run, exactly the logged losses
    at.slider(key="compare_smoothing").set_value(0.0).run()
    assert_no_exception(at)
    chart = chart_by_key(at, "chart_0")
    assert len(chart_traces(chart)) == 2
    by_name = {t["name"]: t for t in chart_traces(chart)}
    logged = runner.store.metric_history(tiny_runs["sgd s0"], "loss")
    np.testing.assert_allclose(by_name["sgd s0"]["y"], logged["value"])
    assert list(by_name["sgd s0"]["x"]) == list(logged["step"])
    assert at.query_params["smooth"] == "0"

    # x axis in epochs: the same 10 points of one epoch now lie within (0, 1]
    at.radio(key="compare_x").set_value("epoch").run()
    assert_no_exception(at)
    x = chart_traces(chart_by_key(at, "chart_0"))[0]["x"].astype(float)
    assert len(x) == 10 and 0 < x.min() and x.max() == pytest.approx(1.0)
    assert at.query_params["x"] == "epoch"

    # log y
    at.toggle(key="compare_log").set_value(True).run()
    assert figure_spec(chart_by_key(at, "chart_0"))["layout"]["yaxis"]["type"] == "log"
    assert at.query_params["log"] == "1"


def test_compare_group_by_draws_one_mean_line_and_band_per_group(runner, tiny_runs):
    # a race of two optimizers x two seeds opens grouped by optimizer; group= (empty) in the URL means ungrouped
    assert compare_page(list(tiny_runs.values())).selectbox(key="compare_group").value == "optimizer"
    at = compare_page(list(tiny_runs.values()), smooth="0", group="")
    assert len(at.multiselect(key="compare_runs").value) == 4
    assert line_points(chart_by_key(at, "chart_0")) == 4 * 10
    assert at.radio(key="compare_band").disabled  # no grouping yet

    at.selectbox(key="compare_group").set_value("optimizer").run()
    assert_no_exception(at)
    traces = chart_traces(chart_by_key(at, "chart_0"))
    means = [t for t in traces if not is_band_edge(t)]
    bands = [t for t in traces if t.get("fill") == "tonexty"]
    assert sorted(t["name"] for t in means) == ["optimizer=adam (n=2)", "optimizer=sgd (n=2)"]
    assert len(bands) == 2
    assert at.query_params["group"] == "optimizer" and at.query_params["band"] == "std"
    # the mean line is the mean of the two seeds' losses, step by step
    seeds = [runner.store.metric_history(tiny_runs[f"sgd s{s}"], "loss")["value"].to_numpy() for s in (0, 1)]
    sgd = next(t for t in means if t["name"] == "optimizer=sgd (n=2)")
    np.testing.assert_allclose(sgd["y"], np.mean(seeds, axis=0))

    at.radio(key="compare_band").set_value("minmax").run()
    assert at.query_params["band"] == "minmax"
    traces = chart_traces(chart_by_key(at, "chart_0"))
    lower = next(t for t in traces if t["name"] == "optimizer=sgd (n=2) (lower)")
    np.testing.assert_allclose(lower["y"], np.min(seeds, axis=0))

    at.selectbox(key="compare_group").set_value("seed").run()
    assert_no_exception(at)
    means = [t for t in chart_traces(chart_by_key(at, "chart_0")) if not is_band_edge(t)]
    assert sorted(t["name"] for t in means) == ["seed=0 (n=2)", "seed=1 (n=2)"]
    assert at.query_params["group"] == "seed"


def test_compare_url_view_is_restored(runner, tiny_runs):
    chosen = [tiny_runs["adam s1"]]
    at = compare_page(chosen, smooth="0.3", x="epoch", log="1", group="optimizer", band="minmax")
    assert at.multiselect(key="compare_runs").value == chosen
    assert at.slider(key="compare_smoothing").value == pytest.approx(0.3)
    assert at.radio(key="compare_x").value == "epoch"
    assert at.toggle(key="compare_log").value is True
    assert at.selectbox(key="compare_group").value == "optimizer"
    assert at.radio(key="compare_band").value == "minmax"
    means = [t for t in chart_traces(chart_by_key(at, "chart_0")) if not is_band_edge(t)]
    assert [t["name"] for t in means] == ["optimizer=adam (n=1)"]
    assert pd.Series(means[0]["x"]).max() == pytest.approx(1.0)


def test_compare_survives_a_bad_bookmark(tiny_runs):
    """Query params are user input: out-of-range or garbled values fall back instead of crashing the page."""
    known = tiny_runs["sgd s1"]
    for smooth, expected in (("abc", 0.6), ("1.5", 0.99), ("-1", 0.0)):
        at = compare_page([known, "not-a-run"], smooth=smooth, x="minutes", group="no_such_field", band="wide")
        assert at.slider(key="compare_smoothing").value == pytest.approx(expected)
        assert at.multiselect(key="compare_runs").value == [known]
        assert (at.radio(key="compare_x").value, at.selectbox(key="compare_group").value,
                at.radio(key="compare_band").value) == ("step", "(none)", "std")
        assert line_points(chart_by_key(at, "chart_0")) == 10
        assert at.query_params["smooth"] == f"{expected:g}" and at.query_params["runs"] == known
