"""Compare page: overlay any runs' curves live, smooth them, group them by a config field, export them.

The view (runs, grouping, smoothing, x axis, log y) lives in the URL so a teacher can bookmark it.
Only the charts refresh live (an st.fragment), and they read only the metric rows added since the last tick.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pandas as pd
import streamlit as st

from app.charts.metrics import (FINAL_TABLE_KEYS, ChartOptions, clipped_fraction_figure, final_metrics_table,
                                metric_chart)
from app.charts.race import opening_group_by, shared_machine, steps_per_second
from app.charts.series import X_AXES, chart_keys
from app.charts.text import csv_cell, escape_md
from app.server.figure_cache import view_version
from app.ui.live import live_fragment
from app.ui.presentation import plotly_chart, prestyled, presenting
from app.ui.state import get_metrics_cache, run_metric_keys, run_metrics, runs_frame, shared_figure
from engine.records import ACTIVE, COMPARE_KEYS, is_epoch_level
from engine.runs.lineage import source_names

CHARTS = [  # (title, keys, default x axis override or None)
    ("Training loss (per step)", "loss", None),
    ("Validation accuracy", "val_acc", "epoch"),
    ("Train vs validation loss", ["train_loss", "val_loss"], "epoch"),
    ("Learning rate", "lr", None),
    ("Gradient norm before clipping", "grad_norm", None),
]
X_LABELS = {"step": "step", "epoch": "epoch", "examples": "examples seen", "wall_time": "wall time"}

st.title("Compare runs")
runs = runs_frame()
if runs.empty:
    st.info("No runs yet. Start one on the Train page, or start the default run now (MNIST digits, ConvNet, Adam).")
    if st.button("Start the default run", type="primary", key="compare_default_run"):
        from app.ui.state import get_runner
        from engine.config import RunConfig

        try:
            handle = get_runner().submit(RunConfig())
        except (ValueError, PermissionError) as exc:  # a class limit (CapReached) says which and what to do
            st.error(escape_md(str(exc)))
        else:
            st.query_params["runs"] = handle.run_id
            st.rerun()
    st.stop()


# ---- view state: initialised from the URL once per session, written back on every run ----
def _url_smoothing(text: str | None, default: float = 0.6) -> float:
    """The smoothing weight of a bookmarked URL, clamped to the slider's range (a bad value must not crash the page)."""
    try:
        value = float(text) if text is not None else default
    except ValueError:
        return default
    return round(min(0.99, max(0.0, value)), 2) if math.isfinite(value) else default


def _from_url() -> None:
    if st.session_state.get("compare_url_loaded"):
        return
    params = st.query_params
    wanted = [r for item in params.get_all("runs") for r in item.split(",") if r]
    st.session_state["compare_runs"] = [r for r in wanted if r in set(runs["run_id"])]
    st.session_state["compare_smoothing"] = _url_smoothing(params.get("smooth"))
    st.session_state["compare_x"] = params.get("x", "step") if params.get("x") in X_AXES else "step"
    st.session_state["compare_log"] = params.get("log") == "1"
    group = params.get("group")
    if group is None:  # a race opens grouped by the field it raced
        group = opening_group_by(runs[runs["run_id"].isin(st.session_state["compare_runs"])]) or ""
    st.session_state["compare_group"] = group if f"cfg.{group}" in runs.columns else "(none)"
    st.session_state["compare_band"] = params.get("band", "std") if params.get("band") in ("std", "minmax") else "std"
    st.session_state["compare_url_loaded"] = True


_from_url()
if not st.session_state["compare_runs"]:
    # a sensible first view: the most recent group, or the latest runs
    latest_group = next((g for g in runs["group"] if g), None)
    st.session_state["compare_runs"] = list(runs[runs["group"] == latest_group]["run_id"] if latest_group
                                            else runs["run_id"].head(4))

# no status in the labels: the browser keeps a selected tag's first text, so "queued" would stay on a finished run
# (the final metrics table below shows the live status)
sources = source_names(runs)  # lineage: "from RUN" beside a run that started from another's weights
labels = {row.run_id: f"{row.name} · {row.run_id[:6]}" + (f" · from {sources[row.run_id]}" if row.run_id in sources
                                                          else "") for row in runs.itertuples()}
select_col, group_col = st.columns([4, 1], vertical_alignment="bottom")
with group_col:
    groups = sorted({g for g in runs["group"] if g})
    add_group = st.selectbox("add a whole group", ["(choose)"] + groups, key="compare_add_group")
    if add_group != "(choose)":
        members = list(runs[runs["group"] == add_group]["run_id"])
        st.session_state["compare_runs"] = list(dict.fromkeys(st.session_state["compare_runs"] + members))
        st.session_state["compare_add_group"] = "(choose)"
        st.rerun()
with select_col:
    selected_ids = st.multiselect("runs", list(runs["run_id"]), format_func=lambda r: labels.get(r, r), key="compare_runs")

# in projector mode the options fold away: the charts, not the controls, fill the first screen
with st.expander("Chart options: smoothing, x axis, log y, group by", expanded=not presenting(),
                 icon=":material/tune:"):
    c1, c2, c3, c4, c5 = st.columns([3, 3, 1.4, 2, 2])  # "log y" keeps its width at 1024 px in projector mode
    smoothing = c1.slider("smoothing", 0.0, 0.99, step=0.01, key="compare_smoothing",
                          help="TensorBoard-style exponential moving average, debiased; the raw curve stays faint behind")
    x_axis = c2.radio("x axis", X_AXES, format_func=X_LABELS.get, horizontal=True, key="compare_x")
    log_y = c3.toggle("log y", key="compare_log")
    config_fields = [c.removeprefix("cfg.") for c in runs.columns if c.startswith("cfg.")]
    group_field = c4.selectbox("group by", ["(none)"] + config_fields, key="compare_group",
                               help="one line per value of this config field: the mean across its runs (e.g. seeds) with a band")
    band = c5.radio("band", ["std", "minmax"], format_func={"std": "mean ± std", "minmax": "min-max"}.get,
                    horizontal=True, key="compare_band", disabled=group_field == "(none)")

st.query_params.update({"runs": ",".join(selected_ids), "smooth": f"{smoothing:g}", "x": x_axis,
                        "log": "1" if log_y else "0", "group": "" if group_field == "(none)" else group_field,
                        "band": band})

if not selected_ids:
    st.info("Pick runs above to compare them.")
    st.stop()

group_by = None if group_field == "(none)" else f"cfg.{group_field}"
options = ChartOptions(x_axis=x_axis, smoothing=smoothing, log_y=log_y, group_by=group_by, band=band)


def charts(runs_now: pd.DataFrame) -> None:
    # Everything below is shared by the sessions showing the same runs in the same state (app/server/figure_cache.py):
    # with thirty students on this view, one session reads the new rows and builds the figures, the others reuse.
    listing = runs_now.attrs.get("fingerprint")  # app.ui.state.runs_frame's version of the whole listing
    wanted = tuple(selected_ids)
    if listing is None:
        selected = runs_now[runs_now["run_id"].isin(selected_ids)]
    else:  # picking rows out of the wide runs frame (a column per config field) costs ms: once per listing
        selected = shared_figure(("compare selected", wanted), lambda: runs_now[runs_now["run_id"].isin(wanted)],
                                 listing)
    run_ids = list(selected["run_id"])
    version = view_version(selected, get_metrics_cache().coarse_keys(run_ids), listing)
    live = bool(selected["status"].isin(ACTIVE).any())  # ended runs: always the exact final picture
    present = presenting()
    view = tuple(run_ids)

    def shared(key: tuple, build):
        return shared_figure(key + (view,), build, version, live)

    keys_present = shared(("compare keys",), lambda: run_metric_keys(run_ids, runs_now))
    if not keys_present:
        st.info("No points yet: the selected runs are waiting for a worker.")
        return
    exported = []
    columns = st.columns(2)
    shown = 0

    def chart(title: str, keys: list[str], chart_options: ChartOptions, chart_key: str) -> None:
        nonlocal shown
        with columns[shown % 2]:
            st.markdown(f"**{title}**")
            def build():
                built = metric_chart(run_metrics(run_ids, runs_now, chart_keys(keys, chart_options.x_axis)), selected,
                                     keys if len(keys) > 1 else keys[0], chart_options)
                prestyled(built.figure, present)
                return built

            built = shared(("compare chart", chart_key, tuple(keys), repr(chart_options), present), build)
            plotly_chart(built.figure, key=chart_key)
        exported.append((title, built))
        shown += 1

    for index, (title, keys, forced_x) in enumerate(CHARTS):
        wanted = keys if isinstance(keys, list) else [keys]
        if not keys_present.intersection(wanted):
            continue
        chart_options = replace(options, x_axis=x_axis if forced_x is None or x_axis != "step" else forced_x)
        if all(is_epoch_level(k) for k in wanted):  # a handful of epoch points: smoothing would only lag them
            chart_options = replace(chart_options, smoothing=0.0)
        chart(title, wanted, chart_options, f"chart_{index}")
    clipped = shared(("compare clipped", x_axis),
                            lambda: run_metrics(run_ids, runs_now, chart_keys(["clipped"], x_axis))) \
        if "clipped" in keys_present else None
    if clipped is not None and clipped.loc[clipped["key"] == "clipped", "value"].max() > 0:
        with columns[shown % 2]:
            st.markdown("**Fraction of steps clipped**")
            plotly_chart(clipped_fraction_figure(clipped, selected, 100, options), key="chart_clipped")

    other_keys = sorted(k for k in keys_present if k not in COMPARE_KEYS)
    with st.expander("More metrics (precision, recall, F1, throughput, EMA/SWA, layer statistics...)"):
        extra = st.selectbox("metric", other_keys, key="compare_extra") if other_keys else None
        if extra:
            extra_options = replace(options, smoothing=0.0) if is_epoch_level(extra) else options
            metrics = run_metrics(run_ids, runs_now, chart_keys([extra], x_axis))
            built = metric_chart(metrics, selected, extra, extra_options)
            plotly_chart(built.figure, key="chart_extra")
            exported.append((extra, built))

    st.markdown("**Final metrics**")
    # epoch-level rows only: the step count and duration come from the runs table, not 400k loss rows
    def final_table() -> pd.DataFrame:
        table = final_metrics_table(run_metrics(run_ids, runs_now, list(FINAL_TABLE_KEYS)),
                                    selected.reset_index(drop=True))
        # best epoch numbered from 1, as on every page; a rate, not a duration: seconds measure the machine (who
        # else trained meanwhile) more than the optimizer
        table = table.assign(best_epoch=table["best_epoch"] + 1,
                             steps_per_s=steps_per_second(table["steps"], table["duration_s"]),
                             started_from=table["run_id"].map(lambda r: sources.get(r, "")))
        return table.drop(columns=["run_id", "duration_s"])

    st.dataframe(shared(("compare final table",), final_table), hide_index=True, key="final_table",
                 column_config={"best_val_acc": st.column_config.NumberColumn("best val acc", format="%.4f"),
                                "final_val_acc": st.column_config.NumberColumn("final val acc", format="%.4f"),
                                "final_train_loss": st.column_config.NumberColumn("final train loss", format="%.4f"),
                                "steps_per_s": st.column_config.NumberColumn("steps/s", format="%.1f"),
                                "best_epoch": st.column_config.NumberColumn("best epoch", help="after epoch N, from 1"),
                                "steps": st.column_config.NumberColumn("steps"),
                                "started_from": st.column_config.TextColumn(
                                    "from", help="the run it started from (its weights), if any")})
    if shared_machine(selected):
        st.caption("Steps/s: these runs trained at the same time and shared the machine's cores, so their speeds "
                   "depend on what else was running; they say nothing about which optimizer is faster.")
    def csv_bytes() -> bytes:  # built on click, not on every live tick of every session
        data = pd.concat([built.data().assign(chart=title) for title, built in exported],
                         ignore_index=True) \
            if exported else pd.DataFrame(columns=["series"])
        data["series"] = data["series"].map(csv_cell)  # a run named "=HYPERLINK(...)" stays text in a spreadsheet
        return data.to_csv(index=False).encode()

    st.download_button("Download the plotted data (CSV)", csv_bytes, "trainlens_compare.csv",
                       "text/csv", key="download_csv", on_click="ignore")


live_fragment("compare_charts", charts, selected_ids, every=1.5)
