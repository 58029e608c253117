"""What the training loop measures on the validation split at the end of every epoch.

`evaluate` gives the loss, accuracy and macro precision/recall/F1 of any weights (the model's, its EMA or SWA
average) under eval mode; `update_batchnorm` first recomputes the batch-norm statistics of averaged weights.
The full classification reports at the end of a run are `engine.diagnostics.evaluate`'s.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.config import RunConfig
from engine.data.loading import iterate_batches, normalize


def macro_scores(true: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    """Macro-averaged precision, recall and F1 over the labels present in `true` or `pred`, 0 where undefined: the
    very numbers of scikit-learn's `precision_recall_fscore_support(true, pred, average="macro", zero_division=0)`
    (same float64 arithmetic, tests/test_validation_scores.py), without importing scikit-learn and scipy (2.5 s of
    CPU that a fresh worker's first epoch end would wait for)."""
    labels = np.union1d(true, pred)
    t, p = np.searchsorted(labels, true), np.searchsorted(labels, pred)
    n = len(labels)
    tp = np.bincount(t[t == p], minlength=n).astype(np.float64)
    predicted, actual = np.bincount(p, minlength=n), np.bincount(t, minlength=n)

    def divide(numerator, denominator):
        return np.divide(numerator, denominator, out=np.zeros(n), where=denominator != 0)

    f1 = divide(2.0 * tp, actual.astype(np.float64) + predicted.astype(np.float64))
    return float(np.mean(divide(tp, predicted))), float(np.mean(divide(tp, actual))), float(np.mean(f1))


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mean, std, batch_size: int = 1000) -> dict[str, float]:
    """Validation loss, accuracy and macro precision/recall/F1 under eval mode."""
    was_training = model.training
    model.eval()
    total_loss, preds = 0.0, []
    for start in range(0, len(x), batch_size):
        logits = model(normalize(x[start:start + batch_size], mean, std))
        total_loss += F.cross_entropy(logits, y[start:start + batch_size], reduction="sum").item()
        preds.append(logits.argmax(1))
    model.train(was_training)
    pred = torch.cat(preds).cpu().numpy()
    true = y.cpu().numpy()
    precision, recall, f1 = macro_scores(true, pred)
    return {"loss": total_loss / len(x), "acc": float((pred == true).mean()), "precision": float(precision),
            "recall": float(recall), "f1": float(f1)}


def update_batchnorm(model: nn.Module, x, y, config: RunConfig, mean, std) -> None:
    """Recompute batch-norm statistics for averaged (SWA) weights: averaging weights breaks the running stats."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return
    batches = [xb for xb, _ in iterate_batches(x, y, 256, seed=config.seed, epoch=0, mean=mean, std=std)]
    torch.optim.swa_utils.update_bn(batches, model)
