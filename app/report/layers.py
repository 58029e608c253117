"""The Run report's training diagnostics: gradient norm and clipping, per-layer statistics and histograms."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.charts import report as rf
from app.ui.presentation import plotly_chart
from engine import records
from engine.config import RunConfig
from engine.runs.store import Store

MORE_LAYER_STATS = ("act_mean", "act_grad_mean", "act_grad_std", "grad_mean", "zero_frac")


def gradient_clipping(config: RunConfig, metrics: pd.DataFrame) -> None:
    st.header("Gradient norm and clipping")
    summary = rf.clipping_summary(metrics)
    if not summary["steps"]:
        st.info("The gradient norm of every step appears here as soon as training starts.")
        return
    c1, c2, c3 = st.columns(3)
    c1.metric("steps clipped", f"{summary['fraction']:.0%}", help=f"{summary['clipped']} of {summary['steps']} steps")
    c2.metric("clipping", {"none": "off", "norm": f"norm ≤ {config.clip_value:g}",
                           "value": f"|element| ≤ {config.clip_value:g}"}[config.clip])
    norms = metrics.loc[metrics["key"] == "grad_norm", "value"]
    c3.metric("median gradient norm", f"{norms.median():.3g}" if len(norms) else "n/a")
    if config.clip != "none" and summary["fraction"] > 0.5:
        st.warning(f"Most steps are clipped ({summary['clipped']} of {summary['steps']}): the threshold, not the "
                   "learning rate, sets the step size. Lower the learning rate or raise the clip threshold.")
    if config.clip == "value":
        st.caption("Element-wise clipping: the norm after clipping is not logged, so only the norm before is drawn.")
    plotly_chart(rf.grad_norm_figure(metrics, config.clip, config.clip_value), key="report_grad_norm")


def layer_statistics(store: Store, run_id: str, config: RunConfig, metrics: pd.DataFrame, run_active: bool) -> None:
    st.header("Layer statistics")
    if config.layer_stats_every == 0:
        st.info("Layer statistics were off for this run (layer_stats_every = 0). To record them, set *layer statistics "
                "every K steps* in the Run tab of the Train page (50 costs about 2% of training time) and start the "
                "run again.")
        return
    if not rf.layer_names(metrics, "update_ratio") and not rf.layer_names(metrics, "act_std"):
        st.info(f"Sampled every {config.layer_stats_every} steps: the first points appear as soon as training starts."
                if run_active else "No layer statistics were logged for this run.")
        return
    st.caption(f"Sampled every {config.layer_stats_every} steps on one training batch (makemore, lecture 4).")
    hist_steps = records.histogram_steps(store.list_artifacts(run_id))
    first_hist = store.get_artifact(run_id, records.histogram_artifact(hist_steps[0])) if hist_steps else None
    all_params = st.toggle("all parameter tensors (biases, norms)", key="report_all_params",
                           help="makemore judges the update ratio on the weight matrices only")
    params = None if all_params else rf.matrix_param_names(metrics, first_hist)
    left, right = st.columns(2)
    with left:
        st.markdown("**Update-to-data ratio per parameter** (log10 std(update) / std(weights))")
        plotly_chart(rf.update_ratio_figure(metrics, params), key="report_update_ratio")
        st.markdown("**Gradient std per parameter**")
        plotly_chart(rf.layer_stat_figure(metrics, "grad_std", params, log_y=True), key="report_grad_std")
    with right:
        st.markdown("**Activation std per layer**")
        plotly_chart(rf.layer_stat_figure(metrics, "act_std"), key="report_act_std")
        prefix = "sat_frac" if rf.layer_names(metrics, "sat_frac") and not rf.layer_names(metrics, "dead_frac") else "dead_frac"
        st.markdown("**Dead ReLU units per layer**" if prefix == "dead_frac" else "**Saturated tanh/sigmoid outputs**")
        plotly_chart(rf.layer_stat_figure(metrics, prefix, y_range=[-0.02, 1.02]), key="report_dead_frac")
        if prefix == "dead_frac" and rf.layer_names(metrics, "sat_frac"):
            plotly_chart(rf.layer_stat_figure(metrics, "sat_frac", y_range=[-0.02, 1.02]), key="report_sat_frac")
    more = [p for p in MORE_LAYER_STATS if rf.layer_names(metrics, p)]
    if more:
        with st.expander("More per-layer statistics"):
            extra = st.selectbox("statistic", more, format_func=rf.LAYER_STAT_TITLES.get, key="report_more_stat")
            plotly_chart(rf.layer_stat_figure(metrics, extra), key="report_more_chart")
    histograms(store, run_id, hist_steps)


def histograms(store: Store, run_id: str, hist_steps: list[int]) -> None:
    st.subheader("Histograms per layer")
    if not hist_steps:
        st.caption("Histograms are kept at about 8 sampled steps over the run; none yet.")
        return
    shown = st.session_state.get("report_hist_step")
    if shown not in hist_steps or shown == st.session_state.get("report_hist_latest"):
        st.session_state["report_hist_step"] = hist_steps[-1]  # follow the newest histogram until moved
    st.session_state["report_hist_latest"] = hist_steps[-1]
    step = st.select_slider("step", hist_steps, key="report_hist_step",
                            help="a sampled step whose activations and gradients were histogrammed")
    histogram = store.get_artifact(run_id, records.histogram_artifact(step)) or {}
    columns = st.columns(3)
    for column, kind in zip(columns, ("activations", "act_grads", "grads")):
        with column:
            plotly_chart(rf.histogram_figure(histogram, kind, step), key=f"report_hist_{kind}")
