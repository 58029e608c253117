"""Process-wide handles for the dashboard: the store, the runner, the live metrics cache, datasets.

All are `st.cache_resource` (one per server process, thread-safe objects); pages keep only ids and
plain values in `st.session_state`. Torch-heavy imports happen lazily inside the functions that need them.
"""

from __future__ import annotations

import threading
import time

import pandas as pd
import streamlit as st

from engine.runs.runner import Runner
from engine.runs.store import Store

ACTIVE = ("queued", "running")


@st.cache_resource(show_spinner=False)
def get_store() -> Store:
    return Store()


@st.cache_resource(show_spinner=False)
def get_runner() -> Runner:
    return Runner(get_store())


class MetricsCache:
    """Metric rows per run and key, kept in memory and topped up with only the rows newer than the last seen id.

    Shared by every session of the server: a Compare page with 8 long runs reads a few new rows per tick
    instead of the whole history, and each chart gets only the keys it draws (one loss chart over 8 runs
    of 50,000 steps handles 400k rows, not the 2M+ rows of every key). A resumed run drops rows past its
    checkpoint, so a run whose `queued_at` changed (resume re-queues it) is reloaded from scratch.
    """

    COLUMNS = ["id", "run_id", "step", "epoch", "key", "value", "wall_time"]

    def __init__(self, store: Store):
        self.store = store
        self._lock = threading.Lock()
        self._chunks: dict[str, dict[str, list[pd.DataFrame]]] = {}  # run_id -> key -> frames, merged lazily
        self._last_id: dict[str, int] = {}
        self._version: dict[str, float | None] = {}
        self._read_at: dict[str, float] = {}

    def get(self, run_ids: list[str], versions: dict[str, float], keys: list[str] | None = None) -> pd.DataFrame:
        """Rows of `run_ids` (only `keys` when given), long format, grouped by run then key, steps ascending."""
        with self._lock:
            self._refresh(run_ids, versions)
            frames = []
            for run_id in run_ids:
                by_key = self._chunks.get(run_id, {})
                for key in (keys if keys is not None else list(by_key)):
                    chunks = by_key.get(key)
                    if chunks:
                        if len(chunks) > 1:  # merge once, so the next tick concatenates one frame per key
                            chunks[:] = [pd.concat(chunks, ignore_index=True)]
                        frames.append(chunks[0])
        if not frames:
            return pd.DataFrame(columns=self.COLUMNS)
        return pd.concat(frames, ignore_index=True)

    def keys(self, run_ids: list[str], versions: dict[str, float]) -> set[str]:
        with self._lock:
            self._refresh(run_ids, versions)
            return {key for run_id in run_ids for key in self._chunks.get(run_id, {})}

    REREAD_S = 0.3  # the charts of one page refresh share one read per run

    def _refresh(self, run_ids: list[str], versions: dict[str, float]) -> None:
        now = time.time()
        for run_id in run_ids:
            if run_id not in self._version or self._version[run_id] != versions.get(run_id):
                self._chunks.pop(run_id, None)
                self._last_id[run_id] = 0
                self._version[run_id] = versions.get(run_id)
                self._read_at[run_id] = 0.0
            if now - self._read_at.get(run_id, 0.0) < self.REREAD_S:
                continue
            self._read_at[run_id] = now
            # one indexed query per run from its own last id: runs written side by side have very different
            # last ids, and reading from the smallest one would re-read the other runs' history every tick
            rows = self.store.get_metrics(run_id, after_id=self._last_id[run_id])
            if rows.empty:
                continue
            by_key = self._chunks.setdefault(run_id, {})
            for key, part in rows.groupby("key", sort=False):
                by_key.setdefault(str(key), []).append(part)
            self._last_id[run_id] = int(rows["id"].iloc[-1])

    def forget(self, run_id: str) -> None:
        with self._lock:
            for table in (self._chunks, self._last_id, self._version, self._read_at):
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
    # throttled: every live fragment of every session calls runs_frame()
    if time.time() - _last_reap[0] > 3.0:
        _last_reap[0] = time.time()
        try:
            runner.recover()
        except Exception:  # a busy database must not break the page: the next tick retries
            pass


def _versions(run_ids: list[str], runs: pd.DataFrame) -> dict[str, float]:
    wanted = set(run_ids)
    return {r: float(v) for r, v in zip(runs["run_id"], runs["queued_at"]) if r in wanted}


def run_metrics(run_ids: list[str], runs: pd.DataFrame, keys: list[str] | None = None) -> pd.DataFrame:
    """Metric rows of the runs (only `keys` when given), read incrementally through the shared cache."""
    return get_metrics_cache().get(list(run_ids), _versions(run_ids, runs), keys)


def run_metric_keys(run_ids: list[str], runs: pd.DataFrame) -> set[str]:
    return get_metrics_cache().keys(list(run_ids), _versions(run_ids, runs))


@st.cache_resource(show_spinner="Loading the dataset...", max_entries=4)
def get_dataset(name: str, seed: int, val_fraction: float, data_dir: str, limit: int):
    """A loaded DatasetSplit (tensors; a resource, never copied into session state)."""
    from engine.data.loading import load_dataset

    return load_dataset(name, seed=seed, val_fraction=val_fraction, data_dir=data_dir or None, limit=limit)


def format_duration(seconds: float | None) -> str:
    """'42s', '3m 05s', '1h 02m'; '-' when unknown (None or NaN)."""
    if seconds is None or pd.isna(seconds):
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
