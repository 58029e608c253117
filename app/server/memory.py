"""Keep the server's garbage collections cheap: what imports built is frozen out of them, and full collections
run every few seconds, not after every script run.

Streamlit runs a full `gc.collect()` after every script run, fragment ticks included (`runner.postScriptGC`), so a
session's cyclic garbage cannot pile up. A full collection walks every object the collector tracks, and the
modules the dashboard imports (torch, pandas, pyarrow, plotly, streamlit, the engine) hold about 350,000 of them:
100-300 ms per collection on this 2-core machine. With a class's sixty tabs ticking, those collections were about
a third of the server's CPU (py-spy on `benchmarks/class_load.py`).

Modules, classes and functions live as long as the process, so `freeze_imports` moves them into the collector's
permanent generation (`gc.freeze`): every later collection walks only what sessions built since. It runs again
whenever a page has imported new modules (the Explain page's captum, say), at most a handful of times a process.
Freezing never stops an object being freed when its last reference goes; only cyclic garbage alive at the moment
of a freeze is kept, and that happens a few times per process, not per tick.

Even then a collection walks every object the sessions hold (cached figures, metric frames, session state), so
streamlit_config.toml turns Streamlit's per-run collection off (`runner.postScriptGC = false`) and
`collect_now_and_then`, called at the end of page runs and live ticks, runs one full collection for the whole
server at most every COLLECT_EVERY_S seconds: the same bound on cyclic garbage, a fraction of the CPU.
"""

from __future__ import annotations

import gc
import sys
import threading
import time

_lock = threading.Lock()
_modules_at_freeze = 0


def freeze_imports() -> bool:
    """Freeze everything alive now if modules were imported since the last freeze; True when it froze."""
    global _modules_at_freeze
    if len(sys.modules) <= _modules_at_freeze:  # the common case: one length read, no lock
        return False
    with _lock:
        if len(sys.modules) <= _modules_at_freeze:
            return False
        gc.collect()  # the garbage of the imports themselves is collected, not frozen
        gc.freeze()
        _modules_at_freeze = len(sys.modules)
        return True


COLLECT_EVERY_S = 5.0
_last_collect = [0.0]
_collect_lock = threading.Lock()


def collect_now_and_then() -> bool:
    """One full collection if none ran in the last COLLECT_EVERY_S seconds (on any session's thread); True when
    this call ran it. A session finding another one collecting goes on without waiting."""
    if time.monotonic() - _last_collect[0] < COLLECT_EVERY_S or not _collect_lock.acquire(blocking=False):
        return False
    try:
        if time.monotonic() - _last_collect[0] < COLLECT_EVERY_S:
            return False
        gc.collect()
        _last_collect[0] = time.monotonic()  # from the end: a slow collection never runs back to back
        return True
    finally:
        _collect_lock.release()
