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

from app.charts.text import plotly_text
from engine import sanity_check as sanity

TOP_K = 5


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
    # categories, always: digit names "0".."9" would otherwise be read as numbers (ticks 2/4/6, a "10")
    labels = [plotly_text(c) for c in top["class"]]
    fig = go.Figure(go.Bar(x=top["probability"], y=labels, orientation="h",
                           text=[f"{c} · {p:.1%}" for c, p in zip(labels, top["probability"])],
                           textposition="outside", cliponaxis=False))
    fig.update_layout(height=40 + 28 * len(top), margin=dict(l=0, r=60, t=10, b=0), xaxis=dict(range=[0, 1]),
                      yaxis=dict(type="category", autorange="reversed", categoryorder="array", categoryarray=labels))
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


def randomization_table(steps: Iterable[Any], default_sign: str = "absolute") -> pd.DataFrame:
    """The sanity check's stages (objects with layer, spearman, spearman_signed) after a first row for the trained
    model itself, which resembles its own map perfectly; `compared` is the correlation the verdict reads (the
    map as shown by default, see engine.sanity_check)."""
    steps = list(steps)
    rows = [{"layer": "(trained)", "spearman": 1.0, "spearman_signed": 1.0, "compared": 1.0}]
    rows += [{"layer": s.layer, "spearman": s.spearman, "spearman_signed": s.spearman_signed, "compared": c}
             for s, c in zip(steps, sanity.stage_correlations(steps, default_sign))]
    return pd.DataFrame(rows)


def randomization_figure(steps: pd.DataFrame) -> go.Figure:
    """Rank correlation with the trained map as layers are re-initialised: one line for |map|, one for the sign,
    and the pass threshold."""
    fig = go.Figure()
    for column, name in (("spearman", "|map| (rank correlation)"), ("spearman_signed", "signed map")):
        fig.add_trace(go.Scatter(x=steps["layer"], y=steps[column], mode="lines+markers", name=name))
    fig.add_hline(y=sanity.THRESHOLD, line_dash="dot",
                  annotation_text=f"pass: mean below {sanity.THRESHOLD:.2f}", annotation_position="top left")
    fig.update_layout(height=300, margin=dict(l=0, r=0, t=30, b=0), yaxis=dict(range=[-0.2, 1.05]),
                      xaxis=dict(type="category"),
                      xaxis_title="layers re-initialised from the top, cumulatively", yaxis_title="Spearman ρ")
    return fig


def randomization_survival(steps: pd.DataFrame) -> float:
    """The sanity check's number from its table: the mean of the `compared` column after the trained row."""
    stages = steps.iloc[1:]
    return float(stages["compared"].mean()) if len(stages) else 1.0


def randomization_passes(steps: pd.DataFrame) -> bool:
    return randomization_survival(steps) < sanity.THRESHOLD


def randomization_verdict(steps: pd.DataFrame) -> str:
    """One sentence on the sanity check from its table."""
    value = randomization_survival(steps)
    verdict = "passes" if randomization_passes(steps) else "fails"
    return (f"Mean rank correlation with the trained map over the stages: {value:.2f} ({verdict}; "
            f"a method passes below {sanity.THRESHOLD:.2f}: a faithful map changes when the model does).")


def epochs_figure(history: pd.DataFrame, epoch: int, target_name: str) -> go.Figure:
    """The target class's probability at every checkpoint (history: epoch, target_prob), the shown epoch dotted."""
    # history's epochs are numbered as on every page (engine.records.epoch_number: 0 = before training)
    fig = go.Figure(go.Scatter(x=history["epoch"], y=history["target_prob"], mode="lines+markers",
                               name=plotly_text(f"p({target_name})")))
    fig.add_vline(x=epoch, line_dash="dot")
    fig.update_layout(height=260, margin=dict(l=0, r=0, t=10, b=0), yaxis=dict(range=[0, 1]), xaxis=dict(dtick=1),
                      xaxis_title="epoch (0 = before training)")
    return fig
