"""Live widgets shared by pages: a run's status line (progress, ETA, cancel) and the live curve panel.

The panel is an `st.fragment` that reruns on its own every second while any of its runs is queued or
running, so only the charts refresh, never the form around them; it reads only new metric rows.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import figures
from app.series import chart_keys
from app.state import ACTIVE, format_duration, get_runner, run_metrics, runs_frame

# Material icons render everywhere Streamlit does (emoji need a font that kiosk/projector machines may lack)
STATUS_ICONS = {"queued": ":material/schedule:", "running": ":blue[:material/play_circle:]",
                "completed": ":green[:material/check_circle:]", "stopped_early": ":green[:material/stop_circle:]",
                "cancelled": ":gray[:material/cancel:]", "diverged": ":orange[:material/warning:]",
                "failed": ":red[:material/error:]", "interrupted": ":orange[:material/pause_circle:]"}


def status_text(status: str) -> str:
    return status.replace("_", " ")


def status_label(status: str) -> str:
    """Icon and text of a status, for markdown (not for dataframe cells, which show text only)."""
    return f"{STATUS_ICONS.get(status, '')} {status_text(status)}"


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
    name_col.markdown(f"**{run['name']}**  \n{status_label(run['status'])}")
    progress = float(run["progress"] or 0.0)
    if run["status"] == "running" and not run["total_steps"]:
        text = "starting: loading the data and building the model"
    elif run["status"] == "running":
        eta = f", ETA {format_duration(run['eta_s'])}" if not pd.isna(run["eta_s"]) else ""
        text = f"step {int(run['step'])}/{int(run['total_steps'])} · epoch {int(run['epoch']) + 1}{eta}"
    elif run["status"] == "queued":
        text = "waiting for a free worker"
    else:
        text = f"{int(run['step'])} steps in {format_duration(run['duration_s'])}"
    bar_col.progress(min(1.0, max(0.0, progress)), text=text)
    if run["status"] in ACTIVE:
        if button_col.button("Cancel", key=f"{key}_cancel_{run['run_id']}", help="stop this run after its current step"):
            get_runner().cancel(run["run_id"])
            st.toast(f"Cancel requested for {run['name']}")
    if run["status"] in ("failed", "diverged", "interrupted") and isinstance(run["error"], str) and run["error"]:
        st.caption(f":red[{run['error']}]")


def live_runs_panel(run_ids: list[str], key: str) -> None:
    """Status rows and loss/accuracy curves of `run_ids`, refreshed live while any of them trains."""
    runs = runs_frame()
    active = runs[runs["run_id"].isin(run_ids)]["status"].isin(ACTIVE).any()

    @st.fragment(run_every=1.0 if active else None)
    def panel() -> None:
        runs = runs_frame()
        selected = runs[runs["run_id"].isin(run_ids)]
        if active:
            settle_when_done(key, selected["status"].isin(ACTIVE).any())
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
        left.plotly_chart(figures.metric_figure(metrics, selected, "loss", smoothing=0.6), key=f"{key}_loss")
        right.plotly_chart(figures.metric_figure(metrics, selected, "val_acc", x_axis="epoch"), key=f"{key}_acc")

    panel()
