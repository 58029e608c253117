"""Figure builders and small helpers behind the Run report page.

Pure functions over the engine's stored artifacts (plain dicts) and metric rows (the long metrics
frame): the recipe-check badges, the classification-report table, the confusion-matrix heatmap whose
cells can be clicked, the per-layer statistics over training, layer histograms, gradient norm before and
after clipping, the LR-finder curve with its suggestions and the overfit-one-batch curve. No streamlit
and no torch, so tests check every figure without a browser (the page passes numpy arrays for images).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from app.charts.axes import readable_log_axis, step_ticks, wrapped_title
from app.charts.palette import PALETTE
from app.charts.series import downsample
from app.charts.text import plotly_text
from engine.records import LR_FIND_KEYS, LR_FIND_POINT, UPDATE_RATIO_REFERENCE

REPORT_TITLES = {"best": "best checkpoint", "last": "last weights", "ema": "EMA weights", "swa": "SWA weights"}
AVERAGE_ROWS = ("accuracy", "micro avg", "macro avg", "weighted avg")
REPORT_COLUMNS = ("precision", "recall", "f1-score", "support")

# ---- recipe-check badges ----------------------------------------------------------------------------------------
STATUS_COLORS = {"pass": "green", "warn": "orange", "skip": "gray"}  # st.badge colours
STATUS_ICONS = {"pass": ":material/check_circle:", "warn": ":material/warning:", "skip": ":material/do_not_disturb_on:"}
STATUS_WORDS = {"pass": "pass", "warn": "warn", "skip": "skipped"}
NUMBER_LABELS = {  # the engine's number keys, as a reader would say them
    "loss": "loss", "expected": "expected -ln(1/C)", "ratio": "ratio", "logit_std": "logit std", "classes": "classes",
    "loss_real": "loss (real inputs)", "loss_zeroed": "loss (zeroed inputs)", "gain": "gain",
    "accuracy_real": "accuracy (real)", "accuracy_zeroed": "accuracy (zeroed)", "fraction_clipped": "clipped",
    "steps": "steps", "median_norm": "median norm", "p90_norm": "p90 norm", "clip_value": "threshold",
    "median_norm_after": "median norm after", "final_loss": "final loss", "target_loss": "target",
    "steps_used": "steps used", "step_budget": "step budget", "batch_size": "batch", "seconds": "seconds",
}
PERCENT_NUMBERS = {"fraction_clipped", "accuracy_real", "accuracy_zeroed"}
PERCENT_CHECKS = {"dead_units", "saturation"}  # their numbers are per-layer fractions


def badge_color(status: str) -> str:
    """st.badge colour of a check status: pass green, warn orange, skip (or anything unknown) grey."""
    return STATUS_COLORS.get(status, "gray")


def badge_icon(status: str) -> str:
    return STATUS_ICONS.get(status, STATUS_ICONS["skip"])


def badge_label(check: dict[str, Any]) -> str:
    """'Loss at initialisation: pass'."""
    status = check.get("status", "skip")
    return f"{check.get('title') or check.get('name', 'check')}: {STATUS_WORDS.get(status, status)}"


def format_number(value: Any, percent: bool = False) -> str:
    """A short human number: 0.0325, 2.31, 1.2e-05, 54%, 26; None (not finite when stored) is 'n/a'."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            return "n/a"
        if percent:
            return f"{value:.0%}"
        if value == int(value) and abs(value) < 1e6:
            return f"{int(value):,}"
        return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def check_numbers_text(check: dict[str, Any]) -> str:
    """The check's numbers as one line, 'loss 2.31 · expected -ln(1/C) 2.3 · ratio 1.01'; lists (curves) left out."""
    parts = []
    all_percent = check.get("name") in PERCENT_CHECKS
    for key, value in (check.get("numbers") or {}).items():
        if isinstance(value, (list, tuple, dict)):
            continue
        parts.append(f"{NUMBER_LABELS.get(key, key)} {format_number(value, all_percent or key in PERCENT_NUMBERS)}")
    return " · ".join(parts)


def merge_checks(first: Sequence[dict] | None, resumed: Sequence[dict] | None) -> list[dict]:
    """A run's checks: those of its first life, overridden (by name) by those measured after a resume.

    Checks coming from the resumed part carry "resumed": True so the page can say so.
    """
    merged: dict[str, dict] = {}
    for check in first or []:
        merged[check.get("name", str(len(merged)))] = dict(check)
    for check in resumed or []:
        merged[check.get("name", str(len(merged)))] = dict(check, resumed=True)
    return list(merged.values())


# ---- classification report --------------------------------------------------------------------------------------
def report_table(evaluation: dict[str, Any]) -> pd.DataFrame:
    """scikit-learn's classification_report as a table: one row per class, then accuracy, micro/macro/weighted avg.

    As in sklearn's text report, the accuracy row has only an f1-score (the accuracy) and the support.
    """
    report = evaluation["report"]
    rows, index = [], []
    for label in evaluation.get("labels") or [k for k in report if k not in AVERAGE_ROWS]:
        values = report.get(str(label), {})
        rows.append([values.get(c, np.nan) for c in REPORT_COLUMNS])
        index.append(str(label))
    total = float(evaluation.get("n") or sum(r[3] for r in rows if r[3] == r[3]))
    if "accuracy" in report or "accuracy" in evaluation:
        rows.append([np.nan, np.nan, float(report.get("accuracy", evaluation.get("accuracy"))), total])
        index.append("accuracy")
    for average in AVERAGE_ROWS[1:]:
        if average in report:
            rows.append([report[average].get(c, np.nan) for c in REPORT_COLUMNS])
            index.append(average)
    table = pd.DataFrame(rows, index=pd.Index(index, name="class"), columns=list(REPORT_COLUMNS), dtype=np.float64)
    table["support"] = table["support"].round().astype("Int64")
    return table


def report_display(table: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """report_table as text, like sklearn's printout: blanks where sklearn prints nothing (accuracy's precision)."""
    shown = pd.DataFrame({"class": table.index.astype(str)})
    for column in REPORT_COLUMNS:
        values = table[column].to_numpy()
        if column == "support":
            shown[column] = ["" if pd.isna(v) else f"{int(v):,}" for v in values]
        else:
            shown[column] = ["" if pd.isna(v) else f"{float(v):.{digits}f}" for v in values]
    return shown


# ---- confusion matrix -------------------------------------------------------------------------------------------
def confusion_cells(evaluation: dict[str, Any]) -> list[tuple[int, int, int]]:
    """The off-diagonal cells holding mistakes, as (true, pred, count), the biggest confusion first."""
    counts = np.asarray(evaluation["confusion"], dtype=np.int64)
    cells = [(int(t), int(p), int(counts[t, p])) for t, p in zip(*np.nonzero(counts)) if t != p]
    return sorted(cells, key=lambda cell: (-cell[2], cell[0], cell[1]))


def cell_examples(evaluation: dict[str, Any], true: int, pred: int) -> list[dict[str, Any]]:
    """The stored misclassified validation images of one cell, most confident mistakes first."""
    rows = [m for m in evaluation.get("misclassified") or [] if m["true"] == true and m["pred"] == pred]
    return sorted(rows, key=lambda m: -m["confidence"])


def cell_from_points(points: Iterable[dict[str, Any]] | None) -> tuple[int, int] | None:
    """The (true, pred) cell of the first clicked point of a confusion figure's selection, or None."""
    for point in points or []:
        data = point.get("customdata")
        if isinstance(data, (list, tuple)) and len(data) >= 2:
            return int(data[0]), int(data[1])
    return None


def confusion_figure(evaluation: dict[str, Any], normalized: bool = False,
                     selected: tuple[int, int] | None = None) -> go.Figure:
    """The confusion matrix as a heatmap (rows: true class, columns: predicted class), counts or row-normalised.

    Plotly heatmaps report no selection, so an invisible marker sits on every cell (trace "cells", customdata
    [true, pred, count]): clicking a cell selects that marker. The selected cell, if any, is outlined.
    """
    # class labels come from the data (a CSV's label column): shown as typed in ticks and hovers, never as markup
    labels = [plotly_text(label) for label in evaluation["labels"]]
    counts = np.asarray(evaluation["confusion"], dtype=np.int64)
    share = np.asarray(evaluation["confusion_normalized"], dtype=np.float64)
    n = len(labels)
    z = share if normalized else counts
    text = [[f"{share[t, p]:.0%}" if normalized else str(counts[t, p]) for p in range(n)] for t in range(n)]
    heatmap = dict(type="heatmap", name="confusion", z=z.tolist(), x=list(range(n)), y=list(range(n)), text=text,
                   texttemplate="%{text}" if n <= 20 else None, colorscale="Blues", hoverinfo="skip",
                   zmin=0, zmax=1 if normalized else None,
                   # the title along the bar: written across it, "share of the true class" took half the width
                   colorbar=dict(title=dict(text="share of the true class" if normalized else "images", side="right"),
                                 thickness=14,
                                 tickformat=".0%" if normalized else None))
    true_idx, pred_idx = np.divmod(np.arange(n * n), n)
    hover = [f"true <b>{labels[t]}</b>, predicted <b>{labels[p]}</b><br>{counts[t, p]} images "
             f"({share[t, p]:.1%} of true {labels[t]})" + ("" if t == p else "<br>click to list them")
             for t, p in zip(true_idx, pred_idx)]
    size = max(8, min(48, 440 // max(n, 1)))
    cells = dict(type="scatter", name="cells", x=pred_idx.tolist(), y=true_idx.tolist(), mode="markers",
                 customdata=[[int(t), int(p), int(counts[t, p])] for t, p in zip(true_idx, pred_idx)],
                 text=hover, hovertemplate="%{text}<extra></extra>", showlegend=False,
                 marker=dict(symbol="square", size=size, color="rgba(0,0,0,0)"))
    shapes = []
    if selected is not None:
        t, p = selected
        shapes.append(dict(type="rect", x0=p - 0.5, x1=p + 0.5, y0=t - 0.5, y1=t + 0.5,
                           line=dict(color="#e15759", width=3)))
    axis = dict(tickmode="array", tickvals=list(range(n)), ticktext=labels, showgrid=False, zeroline=False)
    layout = dict(
        xaxis=dict(axis, title=dict(text="predicted class"), side="bottom"),
        yaxis=dict(axis, title=dict(text="true class"), autorange="reversed"),
        margin=dict(l=70, r=20, t=30, b=60), height=520, shapes=shapes, hovermode="closest",
        uirevision="confusion",
    )
    return go.Figure(data=[heatmap, cells], layout=layout)


def thumbnail(image: np.ndarray, scale: int = 3) -> np.ndarray:
    """A validation image [C, H, W] in [0, 1] as uint8 pixels for st.image, enlarged `scale` x without blurring."""
    array = np.asarray(image, dtype=np.float64)
    if array.ndim == 3 and array.shape[0] in (1, 3):
        array = array[0] if array.shape[0] == 1 else np.transpose(array, (1, 2, 0))
    array = np.clip(np.nan_to_num(array), 0.0, 1.0)
    pixels = np.round(array * 255).astype(np.uint8)
    if scale > 1:
        pixels = np.repeat(np.repeat(pixels, scale, axis=0), scale, axis=1)
    return pixels


# ---- per-layer statistics ---------------------------------------------------------------------------------------
LAYER_STAT_TITLES = {
    "update_ratio": "log10 update / data ratio",
    "act_mean": "activation mean", "act_std": "activation std",
    "act_grad_mean": "activation-gradient mean", "act_grad_std": "activation-gradient std",
    "dead_frac": "dead-unit fraction", "zero_frac": "fraction of outputs <= 0", "sat_frac": "saturated fraction",
    "grad_mean": "gradient mean", "grad_std": "gradient std",
}


def layer_names(metrics_df: pd.DataFrame, prefix: str) -> list[str]:
    """The layers (or parameters) logged under `prefix/`, in first-logged order (the model's order)."""
    keys = metrics_df["key"].astype(str)
    found = keys[keys.str.startswith(prefix + "/")].drop_duplicates()
    return [k.split("/", 1)[1] for k in found]


def layer_series(metrics_df: pd.DataFrame, prefix: str, names: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows of `prefix/<name>` as (name, step, value), sorted by name order then step."""
    rows = metrics_df[metrics_df["key"].astype(str).str.startswith(prefix + "/")]
    rows = rows.assign(name=rows["key"].str.split("/", n=1).str[1])
    order = list(names) if names is not None else layer_names(metrics_df, prefix)
    rows = rows[rows["name"].isin(order)]
    rows = rows.assign(_order=rows["name"].map({n: i for i, n in enumerate(order)}))
    return rows.sort_values(["_order", "step"], kind="stable")[["name", "step", "value"]].reset_index(drop=True)


def layer_stat_figure(metrics_df: pd.DataFrame, prefix: str, names: Sequence[str] | None = None, *,
                      y_title: str | None = None, reference: float | None = None, reference_label: str = "",
                      y_range: Sequence[float] | None = None, log_y: bool = False) -> go.Figure:
    """One line per layer/parameter of `prefix/<name>` over training steps, with an optional reference line."""
    series = layer_series(metrics_df, prefix, names)
    y_title = y_title or LAYER_STAT_TITLES.get(prefix, prefix)
    traces = []
    for i, (name, rows) in enumerate(series.groupby("name", sort=False)):
        traces.append(dict(type="scatter", x=rows["step"].to_numpy(), y=rows["value"].to_numpy(dtype=np.float64),
                           name=name, mode="lines+markers" if len(rows) < 30 else "lines",
                           line=dict(color=PALETTE[i % len(PALETTE)], width=2), marker=dict(size=4),
                           hovertemplate=f"{name}<br>step %{{x}}<br>{y_title} %{{y:.4g}}<extra></extra>"))
    shapes, annotations = [], []
    if reference is not None:
        shapes.append(dict(type="line", xref="paper", x0=0, x1=1, y0=reference, y1=reference,
                           line=dict(color="#444", dash="dash", width=1.5)))
        annotations.append(dict(xref="paper", x=1, y=reference, text=reference_label or f"{reference:g}",
                                showarrow=False, xanchor="right", yanchor="bottom", font=dict(size=11, color="#444")))
    yaxis = dict(title=dict(text=wrapped_title(y_title)), type="log" if log_y else "linear",
                 **(readable_log_axis(series["value"]) if log_y else {}))
    if y_range is not None:
        yaxis["range"] = list(y_range)
    layout = dict(xaxis=dict(title=dict(text="step"), **step_ticks(series["step"])), yaxis=yaxis,
                  shapes=shapes, annotations=annotations, hovermode="closest", height=340,
                  legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0),
                  margin=dict(l=60, r=20, t=40, b=50), uirevision=f"layer:{prefix}")
    return go.Figure(data=traces, layout=layout)


def update_ratio_figure(metrics_df: pd.DataFrame, names: Sequence[str] | None = None) -> go.Figure:
    """makemore's plot: log10(std(update) / std(weights)) per parameter tensor over steps, with the -3 line."""
    return layer_stat_figure(metrics_df, "update_ratio", names, y_title="log10 update / data ratio",
                             reference=UPDATE_RATIO_REFERENCE, reference_label="1e-3 (makemore)")


def matrix_param_names(metrics_df: pd.DataFrame, histogram: dict[str, Any] | None = None) -> list[str]:
    """The parameters whose update ratio is worth judging (2+ dim weights, as makemore plots them).

    Taken from a histogram artifact's weight gradients (which hold exactly those) when one is given,
    else every logged parameter named '*weight'; all parameters when neither finds any.
    """
    logged = layer_names(metrics_df, "update_ratio")
    if histogram and histogram.get("grads"):
        picked = [n for n in logged if n in histogram["grads"]]
        if picked:
            return picked
    return [n for n in logged if n.endswith("weight")] or logged


def histogram_figure(histogram: dict[str, Any], kind: str = "activations", step: int | None = None) -> go.Figure:
    """Histograms of one sampled step, one step-shaped line per layer (makemore's overlaid histograms).

    kind: "activations", "act_grads" (gradient w.r.t. each layer's output) or "grads" (weight gradients).
    Counts are shown as the fraction of the layer's values per bin, so layers of any size compare.
    step: the step shown in the title (default the artifact's own 0-based "step").
    """
    titles = {"activations": "activation", "act_grads": "activation gradient", "grads": "weight gradient"}
    layers = histogram.get(kind) or {}
    # in the model's order, input side first, as the activations list them: gradients are recorded backwards, and a
    # layer keeps its colour (and its place in the legend) across the three histograms
    order = [name for name in (histogram.get("activations") or {}) if name in layers]
    traces = []
    for i, name in enumerate(order + [name for name in layers if name not in order]):
        hist = layers[name]
        edges = np.asarray(hist["edges"], dtype=np.float64)
        counts = np.asarray(hist["counts"], dtype=np.float64)
        centers = (edges[:-1] + edges[1:]) / 2
        total = counts.sum()
        traces.append(dict(type="scatter", x=centers, y=counts / total if total else counts, name=name,
                           mode="lines", line=dict(color=PALETTE[i % len(PALETTE)], width=2, shape="hvh"),
                           hovertemplate=f"{name}<br>value %{{x:.3g}}<br>share %{{y:.2%}}<extra></extra>"))
    # a third of a page wide: at projector size four labels such as "-0.004" are turned, and turned, they overlap
    layout = dict(xaxis=dict(title=dict(text=f"{titles.get(kind, kind)} value"), nticks=3),
                  yaxis=dict(title=dict(text="share of values"), tickformat=".0%"),
                  title=dict(text=f"{titles.get(kind, kind)}s at step {histogram.get('step', '?') if step is None else step}",
                             font=dict(size=14), y=0.98, yanchor="top"),
                  hovermode="closest", height=360, legend=dict(orientation="h", yanchor="top", y=-0.25, x=0),
                  margin=dict(l=60, r=20, t=40, b=50), uirevision=f"hist:{kind}")
    return go.Figure(data=traces, layout=layout)


# ---- gradient norm and clipping ---------------------------------------------------------------------------------
def clipping_summary(metrics_df: pd.DataFrame) -> dict[str, float]:
    """{"steps", "clipped", "fraction"} from the per-step `clipped` flags (fraction NaN without steps)."""
    flags = metrics_df.loc[metrics_df["key"] == "clipped", "value"].to_numpy(dtype=np.float64)
    steps, clipped = int(flags.size), int((flags > 0).sum())
    return {"steps": steps, "clipped": clipped, "fraction": clipped / steps if steps else float("nan")}


def grad_norm_figure(metrics_df: pd.DataFrame, clip: str = "none", clip_value: float | None = None,
                     max_points: int = 1000) -> go.Figure:
    """Total gradient norm per step before clipping and, for norm clipping, after it (min(norm, threshold)).

    The engine logs the norm before clipping; 'norm' clipping rescales it to the threshold, so the norm
    after is exact. Element-wise ('value') clipping changes the norm by an amount not logged: only the
    norm before is drawn, with the threshold of the elements out of the picture.
    """
    rows = metrics_df[metrics_df["key"] == "grad_norm"].sort_values("step", kind="stable")
    steps, norms = rows["step"].to_numpy(dtype=np.float64), rows["value"].to_numpy(dtype=np.float64)
    x, y = downsample(steps, norms, max_points) if len(steps) else (steps, norms)
    traces = [dict(type="scatter", x=x, y=y, mode="lines", name="before clipping",
                   line=dict(color=PALETTE[0], width=1.5), hovertemplate="step %{x}<br>norm %{y:.4g}<extra></extra>")]
    shapes = []
    if clip == "norm" and clip_value is not None:
        after = np.minimum(norms, clip_value)
        xa, ya = downsample(steps, after, max_points) if len(steps) else (steps, after)
        traces.append(dict(type="scatter", x=xa, y=ya, mode="lines", name="after clipping",
                           line=dict(color=PALETTE[1], width=2),
                           hovertemplate="step %{x}<br>norm after %{y:.4g}<extra></extra>"))
        shapes.append(dict(type="line", xref="paper", x0=0, x1=1, y0=clip_value, y1=clip_value,
                           line=dict(color="#e15759", dash="dash", width=1.5)))
    layout = dict(xaxis=dict(title=dict(text="step")), yaxis=dict(title=dict(text="gradient norm (L2, all parameters)")),
                  shapes=shapes, hovermode="closest", height=340,
                  legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0),
                  margin=dict(l=60, r=20, t=40, b=50), uirevision="grad_norm")
    return go.Figure(data=traces, layout=layout)


# ---- learning-rate finder ---------------------------------------------------------------------------------------
SUGGESTION_TITLES = {"valley": "valley", "steepest": "steepest descent"}
SUGGESTION_COLORS = {"valley": "#59a14f", "steepest": "#e15759"}


def lr_sweep_frame(metrics_df: pd.DataFrame) -> pd.DataFrame:
    """The sweep points an lr_find job has logged so far: (step, lr, loss, smoothed), by step."""
    rows = metrics_df[metrics_df["key"].isin(LR_FIND_KEYS)]
    if rows.empty:
        return pd.DataFrame(columns=["step", "lr", "loss", "smoothed"])
    wide = rows.pivot_table(index="step", columns="key", values="value", aggfunc="last").sort_index()
    wide = wide.rename(columns={key: field for field, key in LR_FIND_POINT.items()})
    wide = wide.reindex(columns=["lr", "loss", "smoothed"]).dropna(subset=["lr"])
    wide.columns.name = None
    return wide.reset_index()[["step", "lr", "loss", "smoothed"]]


def lr_finder_figure(lrs: Sequence[float], losses: Sequence[float], smoothed: Sequence[float],
                     suggestions: dict[str, dict[str, Any]] | None = None, live: bool = False) -> go.Figure:
    """fast.ai's plot: smoothed loss against the learning rate on a log axis, raw loss faint behind,
    and each suggestion (steepest descent, valley) marked on the smoothed curve.

    The y axis stops a little above the start of the curve, so the explosion that ended the sweep does not
    squash the part that matters.
    """
    lrs = np.asarray(lrs, dtype=np.float64)
    losses = np.asarray(losses, dtype=np.float64)
    smoothed = np.asarray(smoothed, dtype=np.float64)
    traces = [
        dict(type="scatter", x=lrs, y=losses, mode="lines", name="loss (raw)", opacity=0.3,
             line=dict(color=PALETTE[0], width=1), hoverinfo="skip"),
        dict(type="scatter", x=lrs, y=smoothed, mode="lines", name="smoothed loss",
             line=dict(color=PALETTE[0], width=2.5), hovertemplate="lr %{x:.3g}<br>smoothed loss %{y:.4g}<extra></extra>"),
    ]
    for name, suggestion in (suggestions or {}).items():
        lr, loss = suggestion.get("lr"), suggestion.get("loss")
        if lr is None or loss is None:
            continue
        label = f"{SUGGESTION_TITLES.get(name, name)}: lr={lr:.2g}"
        traces.append(dict(type="scatter", x=[lr], y=[loss], mode="markers+text", name=label,
                           text=[label], textposition="top center" if name == "valley" else "bottom left",
                           marker=dict(color=SUGGESTION_COLORS.get(name, "#000"), size=13, symbol="circle",
                                       line=dict(color="white", width=1.5)),
                           hovertemplate=f"{label}<br>smoothed loss %{{y:.4g}}<extra></extra>"))
    finite = smoothed[np.isfinite(smoothed)]
    y_range = None
    if finite.size >= 2:
        head = finite[: max(1, finite.size // 10)]
        low, high = float(finite.min()), float(min(finite.max(), head.max() * 1.25))
        pad = 0.05 * (high - low or 1.0)
        y_range = [low - pad, high + pad]
    layout = dict(
        xaxis=dict(title=dict(text="learning rate (log scale)"), type="log", exponentformat="power"),
        yaxis=dict(title=dict(text="training loss"), range=y_range),
        title=dict(text="LR finder: sweep in progress..." if live else "LR finder", font=dict(size=14)),
        hovermode="closest", height=400, legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0),
        margin=dict(l=60, r=20, t=70, b=50), uirevision="lr_finder",
    )
    return go.Figure(data=traces, layout=layout)


def suggested_lr(result: dict[str, Any], which: str) -> float | None:
    """The lr of one suggestion ('valley' or 'steepest') of an lr_find result, None when the sweep made none."""
    suggestion = (result.get("suggestions") or {}).get(which) or {}
    value = suggestion.get("lr", result.get(f"suggestion_{which}"))
    return float(value) if value is not None and math.isfinite(value) else None


# ---- overfit one batch ------------------------------------------------------------------------------------------
def overfit_figure(curve: Sequence[float | None], target_loss: float | None = None) -> go.Figure:
    """The loss of the single batch per step (log y), with the target the check aims below."""
    y = np.asarray([np.nan if v is None else v for v in curve], dtype=np.float64)
    traces = [dict(type="scatter", x=np.arange(len(y)), y=y, mode="lines+markers" if len(y) < 40 else "lines",
                   name="loss on the batch", line=dict(color=PALETTE[0], width=2), marker=dict(size=4),
                   hovertemplate="step %{x}<br>loss %{y:.4g}<extra></extra>")]
    shapes = []
    if target_loss is not None:
        shapes.append(dict(type="line", xref="paper", x0=0, x1=1, y0=target_loss, y1=target_loss,
                           line=dict(color="#59a14f", dash="dash", width=1.5)))
    layout = dict(xaxis=dict(title=dict(text="step"), **step_ticks(np.arange(len(y)))),
                  yaxis=dict(title=dict(text="loss"), type="log", **readable_log_axis(y)),
                  shapes=shapes, height=300, showlegend=False, margin=dict(l=60, r=20, t=20, b=50),
                  hovermode="closest")
    return go.Figure(data=traces, layout=layout)
