"""Tests of app.charts.series: smoothing, downsampling, x axes, per-run series and group bands.

Reference checks use independent, deliberately plain implementations (Python loops, numpy
reductions per step) on tiny hand-made metrics frames.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from app.charts.series import (
    band_across,
    downsample,
    downsample_indices,
    epoch_positions,
    run_series,
    smooth_ema,
    x_values,
)


def tensorboard_smoothing(values, weight):
    """TensorBoard's resmoothDataset, transcribed as a plain loop."""
    last, accumulated, out = 0.0, 0, []
    constant = all(v == values[0] for v in values)
    for v in values:
        if constant or not math.isfinite(v):
            out.append(v)
            continue
        last = last * weight + (1 - weight) * v
        accumulated += 1
        out.append(last / (1 - weight**accumulated))
    return np.array(out, dtype=float)


# ---------------------------------------------------------------------------------------------
# smoothing
# ---------------------------------------------------------------------------------------------
def test_smooth_ema_hand_computed_three_points():
    # w=0.5: last = 0.5, 1.25, 2.125; debias 0.5, 0.75, 0.875
    np.testing.assert_allclose(smooth_ema(np.array([1.0, 2.0, 3.0]), 0.5), [1.0, 5 / 3, 17 / 7], rtol=1e-15)


@pytest.mark.parametrize("weight", [0.1, 0.6, 0.9, 0.99, 0.999])
def test_smooth_ema_matches_tensorboard_loop(weight):
    rng = np.random.default_rng(1)
    values = 2.0 * np.exp(-np.arange(6000) / 900) + rng.normal(0, 0.1, 6000)  # several vectorised blocks
    values[[7, 3000]] = np.nan
    values[4500] = np.inf
    got = smooth_ema(values, weight)
    want = tensorboard_smoothing(values.tolist(), weight)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)], rtol=1e-10)
    assert got[4500] == np.inf


def test_smooth_ema_passes_non_finite_through_without_poisoning():
    got = smooth_ema(np.array([1.0, np.nan, 3.0, -np.inf, 5.0]), 0.5)
    assert np.isnan(got[1]) and got[3] == -np.inf
    np.testing.assert_allclose(got[[0, 2, 4]], tensorboard_smoothing([1.0, 3.0, 5.0], 0.5))


def test_smooth_ema_zero_weight_and_constant_and_bad_weight():
    values = np.array([3.0, 1.0, 2.0])
    np.testing.assert_array_equal(smooth_ema(values, 0.0), values)
    np.testing.assert_array_equal(smooth_ema(np.full(5, 0.3), 0.9), np.full(5, 0.3))
    assert smooth_ema(np.array([]), 0.5).size == 0
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="weight"):
            smooth_ema(values, bad)


def test_smooth_ema_huge_values_stay_finite():
    values = np.random.default_rng(2).normal(0, 1e250, 3000)
    got = smooth_ema(values, 0.6)
    np.testing.assert_allclose(got, tensorboard_smoothing(values.tolist(), 0.6), rtol=1e-9, atol=1e238)


# ---------------------------------------------------------------------------------------------
# downsampling
# ---------------------------------------------------------------------------------------------
def buckets_of(n, max_points, per_bucket):
    """The documented bucket layout: equal runs of consecutive interior points."""
    interior = n - 2
    width = -(-interior // ((max_points - 2) // per_bucket))
    return [range(1 + s, 1 + min(s + width, interior)) for s in range(0, interior, width)]


def test_downsample_keeps_extremes_first_last_and_order():
    rng = np.random.default_rng(3)
    n, max_points = 10_007, 300
    x = np.cumsum(rng.uniform(0.5, 1.5, n))
    y = np.cumsum(rng.normal(0, 1, n))
    y[5000] = 1e3  # a spike
    y[7000] = -1e3  # a dip
    dx, dy = downsample(x, y, max_points)
    assert 2 < dx.size <= max_points
    assert np.all(np.diff(dx) > 0)
    assert dx[0] == x[0] and dx[-1] == x[-1] and dy[0] == y[0] and dy[-1] == y[-1]
    assert dy.max() == 1e3 and dy.min() == -1e3
    kept = set(dx.tolist())
    for bucket in buckets_of(n, max_points, 2):
        values = [y[i] for i in bucket]
        assert x[bucket[values.index(min(values))]] in kept
        assert x[bucket[values.index(max(values))]] in kept


def test_downsample_short_series_unchanged_and_gaps_survive():
    x, y = np.arange(5.0), np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    dx, dy = downsample(x, y, 10)
    np.testing.assert_array_equal(dx, x)
    np.testing.assert_array_equal(dy, y)
    y = np.sin(np.arange(5000) / 50.0)
    y[2500:2600] = np.nan  # divergence or a hole: must stay a hole, not be bridged
    _, dy = downsample(np.arange(5000.0), y, 200)
    assert np.isnan(dy).any() and len(dy) <= 200
    with pytest.raises(ValueError, match="too small"):
        downsample(np.arange(50.0), np.arange(50.0), 3)


def test_downsample_indices_shared_by_band_columns():
    rng = np.random.default_rng(4)
    n, max_points = 4000, 120
    mean = rng.normal(0, 1, n)
    lower, upper = mean - rng.uniform(0, 3, n), mean + rng.uniform(0, 3, n)
    keep = downsample_indices([mean, lower, upper], max_points)
    assert keep.size <= max_points and keep[0] == 0 and keep[-1] == n - 1
    for bucket in buckets_of(n, max_points, 6):
        idx = np.array(bucket)
        for column in (mean, lower, upper):
            assert idx[np.argmin(column[idx])] in keep and idx[np.argmax(column[idx])] in keep


# ---------------------------------------------------------------------------------------------
# x axes and per-run series
# ---------------------------------------------------------------------------------------------
def tiny_metrics() -> pd.DataFrame:
    """Run a: 2 epochs of 3 steps, finished. Run b: epoch 0 of 3 steps, then 1 step of epoch 1."""
    rows = []

    def log(run, step, epoch, key, value, wall):
        rows.append({"run_id": run, "step": step, "epoch": epoch, "key": key, "value": value, "wall_time": wall})

    for step in range(1, 7):
        epoch = (step - 1) // 3
        log("a", step, epoch, "loss", 2.0 / step, 100.0 + 2 * step)
        log("a", step, epoch, "examples", 32.0 * step, 100.0 + 2 * step)
    log("a", 3, 0, "val_acc", 0.5, 106.0)
    log("a", 6, 1, "val_acc", 0.7, 112.0)
    for step in range(1, 5):
        epoch = (step - 1) // 3
        log("b", step, epoch, "loss", 3.0 / step, 500.0 + step)
        log("b", step, epoch, "examples", 16.0 * step, 500.0 + step)
    log("b", 3, 0, "val_acc", 0.4, 503.0)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("dtype", ["str", "category"])
def test_x_values_on_each_axis(dtype):
    metrics = tiny_metrics().astype({"run_id": dtype, "key": dtype})
    loss = metrics[metrics["key"] == "loss"]
    val = metrics[metrics["key"] == "val_acc"]
    np.testing.assert_array_equal(x_values(metrics, "step", loss), loss["step"].to_numpy(float))
    # epochs completed: k-th of n steps at epoch + k/n; b's running epoch uses its finished length 3
    np.testing.assert_allclose(
        x_values(metrics, "epoch", loss), [1 / 3, 2 / 3, 1, 4 / 3, 5 / 3, 2, 1 / 3, 2 / 3, 1, 4 / 3]
    )
    np.testing.assert_allclose(x_values(metrics, "epoch", val), [1.0, 2.0, 1.0])
    np.testing.assert_allclose(x_values(metrics, "examples", val), [96.0, 192.0, 48.0])
    np.testing.assert_allclose(x_values(metrics, "wall_time", val), [4.0, 10.0, 2.0])
    assert x_values(metrics, "step").index.equals(metrics.index)
    with pytest.raises(ValueError, match="x_axis"):
        x_values(metrics, "minutes")


def test_x_values_first_epoch_still_running():
    metrics = tiny_metrics()
    first_two = metrics[(metrics["run_id"] == "b") & (metrics["step"] <= 2)]
    np.testing.assert_allclose(x_values(first_two, "epoch", first_two[first_two["key"] == "loss"]), [0.5, 1.0])


@pytest.mark.parametrize("dtype", ["str", "category"])
def test_run_series_orders_and_splits_shuffled_rows(dtype):
    metrics = tiny_metrics().astype({"run_id": dtype, "key": dtype})
    shuffled = metrics.sample(frac=1.0, random_state=0)
    interleaved = metrics.sort_values(["step", "run_id"], kind="stable")  # two runs training side by side
    for frame in (metrics, shuffled, interleaved):
        series = run_series(frame, ["val_acc", "loss"], "step")
        assert [(s.run_id, s.key) for s in series] == [("a", "val_acc"), ("a", "loss"), ("b", "val_acc"), ("b", "loss")]
        loss_b = series[3]
        np.testing.assert_array_equal(loss_b.step, [1, 2, 3, 4])
        np.testing.assert_allclose(loss_b.y, [3.0, 1.5, 1.0, 0.75])
        np.testing.assert_array_equal(loss_b.epoch, [0, 0, 0, 1])
    assert run_series(metrics, ["nothing"]) == []


@pytest.mark.parametrize("x_axis", ["step", "epoch", "examples", "wall_time"])
def test_run_series_x_agrees_with_x_values(x_axis):
    metrics = tiny_metrics().sample(frac=1.0, random_state=1)
    for s in run_series(metrics, ["loss", "val_acc", "examples"], x_axis):
        rows = metrics[(metrics["run_id"] == s.run_id) & (metrics["key"] == s.key)].sort_values("step")
        np.testing.assert_array_equal(s.x, x_values(metrics, x_axis, rows).to_numpy())


def test_epoch_positions_when_logged_every_k_steps():
    # 10 steps per epoch, logged every 5th step: positions 0.5, 1.0, 1.5, 2.0, then a running epoch
    step = np.array([5, 10, 15, 20, 25])
    epoch = np.array([0, 0, 1, 1, 2])
    np.testing.assert_allclose(epoch_positions(step, epoch), [0.5, 1.0, 1.5, 2.0, 2.5])


# ---------------------------------------------------------------------------------------------
# group bands
# ---------------------------------------------------------------------------------------------
def test_band_across_interpolates_uneven_times_onto_their_union():
    # uneven times: each run is interpolated on the union of times, inside its own range only
    xs = [np.array([0.0, 1.0, 4.0]), np.array([0.5, 2.5])]
    ys = [np.array([0.0, 1.0, 4.0]), np.array([10.0, 30.0])]
    table = band_across(xs, ys, "std")
    assert table["x"].tolist() == [0.0, 0.5, 1.0, 2.5, 4.0]
    first = np.interp([0.0, 0.5, 1.0, 2.5, 4.0], xs[0], ys[0])
    second = [np.nan, 10.0, 15.0, 30.0, np.nan]
    np.testing.assert_allclose(table["mean"], np.nanmean([first, second], axis=0))
    np.testing.assert_array_equal(table["n_runs"], [1, 2, 2, 2, 1])


def test_band_across_resamples_when_runs_share_no_x():
    xs = [np.linspace(0, 10, 50) + 0.01 * k for k in range(4)]
    ys = [np.sin(x) for x in xs]
    table = band_across(xs, ys, "minmax")
    assert len(table) == 50  # an even grid as long as the longest run, not the 200-point union
    inside = table[table["n_runs"] == 4]
    for x, low, high in zip(inside["x"], inside["lower"], inside["upper"]):
        values = [np.interp(x, xr, yr) for xr, yr in zip(xs, ys)]
        assert low == pytest.approx(min(values)) and high == pytest.approx(max(values))


def test_chart_keys_adds_averaged_twins_the_marker_and_the_examples_axis():
    from app.charts.series import chart_keys

    assert chart_keys(["loss"], "step") == ["loss"]
    assert chart_keys(["loss"], "examples") == ["loss", "examples"]
    assert chart_keys(["train_loss", "val_loss"], "epoch") == [
        "train_loss", "val_loss", "ema_train_loss", "swa_train_loss", "best_epoch", "ema_val_loss", "swa_val_loss"]
