"""What a worker does with a claimed run, by kind: 'train' (with resume and the final reports).

Kept apart from worker.py so that the same job code runs in a local worker process or in a Ray task:
both hand it a run dict from the store, a sink, a should_stop callable and a device.
"""

from __future__ import annotations

from typing import Callable

from engine.config import RunConfig
from engine.train import Sink, pick_device, train


def run_job(run: dict, sink: Sink, should_stop: Callable[[], bool], device: str, store) -> tuple[str, str | None]:
    """Execute one run; returns (final status, error message or None)."""
    config: RunConfig = run["config"]
    device = pick_device(config.device) if config.device != "auto" else device
    if device != run.get("device"):  # e.g. device='cpu' on a GPU worker: the run must show where it trains
        store.set_running(run["run_id"], run["worker_id"], device)
    if run["kind"] == "train":
        return _train_job(run, config, sink, should_stop, device, store)
    raise ValueError(f"unknown run kind {run['kind']!r}")


def _train_job(run, config, sink, should_stop, device, store) -> tuple[str, str | None]:
    from engine import checkpoints
    from engine.data import DatasetUnavailable

    run_id = run["run_id"]
    resume_path = None
    if run.get("resume_from"):
        try:
            resume_path = checkpoints.resolve(run_id, "last")
        except FileNotFoundError:
            resume_path = None  # interrupted before its first checkpoint: start over
        start_step = checkpoints.load_checkpoint(resume_path).step if resume_path else 0
        store.delete_metrics_after(run_id, start_step)
    try:
        result = train(config, sink, should_stop, run_id=run_id, device=device,
                       resume_from=str(resume_path) if resume_path else None)
    except DatasetUnavailable as exc:
        return "failed", str(exc)
    return result.status, result.error
