"""Figure and table builders behind the Explain page.

Pure functions over plain values, numpy arrays and DataFrames: the top-k prediction bars, the misclassified-image
table, the quality scores of one map, the model-randomization sanity check and the prediction across checkpoints.
No streamlit and no torch, so tests check every figure without a browser or a model (the page turns tensors into
numpy before calling these).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

TOP_K = 5
# a faithful map loses at least this much rank correlation once every layer is random (Adebayo et al., 2018)
SANITY_MIN_DROP = 0.3


def class_label(classes: Sequence[str], index: int) -> str:
    """A class name with its index, unless the name is the index (digits)."""
    name = classes[index]
    return name if name == str(index) else f"{name} ({index})"


def topk_table(probs: np.ndarray, classes: Sequence[str], k: int = TOP_K) -> pd.DataFrame:
    """The k most probable classes, most probable first: columns class (labelled) and probability."""
    probs = np.asarray(probs)
    top = np.argsort(-probs, kind="stable")[:k]  # stable: ties keep the class order
    return pd.DataFrame({"class": [class_label(classes, int(i)) for i in top], "probability": probs[top]})


def topk_figure(top: pd.DataFrame) -> go.Figure:
    """Horizontal bars of topk_table, most probable on top, on a fixed 0-1 axis."""
    fig = go.Figure(go.Bar(x=top["probability"], y=top["class"], orientation="h",
                           text=top["probability"].map("{:.1%}".format)))
    fig.update_layout(height=40 + 28 * len(top), margin=dict(l=0, r=10, t=10, b=0), xaxis=dict(range=[0, 1]),
                      yaxis=dict(autorange="reversed"))
    return fig


def misclassified_table(labels: np.ndarray, predicted: np.ndarray, confidence: np.ndarray) -> pd.DataFrame:
    """The validation images the model gets wrong, the most confidently wrong first.

    Columns: sample (index in the validation split), true, predicted (class indices), confidence (of the prediction).
    """
    labels, predicted, confidence = np.asarray(labels), np.asarray(predicted), np.asarray(confidence)
    wrong = np.flatnonzero(predicted != labels)
    return pd.DataFrame({"sample": wrong, "true": labels[wrong], "predicted": predicted[wrong],
                         "confidence": confidence[wrong]}).sort_values("confidence", ascending=False)


def quality_table(scores: Mapping[str, float | None]) -> pd.Series:
    """A map's quality scores as short display strings; scores that were not computed (None) are left out."""
    return pd.Series({k: v for k, v in scores.items() if v is not None}, name="value").map("{:.3g}".format)


def randomization_table(steps: Iterable[Any]) -> pd.DataFrame:
    """The sanity check's steps (objects with layer, spearman, spearman_signed) after a first row for the trained
    model itself, which resembles its own map perfectly."""
    rows = [{"layer": "(trained)", "spearman": 1.0, "spearman_signed": 1.0}]
    rows += [{"layer": s.layer, "spearman": s.spearman, "spearman_signed": s.spearman_signed} for s in steps]
    return pd.DataFrame(rows)


def randomization_figure(steps: pd.DataFrame) -> go.Figure:
    """Rank correlation with the trained map as layers are re-initialised: one line for |map|, one for the sign."""
    fig = go.Figure()
    for column, name in (("spearman", "|map| (rank correlation)"), ("spearman_signed", "signed map")):
        fig.add_trace(go.Scatter(x=steps["layer"], y=steps[column], mode="lines+markers", name=name))
    fig.update_layout(height=300, margin=dict(l=0, r=0, t=30, b=0), yaxis=dict(range=[-0.2, 1.05]),
                      xaxis_title="layers re-initialised from the top, cumulatively", yaxis_title="Spearman ρ")
    return fig


def randomization_verdict(steps: pd.DataFrame) -> str:
    """One sentence on the sanity check: the final rank correlation and whether the method passes."""
    final = float(steps["spearman"].iloc[-1])
    verdict = "passes" if 1.0 - final > SANITY_MIN_DROP else "fails"
    return (f"Rank correlation with every layer random: {final:.2f} "
            f"({verdict}: a faithful map changes when the model does).")


def epochs_figure(history: pd.DataFrame, epoch: int, target_name: str) -> go.Figure:
    """The target class's probability at every checkpoint (history: epoch, target_prob), the shown epoch dotted."""
    # epochs numbered from 1 as on every page (history holds the engine's 0-based indices)
    fig = go.Figure(go.Scatter(x=history["epoch"] + 1, y=history["target_prob"], mode="lines+markers",
                               name=f"p({target_name})"))
    fig.add_vline(x=epoch + 1, line_dash="dot")
    fig.update_layout(height=260, margin=dict(l=0, r=0, t=10, b=0), yaxis=dict(range=[0, 1]), xaxis_title="after epoch")
    return fig
