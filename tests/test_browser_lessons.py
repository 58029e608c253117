"""One lesson end to end in a real headless Chromium with software rendering (--disable-gpu: no GPU WebGL, as on
classroom PCs and kiosks), in projector mode: open the Lessons page, click "Run this lesson", watch the live charts,
read the computed answer; the grouped band of the step-level loss chart is drawn (its fill path is in the page, not
only in the CSV). Screenshots of every page in projector mode at 1024x768 and 1920x1080 go to
test-artifacts/presentation/.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect
from ui_helpers import CHROMIUM, ROOT, streamlit_server

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240),
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed")]

ARTIFACTS = ROOT / "test-artifacts" / "presentation"
SIZES = ((1024, 768), (1920, 1080))
LOAD_MS = 90_000
ANSWER_MS = 150_000  # two workers import torch, then six small runs

# the band of chart `key`: the SVG fill paths plotly drew (software WebGL would draw none for a scattergl fill)
FILLS_JS = """(key) => {
  const root = document.querySelector(`.st-key-${key}`);
  if (!root) return 0;
  return Array.from(root.querySelectorAll('path.js-fill')).filter(p => (p.getAttribute('d') || '').length > 20).length;
}"""
# the font size of the y axis' tick labels, as drawn
TICK_PX_JS = """(key) => {
  const tick = document.querySelector(`.st-key-${key} .ytick text`);
  return tick ? parseFloat(getComputedStyle(tick).fontSize) : 0;
}"""


NOT_RUNNING_JS = """() => !document.querySelector('[data-testid="stStatusWidget"]')"""


def settle(page, charts: bool = False, wait_run: bool = True) -> None:
    """Wait until the page has drawn its title, finished its script run and, with `charts`, drawn a chart."""
    page.locator("h1").first.wait_for(timeout=LOAD_MS)
    if charts:
        page.locator(".js-plotly-plot").first.wait_for(state="attached", timeout=LOAD_MS)
    if wait_run:
        page.wait_for_function(NOT_RUNNING_JS, timeout=LOAD_MS)
    page.wait_for_timeout(800 if wait_run else 3000)


def shoot(page, name: str) -> None:
    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(400)
        page.screenshot(path=str(ARTIFACTS / f"{name}-{width}x{height}.png"))


def test_a_lesson_from_click_to_answer_in_projector_mode(browser, tmp_path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with streamlit_server(tmp_path / "home", workers=2) as url:
        page = browser.new_page(viewport={"width": 1024, "height": 768})
        page.goto(f"{url}/lessons?present=1", timeout=LOAD_MS)
        settle(page)
        shoot(page, "lessons-gallery")
        page.locator(".st-key-run_momentum button").first.click()  # (a help tooltip can wrap it twice)
        expect(page.get_by_role("heading", name="Momentum: plain SGD, momentum and Nesterov")).to_be_visible(
            timeout=LOAD_MS)
        answer = page.get_by_text("highest final validation accuracy (mean of 2 seeds)")
        expect(answer).to_be_visible(timeout=ANSWER_MS)
        assert "lesson=momentum" in page.url and "present=1" in page.url
        expect(page.get_by_text("holds").first).to_be_visible()
        # the step-level loss chart of the lesson groups the two seeds of each optimizer: three bands, drawn
        page.wait_for_function(f"() => ({FILLS_JS})('lesson_chart_0') >= 3", timeout=30_000)
        assert page.evaluate(TICK_PX_JS, "lesson_chart_0") >= 16  # readable from the back of the room
        shoot(page, "lesson-momentum")
        lesson_url = page.url
        # (the Train page is the one "/" opens)
        for name, path, charts in (("compare", "compare", True), ("runs", "runs", False), ("train", "", True),
                                   ("run_report", "run_report", True), ("explain", "explain", False)):
            page.goto(f"{url}/{path}?present=1", timeout=LOAD_MS)
            settle(page, charts, wait_run=name != "explain")  # Explain keeps computing attributions for a while
            shoot(page, name)
        page.goto(lesson_url, timeout=LOAD_MS)  # a shared lesson link shows the same launch and its answer
        expect(page.get_by_text("highest final validation accuracy (mean of 2 seeds)")).to_be_visible(timeout=LOAD_MS)
