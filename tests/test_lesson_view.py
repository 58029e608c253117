"""AppTest of a finished lesson's view, its runs written straight into the store (no worker: the fast tier): the
answer above the charts with the winner named first and no invisible character, every variant's number with ties
sharing a place, and one colour per arm in all of the lesson's charts (the optimizer race's Momentum at two rates).
"""

from __future__ import annotations

import itertools

from ui_helpers import chart_by_key, chart_traces, fresh_app

from app.charts.palette import MIN_DISTANCE, color_distance
from engine import lessons
from engine.runs.store import Store

PAGE = "views/lessons.py"
# the race's final validation accuracy per variant: Adam and AdamW at their own rates tie, SGD at 0.001 is last
FINAL = {"SGD @ 0.001": 0.461, "Momentum @ 0.001": 0.827, "Nesterov @ 0.001": 0.825, "Adagrad @ 0.001": 0.809,
         "RMSprop @ 0.001": 0.896, "Adam @ 0.001": 0.895, "AdamW @ 0.001": 0.895, "SGD @ 0.1 (its own)": 0.891,
         "Momentum @ 0.02 (its own)": 0.896, "Nesterov @ 0.03 (its own)": 0.887, "Adagrad @ 0.02 (its own)": 0.898,
         "RMSprop @ 0.001 (its own)": 0.896, "Adam @ 0.002 (its own)": 0.901, "AdamW @ 0.002 (its own)": 0.901}


def finished_race() -> str:
    """The optimizer race's 14 runs, finished, with 3 epochs of validation accuracy and 30 steps of loss each."""
    store = Store()
    lesson = lessons.get_lesson("optimizer_race")
    group = lessons.launch_group(lesson)
    for config in lesson.configs(group):
        run_id = store.create_run(config, name=config.name, group=group)
        store.set_running(run_id, "a-worker", "cpu")
        final = FINAL[config.name]
        rows = [(run_id, step, (step - 1) // 10, "loss", 2.3 * (1 - final) ** (step / 30), 1000.0 + step)
                for step in range(1, 31)]
        rows += [(run_id, 10 * (epoch + 1), epoch, "val_acc", final - 0.05 * (2 - epoch), 1000.0 + 10 * epoch)
                 for epoch in range(3)]
        store.log_batch(rows)
        store.update_progress(run_id, 30, 30, 2)
        store.update_status(run_id, "completed")
    return group


def walk(node):
    """The elements of an AppTest tree in page order."""
    yield node
    for child in getattr(node, "children", {}).values():
        yield from walk(child)


def test_a_finished_lesson_shows_its_answer_first_and_one_colour_per_arm(trainlens_home):
    group = finished_race()
    at = fresh_app()
    at.query_params["lesson"] = "optimizer_race"
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.query_params["launch"] == group
    answer = at.success[0].value
    assert answer == ("**Answer.** Adam @ 0.002 (its own) and AdamW @ 0.002 (its own) tie for the highest final "
                      "validation accuracy after epoch 3, 0.901; SGD @ 0.001 came last at 0.461.")
    assert not any("\u2060" in text for text in [answer] + [m.value for m in at.markdown])
    page = [(type(node).__name__, getattr(node, "key", None)) for node in walk(at.main)]
    first_chart = next(i for i, (_, key) in enumerate(page) if key == "lesson_chart_0")
    assert [kind for kind, _ in page].index("Success") < first_chart  # the answer above the charts
    table = next(m.value for m in at.markdown if m.value.startswith("| |"))
    assert "| 1 | Adam @ 0.002 (its own) | 0.901 after epoch 3 |" in table
    assert "| 1 | AdamW @ 0.002 (its own) | 0.901 after epoch 3 |" in table  # a tie shares its place
    assert "| 14 | SGD @ 0.001 | 0.461 after epoch 3 |" in table
    colors: dict[str, set[str]] = {}
    keys = lessons.get_lesson("optimizer_race").color_keys()
    for index in range(3):
        traces = [t for t in chart_traces(chart_by_key(at, f"lesson_chart_{index}")) if t.get("showlegend", True)]
        chart = {}
        for trace in traces:
            colors.setdefault(keys[trace["name"]], set()).add(trace["line"]["color"])
            chart[trace["name"]] = trace["line"]["color"]
        assert len(chart) == 7
        for first, second in itertools.combinations(set(chart.values()), 2):
            assert color_distance(first, second) >= MIN_DISTANCE
    assert all(len(c) == 1 for c in colors.values()), colors  # Momentum: one colour in all three charts
    assert len(colors) == 7
