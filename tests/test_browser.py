"""The dashboard's critical paths in a real headless Chromium, against a live `streamlit run` server.

One server for the module (127.0.0.1, a free port, TRAINLENS_WORKERS=3, its own TRAINLENS_HOME),
stopped at the end with every worker it started. Curves are read from the plotly graph divs
(`_fullData`, the arrays plotly.js actually draws), polled with explicit waits, never sleeps.

- issue 2: set a small training cap in the form, Start run, the loss curve appears and grows, progress shows.
- issue 3: a sgd/momentum/adam race on mnist5k, three live curves grow on the Compare page; a screenshot
  goes to test-artifacts/race.png.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect
from ui_helpers import CHROMIUM, ROOT, server_log, streamlit_server

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180),
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed")]

PAGE_LOAD_MS = 90_000  # the first script run imports torch and loads the dataset
FIRST_POINT_MS = 90_000  # three workers import torch at once on two cores
GROWTH_MS = 120_000  # from Start to every curve having grown (worker start-up included)
ARTIFACTS = ROOT / "test-artifacts"

# [{name, n}] for the data lines of the plotly chart with Streamlit key `key` (null until it is drawn):
# the faint raw series behind a smoothed line (opacity 0.25) and band edges are left out.
CURVES_JS = """(key) => {
  // a fragment rerun can keep the previous element a moment (data-stale): read the current one
  const graph = document.querySelector(`.st-key-${key}:not([data-stale="true"]) .js-plotly-plot`)
             || document.querySelector(`.st-key-${key} .js-plotly-plot`);
  if (!graph || !graph._fullData) return null;
  return graph._fullData
    .filter(t => t.mode === 'lines' && t.opacity >= 0.5 && t.hoverinfo !== 'skip')
    .map(t => ({name: t.name, n: Array.from(t.y || []).filter(Number.isFinite).length}));
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("browser_home")
    with streamlit_server(home, workers=3) as url:
        yield url, home


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield page
    finally:
        context.close()


def curves(page, key: str) -> list[dict] | None:
    return page.evaluate(CURVES_JS, key)


def wait_for_curves(page, key: str, predicate_js: str, arg, timeout_ms: int) -> list[dict]:
    """Wait until `predicate_js(curves, arg)` holds for the chart `key`; returns the curves then."""
    page.wait_for_function(
        f"([key, arg]) => {{ const c = ({CURVES_JS})(key); return c !== null && ({predicate_js})(c, arg); }}",
        arg=[key, arg], timeout=timeout_ms, polling=250,
    )
    return curves(page, key)


# Growth seen by the browser itself, per curve: the first non-empty length of each curve is remembered in
# `window`, and the wait ends once `count` curves are each longer than when first seen. Curves start
# a second or two apart, so comparing all of them against one snapshot could miss a run that already ended.
GROWN_JS = """([key, count]) => {
  const c = (""" + CURVES_JS + """)(key);
  if (c === null) return false;
  const first = (window.__firstSeen = window.__firstSeen || {})[key] = (window.__firstSeen[key] || {});
  for (const t of c) if (t.n > 0 && !(t.name in first)) first[t.name] = t.n;
  const grown = c.filter(t => t.name in first && t.n > first[t.name]);
  return grown.length >= count ? {first: first, now: c} : false;
}"""


def wait_for_growth(page, key: str, count: int, timeout_ms: int) -> dict:
    """Wait until `count` curves of chart `key` have grown since first drawn; {first: {name: n}, now: curves}."""
    return page.wait_for_function(GROWN_JS, arg=[key, count], timeout=timeout_ms, polling=250).json_value()


def open_dashboard(page, url: str) -> None:
    page.goto(url)
    page.get_by_role("button", name="Start run").wait_for(timeout=PAGE_LOAD_MS)


def set_number(page, key: str, value: int, tab: str | None = None) -> None:
    """Type into a config number input (in its form tab) and commit it with Enter."""
    if tab:
        page.get_by_role("tab", name=tab).click()
    field = page.locator(f".st-key-{key} input")
    field.fill(str(value))
    field.press("Enter")
    page.wait_for_function("([k, v]) => document.querySelector(`.st-key-${k} input`).value === v",
                           arg=[key, str(value)])


def follow_link(page, name: str, url_pattern: str) -> None:
    """Click a page link until the URL shows its page. A click that lands while the page is being re-rendered
    (the live panel refreshes every second) was once lost in ~10 runs; a user would click again, so do we."""
    link = page.get_by_role("link", name=name)
    for attempt in range(3):
        link.click()
        try:
            expect(page).to_have_url(re.compile(url_pattern), timeout=15_000)
            return
        except AssertionError:
            print(f"click {attempt + 1} on the {name!r} link did not navigate (url {page.url})")
    expect(page).to_have_url(re.compile(url_pattern), timeout=1_000)


def preview_line(page):
    """The Train page's "Before you launch" lines (parameters, training examples, steps), as one paragraph."""
    return page.locator('[data-testid="stMarkdownContainer"] p', has_text=re.compile(r"training examples\s+[\d,]+ steps"))


def small_training(page, cap: int, epochs: int) -> None:
    """Cap the training set and epochs through the form; waits until the preview shows the new size."""
    set_number(page, "cfg_train_limit", cap)
    expect(preview_line(page)).to_contain_text(f"{cap:,} training examples", timeout=30_000)
    steps_for_3 = int(re.search(r"([\d,]+) steps", preview_line(page).inner_text()).group(1).replace(",", ""))
    set_number(page, "cfg_epochs", epochs, tab="Stopping & averaging")
    expect(preview_line(page)).to_contain_text(f"{steps_for_3 // 3 * epochs:,} steps", timeout=30_000)


def expect_text(locator, text: str, timeout_ms: int = 30_000) -> None:
    expect(locator).to_have_text(text, timeout=timeout_ms)


def test_single_run_loss_curve_appears_and_grows(page, server):
    url, home = server
    open_dashboard(page, url)
    small_training(page, cap=3000, epochs=8)  # 94 steps x 8 epochs: long enough to watch it grow
    page.get_by_role("button", name="Start run").click()

    # the live panel: the run's row with its progress bar, then the loss curve, drawn and growing
    page.get_by_role("progressbar").first.wait_for(timeout=FIRST_POINT_MS)
    try:
        seen = wait_for_growth(page, "train_live_loss", 1, GROWTH_MS)
    except Exception:
        print(server_log(home))
        raise
    (name,) = [c["name"] for c in seen["now"]]  # one run: the default convnet + adam, named after them
    assert "adam" in name
    assert 0 < seen["first"][name] < seen["now"][0]["n"] <= 752
    # the progress bar ends full, with the run's summary, and the curve holds every step
    page.get_by_text(re.compile(r"^752 steps in ")).wait_for(timeout=90_000)
    assert page.get_by_role("progressbar").first.get_attribute("aria-valuenow") == "100"
    final = wait_for_curves(page, "train_live_loss", "(c) => c[0].n === 752", None, 30_000)
    assert final == [{"name": name, "n": 752}]


def test_optimizer_race_shows_three_growing_curves_in_compare(page, server):
    url, home = server
    open_dashboard(page, url)
    small_training(page, cap=3000, epochs=10)  # 940 steps per run (under the 1,000 drawn points per curve)
    page.locator(".st-key-launch_mode button", has_text="Race").click()
    optimizers = page.locator(".st-key-race_optimizers")
    for name in ("sgd", "momentum", "adam"):  # the default race; mnist5k is the default dataset
        expect(optimizers.get_by_text(name, exact=True)).to_be_visible()
    page.get_by_role("tab", name="Data").click()
    expect(page.get_by_role("combobox", name="dataset")).to_have_value("mnist5k")
    page.get_by_text("3 runs: sgd, momentum, adam").wait_for()
    page.get_by_role("button", name="Start race").click()

    try:
        follow_link(page, "Open these runs in Compare", r"/compare\?runs=")
        page.get_by_role("heading", name="Compare runs").wait_for(timeout=PAGE_LOAD_MS)
        seen = wait_for_growth(page, "chart_0", 3, GROWTH_MS)
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "race_failure.png"), full_page=True)
        print("curves:", curves(page, "chart_0"), "\nurl:", page.url, "\n", server_log(home))
        raise
    assert sorted(c["name"] for c in seen["now"]) == ["adam", "momentum", "sgd"]
    assert all(0 < seen["first"][c["name"]] < c["n"] <= 940 for c in seen["now"]), seen
    assert "runs=" in page.url  # the view is bookmarkable

    # the race ends: full curves and one validation point per epoch; no run is labelled with a stale status
    wait_for_curves(page, "chart_0", "(c) => c.length === 3 && c.every(t => t.n === 940)", None, 120_000)
    wait_for_curves(page, "chart_1", "(c) => c.length === 3 && c.every(t => t.n === 10)", None, 30_000)
    expect(page.locator(".st-key-compare_runs")).not_to_contain_text("queued")

    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1400, "height": 2400})  # every chart and the final metrics table
    page.screenshot(path=str(ARTIFACTS / "race.png"), full_page=True)
    assert (ARTIFACTS / "race.png").stat().st_size > 10_000
