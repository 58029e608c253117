"""No SQL outside the store: app/ and engine/ reach the run database only through `Store`'s methods, so its schema,
transactions, leases and quarantine rules live in one package (engine/runs/store/). Tests may run SQL (they break
stores on purpose), and catching `sqlite3.DatabaseError` anywhere is fine.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STORE = ROOT / "engine" / "runs" / "store"
SQL_CALLS = {"execute", "executemany", "executescript"}


def _is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def sql_uses(source: str) -> list[tuple[int, str]]:
    """(line, what) for each way `source` runs SQL or reaches a store's connection. A method call on `self` is an
    object's own method (the worker's `execute(run)`), not a cursor's."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            receiver, name = node.func.value, node.func.attr
            if name in SQL_CALLS and not _is_self(receiver):
                found.append((node.lineno, f".{name}("))
            elif name == "connect" and isinstance(receiver, ast.Name) and receiver.id == "sqlite3":
                found.append((node.lineno, "sqlite3.connect("))
        elif isinstance(node, ast.ImportFrom) and node.module == "sqlite3":
            if any(alias.name == "connect" for alias in node.names):
                found.append((node.lineno, "from sqlite3 import connect"))
        elif isinstance(node, ast.Attribute) and node.attr == "conn" and not _is_self(node.value):
            found.append((node.lineno, ".conn (a store's connection)"))
    return found


def test_the_check_sees_each_way_of_running_sql():
    source = ("import sqlite3\nfrom sqlite3 import connect\nstore.conn.execute('SELECT 1')\ncursor.executemany(q, rows)\n"
              "c.executescript(s)\nsqlite3.connect(path)\nself.execute(run)\ntry:\n    pass\n"
              "except sqlite3.DatabaseError:\n    pass\n")
    assert sorted(sql_uses(source)) == [(2, "from sqlite3 import connect"), (3, ".conn (a store's connection)"),
                                        (3, ".execute("), (4, ".executemany("), (5, ".executescript("),
                                        (6, "sqlite3.connect(")]


def test_no_sql_outside_the_store_package():
    files = [path for package in ("app", "engine") for path in sorted((ROOT / package).rglob("*.py"))
             if STORE not in path.parents]
    assert len(files) > 50 and sql_uses((STORE / "runs.py").read_text())  # the check reads real code
    found = [f"{path.relative_to(ROOT)}:{line}: {what}" for path in files for line, what in sql_uses(path.read_text())]
    assert not found, "SQL outside engine/runs/store/ (add a Store method instead):\n" + "\n".join(found)
