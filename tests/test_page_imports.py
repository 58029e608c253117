"""The pages a class meets first draw without the heavy libraries they do not need: in a fresh interpreter (as a
fresh server is), Lessons, Runs and Compare never import torch, captum or scikit-learn, and the Train page (the
page "/" opens) draws its Start button and ends its own run without importing torch: its preview's data loads once the
browser has drawn the page (a fragment's first tick, checked in a real browser by tests/test_browser.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.ui_helpers import ROOT

pytestmark = pytest.mark.slow  # each case starts a fresh interpreter

SCRIPT = r"""
import json, sys
sys.path.insert(0, {root!r})
import streamlit as st
from streamlit.testing.v1 import AppTest

seen = {{}}
button = st.button
def spy(label, *args, **kwargs):  # when the Start button is drawn, is torch already imported?
    if kwargs.get("key") == "start":
        seen["torch_at_start_button"] = "torch" in sys.modules
    return button(label, *args, **kwargs)
st.button = spy

app = AppTest.from_file({main!r}, default_timeout=120)
if {page!r}:
    app.switch_page({page!r})
app.run()
heavy = [name for name in ("torch", "captum", "sklearn", "scipy") if name in sys.modules]
print(json.dumps({{"exceptions": [e.value for e in app.exception], "heavy": heavy, **seen,
                  "buttons": [b.label for b in app.button], "captions": [c.value for c in app.caption]}}))
"""


def page_imports(page: str, home) -> dict:
    code = SCRIPT.format(root=str(ROOT), main=str(ROOT / "app" / "main.py"), page=page)
    env = {"TRAINLENS_HOME": str(home), "TRAINLENS_WARM_POOL": "0", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=str(ROOT),
                         env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("page", ["views/lessons.py", "views/runs.py", "views/compare.py"])
def test_pages_without_training_import_no_torch_captum_or_scikit_learn(page, tmp_path):
    result = page_imports(page, tmp_path)
    assert result["exceptions"] == []
    assert result["heavy"] == []


def test_the_train_page_draws_start_and_leaves_torch_and_its_preview_to_after_the_browser_drew_it(tmp_path):
    result = page_imports("", tmp_path)  # "/" opens Train
    assert result["exceptions"] == []
    assert "Start run" in result["buttons"]
    assert result["torch_at_start_button"] is False
    assert result["heavy"] == []  # not even after Start: that import held the GIL while the browser fetched the form
    assert "Loading the preview..." in result["captions"]  # its place is held, so that Start does not jump
