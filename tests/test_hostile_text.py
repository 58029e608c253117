"""Text is text: strings from files and users (lesson titles, class labels from a CSV, run, group and display names)
are shown as typed on every page and in every chart, never as markdown, HTML or links, and names cannot carry the
invisible characters that make them read as something else (U+202E and its kind).

AppTest and the pure chart builders here; tests/test_hostile_pages.py checks the same strings in a real browser.
"""

from __future__ import annotations

import re

import pytest
from ui_helpers import figure_spec, fresh_app

from app.charts.explain import epochs_figure
from app.charts.report import confusion_figure
from app.charts.text import escape_md, plotly_text
from engine.config import RunConfig
from engine.records import RunStatus, check_name, report_artifact

IMAGE = "![x](http://evil.example/t.png)"
LINK = '<a href="http://evil.example/l">click</a>'
HOSTILE_TITLE = f"{IMAGE} <b>bold</b> {LINK}"
RLO = "\u202e"
HIDDEN = ["\u202e", "\u202d", "\u2066", "\u2067", "\u2069", "\u200e", "\u200f", "\u200b", "\u061c", "\u2028"]


def hostile_lesson(home) -> str:
    folder = home / "lessons"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hostile.toml").write_text(f'''
title = {HOSTILE_TITLE!r}
question = "Does {IMAGE} load?"
look_for = ["{IMAGE}"]
[run]
model = "mlp"
epochs = 1
train_limit = 64
[[variant]]
label = "a"
[[chart]]
title = "{IMAGE}"
keys = ["loss"]
[[claim]]
text = "it runs"
left = "a"
status = "completed"
''')
    return "hostile"


def markup_free(text: str) -> bool:
    """Markdown that shows its text as typed: every '[', '<' and '!' escaped, so no image, link or tag can form."""
    return re.search(r"(?<!\\)[\[<!]", text) is None


def rendered(at) -> list[str]:
    return ([t.value for t in at.title] + [m.value for m in at.markdown] + [c.value for c in at.caption]
            + [i.value for i in at.info] + [w.value for w in at.warning] + [e.value for e in at.error])


def test_a_lesson_title_from_a_file_is_shown_as_text(trainlens_home):
    name = hostile_lesson(trainlens_home)
    for query in ({"lesson": name}, {}):  # its own page, and the gallery
        at = fresh_app()
        at.query_params.update(query)
        at.run()
        at.switch_page("views/lessons.py").run()
        assert not at.exception, [e.value for e in at.exception]
        texts = rendered(at)
        assert any("bold" in t for t in texts)  # the lesson is there
        for text in texts:
            # escaped: no image can be fetched, no link or HTML can form from a file's text
            assert "evil" not in text or markup_free(text), text


@pytest.mark.parametrize("hidden", HIDDEN, ids=[f"U+{ord(c):04X}" for c in HIDDEN])
def test_invisible_and_reordering_characters_are_refused_in_every_kind_of_name(trainlens_home, hidden):
    from engine.classroom import check_display_name
    from engine.lessons import parse_lesson
    from engine.runs.store import Store

    name = f"exe{hidden}gpj.jpg"
    code = f"U+{ord(hidden):04X}"
    for what, attempt in (("run name", lambda: Store().create_run(RunConfig(), name=name)),
                          ("group", lambda: Store().create_run(RunConfig(), group=name)),
                          ("name", lambda: RunConfig(name=name).validate()),
                          ("variant label", lambda: parse_lesson("x", {"title": "t", "variant": [{"label": name}]})),
                          ("title", lambda: parse_lesson("x", {"title": name, "variant": [{"label": "a"}]})),
                          ("display name", lambda: check_display_name(name))):
        if what == "display name" and hidden.isspace():  # a line separator in a display name folds to a space
            assert check_display_name(name) == "exe gpj.jpg"
            continue
        with pytest.raises(ValueError, match=re.escape(code)) as refused:
            attempt()
        assert "\n" not in str(refused.value), what
    # other scripts and emoji are fine
    assert check_name("run name", "émile · 日本 🙂\tok") == "émile · 日本 🙂\tok"


def evaluation(labels: list[str]) -> dict:
    n = len(labels)
    confusion = [[3 if t == p else 1 for p in range(n)] for t in range(n)]
    return {"n": 5 * n, "accuracy": 0.6, "loss": 1.0, "labels": labels,
            "report": {label: {"precision": 0.6, "recall": 0.6, "f1-score": 0.6, "support": 5} for label in labels},
            "report_text": "report", "confusion": confusion,
            "confusion_normalized": [[v / sum(row) for v in row] for row in confusion],
            "misclassified": [], "misclassified_total": n * (n - 1)}


HOSTILE_LABELS = [LINK, "<b>bold</b>", IMAGE, f"abc{RLO}def"]


def test_class_labels_from_a_csv_are_text_in_the_confusion_matrix():
    figure = confusion_figure(evaluation(HOSTILE_LABELS)).to_dict()
    ticks = figure["layout"]["xaxis"]["ticktext"] + figure["layout"]["yaxis"]["ticktext"]
    hovers = [text for trace in figure["data"] if trace.get("text") is not None for text in trace["text"]
              if isinstance(text, str)]
    for text in ticks + hovers:
        assert "<a" not in text and "<b>bold" not in text and RLO not in text, text
    assert plotly_text(LINK) in ticks and "abc[U+202E]def" in ticks  # shown as typed, the override written out
    assert all("<b>" + plotly_text(label) in " ".join(hovers) for label in HOSTILE_LABELS)
    legend = epochs_figure(__import__("pandas").DataFrame({"epoch": [0, 1], "target_prob": [0.1, 0.9]}), 1, LINK)
    assert legend.data[0].name == f"p({plotly_text(LINK)})"


def test_the_run_report_shows_hostile_class_labels_as_text(trainlens_home):
    from engine.runs.store import Store

    store = Store()
    run_id = store.create_run(RunConfig(model="mlp", epochs=1, train_limit=64), name="labels")
    store.update_status(run_id, RunStatus.COMPLETED)
    store.put_artifact(run_id, report_artifact("best"), evaluation(HOSTILE_LABELS))
    at = fresh_app()
    at.query_params["run"] = run_id
    at.run()
    at.switch_page("views/run_report.py").run()
    assert not at.exception, [e.value for e in at.exception]
    spec = figure_spec(next(e for e in at.get("plotly_chart") if e.key == "report_confusion"))
    assert spec["layout"]["xaxis"]["ticktext"] == [plotly_text(label) for label in HOSTILE_LABELS]
    for text in rendered(at):
        assert "evil" not in text or markup_free(text), text
    # a click on the diagonal names the class in a sentence: as text
    at.session_state["report_confusion"] = {"selection": {"points": [{"customdata": [0, 0, 3]}]}}
    at.run()
    note = next(i.value for i in at.info if "correctly classified" in i.value)
    assert escape_md(LINK) in note
