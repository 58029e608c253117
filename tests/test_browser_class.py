"""A class on one server, in a real Chromium: two students and a teacher in three browser contexts.

The server runs in class mode (both passphrases set). The teacher has paused the queue, so Ben's run stays
queued while we look at it. Ana sees Ben's run but cannot cancel it (the button counts 0 and says why); Ben sees
it under "My runs" with its place in the queue; the teacher cancels it. Screenshots of the sign-in form, a
student's Runs page and the teacher's Class page go to test-artifacts/ at 1024x768 and 1920x1080.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from playwright.sync_api import expect
from ui_helpers import CHROMIUM, ROOT, server_log, streamlit_server, wait_for

from engine.classroom import STUDENT
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


def open_sign_in(browser, url: str):
    context = browser.new_context(viewport=SIZES["1920"])
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    expect(page.get_by_text("Join the class")).to_be_visible(timeout=90_000)
    return context, page


def fill_sign_in(page, passphrase: str, name: str, code: str = "") -> None:
    page.get_by_role("textbox", name="Passphrase").fill(passphrase)
    page.get_by_role("textbox", name="Your display name").fill(name)
    page.get_by_role("textbox", name="Rejoin code (only when coming back)").fill(code)
    page.get_by_role("button", name="Join", exact=True).click()


def sign_in(browser, url: str, passphrase: str, name: str, code: str = ""):
    context, page = open_sign_in(browser, url)
    fill_sign_in(page, passphrase, name, code)
    expect(page.get_by_text(f"Signed in as {name}")).to_be_visible()
    assert passphrase not in page.url and "seat=" in page.url and (not code or code not in page.url)
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


@contextlib.contextmanager
def class_server(tmp_path: Path):
    """A class-mode server with the queue paused (queued runs stay queued while we look); yields its URL, its store
    and a list where the test puts its browser contexts, all closed at the end (the server's log printed on a
    failure)."""
    home = tmp_path / "class_home"
    home.mkdir()
    env = {"TRAINLENS_CLASS_PASSPHRASE": CLASS, "TRAINLENS_TEACHER_PASSPHRASE": TEACHER_WORD}
    with streamlit_server(home, workers=1, extra_env=env) as url:
        store = Store(home / "trainlens.db")
        store.set_queue_paused(True)
        contexts: list = []
        try:
            yield url, store, contexts
        except Exception:
            print(server_log(home))
            raise
        finally:
            for context in contexts:
                context.close()
            store.close()


def test_a_student_cannot_cancel_another_students_run_and_the_teacher_can(browser, tmp_path):
    with class_server(tmp_path) as (url, store, contexts):
        joined = store.join_class("Ben", STUDENT)  # Ben joined from another laptop, then closed it
        store.leave_class(joined.seat_id)
        bens = store.create_run(RunConfig(model="mlp", epochs=1, train_limit=64), actor=joined.actor)
        ana_context, ana = sign_in(browser, url, CLASS, "Ana")
        contexts.append(ana_context)
        open_runs(ana)
        expect(ana.get_by_text("No runs")).to_have_count(0)
        ana.get_by_text("My runs only").click()  # everyone's runs, read-only
        select_first_row(ana)
        expect(ana.get_by_text("belong to someone else")).to_be_visible()
        expect(ana.get_by_role("button", name="Cancel (0)")).to_be_disabled()
        shots(ana, "student_runs")

        ben_context, ben = sign_in(browser, url, CLASS, "Ben", code=joined.code)  # he comes back as himself
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


def rejoin_code(page) -> str:
    """The rejoin code shown above the page after joining (a code block: copy it or write it down)."""
    notice = page.locator(".st-key-rejoin_code_notice")
    expect(notice).to_be_visible()
    return notice.locator("code").first.inner_text().strip()


def test_a_newcomer_under_a_signed_out_name_gets_nothing_and_the_student_comes_back_with_her_code(browser, tmp_path):
    """Issue 22's "done when", in a real browser: Ana trains (a run of hers queued, another ended), signs out; a
    newcomer types " ana " in a fresh browser, joins as someone new and cannot cancel, resume or delete her runs;
    Ana comes back from a fresh browser with her rejoin code and her runs are hers."""
    with class_server(tmp_path) as (url, store, contexts):
        ana_context, ana = sign_in(browser, url, CLASS, "Ana")
        contexts.append(ana_context)
        code = rejoin_code(ana)
        assert len(code) == 9 and code not in ana.url
        shots(ana, "rejoin_code")
        ana.get_by_role("button", name="I have noted it").click()
        expect(ana.locator(".st-key-rejoin_code_notice")).to_have_count(0)
        her = store.members().set_index("name").at["Ana", "member_id"]
        from engine.classroom import Actor

        actor = Actor("Ana", STUDENT, her)
        queued = store.create_run(RunConfig(model="mlp", epochs=1, train_limit=64), actor=actor, name="ana queued")
        failed = store.create_run(RunConfig(model="mlp", epochs=1, train_limit=64), actor=actor, name="ana failed")
        store.update_status(failed, RunStatus.FAILED, "out of patience")
        ana.get_by_role("button", name="Sign out").click()
        expect(ana.get_by_text("Join the class")).to_be_visible()
        ana_context.close()

        new_context, newcomer = open_sign_in(browser, url)
        contexts.append(new_context)
        fill_sign_in(newcomer, CLASS, " ana ")
        expect(newcomer.get_by_text("their runs stay theirs")).to_be_visible()
        shots(newcomer, "name_taken")
        newcomer.get_by_role("button", name="Join as someone new under this name").click()
        expect(newcomer.get_by_text("Signed in as ana")).to_be_visible()
        newcomer.get_by_role("button", name="I have noted it").click()
        open_runs(newcomer)
        newcomer.get_by_text("My runs only").click()
        select_first_row(newcomer)
        expect(newcomer.get_by_text("belong to someone else")).to_be_visible()
        for label in ("Cancel (0)", "Resume (0)", "Delete (0)"):
            expect(newcomer.get_by_role("button", name=label)).to_be_disabled()

        back_context, back = sign_in(browser, url, CLASS, "ANA", code=code.lower())
        contexts.append(back_context)
        expect(back.get_by_text("Welcome back")).to_be_visible()
        assert rejoin_code(back) != code  # a new code for next time
        back.get_by_role("button", name="I have noted it").click()
        open_runs(back)  # "My runs only": hers, newest first
        expect(back.get_by_text("ana queued").first).to_be_attached()
        select_first_row(back)
        back.get_by_role("button", name="Resume (1)").click()
        wait_for(lambda: store.get_run(failed)["status"] == RunStatus.QUEUED, 30, what="her own resume")
        assert store.get_run(queued)["status"] == RunStatus.QUEUED
