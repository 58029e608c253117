"""The dashboard server's garbage collection: imports frozen out of collections, full collections rate-limited."""

from __future__ import annotations

import gc
import sys
import types

from app.server import memory


def test_imports_are_frozen_once_and_again_only_after_new_imports(monkeypatch):
    monkeypatch.setattr(memory, "_modules_at_freeze", 0)
    frozen_before = gc.get_freeze_count()
    try:
        assert memory.freeze_imports() is True
        frozen = gc.get_freeze_count()
        assert frozen > frozen_before
        assert memory.freeze_imports() is False  # nothing new imported: not again
        monkeypatch.setitem(sys.modules, "trainlens_test_new_module", types.ModuleType("trainlens_test_new_module"))
        assert memory.freeze_imports() is True  # a page imported something: the new objects are frozen too
        # a frozen object is still freed when its last reference goes (only cycles wait for a collection)
        assert memory.freeze_imports() is False
    finally:
        gc.unfreeze()


def test_full_collections_run_at_most_every_few_seconds(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(memory.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(memory, "_last_collect", [0.0])
    collected = []
    monkeypatch.setattr(memory.gc, "collect", lambda *a: collected.append(clock[0]) or 0)
    assert memory.collect_now_and_then() is True
    clock[0] += 1.0
    assert memory.collect_now_and_then() is False
    clock[0] += memory.COLLECT_EVERY_S
    assert memory.collect_now_and_then() is True
    assert collected == [1000.0, 1001.0 + memory.COLLECT_EVERY_S]


def test_a_cycle_of_garbage_is_collected_by_the_rate_limited_collection(monkeypatch):
    import weakref

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: refcounting alone never frees it
    gone = weakref.ref(a)
    del a, b
    monkeypatch.setattr(memory, "_last_collect", [0.0])
    assert memory.collect_now_and_then() is True
    assert gone() is None


def test_streamlits_per_run_collection_is_off_in_both_config_copies():
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for path in (root / "streamlit_config.toml", root / ".streamlit" / "config.toml"):
        assert tomllib.loads(path.read_text())["runner"]["postScriptGC"] is False
