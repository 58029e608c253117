"""The projector audit of the Class page (class mode): the leaderboard and the teacher's controls, as a teacher
projects them at 1024x768 in projector mode, with a class whose runs have finished.

The same checks as tests/test_projector_audit.py (its `_visit` and `judge`: overlapping ticks, cut text, a table that
hides columns behind a horizontal scroll, colours, exceptions), on a class-mode server of its own: six students, some
with long names, each with a finished run written into the store (no training: the page is judged, not the runs),
and the teacher signed in through the form like a browser in class.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import expect
from test_browser_class import CLASS, TEACHER_WORD, fill_sign_in
from test_projector_audit import CHECKS, HEIGHT, LOAD_MS, WIDTH, _visit
from ui_helpers import CHROMIUM, server_log, streamlit_server

from engine.classroom import STUDENT
from engine.config import RunConfig
from engine.runs.store import Store

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed")]

# long names on purpose: a projected table must show them whole or wrap them, never push columns out of sight
STUDENTS = {"Ana": 0.9312, "Benedikt Oyelaran-Brooks": 0.9475, "Chloé": 0.9475, "Dmitri Vasquez-Nakamura": 0.8820,
            "Eun-ji": 0.9051, "Fatima Zahra El Idrissi": 0.9618}


def finished_run(store: Store, name: str, accuracy: float) -> str:
    """A student's run, completed with two epochs of validation accuracy, as a worker would have left it."""
    joined = store.join_class(name, STUDENT)
    run_id = store.create_run(RunConfig(model="mlp", epochs=2, train_limit=600, optimizer="adam"),
                              actor=joined.actor, name=f"{name.split()[0].lower()}-adam")
    now = time.time()
    store.log_batch([(run_id, 19, 0, "val_acc", accuracy - 0.05, now), (run_id, 38, 1, "val_acc", accuracy, now)])
    store.conn.execute("UPDATE runs SET status='completed', step=38, total_steps=38, started_at=?, finished_at=? "
                       "WHERE run_id=?", (now - 30, now, run_id))
    return run_id


@pytest.fixture(scope="module")
def class_page(browser, tmp_path_factory):
    home = tmp_path_factory.mktemp("class_audit_home")
    folder = tmp_path_factory.mktemp("projector_audit_class")
    env = {"TRAINLENS_CLASS_PASSPHRASE": CLASS, "TRAINLENS_TEACHER_PASSPHRASE": TEACHER_WORD}
    with streamlit_server(home, workers=0, extra_env=env) as url:
        store = Store(home / "trainlens.db")
        for name, accuracy in STUDENTS.items():
            finished_run(store, name, accuracy)
        store.close()
        context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
        try:
            page = context.new_page()
            page.goto(f"{url}/?present=1", timeout=LOAD_MS)
            expect(page.get_by_text("Join the class")).to_be_visible(timeout=LOAD_MS)
            fill_sign_in(page, TEACHER_WORD, "Ms Rivera")
            expect(page.get_by_text("Signed in as Ms Rivera")).to_be_attached(timeout=LOAD_MS)
            seat = parse_qs(urlparse(page.url).query)["seat"][0]
            audited = _visit(page, f"{url}/classroom?seat={seat}&present=1", folder, "class")
            shown = {"board": page.locator(".st-key-board_table").is_visible(),
                     "empty": page.get_by_text("No finished student runs yet").count(),
                     "limits": page.get_by_text("Queue and limits").is_visible()}
            yield audited, shown
        except Exception:
            print(server_log(home))
            raise
        finally:
            context.close()


def test_the_class_page_shows_the_leaderboard_and_the_teachers_controls(class_page):
    audited, shown = class_page
    assert shown == {"board": True, "empty": 0, "limits": True}, audited.report("exceptions")


@pytest.mark.parametrize("check", CHECKS)
def test_the_projected_class_page_is_readable(class_page, check):
    audited, _ = class_page
    assert not audited.findings[check], f"class, {check}:\n{audited.report(check)}"
