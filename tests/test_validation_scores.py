"""The epoch's macro precision/recall/F1 (engine.validation.macro_scores) are exactly scikit-learn's numbers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from engine.validation import macro_scores


@pytest.mark.parametrize("seed", range(12))
def test_the_same_numbers_as_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    classes = int(rng.integers(2, 12))
    true = rng.integers(0, classes, size=int(rng.integers(1, 400)))
    # a model that is partly right, never predicts some classes and invents one the labels lack
    pred = np.where(rng.random(len(true)) < 0.6, true, rng.integers(0, classes + 1, size=len(true)))
    pred[pred == 1] = 2
    want = precision_recall_fscore_support(true, pred, average="macro", zero_division=0)[:3]
    assert macro_scores(true, pred) == tuple(float(v) for v in want)


def test_perfect_and_hopeless_predictions():
    labels = np.array([0, 1, 2, 2])
    assert macro_scores(labels, labels) == (1.0, 1.0, 1.0)
    assert macro_scores(labels, np.array([1, 2, 0, 0])) == (0.0, 0.0, 0.0)
