"""Class mode in the engine: who may change which run, fair turns in the queue, class limits, passphrases.

These rules are enforced by the store and runner (not by hiding buttons), so they are tested here against the
engine API a forged request would reach.
"""

from __future__ import annotations

import hmac
import logging
import time

import pytest

from engine.classroom import LOCAL, STUDENT, TEACHER, Actor, ClassMode, Guesses, check_display_name
from engine.config import RunConfig
from engine.records import RunStatus
from engine.runs.access import CapReached, PermissionDenied
from engine.runs.runner import Runner
from engine.runs.store import Store

ANA, BEN = Actor("Ana", STUDENT), Actor("Ben", STUDENT)
TEACH = Actor("Ms Rivera", TEACHER)
TINY = RunConfig(model="mlp", epochs=1, train_limit=64)


@pytest.fixture
def store(trainlens_home):
    store = Store()
    yield store
    store.close()


def finish(store: Store, run_id: str, status: str = RunStatus.COMPLETED) -> None:
    store.update_status(run_id, status)


def test_a_student_cannot_cancel_resume_or_delete_another_students_run(store):
    bens = store.create_run(TINY, actor=BEN)
    with pytest.raises(PermissionDenied, match="belongs to Ben"):
        store.request_cancel(bens, actor=ANA)
    with pytest.raises(PermissionDenied):
        store.delete_run(bens, actor=ANA)
    store.request_cancel(bens, actor=BEN)  # the owner can
    with pytest.raises(PermissionDenied):
        store.resume_run(bens, actor=ANA)
    assert store.get_run(bens)["status"] == RunStatus.CANCELLED
    store.resume_run(bens, actor=BEN)
    assert store.get_run(bens)["status"] == RunStatus.QUEUED


def test_the_teacher_and_the_local_user_may_act_on_every_run(store):
    ana_runs = [store.create_run(TINY, actor=ANA) for _ in range(2)]
    assert store.request_cancel(ana_runs[0], actor=TEACH) == RunStatus.CANCELLED
    store.delete_run(ana_runs[0], actor=TEACH)
    assert store.get_run(ana_runs[0]) is None
    store.request_cancel(ana_runs[1], actor=Actor.local())
    store.delete_run(ana_runs[1])  # the engine itself (CLI without an actor)
    assert store.list_runs().empty


def test_a_name_alike_is_not_the_owner_unless_the_role_matches(store):
    """A teacher-owned run is not a student's to cancel, even if the student signs in with the teacher's name."""
    teachers = store.create_run(TINY, actor=TEACH)
    with pytest.raises(PermissionDenied):
        store.request_cancel(teachers, actor=Actor("Ms Rivera", STUDENT))


def test_the_runner_refuses_through_an_acting_handle_and_touches_nothing(store, trainlens_home):
    runner = Runner(store, workers=1)
    runner.ensure_workers = lambda: 0  # no worker processes: these runs only need to exist
    bens = runner.as_actor(BEN).submit(TINY).run_id
    (trainlens_home / "checkpoints" / bens).mkdir(parents=True)
    ana = runner.as_actor(ANA)
    assert not ana.may_act_on("Ben", STUDENT) and ana.may_act_on("Ana", STUDENT)
    for action in (ana.cancel, ana.delete, ana.resume):
        with pytest.raises(PermissionDenied):
            action(bens)
    with pytest.raises(PermissionDenied):
        ana.cancel_all()
    with pytest.raises(PermissionDenied):
        ana.remove_owner_runs("Ben")
    assert store.get_run(bens)["status"] == RunStatus.QUEUED
    assert (trainlens_home / "checkpoints" / bens).exists()
    assert runner.as_actor(TEACH).remove_owner_runs("Ben") == 1
    assert store.get_run(bens) is None and not (trainlens_home / "checkpoints" / bens).exists()


def test_an_acting_handle_reports_each_change_it_is_asked_to_make(store):
    """The dashboard hears of every change a session makes (app.ui.state.note_own_change), refused ones included."""
    runner = Runner(store, workers=1)
    runner.ensure_workers = lambda: 0
    changes = []
    teacher = runner.as_actor(TEACH, on_change=lambda: changes.append(1))
    run_id = teacher.submit(TINY).run_id
    teacher.cancel(run_id)
    teacher.cancel_all()
    teacher.remove_owner_runs("Ben")
    teacher.delete(run_id)
    assert len(changes) == 5
    assert teacher.may_act_on("Ben", STUDENT) and len(changes) == 5  # asking what one may do changes nothing
    ana = runner.as_actor(ANA, on_change=lambda: changes.append(1))
    with pytest.raises(PermissionDenied):
        ana.cancel_all()
    assert len(changes) == 6


def test_thirty_students_submitting_at_once_each_start_a_first_run_before_anyones_third(store):
    """Round-robin: the queue serves owners in turn, not first come first served."""
    store.set_limit("running", 5)
    students = [Actor(f"student {i:02d}", STUDENT) for i in range(30)]
    owner_of = {}
    for student in students:  # each submits 3 runs in a burst; the first student's burst comes first
        for _ in range(3):
            owner_of[store.create_run(TINY, actor=student)] = student.name
    positions = store.queue_positions()
    started: list[str] = []
    while (run := store.claim_next("w1", "cpu")) is not None:
        started.append(run["owner"])
        store.update_status(run["run_id"], RunStatus.COMPLETED)
    assert len(started) == 90
    nth = {}
    order = []
    for owner in started:
        nth[owner] = nth.get(owner, 0) + 1
        order.append((owner, nth[owner]))
    last_first = max(i for i, (_, n) in enumerate(order) if n == 1)
    first_third = min(i for i, (_, n) in enumerate(order) if n == 3)
    assert last_first < first_third
    # the positions the page shows predicted that order
    predicted = [owner_of[r] for r, _ in sorted(positions.items(), key=lambda kv: kv[1])]
    assert predicted == started


def test_one_students_twenty_queued_runs_do_not_starve_a_latecomer(store):
    store.set_limit("queued", 50)
    hog = [store.create_run(TINY, actor=ANA) for _ in range(20)]
    first = store.claim_next("w1", "cpu")
    assert first["run_id"] == hog[0]
    late = store.create_run(TINY, actor=BEN)
    store.update_status(first["run_id"], RunStatus.COMPLETED)
    assert store.claim_next("w1", "cpu")["run_id"] == late


def test_a_student_at_the_running_limit_waits_and_is_told_why(store):
    a1, a2 = store.create_run(TINY, actor=ANA), store.create_run(TINY, actor=ANA)
    assert store.claim_next("w1", "cpu")["run_id"] == a1
    assert store.claim_next("w2", "cpu") is None  # the default limit: one running run per student
    assert "class limit" in store.waiting_reason(store.get_run(a2))
    store.update_status(a1, RunStatus.COMPLETED)
    assert store.claim_next("w2", "cpu")["run_id"] == a2


def test_a_paused_queue_holds_students_but_not_the_teacher(store):
    with pytest.raises(PermissionDenied):
        store.set_queue_paused(True, actor=ANA)
    store.set_queue_paused(True, actor=TEACH)
    student = store.create_run(TINY, actor=ANA)
    demo = store.create_run(TINY, actor=TEACH)
    assert "paused" in store.waiting_reason(store.get_run(student))
    assert store.claim_next("w1", "cpu")["run_id"] == demo
    assert store.claim_next("w1", "cpu") is None
    store.set_queue_paused(False, actor=TEACH)
    assert store.claim_next("w1", "cpu")["run_id"] == student


def test_caps_refuse_with_a_clear_message_and_keep_what_was_queued(store):
    with pytest.raises(CapReached, match="20 epochs; the class limit is 10"):
        store.create_run(TINY.with_updates(epochs=20), actor=ANA)
    with pytest.raises(CapReached, match="100,000 per run"):
        store.create_run(TINY.with_updates(train_limit=200_000), actor=ANA)
    kept = [store.create_run(TINY, actor=ANA) for _ in range(4)]
    refused = 0
    for _ in range(1000):  # a student submitting 1,000 runs
        try:
            store.create_run(TINY, actor=ANA)
        except CapReached as exc:
            refused += 1
            assert "class limit is 4" in str(exc)
    assert refused == 1000
    assert sorted(store.list_runs()["run_id"]) == sorted(kept)
    store.create_run(TINY.with_updates(epochs=50), actor=TEACH)  # the teacher has no caps
    store.set_limit("queued", 6, actor=TEACH)
    store.create_run(TINY, actor=ANA)
    with pytest.raises(ValueError, match="at least 1"):
        store.set_limit("queued", 0, actor=TEACH)


def test_limits_come_from_the_environment_then_the_teacher(store, monkeypatch):
    monkeypatch.setenv("TRAINLENS_MAX_EPOCHS", "2")
    assert store.limits().epochs == 2
    with pytest.raises(CapReached):
        store.create_run(TINY.with_updates(epochs=3), actor=ANA)
    store.set_limit("epochs", 30, actor=TEACH)
    store.create_run(TINY.with_updates(epochs=3), actor=ANA)


def test_default_names_are_unique_readable_and_suggested(store):
    names = [store.get_run(store.create_run(TINY, actor=ANA))["name"] for _ in range(3)]
    assert names == ["Ana-mlp-adam-lr0.002-s0", "Ana-mlp-adam-lr0.002-s0 #2", "Ana-mlp-adam-lr0.002-s0 #3"]
    assert store.unique_name(TINY, ANA) == "Ana-mlp-adam-lr0.002-s0 #4"
    assert store.unique_name(TINY) == "mlp-adam-lr0.002-s0"  # a single user's names stay as they were
    assert store.get_run(store.create_run(TINY, actor=ANA, name="mine"))["name"] == "mine"


def test_passphrases_compare_in_constant_time_and_never_reach_logs(monkeypatch, caplog, tmp_path):
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    mode = ClassMode("sunflower-42", "teacher-oak-7", home=tmp_path)
    with caplog.at_level(logging.DEBUG):
        assert mode.role_for("sunflower-42") == STUDENT
        assert mode.role_for("teacher-oak-7") == TEACHER
        assert mode.role_for("sunflower-4") is None and mode.role_for("") is None
    assert len(calls) == 8  # both passphrases are compared every time, through compare_digest
    assert "sunflower" not in caplog.text and "oak" not in caplog.text
    assert mode.problem() is None
    assert "differ" in ClassMode("same-thing", "same-thing", home=tmp_path).problem()
    assert "both" in ClassMode("only-class", "", home=tmp_path).problem()


def test_seat_tokens_admit_their_holder_and_refuse_forgeries(tmp_path):
    mode = ClassMode("sunflower-42", "teacher-oak-7", home=tmp_path)
    token = mode.issue_seat(ANA, "seat-1")
    assert "sunflower" not in token and "oak" not in token
    assert mode.read_seat(token) == (ANA, "seat-1")
    payload, signature = token.split(".")
    import base64
    import json

    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["r"] = TEACHER  # a student promoting themselves
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=") + "." + signature
    assert mode.read_seat(forged) is None
    assert mode.read_seat(token, now=time.time() + 13 * 3600) is None  # expired
    assert mode.read_seat("garbage") is None and mode.read_seat("a.b.c") is None and mode.read_seat("x" * 5000) is None
    assert ClassMode("sunflower-43", "teacher-oak-7", home=tmp_path).read_seat(token) is None  # passphrase changed


def test_wrong_guesses_are_slowed_down_per_client():
    guesses = Guesses()
    now = 1000.0
    waits = [guesses.failed("10.0.0.7", now=now) for _ in range(6)]
    assert waits[:3] == [0.0, 0.0, 0.0] and waits[3:] == [2.0, 4.0, 8.0]
    assert guesses.wait_s("10.0.0.7", now=now + 1) == 7.0
    assert guesses.wait_s("10.0.0.8", now=now) == 0.0  # another client is not slowed
    guesses.succeeded("10.0.0.7")
    assert guesses.wait_s("10.0.0.7", now=now) == 0.0


@pytest.mark.parametrize("name, problem", [("", "Enter a display name"), ("   ", "Enter a display name"),
                                           ("x" * 10_000, "at most 40"), ("a\x00b", "control"),
                                           ("a\u200bb", "control")])
def test_bad_display_names_get_a_clear_message(name, problem):
    with pytest.raises(ValueError, match=problem):
        check_display_name(name)


def test_two_students_cannot_take_the_same_name_but_a_reload_keeps_it(store):
    html = "<b>Ana</b><script>alert(1)</script>"
    assert check_display_name(html) == html  # allowed: it is only ever shown as text
    store.join_class(ANA, "seat-1")
    store.join_class(ANA, "seat-1")  # the same seat again (a reload)
    with pytest.raises(ValueError, match="already uses the name"):
        store.join_class(Actor("  ana ", STUDENT), "seat-2")
    assert store.seat_holds(ANA, "seat-1")
    store.free_name("Ana", actor=TEACH)
    assert not store.seat_holds(ANA, "seat-1")
    store.join_class(Actor("ana", STUDENT), "seat-2")
    with pytest.raises(PermissionDenied):
        store.free_name("ana", actor=BEN)


def test_an_old_store_is_migrated_with_its_runs_owned_by_the_local_user(trainlens_home):
    import sqlite3

    store = Store()
    run_id = store.create_run(TINY)
    store.close()
    conn = sqlite3.connect(trainlens_home / "trainlens.db")
    conn.execute("ALTER TABLE runs DROP COLUMN owner_role")
    conn.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    store = Store()
    assert store.get_run(run_id)["owner_role"] == LOCAL
    assert store.list_runs()["owner_role"].tolist() == [LOCAL]
    store.close()


def test_the_class_command_refuses_without_passphrases_and_says_where_students_go(monkeypatch, capsys):
    from engine.cli import main

    monkeypatch.delenv("TRAINLENS_CLASS_PASSPHRASE", raising=False)
    monkeypatch.delenv("TRAINLENS_TEACHER_PASSPHRASE", raising=False)
    assert main(["class", "--dry-run"]) == 2
    assert "needs both" in capsys.readouterr().err
    monkeypatch.setenv("TRAINLENS_CLASS_PASSPHRASE", "sunflower-42")
    monkeypatch.setenv("TRAINLENS_TEACHER_PASSPHRASE", "teacher-oak-7")
    assert main(["class", "--dry-run", "--host", "10.1.2.3", "--port", "8600"]) == 0
    out = capsys.readouterr().out
    assert "http://10.1.2.3:8600" in out and "sunflower" not in out


def test_a_lesson_too_big_for_the_class_limits_is_refused_whole(store):
    from engine import lessons

    runner = Runner(store, workers=1)
    runner.ensure_workers = lambda: 0  # no worker processes: the runs only need to be queued
    lesson = lessons.get_lesson("optimizer_race")
    store.set_limit("lesson_runs", 4, actor=TEACH)
    with pytest.raises(ValueError, match="class limit is 4 runs per lesson"):
        lessons.launch(lesson, runner.as_actor(ANA))
    assert store.list_runs().empty  # no half lesson left behind
    group, ids = lessons.launch(lesson, runner.as_actor(TEACH))
    assert len(ids) == len(lesson.configs(group)) > 4
