"""Learning-rate finder in the style of fast.ai: an exponential lr sweep, smoothed loss, two suggestions.

One training step per learning rate, from `start_lr` to `end_lr` geometrically over `num_steps` steps; the
loss is smoothed with a debiased exponential moving average and the sweep stops when the smoothed loss
exceeds `diverge_factor` x the best so far (or turns non-finite). The model's weights, buffers, train/eval
mode and the CPU random state are restored afterwards, and so is the optimizer's state when an existing
optimizer is passed. The worker runs it as a background job and streams points through `on_step`.

Public API
    lr_find(model, optimizer, batches, loss_fn=F.cross_entropy, start_lr=1e-7, end_lr=10.0, num_steps=100,
            smooth=0.98, diverge_factor=4.0, on_step=None, should_stop=None) -> dict
        optimizer: an Optimizer over model's parameters (its lr is overwritten each step, its state restored)
                   or a factory `make_optimizer(params) -> Optimizer` (a throw-away optimizer is built).
        batches:   iterable of (x, y); re-iterated from the start when it runs out (a DataLoader, a list),
                   or read once when it is a one-shot iterator.
        on_step(point): called after every step with {"step", "lr", "loss", "smoothed"}.
        should_stop(): polled every step; True cancels the sweep (weights are still restored).
    Result (JSON-able): {"lrs", "losses" (raw), "smoothed", "steps", "stopped_early", "cancelled",
        "suggestion_steepest", "suggestion_valley" (floats or None), "suggestions": {name: {"lr", "loss",
        "index"}}, "start_lr", "end_lr", "num_steps", "seconds"}.
    suggest_steepest(lrs, smoothed) / suggest_valley(lrs, smoothed) -> index or None, on the trimmed curve.

Suggestions are computed like fast.ai's: on the smoothed curve without its first num_steps // 10 points
(the smoothing is still settling) and its last 5 (the explosion that stopped the sweep).
    steepest: the lr where the smoothed loss falls fastest per unit of log(lr).
    valley:   fast.ai's "valley": find the longest chain of ever-lower losses (longest decreasing subsequence);
              the valley ends at its last point and spans as many points as the chain holds. Split into
              thirds, fast.ai picks the point 1.5 thirds in, i.e. the middle of the valley (descriptions say
              "2/3 down"; we follow the code): far enough down to learn fast, far from the blow-up.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MakeOptimizer = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

SKIP_END = 5  # points dropped at the end: the loss is already exploding there


def lr_find(model: nn.Module, optimizer: torch.optim.Optimizer | MakeOptimizer,
            batches: Iterable[tuple[torch.Tensor, torch.Tensor]], loss_fn: LossFn = F.cross_entropy,
            start_lr: float = 1e-7, end_lr: float = 10.0, num_steps: int = 100, smooth: float = 0.98,
            diverge_factor: float = 4.0, on_step: Callable[[dict[str, Any]], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Sweep the learning rate exponentially and suggest one (see the module docstring)."""
    if not 0 < start_lr < end_lr:
        raise ValueError(f"start_lr={start_lr!r}, end_lr={end_lr!r}: need 0 < start_lr < end_lr")
    if num_steps < 2:
        raise ValueError(f"num_steps={num_steps!r}: need at least 2 steps")
    if not 0 <= smooth < 1:
        raise ValueError(f"smooth={smooth!r}: must be in [0, 1)")

    # everything the sweep changes is saved first: weights and buffers, optimizer state, mode, random state
    saved_model = {k: v.detach().clone() for k, v in model.state_dict().items()}
    given = isinstance(optimizer, torch.optim.Optimizer)
    opt = optimizer if given else optimizer(model.parameters())
    saved_opt = _clone_state(opt.state_dict()) if given else None
    was_training = model.training
    rng = torch.get_rng_state()
    device = next(model.parameters()).device

    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    stopped_early = cancelled = False
    avg, best = 0.0, math.inf
    start = time.perf_counter()
    model.train()
    try:
        stream = _repeat(batches)
        for i in range(num_steps):
            if should_stop is not None and should_stop():
                cancelled = True
                break
            lr = start_lr * (end_lr / start_lr) ** (i / (num_steps - 1))
            for group in opt.param_groups:
                group["lr"] = lr
            try:
                x, y = next(stream)
            except StopIteration:
                break
            loss = loss_fn(model(x.to(device)), y.to(device))
            raw = float(loss.detach())
            if not math.isfinite(raw):
                stopped_early = True
                break
            avg = smooth * avg + (1 - smooth) * raw
            value = avg / (1 - smooth ** (i + 1))  # debiased: the average starts at 0, not at the first loss
            lrs.append(lr)
            losses.append(raw)
            smoothed.append(value)
            if on_step is not None:
                on_step({"step": i, "lr": lr, "loss": raw, "smoothed": value})
            if value > diverge_factor * best:
                stopped_early = True
                break
            best = min(best, value)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        model.load_state_dict(saved_model)
        if saved_opt is not None:
            opt.load_state_dict(saved_opt)  # also brings back each group's own lr
        if not given:
            opt.zero_grad(set_to_none=True)  # the gradients of the last sweep step belong to no one
        model.train(was_training)
        torch.set_rng_state(rng)

    skip_start = num_steps // 10
    trimmed = slice(skip_start, max(skip_start, len(smoothed) - SKIP_END))
    t_lrs, t_smoothed = lrs[trimmed], smoothed[trimmed]
    suggestions = {}
    for name, pick in (("steepest", suggest_steepest), ("valley", suggest_valley)):
        index = pick(t_lrs, t_smoothed)
        if index is not None:
            suggestions[name] = {"lr": t_lrs[index], "loss": t_smoothed[index], "index": index + skip_start}
    return {
        "lrs": lrs, "losses": losses, "smoothed": smoothed, "steps": len(lrs),
        "stopped_early": stopped_early, "cancelled": cancelled,
        "suggestion_steepest": suggestions.get("steepest", {}).get("lr"),
        "suggestion_valley": suggestions.get("valley", {}).get("lr"),
        "suggestions": suggestions,
        "start_lr": start_lr, "end_lr": end_lr, "num_steps": num_steps,
        "seconds": time.perf_counter() - start,
    }


def suggest_steepest(lrs: list[float], smoothed: list[float]) -> int | None:
    """Index of the most negative slope d(loss)/d(log lr), taken at the left point of each segment."""
    if len(lrs) < 3:
        return None
    slopes = np.diff(smoothed) / np.diff(np.log(lrs))
    return int(np.argmin(slopes))


def suggest_valley(lrs: list[float], smoothed: list[float]) -> int | None:
    """Middle of the longest valley of the smoothed loss (fast.ai's valley), or None on too short a curve."""
    n = len(smoothed)
    if n < 3:
        return None
    # length[i]: the longest chain of strictly decreasing losses ending at point i
    length = [1] * n
    for i in range(1, n):
        for j in range(i):
            if smoothed[i] < smoothed[j] and length[j] + 1 > length[i]:
                length[i] = length[j] + 1
    end = max(range(n), key=lambda i: (length[i], -i))  # the longest valley; the earliest on ties
    # the valley spans as many points as the chain holds, counted back from its end (fast.ai's rule): on the
    # noisy flat start the chain skips most points, so that stretch barely widens the valley
    begin = end - length[end] + 1
    third = (end - begin) / 3
    return begin + int(third) + int(third / 2)


def _repeat(batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield batches forever from a re-iterable (a list, a DataLoader); once from a one-shot iterator."""
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty or iter(batches) is batches:
            return


def _clone_state(state: Any) -> Any:
    """Deep copy of an optimizer state_dict whose tensors are cloned, not shared with the live optimizer."""
    if isinstance(state, torch.Tensor):
        return state.detach().clone()
    if isinstance(state, dict):
        return {k: _clone_state(v) for k, v in state.items()}
    if isinstance(state, list):
        return [_clone_state(v) for v in state]
    return state
