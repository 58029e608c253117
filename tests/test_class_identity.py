"""Who is who in a class, through the dashboard (AppTest): a student's runs belong to her, not to her name.

A student trains, signs out (or the teacher signs her out); a newcomer who types the same name in another case or
spacing joins as someone new and can neither cancel, delete nor resume her runs; she comes back from a fresh
browser session as herself, with her rejoin code or the teacher's approval, and her runs are hers again. Wrong
guesses are slowed down per address, so a fresh browser session buys no free guesses.

No worker processes: runs are made in the store as the students' pages would queue them.
"""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest
from ui_helpers import MAIN, fresh_app

from engine.records import RunStatus
from engine.runs.store import Store

# the passphrases and the autouse fixture that turns class mode on (no worker processes: runs only need to exist)
from test_class_pages import CLASS, TEACHER_WORD, TINY, class_mode  # noqa: F401

pytestmark = pytest.mark.timeout(300)


def ok(at):
    assert not at.exception, [e.value for e in at.exception]
    return at


def browser(first: bool = False) -> AppTest:
    """A fresh browser session on the same server (the app's caches, and so the guess counts, are the server's)."""
    at = fresh_app() if first else AppTest.from_file(str(MAIN), default_timeout=90)
    return ok(at.run())


def sign_in(at, name: str, passphrase: str = CLASS, code: str = ""):
    at.text_input(key="sign_in_passphrase").input(passphrase)
    at.text_input(key="sign_in_name").input(name)
    at.text_input(key="sign_in_code").input(code)
    at.button[0].click().run()  # the form's submit button
    return ok(at)


def signed_in(at) -> bool:
    return any("Signed in as" in m.value for m in at.sidebar.markdown)


def my_actor(at):
    from engine.classroom import Actor

    name, role, _, _, member_id = at.session_state["class_actor"]
    return Actor(name, role, member_id)


def class_summary(at):
    """The teacher's table of students (a plain dataframe: found by its columns)."""
    return next(d.value for d in at.dataframe if {"student", "status", "runs"} <= set(d.value.columns))


def runs_table(at, mine_only: bool):
    at.switch_page("views/runs.py").run()
    ok(at)
    at.toggle(key="runs_mine").set_value(mine_only).run()
    return ok(at)


def select(at, run_ids: list[str]):
    table = at.dataframe(key="runs_table").value
    rows = [list(table["run_id"]).index(r) for r in run_ids]
    at.session_state["runs_table"] = {"selection": {"rows": rows, "columns": [], "cells": []}}
    return ok(at.run())


def anas_runs(store: Store, ana) -> tuple[str, str]:
    """Ana's queued run and her failed one (cancellable; resumable and deletable)."""
    queued = store.create_run(TINY, actor=ana)
    failed = store.create_run(TINY, actor=ana)
    store.update_status(failed, RunStatus.FAILED, "out of patience")
    return queued, failed


def newcomer_cannot_touch(store: Store, runs: tuple[str, str]) -> AppTest:
    """A newcomer types Ana's name in another case and spacing, joins as someone new, and cannot touch her runs."""
    newcomer = browser()
    sign_in(newcomer, "  aNA ")
    assert "their runs stay theirs" in newcomer.warning[0].value and not signed_in(newcomer)
    newcomer.button(key="sign_in_new").click().run()
    ok(newcomer)
    assert signed_in(newcomer) and my_actor(newcomer).name == "aNA"
    runs_table(newcomer, mine_only=True)
    assert newcomer.dataframe(key="runs_table").value.empty  # none of Ana's runs are "mine"
    runs_table(newcomer, mine_only=False)
    select(newcomer, list(runs))
    for key, label in (("runs_cancel", "Cancel (0)"), ("runs_resume", "Resume (0)"), ("runs_delete", "Delete (0)")):
        assert newcomer.button(key=key).label == label and newcomer.button(key=key).disabled
    from app.ui.state import shared_runner

    acting = shared_runner().as_actor(my_actor(newcomer))
    for action, run_id in ((acting.cancel, runs[0]), (acting.resume, runs[1]), (acting.delete, runs[1])):
        with pytest.raises(PermissionError, match="belongs to Ana"):
            action(run_id)
    assert [store.get_run(r)["status"] for r in runs] == [RunStatus.QUEUED, RunStatus.FAILED]
    return newcomer


def still_hers(at, store: Store, runs: tuple[str, str]) -> None:
    """Ana, back in a fresh browser session: her runs are "mine", and she can cancel and resume them."""
    assert signed_in(at) and my_actor(at).name == "Ana"
    runs_table(at, mine_only=True)
    assert set(at.dataframe(key="runs_table").value["run_id"]) == set(runs)
    select(at, list(runs))
    assert at.button(key="runs_cancel").label == "Cancel (1)" and at.button(key="runs_resume").label == "Resume (1)"
    at.button(key="runs_cancel").click().run()
    ok(at)
    assert store.get_run(runs[0])["status"] == RunStatus.CANCELLED


def test_after_signing_out_a_newcomer_under_her_name_gets_nothing_and_her_code_brings_her_back():
    ana = sign_in(browser(first=True), "Ana")
    code = ana.code[0].value  # her rejoin code, shown once above the page
    assert any("rejoin code" in m.value for m in ana.markdown)
    ana.button(key="rejoin_code_noted").click().run()
    assert not ok(ana).code  # noted: no longer shown
    store = Store()
    runs = anas_runs(store, my_actor(ana))
    ana.sidebar.button(key="sign_out").click().run()
    assert not signed_in(ok(ana))
    newcomer_cannot_touch(store, runs)

    back = sign_in(browser(), " ana", code=code.lower())  # a fresh browser session, the code as typed
    assert signed_in(back) and back.code and back.code[0].value != code  # a new code for next time
    assert "Welcome back" in " ".join(m.value for m in back.markdown)
    still_hers(back, store, runs)
    again = sign_in(browser(), "Ana", code=code)  # the old code was good for one rejoin
    assert "not the one given to 'Ana'" in again.error[0].value and not signed_in(again)


def test_signed_out_by_the_teacher_she_is_let_back_in_by_the_teacher():
    ana = sign_in(browser(first=True), "Ana")
    store, her = Store(), my_actor(ana)
    runs = anas_runs(store, her)
    teacher = sign_in(browser(), "Ms Rivera", TEACHER_WORD)
    teacher.switch_page("views/classroom.py").run()
    summary = class_summary(ok(teacher))
    assert summary.set_index("student").at["Ana", "status"] == "signed in"
    teacher.selectbox(key="class_student").select(her.member_id)
    teacher.button(key="class_free").click().run()
    ok(teacher)
    ana.run()
    assert not signed_in(ok(ana)) and "Sign in again" in ana.warning[0].value  # her browser is signed out
    newcomer_cannot_touch(store, runs)

    lost = sign_in(browser(), "ANA")  # a fresh browser, and she lost her code
    assert "rejoin code" in lost.warning[-1].value
    lost.button(key="sign_in_ask").click().run()
    assert "Waiting for the teacher" in ok(lost).info[0].value
    teacher.run()
    summary = class_summary(ok(teacher)).set_index("student")
    assert summary.at["Ana", "status"] == "waiting to rejoin" and summary.at["aNA (2)", "status"] == "signed in"
    request = store.rejoin_requests()["request_id"].iloc[0]
    assert teacher.selectbox(key=f"rejoin_as_{request}").value == her.member_id  # the earliest of that name first
    teacher.button(key=f"rejoin_yes_{request}").click().run()
    ok(teacher)
    lost.run()  # her page polls the request
    still_hers(ok(lost), store, runs)


def test_a_fresh_browser_session_gets_no_free_guesses():
    first = browser(first=True)
    for _ in range(3):
        sign_in(first, "guess", "Mallory")
    assert "not right" in first.error[0].value and "Wait" not in first.error[0].value
    second = sign_in(browser(), "Mallory", "guess again")  # a new session from the same address (loopback)
    assert "Wait 2 s" in second.error[0].value
    third = sign_in(browser(), "Mallory", CLASS)  # even the right passphrase waits its turn
    assert "Too many wrong" in third.error[0].value and not signed_in(third)
