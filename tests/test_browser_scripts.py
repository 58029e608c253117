"""A script's run live in a real headless Chromium (issue 24), against a live `streamlit run app/main.py`: a
training script started beside the dashboard (same data home) shows its growing loss curve on Compare, and the
Cancel button of its Run report stops the script (trainlens.RunCancelled at its next log), which the page then
shows as cancelled. The server and the script are stopped at the end.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import engine_env
from ui_helpers import CHROMIUM, ROOT, server_log, streamlit_server

pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.browser, pytest.mark.timeout(240),
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed")]

SCRIPT = """
    import time
    import trainlens

    run = trainlens.init(name="live script", config={"lr": 0.05})
    print(run.run_id, flush=True)
    step = 0
    while step < 100_000:  # until cancelled from the dashboard
        run.log({"loss": 2.0 / (1 + step * 0.05)}, step=step)
        step += 1
        time.sleep(0.05)
"""
# the most points the script's line has in any copy of the chart (a live fragment may briefly hold two)
POINTS_JS = """(key) => Math.max(0, ...Array.from(document.querySelectorAll(`.st-key-${key} .js-plotly-plot`)).map(g => {
  const line = (g._fullData || []).find(t => t.name === 'live script' && t.mode === 'lines' && (t.opacity ?? 1) >= 0.5);
  return line ? Array.from(line.x || []).length : 0;
}))"""


def test_a_script_trains_live_on_compare_and_is_cancelled_from_its_run_report(browser, trainlens_home):
    trainlens_home.mkdir(parents=True, exist_ok=True)
    (trainlens_home / "train.py").write_text(textwrap.dedent(SCRIPT))
    with streamlit_server(trainlens_home, workers=0) as url:
        script = subprocess.Popen([sys.executable, str(trainlens_home / "train.py")], cwd=trainlens_home,
                                  env=engine_env(trainlens_home), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(60_000)
        try:
            run_id = script.stdout.readline().strip()
            assert run_id, script.stderr.read()
            page.goto(f"{url}/compare?runs={run_id}")
            page.wait_for_function(f"() => ({POINTS_JS})('chart_0') > 0")
            first = page.evaluate(POINTS_JS, "chart_0")
            page.wait_for_function(f"() => ({POINTS_JS})('chart_0') > {first}")  # it grows while the script trains

            page.goto(f"{url}/run_report?run={run_id}")
            cancel = page.locator(f".st-key-report_cancel_{run_id} button:visible").first  # a fragment may hold two
            cancel.wait_for()
            cancel.click()
            assert script.wait(timeout=60) == 1  # RunCancelled ended it, with its traceback
            assert "trainlens._errors.RunCancelled" in script.stderr.read()
            # the status row ("live script" and its status under it) turns to cancelled
            page.locator("[data-testid='stMarkdownContainer']:visible", has_text="live script").filter(
                has_text="cancelled").first.wait_for()
            page.screenshot(path=str(ROOT / "test-artifacts" / "script_run_cancelled.png"), full_page=True)
        except Exception:
            print(server_log(trainlens_home))
            raise
        finally:
            context.close()
            if script.poll() is None:
                script.kill()
