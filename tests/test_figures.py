"""Tests of app.charts.metrics and the run colours (app.charts.palette): metric figures, the CSV of plotted points,
summary table.

Tiny synthetic runs in the store's long format; figures are checked through their trace arrays
(what the browser receives), against independent computations (loops, pandas, numpy).
"""

from __future__ import annotations

import itertools
import json
import colorsys
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.charts.metrics import (
    ChartOptions,
    clipped_fraction,
    clipped_fraction_figure,
    final_metrics_table,
    lr_schedule_figure,
    metric_chart,
)

ROOT = Path(__file__).resolve().parents[1]
STEPS_PER_EPOCH = 50


def make_runs(n_steps=400, seeds=(0, 1, 2), optimizers=("adam", "sgd"), averaged=True):
    """Runs of 8 epochs x 50 steps: loss, lr, grad_norm, clipped, examples per step; epoch metrics."""
    rng = np.random.default_rng(7)
    frames, runs = [], []
    for optimizer, seed in itertools.product(optimizers, seeds):
        run_id = f"{optimizer}-{seed}"
        step = np.arange(1, n_steps + 1)
        epoch = (step - 1) // STEPS_PER_EPOCH
        wall = 1000.0 + 0.1 * step + seed
        grad = rng.uniform(0, 2, n_steps)
        per_step = {
            "loss": np.exp(-step / 150) + rng.normal(0, 0.05, n_steps), "lr": 0.1 / np.sqrt(step),
            "grad_norm": grad, "clipped": (grad > 1.5).astype(float), "examples": 32.0 * step,
        }
        for key, values in per_step.items():
            frames.append(pd.DataFrame({"run_id": run_id, "step": step, "epoch": epoch, "key": key,
                                        "value": values, "wall_time": wall}))
        ends = step[step % STEPS_PER_EPOCH == 0]
        acc = 0.9 - 0.4 * np.exp(-np.arange(ends.size) / 2) + rng.normal(0, 0.01, ends.size)
        per_epoch = {"val_acc": acc, "val_loss": 1 - acc, "train_loss": 1.1 - acc}
        if averaged:
            per_epoch |= {"ema_val_acc": acc + 0.01, "swa_val_acc": acc + 0.02}
        for key, values in per_epoch.items():
            frames.append(pd.DataFrame({"run_id": run_id, "step": ends, "epoch": epoch[ends - 1], "key": key,
                                        "value": values, "wall_time": wall[ends - 1]}))
        frames.append(pd.DataFrame({"run_id": [run_id], "step": [ends[-1]], "epoch": [epoch[-1]],
                                    "key": ["best_epoch"], "value": [float(np.argmax(acc))],
                                    "wall_time": [wall[-1]]}))
        runs.append({"run_id": run_id, "name": f"{optimizer} seed {seed}", "group": "", "status": "completed",
                     "created_at": 990.0, "started_at": 1000.0 + seed, "finished_at": wall[-1] + 0.5,
                     "cfg.optimizer": optimizer, "cfg.seed": seed, "cfg.lr": 0.1})
    return pd.concat(frames, ignore_index=True), pd.DataFrame(runs)


def loop_smoothing(values, weight):
    """TensorBoard's debiased EMA as a plain loop (independent of app.charts.series)."""
    last, n, out = 0.0, 0, []
    for v in values:
        if not math.isfinite(v):
            out.append(v)
            continue
        last, n = last * weight + (1 - weight) * v, n + 1
        out.append(last / (1 - weight**n))
    return np.array(out)


def traces_named(fig, name):
    return [t for t in fig.data if t.name == name]


# ---------------------------------------------------------------------------------------------
# metric_chart: its figure and its data
# ---------------------------------------------------------------------------------------------
def test_one_trace_per_run_named_and_coloured():
    metrics, runs = make_runs()
    fig = metric_chart(metrics, runs, "loss").figure
    assert [t.name for t in fig.data] == runs["name"].tolist()
    # the seeds of one optimizer are shades of one hue, distinct from each other and from the other optimizer's
    colors = {trace.name: trace.line.color for trace in fig.data}
    assert len(set(colors.values())) == len(runs)
    hues = {name: colorsys.rgb_to_hls(*(int(c[i:i + 2], 16) / 255 for i in (1, 3, 5)))[0] for name, c in colors.items()}
    for _, members in runs.groupby("cfg.optimizer"):  # one hue (up to the rounding of darker shades to 8 bits)
        assert np.ptp([hues[name] for name in members["name"]]) < 0.02
    assert np.ptp([hues[runs["name"][0]], hues[runs["name"][3]]]) > 0.1
    for trace, run_id in zip(fig.data, runs["run_id"]):
        want = metrics[(metrics["run_id"] == run_id) & (metrics["key"] == "loss")]
        np.testing.assert_array_equal(trace.x, want["step"].to_numpy(float))  # 400 <= max_points: all
        np.testing.assert_array_equal(trace.y, want["value"].to_numpy())
    assert fig.layout.xaxis.title.text.startswith("step") and "loss" in fig.layout.yaxis.title.text
    json.loads(fig.to_json())


def test_smoothing_is_applied_before_downsampling():
    metrics, runs = make_runs(n_steps=3000, seeds=(0,), optimizers=("adam",))
    fig = metric_chart(metrics, runs, "loss", ChartOptions(smoothing=0.9, max_points=200)).figure
    raw, smoothed = fig.data
    assert raw.opacity < 0.5 and raw.showlegend is False and smoothed.opacity == 1.0
    assert len(raw.x) <= 200 and len(smoothed.x) <= 200
    loss = metrics[metrics["key"] == "loss"].sort_values("step")["value"].to_numpy()
    reference = loop_smoothing(loss.tolist(), 0.9)
    np.testing.assert_allclose(smoothed.y, reference[smoothed.x.astype(int) - 1], rtol=1e-10)
    np.testing.assert_array_equal(raw.y, loss[raw.x.astype(int) - 1])
    assert raw.y.max() == loss.max() and raw.y.min() == loss.min()  # the extremes reach the browser


def test_every_trace_is_downsampled_to_max_points():
    metrics, runs = make_runs(n_steps=2500)
    for options in ({}, {"smoothing": 0.5}, {"group_by": "cfg.optimizer"}, {"x_axis": "wall_time"}):
        fig = metric_chart(metrics, runs, "grad_norm", ChartOptions(max_points=150, **options)).figure
        assert fig.data and all(len(t.x) <= 150 and len(t.y) <= 150 for t in fig.data)
    assert {t.type for t in fig.data} == {"scatter"}  # 6 runs x 150 points: SVG is fine
    large = metric_chart(metrics, runs, "grad_norm").figure  # 6 runs x 1000 points: WebGL
    assert {t.type for t in large.data} == {"scattergl"}


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"smoothing": 0.8, "max_points": 100},
        {"key": ["train_loss", "val_loss"], "x_axis": "epoch"},
        {"key": "val_acc", "x_axis": "examples"},
        {"group_by": "cfg.optimizer", "band": "minmax", "max_points": 90, "smoothing": 0.3},
    ],
)
def test_the_data_is_exactly_what_the_figure_draws(options):
    metrics, runs = make_runs(n_steps=1200)
    options = {"key": "loss", **options}
    key = options.pop("key")
    chart = ChartOptions(**options)
    fig = metric_chart(metrics, runs, key, chart).figure
    table = metric_chart(metrics, runs, key, chart).data()
    drawn = {t.name: t for t in fig.data}
    for series, rows in table.groupby("series", sort=False):
        trace = drawn[series]
        np.testing.assert_array_equal(trace.x, rows["x"].to_numpy())
        np.testing.assert_array_equal(trace.y, rows["y"].to_numpy())
        if rows["kind"].iloc[0] == "mean":
            np.testing.assert_array_equal(drawn[f"{series} (lower)"].y, rows["lower"].to_numpy())
            np.testing.assert_array_equal(drawn[f"{series} (upper)"].y, rows["upper"].to_numpy())
    once = metric_chart(metrics, runs, key, chart)  # figure and data from one pass are those of two calls
    assert once.figure.to_json() == fig.to_json()
    pd.testing.assert_frame_equal(once.data(), table)
    bands = (table["kind"] == "mean").any()
    assert len(fig.data) == table["series"].nunique() + 2 * table.loc[table["kind"] == "mean", "series"].nunique()
    assert bands == ("group_by" in options)


def test_group_band_traces_are_mean_and_std_of_the_seeds():
    metrics, runs = make_runs(n_steps=300)
    fig = metric_chart(metrics, runs, "loss", ChartOptions(group_by="cfg.optimizer")).figure
    assert [t.name for t in fig.data if t.showlegend is not False] == ["optimizer=adam (n=3)", "optimizer=sgd (n=3)"]
    mean, = traces_named(fig, "optimizer=sgd (n=3)")
    lower, = traces_named(fig, "optimizer=sgd (n=3) (lower)")
    upper, = traces_named(fig, "optimizer=sgd (n=3) (upper)")
    assert upper.fill == "tonexty" and "rgba" in upper.fillcolor
    assert list(fig.data).index(lower) == list(fig.data).index(upper) - 1  # tonexty fills down to lower
    loss = metrics[(metrics["key"] == "loss") & metrics["run_id"].str.startswith("sgd")]
    per_step = loss.pivot(index="step", columns="run_id", values="value").to_numpy()
    np.testing.assert_allclose(mean.y, per_step.mean(axis=1))
    np.testing.assert_allclose(upper.y - mean.y, per_step.std(axis=1, ddof=0))
    np.testing.assert_allclose(mean.y - lower.y, per_step.std(axis=1, ddof=0))


def test_log_axis_titles_labels_and_units():
    metrics, runs = make_runs(n_steps=100, seeds=(0,))
    fig = metric_chart(metrics, runs, "lr", ChartOptions(x_axis="wall_time", log_y=True)).figure
    assert fig.layout.yaxis.type == "log"
    assert fig.layout.xaxis.title.text == "time since start (s)"
    assert fig.layout.yaxis.title.text == "learning rate"
    fig = metric_chart(metrics, runs, "lr", ChartOptions(labels={"lr": "η", "step": "update"})).figure
    assert fig.layout.yaxis.title.text == "η" and fig.layout.xaxis.title.text == "update"
    assert fig.layout.yaxis.type == "linear"


def test_best_epoch_marker_and_averaged_twins_on_epoch_charts():
    metrics, runs = make_runs(n_steps=400, seeds=(0,), optimizers=("adam",))
    best = int(metrics.loc[metrics["key"] == "best_epoch", "value"].iloc[0])
    fig = metric_chart(metrics, runs, "val_acc", ChartOptions(x_axis="epoch")).figure
    by_name = {t.name: t for t in fig.data}
    assert by_name["adam seed 0 · ema_val_acc"].line.dash == "dash"
    assert by_name["adam seed 0 · swa_val_acc"].line.dash == "dot"
    assert by_name["adam seed 0 · val_acc"].line.dash == "solid"
    marker = by_name[f"adam seed 0 best (after epoch {best + 1})"]
    val = metrics[metrics["key"] == "val_acc"]
    assert marker.mode == "markers" and marker.x[0] == best + 1  # epochs completed
    assert marker.y[0] == val.loc[val["epoch"] == best, "value"].iloc[0]
    (line,) = fig.layout.shapes
    assert line.x0 == line.x1 == best + 1 and line.line.dash == "dash"
    on_steps = metric_chart(metrics, runs, "val_acc").figure  # marker at the step the epoch ended
    assert on_steps.layout.shapes[0].x0 == (best + 1) * STEPS_PER_EPOCH
    plain = metric_chart(metrics, runs, "val_acc", ChartOptions(averaged=False)).figure
    assert [t.name for t in plain.data] == ["adam seed 0", f"adam seed 0 best (after epoch {best + 1})"]
    assert not metric_chart(metrics, runs, "loss").figure.layout.shapes  # step-level chart: no marker
    assert len(metric_chart(*make_runs(n_steps=100, averaged=False), "val_acc").figure.data) == 12


def test_diverged_values_become_gaps():
    metrics, runs = make_runs(n_steps=100, seeds=(0,), optimizers=("adam",))
    loss = metrics.index[(metrics["key"] == "loss") & (metrics["step"] >= 90)]
    metrics.loc[loss, "value"] = np.inf
    raw, trace, marker = metric_chart(metrics, runs, "loss", ChartOptions(smoothing=0.5)).figure.data
    assert np.isnan(trace.y[89:]).all() and np.isfinite(trace.y[:89]).all()
    assert list(marker.x) == [89] and marker.y[0] == trace.y[88]  # it ends at its last finite point, marked
    json.loads(metric_chart(metrics, runs, "loss").figure.to_json())


def test_empty_inputs_give_an_empty_figure():
    metrics, runs = make_runs(n_steps=100, seeds=(0,))
    assert len(metric_chart(metrics, runs, "no_such_key").figure.data) == 0
    assert metric_chart(metrics.iloc[:0], runs, "loss").data().empty


# ---------------------------------------------------------------------------------------------
# clipping, summary table, schedule preview
# ---------------------------------------------------------------------------------------------
def test_clipped_fraction_is_a_rolling_mean_per_run():
    metrics, runs = make_runs(n_steps=200, seeds=(0, 1), optimizers=("adam",))
    table = clipped_fraction(metrics, window=20)
    for run_id, rows in table.groupby("run_id"):
        flags = metrics[(metrics["run_id"] == run_id) & (metrics["key"] == "clipped")].sort_values("step")
        flags = flags["value"].tolist()
        want = [sum(flags[max(0, i - 19) : i + 1]) / min(i + 1, 20) for i in range(len(flags))]
        np.testing.assert_allclose(rows["value"], want)
    fig = clipped_fraction_figure(metrics, runs, window=20, options=ChartOptions(x_axis="examples"))
    assert len(fig.data) == 2 and fig.data[0].x[0] == 32.0 and tuple(fig.layout.yaxis.range) == (-0.02, 1.02)
    assert fig.layout.yaxis.title.text.replace("<br>", " ") == "fraction of steps clipped (last 20 steps)"
    renamed = clipped_fraction_figure(metrics, runs, 20, ChartOptions(labels={"clipped_fraction": "clipped"}))
    assert renamed.layout.yaxis.title.text == "clipped"  # the caller's labels win
    with pytest.raises(ValueError, match="window"):
        clipped_fraction(metrics, 0)


def test_final_metrics_table():
    metrics, runs = make_runs(n_steps=400, seeds=(0,), optimizers=("adam", "sgd"))
    runs.loc[1, ["status", "finished_at"]] = ["running", np.nan]
    runs = pd.concat([runs, pd.DataFrame([{"run_id": "queued-1", "name": "waiting", "status": "queued",
                                           "started_at": np.nan, "finished_at": np.nan}])], ignore_index=True)
    table = final_metrics_table(metrics, runs)
    assert table["name"].tolist() == ["adam seed 0", "sgd seed 0", "waiting"]
    for i, run_id in enumerate(["adam-0", "sgd-0"]):
        mine = metrics[metrics["run_id"] == run_id]
        val = mine[mine["key"] == "val_acc"].sort_values("step")["value"]
        assert table.loc[i, "best_val_acc"] == val.max() and table.loc[i, "final_val_acc"] == val.iloc[-1]
        train = mine[mine["key"] == "train_loss"].sort_values("step")["value"]
        assert table.loc[i, "final_train_loss"] == train.iloc[-1]
        assert table.loc[i, "best_epoch"] == int(np.argmax(val.to_numpy()))
        assert table.loc[i, "steps"] == 400
    assert table.loc[0, "duration_s"] == pytest.approx(runs.loc[0, "finished_at"] - 1000.0)
    assert table.loc[1, "duration_s"] == pytest.approx(1000.0 + 40.0 - 1000.0)  # running: up to last row
    assert table.loc[2, "status"] == "queued" and pd.isna(table.loc[2, "steps"]) and pd.isna(table.loc[2, "duration_s"])


def test_lr_schedule_figure():
    steps = np.arange(1, 10_001)
    lrs = np.where(steps < 500, steps / 500, 0.5 * (1 + np.cos(np.pi * (steps - 500) / 9500))) * 0.1
    fig = lr_schedule_figure(steps, lrs, "cosine with warmup", max_points=300)
    (trace,) = fig.data
    assert len(trace.x) <= 300 and trace.x[0] == 1 and trace.x[-1] == 10_000
    assert trace.y.max() == lrs.max() and fig.layout.title.text == "cosine with warmup"
    assert fig.layout.yaxis.title.text == "learning rate"



@pytest.mark.parametrize("x_axis", ["step", "epoch", "examples", "wall_time"])
def test_category_columns_plot_the_same_points(x_axis):
    # the store may hand run_id/key over as categoricals (much faster filtering): same figure
    metrics, runs = make_runs(n_steps=200, seeds=(0, 1))
    categorical = metrics.astype({"run_id": "category", "key": "category"})
    for group_by in (None, "cfg.optimizer"):
        options = ChartOptions(x_axis=x_axis, group_by=group_by, smoothing=0.5)
        want = metric_chart(metrics, runs, ["loss", "val_acc"], options).data()
        pd.testing.assert_frame_equal(metric_chart(categorical, runs, ["loss", "val_acc"], options).data(), want)


# ---------------------------------------------------------------------------------------------
# readable everywhere: bands without WebGL, single points, empty charts, log ticks, no pale colours
# ---------------------------------------------------------------------------------------------
def test_a_grouped_band_is_never_drawn_with_webgl():
    metrics, runs = make_runs(n_steps=3000)  # far above GL_MIN_POINTS
    assert {t.type for t in metric_chart(metrics, runs, "loss").figure.data} == {"scattergl"}
    banded = metric_chart(metrics, runs, "loss", ChartOptions(group_by="cfg.optimizer")).figure
    assert {t.type for t in banded.data} == {"scatter"}  # software WebGL draws no fills
    assert any(t.fill == "tonexty" for t in banded.data)


def test_a_single_point_has_a_marker_and_an_empty_chart_says_it_waits():
    metrics, runs = make_runs(n_steps=STEPS_PER_EPOCH)  # one epoch: one validation point per run
    fig = metric_chart(metrics, runs, "val_acc", ChartOptions(x_axis="epoch", averaged=False)).figure
    lines = [t for t in fig.data if t.mode != "markers"]
    assert lines and all(t.mode == "lines+markers" for t in lines)
    empty = metric_chart(metrics.iloc[0:0], runs, "val_acc").figure
    assert [a.text for a in empty.layout.annotations] == ["waiting for the first point"]
    assert empty.layout.yaxis.showticklabels is False


def test_wall_time_is_measured_from_the_run_start_on_step_and_epoch_charts():
    metrics, runs = make_runs()
    options = ChartOptions(x_axis="wall_time", averaged=False)
    run_id, name, start = runs.loc[0, "run_id"], runs.loc[0, "name"], runs.loc[0, "started_at"]
    for key in ("loss", "val_acc"):  # step-level and epoch-level: one origin, the run's start
        trace = next(t for t in metric_chart(metrics, runs, key, options).figure.data if t.name == name)
        rows = metrics[(metrics["run_id"] == run_id) & (metrics["key"] == key)]
        np.testing.assert_allclose(trace.x, rows["wall_time"].to_numpy() - start)


def test_per_layer_figure_orders_layers_input_first_and_averages_seeds():
    from app.charts.per_layer import per_layer_figure

    layers = ["stem.0.weight", "blocks.0.conv1.weight", "fc.weight"]
    rows, next_id = [], 0
    for run_id, scale in (("a", 1.0), ("b", 3.0), ("c", 10.0)):
        for step in (8, 16):
            for depth, layer in enumerate(layers):  # logged in parameter order: ids follow the model
                next_id += 1
                rows.append({"id": next_id, "run_id": run_id, "step": step, "key": f"grad_std/{layer}",
                             "value": scale * (depth + 1) * (2 if step == 16 else 1)})
    runs = pd.DataFrame({"run_id": ["a", "b", "c"], "variant": ["plain", "plain", "skips"]})
    fig = per_layer_figure(pd.DataFrame(rows), runs, "grad_std", "variant")
    by_name = {trace.name: trace for trace in fig.data}
    assert set(by_name) == {"plain", "skips"}
    assert list(by_name["plain"].customdata) == layers  # input side first
    # the latest step only (16: values doubled), the mean over the plain runs (scales 1 and 3 -> 2)
    assert list(by_name["plain"].y) == [4.0, 8.0, 12.0] and list(by_name["skips"].y) == [20.0, 40.0, 60.0]
    assert fig.layout.yaxis.type == "log"
    empty = per_layer_figure(pd.DataFrame(columns=["run_id", "step", "key", "value"]), runs, "grad_std", "variant")
    assert "waiting" in empty.layout.annotations[0].text


def test_an_unchecked_figure_is_the_checked_one(monkeypatch):
    """The server builds metric charts without Plotly's property checks (app.charts.metrics.VALIDATE): the JSON sent
    must mean exactly what the checked figure's does."""
    from app.charts import metrics as metric_charts

    assert metric_charts.VALIDATE  # the tests check every figure (tests/conftest.py)
    rng = np.random.default_rng(0)
    rows = [("r1" if i % 2 else "r2", s, s // 50, key, float(rng.random()), s * 0.1)
            for i in range(2) for s in range(200) for key in ("loss", "val_acc")]
    metrics = pd.DataFrame(rows, columns=["run_id", "step", "epoch", "key", "value", "wall_time"])
    runs = pd.DataFrame({"run_id": ["r1", "r2"], "name": ["sgd <b>", "adam"], "status": ["completed"] * 2,
                         "cfg.optimizer": ["sgd", "adam"], "cfg.seed": [0, 0]})
    cases = [("loss", ChartOptions(smoothing=0.6)), ("val_acc", ChartOptions(x_axis="epoch")),
             ("loss", ChartOptions(group_by="cfg.optimizer", log_y=True)), ("nothing", ChartOptions())]
    for key, options in cases:
        checked = json.loads(metric_chart(metrics, runs, key, options).figure.to_json())
        monkeypatch.setattr(metric_charts, "VALIDATE", False)
        unchecked = json.loads(metric_chart(metrics, runs, key, options).figure.to_json())
        monkeypatch.setattr(metric_charts, "VALIDATE", True)
        assert unchecked == checked, key
