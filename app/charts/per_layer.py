"""The per-layer chart of the lessons: a per-layer statistic (e.g. the gradients' spread, grad_std) across the layers
from input to output, one line per variant, the picture of vanishing gradients.

Pure (no streamlit, no torch), like the metric chart beside it (`app/charts/metrics.py`), whose titles, ticks and
arm colours it shares.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from app.charts.arms import group_colors, view_colors
from app.charts.axes import log_ticks, padded_range, tick_texts, whole_ticks, wrapped_title
from app.charts.metrics import metric_title
from app.charts.series import ordered_groups
from app.charts.text import plotly_text


def per_layer_figure(metrics_df: pd.DataFrame, runs_df: pd.DataFrame, statistic: str, group_by: str,
                     log_y: bool = True, layers_pattern: str = "", arms: Sequence[str] = ()) -> go.Figure:
    """A per-layer statistic (`statistic/<layer>` rows, e.g. grad_std) at each run's latest sampled step, across the
    layers from input to output: one line per value of `group_by` (the mean over its runs, e.g. seeds).

    Layers are ordered as the model logs them (its parameter order: input first), which the rows' ids keep; this
    is the picture of vanishing gradients: the line falling towards the input layers. `layers_pattern` (a regular
    expression) keeps the layers it matches, e.g. the convolution and linear weights only. `arms`: the view's arms in
    colour order (app/charts/arms.py), so that a variant has the colour the view's other charts give it."""
    prefix = f"{statistic}/"
    keys = metrics_df["key"].astype(str)
    wanted = keys.str.startswith(prefix)
    if layers_pattern:
        wanted &= keys.str[len(prefix):].str.contains(layers_pattern, regex=True)
    rows = metrics_df[wanted]
    fig = go.Figure()
    if rows.empty:
        fig.add_annotation(text="waiting for the first layer statistics", showarrow=False, xref="paper",
                           yref="paper", x=0.5, y=0.5)
        fig.update_layout(xaxis=dict(visible=False), yaxis=dict(visible=False), height=320)
        return fig
    latest = rows[rows["step"] == rows.groupby("run_id")["step"].transform("max")]
    order_col = "id" if "id" in latest.columns else "step"
    layers = list(dict.fromkeys(latest.sort_values(order_col)["key"].str[len(prefix):]))
    groups = runs_df.set_index("run_id")[group_by].astype(str)
    latest = latest.assign(layer=latest["key"].str[len(prefix):], group=latest["run_id"].map(groups))
    table = latest.groupby(["group", "layer"])["value"].mean().unstack("layer").reindex(columns=layers)
    order = [g for g in ordered_groups(runs_df.assign(**{group_by: groups.to_numpy()}), group_by) if g in table.index]
    members = latest.groupby("group")["run_id"].unique()
    if all(len(members[g]) == 1 for g in order):  # one run per group: the colour its run has on every other chart
        by_run = view_colors(runs_df, arms)
        colors = {g: by_run[str(members[g][0])] for g in order}
    else:  # the colours the grouped charts give these groups
        colors = group_colors(runs_df, group_by, order, arms)
    for group in order:
        values = table.loc[group]
        fig.add_trace(go.Scatter(x=list(range(1, len(layers) + 1)), y=values.to_numpy(dtype=float),
                                 mode="lines+markers", name=plotly_text(group), customdata=layers,
                                 hovertemplate="%{customdata}: %{y:.3g}<extra>%{fullData.name}</extra>",
                                 line=dict(color=colors[group], width=2.5)))
    fig.update_layout(height=320, margin=dict(l=0, r=0, t=10, b=0), legend=dict(orientation="h", y=-0.25),
                      xaxis=dict(title=f"layer (1 = input side, {len(layers)} = output)", **whole_ticks(len(layers))),
                      yaxis=dict(title=wrapped_title(metric_title(prefix[:-1])), type="log" if log_y else "linear"))
    positive = table.to_numpy(dtype=float).ravel()
    positive = positive[np.isfinite(positive) & (positive > 0)]
    if log_y and (ticks := log_ticks(positive)):
        fig.update_yaxes(range=padded_range(float(positive.min()), float(positive.max()), True), tickvals=ticks,
                         ticktext=tick_texts(ticks))
    return fig
