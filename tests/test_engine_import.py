"""The engine never imports streamlit (the workers and the CLI import it), Captum stays inside the explain
package, the shared vocabulary (engine.records) and the dataset registry (engine.datasets) import neither torch
nor streamlit, and the explain package's face imports nothing. Checked in a fresh interpreter, where sys.modules
shows what an import really pulled in.

The import graph, read from the source (every import, at the top or inside a function): no circle, the engine
never imports the app, and no engine module imports from a floor above its own (ENGINE_FLOORS).
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


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_engine_spine_imports_neither_streamlit_nor_captum():
    modules = _modules_after_import("import " + ", ".join(SPINE))
    assert set(SPINE) <= modules  # the check ran on the real imports
    assert not {m for m in modules if m == "streamlit" or m.startswith("streamlit.")}
    assert not {m for m in modules if m == "captum" or m.startswith("captum.")}


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_import_engine_and_the_cli_stay_cheap():
    # `python -m engine --help` and bad arguments must not pay for torch or pandas
    modules = _modules_after_import("import engine, engine.config, engine.cli")
    assert "engine.cli" in modules
    assert not {"torch", "pandas", "streamlit"} & modules


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_the_shared_vocabulary_and_the_dataset_registry_are_torch_free():
    # every page imports them: knowing what "interrupted" means must not cost torch's seconds
    modules = _modules_after_import("import engine.records, engine.datasets, engine.config")
    assert {"engine.records", "engine.datasets"} <= modules
    assert not {"torch", "numpy", "pandas", "streamlit"} & modules


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_importing_the_explain_package_costs_no_torch():
    # the package face registers nothing: explain() finds the token explainer itself when it meets token ids
    modules = _modules_after_import("import engine.explain")
    assert "engine.explain" in modules
    assert not {"torch", "captum", "engine.explain.text", "engine.explain.methods"} & modules


def _import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its source (top level or inside functions)."""
    import ast

    root = Path(PROJECT)
    files = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
             for package in ("engine", "app", "trainlens") for p in (root / package).rglob("*.py")}
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


def test_the_script_client_sits_above_the_engine_and_nothing_imports_it():
    # trainlens/ (what users' scripts import) writes through the engine's store; neither the engine nor the app
    # may depend on it, so it can change for scripts without touching either
    graph = _import_graph()
    assert "trainlens._run" in graph and "engine.runs.store" in graph["trainlens._run"]
    assert not {(m, t) for m, targets in graph.items() if not m.startswith("trainlens") for t in targets
                if t.startswith("trainlens")}


# The engine's floors, lowest first. A module imports only from its own floor or the floors below (at the top or
# inside a function: the AST shows both), so each floor can be read and tested without the ones above it. Every
# engine module must be placed here: a new one is put on its floor on purpose.
ENGINE_FLOORS: list[tuple[str, ...]] = [
    # ground: torch-free vocabulary every layer shares (run statuses, metric keys and artifact names, the dataset
    # registry, paths, the run config and the syntax of its transfer fields, class-mode actors, the sanity check's
    # verdict, the TRAINLENS_* settings, reading small files, uploaded datasets, the stratified split of labels) and
    # the package face
    ("engine", "engine.records", "engine.datasets", "engine.paths", "engine.config", "engine.transfer_spec",
     "engine.classroom", "engine.sanity_check", "engine.settings", "engine.files", "engine.uploads", "engine.split"),
    # text as data (corpus, readers, vocabulary, the text models) and characters (corpora, models, sampling): sources
    # that engine.data loads, never its users
    ("engine.text", "engine.chars"),
    # the data the loop eats, and the diagnostics it runs on a model (evaluation, recipe checks, layer statistics)
    ("engine.data", "engine.diagnostics"),
    # the loop and its collaborators (tasks: what a run learns; char_runs: a character run's checkpoint as a
    # writer; a run started from another: transfer, adapters); race and lessons describe runs to launch and read
    # back results through a runner and a store they are handed, so they need nothing above
    ("engine.train", "engine.models", "engine.optim", "engine.grads", "engine.checkpoints", "engine.sinks",
     "engine.stopping", "engine.validation", "engine.transfer", "engine.adapters", "engine.race", "engine.lessons",
     "engine.lesson_answer", "engine.lesson_parts", "engine.tasks", "engine.char_runs"),
    # explanations: of a trained run's model, rebuilt from its checkpoint (engine.checkpoints.load_run_model), so
    # explain/ sits above the loop rather than beside data/ and text/
    ("engine.explain",),
    # running runs: the store, the runner and the workers, which call the loop (engine.runs.jobs -> train)
    ("engine.runs",),
    # the command line over all of it
    ("engine.cli", "engine.__main__"),
]


def _floor_of(module: str) -> int | None:
    # the most specific name wins: "engine" is the ground floor's package face, "engine.text.vocab" is text/'s
    matches = [(len(name), index) for index, names in enumerate(ENGINE_FLOORS) for name in names
               if module == name or (name != "engine" and module.startswith(name + "."))]
    return max(matches)[1] if matches else None


def test_every_engine_module_has_a_floor():
    graph = _import_graph()
    assert not sorted(m for m in graph if m.startswith("engine") and _floor_of(m) is None)


def test_no_engine_module_imports_from_a_floor_above_its_own():
    graph = _import_graph()
    upward = sorted(f"{module} (floor {_floor_of(module)}) -> {target} (floor {_floor_of(target)})"
                    for module, targets in graph.items() if module.startswith("engine")
                    for target in targets if _floor_of(target) > _floor_of(module))
    assert not upward, "imports up a floor:\n" + "\n".join(upward)


def test_the_config_and_the_text_package_never_reach_into_engine_data():
    # the dataset registry they need is on the ground floor (engine.datasets)
    graph = _import_graph()
    assert not {(m, t) for m, targets in graph.items() if m == "engine.config" or m.startswith("engine.text")
                for t in targets if t.startswith("engine.data.")}
