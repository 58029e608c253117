"""The Run report of a script's run (kind `script`: trained by the user's own script through the `trainlens`
client, or imported from TensorBoard logs): who ran it, its config as the script gave it, a live chart of every
key it logs, the histograms and texts it logged, and the model it handed to Explain.

The engine's sections (recipe checks, evaluation, layer statistics, LR finder, overfit check) need what only an
engine run has (its dataset, model and checkpoints, and a worker to re-run them): the page says so in one line
instead of showing empty or broken sections.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.charts import script_run as sr
from app.charts.metrics import ChartOptions, metric_chart
from app.charts.series import chart_keys
from app.charts.text import escape_md
from app.ui.live import live_fragment, run_status_row
from app.ui.presentation import plotly_chart
from app.ui.state import format_duration, run_metric_keys, run_metrics
from engine.records import (ACTIVE, LOGGED_MODEL, SCRIPT_HISTOGRAM_PREFIX, SCRIPT_TEXT_PREFIX, RunRecord,
                            is_epoch_level)
from engine.runs.store import Store

DEFAULT_CHARTS = 6  # keys charted before the user picks: a screen's worth, loss and accuracy first
ENGINE_ONLY = ("Recipe checks, the evaluation report, layer statistics, the LR finder and the overfit check need a "
               "run TrainLens trains itself (its data, model and checkpoints): a script's run shows what the script "
               "logged.")


def script_report(store: Store, run: RunRecord) -> None:
    """The whole report of a script's run."""
    run_id = run["run_id"]
    info = store.script_info(run_id) or {}

    def header(runs_now: pd.DataFrame) -> None:
        row = runs_now[runs_now["run_id"] == run_id]
        if row.empty:
            st.info("This run was deleted.")
            return
        run_status_row(row.iloc[0], key="report")
        if run["status"] in ACTIVE and row.iloc[0]["status"] not in ACTIVE:
            st.rerun()  # it just ended: the final status, histograms and texts appear

    live_fragment("report_script_header", header, [run_id])
    st.caption(escape_md(_origin(info, run)) + " · " + ENGINE_ONLY)
    model = store.get_artifact(run_id, LOGGED_MODEL)
    if model:
        st.page_link("views/explain.py", label="Explain its model (saved by run.log_model)",
                     icon=":material/visibility:", query_params={"run": run_id})

    st.subheader("Config")
    columns = run["config"].columns()
    if columns:
        st.dataframe(sr.config_table(columns), hide_index=True, key="report_script_config")
    else:
        st.caption("The script gave no config (trainlens.init(config={...}) or add_hparams record one).")

    st.subheader("Curves")

    def curves(runs_now: pd.DataFrame) -> None:
        selected = runs_now[runs_now["run_id"] == run_id]
        keys = sorted(run_metric_keys([run_id], runs_now), key=_chart_order)
        if not keys:
            st.info("No metric logged yet: points appear as the script calls run.log or add_scalar.")
            return
        chosen = st.session_state.get("report_script_keys")
        shown = [k for k in chosen if k in keys] if chosen else keys[:DEFAULT_CHARTS]
        grid = st.columns(2)
        for index, key in enumerate(shown):
            options = ChartOptions(smoothing=0.0 if is_epoch_level(key) else 0.6)
            with grid[index % 2]:
                st.markdown(f"**{escape_md(key)}**")
                built = metric_chart(run_metrics([run_id], runs_now, chart_keys([key], "step")), selected, key, options)
                plotly_chart(built.figure, key=f"report_script_chart_{index}")
        if len(keys) > len(shown) or chosen:
            st.multiselect("keys charted", keys, default=shown, key="report_script_keys",
                           help="every key the script logged; the first ones are charted until you choose")

    live_fragment("report_script_curves", curves, [run_id], every=2.0)
    _histograms(store, run_id)
    _texts(store, run_id)


def _origin(info: dict, run: RunRecord) -> str:
    if info.get("source"):
        return f"Imported from TensorBoard logs in {info['source']}"
    where = f"Logged by the script {info.get('program') or '?'} on {info.get('host') or '?'}"
    if info.get("pid"):
        where += f" (process {info['pid']})"
    if run.get("duration_s") is not None:
        where += f", {format_duration(run['duration_s'])}"
    return where


def _chart_order(key: str) -> tuple:
    """Loss and accuracy keys first (what a reader looks for), then the others by name."""
    lower = key.lower()
    return (0 if "loss" in lower else 1 if "acc" in lower else 2, lower)


def _histograms(store: Store, run_id: str) -> None:
    index = sr.artifact_index(store.list_artifacts(run_id), SCRIPT_HISTOGRAM_PREFIX)
    if not index:
        return
    st.subheader("Histograms")
    left, right = st.columns([2, 3])
    tag = left.selectbox("tag", list(index), key="report_script_hist_tag")
    steps = index[tag]
    step = right.select_slider("step", steps, value=steps[-1], key=f"report_script_hist_step_{tag}") \
        if len(steps) > 1 else steps[0]
    from engine.records import script_artifact

    summary = store.get_artifact(run_id, script_artifact(SCRIPT_HISTOGRAM_PREFIX, step, tag))
    plotly_chart(sr.histogram_bars(summary, f"{tag} at step {step}"), key="report_script_hist")


def _texts(store: Store, run_id: str) -> None:
    index = sr.artifact_index(store.list_artifacts(run_id), SCRIPT_TEXT_PREFIX)
    if not index:
        return
    from engine.records import script_artifact

    st.subheader("Texts")
    entries = [store.get_artifact(run_id, script_artifact(SCRIPT_TEXT_PREFIX, step, tag))
               for tag, steps in index.items() for step in steps[-50:]]  # the newest 50 per tag
    st.dataframe(sr.texts_table([e for e in entries if e]), hide_index=True, key="report_script_texts")
