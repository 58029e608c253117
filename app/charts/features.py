"""Figures of what a network learned (no streamlit, no torch: numpy arrays in, Plotly figures out).

- `layout_figure`: validation examples laid out in 2-D by their penultimate-layer features, one colour per true
  class (the palette's), misclassified ones drawn as crosses; each point's customdata is its index in the validation
  sample, so a click (Streamlit's point selection) can show that image and its neighbours. A text run's points
  carry their sentence as hover text.
- `filters_figure`: the first layer's filters as a grid of small images, each scaled to its own largest weight on
  a diverging scale (blue negative, red positive, white zero).
- `image_strip`: a row of small images (nearest neighbours) as one numpy array with gaps.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from app.charts.palette import PALETTE
from app.charts.text import plotly_text

MISCLASSIFIED_SYMBOL = "x"
FILTER_COLUMNS = 8


def layout_figure(coords: np.ndarray, labels: np.ndarray, predicted: np.ndarray, class_names: Sequence[str], *,
                  title: str = "", hover: Sequence[str] | None = None, height: int = 420,
                  axes: tuple[str, str] = ("first principal component", "second")) -> go.Figure:
    """Scatter of `coords` [N, 2]: a trace per true class (legend: the class), crosses where `predicted` differs."""
    figure = go.Figure()
    wrong = predicted != labels
    for index, name in enumerate(class_names):
        color, label = PALETTE[index % len(PALETTE)], plotly_text(str(name))
        right_ones = np.flatnonzero((labels == index) & ~wrong)
        wrong_ones = np.flatnonzero((labels == index) & wrong)
        # the class's correct points as circles (its legend entry), its mistakes as crosses of the same colour, one
        # legend group: a legend marker shows its trace's first symbol, which would be a cross for a class of mistakes
        for members, symbol, size, legend in ((right_ones, "circle", 7, True),
                                              (wrong_ones, MISCLASSIFIED_SYMBOL, 11, not right_ones.size)):
            if not members.size:
                continue
            texts = [plotly_text(hover[i][:120]) for i in members] if hover is not None else None
            figure.add_trace(go.Scatter(
                x=coords[members, 0], y=coords[members, 1], mode="markers", name=label, legendgroup=label,
                showlegend=legend, customdata=members, text=texts,
                marker=dict(color=color, size=size, symbol=symbol, line=dict(width=0)),
                hovertemplate=(("%{text}<br>" if texts else "") + f"true {label}"
                               + (" · misclassified" if symbol == MISCLASSIFIED_SYMBOL else "")
                               + " · example %{customdata}<extra></extra>")))
    if wrong.any():  # a legend entry that says what a cross means
        figure.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="× misclassified",
                                    marker=dict(color="#555555", symbol=MISCLASSIFIED_SYMBOL, size=11)))
    figure.update_layout(title=dict(text=plotly_text(title)) if title else None, height=height,
                         margin=dict(l=10, r=10, t=40 if title else 10, b=10), clickmode="event+select",
                         legend=dict(itemsizing="constant"))
    figure.update_xaxes(showticklabels=False, title=axes[0], zeroline=False)
    figure.update_yaxes(showticklabels=False, title=axes[1], zeroline=False)
    return figure


def filters_figure(filters: np.ndarray, title: str = "") -> go.Figure:
    """A grid of `filters` [F, H, W] (or [F, H, W, 3], shown as the mean of its channels), each scaled to [-1, 1]
    by its own largest absolute weight."""
    if filters.ndim == 4:
        filters = filters.mean(-1)
    count, height, width = filters.shape
    columns = min(FILTER_COLUMNS, count)
    rows = -(-count // columns)
    gap = max(1, height // 6)
    grid = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap), np.nan)
    for i, image in enumerate(filters):
        row, column = divmod(i, columns)
        scale = np.abs(image).max() or 1.0
        grid[row * (height + gap):row * (height + gap) + height,
             column * (width + gap):column * (width + gap) + width] = image / scale
    figure = go.Figure(go.Heatmap(z=grid[::-1], colorscale="RdBu_r", zmin=-1, zmax=1, showscale=False,
                                  hoverinfo="skip"))
    figure.update_layout(title=dict(text=plotly_text(title)) if title else None,
                         height=max(140, min(420, 60 + rows * 60)), margin=dict(l=5, r=5, t=40 if title else 5, b=5),
                         plot_bgcolor="white")
    figure.update_xaxes(visible=False, scaleanchor="y", constrain="domain")
    figure.update_yaxes(visible=False)
    return figure


def image_strip(images: np.ndarray, gap: int = 2) -> np.ndarray:
    """Images [K, H, W] or [K, H, W, C] in [0, 1] side by side on white, `gap` pixels apart."""
    count, height, width = images.shape[:3]
    strip = np.ones((height, count * (width + gap) - gap, *images.shape[3:]), dtype=np.float32)
    for i, image in enumerate(images):
        strip[:, i * (width + gap):i * (width + gap) + width] = image
    return strip
