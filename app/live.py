"""Live widgets shared by pages: a run's status line (progress, ETA, cancel) and the live curve panel.

`live_fragment` is the one rule for live parts of every page: an `st.fragment` that reruns on its own while any of
its runs is queued or running (only the charts refresh, never the form around them) and settles when they end.
The panel reads only new metric rows.
"""

from __future__ import annotations

from typing import Callable, Sequence

import pandas as pd
import streamlit as st

from app import figures
from app.presentation import plotly_chart
from app.series import chart_keys
from app.state import format_duration, get_runner, run_metrics, runs_frame
from app.text import escape_md
from engine.records import ACTIVE, UNSUCCESSFUL, RunStatus

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


def live_fragment(key: str, body: Callable[[pd.DataFrame], None], run_ids: Sequence[str] | None = None,
                  every: float = 1.0) -> None:
    """Draw `body(runs)` as a fragment that redraws itself every `every` seconds while any of `run_ids` (all runs
    when None) is queued or running, and settles once they have all ended.

    `runs` is the runs frame read at each tick. The one rule for every live part of every page: a page whose runs
    have ended draws once and stays still (no refresh traffic for as long as the tab is open)."""
    def active_in(runs: pd.DataFrame) -> bool:
        chosen = runs if run_ids is None else runs[runs["run_id"].isin(list(run_ids))]
        return bool(chosen["status"].isin(ACTIVE).any())

    active = active_in(runs_frame())

    @st.fragment(run_every=every if active else None)
    def fragment() -> None:
        runs = runs_frame()
        if active:
            settle_when_done(key, active_in(runs))
        body(runs)

    fragment()


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
    name_col, bar_col, button_col = st.columns([3, 5, 1], vertical_alignment="center")
    name_col.markdown(f"**{escape_md(run['name'])}**  \n{status_label(run['status'])}")
    progress = float(run["progress"] or 0.0)
    if run["status"] == RunStatus.RUNNING and not run["total_steps"]:
        text = "starting: loading the data and building the model"
    elif run["status"] == RunStatus.RUNNING:
        eta = f", ETA {format_duration(run['eta_s'])}" if not pd.isna(run["eta_s"]) else ""
        text = f"step {int(run['step'])}/{int(run['total_steps'])} · epoch {int(run['epoch']) + 1}{eta}"
    elif run["status"] == RunStatus.QUEUED:
        text = "waiting for a free worker"
    else:
        text = f"{int(run['step'])} steps in {format_duration(run['duration_s'])}"
    bar_col.progress(min(1.0, max(0.0, progress)), text=text)
    if run["status"] in ACTIVE:
        if button_col.button("Cancel", key=f"{key}_cancel_{run['run_id']}", help="stop this run after its current step"):
            get_runner().cancel(run["run_id"])
            st.toast(f"Cancel requested for {escape_md(run['name'])}")
    if run["status"] in UNSUCCESSFUL and isinstance(run["error"], str) and run["error"]:
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
        loss = figures.metric_figure(metrics, selected, "loss", figures.ChartOptions(smoothing=0.6))
        accuracy = figures.metric_figure(metrics, selected, "val_acc", figures.ChartOptions(x_axis="epoch"))
        plotly_chart(loss, key=f"{key}_loss", container=left)
        plotly_chart(accuracy, key=f"{key}_acc", container=right)

    live_fragment(key, panel, run_ids)
