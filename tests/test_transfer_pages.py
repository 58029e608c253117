"""The Train form starts a run from another (issue 25): "start from" lists the finished runs by name, freezing and
adapters show their counts in the preview, the class subset and K examples per class sit with the data, and a source
that cannot start the run is refused in one line with nothing queued. AppTest, no worker (TRAINLENS_WORKERS=0).
"""

from __future__ import annotations

import pytest
from ui_helpers import fresh_app

from engine.config import RunConfig
from engine.records import RunStatus
from engine.runs.store import Store
from engine.train import MemorySink, train

SOURCE = RunConfig(dataset="mnist5k", model="convnet", epochs=1, batch_size=64, train_limit=300, classes="0-4",
                   layer_stats_every=0).validate()


@pytest.fixture
def finished(trainlens_home, monkeypatch) -> str:
    """A convnet trained on digits 0-4, completed in the store as a worker would leave it."""
    monkeypatch.setenv("TRAINLENS_WORKERS", "0")
    store = Store()
    run_id = store.create_run(SOURCE, name="digits 0-4")
    train(SOURCE, MemorySink(), run_id=run_id)
    store.update_status(run_id, RunStatus.COMPLETED)
    store.create_run(SOURCE.with_updates(seed=1), name="still queued")  # not finished: not offered
    store.close()
    return run_id


def train_page():
    at = fresh_app()
    at.run()
    at.switch_page("views/train.py").run()
    assert not at.exception
    return at


def preview(at) -> str:
    return " ".join(m.value for m in at.markdown)


def test_start_from_offers_finished_runs_and_the_preview_counts_what_trains(finished):
    at = train_page()
    start_from = at.selectbox(key="cfg_init_from")
    assert start_from.options == ["random weights (no run)", f"digits 0-4 · {finished[:8]} · mnist5k convnet"]
    assert at.text_input(key="cfg_classes") and at.number_input(key="cfg_train_per_class")
    at.text_input(key="cfg_classes").input("5-9").run()
    at.number_input(key="cfg_train_per_class").set_value(10).run()
    start_from.set_value(finished).run()
    at.selectbox(key="cfg_freeze").select("backbone").run()
    assert not at.exception and not at.error
    shown = preview(at)
    assert "starts from **digits 0-4** (best weights)" in shown
    assert "trainable · **" in shown and "frozen" in shown
    assert "**50** training examples (10 per class)" in shown
    at.selectbox(key="cfg_adapter").select("lora").run()
    assert "of them in adapters" in preview(at) and at.number_input(key="cfg_lora_rank")
    at.button(key="start").click().run()
    assert not at.exception and not at.error
    queued = Store().list_runs()
    mine = queued[queued["cfg.init_from"] != ""]
    assert mine["cfg.init_from"].tolist() == [f"{finished}:best"]
    assert mine[["cfg.freeze", "cfg.adapter", "cfg.classes", "cfg.train_per_class"]].values.tolist() == [
        ["backbone", "lora", "5-9", 10]]


def test_a_source_that_does_not_fit_is_refused_in_one_line_and_nothing_is_queued(finished):
    at = train_page()
    at.selectbox(key="cfg_init_from").set_value(finished).run()
    at.selectbox(key="cfg_model").select("mlp").run()
    before = len(Store().list_runs())
    at.button(key="start").click().run()
    assert not at.exception
    assert len(at.error) == 1 and "trained a convnet; this run's model is mlp" in at.error[0].value
    assert len(Store().list_runs()) == before


@pytest.fixture
def child(finished) -> str:
    """A run fine-tuned from `finished` with its backbone frozen, completed."""
    store = Store()
    config = SOURCE.with_updates(classes="5-9", init_from=finished, freeze="backbone")
    run_id = store.create_run(config, name="digits 5-9 from 0-4")
    sink = MemorySink()
    train(store.get_run(run_id)["config"], sink, run_id=run_id)
    for artifact, value in sink.artifacts.items():
        store.put_artifact(run_id, artifact, value)
    store.update_status(run_id, RunStatus.COMPLETED)
    store.close()
    return run_id


def test_the_runs_page_compare_and_the_run_report_show_where_a_run_started(finished, child):
    at = fresh_app()
    at.run()
    at.switch_page("views/runs.py").run()
    assert not at.exception
    table = at.dataframe[0].value.set_index("name")
    assert table.loc["digits 5-9 from 0-4", "from"] == "digits 0-4" and table.loc["digits 0-4", "from"] == ""
    at.query_params["runs"] = child
    at.switch_page("views/compare.py").run()
    assert not at.exception
    assert f"digits 5-9 from 0-4 · {child[:6]} · from digits 0-4" in at.multiselect(key="compare_runs").options
    at.query_params["run"] = child
    at.switch_page("views/run_report.py").run()
    assert not at.exception
    header = " ".join(m.value for m in at.markdown)
    assert "Started from **digits 0-4**'s best weights with a new head (other classes)" in header
    assert "parameters trained, **" in header and "frozen (freeze backbone)" in header
    assert any("classes 5-9" in c.value for c in at.caption)


def test_a_text_runs_preview_counts_what_trains_too(trainlens_home, monkeypatch):
    monkeypatch.setenv("TRAINLENS_WORKERS", "0")
    store = Store()
    run_id = store.create_run(RunConfig(dataset="sentiment", model="bow", epochs=1, train_limit=200), name="words")
    store.update_status(run_id, RunStatus.COMPLETED)
    at = train_page()
    at.selectbox(key="cfg_dataset").select("sentiment").run()
    at.selectbox(key="cfg_model").select("bow").run()
    assert not at.exception
    assert "frozen" not in preview(at)  # a run from random weights trains every weight: no count to add
    at.selectbox(key="cfg_init_from").set_value(run_id).run()
    at.selectbox(key="cfg_freeze").select("backbone").run()
    assert not at.exception
    shown = preview(at)
    assert "starts from **words** (best weights)" in shown and "trainable · **" in shown
