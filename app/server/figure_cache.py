"""Figures shared by every session watching the same view of the same data.

In a class, thirty students watch the same lesson's Compare view. Each live tick used to rebuild the same figures
once per session (reading the new metric rows, smoothing, bands, traces: ~400 ms of server CPU per session and
tick with 8 running runs), which 2 cores cannot do thirty times a second. A figure here is built once per (view,
options, data version) and handed to every session that asks; the data version says what the runs are at, so a new point
(or a coarse history refined) makes a new figure (see `view_version`).

Figures handed out are shared: callers must not modify them (copy with `go.Figure(fig)` first).
TRAINLENS_SHARED_FIGURES=0 turns sharing off (benchmarks/class_load.py measures both).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Hashable

import pandas as pd

from engine import settings

MAX_FIGURES = 256  # a few views x charts x option sets; a figure of 1,000-point lines is ~100 KB


STALE_FACTOR = 3.0  # a live value is served stale for at most this many times its max age (plus 2 s)
_tick = threading.local()  # per script thread: how many stale live values this tick has rebuilt


def start_tick() -> None:
    """Call at the start of a page run or live tick (app.ui.live does): this tick may rebuild one stale value."""
    _tick.refreshed = 0


class FigureCache:
    def __init__(self, max_entries: int = MAX_FIGURES):
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._building: dict[Hashable, threading.Event] = {}
        self._lock = threading.Lock()
        self.hits = self.builds = self.stale = 0

    def get(self, key: Hashable, build: Callable[[], Any], version: Hashable = None, max_age: float = 0.0,
            spread: bool = False) -> Any:
        """The value for `key` at `version`, built by `build()` once even when several sessions ask at the same
        moment. With `max_age`, a value built less than that many seconds ago is served even if the version has
        moved on: live runs change every half second, and thirty sessions ticking out of phase would otherwise
        each see a version of their own (so each build serves a second's worth of sessions). `spread` (a busy
        server): a tick rebuilds at most one stale live value and shows the others as they were."""
        while True:
            with self._lock:
                held = self._entries.get(key)
                age = time.monotonic() - held[1] if held is not None else 0.0
                if held is not None and (held[0] == version or age < max_age):
                    self._entries.move_to_end(key)
                    self.hits += 1
                    return held[2]
                if held is not None and max_age > 0 and age < STALE_FACTOR * max_age + 2.0 and (
                        key in self._building or (spread and getattr(_tick, "refreshed", 0) >= 1)):
                    # A live view whose value just went stale: while one session rebuilds it, the others show the
                    # previous one instead of waiting (the tail of every refresh was a build); and one session
                    # rebuilds at most one value per tick on a busy server, so a view's charts, which all go stale
                    # together, are rebuilt by several sessions' ticks rather than all by one
                    self.stale += 1
                    return held[2]
                if held is not None and max_age > 0:
                    _tick.refreshed = getattr(_tick, "refreshed", 0) + 1
                pending = self._building.get(key)
                if pending is None:
                    pending = self._building[key] = threading.Event()
                    break
            pending.wait(30.0)  # another session is building it: wait and take theirs
        try:
            value = build()
            with self._lock:
                self._entries[key] = (version, time.monotonic(), value)
                self.builds += 1
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
            return value
        finally:
            with self._lock:
                self._building.pop(key, None)
            pending.set()

    def peek(self, key: Hashable, max_age: float) -> Any:
        """The value held for `key` if it was built less than `max_age` seconds ago, else None (builds nothing)."""
        with self._lock:
            held = self._entries.get(key)
            if held is not None and time.monotonic() - held[1] < max_age:
                self.hits += 1
                return held[2]
        return None


def enabled() -> bool:
    return settings.value_or_default("TRAINLENS_SHARED_FIGURES")


def view_version(runs: pd.DataFrame, coarse: dict[str, list[str]], listing: Hashable = None) -> tuple:
    """What a view of `runs` shows, cheaply, from the runs frame alone: each run's step, status, resume time and
    name (or, given `listing`, the version of the whole runs listing those rows come from: app.ui.state.runs_frame's
    fingerprint, which already changes with all of them), and which of its histories the metrics cache still holds
    coarse (refining them changes the picture).

    Reading the metric rows to fingerprint them would cost each session what sharing saves (measured: the metrics
    read was half of a Compare tick). A worker writes a step's rows before reporting the step, and a run's last
    rows before its final status, so a view keyed by these never misses a point for longer than one progress
    update (0.5 s)."""
    refined = tuple(sorted((run_id, tuple(keys)) for run_id, keys in coarse.items()))
    if listing is not None:
        return listing, refined
    columns = [c for c in ("run_id", "step", "status", "queued_at", "name", "group") if c in runs.columns]
    return tuple(map(tuple, runs[columns].astype(str).to_numpy())), refined
