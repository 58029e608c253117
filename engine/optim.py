"""Optimizers by name and learning-rate schedules as pure functions of the step.

`lr_at(config, step, total_steps)` is the single source of truth for the schedule: the training loop
sets it before every step, and the dashboard plots it before a run starts, so the preview is exactly
the schedule the run will follow.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import torch

from engine.config import RunConfig


def make_optimizer(params: Iterable[torch.nn.Parameter], config: RunConfig, lr: float | None = None) -> torch.optim.Optimizer:
    """Build the configured optimizer. `lr` overrides config.lr (the LR finder sweeps it)."""
    lr = config.lr if lr is None else lr
    name, wd = config.optimizer, config.weight_decay
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=wd)
    if name == "nesterov":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, nesterov=True, weight_decay=wd)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=wd)
    if name == "rmsprop":
        # plain RMSprop as taught (Hinton's lecture 6e): no momentum term
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(config.beta1, config.beta2), weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=(config.beta1, config.beta2), weight_decay=wd)
    raise ValueError(f"optimizer={name!r}: allowed values are sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw")


# One-cycle constants, the same as torch.optim.lr_scheduler.OneCycleLR's defaults, so tests can use it as reference.
ONECYCLE_PCT_START = 0.3
ONECYCLE_DIV = 25.0
ONECYCLE_FINAL_DIV = 1e4


def lr_factor(config: RunConfig, step: int, total_steps: int) -> float:
    """Multiplier of config.lr for optimizer step `step` (0-based: the lr used by the step-th update)."""
    # one-cycle has its own warm-up phase; a linear warmup in front of it would end in a jump down to lr/25
    warmup = 0 if config.schedule == "onecycle" else config.warmup_steps
    if config.schedule == "warmup" or (warmup and step < warmup):
        if warmup and step < warmup:
            return (step + 1) / warmup
        if config.schedule == "warmup":
            return 1.0
    t = step - warmup  # schedules start after the warmup
    span = max(1, total_steps - warmup)
    schedule = config.schedule
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        return config.gamma ** (t // config.step_every)
    if schedule == "cosine":
        floor = config.min_lr_ratio
        progress = min(1.0, t / span)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "inverse_time":
        return 1.0 / (1.0 + t / config.decay_steps)
    if schedule == "onecycle":
        return _onecycle(t, span)
    raise ValueError(f"schedule={schedule!r}: allowed values are constant, step, cosine, inverse_time, warmup, onecycle")


def _onecycle(t: int, total: int) -> float:
    # Cosine warm-up from lr/25 to lr over the first 30 % of steps, then cosine annealing to lr/(25*1e4).
    start, final = 1.0 / ONECYCLE_DIV, 1.0 / (ONECYCLE_DIV * ONECYCLE_FINAL_DIV)
    up_end = float(ONECYCLE_PCT_START * total) - 1
    down_end = float(total) - 1
    if t <= up_end:
        pct = t / up_end if up_end > 0 else 1.0
        return final_cos(start, 1.0, pct)
    pct = (t - up_end) / (down_end - up_end) if down_end > up_end else 1.0
    return final_cos(1.0, final, min(1.0, pct))


def final_cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def lr_at(config: RunConfig, step: int, total_steps: int) -> float:
    return config.lr * lr_factor(config, step, total_steps)


def schedule_curve(config: RunConfig, total_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(steps 1..N, lr used at each step) for plotting a schedule before the run starts."""
    steps = np.arange(1, total_steps + 1)
    return steps, np.array([lr_at(config, s - 1, total_steps) for s in steps])


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Apply the schedule's lr for the next step (set directly: resuming at any step needs no replay)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
