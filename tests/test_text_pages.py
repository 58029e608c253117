"""Text on the pages: the Explain page explains a typed sentence of a text run (AppTest), escaping the text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app.charts.text_tokens import colour_key, token_spans
from engine.config import RunConfig
from engine.train import MemorySink, train
from ui_helpers import clear_app_caches

PAGE = str(Path(__file__).resolve().parent.parent / "app" / "views" / "explain.py")
TEXT_RUN = dict(dataset="sentiment", model="gru", epochs=1, batch_size=64, hidden=16, embed_dim=8, train_limit=320,
                layer_stats_every=0)


def make_text_run() -> str:
    from engine.runs.store import Store

    config = RunConfig(**TEXT_RUN)
    run_id = Store().create_run(config)
    train(config, MemorySink(), run_id=run_id)  # writes the epoch checkpoint the page loads
    return run_id


def test_token_spans_escape_every_token_and_shade_by_sign():
    markup = token_spans(["<script>alert(1)</script>", "good", "bad"], [0.0, 2.0, -1.0])
    assert "<script>" not in markup and "&lt;script&gt;alert(1)&lt;/script&gt;" in markup
    assert "rgba(214, 39, 40, 0.850)" in markup  # the strongest token towards the class: full red
    assert "rgba(31, 119, 180, 0.425)" in markup  # half as strong against it: half blue
    assert "&quot;" in colour_key('class "x"') and 'class "x"' not in colour_key('class "x"')
    with pytest.raises(ValueError):
        token_spans(["a"], [])


def _html(at: AppTest) -> str:
    return " ".join(str(element.proto.body) for element in at.get("html"))


def test_explain_page_explains_a_typed_sentence(trainlens_home):
    make_text_run()
    clear_app_caches()
    at = AppTest.from_file(PAGE, default_timeout=90).run()
    assert not at.exception, at.exception
    assert at.radio(key="text_explain_source").value == "Type a sentence"
    body = _html(at)
    assert body.count('class="tl-tokens"') == 2  # Integrated Gradients and Occlusion by default
    assert ">not</span>" in body and "towards" in body
    at.text_area(key="text_explain_sentence").input("a <script>alert('x')</script> film was never dull").run()
    body = _html(at)
    assert not at.exception
    assert "<script>" not in body and "&lt;" in body  # the typed markup is text, never markup
    quality = at.dataframe[-1].value
    assert list(quality["method"]) == ["Integrated Gradients", "Occlusion"]
    assert (quality["deletion area"] <= 1).all() and (quality["random deletion area"] >= 0).all()
    at.multiselect(key="text_explain_methods").set_value(["deeplift", "saliency"]).run()
    assert any("recurrent" in info.value for info in at.info)  # DeepLIFT says why it does not apply
    at.radio(key="text_explain_source").set_value("Validation sentence").run()
    assert not at.exception and "pointing game" in at.dataframe[-1].value.columns


def test_train_page_previews_a_text_dataset_and_takes_a_csv(trainlens_home, monkeypatch):
    from ui_helpers import fresh_app

    monkeypatch.setenv("TRAINLENS_WORKERS", "0")  # nothing is launched
    at = fresh_app()
    at.run()
    at.selectbox(key="cfg_dataset").set_value("sentiment").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.selectbox(key="cfg_model").value == "gru"  # the image model was swapped for a text one
    assert "bow" in at.selectbox(key="cfg_model").options and "convnet" not in at.selectbox(key="cfg_model").options
    preview = at.dataframe[-1].value
    assert len(preview) == 12 and set(preview["label"]) <= {"negative", "positive"}
    assert not at.button(key="start").disabled
    at.selectbox(key="cfg_dataset").set_value("text_csv").run()
    assert "data folder" in " ".join(e.value for e in at.error)  # no CSV yet: the message says what to do
    csv = trainlens_home / "data" / "mine.csv"
    csv.parent.mkdir(parents=True, exist_ok=True)
    csv.write_text("text,label\n" + "".join(f"<b>great</b> film {i},pos\nawful film {i},neg\n" for i in range(10)),
                   encoding="utf-8")
    at.text_input(key="cfg_data_dir").input("mine.csv").run()
    assert not at.error, [e.value for e in at.error]
    sentences = list(at.dataframe[-1].value.iloc[:, 1])
    assert any("< b > great < / b >" in s for s in sentences), sentences  # markup tokenised, shown as table text


def test_cli_explains_a_typed_text_token_by_token(trainlens_home, capsys):
    import json

    from engine.cli import main

    run_id = make_text_run()
    assert main(["explain", run_id, "--text", "The plot was NOT dull!", "--method", "ig", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tokens"] == ["the", "plot", "was", "not", "dull", "!"] and len(result["scores"]) == 6
    assert result["method"] == "integrated_gradients" and result["unknown"] == ["!"]
    assert main(["explain", run_id, "--text", "never dull", "--method", "occlusion"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("explaining ") and lines[1].split()[0] == "never" and len(lines) == 3
    assert main(["explain", run_id, "--text", "never dull", "--method", "deeplift"]) == 2
    assert "recurrent" in capsys.readouterr().err
    assert main(["explain", run_id, "some.png", "--out", "x.png"]) == 2
    assert "--text" in capsys.readouterr().err


def test_run_report_lists_the_misclassified_sentences_of_a_cell(trainlens_home, monkeypatch):
    from engine.runs.store import Store
    from engine.runs.worker import StoreSink

    monkeypatch.setenv("TRAINLENS_WORKERS", "0")  # the run is written here; no worker needed
    from ui_helpers import fresh_app

    config = RunConfig(**{**TEXT_RUN, "model": "bow"})  # one epoch of a bag of words: plenty of mistakes
    store = Store()
    run_id = store.create_run(config)
    sink = StoreSink(store, run_id)  # what a worker reports through
    train(config, sink, run_id=run_id)
    sink.close()
    at = fresh_app()
    at.run()
    at.query_params["run"] = run_id
    at.switch_page("views/run_report.py").run()
    assert not at.exception, [e.value for e in at.exception]
    picker = at.selectbox(key="report_cell")
    assert picker.label == "misclassified sentences of the cell" and "sentences)" in picker.format_func(picker.value)
    table = next(d.value for d in at.dataframe if "sentence" in d.value.columns)
    labels = [m.label for m in at.metric]
    assert "accuracy on negation/contrast sentences" in labels and "validation sentences" in labels
    assert len(table) > 0 and all(isinstance(s, str) and s for s in table["sentence"])


def test_the_explained_class_follows_each_new_sentence_unless_another_is_picked(trainlens_home):
    make_text_run()
    clear_app_caches()
    at = AppTest.from_file(PAGE, default_timeout=90).run()
    target = at.selectbox(key="text_explain_target")
    predicted = target.value
    assert "(predicted)" in target.format_func(predicted)
    other = 1 - predicted
    target.set_value(other).run()  # the user asks about the other class of this sentence: it holds
    at.multiselect(key="text_explain_methods").set_value(["saliency"]).run()
    assert at.selectbox(key="text_explain_target").value == other
    assert f"why **{at.selectbox(key='text_explain_target').format_func(other).split(' (')[0]}**" in " ".join(
        c.value for c in at.caption)  # the map says which class it explains
    for sentence in ("the movie was not good", "a zorblax film , never dull", "the plot was great"):
        at.text_area(key="text_explain_sentence").input(sentence).run()
        assert not at.exception, at.exception
        said = next(m.value for m in at.markdown if m.value.startswith("#### The model says: "))
        target = at.selectbox(key="text_explain_target")
        assert "(predicted)" in target.format_func(target.value)  # a new sentence: its own prediction
        assert said.removeprefix("#### The model says: ").startswith(target.format_func(target.value).split(" (")[0])
        assert at.multiselect(key="text_explain_methods").value == ["saliency"]  # the methods stay chosen
    at.text_area(key="text_explain_sentence").input("a zorblax film , never dull").run()
    body = _html(at)
    marked = set(re.findall(r'>([^<>]*)<sup class="tl-unknown">', body))  # marked on the tokens themselves
    assert "zorblax" in marked and "never" not in marked
    note = next(c.value for c in at.caption if "not in the vocabulary" in c.value)
    assert set(re.findall("“([^”]*)”", note)) == marked and ",," not in note
