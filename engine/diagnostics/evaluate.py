"""Evaluation report of a trained classifier: per-class metrics, confusion matrix, misclassified examples.

The per-class precision/recall/F1/support and their averages come from scikit-learn's
`classification_report`, so the numbers are exactly the ones a practitioner gets from sklearn. The result
is plain JSON (the worker stores it as a run artifact; the page and `python -m engine show` read it back).

Public API
    predict(model, x, batch_size=512, device="cpu") -> Tensor [N, C]
        softmax probabilities, computed under eval() and no_grad(); the model's train/eval mode is restored.
    evaluation_report(y_true, y_pred, probs, class_names, max_misclassified=500) -> dict
        {"n", "accuracy", "report", "report_text", "labels", "confusion", "confusion_normalized",
         "misclassified", "misclassified_total"}; y_pred may be None (argmax of probs).
    evaluate_model(model, x, y, class_names, batch_size=512, device="cpu") -> dict
        predict + evaluation_report, plus "loss" (mean cross-entropy over x).
    evaluate_weights(model, weights, x, y, class_names, batch_size=512, device="cpu") -> dict[str, dict]
        one report per named state dict, e.g. {"best": ..., "last": ..., "ema": ..., "swa": ...}.

"report" is `classification_report(output_dict=True, zero_division=0)` with the class names as keys, plus a
"micro avg" entry: sklearn leaves micro avg out when every label is reported (it equals accuracy for
single-label multiclass data), but the issue asks for micro, macro and weighted averages side by side.
"misclassified" rows are {"index", "true", "pred", "confidence", "true_prob"}: index into x, class indices,
the predicted class's probability and the true class's probability; most confident mistakes first.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import classification_report, confusion_matrix, precision_recall_fscore_support
from torch import nn

MAX_MISCLASSIFIED = 500  # enough for a browsable grid per confusion cell, small enough for one JSON artifact


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 512, device: str | torch.device = "cpu") -> torch.Tensor:
    """Softmax probabilities [N, C] on the CPU, in batches so a whole validation set never sits on the device."""
    was_training = model.training
    model.eval()  # dropout off, batch norm uses running statistics
    try:
        chunks = [F.softmax(model(x[i:i + batch_size].to(device)).float(), dim=1).cpu()
                  for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(chunks) if chunks else torch.empty(0, 0)


def evaluation_report(y_true: Sequence[int] | np.ndarray | torch.Tensor,
                      y_pred: Sequence[int] | np.ndarray | torch.Tensor | None,
                      probs: np.ndarray | torch.Tensor,
                      class_names: Sequence[str],
                      max_misclassified: int = MAX_MISCLASSIFIED) -> dict[str, Any]:
    """The full evaluation report as JSON-serialisable values (see the module docstring)."""
    probs_np = _numpy(probs).astype(np.float64)
    true = _numpy(y_true).astype(np.int64)
    pred = probs_np.argmax(axis=1) if y_pred is None else _numpy(y_pred).astype(np.int64)
    names = [str(name) for name in class_names]
    labels = list(range(len(names)))
    if len(true) != len(pred) or len(true) != len(probs_np):
        raise ValueError(f"y_true, y_pred and probs must have the same length, "
                         f"got {len(true)}, {len(pred)}, {len(probs_np)}")

    report = classification_report(true, pred, labels=labels, target_names=names, output_dict=True, zero_division=0)
    micro_p, micro_r, micro_f, _ = precision_recall_fscore_support(true, pred, labels=labels, average="micro",
                                                                   zero_division=0)
    report["micro avg"] = {"precision": micro_p, "recall": micro_r, "f1-score": micro_f, "support": float(len(true))}
    text = classification_report(true, pred, labels=labels, target_names=names, zero_division=0, digits=4)

    counts = confusion_matrix(true, pred, labels=labels)
    # a class absent from y_true has an all-zero row; sklearn's normalize='true' maps its 0/0 to 0
    normalized = confusion_matrix(true, pred, labels=labels, normalize="true")

    wrong = np.flatnonzero(true != pred)
    confidence = probs_np[wrong, pred[wrong]]
    order = wrong[np.argsort(-confidence, kind="stable")][:max_misclassified]
    misclassified = [{"index": int(i), "true": int(true[i]), "pred": int(pred[i]),
                      "confidence": float(probs_np[i, pred[i]]), "true_prob": float(probs_np[i, true[i]])}
                     for i in order]

    return _jsonable({
        "n": len(true),
        "accuracy": float((true == pred).mean()) if len(true) else 0.0,
        "labels": names,
        "report": report,
        "report_text": text,
        "confusion": counts.tolist(),
        "confusion_normalized": normalized.tolist(),
        "misclassified": misclassified,
        "misclassified_total": int(len(wrong)),
    })


def evaluate_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, class_names: Sequence[str],
                   batch_size: int = 512, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Predict on (x, y) and build the report; adds the mean cross-entropy as "loss"."""
    probs = predict(model, x, batch_size, device)
    targets = torch.as_tensor(y, dtype=torch.long).cpu()
    # cross-entropy from the probabilities: the clamp keeps a confident mistake finite (log 1e-12 = -27.6)
    picked = probs[torch.arange(len(targets)), targets].double().clamp_min(1e-12)
    loss = float(-torch.log(picked).mean()) if len(targets) else 0.0
    report = evaluation_report(targets, None, probs, class_names)
    report["loss"] = loss
    return report


def evaluate_weights(model: nn.Module, weights: Mapping[str, Mapping[str, torch.Tensor]], x: torch.Tensor,
                     y: torch.Tensor, class_names: Sequence[str], batch_size: int = 512,
                     device: str | torch.device = "cpu") -> dict[str, dict[str, Any]]:
    """One report per named set of weights ("best", "last", "ema", "swa"...), leaving `model` untouched.

    SWA weights with batch norm need their running statistics recomputed (torch.optim.swa_utils.update_bn)
    before they are passed here; EMA weights that include buffers can be evaluated as they are.
    """
    scratch = copy.deepcopy(model).to(device)
    reports = {}
    for name, state in weights.items():
        scratch.load_state_dict(state)
        reports[name] = evaluate_model(scratch, x, y, class_names, batch_size, device)
    return reports


def _numpy(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _jsonable(value: Any) -> Any:
    """Turn numpy scalars/arrays nested in dicts and lists into plain Python values for json.dumps."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value
