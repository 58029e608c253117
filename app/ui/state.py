"""Process-wide handles for the dashboard: the store, the runner (its worker pool warmed at start), the live metrics
cache, datasets.

All are `st.cache_resource` (one per server process, thread-safe objects); pages keep only ids and
plain values in `st.session_state`. Torch-heavy imports happen lazily inside the functions that need them.
The metrics cache itself lives in app/server/metrics_cache.py (no streamlit: tests use it directly).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

import pandas as pd
import streamlit as st

from app.charts.text import escape_md
from app.server import figure_cache
from app.server.figure_cache import FigureCache
from app.server.load import LOAD
from app.server.metrics_cache import MetricsCache
from engine import settings
from engine.records import TRAINED
from engine.runs.runner import ActingRunner, Runner
from engine.runs.store import Store


@st.cache_resource(show_spinner=False)
def get_store() -> Store:
    return Store()


def store_problem() -> str | None:
    """None when the run store can be read; else the one-paragraph message (markdown-escaped) that says which file
    is wrong and what to do. Opening writes nothing, so a store on a full disk still reads (and pages work)."""
    from engine.paths import db_path
    from engine.runs.store.errors import StoreUnavailable, describe

    try:
        get_store().check_readable()
        return None
    except StoreUnavailable as exc:
        problem = exc
    except sqlite3.DatabaseError as exc:
        problem = describe(exc, db_path())
    text = str(problem)
    return escape_md(text[:1].upper() + text[1:])


@st.cache_resource(show_spinner=False)
def back_up_store_once() -> threading.Thread:
    """Copy the store to TRAINLENS_HOME/backups once per server process, from a thread (SQLite's online backup:
    consistent while workers write). A damaged-store message then names a copy to restore."""
    def back_up() -> None:
        try:
            get_store().backup()
        except Exception:  # noqa: BLE001 - a failed backup must not take a page down; the next start tries again
            logging.getLogger("trainlens").exception("could not back up the run store")

    thread = threading.Thread(target=back_up, name="store-backup", daemon=True)
    thread.start()
    return thread


class PoolWarmup:
    """Fills the runner's worker pool from a background thread, once per server process.

    A worker imports torch (seconds) before it can take a run; started once the server's first page is drawn (see
    app/main.py), the pool is warm by the time someone clicks Start, instead of only then. The thread first starts
    the worker template (engine.runs.template: torch imported once, each worker a fork of it in milliseconds, also
    after the pool idled out) and waits for it, then fills the pool. It never blocks the page: `warm_pool`
    counts GPUs (importing torch in this process) and spawns the worker processes. A failure is kept as a readable
    message for the page to show. Workers exit after TRAINLENS_WORKER_IDLE_S (default 30 min) without work; a later
    Start forks them again from the template, which lives as long as the server. TRAINLENS_WARM_POOL=0 turns the
    warm-up and the template off (the tests' AppTest pages): workers then start as fresh interpreters on demand.
    """

    def __init__(self, runner: Runner):
        self.runner = runner
        self.started: int | None = None  # worker processes started, once done
        self.error: str | None = None
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="warm-worker-pool", daemon=True)
        self._lock = threading.Lock()

    @staticmethod
    def enabled() -> bool:
        return settings.value_or_default("TRAINLENS_WARM_POOL")

    def start(self) -> PoolWarmup:
        """Start the warm-up thread (once: later calls do nothing)."""
        with self._lock:
            if self._thread.ident is None:
                self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.started = self.runner.warm_pool()
        except Exception as exc:  # shown on the page; a Start queues its run and retries the pool
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.done.set()


_warmup: list[PoolWarmup] = []  # the warm-up of the current runner (one per server process)


@st.cache_resource(show_spinner=False)
def shared_runner() -> Runner:
    """The server's one runner, with its worker pool's warm-up (see PoolWarmup; app/main.py starts it after the
    first page). Pages act through `get_runner()`, which binds it to the session's user."""
    runner = Runner(get_store())
    _warmup[:] = [PoolWarmup(runner)] if PoolWarmup.enabled() else []
    return runner


def get_runner() -> ActingRunner:
    """The runner acting for this session's user (app.ui.identity): every cancel, resume, delete and submission is
    checked by the engine against that user's rights and the class limits, whatever the page shows."""
    from app.ui.identity import session_actor

    # its changes are this session's own: its views read them exactly for a while (note_own_change)
    return shared_runner().as_actor(session_actor(), on_change=note_own_change)


def pool_warmup() -> PoolWarmup | None:
    """The warm-up of the runner's worker pool (None when turned off or no runner yet)."""
    return _warmup[0] if _warmup else None


def start_pool_warmup() -> None:
    """Start warming the worker pool in the background, once per server process (later calls do nothing)."""
    try:
        shared_runner()
    except Exception:  # no store: the page that needs it says why
        return
    warmup = pool_warmup()
    if warmup is not None:
        warmup.start()


@st.cache_resource(show_spinner=False)
def get_metrics_cache() -> MetricsCache:
    return MetricsCache(get_store())


@st.cache_resource(show_spinner=False)
def shared_figures() -> FigureCache:
    return FigureCache()


LIVE_MAX_AGE_S = 1.0  # how stale a shared view of runs still training may be (their points arrive every 0.5 s)


def shared_figure(key: tuple, build, version=None, live: bool = False):
    """`build()`'s result for `key` at `version`, shared by every session asking (see app/server/figure_cache.py): while
    `live` (runs still training), one built less than LIVE_MAX_AGE_S ago is reused even if a newer point arrived.
    Built per call when TRAINLENS_SHARED_FIGURES=0."""
    if not figure_cache.enabled():
        return build()
    # a loaded server refreshes every view less often (app.server.load.LoadMeter), and rebuilds shared views as rarely
    stretch = LOAD.stretch()
    return shared_figures().get(key, build, version, LIVE_MAX_AGE_S * stretch if live else 0.0,
                                spread=stretch > 1.0)


OWN_CHANGE_S = 5.0  # how long after a user's own change (cancel, resume, delete) their views read it exactly


def note_own_change() -> None:
    """This session changes runs (get_runner's runner calls it before every change): for a few seconds its views
    read the store exactly, never a shared listing or table built before the click (see runs_frame)."""
    st.session_state["_own_change_at"] = time.monotonic()


def own_change_recent() -> bool:
    return time.monotonic() - st.session_state.get("_own_change_at", -1e9) < OWN_CHANGE_S


def runs_frame(live_tick: bool = False) -> pd.DataFrame:
    """All runs with progress; reaps dead workers first so a killed worker's run shows as interrupted.

    `live_tick`: a live fragment's refresh, which may take a listing another session read up to LIVE_MAX_AGE_S
    (times the load's stretch) ago without asking the store anything: with a class of thirty watching runs that
    report progress twice a second, the listing would otherwise be read and parsed on almost every tick."""
    runner = shared_runner()
    _reap_now_and_then(runner)
    if live_tick and figure_cache.enabled() and not own_change_recent():
        held = shared_figures().peek(("runs frame",), LIVE_MAX_AGE_S * LOAD.stretch())
        if held is not None:
            return held
    store = get_store()
    # one listing for every session while nothing changed (a fingerprint query costs far less than parsing every
    # run's config); shared: callers must not modify the frame in place
    fingerprint = store.runs_fingerprint()

    def listing() -> pd.DataFrame:
        frame = store.list_runs(kind=TRAINED)  # training runs and scripts' runs, not helper jobs
        frame.attrs["fingerprint"] = fingerprint  # views derived from it are shared under the same version
        return frame

    return shared_figure(("runs frame",), listing, fingerprint)


_last_reap = [0.0]
_reap_lock = threading.Lock()  # sessions run on their own threads: one of them recovers, the others go on


def _reap_now_and_then(runner: Runner) -> None:
    # throttled: every live fragment of every session calls runs_frame()
    if not _reap_lock.acquire(blocking=False):
        return
    try:
        if time.time() - _last_reap[0] > 3.0:
            _last_reap[0] = time.time()
            runner.recover()
    except (sqlite3.OperationalError, OSError, ValueError):
        # a busy database, or a setting the runner refuses (engine.settings; main.py already said which):
        # the page must still draw; the next tick retries
        pass
    finally:
        _reap_lock.release()


def _versions(run_ids: list[str], runs: pd.DataFrame) -> dict[str, float]:
    wanted = set(run_ids)
    return {r: float(v) for r, v in zip(runs["run_id"], runs["queued_at"]) if r in wanted}


def run_metrics(run_ids: list[str], runs: pd.DataFrame, keys: list[str] | None = None, *,
                exact: bool | None = None) -> pd.DataFrame:
    """Metric rows of the runs, read incrementally through the shared cache.

    With `keys` (a chart): those keys only, long histories at the cache's coarse level (at most
    MetricsCache.MAX_ROWS rows per run and key: evenly spaced steps, the extremes, every new row). Without: every
    key, every row (counts over a run's steps). `exact` overrides either way. See app/server/metrics_cache.py.
    """
    return get_metrics_cache().get(list(run_ids), _versions(run_ids, runs), keys, exact=exact)


def run_metric_keys(run_ids: list[str], runs: pd.DataFrame) -> set[str]:
    return get_metrics_cache().keys(list(run_ids), _versions(run_ids, runs))


def run_split(config):
    """A run's DatasetSplit exactly as its training loads it (the engine's per-process cache: shared tensors, read
    them only; never copied into session state). ValueError (DatasetUnavailable...) carries a readable message."""
    from engine.data.loading import cached_run_split

    with st.spinner("Loading the dataset..."):
        return cached_run_split(config)


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
