"""Live widgets shared by pages: a run's status line (progress, ETA, cancel) and the live curve panel.

`live_fragment` is the one rule for live parts of every page: an `st.fragment` that reruns on its own while any of
its runs is queued or running (only the charts refresh, never the form around them) and settles when they end.
The panel reads only new metric rows.

Refresh intervals adapt to the server's load (app/server/load.py): every tick samples the server process's CPU clock,
and a busy server stretches every interval by the same factor. A laptop with one tab never notices.
TRAINLENS_TICK_LOG=FILE appends one line per tick (time, view, wall ms, CPU ms) for benchmarks.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import streamlit as st

from app.charts.chars import is_char_run
from app.charts.metrics import ChartOptions, metric_chart
from app.charts.series import chart_keys
from app.charts.text import escape_md
from app.server import figure_cache
from app.server.load import LOAD
from app.server.memory import collect_now_and_then
from app.ui.presentation import plotly_chart
from app.ui.state import format_duration, get_runner, run_metrics, runs_frame
from engine import settings
from engine.records import ACTIVE, RunKind, RunStatus

# Material icons render everywhere Streamlit does (emoji need a font that kiosk/projector machines may lack)
STATUS_ICONS = {RunStatus.QUEUED: ":material/schedule:", RunStatus.RUNNING: ":blue[:material/play_circle:]",
                RunStatus.COMPLETED: ":green[:material/check_circle:]",
                RunStatus.STOPPED_EARLY: ":green[:material/stop_circle:]",
                RunStatus.CANCELLED: ":gray[:material/cancel:]", RunStatus.DIVERGED: ":orange[:material/warning:]",
                RunStatus.FAILED: ":red[:material/error:]", RunStatus.INTERRUPTED: ":orange[:material/pause_circle:]"}


def status_text(status: str) -> str:
    return status.replace("_", " ")


def status_label(status: str) -> str:
    """Icon and text of a status, for markdown (not for dataframe cells, which show text only)."""
    return f"{STATUS_ICONS.get(status, '')} {status_text(status)}"


_TICK_LOG = settings.value_or_default("TRAINLENS_TICK_LOG")
_tick_log_lock = threading.Lock()


def _log_tick(key: str, wall_s: float, cpu_s: float) -> None:
    with _tick_log_lock, open(_TICK_LOG, "a") as out:
        out.write(f"{time.time():.3f},{key},{wall_s * 1000:.1f},{cpu_s * 1000:.1f}\n")


def live_fragment(key: str, body: Callable[[pd.DataFrame], None], run_ids: Sequence[str] | None = None,
                  every: float = 1.0) -> None:
    """Draw `body(runs)` as a fragment that redraws itself every `every` seconds while any of `run_ids` (all runs
    when None) is queued or running, and settles once they have all ended.

    `runs` is the runs frame read at each tick. The one rule for every live part of every page: a page whose runs
    have ended draws once and stays still (no refresh traffic for as long as the tab is open)."""
    def active_in(runs: pd.DataFrame) -> bool:
        # two columns as numpy arrays: filtering the wide runs frame first cost ms per tick and session
        status = runs["status"].to_numpy(dtype=object)
        if run_ids is not None:
            status = status[np.isin(runs["run_id"].to_numpy(dtype=object), list(run_ids))]
        return bool(np.isin(status, list(ACTIVE)).any())

    runs_now = runs_frame()
    active = active_in(runs_now)
    stretch = LOAD.stretch()
    # just after Start: a warm worker logs a run's first rows within half a second, which a 1 s tick would show up to
    # a second later; while the server has CPU to spare, look more often until they are in (FIRST_POINTS_S at most)
    eager = active and stretch <= 1.0 and awaiting_first_points(runs_now, run_ids)

    @st.fragment(run_every=(EAGER_EVERY_S if eager else every * stretch) if active else None)
    def fragment() -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        figure_cache.start_tick()
        runs = runs_frame(live_tick=True)
        if active:
            settle_when_done(key, active_in(runs))
            readapt(key, stretch)
            if eager and not awaiting_first_points(runs, run_ids):
                st.rerun()  # the first points are in (or it took too long): the page again, at the usual pace
        body(runs)
        cpu = time.thread_time() - cpu
        if active:
            LOAD.sample(stretch)
        if _TICK_LOG:
            _log_tick(key, time.perf_counter() - wall, cpu)
        wall, cpu = time.perf_counter(), time.thread_time()
        # Streamlit's own collection after each run is off (app/server/memory.py)
        if collect_now_and_then() and _TICK_LOG:
            _log_tick("gc", time.perf_counter() - wall, time.thread_time() - cpu)

    fragment()


FIRST_POINTS_S = 6.0  # how long after its creation a run with no step yet counts as awaiting its first points
EAGER_EVERY_S = 0.25  # the live parts' refresh interval meanwhile (the usual one: 1-2 s, stretched under load)


def awaiting_first_points(runs: pd.DataFrame, run_ids: Sequence[str] | None) -> bool:
    """Whether one of `run_ids` was created moments ago, is queued or running, and has not reported a step yet."""
    if run_ids is None:
        return False
    rows = runs[runs["run_id"].isin(list(run_ids))]
    young = time.time() - rows["created_at"].to_numpy(dtype=float) < FIRST_POINTS_S
    return bool((young & (rows["step"].to_numpy() == 0) & rows["status"].isin(list(ACTIVE)).to_numpy()).any())


def readapt(key: str, built_with: float) -> None:
    """Rerun the page (rebuilding the fragment with a new interval) when the load has moved the stretch factor well
    away from the one this fragment was built with. A whole page run costs several ticks, so each fragment does it
    at most once in 20-30 s (at a random point in that span: sixty tabs must not all rerun in the same second)."""
    now = LOAD.stretch()
    if max(now, built_with) / min(now, built_with) < 1.5:
        return
    flag = f"{key}_readapt_after"
    due = st.session_state.get(flag)
    if due is None:  # the first tick to see the change picks this fragment's moment
        st.session_state[flag] = time.monotonic() + random.uniform(0.0, 10.0)
    elif time.monotonic() >= due:
        st.session_state[flag] = time.monotonic() + 20.0 + random.uniform(0.0, 10.0)
        st.rerun()


def settle_when_done(key: str, active_now: bool) -> None:
    """Call first thing in a live fragment: once its runs have ended, rerun the whole page so the fragment is
    rebuilt without `run_every` and stops redrawing every second for as long as the tab stays open.

    Waits for a second tick that still sees them ended, so the tick that first saw the end has drawn the
    final points (a worker writes its last rows before it marks the run finished)."""
    flag = f"{key}_ended_ticks"
    if active_now:
        st.session_state[flag] = 0
        return
    st.session_state[flag] = st.session_state.get(flag, 0) + 1
    if st.session_state[flag] >= 2:
        st.session_state[flag] = 0
        st.rerun()


def run_status_row(run: pd.Series, key: str) -> None:
    """Name, status, progress bar with ETA, and a cancel button for one run."""
    # the button column holds "Cancel" whole at 1024 px (at 1/9 of the row it was cut to "C…")
    name_col, bar_col, button_col = st.columns([3, 4, 2], vertical_alignment="center")
    name_col.markdown(f"**{escape_md(run['name'])}**  \n{status_label(run['status'])}")
    progress = float(run["progress"] or 0.0)
    if run["status"] == RunStatus.RUNNING and run.get("kind") == RunKind.SCRIPT:
        text = f"step {int(run['step'])} · trained by its own script"  # a script's length is its own: no ETA
    elif run["status"] == RunStatus.RUNNING and not run["total_steps"]:
        text = "starting: loading the data and building the model"
    elif run["status"] == RunStatus.RUNNING:
        eta = f", ETA {format_duration(run['eta_s'])}" if not pd.isna(run["eta_s"]) else ""
        text = f"step {int(run['step'])}/{int(run['total_steps'])} · epoch {int(run['epoch']) + 1}{eta}"
    elif run["status"] == RunStatus.QUEUED:
        text = "waiting for a free worker"
    else:
        text = f"{int(run['step'])} steps in {format_duration(run['duration_s'])}"
    if run["status"] == RunStatus.RUNNING and run.get("kind") == RunKind.SCRIPT:
        bar_col.caption(text)  # no bar: how long a script trains is known to the script alone
    else:
        bar_col.progress(min(1.0, max(0.0, progress)), text=text)
    if run["status"] in ACTIVE:
        if button_col.button("Cancel", key=f"{key}_cancel_{run['run_id']}", help="stop this run after its current step"):
            try:
                get_runner().cancel(run["run_id"])
                st.toast(f"Cancel requested for {escape_md(run['name'])}")
            except (PermissionError, ValueError) as exc:  # another's run (class mode), a script that opted out of
                st.error(escape_md(str(exc)), icon=":material/block:")  # cancels: the engine refuses, the page says why
    # an ended run's error says why (a cancel by the class's time limit carries one too)
    if run["status"] not in ACTIVE and isinstance(run["error"], str) and run["error"]:
        st.caption(f":red[{escape_md(run['error'])}]")


def live_runs_panel(run_ids: list[str], key: str) -> None:
    """Status rows and loss/accuracy curves of `run_ids`, refreshed live while any of them trains."""
    def panel(runs: pd.DataFrame) -> None:
        selected = runs[runs["run_id"].isin(run_ids)]
        if selected.empty:
            st.info("These runs were deleted.")
            return
        for _, run in selected.iterrows():
            run_status_row(run, key)
        metrics = run_metrics(list(selected["run_id"]), runs, chart_keys(["loss", "val_acc"], "step"))
        if metrics.empty:
            st.caption("The first points appear as soon as a worker takes the run.")
            return
        left, right = st.columns(2)
        loss = metric_chart(metrics, selected, "loss", ChartOptions(smoothing=0.6)).figure
        # a character model's accuracy is its next character's: named so, not like an image classifier's
        chars_only = all(is_char_run(run) for _, run in selected.iterrows())
        labels = {"val_acc": "next-character accuracy (validation)"} if chars_only else None
        accuracy = metric_chart(metrics, selected, "val_acc", ChartOptions(x_axis="epoch", labels=labels)).figure
        plotly_chart(loss, key=f"{key}_loss", container=left)
        plotly_chart(accuracy, key=f"{key}_acc", container=right)

    live_fragment(key, panel, run_ids)
