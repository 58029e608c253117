"""The training loop: `train(config, sink, should_stop)`, read top to bottom as its four phases.

What the run learns (classifying images or text, or predicting the next character) is its `Task`
(`engine.tasks`, chosen from the dataset's kind): the loss of a batch, each epoch's validation and the reports at
the end. Everything else (optimizers, schedules, clipping, averaging, early stopping, checkpoints, resume, the
recipe's checks) is the same loop for every task.

The same function runs in a worker process, a test or a benchmark: everything it reports goes through
`sink` (metrics, progress, checkpoints, artifacts; the protocol is `engine.sinks.Sink`), and `should_stop()` is
polled every step so a cancel lands within one step. Per step it logs loss, lr, the gradient norm before
clipping, whether it clipped, and examples seen; per epoch train/validation loss and accuracy, macro
precision/recall/F1, throughput, the metrics the dataset adds (`DatasetSplit.extra_val_metrics`), and the same
validation for EMA/SWA weights when they are kept (a language model: loss in nats and bits per character,
next-character accuracy, characters per second and its recorded samples).

`train` calls one function per phase, as the small loops of nanoGPT and pytorch/examples read: `_setup` (data,
model, optimizer, averages, stopper; a resumed run's state or a first life's artifacts), `_train_epoch` (the
steps), `_end_epoch` (validation, averaged weights, checks, early stopping, checkpoints) and `_finish` (best
weights back, final checks, the task's reports). A `_Run` carries the run's state from one phase to the next.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from engine import records
from engine.checkpoints import Checkpoint, load_checkpoint, write_epoch_checkpoints, write_initial_checkpoint
from engine.config import RunConfig
from engine.data.augment import AugmentSpec
from engine.data.loading import DatasetSplit, batches_per_epoch, iterate_batches, load_run_split
from engine.diagnostics import recipe
from engine.diagnostics.layer_stats import LayerStats
from engine.grads import FlatGradients
from engine.models import model_from_config
from engine.optim import lr_at, make_optimizer, set_lr
from engine.records import RunStatus
from engine.sinks import MemorySink, Sink
from engine.stopping import EarlyStopping
from engine.tasks import Classification, LanguageModel, task_for
from engine.transfer import prepare_model, trainable_parameters
from engine.validation import update_batchnorm

# the loop's public names; MemorySink (engine.sinks) is named here too: tests and benchmarks take it with `train`
__all__ = ["MemorySink", "TrainResult", "pick_device", "train"]

HISTOGRAMS_PER_RUN = 8  # layer histograms kept per run (at evenly spaced sampled steps)


@dataclass
class TrainResult:
    status: RunStatus  # completed | stopped_early | cancelled | diverged
    step: int
    epoch: int
    best_epoch: int | None = None
    best_metric: float | None = None
    error: str | None = None


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
    split: the run's data when the caller holds it already (tests, benchmarks); else `load_run_split(config)`.
    """
    # Setup: seeded first, so the initial weights and every random number after them are the seed's; a resumed
    # run then takes its state (random state included) from the checkpoint.
    config.validate()
    torch.manual_seed(config.seed)
    run = _setup(config, sink, run_id=run_id, device=device, resume_from=resume_from, split=split)
    sink.progress(run.step, run.total_steps, run.start_epoch)
    run.model.train()
    for epoch in range(run.start_epoch, config.epochs):
        run.epoch = epoch
        # The epoch's steps. A cancel lands between two steps; a non-finite loss ends the run at once: nothing
        # trained after it would mean anything, and the reports would only describe a broken model.
        train_metrics = _train_epoch(run, should_stop)
        if run.status == RunStatus.DIVERGED:
            return _diverged(run)
        if run.status == RunStatus.CANCELLED:
            break
        # The epoch's end: validation (of the averaged weights too), checks, checkpoints to resume from; early
        # stopping may end the run here.
        if _end_epoch(run, train_metrics):
            run.status = RunStatus.STOPPED_EARLY
            break
    # Finish: the best weights back after early stopping, the checks that need the whole run, then the task's
    # reports (a classifier's: the classification reports of every set of weights the run kept).
    return _finish(run)


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


@dataclass(eq=False)
class _Run:
    """The run's state between the phases: what `_setup` builds, the epochs advance and `_finish` reports."""

    config: RunConfig
    sink: Sink
    run_id: str | None
    device: str
    split: DatasetSplit
    task: Classification | LanguageModel  # what the run learns: the loss, the validation and the reports
    train_x: torch.Tensor  # the split's tensors, on the device
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    augment: AugmentSpec | None  # None when the config turns no augmentation on
    model: nn.Module
    optimizer: torch.optim.Optimizer
    ema: AveragedModel | None  # exponential moving average of the weights, updated every step
    swa: AveragedModel | None  # stochastic weight average, updated at each epoch's end from swa_start
    stopper: EarlyStopping
    checks: _Checks
    total_steps: int
    transfer: dict = field(default_factory=dict)  # engine.transfer.TransferSummary: counts, source, new head
    start_epoch: int = 0
    epoch: int = 0  # the epoch being trained (0-based), or the last one trained
    step: int = 0  # optimizer steps taken
    examples: int = 0  # training examples seen
    status: RunStatus = RunStatus.COMPLETED  # until a cancel, a divergence or early stopping says otherwise
    error: str | None = None  # why the run diverged
    best_state: dict[str, torch.Tensor] | None = None  # the best epoch's weights, restored after early stopping
    grad_norms: list[float] = field(default_factory=list)  # every step's, for the clipping check
    clipped_flags: list[bool] = field(default_factory=list)
    last_stats: dict[str, float] = field(default_factory=dict)  # the last sampled layer statistics
    stats: LayerStats = field(init=False)  # set by _setup once the first life's checks are done
    grads: FlatGradients = field(init=False)


def _setup(config: RunConfig, sink: Sink, *, run_id: str | None, device: str, resume_from: str | None,
           split: DatasetSplit | None) -> _Run:
    """Data on the device, then model, optimizer, averages and stopper, in the order that draws the seed's random
    numbers; then a resumed run's state, or a first life's summary, initial weights and loss at init."""
    # the split (and generated data) is the same for every run, so validation scores compare across seeds
    split = split or load_run_split(config)
    info = split.info
    train_x, train_y = split.train_x.to(device), split.train_y.to(device)
    val_x, val_y = split.val_x.to(device), split.val_y.to(device)
    augment = AugmentSpec.from_config(config)
    model = model_from_config(config, info.channels, info.size, len(info.classes)).to(device)
    # another run's weights, adapters, freezing (engine.transfer); a resumed run's own checkpoint replaces the weights
    transfer = prepare_model(model, config, load_source=not resume_from, device=device)
    optimizer = make_optimizer(trainable_parameters(model), config)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True) if config.ema else None
    swa = AveragedModel(model, use_buffers=True) if config.swa else None
    steps_per_epoch = batches_per_epoch(len(train_x), config.batch_size)
    run = _Run(config, sink, run_id, device, split, task_for(split), train_x, train_y, val_x, val_y,
               augment if augment.active else None, model, optimizer, ema, swa,
               EarlyStopping(config.early_stop_metric, config.patience, config.min_delta),
               _Checks(sink, resumed=bool(resume_from)), total_steps=config.epochs * steps_per_epoch,
               transfer=transfer.as_dict())
    if resume_from:
        _resume(run, load_checkpoint(resume_from, device=device))
    else:
        _first_life(run, steps_per_epoch)
    run.stats = LayerStats(model, every=config.layer_stats_every,
                           hist_every=_histogram_every(config.layer_stats_every, run.total_steps))
    run.grads = FlatGradients(model)  # after the checks above: they deep-copy the model, gradients need not follow
    return run


def _resume(run: _Run, ckpt: Checkpoint) -> None:
    """Continue where an epoch checkpoint left off: weights, optimizer, averages, random state, stopper, counters."""
    config = run.config
    run.model.load_state_dict(ckpt.model)
    if ckpt.optimizer:
        run.optimizer.load_state_dict(ckpt.optimizer)
    if run.ema is not None and ckpt.ema:
        run.ema.module.load_state_dict(ckpt.ema)
        run.ema.n_averaged.fill_(ckpt.extra.get("ema_n", 1))
    if run.swa is not None and ckpt.swa:
        run.swa.module.load_state_dict(ckpt.swa)
        run.swa.n_averaged.fill_(ckpt.extra.get("swa_n", 0))
    if ckpt.rng is not None:
        torch.set_rng_state(ckpt.rng.cpu())
    run.stopper = EarlyStopping(config.early_stop_metric, config.patience, config.min_delta, ckpt.extra.get("stopper"))
    run.start_epoch = run.epoch = ckpt.epoch + 1
    run.step = ckpt.step
    run.examples = ckpt.extra.get("examples", run.step * config.batch_size)


def _first_life(run: _Run, steps_per_epoch: int) -> None:
    """A new run's first reports: the model summary, the initial weights (with a run id) and the loss at init."""
    config, model, split = run.config, run.model, run.split
    run.sink.artifact(records.MODEL_SUMMARY, {"parameters": sum(p.numel() for p in model.parameters()),
                                              "repr": str(model), "steps_per_epoch": steps_per_epoch,
                                              "total_steps": run.total_steps, **run.transfer})
    if run.run_id is not None:
        write_initial_checkpoint(run.run_id, config, model, split.mean, split.std)
    first_x, first_y = next(iterate_batches(run.train_x, run.train_y, config.batch_size, seed=config.seed, epoch=0,
                                            mean=split.mean, std=split.std))
    run.checks.add_all(run.task.first_checks(run, first_x, first_y))
    run.task.first_reports(run)


def _train_epoch(run: _Run, should_stop: Callable[[], bool]) -> dict[str, float]:
    """One epoch's steps, each logged; returns the epoch's training metrics. Sets `run.status` to CANCELLED or
    DIVERGED when the epoch ends before its last batch."""
    # the hot loop reads locals only: the run's fields are read once here and written back once at the end
    config, sink, model, optimizer, ema, stats, grads = (run.config, run.sink, run.model, run.optimizer, run.ema,
                                                         run.stats, run.grads)
    epoch, step, examples, total_steps = run.epoch, run.step, run.examples, run.total_steps
    grad_norms, clipped_flags = run.grad_norms, run.clipped_flags
    epoch_start, epoch_examples = time.perf_counter(), 0
    loss_sum, loss_fn = 0.0, run.task.loss
    predictions: list[torch.Tensor] = []  # compared with the labels once per epoch, not per step
    targets: list[torch.Tensor] = []
    batches = iterate_batches(run.train_x, run.train_y, config.batch_size, seed=config.seed, epoch=epoch,
                              augment=run.augment, mean=run.split.mean, std=run.split.std)
    for xb, yb in batches:
        if should_stop():
            run.status = RunStatus.CANCELLED
            break
        lr = lr_at(config, step, total_steps)
        set_lr(optimizer, lr)
        stats.begin_step(step)  # arms the layer hooks on sampled steps only
        # the step: zero the gradients, forward, loss, backward, clip, update
        grads.zero()
        logits = model(xb)
        loss = loss_fn(logits, yb)
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
        predictions.append(logits.detach().argmax(-1))
        targets.append(yb)
        # logging: the numbers of every step, as Python floats
        loss_value, norm_value, clipped_value = loss.item(), grad_norm.item(), clipped.item()
        loss_sum += loss_value * len(yb)
        sink.log(step, epoch, {"loss": loss_value, "lr": lr, "grad_norm": norm_value,
                               "clipped": clipped_value, "examples": examples})
        grad_norms.append(norm_value)
        clipped_flags.append(bool(clipped_value))
        if layer_rows:
            sink.log(step, epoch, layer_rows)
            run.last_stats = layer_rows
            histograms = stats.histograms()
            if histograms.get("step") == step - 1:  # a histogram step: keep it for the run report
                # named and stamped with the step count the metrics use (the collector counts from 0)
                sink.artifact(records.histogram_artifact(step), {**histograms, "step": step})
        # divergence: the step that produced a non-finite loss is the last one logged
        if not math.isfinite(loss_value):
            run.status = RunStatus.DIVERGED
            run.error = (f"loss became {loss_value} at step {step} (in epoch {records.epoch_number(epoch)}); "
                         "try a smaller learning rate or gradient clipping")
            break
        sink.progress(step, total_steps, epoch)
    run.step, run.examples = step, examples
    seconds = time.perf_counter() - epoch_start
    return {"train_loss": loss_sum / max(1, epoch_examples),
            "train_acc": run.task.accuracy(predictions, targets),
            "examples_per_s": epoch_examples / max(seconds, 1e-9), **run.task.epoch_throughput(targets, seconds)}


def _end_epoch(run: _Run, epoch_metrics: dict[str, float]) -> bool:
    """Validate the epoch's weights (and the averages kept), log the epoch's metrics, add the first epoch's check,
    update early stopping and write the checkpoints; True when early stopping ends the run here."""
    config, sink, model, epoch, task = run.config, run.sink, run.model, run.epoch, run.task
    epoch_metrics.update(task.validate(run))
    if run.ema is not None:
        ema_val = task.evaluate(run.ema.module, run)
        epoch_metrics.update({"ema_val_loss": ema_val["loss"], "ema_val_acc": ema_val["acc"]})
    if run.swa is not None and epoch >= config.swa_start:
        run.swa.update_parameters(model)
        update_batchnorm(run.swa.module, run.train_x, run.train_y, config, run.split.mean, run.split.std)
        swa_val = task.evaluate(run.swa.module, run)
        epoch_metrics.update({"swa_val_loss": swa_val["loss"], "swa_val_acc": swa_val["acc"]})
    sink.log(run.step, epoch, epoch_metrics)
    checks = task.epoch_checks(run)
    if checks:
        run.checks.add_all(checks)

    improved = run.stopper.update(epoch, epoch_metrics[config.early_stop_metric])
    if improved and config.early_stop and config.restore_best:
        run.best_state = copy.deepcopy(model.state_dict())
    if run.run_id is not None:
        write_epoch_checkpoints(run.run_id, _epoch_checkpoint(run, epoch_metrics), improved, sink)
    return config.early_stop and run.stopper.should_stop and epoch < config.epochs - 1


def _epoch_checkpoint(run: _Run, metrics: dict[str, float]) -> Checkpoint:
    """Everything `_resume` needs to continue the run exactly where this epoch ends."""
    config, epoch, ema, swa = run.config, run.epoch, run.ema, run.swa
    return Checkpoint(config=config, epoch=epoch, step=run.step, model=run.model.state_dict(),
                      ema=ema.module.state_dict() if ema is not None else None,
                      swa=swa.module.state_dict() if swa is not None and epoch >= config.swa_start else None,
                      optimizer=run.optimizer.state_dict(), rng=torch.get_rng_state(), metrics=metrics,
                      extra={"stopper": run.stopper.state(), "examples": run.examples,
                             "mean": list(run.split.mean), "std": list(run.split.std),
                             "ema_n": int(ema.n_averaged) if ema is not None else 0,
                             "swa_n": int(swa.n_averaged) if swa is not None else 0})


def _finish(run: _Run) -> TrainResult:
    """Restore the best weights after early stopping, add the whole-run checks, report on the weights kept."""
    config, sink, stopper = run.config, run.sink, run.stopper
    if config.early_stop and stopper.best_epoch is not None:
        sink.log(run.step, run.epoch, {"best_epoch": stopper.best_epoch})
        if config.restore_best and run.best_state is not None and run.status == RunStatus.STOPPED_EARLY:
            run.model.load_state_dict(run.best_state)
    run.stats.close()
    run.checks.add(recipe.clipping_check(run.grad_norms, run.clipped_flags,
                                         config.clip_value if config.clip == "norm" else None))
    if run.last_stats:
        run.checks.add_all(recipe.layer_health_checks(run.last_stats, judged=run.stats.matrix_params))
    if run.status != RunStatus.CANCELLED and run.step > 0:
        run.task.final_reports(run)
    sink.progress(run.step, run.total_steps, run.epoch)
    return TrainResult(run.status, run.step, run.epoch, stopper.best_epoch, stopper.best)


def _diverged(run: _Run) -> TrainResult:
    """End a diverged run: no best weights, checks or reports, only the step it reached and why it stopped."""
    run.stats.close()
    run.sink.progress(run.step, run.total_steps, run.epoch)
    return TrainResult(RunStatus.DIVERGED, run.step, run.epoch, error=run.error)


def _histogram_every(every: int, total_steps: int) -> int:
    """A multiple of `every` giving about HISTOGRAMS_PER_RUN histograms over the run (0 = none)."""
    if not every:
        return 0
    return every * max(1, round(total_steps / every / HISTOGRAMS_PER_RUN))
