"""What a worker does with a claimed run, by kind: 'train' (with resume), 'lr_find' and 'overfit'.

'lr_find' (the fast.ai learning-rate sweep) and 'overfit' (the recipe's overfit-one-batch check) are helper
jobs: queued like runs so they never block the page, streaming their points as metrics, and writing their
result as an artifact on themselves and on the run they serve (`parent_id`), where the run report finds it.

Kept apart from worker.py, and given only a sink (never the store), so that any executor that can hand it a run
dict, a sink, a should_stop callable and a device can run it: the local worker processes (engine.runs.worker)
and the Ray executor's task (engine.runs.ray_remote).
"""

from __future__ import annotations

from typing import Callable

from engine.config import RunConfig
from engine.records import LR_FIND, LR_FIND_POINT, OVERFIT_KEY, OVERFIT_ONE_BATCH, RunKind, RunRecord, RunStatus
from engine.sinks import Sink
from engine.train import pick_device, train


def job_device(config: RunConfig, worker_device: str) -> str:
    """Where a run trains on a worker whose best device is `worker_device` ('cpu' stays 'cpu' on a GPU worker).
    ValueError when the run asks for CUDA on a worker without it."""
    return pick_device(config.device) if config.device != "auto" else worker_device


def run_job(run: RunRecord, sink: Sink, should_stop: Callable[[], bool], device: str) -> tuple[RunStatus, str | None]:
    """Execute one run on `device`; returns (final status, error message or None). A helper job's result is written
    with `sink.artifact`; the executor's sink also files it on the run the job serves (`parent_id`)."""
    config: RunConfig = run["config"]
    if run["kind"] == RunKind.TRAIN:
        return _train_job(run, config, sink, should_stop, device)
    if run["kind"] in (RunKind.LR_FIND, RunKind.OVERFIT):
        return _probe_job(run, config, sink, should_stop, device)
    raise ValueError(f"unknown run kind {run['kind']!r}")


LR_FIND_STEPS = 100
OVERFIT_BATCH = 16  # Karpathy's recipe: a handful of examples the model must be able to memorise
OVERFIT_STEPS = 300


def _probe_job(run: RunRecord, config: RunConfig, sink: Sink, should_stop: Callable[[], bool],
               device: str) -> tuple[RunStatus, str | None]:
    import torch

    from engine.data.augment import AugmentSpec
    from engine.data.loading import iterate_batches, load_run_split
    from engine.models import model_from_config
    from engine.optim import make_optimizer
    from engine.transfer import prepare_model

    from engine.tasks import task_for

    split = load_run_split(config)
    info = split.info
    loss_fn = task_for(split).loss  # a language model's loss reads [B, T] next characters
    torch.manual_seed(config.seed)
    model = model_from_config(config, info.channels, info.size, len(info.classes)).to(device)
    prepare_model(model, config, device=device)  # a fine-tuning run's probes start where it starts, frozen alike
    train_x, train_y = split.train_x.to(device), split.train_y.to(device)
    if run["kind"] == RunKind.LR_FIND:
        from engine.diagnostics.lr_finder import lr_find

        augment = AugmentSpec.from_config(config)

        def batches():
            epoch = 0
            while True:  # as many epochs as the sweep needs
                yield from iterate_batches(train_x, train_y, config.batch_size, seed=config.seed, epoch=epoch,
                                           augment=augment if augment.active else None, mean=split.mean, std=split.std)
                epoch += 1

        def on_step(point):
            sink.log(point["step"] + 1, 0, {key: point[field] for field, key in LR_FIND_POINT.items()})
            sink.progress(point["step"] + 1, LR_FIND_STEPS, 0)

        result = lr_find(model, lambda params: make_optimizer(params, config), batches(), loss_fn=loss_fn,
                         num_steps=LR_FIND_STEPS, on_step=on_step, should_stop=should_stop)
        name = LR_FIND
    else:
        from engine.diagnostics import recipe

        xb, yb = next(iterate_batches(train_x, train_y, OVERFIT_BATCH, seed=config.seed, epoch=0,
                                      mean=split.mean, std=split.std))
        result = recipe.overfit_one_batch(model, lambda params: make_optimizer(params, config), xb, yb,
                                          steps=OVERFIT_STEPS, loss_fn=loss_fn)
        curve = result["numbers"]["curve"]
        sink.log(len(curve), 0, {OVERFIT_KEY: result["numbers"]["final_loss"]})
        sink.progress(len(curve), len(curve), 0)
        name = OVERFIT_ONE_BATCH
    sink.artifact(name, result)
    if result.get("cancelled"):
        return RunStatus.CANCELLED, None
    return RunStatus.COMPLETED, None


def _train_job(run: RunRecord, config: RunConfig, sink: Sink, should_stop: Callable[[], bool],
               device: str) -> tuple[RunStatus, str | None]:
    from engine import checkpoints
    from engine.datasets import DatasetUnavailable
    from engine.transfer import SourceUnusable

    run_id = run["run_id"]
    resume_path = None
    if run.get("resume_from"):
        try:
            resume_path = checkpoints.resolve(run_id, "last")
        except FileNotFoundError:
            resume_path = None  # interrupted before its first checkpoint: start over
        start_step = checkpoints.load_checkpoint(resume_path).step if resume_path else 0
        sink.rewind(start_step)  # the steps after the checkpoint are trained, and logged, again
    try:
        result = train(config, sink, should_stop, run_id=run_id, device=device,
                       resume_from=str(resume_path) if resume_path else None)
    except (DatasetUnavailable, SourceUnusable) as exc:  # one line the user can act on, no type name
        return RunStatus.FAILED, str(exc)
    return result.status, result.error
