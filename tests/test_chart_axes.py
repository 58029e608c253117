"""Metric charts a class reads from the back row (app/charts/axes.py, app/charts/diverged.py): a diverged run does
not set the y range, log axes show a few readable ticks over any range, epoch axes tick whole epochs, titles fit.

The learning-rate lesson's shape is rebuilt in numbers: lr 0.0002 creeps down from 2.3, lr 0.02 drops to about 0.3,
lr 10 explodes to 2e33 at step 8 and logs NaN at step 9 (as the real runs do).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from app.charts.axes import MOST_TICKS, log_ticks, tick_text, tick_texts, whole_ticks, wrapped_title
from app.charts.metrics import METRIC_TITLES, ChartOptions, metric_chart

STEPS = 126


def learning_rate_lesson() -> tuple[pd.DataFrame, pd.DataFrame]:
    step = np.arange(1, STEPS + 1)
    rng = np.random.default_rng(3)
    curves = {
        "small": 2.30 - 0.25 * step / STEPS + rng.normal(0, 0.02, STEPS),
        "right": 0.3 + 2.0 * np.exp(-step / 15) + rng.normal(0, 0.05, STEPS),
        "large": np.array([2.28, 13.2, 9.6e3, 6.2e9, 2.2e13, 2.4e22, 1.5e19, 2.3e33, np.nan]),
    }
    frames = []
    for run_id, values in curves.items():
        steps = step[: values.size]
        frames.append(pd.DataFrame({"run_id": run_id, "step": steps, "epoch": (steps - 1) // 63, "key": "loss",
                                    "value": values, "wall_time": 1000.0 + steps}))
        if run_id != "large":  # the diverged run stopped before its first validation
            frames.append(pd.DataFrame({"run_id": run_id, "step": [63, 126], "epoch": [0, 1], "key": "val_acc",
                                        "value": [0.1, 0.17] if run_id == "small" else [0.8, 0.86],
                                        "wall_time": [1063.0, 1126.0]}))
    runs = pd.DataFrame({"run_id": list(curves),
                         "name": ["too small (lr 0.0002)", "right (lr 0.02)", "too large (lr 10)"],
                         "status": ["completed", "completed", "diverged"], "cfg.lr": [0.0002, 0.02, 10.0],
                         "cfg.seed": [0, 0, 0]})
    return pd.concat(frames, ignore_index=True), runs


def test_a_diverged_run_does_not_set_the_y_range_and_is_marked_where_it_left():
    metrics, runs = learning_rate_lesson()
    built = metric_chart(metrics, runs, "loss", ChartOptions(smoothing=0.6, log_y=True))
    figure = built.figure
    low, high = figure.layout.yaxis.range  # log10 units
    healthy = metrics[(metrics["key"] == "loss") & (metrics["run_id"] != "large")]["value"]
    assert 10 ** high < 4 and 10 ** low > 0.1  # the healthy runs' range, with a little room
    assert math.log10(healthy.max()) < high and math.log10(healthy.min()) > low
    # "too small" ends near 2.05 and "right" near 0.3: apart by most of the chart's height, not one flat line
    small_end, right_end = (built.curves[i].y[-1] for i in (1, 3))
    assert (math.log10(small_end) - math.log10(right_end)) / (high - low) > 0.5
    # the diverged run ends in a triangle on the top edge, labelled in its colour
    (marker,) = [t for t in figure.data if t.mode == "markers" and t.marker.symbol == "triangle-up"]
    large = next(t for t in figure.data if t.name == "too large (lr 10)")
    assert marker.marker.color == large.line.color and list(marker.x) == [8]
    assert marker.y[0] == pytest.approx(10 ** high)
    (note,) = figure.layout.annotations  # above the plot, beside the marker: over no curve
    assert note.text == "<b>diverged ↑</b>" and note.font.color == large.line.color
    assert (note.yref, note.y, note.yanchor) == ("paper", 1, "bottom")
    assert f"{built.curves[5].y[-2]:.3g}" in marker.hovertemplate  # the value it reached, on hover
    # only the view is cropped: the chart's data keeps every finite point of the diverged run
    data = built.data()
    assert data.loc[data["run_id"] == "large", "y"].max() > 1e30


def test_a_diverged_run_inside_the_range_is_marked_at_its_last_point():
    metrics, runs = learning_rate_lesson()
    metrics.loc[(metrics["run_id"] == "large") & (metrics["step"] > 1) & metrics["value"].notna(), "value"] = 2.0
    figure = metric_chart(metrics, runs, "loss").figure
    (marker,) = [t for t in figure.data if t.mode == "markers"]
    assert marker.marker.symbol == "x" and list(marker.x) == [8] and list(marker.y) == [2.0]
    assert figure.layout.annotations[0].text == "<b>diverged</b>" and figure.layout.annotations[0].y == 2.0
    assert figure.layout.yaxis.range is None  # nothing to crop: Plotly's own range


def test_a_run_whose_loss_became_nan_is_diverged_whatever_its_status_says_yet():
    metrics, runs = learning_rate_lesson()
    runs["status"] = "running"
    figure = metric_chart(metrics, runs, "loss", ChartOptions(log_y=True)).figure
    assert 10 ** figure.layout.yaxis.range[1] < 4
    assert any(t.mode == "markers" for t in figure.data)


def test_a_diverged_group_leaves_the_range_to_the_other_groups():
    metrics, runs = learning_rate_lesson()
    figure = metric_chart(metrics, runs, "loss", ChartOptions(group_by="cfg.lr")).figure
    assert figure.layout.yaxis.range[1] < 4
    assert [a.text for a in figure.layout.annotations] == ["<b>diverged ↑</b>"]
    # a group of two seeds of which one diverged says so, and leaves the range to the healthy groups too
    runs.loc[runs["run_id"] == "right", "cfg.lr"] = 10.0
    figure = metric_chart(metrics, runs, "loss", ChartOptions(group_by="cfg.lr")).figure
    assert [a.text for a in figure.layout.annotations] == ["<b>1 of 2 diverged ↑</b>"]
    assert figure.layout.yaxis.range[1] < 4


def test_a_diverged_runs_learning_rate_is_drawn_as_it_was():
    metrics, runs = learning_rate_lesson()
    lr = metrics[metrics["key"] == "loss"].assign(key="lr", value=lambda rows: rows["run_id"].map(
        {"small": 0.0002, "right": 0.02, "large": 10.0}))
    figure = metric_chart(lr, runs, "lr").figure
    assert figure.layout.yaxis.range is None and not figure.layout.annotations  # finite: nothing diverged here


@pytest.mark.parametrize(("low", "high", "expected"), [
    (0.08, 3.0, [0.1, 0.2, 0.5, 1, 2]),  # 1-2-5 where it fits
    (0.02, 2.3, [0.03, 0.1, 0.3, 1]),  # two decades: 1-3
    (1e-6, 1e3, [1e-6, 1e-4, 1e-2, 1, 100]),  # many decades: every second power of ten
    (0.05, 2.3e33, [1, 1e10, 1e20, 1e30]),  # 34 decades: every tenth, never 34 labels
    (0.3, 0.9, [0.3, 0.5]),  # within one decade: still two labels
    (0.31, 0.35, [0.31, 0.32, 0.33, 0.34, 0.35]),  # narrower still: round values
])
def test_log_ticks_are_few_and_readable_over_any_range(low, high, expected):
    ticks = log_ticks(np.array([low, high]))
    assert ticks == pytest.approx(expected)
    assert 2 <= len(ticks) <= MOST_TICKS and all(low * 0.999 <= t <= high * 1.001 for t in ticks)
    assert not any("e+" in tick_text(t) or "e-" in tick_text(t) for t in ticks)


def test_tick_text_reads_as_numbers_and_powers_of_ten():
    assert [tick_text(v) for v in (0.0001, 0.002, 0.5, 1.0, 50.0, 20000.0)] == ["0.0001", "0.002", "0.5", "1", "50",
                                                                               "20000"]
    assert tick_text(1e34) == "10<sup>34</sup>" and tick_text(2e-6) == "2×10<sup>-6</sup>"
    # one axis reads alike: once a label needs a power of ten, 1000 is one too
    assert tick_texts([1, 10, 100, 1000, 1e4, 1e5]) == ["1", "10", "100", "10<sup>3</sup>", "10<sup>4</sup>",
                                                         "10<sup>5</sup>"]
    assert tick_texts([0.1, 0.2, 0.5, 1]) == ["0.1", "0.2", "0.5", "1"]


def test_epoch_axes_tick_whole_epochs():
    metrics, runs = learning_rate_lesson()
    for key in ("val_acc", "loss"):  # epoch-level rows at 1, 2; step-level rows at fractions of an epoch
        xaxis = metric_chart(metrics, runs, key, ChartOptions(x_axis="epoch")).figure.layout.xaxis
        assert xaxis.tickmode == "linear" and xaxis.dtick == 1 and xaxis.tick0 == 0
    assert whole_ticks(20)["dtick"] == 5 and whole_ticks(100)["dtick"] == 20 and whole_ticks(3)["dtick"] == 1
    assert all(float(whole_ticks(n)["dtick"]).is_integer() and n / whole_ticks(n)["dtick"] <= 8 for n in range(1, 500))


def test_axis_titles_wrap_instead_of_running_off_the_chart():
    titles = list(METRIC_TITLES.values()) + ["validation loss / training loss (epoch mean)",
                                            "validation loss / EMA validation loss / SWA validation loss"]
    for title in titles:
        wrapped = wrapped_title(title)
        lines = wrapped.split("<br>")
        assert wrapped.replace("<br>", " ") == title and max(len(line) for line in lines) <= 28, title
    metrics, runs = learning_rate_lesson()
    figure = metric_chart(metrics, runs, ["val_acc", "loss"], ChartOptions(x_axis="epoch")).figure
    assert figure.layout.yaxis.title.text == "validation accuracy /<br>training loss (per batch)"


def test_a_short_step_axis_ticks_whole_steps_and_a_long_one_keeps_plotlys():
    metrics, runs = learning_rate_lesson()
    short = metrics[metrics["step"] <= 3]
    xaxis = metric_chart(short, runs, "loss").figure.layout.xaxis
    assert xaxis.tickmode == "linear" and xaxis.dtick == 1
    assert metric_chart(metrics, runs, "loss").figure.layout.xaxis.dtick is None  # 126 steps: Plotly's whole ticks


def test_the_run_reports_charts_share_the_readable_axes():
    from app.charts import report as rf

    rows = [{"run_id": "r", "step": 1, "epoch": 0, "key": f"grad_std/{name}", "value": value}
            for name, value in (("conv1.weight", 0.0032), ("conv2.weight", 0.0021), ("fc1.weight", 0.0008),
                                ("fc2.weight", 0.0011), ("fc3.weight", 0.0037))]
    figure = rf.layer_stat_figure(pd.DataFrame(rows), "grad_std", log_y=True)
    assert 2 <= len(figure.layout.yaxis.tickvals) <= MOST_TICKS  # Plotly drew 0.001, 0.0015 ... 0.004: overlapping
    assert figure.layout.xaxis.dtick == 1  # one sample at step 1: no 0.5, 1.5
    histogram = {"activations": {"relu1": {"edges": [0, 1], "counts": [1]}, "relu2": {"edges": [0, 1], "counts": [1]}},
                 "act_grads": {"relu2": {"edges": [0, 1], "counts": [1]}, "relu1": {"edges": [0, 1], "counts": [1]}}}
    colors = {kind: {t.name: t.line.color for t in rf.histogram_figure(histogram, kind).data}
              for kind in ("activations", "act_grads")}
    assert colors["activations"] == colors["act_grads"]  # gradients are recorded output first: same colours anyway
