"""A character-level run in a real headless Chromium: choose `names` on the Train page, start a GRU, and watch
what it writes appear live beside its validation loss while it trains (step 0 gibberish first, then a newer
evaluation on top), with the counting baselines drawn on the loss; then cancel it from the page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from ui_helpers import server_log, streamlit_server

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("chars_browser_home")
    with streamlit_server(home, workers=1) as url:
        yield url, home


def test_samples_appear_live_while_a_names_run_trains(server, browser):
    url, home = server
    expect.set_options(timeout=90_000)  # the first visit imports torch; the worker starts on a busy machine
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    try:
        page.set_default_timeout(90_000)
        page.goto(url)  # the Train page is the default page
        page.get_by_role("button", name="Start run").wait_for()
        page.get_by_test_id("stSelectbox").filter(has_text="dataset").click()
        page.keyboard.type("names")
        page.keyboard.press("Enter")
        expect(page.get_by_text("Loss to beat (nats per character")).to_be_visible()
        cap = page.locator(".st-key-cfg_train_limit input")  # 800 names: an epoch (and its samples) every 25 steps
        cap.fill("800")
        cap.press("Enter")
        page.wait_for_function("() => document.querySelector('.st-key-cfg_train_limit input').value === '800'")
        page.get_by_role("tab", name="Stopping & averaging").click()
        epochs = page.locator(".st-key-cfg_epochs input")
        # far longer than the test watches (it is cancelled at the end): 40 epochs took 19 s on an idle machine once
        # workers came warm, and a finished run shows only its newest evaluations, not step 0
        epochs.fill("400")
        epochs.press("Enter")
        page.wait_for_function("() => document.querySelector('.st-key-cfg_epochs input').value === '400'")
        page.get_by_role("button", name="Start run").click()

        samples = page.get_by_test_id("stCaptionContainer").filter(has_text=re.compile(r"^step \d[\d,]* · "))

        def newest_step() -> int:
            return int(re.match(r"step ([\d,]+)", samples.first.inner_text()).group(1).replace(",", ""))

        try:
            expect(samples.first).to_be_visible()  # the first evaluation's samples (a warm worker: within seconds)
            seen = newest_step()
            # they grow while it trains, newest first (a warm worker evaluates every 25 steps, every half second
            # on an idle machine: step 0 may already have scrolled out of the newest three when the page draws)
            page.wait_for_function("""(seen) => { const c = Array.from(document.querySelectorAll(
                '[data-testid="stCaptionContainer"]')).map(e => e.innerText).find(t => /^step [\\d,]+ · /.test(t));
                return c && parseInt(c.slice(5).replace(/,/g, '')) > seen; }""", arg=seen, timeout=180_000)
        except AssertionError:
            print(server_log(home))
            raise
        steps = [int(re.match(r"step ([\d,]+)", t).group(1).replace(",", "")) for t in samples.all_inner_texts()]
        assert steps == sorted(steps, reverse=True) and steps[0] > seen, steps  # newest first
        assert page.get_by_text(re.compile(r"^step \d+/\d+ · epoch \d+")).first.is_visible()
        written = page.get_by_test_id("stCode").first.inner_text().split()
        assert len(written) >= 10 and all(re.fullmatch(r"[a-z∅]+", s) for s in written), written
        lines = page.evaluate("""() => Array.from(document.querySelectorAll(
            '[class*="st-key-train_samples_val_loss_"] .js-plotly-plot')).map(g => (g.layout.shapes || []).length)""")
        assert lines and lines[0] == 3, lines  # uniform, unigram and bigram reference lines
        page.get_by_role("button", name="Cancel").first.click()
        expect(page.get_by_text(re.compile(r"cancelled"))).to_be_visible()
    finally:
        page.close()
