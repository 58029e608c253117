"""Character runs on the pages (AppTest): the Train page previews a names run and refuses bad text files in one
line each (nothing saved); the Explain page shows the next character, its context attributions, a transformer's
attention maps and a bigram's table, refusing characters outside the vocabulary; the Run report shows the
recorded samples and samples the checkpoint at the chosen temperature and prefix."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from engine.config import RunConfig
from engine.datasets import TEXT_FILE_MAX_BYTES
from engine.train import MemorySink, train
from ui_helpers import chart_by_key, clear_app_caches, figure_spec, fresh_app

VIEWS = Path(__file__).resolve().parent.parent / "app" / "views"


def make_char_run(model: str = "transformer", with_curves: bool = False, **changes) -> str:
    """A trained character run, completed, in the store; `with_curves`: its metric rows too."""
    from engine.runs.store import Store

    config = RunConfig.from_dict({**RunConfig().to_dict(), "dataset": "names", "model": model, "epochs": 1,
                                  "batch_size": 64, "embed_dim": 16, "hidden": 16, "depth": 2, "heads": 2,
                                  "train_limit": 640, "lr": 0.01, "layer_stats_every": 0, "device": "cpu", **changes})
    store = Store()
    run_id = store.create_run(config, name=f"names {model}")
    sink = MemorySink()
    train(config, sink, run_id=run_id)  # writes the checkpoint the pages load
    if with_curves:  # as a worker writes them
        store.log_batch([(run_id, step, epoch, key, value, 1.7e9 + step) for step, epoch, key, value in sink.rows])
    for name, value in sink.artifacts.items():  # the recorded samples and baselines, as a worker files them
        store.put_artifact(run_id, name, value)
    import time  # finished, as a worker leaves it: a queued run would make the page start a worker pool

    store.conn.execute("UPDATE runs SET status='completed', step=?, total_steps=?, started_at=?, finished_at=? "
                       "WHERE run_id=?", (sink.last_progress[0], sink.last_progress[1], time.time(), time.time(),
                                          run_id))
    return run_id


def test_the_train_page_previews_a_names_run():
    clear_app_caches()
    at = AppTest.from_file(str(VIEWS / "train.py"), default_timeout=90).run()
    at.selectbox(key="cfg_dataset").set_value("names").run()
    assert not at.exception and not at.error
    assert at.selectbox(key="cfg_model").options == ["bigram", "mlp", "rnn", "gru", "lstm", "transformer"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["names"] == "4,130" and metrics["characters"] == "26"
    assert any("letter pairs counted 2.36" in c.value for c in at.caption)
    preview = at.dataframe[-1].value
    assert list(preview.columns) == ["the model reads", "and learns to write"]


def test_the_train_pages_live_panel_names_a_character_runs_accuracy_for_what_it_is():
    run_id = make_char_run("bigram", with_curves=True)
    at = fresh_app()  # the whole app: the live panel links to Compare
    at.query_params["launched"] = run_id  # as after a reload of the page the run was launched from
    at.run()
    assert not at.exception
    title = figure_spec(chart_by_key(at, "train_live_acc"))["layout"]["yaxis"]["title"]["text"]
    assert "next-character accuracy" in title  # the share of next letters guessed, not images classified


class _Upload:
    """What st.file_uploader hands the on_change callback: a name, a size and the bytes."""

    def __init__(self, data: bytes, name: str = "mine.txt"):
        self.data, self.name, self.size = data, name, len(data)

    def getvalue(self) -> bytes:
        return self.data


@pytest.mark.parametrize("data, message", [(b"", "is empty"), (b"\x00\x01\x02PK\x03\x04", "is binary"),
                                           (b"x" * (TEXT_FILE_MAX_BYTES + 1), "at most 2,000,000")])
def test_a_bad_text_file_is_refused_in_one_line_and_nothing_is_saved(trainlens_home, monkeypatch, data, message):
    import streamlit as st

    from app.train import char_train

    state: dict = {char_train.UPLOAD_KEY: _Upload(data)}
    monkeypatch.setattr(st, "session_state", state)
    char_train._save_upload()
    assert message in state[char_train.ERROR_KEY] and "\n" not in state[char_train.ERROR_KEY]
    assert "cfg_data_dir" not in state and not (trainlens_home / "data" / "uploads").exists()
    state[char_train.UPLOAD_KEY] = _Upload("Il était une fois, dans un pays lointain...\n".encode() * 30)
    char_train._save_upload()  # a good file: saved under its content hash, never the user's name
    assert char_train.ERROR_KEY not in state
    saved = trainlens_home / "data" / state["cfg_data_dir"]
    assert saved.parent.name == "uploads" and saved.suffix == ".txt" and "mine" not in saved.name
    assert saved.read_bytes().startswith("Il était".encode())


def test_the_explain_page_shows_next_characters_attributions_and_attention():
    make_char_run("transformer")
    clear_app_caches()
    at = AppTest.from_file(str(VIEWS / "explain.py"), default_timeout=120).run()
    assert not at.exception, at.exception
    assert at.text_input(key="chars_explain_text").value == "emm"
    body = " ".join(str(e.proto.body) for e in at.get("html"))
    assert body.count('class="tl-token"') == 4  # the start token and e, m, m
    attention = figure_spec(chart_by_key(at, "chars_explain_attention"))
    assert len(attention["data"]) == 2 * 2  # layers x heads
    assert any("% of the attribution is on the last 3 characters" in c.value for c in at.caption)
    at.text_input(key="chars_explain_text").input("Emma!").run()
    assert not at.exception
    assert "'E', '!': not in this run's vocabulary of 26 characters" in at.error[0].value.replace("\\", "")


def test_the_explain_page_draws_a_bigram_runs_table():
    make_char_run("bigram", lr=0.1)
    clear_app_caches()
    at = AppTest.from_file(str(VIEWS / "explain.py"), default_timeout=120).run()
    assert not at.exception, at.exception
    table = figure_spec(chart_by_key(at, "chars_explain_bigram"))["data"][0]
    assert table["type"] == "heatmap" and len(table["x"]) == 27


def test_the_run_report_shows_recorded_samples_and_a_sampler_with_temperature_and_prefix():
    run_id = make_char_run("gru")
    clear_app_caches()
    at = AppTest.from_file(str(VIEWS / "run_report.py"), default_timeout=120)
    at.query_params["run"] = run_id
    at.run()
    assert not at.exception, at.exception
    captions = [c.value for c in at.caption]
    assert any(c.startswith("step 10 · epoch 1") for c in captions)  # the newest evaluation first
    assert any(c.startswith("step 0 · before training") for c in captions)
    baselines = figure_spec(chart_by_key(at, f"report_samples_val_loss_{run_id}"))["layout"]["shapes"]
    assert len(baselines) == 3  # uniform, unigram and bigram reference lines
    at.text_input(key="report_sampler_prefix").input("ma").run()
    written = at.code[-1].value.split("  ")
    assert len(written) == 20 and all(s.startswith("ma") for s in written)
    at.slider(key="report_sampler_temperature").set_value(0.1).run()
    assert not at.exception and len(set(at.code[-1].value.split("  "))) < 20  # nearly greedy: names repeat
    at.text_input(key="report_sampler_prefix").input("Ma").run()
    assert "'M' is not in the run's vocabulary" in at.error[0].value.replace("\\", "")


def test_the_counting_baselines_stay_in_view_when_a_run_has_one_validation_point():
    """After the first epoch a validation loss chart has one point: its y range (0 to just above it) hid the
    uniform and unigram lines the class compares that point with."""
    import pandas as pd

    from app.charts.chars import with_baselines
    from app.charts.metrics import ChartOptions, metric_chart

    metrics = pd.DataFrame({"run_id": ["r"], "step": [130], "epoch": [0], "key": ["val_loss"], "value": [2.13]})
    runs = pd.DataFrame({"run_id": ["r"], "name": ["names gru"], "status": ["running"]})
    figure = metric_chart(metrics, runs, "val_loss", ChartOptions(x_axis="epoch")).figure
    assert figure.layout.yaxis.range is not None and figure.layout.yaxis.range[1] < 3.0  # the chart's own range
    with_baselines(figure, {"uniform": 3.296, "unigram": 2.82, "bigram": 2.36})
    low, high = figure.layout.yaxis.range
    assert low <= 2.13 and high > 3.296


def test_attention_maps_label_the_positions_once_per_row():
    """Four heads side by side at 1024 px: labels on every map ran into the map beside it."""
    import numpy as np

    from app.charts.chars import attention_figure

    figure = attention_figure(list("·emm"), np.full((2, 4, 4, 4), 0.25))
    shown = sorted(name for name in figure.layout if name.startswith("yaxis")
                   and figure.layout[name].showticklabels is not False)
    assert shown == ["yaxis", "yaxis5"]  # the first map of each layer
