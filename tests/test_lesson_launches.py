"""Lessons for the room: a lesson launch is one item for the class limits, its size bounded by a lesson cap; the
teacher runs a lesson for the whole class and every student's Lessons page shows it.

The rules are the store's (engine.runs.store.launches, engine.runs.access), so they are tested on the engine API a
forged request would reach, then on the page (AppTest, class mode). No worker processes: runs only need to be
queued, and their progress is written by hand as a worker would.
"""

from __future__ import annotations

import time

import pytest
from ui_helpers import chart_by_key, fresh_app, line_points

from app.ui.state import LIVE_MAX_AGE_S
from engine import lessons
from engine.classroom import STUDENT, TEACHER, Actor
from engine.config import RunConfig
from engine.records import RunStatus
from engine.runs.access import CapReached, ClassLimits, PermissionDenied
from engine.runs.runner import Runner
from engine.runs.store import Store
from engine.runs.store.classes import queued_of

pytestmark = pytest.mark.timeout(300)

ANA, BEN = Actor("Ana", STUDENT, "m-ana"), Actor("Ben", STUDENT, "m-ben")
TEACH = Actor("Ms Rivera", TEACHER, "m-rivera")
CLASS, TEACHER_WORD = "sunflower-42", "teacher-oak-7"
PAGE = "views/lessons.py"
SHIPPED = [lesson.name for lesson in lessons.load_lessons()[0]]


@pytest.fixture
def store(trainlens_home):
    store = Store()
    yield store
    store.close()


@pytest.fixture
def pool(store):
    """A Runner that starts no worker process (not conftest's `runner`, a real pool): runs only need to be queued."""
    runner = Runner(store, workers=1)
    runner.ensure_workers = lambda: 0
    return runner


def cancel_all(store: Store) -> None:
    store.cancel_all(actor=TEACH)


def test_the_shipped_lessons_are_fifteen_and_the_default_limits_hold_them():
    assert len(SHIPPED) == 15
    biggest = max(lesson.run_count for lesson in lessons.load_lessons()[0])
    assert biggest <= ClassLimits().lesson_runs


@pytest.mark.parametrize("name", SHIPPED)
def test_a_student_launches_every_shipped_lesson_under_the_default_limits(store, pool, name):
    lesson = lessons.get_lesson(name)
    assert store.launch_refusal([config for _, config in lesson.launch_runs()[0]], ANA) is None
    group, ids = lessons.launch(lesson, pool.as_actor(ANA))
    runs = store.list_runs(group=group)
    assert sorted(runs["run_id"]) == sorted(ids) and len(ids) == lesson.run_count
    assert set(runs["owner"]) == {"Ana"} and set(runs["status"]) == {RunStatus.QUEUED}
    assert queued_of(store.conn, ANA) == 1  # the whole lesson is one item in her queue


def test_a_lesson_is_one_item_for_the_running_and_queued_caps(store, pool, monkeypatch):
    monkeypatch.setenv("TRAINLENS_MAX_QUEUED", "1")
    race = lessons.get_lesson("optimizer_race")
    group, ids = lessons.launch(race, pool.as_actor(ANA))
    with pytest.raises(CapReached, match="class limit is 1"):
        store.create_run(RunConfig(model="mlp", epochs=1, train_limit=64), actor=ANA)
    with pytest.raises(CapReached, match="class limit is 1"):
        lessons.launch(lessons.get_lesson("momentum"), pool.as_actor(ANA))
    # running cap 1: a training lesson is one item, so its other runs may start beside it; her next run waits
    first = store.claim_next("w1", "cpu")
    assert first["group"] == group
    assert queued_of(store.conn, ANA) == 0  # a lesson already training no longer waits
    single = store.create_run(RunConfig(model="mlp", epochs=1, train_limit=64), actor=ANA)
    second = store.claim_next("w2", "cpu")
    assert second["group"] == group
    assert "the class limit at once" in store.waiting_reason(store.get_run(single))
    for run_id in ids:  # the lesson ends: her single run may start
        store.update_status(run_id, RunStatus.COMPLETED)
    assert store.claim_next("w1", "cpu")["run_id"] == single


def test_a_lesson_cap_refuses_a_lesson_whole_and_says_which_limit(store, pool):
    store.set_limit("lesson_runs", 5, actor=TEACH)
    race = lessons.get_lesson("optimizer_race")
    reason = store.launch_refusal(race.configs(), ANA)
    assert "14 runs" in reason and "5 runs per lesson" in reason
    with pytest.raises(CapReached, match="5 runs per lesson"):
        lessons.launch(race, pool.as_actor(ANA))
    assert store.list_runs().empty and store.launches().empty  # no half lesson left behind
    # the work of each run is bounded by the largest run the limits allow: 20 epochs of 200 examples fit 10 x 100,000
    overfitting = lessons.get_lesson("overfitting")
    assert store.launch_refusal(overfitting.configs(), ANA) is None
    store.set_limit("examples", 300, actor=TEACH)  # 10 x 300 = 3,000 < 20 x 200
    assert "20 epochs of 200 examples" in store.launch_refusal(overfitting.configs(), ANA)
    group, ids = lessons.launch(race, pool.as_actor(TEACH))  # the teacher has no limits
    assert len(ids) == 14


def test_only_the_teacher_runs_a_lesson_for_the_class_and_it_goes_first(store, pool):
    lesson = lessons.get_lesson("learning_rate")
    with pytest.raises(PermissionDenied, match="Only the teacher"):
        lessons.launch(lesson, pool.as_actor(ANA), for_class=True)
    bens = store.create_run(RunConfig(model="mlp", epochs=1, train_limit=64), actor=BEN)
    group, ids = lessons.launch(lesson, pool.as_actor(TEACH), for_class=True)
    launches = store.launches("learning_rate")
    assert launches["group"].tolist() == [group] and launches["for_class"].tolist() == [True]
    positions = store.queue_positions()
    assert sorted(positions[i] for i in ids) == [1, 2, 3] and positions[bens] == 4
    assert [store.claim_next(f"w{i}", "cpu")["group"] for i in range(3)] == [group] * 3


def test_a_run_cannot_slip_into_a_launch_and_launches_in_one_second_stay_apart(store, pool):
    lesson = lessons.get_lesson("averaging")
    group, _ = lessons.launch(lesson, pool.as_actor(ANA))
    with pytest.raises(ValueError, match="lesson's launch"):
        store.create_run(RunConfig(model="mlp", epochs=1, train_limit=64, group=group), actor=ANA)
    twin = pool.submit_lesson("averaging", [(c.name, c) for c in lesson.configs()], group, actor=BEN)[0]
    assert twin == f"{group} #2"
    assert store.list_runs(group=twin)["cfg.group"].tolist() == [twin]
    assert set(store.list_runs(group=group)["owner"]) == {"Ana"}


def test_a_lessons_pretraining_is_queued_first_and_the_runs_that_start_from_it_wait_for_it(store, pool):
    lesson = lessons.get_lesson("transfer")
    group, ids = lessons.launch(lesson, pool.as_actor(ANA))
    runs = store.list_runs(group=group).set_index("run_id")
    pretrain = ids[0]
    assert runs.loc[pretrain, "name"] == "Pretrain on 0-4" and runs.loc[pretrain, "cfg.classes"] == "0-4"
    starts_from = {runs.loc[i, "name"]: runs.loc[i, "cfg.init_from"] for i in ids[1:]}
    assert starts_from == {"Scratch @ K=5": "", "Scratch @ K=50": "",
                           **{f"{arm} @ K={k}": f"{pretrain}:best" for arm in ("Head only", "Fine-tune", "LoRA")
                              for k in (5, 50)}}
    assert queued_of(store.conn, ANA) == 1  # pretraining and all: one item
    claimed = [store.claim_next(f"w{i}", "cpu") for i in range(4)]
    assert [run["name"] for run in claimed[:3]] == ["Pretrain on 0-4", "Scratch @ K=5", "Scratch @ K=50"]
    assert claimed[3] is None  # the six others wait for the pretraining
    waiting = store.get_run(ids[3])
    assert store.waiting_reason(waiting) == ("It starts from run Pretrain on 0-4, which is running: it starts when "
                                             "that run finishes.")


def test_a_lesson_whose_variant_starts_from_no_stage_is_refused(trainlens_home):
    import tomllib

    with open(lessons.get_lesson("transfer").path) as f:
        broken = f.read().replace('start_from = "Pretrain on 0-4"\nset = {}', 'start_from = "Pretrain"\nset = {}')
    with pytest.raises(ValueError, match=r"variant 'Fine-tune @ K=5': start_from='Pretrain' names no \[\[pretrain\]\] "
                                         "stage; the stages are Pretrain on 0-4"):
        lessons.parse_lesson("broken", tomllib.loads(broken))


# ---- the page --------------------------------------------------------------------------------------------------
@pytest.fixture
def class_mode(monkeypatch):
    monkeypatch.setenv("TRAINLENS_CLASS_PASSPHRASE", CLASS)
    monkeypatch.setenv("TRAINLENS_TEACHER_PASSPHRASE", TEACHER_WORD)
    monkeypatch.setattr(Runner, "ensure_workers", lambda self, explicit=True: 0)  # no worker processes: see the module docstring


def no_exception(at):
    assert not at.exception, [e.value for e in at.exception]
    return at


def signed_in(name: str, passphrase: str = CLASS, **params: str):
    at = fresh_app()
    at.run()
    at.text_input(key="sign_in_passphrase").input(passphrase)
    at.text_input(key="sign_in_name").input(name)
    at.button[0].click().run()
    no_exception(at)
    for key, value in params.items():
        at.query_params[key] = value
    at.switch_page(PAGE).run()
    return no_exception(at)


def page_text(at) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption] + [t.value for t in at.title])


def test_a_student_starts_each_lesson_from_the_gallery_under_the_default_limits(class_mode, trainlens_home):
    store = Store()
    at = signed_in("Ana")
    for name in SHIPPED:
        button = at.button(key=f"run_{name}")
        assert not button.disabled, name
        button.click().run()
        no_exception(at)
        assert not at.error, (name, [e.value for e in at.error])
        assert at.query_params["lesson"] == name
        group = at.query_params["launch"]
        lesson = lessons.get_lesson(name)
        assert len(store.list_runs(group=group)) == lesson.run_count
        cancel_all(store)  # her lesson is cancelled: the next one has room in her queue
        at.query_params.clear()
        at.switch_page(PAGE).run()
    launched = store.launches()
    assert sorted(launched["lesson"]) == sorted(SHIPPED) and set(launched["owner"]) == {"Ana"}


def test_lowered_limits_are_said_on_the_gallery_before_a_click(class_mode, trainlens_home):
    store = Store()
    store.set_limit("lesson_runs", 5, actor=TEACH)
    at = signed_in("Ana")
    assert at.button(key="run_optimizer_race").disabled
    assert at.button(key="run_learning_rate").disabled is False
    assert "5 runs per lesson" in page_text(at)
    teacher = signed_in("Ms Rivera", TEACHER_WORD)  # the teacher has no limits
    assert not teacher.button(key="run_optimizer_race").disabled


def write_progress(store: Store, run_id: str, steps: int, worker: str) -> None:
    """What a worker would write: the run running, its loss at a few steps."""
    store.set_running(run_id, worker, "cpu")
    store.update_progress(run_id, steps, 2 * steps, 0)
    store.log_batch([(run_id, step, 0, "loss", 2.3 / step, float(step)) for step in range(1, steps + 1)])


def test_a_lesson_the_teacher_runs_for_the_class_shows_live_on_a_students_page(class_mode, trainlens_home):
    store = Store()
    teacher = signed_in("Ms Rivera", TEACHER_WORD, lesson="learning_rate")
    start = teacher.button(key="lesson_start")
    assert start.label == "Run for the class"
    start.click().run()
    no_exception(teacher)
    group = teacher.query_params["launch"]
    assert store.launches("learning_rate")["for_class"].tolist() == [True]
    ids = list(store.list_runs(group=group)["run_id"])
    # a student who opens the lesson sees the class's runs, not an empty lesson, and is offered their own run
    ana = signed_in("Ana", lesson="learning_rate")
    assert "0 of 3 runs finished" in ana.get("progress")[0].proto.text
    assert ana.button(key="lesson_start").label == "Run my own"
    assert "launch" not in ana.query_params  # the default is not pinned: a reload follows the class's next launch
    assert line_points(chart_by_key(ana, "lesson_chart_0")) == 0
    write_progress(store, ids[0], 5, "w1")  # a worker trains the first run: her next refresh draws it
    time.sleep(LIVE_MAX_AGE_S + 0.2)  # a figure shared by the sessions watching is at most this old
    ana.run()
    no_exception(ana)
    assert line_points(chart_by_key(ana, "lesson_chart_0")) >= 5
    for run_id in ids:
        store.update_status(run_id, RunStatus.COMPLETED)
    ana.run()
    no_exception(ana)
    assert any("Answer" in box.value for box in list(ana.success) + list(ana.warning))
    # her own launch, once started, is what she sees, with a switch back to the class's
    ana.button(key="lesson_start").click().run()
    no_exception(ana)
    own = ana.query_params["launch"]
    assert own != group and set(store.list_runs(group=own)["owner"]) == {"Ana"}
    switch = ana.get("button_group")[0]
    assert [o for o in switch.proto.options] and len(switch.proto.options) == 2


def test_a_schema_3_store_gains_launches_and_pace_and_keeps_its_runs(trainlens_home):
    import sqlite3

    store = Store()
    run_id = store.create_run(RunConfig(model="mlp", epochs=1, train_limit=64), actor=ANA)
    store.close()
    conn = sqlite3.connect(trainlens_home / "trainlens.db")
    conn.execute("DROP TABLE launches")
    for column in ("pace", "pace_at", "pace_since"):
        conn.execute(f"ALTER TABLE runs DROP COLUMN {column}")
    conn.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    store = Store()
    assert store.get_run(run_id)["pace"] is None and store.launches().empty
    store.claim_next("w", "cpu")
    store.update_progress(run_id, 1, 10, 0)
    assert store.get_run(run_id)["pace_since"] is not None
    store.close()
