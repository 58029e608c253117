"""A curve of a metric chart: exactly the points that will be drawn (smoothed and downsampled already), with how to
draw them. `app/charts/metrics.py` describes a chart as a list of these, then turns them into Plotly traces and into
the chart's CSV; `app/charts/diverged.py` marks the ones whose run diverged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Curve:
    """The points of one drawn series, with how to draw them."""

    series: str  # legend / CSV name
    run_id: str  # the run, or the group label for a band
    key: str
    kind: str  # raw | smoothed | mean (band) | best_epoch
    x: np.ndarray
    y: np.ndarray
    color: str
    dash: str = "solid"
    faint: bool = False  # the raw series behind a smoothed one
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    diverged: str = ""  # what its marker says when its run (a band: some of its runs) ended in a non-finite value
