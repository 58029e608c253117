"""The training loop: `train(config, sink, should_stop)`, read top to bottom.

The same function runs in a worker process, a test or a benchmark: everything it reports goes through
`sink` (metrics, progress, checkpoints, artifacts; the protocol is `engine.sinks.Sink`), and `should_stop()` is
polled every step so a cancel lands within one step. Per step it logs loss, lr, the gradient norm before
clipping, whether it clipped, and examples seen; per epoch train/validation loss and accuracy, macro
precision/recall/F1, throughput, and the same validation for EMA/SWA weights when they are kept.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from engine.data.augment import AugmentSpec
from engine.checkpoints import Checkpoint, load_checkpoint, write_epoch_checkpoints, write_initial_checkpoint
from engine.config import RunConfig
from engine.data.loading import DatasetSplit, batches_per_epoch, iterate_batches, load_run_split, normalize
from engine.grads import FlatGradients
from engine.diagnostics.layer_stats import LayerStats
from engine.models import count_parameters, model_from_config
from engine.optim import lr_at, make_optimizer, set_lr
from engine import records
from engine.diagnostics import recipe
from engine.records import RunStatus
from engine.sinks import MemorySink, Sink
from engine.stopping import EarlyStopping

# the loop's public names; MemorySink (engine.sinks) is named here too: tests and benchmarks take it with `train`
__all__ = ["MemorySink", "TrainResult", "evaluate", "pick_device", "train"]

HISTOGRAMS_PER_RUN = 8  # layer histograms kept per run (at evenly spaced sampled steps)


@dataclass
class TrainResult:
    status: RunStatus  # completed | stopped_early | cancelled | diverged
    step: int
    epoch: int
    best_epoch: int | None = None
    best_metric: float | None = None
    error: str | None = None


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mean, std, batch_size: int = 1000) -> dict[str, float]:
    """Validation loss, accuracy and macro precision/recall/F1 under eval mode."""
    from sklearn.metrics import precision_recall_fscore_support

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
    precision, recall, f1, _ = precision_recall_fscore_support(true, pred, average="macro", zero_division=0)
    return {"loss": total_loss / len(x), "acc": float((pred == true).mean()), "precision": float(precision),
            "recall": float(recall), "f1": float(f1)}


def pick_device(requested: str) -> str:
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but this worker has no CUDA device")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def train(config: RunConfig, sink: Sink, should_stop: Callable[[], bool] = lambda: False, *,
          run_id: str | None = None, device: str = "cpu", resume_from: str | None = None,
          split: DatasetSplit | None = None) -> TrainResult:
    """Train `config` to the end (or until stopped), reporting through `sink`.

    run_id: when given, checkpoints are written under TRAINLENS_HOME/checkpoints/RUN_ID.
    resume_from: path of an epoch checkpoint to continue from (model, optimizer, averages, RNG, stopper).
    """
    config.validate()
    torch.manual_seed(config.seed)
    # the split (and generated data) is the same for every run, so validation scores compare across seeds
    split = split or load_run_split(config)
    info, mean, std = split.info, split.mean, split.std
    train_x, train_y = split.train_x.to(device), split.train_y.to(device)
    val_x, val_y = split.val_x.to(device), split.val_y.to(device)
    augment = AugmentSpec.from_config(config)

    model = model_from_config(config, info.channels, info.size, len(info.classes)).to(device)
    optimizer = make_optimizer(model.parameters(), config)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True) if config.ema else None
    swa = AveragedModel(model, use_buffers=True) if config.swa else None
    steps_per_epoch = batches_per_epoch(len(train_x), config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    stopper = EarlyStopping(config.early_stop_metric, config.patience, config.min_delta)
    best_state: dict[str, torch.Tensor] | None = None
    start_epoch, step, examples = 0, 0, 0

    if resume_from:
        ckpt = load_checkpoint(resume_from, device=device)
        model.load_state_dict(ckpt.model)
        if ckpt.optimizer:
            optimizer.load_state_dict(ckpt.optimizer)
        if ema is not None and ckpt.ema:
            ema.module.load_state_dict(ckpt.ema)
            ema.n_averaged.fill_(ckpt.extra.get("ema_n", 1))
        if swa is not None and ckpt.swa:
            swa.module.load_state_dict(ckpt.swa)
            swa.n_averaged.fill_(ckpt.extra.get("swa_n", 0))
        if ckpt.rng is not None:
            torch.set_rng_state(ckpt.rng.cpu())
        stopper = EarlyStopping(config.early_stop_metric, config.patience, config.min_delta, ckpt.extra.get("stopper"))
        start_epoch, step = ckpt.epoch + 1, ckpt.step
        examples = ckpt.extra.get("examples", step * config.batch_size)
    else:
        sink.artifact(records.MODEL_SUMMARY, {"parameters": count_parameters(model), "repr": str(model),
                                        "steps_per_epoch": steps_per_epoch, "total_steps": total_steps})
        if run_id is not None:
            write_initial_checkpoint(run_id, config, model, mean, std)
    checks = _Checks(sink, resumed=bool(resume_from))
    if not resume_from:
        first_x, first_y = next(iterate_batches(train_x, train_y, config.batch_size, seed=config.seed, epoch=0,
                                                mean=mean, std=std))
        checks.add(recipe.loss_at_init_check(model, first_x, first_y, len(info.classes)))
    stats = LayerStats(model, every=config.layer_stats_every,
                       hist_every=_histogram_every(config.layer_stats_every, total_steps))
    grads = FlatGradients(model)  # after the checks above: they deep-copy the model, gradients need not follow
    grad_norms: list[float] = []
    clipped_flags: list[bool] = []
    last_stats: dict[str, float] = {}

    sink.progress(step, total_steps, start_epoch)
    model.train()
    status, epoch = RunStatus.COMPLETED, start_epoch
    for epoch in range(start_epoch, config.epochs):
        epoch_start, epoch_examples = time.perf_counter(), 0
        loss_sum = 0.0
        predictions: list[torch.Tensor] = []  # compared with the labels once per epoch, not per step
        targets: list[torch.Tensor] = []
        batches = iterate_batches(train_x, train_y, config.batch_size, seed=config.seed, epoch=epoch,
                                  augment=augment if augment.active else None, mean=mean, std=std)
        for xb, yb in batches:
            if should_stop():
                status = RunStatus.CANCELLED
                break
            lr = lr_at(config, step, total_steps)
            set_lr(optimizer, lr)
            stats.begin_step(step)  # arms the layer hooks on sampled steps only
            grads.zero()
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            loss.backward()
            stats.after_backward()
            grad_norm, clipped = grads.clip(config)
            optimizer.step()
            layer_rows = stats.end_step()
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            examples += len(yb)
            epoch_examples += len(yb)
            predictions.append(logits.detach().argmax(1))
            targets.append(yb)
            loss_value, norm_value, clipped_value = loss.item(), grad_norm.item(), clipped.item()
            loss_sum += loss_value * len(yb)
            sink.log(step, epoch, {"loss": loss_value, "lr": lr, "grad_norm": norm_value,
                                   "clipped": clipped_value, "examples": examples})
            grad_norms.append(norm_value)
            clipped_flags.append(bool(clipped_value))
            if layer_rows:
                sink.log(step, epoch, layer_rows)
                last_stats = layer_rows
                histograms = stats.histograms()
                if histograms.get("step") == step - 1:  # a histogram step: keep it for the run report
                    # named and stamped with the step count the metrics use (the collector counts from 0)
                    sink.artifact(records.histogram_artifact(step), {**histograms, "step": step})
            if not math.isfinite(loss_value):
                stats.close()
                sink.progress(step, total_steps, epoch)
                return TrainResult(RunStatus.DIVERGED, step, epoch, error=f"loss became {loss_value} at step {step} (in epoch {records.epoch_number(epoch)}); "
                                   "try a smaller learning rate or gradient clipping")
            sink.progress(step, total_steps, epoch)
        if status == RunStatus.CANCELLED:
            break

        seconds = time.perf_counter() - epoch_start
        epoch_metrics = {"train_loss": loss_sum / max(1, epoch_examples),
                         "train_acc": _accuracy(predictions, targets),
                         "examples_per_s": epoch_examples / max(seconds, 1e-9)}
        val = evaluate(model, val_x, val_y, mean, std)
        epoch_metrics.update({f"val_{k}": v for k, v in val.items()})
        epoch_metrics.update(split.extra_val_metrics(model, val_x, val_y))  # e.g. sentiment's val_acc_hard
        if ema is not None:
            ema_val = evaluate(ema.module, val_x, val_y, mean, std)
            epoch_metrics.update({"ema_val_loss": ema_val["loss"], "ema_val_acc": ema_val["acc"]})
        if swa is not None and epoch >= config.swa_start:
            swa.update_parameters(model)
            _update_batchnorm(swa.module, train_x, train_y, config, mean, std)
            swa_val = evaluate(swa.module, val_x, val_y, mean, std)
            epoch_metrics.update({"swa_val_loss": swa_val["loss"], "swa_val_acc": swa_val["acc"]})
        sink.log(step, epoch, epoch_metrics)
        if epoch == 0:
            checks.add(recipe.input_independent_check(model, normalize(val_x, mean, std), val_y))

        improved = stopper.update(epoch, epoch_metrics[config.early_stop_metric])
        if improved and config.early_stop and config.restore_best:
            best_state = copy.deepcopy(model.state_dict())
        ckpt = Checkpoint(config=config, epoch=epoch, step=step, model=model.state_dict(),
                          ema=ema.module.state_dict() if ema is not None else None,
                          swa=swa.module.state_dict() if swa is not None and epoch >= config.swa_start else None,
                          optimizer=optimizer.state_dict(), rng=torch.get_rng_state(), metrics=epoch_metrics,
                          extra={"stopper": stopper.state(), "examples": examples, "mean": list(mean), "std": list(std),
                                 "ema_n": int(ema.n_averaged) if ema is not None else 0,
                                 "swa_n": int(swa.n_averaged) if swa is not None else 0})
        if run_id is not None:
            write_epoch_checkpoints(run_id, ckpt, improved, sink)
        if config.early_stop and stopper.should_stop and epoch < config.epochs - 1:
            status = RunStatus.STOPPED_EARLY
            break

    if config.early_stop and stopper.best_epoch is not None:
        sink.log(step, epoch, {"best_epoch": stopper.best_epoch})
        if config.restore_best and best_state is not None and status == RunStatus.STOPPED_EARLY:
            model.load_state_dict(best_state)
    stats.close()
    checks.add(recipe.clipping_check(grad_norms, clipped_flags, config.clip_value if config.clip == "norm" else None))
    if last_stats:
        checks.add_all(recipe.layer_health_checks(last_stats, judged=stats.matrix_params))
    if status != RunStatus.CANCELLED and step > 0:
        _final_reports(model, ema, swa, config, run_id, val_x, val_y, mean, std, info.classes, device, sink)
    sink.progress(step, total_steps, epoch)
    return TrainResult(status, step, epoch, stopper.best_epoch, stopper.best)


class _Checks:
    """The run's recipe checks, kept as one artifact that grows as checks complete."""

    def __init__(self, sink: Sink, resumed: bool):
        self.sink, self.items = sink, []
        self.resumed = resumed

    def add(self, check: dict) -> None:
        self.add_all([check])

    def add_all(self, checks: list[dict]) -> None:
        self.items.extend(checks)
        # a resumed run keeps the checks of its first life (loss at init...) and adds the later ones
        self.sink.artifact(records.RECIPE_CHECKS_RESUMED if self.resumed else records.RECIPE_CHECKS, self.items)


def _accuracy(predictions: list[torch.Tensor], targets: list[torch.Tensor]) -> float:
    if not predictions:
        return 0.0
    return (torch.cat(predictions) == torch.cat(targets)).float().mean().item()


def _histogram_every(every: int, total_steps: int) -> int:
    """A multiple of `every` giving about HISTOGRAMS_PER_RUN histograms over the run (0 = none)."""
    if not every:
        return 0
    return every * max(1, round(total_steps / every / HISTOGRAMS_PER_RUN))


def _update_batchnorm(model: nn.Module, x, y, config: RunConfig, mean, std) -> None:
    """Recompute batch-norm statistics for averaged (SWA) weights: averaging weights breaks the running stats."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return
    batches = [xb for xb, _ in iterate_batches(x, y, 256, seed=config.seed, epoch=0, mean=mean, std=std)]
    torch.optim.swa_utils.update_bn(batches, model)


def _final_reports(model, ema, swa, config, run_id, val_x, val_y, mean, std, classes, device, sink) -> None:
    """Classification reports (sklearn format, confusion matrix, misclassified images) for last/best/EMA/SWA."""
    from engine.checkpoints import best_path, load_checkpoint
    from engine.diagnostics.evaluate import evaluate_weights

    weights = {"last": model.state_dict()}
    if run_id is not None and best_path(run_id).exists():
        weights["best"] = load_checkpoint(best_path(run_id), device=device).model
    if ema is not None:
        weights["ema"] = ema.module.state_dict()
    if swa is not None and int(swa.n_averaged) > 0:
        weights["swa"] = swa.module.state_dict()
    reports = evaluate_weights(model, weights, normalize(val_x, mean, std), val_y, list(classes), device=device)
    for name, report in reports.items():
        sink.artifact(records.report_artifact(name), report)
