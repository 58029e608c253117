"""Figures shared by every session watching the same view of the same data.

In a class, thirty students watch the same lesson's Compare view. Each live tick used to rebuild the same figures
once per session (smoothing, bands, traces: ~125-300 ms of server CPU per session and tick), which 2 cores cannot
do thirty times a second. A figure here is built once per (view, options, data version) and handed to every
session that asks; the data version is a fingerprint of the metric rows the figure is built from, so a new point
(or a coarse history refined) makes a new figure and nothing stale is ever shown.

Figures handed out are shared: callers must not modify them (copy with `go.Figure(fig)` first).
TRAINLENS_SHARED_FIGURES=0 turns sharing off (benchmarks/class_load.py measures both).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable

import pandas as pd

MAX_FIGURES = 256  # a few views x charts x option sets; a figure of 1,000-point lines is ~100 KB


class FigureCache:
    def __init__(self, max_entries: int = MAX_FIGURES):
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._building: dict[Hashable, threading.Event] = {}
        self._lock = threading.Lock()
        self.hits = self.builds = 0

    def get(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """The value for `key`, built by `build()` once even when several sessions ask at the same moment."""
        while True:
            with self._lock:
                if key in self._entries:
                    self._entries.move_to_end(key)
                    self.hits += 1
                    return self._entries[key]
                pending = self._building.get(key)
                if pending is None:
                    pending = self._building[key] = threading.Event()
                    break
            pending.wait(30.0)  # another session is building it: wait and take theirs
        try:
            value = build()
            with self._lock:
                self._entries[key] = value
                self.builds += 1
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
            return value
        finally:
            with self._lock:
                self._building.pop(key, None)
            pending.set()


def enabled() -> bool:
    return os.environ.get("TRAINLENS_SHARED_FIGURES", "1").strip().lower() not in ("0", "false", "no", "off")


def data_version(metrics: pd.DataFrame) -> tuple:
    """A fingerprint of metric rows: their count and row ids (new rows, rewinds and refined coarse reads all change
    it). Cheap: a sum over at most a few thousand ids per run and key."""
    if metrics.empty:
        return (0,)
    if "id" in metrics.columns:
        ids = metrics["id"].to_numpy()
        return (len(metrics), int(ids.max()), int(ids.sum()))
    return (len(metrics), float(pd.util.hash_pandas_object(metrics, index=False).sum()))


def runs_version(runs: pd.DataFrame) -> tuple:
    """What of the runs frame a figure shows (names, statuses, groups, configs in legends)."""
    columns = [c for c in ("run_id", "name", "status", "group") if c in runs.columns]
    return tuple(map(tuple, runs[columns].astype(str).to_numpy())) + (tuple(sorted(runs.columns)),)
