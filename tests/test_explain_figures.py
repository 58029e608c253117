"""Tests of app.charts.explain: the Explain page's figures and tables, from plain arrays and frames.

Each figure is checked through what the browser receives (traces, their categories and values, the axes);
tables against the inputs they summarise.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd

from app.charts.explain import (
    class_label,
    epochs_figure,
    misclassified_table,
    quality_table,
    randomization_figure,
    randomization_table,
    randomization_verdict,
    topk_figure,
    topk_table,
)

DIGITS = [str(i) for i in range(10)]


def steps_of(*correlations: tuple[str, float, float]) -> pd.DataFrame:
    return randomization_table([SimpleNamespace(layer=layer, spearman=s, spearman_signed=signed)
                                for layer, s, signed in correlations])


def test_class_labels_add_the_index_unless_the_name_is_it():
    assert class_label(DIGITS, 7) == "7"
    assert class_label(["cat", "dog"], 1) == "dog (1)"


def test_topk_table_and_figure_show_the_most_probable_classes_first():
    probs = np.array([0.05, 0.4, 0.02, 0.3, 0.01, 0.1, 0.04, 0.03, 0.03, 0.02], dtype=np.float32)
    top = topk_table(probs, DIGITS)
    assert top["class"].tolist() == ["1", "3", "5", "0", "6"]
    np.testing.assert_array_equal(top["probability"], probs[[1, 3, 5, 0, 6]])
    fig = topk_figure(top)
    (bars,) = fig.data
    assert bars.type == "bar" and bars.orientation == "h"
    assert list(bars.y) == ["1", "3", "5", "0", "6"]
    np.testing.assert_array_equal(bars.x, probs[[1, 3, 5, 0, 6]])
    assert list(bars.text) == ["1 · 40.0%", "3 · 30.0%", "5 · 10.0%", "0 · 5.0%", "6 · 4.0%"]
    assert tuple(fig.layout.xaxis.range) == (0, 1) and fig.layout.yaxis.autorange == "reversed"  # first on top
    # digit names are categories: never a numeric axis with ticks 2/4/6 or a "10"
    assert fig.layout.yaxis.type == "category" and list(fig.layout.yaxis.categoryarray) == ["1", "3", "5", "0", "6"]
    json.loads(fig.to_json())


def test_topk_with_fewer_classes_than_k_and_named_classes():
    top = topk_table(np.array([0.2, 0.8]), ["cat", "dog"])
    assert top["class"].tolist() == ["dog (1)", "cat (0)"]
    assert len(topk_figure(top).data[0].y) == 2


def test_misclassified_table_lists_the_wrong_ones_most_confident_first():
    labels = np.array([0, 1, 2, 3, 4, 5])
    predicted = np.array([0, 2, 2, 1, 4, 0])
    confidence = np.array([0.9, 0.55, 0.8, 0.95, 0.7, 0.6], dtype=np.float32)
    table = misclassified_table(labels, predicted, confidence)
    assert table["sample"].tolist() == [3, 5, 1]
    assert table["true"].tolist() == [3, 5, 1] and table["predicted"].tolist() == [1, 0, 2]
    np.testing.assert_array_equal(table["confidence"], confidence[[3, 5, 1]])
    assert misclassified_table(labels, labels, confidence).empty


def test_quality_table_drops_missing_scores_and_rounds():
    table = quality_table({"infidelity": 0.012345, "sensitivity_max": None, "deletion_auc": 0.5})
    assert table.index.tolist() == ["infidelity", "deletion_auc"]
    assert table.tolist() == ["0.0123", "0.5"] and table.name == "value"


def test_randomization_table_and_figure():
    steps = steps_of(("fc2", 0.6, 0.4), ("fc1", 0.1, -0.1))
    assert steps["layer"].tolist() == ["(trained)", "fc2", "fc1"]  # the trained model first, as its own reference
    assert steps["spearman"].tolist() == [1.0, 0.6, 0.1]
    fig = randomization_figure(steps)
    assert [t.name for t in fig.data] == ["|map| (rank correlation)", "signed map"]
    for trace, column in zip(fig.data, ("spearman", "spearman_signed")):
        assert list(trace.x) == ["(trained)", "fc2", "fc1"]
        np.testing.assert_array_equal(trace.y, steps[column])
    assert fig.layout.yaxis.title.text == "Spearman ρ"


def test_randomization_verdict_reads_the_mean_over_stages_against_the_stated_threshold():
    # the default (absolute) view compares |map|: mean of 0.5 and 0.1 = 0.30 passes
    assert randomization_verdict(steps_of(("fc2", 0.5, 0.0), ("fc1", 0.1, 0.0))).startswith(
        "Mean rank correlation with the trained map over the stages: 0.30 (passes; a method passes below 0.65")
    assert "(fails" in randomization_verdict(steps_of(("fc2", 0.9, 0.8), ("fc1", 0.6, 0.5)))  # mean 0.75
    # a signed method is judged on its signed map
    signed = randomization_table([SimpleNamespace(layer="fc", spearman=0.99, spearman_signed=0.02)], "all")
    assert "0.02 (passes" in randomization_verdict(signed)
    fig = randomization_figure(signed)
    assert fig.layout.shapes[0].y0 == 0.65  # the threshold is drawn


def test_epochs_figure_marks_the_shown_epoch():
    history = pd.DataFrame({"epoch": [0, 1, 2], "target_prob": [0.2, 0.5, 0.9], "predicted": ["1", "7", "7"]})
    fig = epochs_figure(history, 1, "7")
    (line,) = fig.data
    # the page hands epochs already numbered as everywhere (0 = before training): the figure draws them as given
    assert line.name == "p(7)" and list(line.x) == [0, 1, 2] and list(line.y) == [0.2, 0.5, 0.9]
    (marker,) = fig.layout.shapes
    assert marker.x0 == marker.x1 == 1 and marker.line.dash == "dot"
    assert tuple(fig.layout.yaxis.range) == (0, 1)
