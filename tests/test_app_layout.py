"""The dashboard's folders and their rules, checked folder by folder instead of file by file.

app/ is built in floors, lowest first: charts < server < ui < page parts (train, explain, report, lessons) < views <
main.py. A module imports its own folder or a lower floor only (engine imports are always allowed), so no import
circle can form between folders. What a folder may load is checked in a fresh interpreter, where sys.modules shows what an
import really pulled in: charts/ (pure figure builders) loads neither streamlit nor torch, server/ (process-wide
state) no streamlit, and no torch either (the Explain page's job board runs the torch work it is handed).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app"
FLOORS = {"charts": 0, "server": 1, "ui": 2, "train": 3, "explain": 3, "report": 3, "lessons": 3, "views": 4, "main": 5}
FOLDERS = [name for name in FLOORS if name != "main"]
MUST_NOT_LOAD = {"charts": {"streamlit", "torch"}, "server": {"streamlit", "torch"}}


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _folder(module: str) -> str | None:
    """'app.charts.metrics' -> 'charts', 'app.main' -> 'main'; None outside app/ (and for the package app itself)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "app" and len(parts) > 1 else None


def _imported(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside functions, as absolute names (relative imports resolved)."""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            # `from app.ui import state` imports app.ui.state; a name (`from app.ui.state import get_store`) only
            # lengthens a dotted name whose folder is the same
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return names


def _app_files() -> list[Path]:
    return sorted(p for p in APP.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_sits_in_a_known_folder_that_says_what_lives_there():
    stray = [str(p.relative_to(ROOT)) for p in _app_files()
             if p.relative_to(APP).parts not in {("main.py",), ("__init__.py",)}
             and not (len(p.relative_to(APP).parts) == 2 and p.relative_to(APP).parts[0] in FOLDERS)]
    assert not stray, f"outside the known folders of app/ ({', '.join(FOLDERS)}): {stray}"
    assert {p.name for p in APP.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(FOLDERS)
    for name in FOLDERS:
        init = APP / name / "__init__.py"
        assert init.exists() and ast.get_docstring(ast.parse(init.read_text())), f"app/{name}/ needs a docstring"


def test_a_module_imports_its_own_folder_or_a_lower_floor_only():
    wrong, edges = [], set()
    for path in _app_files():
        folder = _folder(_module_name(path))
        if folder is None:  # app/__init__.py
            assert not {m for m in _imported(path) if m.startswith("app.")}, "app/__init__.py imports nothing"
            continue
        for target in sorted(_imported(path)):
            to = _folder(target)
            if to is None or to == folder:
                continue
            edges.add((folder, to))
            if to not in FLOORS or FLOORS[to] >= FLOORS[folder]:
                wrong.append(f"{path.relative_to(ROOT)} imports {target} ({to} is not below {folder})")
    assert not wrong, "\n".join(wrong)
    assert ("views", "ui") in edges and ("ui", "server") in edges  # the walk saw the real imports
    # no circle between folders (the floors forbid one; said on its own, with the circle named, if one appears)
    graph = {name: {to for frm, to in edges if frm == name} for name in FLOORS}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import circle between folders: " + " -> ".join(path[path.index(name):] + [name]))
        if name in done:
            return
        for to in sorted(graph.get(name, ())):
            visit(to, path + [name])
        done.add(name)

    for name in FLOORS:
        visit(name, [])


def _top_level_modules_after(modules: list[str]) -> set[str]:
    code = "import importlib, json, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules) + \
        "print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert set(modules) <= loaded  # the check ran on the real imports
    return {name.split(".")[0] for name in loaded}


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("folder", sorted(MUST_NOT_LOAD))
def test_a_folder_loads_only_what_its_rule_allows(folder):
    modules = [_module_name(p) for p in sorted((APP / folder).glob("*.py"))]
    assert len(modules) > 1
    loaded = MUST_NOT_LOAD[folder] & _top_level_modules_after(modules)
    if loaded:  # name the modules that pull them in
        culprits = {m: sorted(MUST_NOT_LOAD[folder] & _top_level_modules_after([m])) for m in modules}
        raise AssertionError(f"app/{folder}/ loads {sorted(loaded)}: "
                             + ", ".join(f"{m} ({', '.join(c)})" for m, c in culprits.items() if c))
