"""Hostile input to the dashboard: run names that are markdown or HTML, a 50 MB name written before the length cap,
unreadable run rows, a damaged store, and a websocket from a page whose host name is not ours (DNS rebinding).

AppTest checks what each page renders; Chromium checks what a browser does with it (no request leaves 127.0.0.1,
the name shows as typed) and that every page loads without any external request (the icon is served locally).
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import time
from pathlib import Path

import pytest
from ui_helpers import CHROMIUM, ROOT, fresh_app, streamlit_server

from engine.config import RunConfig
from engine.runs.store import Store

HOSTILE = "![x](http://evil.example/x.png) # Heading ```fence <b>bold</b> <img src=http://evil.example/y.png> http://evil.example"
ARTIFACTS = ROOT / "test-artifacts"


def quick() -> RunConfig:
    return RunConfig(model="mlp", hidden=16, depth=1, epochs=1, train_limit=64, batch_size=32, val_fraction=0.05,
                     device="cpu", layer_stats_every=0).validate()


def open_page(at, page: str):
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def markdown_texts(at) -> list[str]:
    return [m.value for m in at.markdown] + [c.value for c in at.caption] + [e.value for e in at.error] + \
           [w.value for w in at.warning] + [i.value for i in at.info]


@pytest.mark.slow
def test_hostile_and_huge_names_render_as_text_on_every_page(trainlens_home):
    store = Store()
    hostile = store.create_run(quick(), name=HOSTILE[:120])
    huge = store.create_run(quick(), name="placeholder")
    store.conn.execute("UPDATE runs SET name=? WHERE run_id=?", ("N" * 50_000_000, huge))  # from before the cap
    store.update_status(hostile, "failed", "bad thing ![](http://evil.example/e.png)")
    for page in ("views/runs.py", "views/train.py", "views/compare.py"):
        started = time.time()
        at = fresh_app()
        if page.endswith("compare.py"):
            at.query_params["runs"] = f"{hostile},{huge}"
        at = open_page(at, page)
        assert time.time() - started < 60
        for text in markdown_texts(at):
            # escaped: no image, link, heading or fence can form from a user's text
            assert "![" not in text and "](http" not in text and "\n#" not in text and "```" not in text, text
    at = open_page(fresh_app(), "views/runs.py")
    table = at.dataframe(key="runs_table").value
    names = dict(zip(table["run_id"], table["name"]))
    assert names[hostile] == HOSTILE[:120] and len(names[huge]) == 1000  # shown as typed; the giant cut


@pytest.mark.slow
def test_unreadable_rows_are_listed_apart_and_can_be_deleted(trainlens_home):
    store = Store()
    good = store.create_run(quick(), name="good")
    bad = store.create_run(quick(), name="bad")
    store.conn.execute("UPDATE runs SET config='{broken', status='running' WHERE run_id=?", (bad,))
    at = open_page(fresh_app(), "views/runs.py")
    assert list(at.dataframe(key="runs_table").value["run_id"]) == [good]
    assert "could not be read" in at.warning[0].value
    apart = [d.value for d in at.dataframe if "problem" in d.value.columns]
    assert len(apart) == 1 and list(apart[0]["run_id"]) == [bad] and "config" in apart[0]["problem"].iloc[0]
    at.button(key="runs_unreadable_delete").click().run()
    assert not at.exception
    assert Store().list_runs().attrs["unreadable"] == [] and Store().find_run(bad) is None
    for page in ("views/compare.py", "views/run_report.py", "views/explain.py"):
        open_page(fresh_app(), page)  # no page crashes on a store that had an unreadable row


@pytest.mark.parametrize("damage", [b"", b"this is not a database" * 100], ids=["empty file", "not sqlite"])
def test_a_damaged_store_gives_one_page_level_error(trainlens_home, damage):
    path = Store().path
    path.write_bytes(damage)
    at = fresh_app()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1 and "damaged" in at.error[0].value and "trainlens" in at.error[0].value
    assert path.read_bytes() == damage


# ---- a real server: the browser and the websocket ------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("hostile_home")
    os.environ["TRAINLENS_HOME"] = str(home)  # the runs are created before the server starts
    try:
        store = Store(home / "trainlens.db")
        run_id = store.create_run(quick(), name=HOSTILE[:120])
        store.update_status(run_id, "failed", "failed at ![](http://evil.example/e.png)")
        labelled = labelled_run(store)
        store.close()
        hostile_lesson(home)
    finally:
        os.environ.pop("TRAINLENS_HOME", None)
    with streamlit_server(home, workers=1) as url:
        yield url, run_id, labelled


def labelled_run(store: Store) -> str:
    """A finished run whose class labels (as a CSV's label column could give) are markup and a right-to-left
    override, with a curve for Compare's legend and an evaluation for the Run report's confusion matrix."""
    from test_hostile_text import HOSTILE_LABELS, evaluation

    from engine.records import report_artifact

    run_id = store.create_run(quick(), name=f"{LINK} <b>bold</b> r")  # (names refuse U+202E; labels may hold it)
    store.log_batch([(run_id, step, 0, "loss", 2.0 / step, float(step)) for step in range(1, 20)])
    store.update_status(run_id, "completed")
    store.put_artifact(run_id, report_artifact("best"), evaluation(HOSTILE_LABELS))
    return run_id


LINK = '<a href="http://evil.example/l">click</a>'


def hostile_lesson(home: Path) -> None:
    from test_hostile_text import hostile_lesson as write

    write(home)


def no_markup_from_text(page) -> None:
    """Nothing a string made: no image or link to evil.example (HTML or SVG, Plotly's ticks and legends
    included), no <b> element holding the hostile text, no text left in right-to-left override."""
    assert page.locator("img[src*='evil.example']").count() == 0
    assert page.locator("a[href*='evil.example']").count() == 0
    found = page.evaluate("""() => ({
        svg_links: [...document.querySelectorAll('svg a')].filter(a => (a.getAttribute('href') ||
                    a.getAttribute('xlink:href') || '').includes('evil')).length,
        bold: [...document.querySelectorAll('b, strong')].filter(b => b.textContent.trim() === 'bold').length,
        overrides: document.body.innerText.includes('\u202e'),
    })""")
    assert found == {"svg_links": 0, "bold": 0, "overrides": False}, found


@contextlib.contextmanager
def watched_page(browser):
    """A page whose every request leaving 127.0.0.1 is noted; fails at the end if there was any."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    external: list[str] = []
    page.on("request", lambda request: external.append(request.url)
            if not request.url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")) else None)
    try:
        yield page
    finally:
        context.close()
    assert external == [], external


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed")
def test_no_page_makes_an_external_request_and_names_show_as_typed(browser, server):
    url, run_id, _ = server
    with watched_page(browser) as page:
        for path in ("", "runs", f"compare?runs={run_id}", f"run_report?run={run_id}", f"explain?run={run_id}"):
            page.goto(f"{url}/{path}", timeout=90_000)
            page.wait_for_selector('[data-testid="stAppViewContainer"]', timeout=90_000)
            page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
                                   timeout=90_000)
            page.wait_for_timeout(1500)
            assert page.locator("img[src*='evil.example']").count() == 0
            assert page.locator("a[href*='evil.example']").count() == 0
        page.goto(f"{url}/runs", timeout=90_000)
        page.get_by_text(HOSTILE[:20]).first.wait_for(state="attached", timeout=90_000)  # as typed, in the table
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "hostile_names_runs.png"), full_page=True)
        icon = page.evaluate("() => (document.querySelector('link[rel~=icon]') || {}).href || ''")
        assert icon.startswith("http://127.0.0.1") or icon.startswith("data:"), icon


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed")
def test_lesson_titles_class_labels_and_names_show_as_text_in_a_browser(browser, server):
    """Issue 22: a lesson title from a file, a CSV's class labels in the confusion matrix and a run's name in
    Compare's legend are shown as the characters typed; an override character is written out as [U+202E]."""
    url, _, labelled = server
    with watched_page(browser) as page:
        for path, shown in (("lessons?lesson=hostile", "<b>bold</b>"), ("lessons", "<b>bold</b>"),
                            (f"run_report?run={labelled}", "abc[U+202E]def"),
                            (f"compare?runs={labelled}", "<b>bold</b> r")):
            page.goto(f"{url}/{path}", timeout=90_000)
            page.get_by_text(shown).first.wait_for(state="attached", timeout=90_000)  # as typed, on the page or in SVG
            page.wait_for_timeout(1500)
            no_markup_from_text(page)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"hostile_{path.split('?')[0]}.png"), full_page=True)
        page.goto(f"{url}/run_report?run={labelled}", timeout=90_000)
        page.locator(".st-key-report_confusion svg .xtick text").first.wait_for(timeout=90_000)
        ticks = page.locator(".st-key-report_confusion svg .xtick text").all_text_contents()
        assert LINK in ticks and "abc[U+202E]def" in ticks, ticks  # the labels, as typed


def _handshake(url: str, host: str, origin: str) -> str:
    """The status line the server answers a websocket upgrade to /_stcore/stream with."""
    port = int(url.rsplit(":", 1)[1])
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET /_stcore/stream HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n"
               "Sec-WebSocket-Protocol: streamlit, PLACEHOLDER_AUTH_TOKEN\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(request.encode())
        return conn.recv(4096).decode(errors="replace").split("\r\n", 1)[0]


@pytest.mark.slow
def test_a_websocket_with_a_foreign_host_header_is_refused(server):
    url, _, _ = server
    port = url.rsplit(":", 1)[1]
    assert " 101 " in _handshake(url, f"127.0.0.1:{port}", f"http://127.0.0.1:{port}")  # our own page: accepted
    assert " 101 " in _handshake(url, f"localhost:{port}", f"http://localhost:{port}")
    # DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1, same origin as far as it knows
    refused = _handshake(url, f"evil.example:{port}", f"http://evil.example:{port}")
    assert " 101 " not in refused and refused.startswith("HTTP/1.1"), refused
