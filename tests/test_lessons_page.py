"""AppTest of the Lessons page: the gallery, one click from a lesson to its runs, the lesson view with the question
first, its charts, and the answer computed from the finished runs with its claims; `?lesson=` links; projector mode
kept in the URL. Real worker processes (the module's warm pool) train the lesson.
"""

from __future__ import annotations

import pytest
from ui_helpers import chart_by_key, chart_traces, fresh_app, wait_for

from app.charts.text import escape_md
from engine import lessons
from engine.records import TERMINAL

pytestmark = pytest.mark.timeout(300)
PAGE = "views/lessons.py"


def lessons_page(**params: str):
    at = fresh_app()
    for name, value in params.items():
        at.query_params[name] = value
    at.switch_page(PAGE).run()  # straight to the Lessons page: the Train page's torch import is not needed
    assert not at.exception, [e.value for e in at.exception]
    return at


def markdown(at) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_the_gallery_lists_every_lesson_with_its_question(trainlens_home):
    at = lessons_page()
    text = markdown(at)
    for lesson in lessons.load_lessons()[0]:
        assert lesson.title.split(":")[0] in text
    assert len([b for b in at.button if b.key and b.key.startswith("run_")]) == len(lessons.load_lessons()[0])
    assert at.sidebar.toggle(key="projector_mode").value is False


def test_a_pipe_or_a_device_in_the_lessons_folder_is_named_not_read(trainlens_home):
    import os

    folder = trainlens_home / "lessons"
    folder.mkdir(parents=True)
    os.mkfifo(folder / "x.toml")  # hung the page: opening a pipe waits for a writer
    (folder / "zero.toml").symlink_to("/dev/zero")
    at = lessons_page()
    warnings = [w.value.replace("\\", "") for w in at.warning]
    assert any("x.toml could not be read: x.toml: not a regular file (a pipe)" in w for w in warnings), warnings
    assert any("zero.toml could not be read: zero.toml: not a regular file (a device)" in w for w in warnings)
    assert len([b for b in at.button if b.key and b.key.startswith("run_")]) == len(lessons.load_lessons()[0])


def test_one_click_runs_a_lesson_and_shows_the_question_charts_and_answer(runner):
    at = lessons_page()
    at.button(key="run_averaging").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.query_params["lesson"] == "averaging"
    group = at.query_params["launch"]
    assert lessons.is_lesson_group(group, "averaging")
    lesson = lessons.get_lesson("averaging")
    assert at.title[0].value == escape_md(lesson.title)  # a file's text shown as text, not markdown
    assert lesson.question in markdown(at)  # the question comes first, under the title
    run_ids = list(runner.store.list_runs(group=group)["run_id"])
    assert len(run_ids) == 1
    wait_for(lambda: runner.store.get_run(run_ids[0])["status"] in TERMINAL, 120, what="the lesson's run")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    answer = next(s.value for s in at.success)
    # (markdown source: escape_md writes the colon as "\:", read as ":")
    assert answer.startswith("**Answer.** One run, three sets of weights\\: final validation loss after epoch 4, 0.")
    assert "\u2060" not in answer
    assert markdown(at).count("holds") >= 2
    names = {trace["name"] for trace in chart_traces(chart_by_key(at, "lesson_chart_0"))}
    assert {"one run, three sets of weights · val_loss", "one run, three sets of weights · ema_val_loss"} <= names
    # a shared link (?lesson=averaging, no launch) opens the latest launch of the lesson
    again = lessons_page(lesson="averaging")
    assert any("One run, three sets of weights" in s.value for s in again.success)


def test_an_unknown_lesson_falls_back_to_the_gallery(trainlens_home):
    at = lessons_page(lesson="no_such_lesson")
    assert "No lesson named no\\_such\\_lesson" in at.warning[0].value or "No lesson named" in at.warning[0].value
    assert at.title[0].value == "Lessons"


def test_projector_mode_is_kept_in_the_url(trainlens_home):
    at = lessons_page(present="1")
    assert at.sidebar.toggle(key="projector_mode").value is True
    at.sidebar.toggle(key="projector_mode").set_value(False).run()
    assert at.query_params["present"] == "0"
