"""A diverged run on a metric chart: it ends at its last finite point, marked and labelled, and the healthy runs set
the y range.

A run whose loss overflowed (the learning-rate lesson's lr 10 reaches 2e33 at step 8, then NaN) would otherwise
set the axis by itself and squash every other curve into one flat line at the bottom: exactly the difference a
lesson asks the class to see. A diverged curve is one whose run's series ends in a non-finite value (the step that
diverged is the last one a run logs, engine/train.py), or, for a group's band, one with such a run: `Curve.diverged`
holds what its label says ("diverged", "1 of 2 diverged"). Its last finite point gets a marker and that label. When
the curve leaves the range of the healthy curves, the range is theirs and the marker sits on the chart's edge, an
arrow pointing where the curve went, its label just outside the plot (a band whose other runs went on: where it went
farthest). Only the view is cropped: the chart's data
(its CSV) keeps every point. A diverged run's learning rate stays finite: that chart shows it as it was. Pure
functions over the chart's curves (`app/charts/metrics.py`), returning Plotly specs as plain dicts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from app.charts.curves import Curve
from app.charts.text import plotly_text

_ROW_PX = 22  # between the labels of several runs that left the chart at one edge


def _values(curves: Iterable[Curve], log_y: bool) -> np.ndarray:
    arrays = [a for c in curves for a in (c.y, c.lower, c.upper) if a is not None]
    values = np.concatenate(arrays) if arrays else np.array([])
    return values[np.isfinite(values) & ((values > 0) if log_y else True)]


def shown_values(curves: Sequence[Curve], log_y: bool) -> tuple[np.ndarray, bool]:
    """The values the y range must show, and whether a diverged curve is left out of it: the healthy curves' values
    when a diverged curve goes beyond them, else every curve's."""
    every = _values(curves, log_y)
    healthy = _values([c for c in curves if not c.diverged], log_y)
    if healthy.size == 0 or every.size == 0 or (every.min() >= healthy.min() and every.max() <= healthy.max()):
        return every, False
    return healthy, True


def marks(curves: Sequence[Curve], y_range: list[float] | None, log_y: bool, x_title: str,
          ) -> tuple[list[dict], list[dict]]:
    """Marker traces and label annotations for the diverged curves: at the last finite point, or on the edge of
    `y_range` (Plotly axis units: log10 on a log axis) when that point lies beyond it."""
    traces, notes = [], []
    ends = [c for c in curves if c.diverged and not c.faint and c.kind != "best_epoch" and np.isfinite(c.y).any()]
    xs = np.concatenate([c.x[np.isfinite(c.y)] for c in curves if np.isfinite(c.y).any()] or [np.array([0.0])])
    x_low, x_high = float(np.min(xs)), float(np.max(xs))
    rows = {True: 0, False: 0}  # labels already placed above and below the plot
    for curve in ends:
        at = int(np.flatnonzero(np.isfinite(curve.y))[-1])  # its last finite point, when inside the range
        if y_range is not None:
            axis = np.log10(np.where(curve.y > 0, curve.y, np.nan)) if log_y else curve.y
            beyond = np.flatnonzero(np.isfinite(axis) & ((axis > y_range[1]) | (axis < y_range[0])))
            if beyond.size:  # where it went farthest: its end, or a band's peak when its other runs went on
                at = int(beyond[np.argmax(np.abs(axis[beyond] - np.mean(y_range)))])
        x, y = float(curve.x[at]), float(curve.y[at])
        position = math.log10(y) if log_y and y > 0 else y
        right = x > x_low + 0.6 * (x_high - x_low)  # a label near the right edge grows leftwards
        hover = (f"{plotly_text(curve.series)}: {curve.diverged}<br>last finite value {y:.3g} at "
                 f"{plotly_text(x_title)} {x:.6g}<extra></extra>")
        base = dict(type="scatter", mode="markers", legendgroup=curve.run_id, showlegend=False, cliponaxis=False,
                    name=plotly_text(f"{curve.series} ({curve.diverged})"), hovertemplate=hover)
        note = dict(x=x, xref="x", showarrow=False, xanchor="right" if right else "left", xshift=-10 if right else 10,
                    font=dict(color=curve.color), bgcolor="rgba(255,255,255,0.85)")
        if y_range is None or y_range[0] <= position <= y_range[1]:
            traces.append(dict(base, x=[x], y=[y], marker=dict(symbol="x", size=14, color=curve.color,
                                                                line=dict(color="white", width=1))))
            notes.append(dict(note, y=position, yref="y", yanchor="middle", text=f"<b>{curve.diverged}</b>"))
            continue
        up = position > y_range[1]
        edge = y_range[1] if up else y_range[0]
        traces.append(dict(base, x=[x], y=[10.0 ** edge if log_y else edge],
                           marker=dict(symbol="triangle-up" if up else "triangle-down", size=16, color=curve.color,
                                       line=dict(color="white", width=1))))
        # beside the marker: above the plot, over no curve (below it, the x axis's labels: just inside instead)
        notes.append(dict(note, y=1 if up else 0, yref="paper", yanchor="bottom",
                          yshift=_ROW_PX * rows[up] + (0 if up else 12),
                          text=f"<b>{curve.diverged} {'↑' if up else '↓'}</b>"))
        rows[up] += 1
    return traces, notes
