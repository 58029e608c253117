"""The Run report's pure figure builders and helpers (app/charts/report.py), checked without a browser.

Evaluation reports come from the engine's own `evaluation_report` on small labelled predictions and are
checked against scikit-learn called directly; the LR-finder figure against a real `lr_find` sweep.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from app.charts import report as rf

LABELS = ["cat", "dog", "bird"]


@pytest.fixture
def evaluation():
    """An evaluation report of 60 predictions over 3 classes with a known mix of mistakes."""
    from engine.diagnostics.evaluate import evaluation_report

    rng = np.random.default_rng(0)
    true = np.repeat([0, 1, 2], 20)
    pred = true.copy()
    pred[:6] = 1  # 6 cats called dogs
    pred[20:23] = 2  # 3 dogs called birds
    pred[40] = 0  # 1 bird called a cat
    probs = rng.dirichlet(np.ones(3), size=60)
    probs[np.arange(60), pred] += 2.0  # the predicted class has the top probability
    probs /= probs.sum(1, keepdims=True)
    return evaluation_report(true, pred, probs, LABELS) | {"loss": 0.5}, true, pred


def test_report_table_matches_scikit_learn(evaluation):
    report, true, pred = evaluation
    table = rf.report_table(report)
    assert list(table.index) == LABELS + ["accuracy", "micro avg", "macro avg", "weighted avg"]
    precision, recall, f1, support = precision_recall_fscore_support(true, pred, zero_division=0)
    np.testing.assert_allclose(table.loc[LABELS, "precision"], precision)
    np.testing.assert_allclose(table.loc[LABELS, "recall"], recall)
    np.testing.assert_allclose(table.loc[LABELS, "f1-score"], f1)
    assert list(table.loc[LABELS, "support"]) == list(support)
    for average in ("micro", "macro", "weighted"):
        expected = precision_recall_fscore_support(true, pred, average=average, zero_division=0)[:3]
        np.testing.assert_allclose(table.loc[f"{average} avg", ["precision", "recall", "f1-score"]], expected)
        assert table.loc[f"{average} avg", "support"] == 60
    # like sklearn's printout: the accuracy row has only the accuracy (in f1-score) and the support
    assert table.loc["accuracy", "f1-score"] == pytest.approx(accuracy_score(true, pred))
    assert math.isnan(table.loc["accuracy", "precision"]) and math.isnan(table.loc["accuracy", "recall"])
    shown = rf.report_display(table)
    accuracy_row = shown[shown["class"] == "accuracy"].iloc[0]
    assert (accuracy_row["precision"], accuracy_row["recall"]) == ("", "")
    assert accuracy_row["f1-score"] == f"{accuracy_score(true, pred):.4f}" and accuracy_row["support"] == "60"
    assert shown[shown["class"] == "cat"].iloc[0]["recall"] == f"{recall[0]:.4f}"


def test_confusion_cells_and_their_examples(evaluation):
    report, _, _ = evaluation
    assert rf.confusion_cells(report) == [(0, 1, 6), (1, 2, 3), (2, 0, 1)]  # off-diagonal, biggest first
    examples = rf.cell_examples(report, 0, 1)
    assert sorted(e["index"] for e in examples) == list(range(6))
    confidences = [e["confidence"] for e in examples]
    assert confidences == sorted(confidences, reverse=True)
    assert rf.cell_examples(report, 0, 2) == []
    # a click on the chart reports the invisible cell marker, whose customdata is [true, pred, count]
    assert rf.cell_from_points([{"x": 1, "y": 0, "customdata": [0, 1, 6]}]) == (0, 1)
    assert rf.cell_from_points([]) is None and rf.cell_from_points(None) is None
    assert rf.cell_from_points([{"x": 1, "y": 0}]) is None


def test_confusion_figure_counts_normalised_and_clickable_cells(evaluation):
    report, true, pred = evaluation
    counts = confusion_matrix(true, pred)
    figure = rf.confusion_figure(report)
    heatmap, cells = figure.data
    assert heatmap.type == "heatmap" and np.array_equal(np.asarray(heatmap.z), counts)
    assert heatmap.text[0][1] == "6"
    assert list(figure.layout.xaxis.ticktext) == LABELS and list(figure.layout.yaxis.ticktext) == LABELS
    assert figure.layout.yaxis.autorange == "reversed"  # true class 0 on top, as sklearn draws it
    # one invisible marker per cell, at (pred, true), carrying [true, pred, count]
    assert cells.type == "scatter" and len(cells.x) == 9
    for x, y, data in zip(cells.x, cells.y, cells.customdata):
        assert (data[0], data[1]) == (y, x) and data[2] == counts[y, x]
    assert "click" in cells.text[1] and "click" not in cells.text[0]  # only mistakes invite a click
    assert not figure.layout.shapes

    normalised = rf.confusion_figure(report, normalized=True, selected=(1, 2))
    np.testing.assert_allclose(np.asarray(normalised.data[0].z), confusion_matrix(true, pred, normalize="true"))
    assert normalised.data[0].text[0][1] == "30%"
    (outline,) = normalised.layout.shapes
    assert (outline.x0, outline.x1, outline.y0, outline.y1) == (1.5, 2.5, 0.5, 1.5)  # column pred=2, row true=1


def test_thumbnail_grey_and_colour():
    grey = np.linspace(0, 1, 16).reshape(1, 4, 4)
    pixels = rf.thumbnail(grey, scale=3)
    assert pixels.shape == (12, 12) and pixels.dtype == np.uint8
    assert pixels[0, 0] == 0 and pixels[-1, -1] == 255 and (pixels[:3, :3] == 0).all()  # nearest, no blur
    colour = np.zeros((3, 2, 2))
    colour[0] = 2.0  # out of range: clipped
    colour[2] = -1.0
    pixels = rf.thumbnail(colour, scale=2)
    assert pixels.shape == (4, 4, 3) and (pixels[..., 0] == 255).all() and (pixels[..., 2] == 0).all()


def test_badges_colours_labels_numbers_and_resumed_checks():
    assert [rf.badge_color(s) for s in ("pass", "warn", "skip", "other")] == ["green", "orange", "gray", "gray"]
    assert rf.badge_icon("warn") == rf.STATUS_ICONS["warn"] != rf.badge_icon("pass")
    clip = {"name": "clipping", "title": "Gradient clipping", "status": "warn",
            "numbers": {"fraction_clipped": 0.54, "steps": 26, "median_norm": 1.0829, "clip_value": 1.0, "bad": None}}
    assert rf.badge_label(clip) == "Gradient clipping: warn"
    assert rf.badge_label({"name": "x", "title": "X", "status": "skip"}) == "X: skipped"
    assert rf.check_numbers_text(clip) == "clipped 54% · steps 26 · median norm 1.08 · threshold 1 · bad n/a"
    dead = {"name": "dead_units", "numbers": {"relu1": 0.0, "relu2": 0.375}}
    assert rf.check_numbers_text(dead) == "relu1 0% · relu2 38%"  # per-layer fractions as percentages
    overfit = {"name": "overfit_one_batch", "numbers": {"final_loss": 0.0325, "curve": [2.3, 0.1]}}
    assert rf.check_numbers_text(overfit) == "final loss 0.0325"  # the curve is drawn, not printed
    assert rf.format_number(1.2e-5) == "1.20e-05"

    first = [{"name": "loss_at_init", "status": "pass"}, {"name": "clipping", "status": "pass"}]
    later = [{"name": "clipping", "status": "warn"}]
    merged = rf.merge_checks(first, later)
    assert [(c["name"], c["status"], c.get("resumed", False)) for c in merged] == [
        ("loss_at_init", "pass", False), ("clipping", "warn", True)]
    assert rf.merge_checks(None, None) == []


def metrics_frame(rows: list[tuple[int, str, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"id": i, "run_id": "r", "step": s, "epoch": 0, "key": k, "value": v, "wall_time": 0.0}
                         for i, (s, k, v) in enumerate(rows, 1)])


def layer_metrics() -> pd.DataFrame:
    rows = []
    for step in (1, 11, 21):
        rows += [(step, "update_ratio/fc1.weight", -2.0 - step / 100), (step, "update_ratio/fc1.bias", -4.0),
                 (step, "update_ratio/fc2.weight", -3.1), (step, "act_std/relu1", 0.5 + step / 100),
                 (step, "dead_frac/relu1", 0.1), (step, "loss", 2.0)]
    return metrics_frame(rows)


def test_update_ratio_figure_has_one_line_per_parameter_and_the_makemore_reference():
    metrics = layer_metrics()
    assert rf.layer_names(metrics, "update_ratio") == ["fc1.weight", "fc1.bias", "fc2.weight"]
    # makemore's plot judges the weight matrices: the histogram's weight gradients say which those are
    assert rf.matrix_param_names(metrics, {"grads": {"fc2.weight": {}, "fc1.weight": {}}}) == ["fc1.weight", "fc2.weight"]
    assert rf.matrix_param_names(metrics) == ["fc1.weight", "fc2.weight"]
    figure = rf.update_ratio_figure(metrics, ["fc1.weight", "fc2.weight"])
    assert [t.name for t in figure.data] == ["fc1.weight", "fc2.weight"]
    assert list(figure.data[0].x) == [1, 11, 21]
    np.testing.assert_allclose(figure.data[0].y, [-2.01, -2.11, -2.21])
    (line,) = figure.layout.shapes
    assert line.y0 == line.y1 == -3.0 and line.xref == "paper"
    assert "1e-3" in figure.layout.annotations[0].text
    everything = rf.update_ratio_figure(metrics)
    assert {t.name for t in everything.data} == {"fc1.weight", "fc1.bias", "fc2.weight"}

    dead = rf.layer_stat_figure(metrics, "dead_frac", y_range=[0, 1])
    assert [t.name for t in dead.data] == ["relu1"] and list(dead.layout.yaxis.range) == [0, 1]
    assert not dead.layout.shapes
    assert rf.layer_stat_figure(metrics, "grad_std").data == ()  # nothing logged: an empty figure, no error


def test_histogram_figure_and_steps():
    histogram = {"step": 9, "activations": {
        "relu1": {"edges": [0.0, 1.0, 2.0, 3.0], "counts": [6, 3, 1]},
        "relu2": {"edges": [-1.0, 0.0, 1.0], "counts": [0, 4]}}}
    figure = rf.histogram_figure(histogram, "activations", step=10)
    assert [t.name for t in figure.data] == ["relu1", "relu2"]
    np.testing.assert_allclose(figure.data[0].x, [0.5, 1.5, 2.5])  # bin centres
    np.testing.assert_allclose(figure.data[0].y, [0.6, 0.3, 0.1])  # share of the layer's values
    np.testing.assert_allclose(figure.data[1].y, [0.0, 1.0])
    assert "step 10" in figure.layout.title.text
    assert rf.histogram_figure(histogram, "grads").data == ()
    from engine.records import histogram_steps

    assert histogram_steps(["hist/21", "report/last", "hist/1", "hist/x", "recipe_checks", "hist/11"]) == [1, 11, 21]


def test_grad_norm_before_and_after_clipping():
    norms = [0.2, 1.5, 3.0, 0.9]
    metrics = metrics_frame([(i + 1, "grad_norm", v) for i, v in enumerate(norms)]
                            + [(i + 1, "clipped", float(v > 1.0)) for i, v in enumerate(norms)])
    assert rf.clipping_summary(metrics) == {"steps": 4, "clipped": 2, "fraction": 0.5}
    figure = rf.grad_norm_figure(metrics, "norm", 1.0)
    before, after = figure.data
    assert (before.name, after.name) == ("before clipping", "after clipping")
    np.testing.assert_allclose(before.y, norms)
    np.testing.assert_allclose(after.y, [0.2, 1.0, 1.0, 0.9])
    assert figure.layout.shapes[0].y0 == 1.0
    assert len(rf.grad_norm_figure(metrics, "none").data) == 1
    assert len(rf.grad_norm_figure(metrics, "value", 1.0).data) == 1  # the norm after is not logged
    assert math.isnan(rf.clipping_summary(metrics_frame([(1, "loss", 1.0)]))["fraction"])


@pytest.fixture(scope="module")
def sweep():
    """A real LR-finder sweep on a tiny learnable problem."""
    import torch
    from torch import nn

    from engine.diagnostics.lr_finder import lr_find

    generator = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 10, generator=generator)
    y = torch.randint(0, 4, (256,), generator=generator)
    x = centers[y] + torch.randn(256, 10, generator=generator)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 4))
    batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 256, 32)]
    return lr_find(model, lambda params: torch.optim.SGD(params, lr=0.1), batches, num_steps=80)


def test_lr_finder_figure_marks_the_suggestions_on_a_log_axis(sweep):
    assert sweep["suggestions"], "the tiny sweep should suggest something"
    figure = rf.lr_finder_figure(sweep["lrs"], sweep["losses"], sweep["smoothed"], sweep["suggestions"])
    assert figure.layout.xaxis.type == "log"
    raw, smooth, *markers = figure.data
    np.testing.assert_allclose(smooth.x, sweep["lrs"])
    np.testing.assert_allclose(smooth.y, sweep["smoothed"])
    assert raw.opacity < 0.5 and smooth.name == "smoothed loss"
    assert len(markers) == len(sweep["suggestions"])
    for marker in markers:
        name = "valley" if marker.name.startswith("valley") else "steepest"
        suggestion = sweep["suggestions"][name]
        assert marker.x[0] == suggestion["lr"]
        assert marker.y[0] == pytest.approx(sweep["smoothed"][suggestion["index"]])  # on the smoothed curve
        assert f"lr={suggestion['lr']:.2g}" in marker.name and marker.mode == "markers+text"
        assert rf.suggested_lr(sweep, name) == suggestion["lr"]
    low, high = figure.layout.yaxis.range
    assert low < min(sweep["smoothed"])
    if sweep["stopped_early"]:  # the explosion that ended the sweep is cut off, not squashing the curve
        assert high < max(sweep["smoothed"])
    assert rf.suggested_lr({"suggestions": {}}, "valley") is None
    # while the sweep runs, the same figure without suggestions, titled as in progress
    live = rf.lr_finder_figure(sweep["lrs"][:10], sweep["losses"][:10], sweep["smoothed"][:10], live=True)
    assert len(live.data) == 2 and "progress" in live.layout.title.text


def test_lr_sweep_frame_reads_the_jobs_metrics_by_step():
    rows = []
    for step, lr in ((2, 1e-6), (1, 1e-7), (3, 1e-5)):
        rows += [(step, "lr_find_lr", lr), (step, "lr_find_loss", 2.0 + step), (step, "lr_find_smoothed", 2.0 + step / 10)]
    frame = rf.lr_sweep_frame(metrics_frame(rows + [(1, "progress", 0.0)]))
    assert list(frame.columns) == ["step", "lr", "loss", "smoothed"]
    assert list(frame["step"]) == [1, 2, 3] and list(frame["lr"]) == [1e-7, 1e-6, 1e-5]
    assert list(frame["loss"]) == [3.0, 4.0, 5.0]
    assert rf.lr_sweep_frame(metrics_frame([(1, "loss", 1.0)])).empty


def test_overfit_figure_draws_the_curve_and_the_target():
    figure = rf.overfit_figure([2.3, 1.0, None, 0.04], target_loss=0.05)
    np.testing.assert_allclose(figure.data[0].y, [2.3, 1.0, np.nan, 0.04])
    assert figure.layout.yaxis.type == "log" and figure.layout.shapes[0].y0 == 0.05
