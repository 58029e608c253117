"""The engine never imports streamlit (the workers and the CLI import it), Captum stays inside the explain
package, and the shared vocabulary (engine.records) and the dataset registry import neither torch nor streamlit. Checked in a fresh interpreter, where sys.modules shows what an import really pulled in.
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


@pytest.mark.timeout(60)
def test_the_shared_vocabulary_and_the_dataset_registry_are_torch_free():
    # every page imports them: knowing what "interrupted" means must not cost torch's seconds
    modules = _modules_after_import("import engine.records, engine.data.registry, engine.config")
    assert {"engine.records", "engine.data.registry"} <= modules
    assert not {"torch", "numpy", "pandas", "streamlit"} & modules


def _import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its source (top level or inside functions)."""
    import ast

    root = Path(PROJECT)
    files = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
             for package in ("engine", "app") for p in (root / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            targets |= {name for name in names if name in files and name != module}
        graph[module] = targets
    return graph


def test_the_project_has_no_import_circle():
    graph = _import_graph()
    assert "engine.train" in graph and "app.ui.state" in graph
    # a package's __init__ importing its own modules is a face, not a circle: only module-to-module edges count
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                circle = path[path.index(target):] + [target]
                raise AssertionError("import circle: " + " -> ".join(circle))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_engine_never_imports_the_app():
    graph = _import_graph()
    assert not {(m, t) for m, targets in graph.items() if m.startswith("engine") for t in targets
                if t.startswith("app")}
