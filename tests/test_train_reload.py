"""The Train page's "Launched from this page" panel comes from the URL, so a reload (a new session) keeps it, on top
of the page where Start's result is seen without scrolling."""

from __future__ import annotations

import pytest
from ui_helpers import fresh_app

from engine.config import RunConfig
from engine.runs.store import Store

# slow: the Train page recovers the worker pool for the queued run (it starts a worker)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def test_a_reload_keeps_the_launched_panel(trainlens_home, monkeypatch):
    # no worker for the queued run: the pages' reaper would start a pool when its 3 s throttle has run out (it did
    # or did not, by the order the tests ran in)
    monkeypatch.setenv("TRAINLENS_WORKERS", "0")
    run_id = Store().create_run(RunConfig(train_limit=100, epochs=1), name="launched earlier")  # queued: no worker
    at = fresh_app()
    at.query_params["launched"] = f"{run_id},not-a-run"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.subheader[0].value == "Launched from this page"  # the first subheader: above the form's sections
    assert "launched earlier" in " ".join(m.value for m in at.markdown)
    plain = fresh_app()
    plain.run()
    assert "Launched from this page" not in [s.value for s in plain.subheader]
