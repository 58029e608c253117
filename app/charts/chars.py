"""Figures of character-level runs, pure (no streamlit, no torch): the counting baselines as reference lines on a
loss chart, the recorded samples as text, attention maps, the bigram table and the next-character distribution.

Samples and typed strings come from models trained on users' text: they go into figures through `plotly_text`
and into tables as cell values, never as markup.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.charts.axes import padded_range
from app.charts.text import plotly_text
from engine.datasets import DATASETS

BASELINES = (("uniform", "uniform guess (ln V)", "#8c8c8c"), ("unigram", "letter frequencies (unigram)", "#b07aa1"),
             ("bigram", "letter pairs counted (bigram)", "#e15759"))


def with_baselines(figure: go.Figure, baselines: dict | None) -> go.Figure:
    """Dashed horizontal lines at the counting baselines (nats per character), labelled at the right edge. A y range
    the chart set for its curves (one validation point: 0 to just above it) is widened to show every line: the class
    compares the first point with them."""
    if not baselines:
        return figure
    drawn = []
    for key, label, colour in BASELINES:
        value = baselines.get(key)
        if isinstance(value, (int, float)) and np.isfinite(value):
            drawn.append(float(value))
            figure.add_hline(y=float(value), line=dict(color=colour, dash="dot", width=2),
                             annotation=dict(text=f"{label}: {value:.2f}", font=dict(color=colour)),
                             annotation_position="top right")
    y_range = figure.layout.yaxis.range
    if drawn and y_range is not None and figure.layout.yaxis.type != "log":
        low, high = float(y_range[0]), float(y_range[1])
        if min(drawn) < low or max(drawn) > high:
            figure.update_yaxes(range=padded_range(min(low, *drawn), max(high, *drawn), False))
    return figure


def sample_caption(record: dict) -> str:
    """'step 250 · epoch 2 · 85% new · 10% real names · temperature 1': what one recorded set of samples was."""
    parts = [f"step {int(record.get('step', 0)):,}",
             "before training" if int(record.get("step", 0)) == 0 else f"epoch {int(record.get('epoch', 0)) + 1}"]
    if "new" in record:
        parts.append(f"{record['new']:.0%} new")
    if "real" in record:
        parts.append(f"{record['real']:.0%} real held-out")
    if "temperature" in record:
        parts.append(f"temperature {record['temperature']:g}")
    return " · ".join(parts)


def samples_text(samples: Sequence[str], long: bool = False) -> str:
    """Samples as plain text for a code block: names side by side, long samples one per line ('∅' for an empty one)."""
    shown = [s if s else "∅" for s in samples]
    return "\n".join(shown) if long else "  ".join(shown)


def attention_figure(tokens: Sequence[str], maps: np.ndarray) -> go.Figure:
    """One heat map per layer (rows) and head (columns): row = the position that attends, column = attended to."""
    layers, heads = maps.shape[:2]
    labels = [f"{i}:{plotly_text(t if t != ' ' else '␣')}" for i, t in enumerate(tokens)]
    # the positions labelled once per row, left of its first map: on every map they ran into the map beside it
    figure = make_subplots(rows=layers, cols=heads, shared_yaxes=True, horizontal_spacing=0.03, vertical_spacing=0.06,
                           subplot_titles=[f"layer {l + 1} · head {h + 1}" for l in range(layers) for h in range(heads)])
    for layer in range(layers):
        for head in range(heads):
            figure.add_trace(go.Heatmap(z=maps[layer, head], x=labels, y=labels, zmin=0, zmax=1, colorscale="Blues",
                                        showscale=layer == 0 and head == heads - 1,
                                        colorbar=dict(title="weight"),
                                        hovertemplate="%{y} looks at %{x}: %{z:.2f}<extra></extra>"),
                             row=layer + 1, col=head + 1)
    figure.update_yaxes(autorange="reversed")
    figure.update_layout(height=max(320, 260 * layers), margin=dict(l=50, r=20, t=40, b=40))
    return figure


def bigram_figure(labels: Sequence[str], probabilities: np.ndarray) -> go.Figure:
    """The bigram table: P(next character | last character), rows = the last character."""
    shown = [plotly_text(t if t != " " else "␣") for t in labels]
    figure = go.Figure(go.Heatmap(z=probabilities, x=shown, y=shown, colorscale="Blues", zmin=0,
                                  colorbar=dict(title="P(next)"),
                                  hovertemplate="after %{y}: %{x} with %{z:.1%}<extra></extra>"))
    figure.update_yaxes(autorange="reversed", title="last character")
    figure.update_xaxes(title="next character", side="top")
    figure.update_layout(height=640, margin=dict(l=60, r=20, t=70, b=20))
    return figure


def next_char_figure(labels: Sequence[str], probabilities: np.ndarray, top: int = 10) -> go.Figure:
    """The `top` likeliest next characters, likeliest first ('·' = the string ends here)."""
    order = np.argsort(-probabilities)[:top]
    names = [plotly_text(labels[i] if labels[i] != " " else "␣") for i in order]
    figure = go.Figure(go.Bar(x=names, y=probabilities[order], marker_color="#4e79a7",
                              hovertemplate="%{x}: %{y:.1%}<extra></extra>"))
    figure.update_layout(yaxis=dict(title="probability", tickformat=".0%"), xaxis=dict(title="next character",
                                                                                     type="category"),
                         height=300, margin=dict(l=60, r=20, t=20, b=50))
    return figure


def is_char_run(run: pd.Series | dict) -> bool:
    """Whether a run (a row of the runs frame, or a store record) trains a character-level language model."""
    dataset = run.get("cfg.dataset") if isinstance(run, pd.Series) else getattr(run.get("config"), "dataset", None)
    return isinstance(dataset, str) and dataset in DATASETS and DATASETS[dataset].kind == "chars"
