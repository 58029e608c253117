"""Process-wide handles for the dashboard: the store, the runner, the live metrics cache, datasets.

All are `st.cache_resource` (one per server process, thread-safe objects); pages keep only ids and
plain values in `st.session_state`. Torch-heavy imports happen lazily inside the functions that need them.
"""

from __future__ import annotations

import threading
import time

import pandas as pd
import streamlit as st

from engine.runner import Runner
from engine.store import Store

ACTIVE = ("queued", "running")


@st.cache_resource(show_spinner=False)
def get_store() -> Store:
    return Store()


@st.cache_resource(show_spinner=False)
def get_runner() -> Runner:
    return Runner(get_store())


class MetricsCache:
    """Metric rows per run, kept in memory and topped up with only the rows newer than the last seen id.

    Shared by every session of the server: a Compare page with 8 long runs reads a few new rows per
    tick instead of the whole history. A resumed run drops rows past its checkpoint, so a run whose
    `queued_at` changed (resume re-queues it) is reloaded from scratch.
    """

    def __init__(self, store: Store):
        self.store = store
        self._lock = threading.Lock()
        self._frames: dict[str, pd.DataFrame] = {}
        self._last_id: dict[str, int] = {}
        self._version: dict[str, float] = {}

    def get(self, run_ids: list[str], versions: dict[str, float]) -> pd.DataFrame:
        with self._lock:
            for run_id in run_ids:
                if self._version.get(run_id) != versions.get(run_id):
                    self._frames.pop(run_id, None)
                    self._last_id[run_id] = 0
                    self._version[run_id] = versions.get(run_id)
            new = self.store.get_metrics(run_ids, after_id=min(self._last_id.get(r, 0) for r in run_ids)) if run_ids else None
            if new is not None and not new.empty:
                for run_id, rows in new.groupby("run_id", sort=False):
                    rows = rows[rows["id"] > self._last_id.get(run_id, 0)]
                    if rows.empty:
                        continue
                    old = self._frames.get(run_id)
                    self._frames[run_id] = rows if old is None else pd.concat([old, rows], ignore_index=True)
                    self._last_id[run_id] = int(rows["id"].iloc[-1])
            frames = [self._frames[r] for r in run_ids if r in self._frames]
        if not frames:
            return pd.DataFrame(columns=["id", "run_id", "step", "epoch", "key", "value", "wall_time"])
        return pd.concat(frames, ignore_index=True)

    def forget(self, run_id: str) -> None:
        with self._lock:
            for table in (self._frames, self._last_id, self._version):
                table.pop(run_id, None)


@st.cache_resource(show_spinner=False)
def get_metrics_cache() -> MetricsCache:
    return MetricsCache(get_store())


def runs_frame() -> pd.DataFrame:
    """All runs with progress; reaps dead workers first so a killed worker's run shows as interrupted."""
    runner = get_runner()
    _reap_now_and_then(runner)
    return get_store().list_runs(kind="train")


_last_reap = [0.0]


def _reap_now_and_then(runner: Runner) -> None:
    # the workers reap each other; this covers the case where every worker died
    if time.time() - _last_reap[0] > 3.0:
        _last_reap[0] = time.time()
        try:
            runner.reap()
            if not runner.store.list_runs(status=["queued"]).empty and runner.store.live_workers().empty:
                runner.ensure_workers()  # queued work but no worker (e.g. all were killed): start the pool
        except Exception:  # a busy database must not break the page: the next tick retries
            pass


def run_metrics(run_ids: list[str], runs: pd.DataFrame) -> pd.DataFrame:
    versions = {r: float(v) for r, v in zip(runs["run_id"], runs["queued_at"]) if r in set(run_ids)}
    return get_metrics_cache().get(list(run_ids), versions)


@st.cache_resource(show_spinner="Loading the dataset...", max_entries=4)
def get_dataset(name: str, seed: int, val_fraction: float, data_dir: str, limit: int):
    """A loaded DatasetSplit (tensors; a resource, never copied into session state)."""
    from engine.data import load_dataset

    return load_dataset(name, seed=seed, val_fraction=val_fraction, data_dir=data_dir or None, limit=limit)


def format_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
