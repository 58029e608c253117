"""Plotly figure builders for the live curves and the run comparison.

Pure functions, DataFrame in and plotly Figure out, so tests check them without a browser; no
streamlit, no torch. `metric_chart` is the one builder of a metric chart: it first describes the chart as a list of
`Curve`s (exactly the points that will be drawn, already smoothed and downsampled), then turns them into traces;
the same curves give the table offered as a CSV download (`MetricChart.data`), so the two always agree. How a
chart is drawn (x axis, smoothing, grouping...) is one `ChartOptions` value. Also here: the clipped-fraction chart,
the final-metrics table, the learning-rate schedule preview and the per-layer chart of the lessons.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from app.charts.palette import PALETTE, run_colors, seed_shaded_colors
from app.charts.series import (
    X_TITLES,
    band_across,
    downsample_indices,
    group_labels,
    ordered_groups,
    run_series,
    smooth_ema,
)
from app.charts.text import plotly_text
from engine.records import AVERAGED_PREFIXES, epoch_label, is_epoch_level

# Plotly checks every property of a figure as it is built: ~30 ms for a chart of 16 lines of 1,000 points, ~4 ms
# without. The metric charts are built from the same few dict shapes every time, so the server skips the check
# (a class's Compare view rebuilds five of them every few seconds), and the tests turn it on
# (TRAINLENS_VALIDATE_FIGURES=1 in tests/conftest.py) for every figure they build, where a misspelt property fails.
VALIDATE = os.environ.get("TRAINLENS_VALIDATE_FIGURES", "0") == "1"

# Above this many points in one figure, WebGL (Scattergl) draws faster than SVG paths. Never for a figure with bands:
# software WebGL (kiosks, classroom PCs without a GPU driver) does not draw fills, and a band's points are
# downsampled anyway.
GL_MIN_POINTS = 4000

METRIC_TITLES = {
    "loss": "training loss (per batch)",
    "lr": "learning rate",
    "grad_norm": "gradient norm (L2, before clipping)",
    "clipped": "clipped (0/1)",
    "clipped_fraction": "fraction of steps clipped",
    "examples": "examples seen",
    "train_loss": "training loss (epoch mean)",
    "train_acc": "training accuracy",
    "val_loss": "validation loss",
    "val_acc": "validation accuracy",
    "val_precision": "validation precision",
    "val_recall": "validation recall",
    "val_bpc": "validation bits per character",
    "val_new": "share of samples that are new",
    "val_real": "share of samples that are held-out names",
    "val_distinct": "share of distinct samples",
    "chars_per_s": "characters trained per second",
    "val_f1": "validation F1",
    "examples_per_s": "throughput (examples/s)",
}
_PRIMARY_DASHES = ("solid", "longdash", "dashdot", "longdashdot")  # one per requested key
_AVERAGED_DASHES = {"ema_": "dash", "swa_": "dot"}  # EMA/SWA twins drawn dashed beside the raw key


def metric_title(key: str, labels: Mapping[str, str] | None = None) -> str:
    """Display title of a metric key; EMA/SWA twins are named after the key they average."""
    if labels and key in labels:
        return str(labels[key])
    for prefix in AVERAGED_PREFIXES:
        if key.startswith(prefix):
            return f"{prefix[:-1].upper()} {metric_title(key.removeprefix(prefix), labels)}"
    return METRIC_TITLES.get(key, key)


@dataclass(frozen=True)
class ChartOptions:
    """How a metric chart is drawn (metric_chart): its figure and its CSV data hold the same points.

    x_axis: step, epoch, examples or wall_time. smoothing in [0, 1): TensorBoard's debiased EMA,
    drawn solid over the faint raw series; it runs on the full series, then each trace is
    downsampled to at most max_points (min/max per bucket) so the browser gets what it can draw.
    group_by: a config column such as "cfg.optimizer" draws one mean line per group with a
    translucent band, mean ± std (ddof=0) when band="std" or the min-max range when band="minmax".
    averaged: draw the EMA/SWA twins (ema_<key>, swa_<key>) of epoch-level keys when logged.
    labels: display text for metric keys and x-axis names. log_y and labels change only the look,
    not the data.
    """

    x_axis: str = "step"
    smoothing: float = 0.0
    log_y: bool = False
    group_by: str | None = None
    band: str = "std"
    max_points: int = 1000
    labels: Mapping[str, str] | None = None
    averaged: bool = True


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


def _finite_or_nan(values: np.ndarray) -> np.ndarray:
    # +-inf (a diverged loss) would wreck the axis range: draw it as a gap
    return np.where(np.isfinite(values), values, np.nan)


def _picked(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    keep = downsample_indices([y], max_points)
    return x[keep], _finite_or_nan(y[keep])


def _keys(key: str | Sequence[str]) -> list[str]:
    return [key] if isinstance(key, str) else list(dict.fromkeys(key))


def _curves(
    metrics_df: pd.DataFrame, runs_df: pd.DataFrame, key: str | Sequence[str], options: ChartOptions
) -> list[Curve]:
    """Everything a chart draws, in drawing order (smoothed after its faint raw series)."""
    x_axis, smoothing, group_by, max_points = options.x_axis, options.smoothing, options.group_by, options.max_points
    primary = _keys(key)
    dashes = {k: _PRIMARY_DASHES[i % len(_PRIMARY_DASHES)] for i, k in enumerate(primary)}
    if options.averaged:
        for k in primary:
            if is_epoch_level(k) and not k.startswith(AVERAGED_PREFIXES):
                dashes.update({prefix + k: dash for prefix, dash in _AVERAGED_DASHES.items()})
    marker_key = next((k for k in primary if is_epoch_level(k)), None)
    wanted = list(dashes) + (["best_epoch"] if marker_key and group_by is None else [])
    starts = None
    if x_axis == "wall_time" and "started_at" in runs_df.columns:
        starts = {str(r): float(t) for r, t in zip(runs_df["run_id"], runs_df["started_at"]) if pd.notna(t)}
    all_series = run_series(metrics_df, wanted, x_axis, starts)
    series = [s for s in all_series if s.key != "best_epoch"]
    several = len({s.key for s in series}) > 1

    def label(name: str, k: str) -> str:
        return f"{name} · {k}" if several else name

    if group_by is not None:
        return _band_curves(series, runs_df, group_by, dashes, label, smoothing, options.band, max_points)

    names = {str(r): str(n) for r, n in zip(runs_df["run_id"], runs_df["name"])}
    colors = seed_shaded_colors(runs_df, list(names) + [s.run_id for s in series])
    position = {run_id: i for i, run_id in enumerate(names)}  # legend follows the runs table
    curves = []
    for s in sorted(series, key=lambda s: position.get(s.run_id, len(position))):
        name, color = label(names.get(s.run_id, s.run_id), s.key), colors[s.run_id]
        if smoothing > 0:
            x, y = _picked(s.x, s.y, max_points)
            curves.append(Curve(f"{name} (raw)", s.run_id, s.key, "raw", x, y, color, dashes[s.key], faint=True))
            x, y = _picked(s.x, smooth_ema(s.y, smoothing), max_points)
            curves.append(Curve(name, s.run_id, s.key, "smoothed", x, y, color, dashes[s.key]))
        else:
            x, y = _picked(s.x, s.y, max_points)
            curves.append(Curve(name, s.run_id, s.key, "raw", x, y, color, dashes[s.key]))
    best = {s.run_id: int(s.y[-1]) for s in all_series if s.key == "best_epoch" and s.y.size}
    for s in series:
        if s.key == marker_key and s.run_id in best:
            at = np.flatnonzero(s.epoch == best[s.run_id])
            if at.size:
                # the stored 0-based index: on the epoch axis the point sits at index + 1 (epochs completed)
                name = f"{names.get(s.run_id, s.run_id)} best ({epoch_label(best[s.run_id])})"
                curves.append(
                    Curve(name, s.run_id, s.key, "best_epoch", s.x[at[-1:]], s.y[at[-1:]], colors[s.run_id])
                )
    return curves


def _band_curves(series, runs_df, group_by, dashes, label, smoothing, band, max_points) -> list[Curve]:
    groups = group_labels(runs_df, group_by)
    order = ordered_groups(runs_df, group_by)
    colors = run_colors(order)
    curves = []
    for group in order:
        for k in dashes:
            members = [s for s in series if s.key == k and groups.get(s.run_id) == group]
            if not members:
                continue
            table = band_across([s.x for s in members], [smooth_ema(s.y, smoothing) for s in members], band)
            mean, lower, upper = (table[c].to_numpy() for c in ("mean", "lower", "upper"))
            keep = downsample_indices([mean, lower, upper], max_points)
            curves.append(
                Curve(
                    label(f"{group} (n={len(members)})", k), group, k, "mean", table["x"].to_numpy()[keep],
                    _finite_or_nan(mean[keep]), colors[group], dashes[k],
                    lower=_finite_or_nan(lower[keep]), upper=_finite_or_nan(upper[keep]),
                )
            )
    return curves


@dataclass(frozen=True)
class MetricChart:
    """A metric chart as `metric_chart` builds it: the figure, and the curves it draws (exactly its points)."""

    figure: go.Figure
    curves: list[Curve]

    def data(self) -> pd.DataFrame:
        """The drawn points, long format, for the CSV download: series, run_id (or group), key, kind (raw, smoothed,
        mean, best_epoch), x, y, and the band's lower/upper (NaN outside bands). Made when asked: a live page offers
        the CSV built on click, not on every refresh (tens of ms per chart)."""
        columns = ["series", "run_id", "key", "kind", "x", "y", "lower", "upper"]
        frames = [
            pd.DataFrame(
                {
                    "series": c.series, "run_id": c.run_id, "key": c.key, "kind": c.kind, "x": c.x, "y": c.y,
                    "lower": c.lower if c.lower is not None else np.nan,
                    "upper": c.upper if c.upper is not None else np.nan,
                }
            )
            for c in self.curves
        ]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def _rgba(color: str, alpha: float) -> str:
    red, green, blue = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


def _traces(curves: list[Curve], x_title: str, labels: Mapping[str, str] | None) -> list[dict]:
    """Plotly trace specs. Plain dicts: go.Figure validates them once, where trace objects are
    validated, then deep-copied into the figure (about 3x the time for a 24-trace chart)."""
    total = sum(c.x.size * (3 if c.lower is not None else 1) for c in curves)
    banded = any(c.lower is not None for c in curves)
    # one kind per figure: gl draws on top
    kind = "scattergl" if total > GL_MIN_POINTS and not banded else "scatter"
    traces = []
    for c in curves:
        y_title = metric_title(c.key, labels)
        hover = f"%{{fullData.name}}<br>{x_title}: %{{x:.6g}}<br>{y_title}: %{{y:.4g}}<extra></extra>"
        common = dict(type=kind, legendgroup=c.run_id, x=c.x)
        if c.kind == "best_epoch":
            marker = dict(color=c.color, symbol="star", size=13, line=dict(color="white", width=1))
            traces.append(dict(common, y=c.y, name=plotly_text(c.series), mode="markers", showlegend=False, hovertemplate=hover,
                               marker=marker))
            continue
        if c.lower is not None:
            edge = dict(common, mode="lines", line=dict(width=0, color=c.color), showlegend=False, hoverinfo="skip")
            traces.append(dict(edge, y=c.lower, name=plotly_text(f"{c.series} (lower)")))
            traces.append(dict(edge, y=c.upper, name=plotly_text(f"{c.series} (upper)"), fill="tonexty",
                               fillcolor=_rgba(c.color, 0.2)))
        alone = int(np.isfinite(c.y).sum()) == 1  # one point (a first validation epoch): a line would not show it
        traces.append(
            dict(
                common, y=c.y, name=plotly_text(c.series), mode="lines+markers" if alone else "lines",
                marker=dict(color=c.color, size=9), showlegend=not c.faint, hovertemplate=hover,
                opacity=0.25 if c.faint else 1.0, line=dict(color=c.color, dash=c.dash, width=1 if c.faint else 2),
            )
        )
    return traces


def _layout(x_title: str, y_title: str, log_y: bool, revision: str, shapes: list | None = None) -> dict:
    # passed whole to go.Figure: update_layout / add_vline validate property by property (~8 ms each)
    return dict(
        xaxis=dict(title=dict(text=x_title)),
        yaxis=dict(title=dict(text=y_title), type="log" if log_y else "linear"),
        hovermode="closest",
        legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0),
        margin=dict(l=60, r=20, t=40, b=50),
        **({"shapes": shapes} if shapes else {}),  # no empty list: a validated figure drops it, so both read alike
        # keep the user's zoom and hidden traces across live refreshes of the same chart
        uirevision=revision,
    )


def metric_chart(
    metrics_df: pd.DataFrame,
    runs_df: pd.DataFrame,
    key: str | Sequence[str],
    options: ChartOptions = ChartOptions(),
) -> MetricChart:
    """The chart of one metric key (or several on one chart) for the runs in metrics_df, drawn as `options` says:
    its figure and the curves it draws, from one pass over the data (`.data()` is the chart's CSV).

    One line per run, named by the run's name and coloured by run_colors; or, grouped, one mean
    line per group with its band. For epoch-level keys, the EMA/SWA twins are drawn dashed/dotted,
    and a run's early-stopping best epoch gets a star and a dashed vertical line.
    """
    curves = _curves(metrics_df, runs_df, key, options)
    x_axis, log_y, labels = options.x_axis, options.log_y, options.labels
    x_title = (labels or {}).get(x_axis, X_TITLES.get(x_axis, x_axis))
    best_epoch_lines = [
        dict(type="line", xref="x", yref="paper", x0=float(c.x[0]), x1=float(c.x[0]), y0=0, y1=1, opacity=0.7,
             line=dict(color=c.color, dash="dash", width=1))
        for c in curves if c.kind == "best_epoch"
    ]
    y_title = " / ".join(metric_title(k, labels) for k in _keys(key))
    layout = _layout(x_title, y_title, log_y, f"{'|'.join(_keys(key))}@{x_axis}", best_epoch_lines)
    drawn = [c.y for c in curves if c.kind != "best_epoch"]
    if not any(np.isfinite(y).any() for y in drawn):
        # Plotly's empty axes read -1..4, which looks like data: say what the chart is waiting for
        layout["xaxis"] = dict(layout["xaxis"], showticklabels=False, showgrid=False, zeroline=False)
        layout["yaxis"] = dict(layout["yaxis"], showticklabels=False, showgrid=False, zeroline=False, type="linear")
        layout["annotations"] = [dict(text="waiting for the first point", showarrow=False, xref="paper", yref="paper",
                                      x=0.5, y=0.5, font=dict(size=16, color="#555555"))]
    else:
        flat = _flat_range(drawn, log_y)
        if flat is not None:
            layout["yaxis"] = dict(layout["yaxis"], range=flat)
        if log_y:
            ticks = log_ticks(np.concatenate([y[np.isfinite(y) & (y > 0)] for y in drawn]))
            if ticks:
                layout["yaxis"] = dict(layout["yaxis"], tickvals=ticks, ticktext=[f"{t:g}" for t in ticks])
    figure = go.Figure(data=_traces(curves, x_title, labels), layout=layout, _validate=VALIDATE)
    return MetricChart(figure, curves)


def log_ticks(values: np.ndarray, most: int = 12) -> list[float]:
    """Readable ticks for a log axis over `values`: 1-2-5 per decade (1, 2, 5, 10, 20...), or only the powers of ten
    when that would be more than `most` ticks. Plotly's own log ticks label 2 and 5 without their decade ("5, 2,
    0.1, 5"), which reads as nonsense. Empty when there is nothing positive to label."""
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return []
    low, high = np.floor(np.log10(values.min())), np.ceil(np.log10(values.max()))
    decades = np.arange(low, high + 1)
    ticks = [m * 10.0 ** d for d in decades for m in (1, 2, 5)]
    ticks = [t for t in ticks if values.min() / 1.5 <= t <= values.max() * 1.5]
    if len(ticks) > most:
        ticks = [10.0 ** d for d in decades if values.min() / 10 <= 10.0 ** d <= values.max() * 10]
    return [float(f"{t:.6g}") for t in ticks]


def _flat_range(ys: list[np.ndarray], log_y: bool) -> list[float] | None:
    """A y range from 0 to just above the value when every curve is one constant (e.g. a constant lr).

    Plotly's autorange centres a flat line in [v - 1, v + 1], which draws lr = 0.002 at "0"."""
    values = np.concatenate([y[np.isfinite(y)] for y in ys]) if ys else np.array([])
    if log_y or values.size == 0 or values.min() != values.max() or values.max() <= 0:
        return None
    return [0.0, float(values.max()) * 1.1]


def clipped_fraction(metrics_df: pd.DataFrame, window: int) -> pd.DataFrame:
    """Rolling fraction of steps whose gradient was clipped, per run, over the last `window` steps.

    Returned in the metrics long format (run_id, step, epoch, key="clipped_fraction", value,
    wall_time) so metric_chart can plot it on any x axis. The first steps average what exists.
    """
    if window < 1:
        raise ValueError(f"window={window!r}: must be >= 1 step")
    rows = metrics_df[metrics_df["key"] == "clipped"].sort_values(["run_id", "step"], kind="stable")
    fraction = rows.groupby("run_id", sort=False)["value"].transform(
        lambda values: values.rolling(window, min_periods=1).mean()
    )
    return rows.assign(key="clipped_fraction", value=fraction.astype(np.float64))[
        ["run_id", "step", "epoch", "key", "value", "wall_time"]
    ].reset_index(drop=True)


def clipped_fraction_figure(
    metrics_df: pd.DataFrame, runs_df: pd.DataFrame, window: int = 100, options: ChartOptions = ChartOptions()
) -> go.Figure:
    """The metric chart's figure of clipped_fraction, y fixed to [0, 1]; labels in `options` win over its title."""
    derived = pd.concat([clipped_fraction(metrics_df, window), metrics_df[metrics_df["key"] == "examples"]])
    labels = {"clipped_fraction": f"fraction of steps clipped (last {window} steps)", **(options.labels or {})}
    fig = metric_chart(derived, runs_df, "clipped_fraction", replace(options, labels=labels)).figure
    return fig.update_yaxes(range=[-0.02, 1.02])


# The epoch-level keys final_metrics_table reads: what a page fetches for it. The table also reads the per-step
# `loss`, only for a run without train_loss, and a long run logs hundreds of thousands of those rows.
FINAL_TABLE_KEYS = ("val_acc", "train_loss", "best_epoch")


def final_metrics_table(metrics_df: pd.DataFrame, runs_df: pd.DataFrame) -> pd.DataFrame:
    """One row per run (runs_df order): the numbers that sum a run up.

    Columns: run_id, name, status, best_val_acc, final_val_acc, final_train_loss (the last
    epoch's train_loss, else the last batch loss), best_epoch (0-based index logged by early
    stopping, else the epoch of the best val_acc), steps (last step logged) and duration_s
    (finished_at - started_at; while running, up to the last logged row).
    """
    wanted = metrics_df[metrics_df["key"].isin([*FINAL_TABLE_KEYS, "loss"])]
    wanted = wanted[wanted["value"].notna()].sort_values(["run_id", "step"], kind="stable")
    last = wanted.groupby(["run_id", "key"])["value"].last()
    val = wanted[wanted["key"] == "val_acc"]
    best_val = val.groupby("run_id")["value"].max()
    epoch_of_best = val.loc[val.groupby("run_id")["value"].idxmax()].set_index("run_id")["epoch"]
    progress = metrics_df.groupby("run_id").agg(steps=("step", "max"), last_time=("wall_time", "max"))
    run_ids = runs_df["run_id"].astype(str)

    def by_run(per_run: pd.Series) -> pd.Series:
        return run_ids.map(per_run).astype(np.float64)

    def last_of(key: str) -> pd.Series:
        return by_run(last.xs(key, level="key") if key in last.index.get_level_values("key") else pd.Series())

    end = runs_df["finished_at"].where(runs_df["finished_at"].notna(), by_run(progress["last_time"]))
    steps = by_run(progress["steps"])
    if "step" in runs_df:  # the store's own step counter: the metrics passed may hold epoch rows only
        steps = runs_df["step"].astype(np.float64).where(runs_df["step"].astype(np.float64) > 0, steps).reset_index(drop=True)
    return pd.DataFrame(
        {
            "run_id": run_ids,
            "name": runs_df["name"],
            "status": runs_df["status"],
            "best_val_acc": by_run(best_val),
            "final_val_acc": last_of("val_acc"),
            "final_train_loss": last_of("train_loss").fillna(last_of("loss")),
            "best_epoch": last_of("best_epoch").fillna(by_run(epoch_of_best)).astype("Int64"),
            "steps": steps.astype("Int64"),
            "duration_s": (end - runs_df["started_at"]).astype(np.float64),
        }
    ).reset_index(drop=True)


def lr_schedule_figure(
    steps: np.ndarray, lrs: np.ndarray, title: str = "learning-rate schedule", *, log_y: bool = False,
    max_points: int = 1000,
) -> go.Figure:
    """The learning rate the schedule will give at each step, previewed before launch."""
    steps = np.asarray(steps, dtype=np.float64)
    x, y = _picked(steps, np.asarray(lrs, dtype=np.float64), max_points)
    trace = dict(type="scatter", x=x, y=y, mode="lines", name="learning rate", line=dict(color=PALETTE[0], width=2),
                 hovertemplate="step %{x:.0f}<br>lr %{y:.4g}<extra></extra>")
    layout = _layout(X_TITLES["step"], METRIC_TITLES["lr"], log_y, f"schedule:{title}")
    finite = y[np.isfinite(y)]
    if not log_y and finite.size:
        # from 0 to just above the peak: a constant schedule is a flat line at its value, not at an autoscaled 0
        layout["yaxis"] = dict(layout["yaxis"], range=[0.0, float(finite.max()) * 1.1 or 1.0])
    return go.Figure(data=[trace], layout=dict(layout, title=dict(text=title), showlegend=False))


def per_layer_figure(metrics_df: pd.DataFrame, runs_df: pd.DataFrame, statistic: str, group_by: str,
                     log_y: bool = True, layers_pattern: str = "") -> go.Figure:
    """A per-layer statistic (`statistic/<layer>` rows, e.g. grad_std) at each run's latest sampled step, across the
    layers from input to output: one line per value of `group_by` (the mean over its runs, e.g. seeds).

    Layers are ordered as the model logs them (its parameter order: input first), which the rows' ids keep; this
    is the picture of vanishing gradients: the line falling towards the input layers. `layers_pattern` (a regular
    expression) keeps the layers it matches, e.g. the convolution and linear weights only."""
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
        by_run = run_colors(runs_df["run_id"])
        colors = {g: by_run[members[g][0]] for g in order}
    else:  # the colours the grouped charts give these groups
        colors = run_colors(order)
    for group in order:
        values = table.loc[group]
        fig.add_trace(go.Scatter(x=list(range(1, len(layers) + 1)), y=values.to_numpy(dtype=float),
                                 mode="lines+markers", name=plotly_text(group), customdata=layers,
                                 hovertemplate="%{customdata}: %{y:.3g}<extra>%{fullData.name}</extra>",
                                 line=dict(color=colors[group], width=2.5)))
    fig.update_layout(height=320, margin=dict(l=0, r=0, t=10, b=0), legend=dict(orientation="h", y=-0.25),
                      xaxis=dict(title=f"layer (1 = input side, {len(layers)} = output)", dtick=1 if len(layers) <= 12
                                 else None),
                      yaxis=dict(title=metric_title(prefix[:-1]), type="log" if log_y else "linear"))
    if log_y and (ticks := log_ticks(table.to_numpy(dtype=float).ravel())):
        fig.update_yaxes(tickvals=ticks, ticktext=[f"{t:g}" for t in ticks])
    return fig
