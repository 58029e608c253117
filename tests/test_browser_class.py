"""A class on one server, in a real Chromium: two students and a teacher in three browser contexts.

The server runs in class mode (both passphrases set). The teacher has paused the queue, so Ben's run stays
queued while we look at it. Ana sees Ben's run but cannot cancel it (the button counts 0 and says why); Ben sees
it under "My runs" with its place in the queue; the teacher cancels it. Screenshots of the sign-in form, a
student's Runs page and the teacher's Class page go to test-artifacts/ at 1024x768 and 1920x1080.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect
from ui_helpers import CHROMIUM, ROOT, server_log, streamlit_server, wait_for

from engine.classroom import STUDENT, Actor
from engine.config import RunConfig
from engine.records import RunStatus
from engine.runs.store import Store

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300),
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed")]

CLASS, TEACHER_WORD = "sunflower-42", "teacher-oak-7"
ARTIFACTS = ROOT / "test-artifacts"
SIZES = {"1024": {"width": 1024, "height": 768}, "1920": {"width": 1920, "height": 1080}}


expect.set_options(timeout=30_000)  # a page's first run on a busy 2-core machine takes seconds


def shots(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    for label, size in SIZES.items():
        page.set_viewport_size(size)
        page.wait_for_timeout(400)  # let the layout settle at the new width
        page.screenshot(path=str(ARTIFACTS / f"class_{name}_{label}.png"))
    page.set_viewport_size(SIZES["1920"])


def sign_in(browser, url: str, passphrase: str, name: str):
    context = browser.new_context(viewport=SIZES["1920"])
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    expect(page.get_by_text("Join the class")).to_be_visible(timeout=90_000)
    page.get_by_role("textbox", name="Passphrase").fill(passphrase)
    page.get_by_role("textbox", name="Your display name").fill(name)
    page.get_by_role("button", name="Join").click()
    expect(page.get_by_text(f"Signed in as {name}")).to_be_visible()
    assert passphrase not in page.url and "seat=" in page.url
    return context, page


def open_runs(page) -> None:
    page.get_by_role("link", name="Runs").click()
    expect(page.locator(".st-key-runs_table")).to_be_visible(timeout=90_000)


def select_first_row(page) -> None:
    """Tick the first row of the runs table (a canvas grid: click its row-marker column)."""
    grid = page.locator(".st-key-runs_table canvas").first
    box = grid.bounding_box()
    page.mouse.move(box["x"] + 16, box["y"] + 35 + 17.5)  # header 35 px high, rows 35 px: the first row's centre
    page.wait_for_timeout(200)
    page.mouse.click(box["x"] + 16, box["y"] + 35 + 17.5)


def test_a_student_cannot_cancel_another_students_run_and_the_teacher_can(browser, tmp_path):
    home = tmp_path / "class_home"
    home.mkdir()
    env = {"TRAINLENS_CLASS_PASSPHRASE": CLASS, "TRAINLENS_TEACHER_PASSPHRASE": TEACHER_WORD}
    with streamlit_server(home, workers=1, extra_env=env) as url:
        store = Store(home / "trainlens.db")
        store.set_queue_paused(True)
        bens = store.create_run(RunConfig(model="mlp", epochs=1, train_limit=64), actor=Actor("Ben", STUDENT))
        contexts = []
        try:
            ana_context, ana = sign_in(browser, url, CLASS, "Ana")
            contexts.append(ana_context)
            open_runs(ana)
            expect(ana.get_by_text("No runs")).to_have_count(0)
            ana.get_by_text("My runs only").click()  # everyone's runs, read-only
            select_first_row(ana)
            expect(ana.get_by_text("belong to someone else")).to_be_visible()
            expect(ana.get_by_role("button", name="Cancel (0)")).to_be_disabled()
            shots(ana, "student_runs")

            ben_context, ben = sign_in(browser, url, CLASS, "Ben")
            contexts.append(ben_context)
            open_runs(ben)
            expect(ben.get_by_text("The teacher has paused the queue")).to_be_visible()

            teacher_context, teacher = sign_in(browser, url, TEACHER_WORD, "Ms Rivera")
            contexts.append(teacher_context)
            open_runs(teacher)
            select_first_row(teacher)
            teacher.get_by_role("button", name="Cancel (1)").click()
            wait_for(lambda: store.get_run(bens)["status"] == RunStatus.CANCELLED, 30, what="the teacher's cancel")
            teacher.get_by_role("link", name="Class").click()
            expect(teacher.get_by_text("Queue and limits")).to_be_visible()
            expect(teacher.get_by_role("button", name="Remove their runs")).to_be_visible()
            expect(teacher.locator('[data-testid="stDataFrame"]').first).to_be_visible()  # every student, live
            shots(teacher, "teacher")

            login_context = browser.new_context(viewport=SIZES["1920"])
            contexts.append(login_context)
            login = login_context.new_page()
            login.goto(url)
            expect(login.get_by_text("Join the class")).to_be_visible(timeout=60_000)
            shots(login, "sign_in")
        except Exception:
            print(server_log(home))
            raise
        finally:
            for context in contexts:
                context.close()
            store.close()
