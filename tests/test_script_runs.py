"""Runs from a user's own script (issue 24): the `trainlens` client in this process against a real store, the
store's rules for script runs, the CLI's commands on them and the pages under AppTest. Nothing here starts a
process (tests/test_script_processes.py runs scripts, kills them and forks them).
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
import warnings

import numpy as np
import pytest
from ui_helpers import chart_by_key, fresh_app, line_traces

import trainlens
from engine.config import RunConfig
from engine.records import RunStatus
from engine.runs.store import Store

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def no_leftover_runs():
    """Every run a test starts is finished by it; the process-wide current run must not leak into the next test."""
    yield
    trainlens.finish()


def engine_run(store: Store, name: str = "engine run", lr: float = 0.01, steps: int = 40) -> str:
    """A finished engine run written straight into the store (no worker): loss per step, val_acc at the end."""
    run_id = store.create_run(RunConfig(lr=lr, epochs=1), name=name)
    store.update_status(run_id, RunStatus.COMPLETED)
    now = time.time()
    store.log_batch([(run_id, s, 0, "loss", 2.0 / (s + 1), now) for s in range(steps)]
                    + [(run_id, steps - 1, 0, "val_acc", 0.9, now)])
    return run_id


def warned(record, text: str) -> list[str]:
    return [str(w.message) for w in record if text in str(w.message)]


# ---- the client and the store ------------------------------------------------------------------------------------
def test_a_run_logs_buffered_rows_and_finishes_completed_with_its_config_spread_for_compare():
    store = Store()
    run = trainlens.init(name="notebook", config={"lr": 0.01, "optimizer": {"name": "sgd", "momentum": 0.9}},
                         group="hw3")
    for step in range(100):
        run.log({"loss": 1.0 / (step + 1), "val_acc": step / 100})  # no step: 0, 1, 2...
    run.log({"loss": 0.001}, step=500)
    run.log({"loss": 0.0005})  # after an explicit step: the next one
    run.finish()
    record = store.get_run(run.run_id)
    assert (record["kind"], record["status"], record["group"], record["step"]) == ("script", "completed", "hw3", 501)
    frame = store.get_metrics(run.run_id, keys=["loss"])
    assert list(frame["step"]) == list(range(100)) + [500, 501]
    assert store.count_metrics(run.run_id) == 202
    listing = store.list_runs()
    row = listing[listing["run_id"] == run.run_id].iloc[0]
    assert (row["cfg.lr"], row["cfg.optimizer.name"], row["cfg.optimizer.momentum"]) == (0.01, "sgd", 0.9)
    info = store.script_info(run.run_id)
    assert info["pid"] > 0 and info["host"] and info["cancellable"] is True
    from engine.records import ScriptConfig

    assert ScriptConfig({}).columns() == {} and ScriptConfig({"a": {}, "b": [1]}).columns() == {"a": "{}", "b": "[1]"}


def test_epochs_are_counted_from_the_keys_trainlens_logs_once_per_epoch():
    store = Store()
    with trainlens.init(name="epochs") as run:
        for epoch in range(3):
            for batch in range(4):
                run.log({"loss": 1.0}, step=epoch * 4 + batch + 1)
            run.log({"val_loss": 0.5}, step=epoch * 4 + 4)  # two calls at one step close one epoch
            run.log({"val_acc": 0.9}, step=epoch * 4 + 4)
    frame = store.get_metrics(run.run_id)
    assert list(frame.loc[frame["key"] == "loss", "epoch"]) == [0] * 4 + [1] * 4 + [2] * 4
    assert list(frame.loc[frame["key"] == "val_acc", "epoch"]) == [0, 1, 2]


def test_an_exception_in_the_with_block_fails_the_run_with_its_message():
    store = Store()
    with pytest.raises(ZeroDivisionError):
        with trainlens.init(name="broken") as run:
            run.log({"loss": 1.0})
            1 / 0
    record = store.get_run(run.run_id)
    assert record["status"] == "failed" and record["error"] == "ZeroDivisionError: division by zero"
    with trainlens.init(name="fine") as good:
        good.log({"loss": 1.0})
    assert store.get_run(good.run_id)["status"] == "completed"


def test_a_cancel_from_trainlens_raises_in_the_script_at_its_next_log_and_ends_it_cancelled():
    store = Store()
    run = trainlens.init(name="to cancel")
    run.log({"loss": 1.0})
    assert store.request_cancel(run.run_id) == RunStatus.RUNNING
    run._heartbeat.beat()  # what the heartbeat thread does every second
    with pytest.raises(trainlens.RunCancelled, match="was cancelled"):
        with run:
            run.log({"loss": 0.5})
    assert store.get_run(run.run_id)["status"] == "cancelled"


def test_a_script_that_opted_out_of_cancels_is_not_asked_and_the_refusal_says_what_to_do():
    store = Store()
    run = trainlens.init(name="must finish", cancellable=False)
    with pytest.raises(ValueError, match="cancellable=False"):
        store.request_cancel(run.run_id)
    run._heartbeat.beat()
    run.log({"loss": 1.0})  # no RunCancelled
    run.finish()
    assert store.get_run(run.run_id)["status"] == "completed"


def test_a_script_run_cannot_be_resumed_by_the_workers():
    store = Store()
    run = trainlens.init(name="once")
    run.fail(KeyboardInterrupt())
    record = store.get_run(run.run_id)
    assert record["status"] == "interrupted" and "Ctrl-C" in record["error"]
    with pytest.raises(ValueError, match="run the script again"):
        store.resume_run(run.run_id)


def test_bad_values_get_one_warning_per_key_and_nothing_else_is_lost():
    store = Store()
    run = trainlens.init(name="bad input")
    long_key = "k" * 5000
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for step in range(3):
            run.log({"loss": 1.0, "note": "hello", "tensor": np.array([1.0, 2.0]), long_key: 2.0,
                     "numpy": np.float32(0.5), "flag": True, 7: 1.5}, step=step)
    run.finish()
    assert len(warned(record, "'note' is text")) == 1
    assert len(warned(record, "'tensor' is a ndarray")) == 1
    assert len(warned(record, "5,000 characters long")) == 1
    keys = set(store.metric_keys(run.run_id))
    assert {"loss", "numpy", "flag", "7"} <= keys and "note" not in keys and "tensor" not in keys
    capped = [k for k in keys if k.startswith("kkk")]
    assert len(capped) == 1 and len(capped[0]) == trainlens.KEY_MAX
    assert store.count_metrics(run.run_id) == 3 * 5
    assert store.get_run(run.run_id)["status"] == "completed"


def test_nan_and_inf_are_stored_and_a_loss_that_became_nan_marks_the_run_diverged():
    store = Store()
    run = trainlens.init(name="blows up")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for step, loss in enumerate([1.0, 0.5, math.inf, math.nan]):
            run.log({"loss": loss, "grad_norm": math.nan}, step=step)
        run.finish()
    frame = store.get_metrics(run.run_id, keys=["loss"])
    values = list(frame["value"])
    assert values[:3] == [1.0, 0.5, math.inf] and math.isnan(values[3])  # all four rows kept
    record_ = store.get_run(run.run_id)
    assert record_["status"] == "diverged" and record_["error"].startswith("loss became inf at step 2")
    assert len(warned(record, "will be marked diverged")) == 1  # grad_norm's NaN: stored, no divergence


def test_a_second_init_finishes_the_first_with_a_warning():
    store = Store()
    first = trainlens.init(name="first")
    first.log({"loss": 1.0})
    with pytest.warns(trainlens.TrainLensWarning, match="finishing the previous run 'first'"):
        second = trainlens.init(name="second")
    assert store.get_run(first.run_id)["status"] == "completed"
    assert trainlens.current() is second
    trainlens.log({"loss": 2.0})
    trainlens.finish()
    assert store.get_run(second.run_id)["status"] == "completed" and trainlens.current() is None
    with pytest.raises(trainlens.TrainLensError, match="call trainlens.init"):
        trainlens.log({"loss": 1.0})


def test_a_busy_store_delays_rows_and_loses_none(trainlens_home):
    store = Store()
    run = trainlens.init(name="busy")
    locker = sqlite3.connect(str(trainlens_home / "trainlens.db"), isolation_level=None, check_same_thread=False)
    locker.execute("BEGIN IMMEDIATE")  # another program holds the write lock
    release = threading.Timer(1.5, lambda: locker.execute("COMMIT"))
    release.start()
    Store.BUSY_TIMEOUT_S, saved = 0.2, Store.BUSY_TIMEOUT_S  # the client's connections give up fast and retry
    try:
        for step in range(2000):
            run.log({"loss": 1.0, "acc": 0.5}, step=step)
        run.finish()
    finally:
        Store.BUSY_TIMEOUT_S = saved
        release.join()
        locker.close()
    assert store.count_metrics(run.run_id) == 4000
    assert store.get_run(run.run_id)["status"] == "completed"


def test_a_damaged_store_is_one_line_at_init(trainlens_home):
    trainlens_home.mkdir(parents=True, exist_ok=True)
    (trainlens_home / "trainlens.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(trainlens.TrainLensError) as raised:
        trainlens.init(name="never")
    message = str(raised.value)
    assert "\n" not in message and "is damaged" in message and "trainlens.db" in message


def test_class_mode_refuses_script_runs_unless_the_operator_allows_them(monkeypatch):
    monkeypatch.setenv("TRAINLENS_CLASS_PASSPHRASE", "sunflower-42")
    with pytest.raises(trainlens.TrainLensError, match="TRAINLENS_ALLOW_SCRIPTS=1"):
        trainlens.init(name="student script")
    monkeypatch.delenv("TRAINLENS_CLASS_PASSPHRASE")
    from engine.classroom import STUDENT

    Store().join_class("Ana", STUDENT)  # a class is seated on this store (the server's env unseen)
    with pytest.raises(trainlens.TrainLensError, match="serves a class"):
        trainlens.init(name="student script")
    monkeypatch.setenv("TRAINLENS_ALLOW_SCRIPTS", "1")
    with trainlens.init(name="allowed") as run:
        run.log({"loss": 1.0})
    assert Store().get_run(run.run_id)["status"] == "completed"


def test_the_reaper_interrupts_a_script_whose_process_is_gone_and_a_heartbeat_revives_a_silent_one():
    import socket

    store = Store()
    gone = store.create_script_run({}, program="train.py", host=socket.gethostname(), pid=2 ** 22 + 12345,
                                   name="killed")  # no such process on this host
    elsewhere = store.create_script_run({}, program="train.py", host="another-host", pid=1, name="silent")
    assert store.get_run(gone)["status"] == "interrupted"  # reads reap
    assert "stopped at step 0" in store.get_run(gone)["error"]
    assert store.get_run(elsewhere)["status"] == "running"  # another host: by its heartbeat, which is fresh
    store.conn.execute("UPDATE runs SET heartbeat_at=heartbeat_at-60 WHERE run_id=?", (elsewhere,))
    assert store.reap() == [elsewhere]
    assert store.script_heartbeat(elsewhere, 7) == {"cancel": False, "gone": False}  # it was only silent
    record = store.get_run(elsewhere)
    assert (record["status"], record["error"], record["step"]) == ("running", None, 7)


# ---- SummaryWriter -----------------------------------------------------------------------------------------------
def test_summary_writer_tags_steps_walltime_histograms_hparams_text_and_unknown_methods():
    store = Store()
    writer = trainlens.SummaryWriter("runs/exp1", comment="-adam")
    assert writer.get_logdir() == "runs/exp1"
    for step in range(5):
        writer.add_scalar("Loss/train", 1.0 / (step + 1), step * 10, walltime=1_000_000 + step)
        writer.add_scalars("acc", {"train": 0.5, "val": 0.4}, step * 10)
    writer.add_scalar("no_step", 1.0)
    writer.add_scalar("no_step", 2.0)
    writer.add_histogram("fc1.weight", np.array([0.0, 0.1, 0.2, 0.3, np.nan]), 40, bins=4)
    writer.add_text("notes", "<b>not markup</b>", 40)
    writer.add_hparams({"lr": 0.01, "batch_size": 64}, {"hparam/accuracy": 0.91})
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        writer.add_image("digits", object(), 3)
        writer.add_image("digits", object(), 4)
        writer.add_graph(object())
    assert len(warned(record, "add_image is not supported")) == 1 and len(warned(record, "add_graph")) == 1
    writer.flush()
    writer.close()
    run_id = writer.run.run_id
    record_ = store.get_run(run_id)
    assert (record_["name"], record_["status"]) == ("runs/exp1-adam", "completed")
    assert record_["config"] == {"lr": 0.01, "batch_size": 64}
    loss = store.get_metrics(run_id, keys=["Loss/train"])
    assert list(loss["step"]) == [0, 10, 20, 30, 40] and list(loss["wall_time"]) == [1_000_000 + s for s in range(5)]
    assert set(store.metric_keys(run_id)) == {"Loss/train", "acc/train", "acc/val", "no_step", "hparam/accuracy"}
    assert list(store.get_metrics(run_id, keys=["no_step"])["step"]) == [0, 1]
    histogram = store.get_artifact(run_id, "histogram/40/fc1.weight")
    assert histogram["counts"] == [1, 1, 1, 1] and histogram["non_finite"] == 1 and histogram["num"] == 5
    assert store.get_artifact(run_id, "text/40/notes")["text"] == "<b>not markup</b>"


def test_a_writer_logs_into_the_run_init_started_and_leaves_finishing_to_it():
    store = Store()
    with trainlens.init(name="mine", config={"lr": 0.1}) as run:
        writer = trainlens.SummaryWriter()
        writer.add_scalar("loss", 0.5, 1)
        writer.close()
        assert store.get_run(run.run_id)["status"] == "running"
    assert writer.run is run and store.get_run(run.run_id)["status"] == "completed"


# ---- the CLI -----------------------------------------------------------------------------------------------------
def test_the_cli_lists_shows_and_summarises_a_script_run(capsys):
    from engine.cli import main

    writer = trainlens.SummaryWriter("runs/cli")
    for step in range(3):
        writer.add_scalar("Loss/train", 1.0 - step / 10, step)
        writer.add_scalar("Loss/test", 2.0, step)
    writer.add_hparams({"lr": 0.5}, {})
    writer.close()
    run_id = writer.run.run_id
    capsys.readouterr()
    assert main(["runs"]) == 0
    assert "runs/cli  (script)" in capsys.readouterr().out
    assert main(["show", run_id[:6]]) == 0
    out = capsys.readouterr().out
    assert f"runs/cli ({run_id}): completed" in out and "config: lr=0.5" in out and "Loss/train     0.8" in out
    assert "script run:" in out
    assert main(["metrics", run_id]) == 0
    out = capsys.readouterr().out
    assert "Loss/train" in out and "Loss/test" in out and "layers" not in out  # tags are not layer statistics
    with trainlens.init(name="cancel me") as running:
        assert main(["cancel", running.run_id]) == 0
        assert "its script stops it at its next log" in capsys.readouterr().out
        running._heartbeat.beat()
        with pytest.raises(trainlens.RunCancelled):
            running.log({"loss": 1.0})
    with trainlens.init(name="do not cancel me", cancellable=False) as stubborn:
        assert main(["cancel", stubborn.run_id]) == 2
        assert "cancellable=False" in capsys.readouterr().err


# ---- the pages ---------------------------------------------------------------------------------------------------
def test_compare_overlays_a_script_run_with_an_engine_run_and_groups_them_by_a_config_key():
    store = Store()
    engine_id = engine_run(store, lr=0.01)
    with trainlens.init(name="my script", config={"lr": 0.01, "batch_size": 32}) as run:
        for step in range(40):
            run.log({"loss": 1.5 / (step + 1)}, step=step)
        run.log({"loss": math.nan}, step=40)
    at = fresh_app()
    at.run()
    at.query_params["runs"] = f"{engine_id},{run.run_id}"
    at.switch_page("views/compare.py").run()
    assert not at.exception, [e.value for e in at.exception]
    names = {t["name"] for t in line_traces(chart_by_key(at, "chart_0"))}
    assert {"engine run", "my script"} <= names
    script_line = next(t for t in line_traces(chart_by_key(at, "chart_0")) if t["name"] == "my script")
    assert np.isfinite(script_line["y"].astype(float)).sum() >= 2  # drawn up to its last finite point
    at.selectbox(key="compare_group").set_value("lr").run()  # both runs have lr=0.01: one group, one mean line
    assert not at.exception
    assert len(line_traces(chart_by_key(at, "chart_0"))) == 1
    assert "batch_size" in at.selectbox(key="compare_group").options


def test_runs_page_and_run_report_of_a_script_run():
    store = Store()
    engine_run(store)
    writer = trainlens.SummaryWriter("runs/report")
    for step in range(20):
        writer.add_scalar("loss", 1.0 / (step + 1), step)
        writer.add_scalar("Accuracy/test", step / 20, step)
    writer.add_histogram("fc1.weight", np.linspace(-1, 1, 100), 19)
    writer.add_text("notes", "**not bold**", 19)
    writer.add_hparams({"lr": 0.01}, {})
    writer.close()
    at = fresh_app()
    at.run()
    at.switch_page("views/runs.py").run()
    assert not at.exception
    table = next(d.value for d in at.dataframe if "run_id" in d.value.columns)
    assert set(table["name"]) == {"engine run", "runs/report"}
    at.query_params["run"] = writer.run.run_id
    at.switch_page("views/run_report.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("runs/report" in str(m.value) for m in at.markdown)
    config = next(d.value for d in at.dataframe if "setting" in d.value.columns)
    assert list(config["setting"]) == ["lr"]
    charts = [c.key for c in at.get("plotly_chart")]
    assert {"report_script_chart_0", "report_script_chart_1", "report_script_hist"} <= set(charts)
    texts = next(d.value for d in at.dataframe if "text" in d.value.columns)
    assert list(texts["text"]) == ["**not bold**"]
    assert any("need a run TrainLens trains itself" in str(c.value) for c in at.caption)


def test_a_running_script_shows_an_empty_progress_cell_not_a_bar_stuck_at_zero():
    store = Store()
    done = engine_run(store)
    with trainlens.init(name="still going") as run:  # running while the page is drawn: its length is its own
        run.log({"loss": 1.0}, step=5)
        at = fresh_app()
        at.run()
        at.switch_page("views/runs.py").run()
        assert not at.exception, [e.value for e in at.exception]
        table = next(d.value for d in at.dataframe if "run_id" in d.value.columns)
        progress = dict(zip(table["run_id"], table["progress"]))
        assert np.isnan(progress[run.run_id])
        assert progress[done] == pytest.approx(store.get_run(done)["progress"])  # an engine run keeps its bar
