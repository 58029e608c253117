"""Class mode in the dashboard (AppTest): sign-in, reloads, role-dependent buttons, the Class page.

No worker processes: runs are created straight in the store (as students' browsers would queue them) and their
statuses set by hand, so these tests check what each person sees and may do, not training.
"""

from __future__ import annotations

import pytest
from ui_helpers import fresh_app

from engine.classroom import STUDENT, Actor
from engine.config import RunConfig
from engine.records import RunStatus
from engine.runs.store import Store

pytestmark = pytest.mark.timeout(300)

CLASS, TEACHER_WORD = "sunflower-42", "teacher-oak-7"
TINY = RunConfig(model="mlp", epochs=1, train_limit=64)


@pytest.fixture(autouse=True)
def class_mode(monkeypatch):
    monkeypatch.setenv("TRAINLENS_CLASS_PASSPHRASE", CLASS)
    monkeypatch.setenv("TRAINLENS_TEACHER_PASSPHRASE", TEACHER_WORD)
    # no worker processes: these runs only need to exist (the pages' reaper would otherwise start a pool for the
    # queued runs, and stopping workers still importing torch costs each test 15 s)
    monkeypatch.setenv("TRAINLENS_WORKERS", "0")


def sign_in(at, passphrase: str, name: str):
    at.text_input(key="sign_in_passphrase").input(passphrase)
    at.text_input(key="sign_in_name").input(name)
    at.button[0].click().run()  # the form's submit button
    return at


def no_exception(at):
    assert not at.exception, [e.value for e in at.exception]
    return at


def signed_in_app(name: str, passphrase: str = CLASS):
    at = fresh_app()
    at.run()
    return no_exception(sign_in(at, passphrase, name))


def member(name: str) -> Actor:
    """The class member signed in under `name` (as the store knows them: their id owns their runs)."""
    members = Store().members().set_index("name")
    return Actor(name, members.at[name, "role"], members.at[name, "member_id"])


def student(name: str) -> Actor:
    """A student who joined (in some other browser) and is still signed in."""
    return Store().join_class(name, STUDENT).actor


def test_a_visitor_must_sign_in_and_bad_input_gets_a_clear_message():
    at = fresh_app()
    at.run()
    no_exception(at)
    assert [t.value for t in at.title] == ["Join the class"]
    assert not at.sidebar.button  # no page, no navigation before signing in
    sign_in(at, "wrong", "Ana")
    assert "passphrase is not right" in at.error[0].value
    sign_in(at, CLASS, "x" * 10_000)
    assert "at most 40" in at.error[0].value
    sign_in(at, CLASS, "   ")
    assert "Enter a display name" in at.error[0].value
    assert "seat" not in at.query_params


def test_html_names_show_as_text_and_a_reload_keeps_the_seat_without_the_passphrase():
    name = "<img src=x onerror=alert(1)>*Ana*"
    at = signed_in_app(name)
    assert [t.value for t in at.title] == ["Train"]
    token = at.query_params["seat"]
    assert CLASS not in token and all(CLASS not in str(v) for v in at.query_params.values())
    signed = next(m.value for m in at.sidebar.markdown if "Signed in as" in m.value)
    assert "\\<img" in signed and "\\*Ana\\*" in signed  # escaped: markdown and HTML shown as typed
    reload = fresh_app()
    reload.query_params["seat"] = token
    reload.run()
    no_exception(reload)
    assert [t.value for t in reload.title] == ["Train"]
    forged = fresh_app()
    forged.query_params["seat"] = token[:-2] + ("00" if not token.endswith("00") else "11")
    forged.run()
    assert [t.value for t in forged.title] == ["Join the class"]


def test_two_students_cannot_share_a_name_and_the_refusal_says_how_to_rejoin():
    signed_in_app("Ana")
    at = signed_in_app(" ANA ")
    assert "is signed in as 'ANA'" in at.warning[0].value and "rejoin code" in at.warning[0].value
    assert [b.key for b in at.button if b.key and b.key.startswith("sign_in_")] == ["sign_in_ask"]


def test_wrong_guesses_are_slowed_down():
    at = fresh_app()
    at.run()
    for _ in range(4):
        sign_in(at, "guess", "Mallory")
    assert "Wait 2 s" in at.error[0].value
    sign_in(at, CLASS, "Mallory")  # even the right passphrase waits its turn
    assert "Too many wrong passphrases" in at.error[0].value


def runs_page(at):
    at.switch_page("views/runs.py").run()
    return no_exception(at)


def select(at, run_id: str):
    table = at.dataframe(key="runs_table").value
    at.session_state["runs_table"] = {"selection": {"rows": [list(table["run_id"]).index(run_id)], "columns": [],
                                                    "cells": []}}
    at.run()
    return no_exception(at)


def test_a_student_sees_everyones_runs_but_may_cancel_only_their_own(trainlens_home):
    at = signed_in_app("Ana")
    store = Store()
    bens = store.create_run(TINY, actor=student("Ben"))
    anas = store.create_run(TINY, actor=member("Ana"))
    runs_page(at)
    assert at.toggle(key="runs_mine").value is True  # "My runs" is a student's default
    assert list(at.dataframe(key="runs_table").value["run_id"]) == [anas]
    at.toggle(key="runs_mine").set_value(False).run()
    table = at.dataframe(key="runs_table").value
    assert set(table["run_id"]) == {anas, bens}
    assert "in queue" in table.set_index("run_id").loc[anas, "status"]
    select(at, bens)
    assert at.button(key="runs_cancel").label == "Cancel (0)" and at.button(key="runs_cancel").disabled
    assert any("belong to someone else" in c.value for c in at.caption)
    select(at, anas)
    waiting = next(i.value for i in at.info if "is waiting" in i.value)  # her queued run says why it waits
    assert "it is next" in waiting or "ahead of it" in waiting
    assert at.button(key="runs_cancel").label == "Cancel (1)"
    at.button(key="runs_cancel").click().run()
    no_exception(at)
    assert store.get_run(anas)["status"] == RunStatus.CANCELLED
    assert store.get_run(bens)["status"] == RunStatus.QUEUED
    at.run()
    assert not [i for i in at.info if "is waiting" in i.value]  # Ana has nothing queued any more


def test_a_forged_session_cannot_cancel_another_students_run(trainlens_home):
    """Even if the page offered it (a crafted request, an edited session), the engine refuses."""
    at = signed_in_app("Ana")
    store = Store()
    bens = store.create_run(TINY, actor=student("Ben"))
    runs_page(at)
    from app.ui.state import shared_runner

    with pytest.raises(PermissionError):
        shared_runner().as_actor(member("Ana")).cancel(bens)
    with pytest.raises(PermissionError):  # nor with Ben's name typed
        shared_runner().as_actor(Actor("Ben", STUDENT, member("Ana").member_id)).cancel(bens)
    assert store.get_run(bens)["status"] == RunStatus.QUEUED


def test_the_teacher_may_cancel_any_run_and_sees_the_class_controls(trainlens_home):
    store = Store()
    ben = student("Ben")
    bens = store.create_run(TINY, actor=ben)
    done = store.create_run(TINY, actor=ben, name="ben best")
    store.update_status(done, RunStatus.COMPLETED)
    store.log_batch([(done, 10, 0, "val_acc", 0.91, 0.0)])
    at = signed_in_app("Ms Rivera", TEACHER_WORD)
    assert any("(teacher)" in m.value for m in at.sidebar.markdown)
    runs_page(at)
    assert at.toggle(key="runs_mine").value is False
    select(at, bens)
    assert at.button(key="runs_cancel").label == "Cancel (1)"
    at.button(key="runs_cancel").click().run()
    assert store.get_run(bens)["status"] == RunStatus.CANCELLED
    at.switch_page("views/classroom.py").run()
    no_exception(at)
    board = at.dataframe(key="board_table").value
    assert board["student"].tolist() == ["Ben"] and board["best val acc"].tolist() == [pytest.approx(0.91)]
    at.toggle(key="class_pause").set_value(True).run()
    assert store.settings()["queue_paused"] == "1"
    at.number_input(key="limit_queued").set_value(7)
    at.button(key="FormSubmitter:class_limits-Save limits").click().run()
    no_exception(at)
    assert store.limits().queued == 7


def test_a_student_has_no_teacher_controls_and_hits_a_cap_with_a_message(trainlens_home, monkeypatch):
    monkeypatch.setenv("TRAINLENS_MAX_QUEUED", "1")
    store = Store()
    at = signed_in_app("Ana")
    store.create_run(TINY, actor=member("Ana"))
    at.switch_page("views/classroom.py").run()
    no_exception(at)
    assert not [t for t in at.toggle if t.key == "class_pause"]
    at.switch_page("views/train.py").run()
    no_exception(at)
    assert any("It will be named Ana-" in c.value for c in at.caption)
    at.button(key="start").click().run()
    no_exception(at)
    assert "class limit is 1" in at.error[0].value
    assert len(store.list_runs()) == 1


def test_serving_beyond_this_computer_without_class_mode_is_refused(monkeypatch):
    monkeypatch.delenv("TRAINLENS_CLASS_PASSPHRASE")
    monkeypatch.delenv("TRAINLENS_TEACHER_PASSPHRASE")
    import streamlit as st

    at = fresh_app()
    real = st.get_option
    monkeypatch.setattr(st, "get_option", lambda key: "0.0.0.0" if key == "server.address" else real(key))
    at.run()
    assert "class mode is off" in at.error[0].value
    assert not at.title
