"""The Run report in a real headless Chromium, against a live `streamlit run app/main.py` on 127.0.0.1.

One finished tiny run (trained by real workers on the server's data home): the recipe-check badges in
their colours, the confusion matrix drawn from the stored report, a click on one of its cells listing that
cell's misclassified images, then the LR finder started from the page until its plot shows the suggestions.
A screenshot goes to test-artifacts/run_report.png. The server and every worker are stopped at the end.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ui_helpers import CHROMIUM, ROOT, server_log, streamlit_server

from app.charts import report as rf
from engine.config import RunConfig

pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.browser, pytest.mark.timeout(240),
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed")]

PAGE_LOAD_MS = 90_000  # the first script run loads the dataset (torch) for the thumbnails
ARTIFACTS = ROOT / "test-artifacts"

# visible badges only: a badge with a help tooltip also has a hidden copy in the DOM
BADGES_JS = """() => Array.from(document.querySelectorAll('.stMarkdownBadge')).filter(b => b.checkVisibility()).map(b => {
  const rgb = getComputedStyle(b).color.match(/\\d+/g).map(Number);
  return {text: b.innerText.replace(/^\\S+\\s/, '').trim(), rgb};
})"""
# the centre of confusion cell (true, pred) in page coordinates, from the plot's own axes
CELL_JS = """([t, p]) => {
  const g = document.querySelector('.st-key-report_confusion .js-plotly-plot');
  const xa = g._fullLayout.xaxis, ya = g._fullLayout.yaxis, r = g.getBoundingClientRect();
  return {x: r.left + xa._offset + xa.l2p(p), y: r.top + ya._offset + ya.l2p(t)};
}"""
TRACES_JS = """(key) => {
  const g = document.querySelector(`.st-key-${key} .js-plotly-plot`);
  return g && g._fullData ? g._fullData.map(t => ({name: t.name, x: Array.from(t.x || []), type: t.type,
                                                  z: t.z ? Array.from(t.z, row => Array.from(row)) : null})) : null;
}"""


@pytest.fixture(scope="module")
def served_run(tmp_path_factory):
    """A live server and one finished tiny run on its data home -> (url, home, store, run_id)."""
    home = tmp_path_factory.mktemp("report_browser_home")
    with pytest.MonkeyPatch.context() as mp, streamlit_server(home, workers=2) as url:
        mp.setenv("TRAINLENS_HOME", str(home))
        from engine.runs.runner import RunHandle, Runner
        from engine.runs.store import Store

        store = Store(home / "trainlens.db")
        runner = Runner(store, workers=2)
        config = RunConfig(train_limit=400, epochs=2, layer_stats_every=5, clip="norm", clip_value=1.0)
        run_id = runner.submit(config, name="browser report").run_id
        status = RunHandle(store, run_id).wait(timeout=180)
        assert status == "completed", (store.get_run(run_id)["error"], server_log(home))
        try:
            yield url, home, store, run_id
        finally:
            store.close()


def kind_of_colour(rgb: list[int]) -> str:
    red, green = rgb[:2]
    if max(rgb[:3]) - min(rgb[:3]) < 30:
        return "gray"
    return "green" if green > red else "orange"


def test_report_badges_confusion_click_and_lr_finder(browser, served_run):
    url, home, store, run_id = served_run
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto(f"{url}/run_report?run={run_id}")
        page.get_by_role("heading", name="Recipe checks").wait_for(timeout=PAGE_LOAD_MS)

        # badges: one per stored check, green for pass, orange for warn; overfit-one-batch grey (on request)
        page.locator(".stMarkdownBadge:visible", has_text="Overfit one batch: skipped").wait_for()
        visible = page.evaluate(BADGES_JS)
        shown = {b["text"]: kind_of_colour(b["rgb"]) for b in visible}
        assert len(shown) == len(visible), visible  # each badge once
        checks = store.get_artifact(run_id, "recipe_checks")
        assert len(checks) >= 4
        for check in checks:
            assert shown.get(rf.badge_label(check)) == rf.badge_color(check["status"]), (check["name"], shown)
        assert shown["Overfit one batch: skipped"] == "gray"

        # the confusion matrix is the stored report's (best checkpoint, the first option)
        page.locator(".st-key-report_confusion .js-plotly-plot").wait_for(timeout=PAGE_LOAD_MS)
        report = store.get_artifact(run_id, "report/best")
        traces = page.evaluate(TRACES_JS, "report_confusion")
        assert traces[0]["type"] == "heatmap" and traces[0]["z"] == report["confusion"]

        # a click on a cell (not the default one) lists that cell's misclassified images
        listed = [c for c in rf.confusion_cells(report) if rf.cell_examples(report, c[0], c[1])]
        true, pred, count = listed[1]
        page.locator(".st-key-report_confusion").scroll_into_view_if_needed()
        point = page.evaluate(CELL_JS, [true, pred])
        page.mouse.click(point["x"], point["y"])
        picked = f"true {report['labels'][true]} → predicted {report['labels'][pred]} ({count} images)"
        page.wait_for_function("v => document.querySelector('.st-key-report_cell input')?.value === v", arg=picked)
        outline = page.evaluate("() => document.querySelector('.st-key-report_confusion .js-plotly-plot')"
                                "._fullLayout.shapes.map(s => [s.x0, s.y0])")
        assert outline == [[pred - 0.5, true - 0.5]]
        expected_images = min(24, len(rf.cell_examples(report, true, pred)))
        page.wait_for_function("n => [...document.querySelectorAll('[data-testid=\"stImage\"]')]"
                               ".filter(e => !e.closest('.st-key-features_neighbours')).length === n",
                               arg=expected_images)  # the cell's thumbnails: not the neighbours further down
        assert page.get_by_text(re.compile(rf"^predicted {re.escape(report['labels'][pred])} \(")).count() == expected_images
        # each image links to the Explain view of that validation image (when the dashboard has that page)
        links = page.locator("a", has_text="Explain").filter(has=page.locator(":scope[href*='sample=']"))
        hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
        if hrefs:
            samples = sorted(int(re.search(r"sample=(\d+)", h).group(1)) for h in hrefs)
            assert all(f"run={run_id}" in h for h in hrefs)
            assert samples == sorted(e["index"] for e in rf.cell_examples(report, true, pred)[:expected_images])

        # the LR finder: one click starts the background job; its plot ends with both suggestions marked
        page.get_by_role("button", name="Find a learning rate").click()
        page.wait_for_function(
            f"() => {{ const t = ({TRACES_JS})('report_lr_finder'); return t && t.some(x => x.name.startsWith('valley')); }}",
            timeout=150_000, polling=500)
        result = store.get_artifact(run_id, "lr_find")
        markers = {t["name"]: t["x"][0] for t in page.evaluate(TRACES_JS, "report_lr_finder")[2:]}
        assert markers == {f"{rf.SUGGESTION_TITLES[k]}: lr={s['lr']:.2g}": pytest.approx(s["lr"])
                           for k, s in result["suggestions"].items()}
        page.get_by_role("button", name=re.compile(r"^Start a run with lr=")).wait_for()
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator(".st-key-report_lr_finder").scroll_into_view_if_needed()
        page.locator(".st-key-report_lr_finder").screenshot(path=str(ARTIFACTS / "run_report_lr_finder.png"))

        page.set_viewport_size({"width": 1400, "height": 3400})  # most of the report in one picture
        page.get_by_role("heading", name="Run report").scroll_into_view_if_needed()
        page.wait_for_timeout(1500)  # let plotly re-lay out the charts at the new size
        page.screenshot(path=str(ARTIFACTS / "run_report.png"))
        assert "Traceback" not in server_log(home)
    except Exception:
        print(server_log(home))
        raise
    finally:
        context.close()
