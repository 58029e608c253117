"""What a run learns to do, the seam between the training loop and its data: the loss of a batch, the validation
of each epoch and the end-of-run reports. `task_for(split)` picks it from the dataset's kind.

- `Classification` (images, text): cross-entropy on [N] labels, accuracy, macro precision/recall/F1, the dataset's
  own validation metrics, the recipe's input-independent check and the classification reports. Exactly what the
  loop did before the seam existed (a test compares every row of reference runs).
- `LanguageModel` (characters): cross-entropy of the next character at every position ([N, T] labels, padding
  ignored), next-character accuracy, validation loss in nats and bits per character, and at every evaluation (and
  before the first step) the recorded samples (`samples/{step}`, at `sample_temperature`) with the share that are
  distinct, new and real. The
  counting baselines are filed once (`lm_baselines`).

The loop calls `task.loss` every step (F.cross_entropy itself for classification: no added Python work per step)
and everything else once per epoch or run.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from engine import records
from engine.data.loading import DatasetSplit, normalize
from engine.diagnostics import recipe
from engine.validation import evaluate


class Classification:
    loss = staticmethod(F.cross_entropy)  # logits [B, C], labels [B]

    def first_checks(self, run, first_x: torch.Tensor, first_y: torch.Tensor) -> list[dict]:
        return [recipe.loss_at_init_check(run.model, first_x, first_y, len(run.split.info.classes),
                                          started_from=run.config.init_from or None)]

    def first_reports(self, run) -> None:
        """Nothing beyond the model summary and the initial weights."""

    @staticmethod
    def accuracy(predictions: list[torch.Tensor], targets: list[torch.Tensor]) -> float:
        if not predictions:
            return 0.0
        return (torch.cat(predictions) == torch.cat(targets)).float().mean().item()

    def epoch_throughput(self, targets: list[torch.Tensor], seconds: float) -> dict[str, float]:
        return {}

    def evaluate(self, model: nn.Module, run) -> dict[str, float]:
        """loss, acc (and precision, recall, f1) of any weights on the validation split."""
        return evaluate(model, run.val_x, run.val_y, run.split.mean, run.split.std)

    def validate(self, run) -> dict[str, float]:
        """The epoch's validation keys of the run's model: val_loss, val_acc... and the dataset's own."""
        metrics = {f"val_{k}": v for k, v in self.evaluate(run.model, run).items()}
        metrics.update(run.split.extra_val_metrics(run.model, run.val_x, run.val_y))  # e.g. sentiment's val_acc_hard
        return metrics

    def epoch_checks(self, run) -> list[dict]:
        if run.epoch != 0:
            return []
        return [recipe.input_independent_check(run.model, normalize(run.val_x, run.split.mean, run.split.std),
                                               run.val_y)]

    def final_reports(self, run) -> None:
        """Classification reports (sklearn format, confusion matrix, misclassified images) for last/best/EMA/SWA."""
        from engine.checkpoints import best_path, load_checkpoint
        from engine.diagnostics.evaluate import evaluate_weights

        model, ema, swa, run_id, device = run.model, run.ema, run.swa, run.run_id, run.device
        weights = {"last": model.state_dict()}
        if run_id is not None and best_path(run_id).exists():
            weights["best"] = load_checkpoint(best_path(run_id), device=device).model
        if ema is not None:
            weights["ema"] = ema.module.state_dict()
        if swa is not None and int(swa.n_averaged) > 0:
            weights["swa"] = swa.module.state_dict()
        reports = evaluate_weights(model, weights, normalize(run.val_x, run.split.mean, run.split.std), run.val_y,
                                   list(run.split.info.classes), device=device)
        for name, report in reports.items():
            run.sink.artifact(records.report_artifact(name), report)


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the next character over every labelled position (padding, IGNORE, left out)."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


class _ClassDimFirst(nn.Module):
    """A language model seen as the recipe's checks expect a classifier: logits [B, V, T] (the class dimension
    second, as F.cross_entropy reads it for [B, T] labels)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(ids).transpose(1, 2)


class LanguageModel:
    loss = staticmethod(lm_loss)  # logits [B, T, V], next characters [B, T]

    def first_checks(self, run, first_x: torch.Tensor, first_y: torch.Tensor) -> list[dict]:
        return [recipe.loss_at_init_check(_ClassDimFirst(run.model), first_x, first_y, len(run.split.info.classes),
                                          started_from=run.config.init_from or None)]

    def first_reports(self, run) -> None:
        """The counting baselines, and the samples of the untrained model (step 0: gibberish)."""
        chars = run.split.chars
        run.sink.artifact(records.LM_BASELINES, {**chars.baselines, "vocab": list(chars.vocab.tokens)})
        self._samples(run)

    @staticmethod
    def accuracy(predictions: list[torch.Tensor], targets: list[torch.Tensor]) -> float:
        if not predictions:
            return 0.0
        pred, true = torch.cat([p.flatten() for p in predictions]), torch.cat([t.flatten() for t in targets])
        labelled = true != -100
        return (pred[labelled] == true[labelled]).float().mean().item()

    def epoch_throughput(self, targets: list[torch.Tensor], seconds: float) -> dict[str, float]:
        chars = sum(int((t != -100).sum()) for t in targets)
        return {"chars_per_s": chars / max(seconds, 1e-9)}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, run, batch_size: int = 512) -> dict[str, float]:
        was_training = model.training
        model.eval()
        total, correct, count = 0.0, 0, 0
        try:
            for start in range(0, len(run.val_x), batch_size):
                logits = model(run.val_x[start:start + batch_size]).flatten(0, 1)
                target = run.val_y[start:start + batch_size].flatten()
                labelled = target != -100
                total += F.cross_entropy(logits, target, reduction="sum").item()
                correct += int((logits.argmax(-1)[labelled] == target[labelled]).sum())
                count += int(labelled.sum())
        finally:
            model.train(was_training)
        return {"loss": total / max(count, 1), "acc": correct / max(count, 1)}

    def validate(self, run) -> dict[str, float]:
        val = self.evaluate(run.model, run)
        metrics = {"val_loss": val["loss"], "val_acc": val["acc"], "val_bpc": val["loss"] / math.log(2)}
        scores = self._samples(run)
        metrics.update({f"val_{k}": v for k, v in scores.items() if k in ("new", "real", "distinct")})
        return metrics

    def epoch_checks(self, run) -> list[dict]:
        return []

    def final_reports(self, run) -> None:
        """The samples recorded at every evaluation are the run's report."""

    @staticmethod
    def _samples(run) -> dict:
        from engine.chars.sampling import record

        recorded = record(run.model, run.split.chars, run.step, run.epoch, run.config.sample_temperature)
        run.sink.artifact(records.samples_artifact(run.step), recorded)
        return recorded


def task_for(split: DatasetSplit) -> Classification | LanguageModel:
    """The task of a run's data: next-character prediction for a character dataset, classification otherwise."""
    return LanguageModel() if split.chars is not None else Classification()
