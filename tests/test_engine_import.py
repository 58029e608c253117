"""The engine never imports streamlit (workers, the CLI and Ray tasks import it), and Captum stays inside the
explain module. Checked in a fresh interpreter, where sys.modules shows what an import really pulled in.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = str(Path(__file__).resolve().parent.parent)
SPINE = ["engine", "engine.config", "engine.models", "engine.optim", "engine.train", "engine.checkpoints",
         "engine.runs.store", "engine.runs.worker", "engine.runs.jobs", "engine.runs.runner", "engine.cli"]


def _modules_after_import(statement: str) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.timeout(180)
def test_the_engine_spine_imports_neither_streamlit_nor_captum():
    modules = _modules_after_import("import " + ", ".join(SPINE))
    assert set(SPINE) <= modules  # the check ran on the real imports
    assert not {m for m in modules if m == "streamlit" or m.startswith("streamlit.")}
    assert not {m for m in modules if m == "captum" or m.startswith("captum.")}


@pytest.mark.timeout(60)
def test_import_engine_and_the_cli_stay_cheap():
    # `python -m engine --help` and bad arguments must not pay for torch or pandas
    modules = _modules_after_import("import engine, engine.config, engine.cli")
    assert "engine.cli" in modules
    assert not {"torch", "pandas", "streamlit"} & modules
