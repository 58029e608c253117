"""Evaluation report: equal to scikit-learn's classification_report, confusion matrix and mistakes by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import classification_report
from torch import nn

from engine.diagnostics.evaluate import evaluate_model, evaluate_weights, evaluation_report, predict

NAMES = ["zero", "one", "two", "three"]


def _predictions(n: int = 200, seed: int = 0):
    """Random labels and probabilities with a bias towards the truth, so the report has a bit of everything."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 3, n)  # class 3 never occurs in the truth: its support is 0
    logits = rng.normal(size=(n, 4))
    logits[np.arange(n), y_true] += 1.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y_true, probs.argmax(axis=1), probs


def test_report_equals_sklearn_classification_report():
    y_true, y_pred, probs = _predictions()
    result = evaluation_report(y_true, y_pred, probs, NAMES)
    expected = classification_report(y_true, y_pred, labels=[0, 1, 2, 3], target_names=NAMES, output_dict=True,
                                     zero_division=0)
    report = dict(result["report"])
    micro = report.pop("micro avg")
    assert report == expected  # exactly, key for key and float for float
    assert result["accuracy"] == pytest.approx(expected["accuracy"])
    # micro averages over all labels of single-label data are the accuracy, computed here by hand
    hand_accuracy = float(np.mean(y_true == y_pred))
    assert micro == pytest.approx({"precision": hand_accuracy, "recall": hand_accuracy, "f1-score": hand_accuracy,
                                   "support": len(y_true)})
    # one class by hand, to be sure names map to the right label index
    tp = np.sum((y_pred == 1) & (y_true == 1))
    assert report["one"]["precision"] == pytest.approx(tp / np.sum(y_pred == 1))
    assert report["one"]["recall"] == pytest.approx(tp / np.sum(y_true == 1))
    assert report["three"]["recall"] == 0.0 and report["three"]["support"] == 0
    assert "three" in result["report_text"] and "weighted avg" in result["report_text"]


def test_confusion_matrix_and_misclassified_by_hand():
    y_true, y_pred, probs = _predictions(seed=1)
    result = evaluation_report(y_true, y_pred, probs, NAMES, max_misclassified=10)
    hand = np.zeros((4, 4), dtype=int)
    for t, p in zip(y_true, y_pred):
        hand[t, p] += 1
    assert result["confusion"] == hand.tolist()
    normalized = np.array(result["confusion_normalized"])
    for row, counts in zip(normalized, hand):
        expected = counts / counts.sum() if counts.sum() else np.zeros(4)
        assert row == pytest.approx(expected)

    wrong = np.flatnonzero(y_true != y_pred)
    assert result["misclassified_total"] == len(wrong)
    rows = result["misclassified"]
    assert len(rows) == 10  # capped
    confidences = [row["confidence"] for row in rows]
    assert confidences == sorted(confidences, reverse=True)
    assert confidences[0] == pytest.approx(probs[wrong, y_pred[wrong]].max())  # most confident mistake first
    for row in rows:
        i = row["index"]
        assert row["true"] == y_true[i] != row["pred"] == y_pred[i]
        assert row["confidence"] == pytest.approx(probs[i, y_pred[i]])
        assert row["true_prob"] == pytest.approx(probs[i, y_true[i]])
    json.dumps(result, allow_nan=False)  # storable as a JSON artifact as it is


def test_predict_softmax_in_eval_mode_and_restores_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.Dropout(0.5), nn.Linear(8, 3))
    x = torch.randn(37, 1, 3, 4)
    model.train()
    probs = predict(model, x, batch_size=10)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        expected = F.softmax(model(x), dim=1)
    assert torch.allclose(probs, expected, atol=1e-6)  # dropout was off, batches stitched in order


def test_evaluate_model_and_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 3))
    x = torch.randn(50, 1, 2, 3)
    y = torch.randint(0, 3, (50,))
    result = evaluate_model(model, x, y, ["a", "b", "c"], batch_size=16)
    with torch.no_grad():
        logits = model(x)
    assert result["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert result["accuracy"] == pytest.approx((logits.argmax(1) == y).float().mean().item())

    # weights that always predict class "a" (zero weights, the largest bias on "a"), next to the model's own
    constant = {"1.weight": torch.zeros(3, 6), "1.bias": torch.tensor([1.0, 0.0, 0.0])}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reports = evaluate_weights(model, {"last": model.state_dict(), "best": constant}, x, y, ["a", "b", "c"])
    assert reports["last"]["accuracy"] == result["accuracy"]
    assert reports["best"]["accuracy"] == pytest.approx((y == 0).float().mean().item())  # always predicts "a"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model was not touched
