"""Plotly figure builders for the live curves and the run comparison.

Pure functions, DataFrame in and plotly Figure out, so tests check them without a browser; no
streamlit, no torch. `metric_chart` is the one builder of a metric chart: it first describes the chart as a list of
`Curve`s (exactly the points that will be drawn, already smoothed and downsampled), then turns them into traces;
the same curves give the table offered as a CSV download (`MetricChart.data`), so the two always agree. How a
chart is drawn (x axis, smoothing, grouping...) is one `ChartOptions` value. Also here: the clipped-fraction chart,
the final-metrics table, the learning-rate schedule preview and the per-layer chart of the lessons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from app.charts.arms import group_colors, view_colors
from app.charts.axes import log_ticks, padded_range, step_ticks, tick_texts, whole_ticks, wrapped_title
from app.charts.curves import Curve
from app.charts.diverged import marks, shown_values
from app.charts.palette import PALETTE
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
from engine import settings
from engine.records import AVERAGED_PREFIXES, epoch_label, is_epoch_level

# Plotly checks every property of a figure as it is built: ~30 ms for a chart of 16 lines of 1,000 points, ~4 ms
# without. The metric charts are built from the same few dict shapes every time, so the server skips the check
# (a class's Compare view rebuilds five of them every few seconds), and the tests turn it on
# (TRAINLENS_VALIDATE_FIGURES=1 in tests/conftest.py) for every figure they build, where a misspelt property fails.
VALIDATE = settings.value_or_default("TRAINLENS_VALIDATE_FIGURES")

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
    # per-layer statistics (engine/diagnostics/layer_stats.py), titled by their prefix on the per-layer charts
    "act_mean": "activation mean",
    "act_std": "activation std",
    "act_grad_mean": "mean gradient at the layer's output",
    "act_grad_std": "gradient std at the layer's output",
    "dead_frac": "fraction of dead units",
    "zero_frac": "fraction of outputs at zero",
    "sat_frac": "fraction of saturated outputs",
    "grad_mean": "weight gradient mean",
    "grad_std": "weight gradient std",
    "update_ratio": "update / weight (log10)",
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
    not the data. arms: the view's arms in colour order, when the runs frame has an `arm` column
    (app/charts/arms.py): every chart of the view then gives an arm the same colour, whichever runs it shows.
    """

    x_axis: str = "step"
    smoothing: float = 0.0
    log_y: bool = False
    group_by: str | None = None
    band: str = "std"
    max_points: int = 1000
    labels: Mapping[str, str] | None = None
    averaged: bool = True
    arms: tuple[str, ...] = ()


def _finite_or_nan(values: np.ndarray) -> np.ndarray:
    # +-inf (a diverged loss) would wreck the axis range: draw it as a gap
    return np.where(np.isfinite(values), values, np.nan)


def _ends_diverged(y: np.ndarray) -> bool:
    """A diverged run's series: the step whose loss was not finite is the last one it logged (engine/train.py)."""
    finite = np.isfinite(y)
    return bool(finite.size and not finite[-1] and finite.any())


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
        return _band_curves(series, runs_df, group_by, dashes, label, options)

    names = {str(r): str(n) for r, n in zip(runs_df["run_id"], runs_df["name"])}
    colors = view_colors(runs_df, options.arms)
    for s in series:  # rows of a run the runs frame does not list: a colour of their own
        colors.setdefault(s.run_id, PALETTE[len(colors) % len(PALETTE)])
    position = {run_id: i for i, run_id in enumerate(names)}  # legend follows the runs table
    curves = []
    for s in sorted(series, key=lambda s: position.get(s.run_id, len(position))):
        name, color = label(names.get(s.run_id, s.run_id), s.key), colors[s.run_id]
        diverged = "diverged" if _ends_diverged(s.y) else ""
        if smoothing > 0:
            x, y = _picked(s.x, s.y, max_points)
            curves.append(Curve(f"{name} (raw)", s.run_id, s.key, "raw", x, y, color, dashes[s.key], faint=True,
                                diverged=diverged))
            x, y = _picked(s.x, smooth_ema(s.y, smoothing), max_points)
            curves.append(Curve(name, s.run_id, s.key, "smoothed", x, y, color, dashes[s.key], diverged=diverged))
        else:
            x, y = _picked(s.x, s.y, max_points)
            curves.append(Curve(name, s.run_id, s.key, "raw", x, y, color, dashes[s.key], diverged=diverged))
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


def _band_curves(series, runs_df, group_by, dashes, label, options: ChartOptions) -> list[Curve]:
    smoothing, band, max_points = options.smoothing, options.band, options.max_points
    groups = group_labels(runs_df, group_by)
    order = ordered_groups(runs_df, group_by)
    colors = group_colors(runs_df, group_by, order, options.arms)
    curves = []
    for group in order:
        for k in dashes:
            members = [s for s in series if s.key == k and groups.get(s.run_id) == group]
            if not members:
                continue
            table = band_across([s.x for s in members], [smooth_ema(s.y, smoothing) for s in members], band)
            mean, lower, upper = (table[c].to_numpy() for c in ("mean", "lower", "upper"))
            keep = downsample_indices([mean, lower, upper], max_points)
            lost = sum(_ends_diverged(s.y) for s in members)
            diverged = "" if not lost else "diverged" if lost == len(members) else f"{lost} of {len(members)} diverged"
            curves.append(
                Curve(
                    label(f"{group} (n={len(members)})", k), group, k, "mean", table["x"].to_numpy()[keep],
                    _finite_or_nan(mean[keep]), colors[group], dashes[k],
                    lower=_finite_or_nan(lower[keep]), upper=_finite_or_nan(upper[keep]), diverged=diverged,
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

    One line per run, named by the run's name and coloured by its arm (app/charts/arms.py); or, grouped, one mean
    line per group with its band. For epoch-level keys, the EMA/SWA twins are drawn dashed/dotted,
    and a run's early-stopping best epoch gets a star and a dashed vertical line. A diverged run ends in a marked
    point and leaves the y range to the healthy runs (app/charts/diverged.py); ticks are few and readable
    (app/charts/axes.py).
    """
    curves = _curves(metrics_df, runs_df, key, options)
    x_axis, log_y, labels = options.x_axis, options.log_y, options.labels
    x_title = (labels or {}).get(x_axis, X_TITLES.get(x_axis, x_axis))
    best_epoch_lines = [
        dict(type="line", xref="x", yref="paper", x0=float(c.x[0]), x1=float(c.x[0]), y0=0, y1=1, opacity=0.7,
             line=dict(color=c.color, dash="dash", width=1))
        for c in curves if c.kind == "best_epoch"
    ]
    y_title = wrapped_title(" / ".join(metric_title(k, labels) for k in _keys(key)))
    layout = _layout(x_title, y_title, log_y, f"{'|'.join(_keys(key))}@{x_axis}", best_epoch_lines)
    drawn = [c.y for c in curves if c.kind != "best_epoch"]
    marked: list[dict] = []
    if not any(np.isfinite(y).any() for y in drawn):
        # Plotly's empty axes read -1..4, which looks like data: say what the chart is waiting for
        layout["xaxis"] = dict(layout["xaxis"], showticklabels=False, showgrid=False, zeroline=False)
        layout["yaxis"] = dict(layout["yaxis"], showticklabels=False, showgrid=False, zeroline=False, type="linear")
        layout["annotations"] = [dict(text="waiting for the first point", showarrow=False, xref="paper", yref="paper",
                                      x=0.5, y=0.5, font=dict(size=16, color="#555555"))]
    else:
        marked = _fit_axes(layout, curves, options, x_title)
    figure = go.Figure(data=_traces(curves, x_title, labels) + marked, layout=layout, _validate=VALIDATE)
    return MetricChart(figure, curves)


def _fit_axes(layout: dict, curves: list[Curve], options: ChartOptions, x_title: str) -> list[dict]:
    """Set the y range (the healthy runs' when a diverged run goes beyond them, app/charts/diverged.py), a log
    axis's few readable ticks and whole epochs on an epoch axis in `layout`, with the labels of diverged runs;
    returns the diverged runs' marker traces."""
    log_y = options.log_y
    values, cropped = shown_values(curves, log_y)
    if values.size and (cropped or log_y):  # a log axis gets its range set too: its ticks are chosen for it
        y_range = padded_range(float(values.min()), float(values.max()), log_y)
    else:
        y_range = _flat_range([c.y for c in curves if c.kind != "best_epoch"], log_y)
    yaxis = dict(layout["yaxis"], **({"range": y_range} if y_range else {}))
    if log_y and (ticks := log_ticks(values)):
        yaxis.update(tickvals=ticks, ticktext=tick_texts(ticks))
    layout["yaxis"] = yaxis
    if options.x_axis == "epoch":
        last = max((float(np.nanmax(c.x)) for c in curves if c.x.size and np.isfinite(c.x).any()), default=1.0)
        layout["xaxis"] = dict(layout["xaxis"], **whole_ticks(last))
    elif options.x_axis == "step":  # a run's first few steps: 1, 2, 3, never 1.5
        layout["xaxis"] = dict(layout["xaxis"], **step_ticks(np.concatenate([c.x for c in curves])))
    traces, notes = marks(curves, y_range, log_y, x_title)
    if notes:
        layout["annotations"] = notes
    return traces


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
