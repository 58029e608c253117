"""A script run's own figures and tables for its Run report (no streamlit, no torch): its config as a table, the
histograms TensorBoard's `add_histogram` logged (bin counts stored by the trainlens client), and its texts.

Everything a script gave (config keys and values, tags, texts) is user text: shown in tables and Plotly titles
through app.charts.text, never as markdown or HTML.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from app.charts.text import plotly_text


def config_table(columns: dict[str, Any]) -> pd.DataFrame:
    """The config as two text columns (setting, value): one row per key, nested keys dotted (ScriptConfig.columns)."""
    return pd.DataFrame({"setting": [str(k) for k in columns], "value": [_text(v) for v in columns.values()]},
                        dtype=object)


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "" if value is None else str(value)


def artifact_index(names: Iterable[str], prefix: str) -> dict[str, list[int]]:
    """tag -> the steps it was logged at, ascending, from a run's artifact names (see records.script_artifact)."""
    from engine.records import split_script_artifact

    index: dict[str, list[int]] = {}
    for name in names:
        parsed = split_script_artifact(name, prefix)
        if parsed is not None:
            index.setdefault(parsed[1], []).append(parsed[0])
    return {tag: sorted(steps) for tag, steps in sorted(index.items())}


def histogram_bars(summary: dict[str, Any] | None, title: str = "") -> go.Figure:
    """One add_histogram call as bars: counts per bin over the values' range, its count and mean in the title."""
    summary = summary or {}
    edges = np.asarray(summary.get("edges") or [], dtype=float)
    counts = np.asarray(summary.get("counts") or [], dtype=float)
    figure = go.Figure()
    if edges.size >= 2 and counts.size == edges.size - 1:
        figure.add_bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges), marker_color="#0072B2",
                       hovertemplate="%{x:.4g}: %{y:,.0f} values<extra></extra>")
    else:
        figure.add_annotation(text="no histogram at this step", showarrow=False, xref="paper", yref="paper",
                              x=0.5, y=0.5)
    extra = ""
    if summary.get("num"):
        extra = f" · {int(summary['num']):,} values, mean {float(summary.get('mean', 0.0)):.4g}"
        if summary.get("non_finite"):
            extra += f", {int(summary['non_finite']):,} not finite (left out)"
    figure.update_layout(title=dict(text=plotly_text(title) + extra, font=dict(size=14)), height=300,
                         margin=dict(l=50, r=20, t=50, b=40), xaxis_title="value", yaxis_title="count",
                         showlegend=False, bargap=0.02)
    return figure


def texts_table(entries: list[dict[str, Any]]) -> pd.DataFrame:
    """add_text entries as (step, tag, text) rows, newest step first."""
    rows = [{"step": int(e.get("step", 0)), "tag": str(e.get("tag", "")), "text": str(e.get("text", ""))}
            for e in entries if isinstance(e, dict)]
    frame = pd.DataFrame(rows, columns=["step", "tag", "text"])
    return frame.sort_values(["step", "tag"], ascending=[False, True], ignore_index=True).astype(
        {"tag": object, "text": object})
