"""LR finder: suggestions inside the lr range where training really works, everything restored afterwards."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.diagnostics.lr_finder import lr_find, suggest_steepest, suggest_valley

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}




def _problem(seed: int = 0):
    """Four overlapping Gaussian blobs in 10-d: learnable, not trivially separable, and SGD can blow up."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(4, 10, generator=g)
    y = torch.randint(0, 4, (512,), generator=g)
    x = centers[y] + torch.randn(512, 10, generator=g)
    return x, y, [(x[i:i + 32], y[i:i + 32]) for i in range(0, 512, 32)]


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 4))


def _loss_after_training(optimizer: str, lr: float, x, y, batches, steps: int = 100) -> float:
    model = _model()
    opt = OPTIMIZERS[optimizer](model.parameters(), lr=lr)
    for step in range(steps):
        xb, yb = batches[step % len(batches)]
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return F.cross_entropy(model(x), y).item()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_suggestions_fall_inside_the_range_where_training_works(optimizer):
    x, y, batches = _problem()
    with torch.no_grad():
        initial = F.cross_entropy(_model()(x), y).item()
    grid = [10.0 ** e for e in np.arange(-5, 1.6, 0.5)]
    finals = {lr: _loss_after_training(optimizer, lr, x, y, batches) for lr in grid}
    best = min(v for v in finals.values() if math.isfinite(v))
    threshold = best + 0.5 * (initial - best)  # "works": at least half the best improvement in 100 steps

    def works(loss: float) -> bool:
        return math.isfinite(loss) and loss <= threshold

    working = [lr for lr in grid if works(finals[lr])]
    assert not works(finals[grid[0]]) and not works(finals[grid[-1]])  # the toy has both edges
    below = max(lr for lr in grid if lr < working[0])  # the grid's failing neighbours of the working range
    above = min(lr for lr in grid if lr > working[-1])
    assert all(works(finals[lr]) for lr in grid if working[0] <= lr <= working[-1])  # one contiguous range

    result = lr_find(_model(), lambda params: OPTIMIZERS[optimizer](params, lr=1.0), batches)
    for name in ("suggestion_steepest", "suggestion_valley"):
        lr = result[name]
        assert below < lr < above, f"{name}={lr:.2e} outside ({below:.0e}, {above:.0e})"
        assert works(_loss_after_training(optimizer, lr, x, y, batches)), f"{name}={lr:.2e} does not train"
    json.dumps(result, allow_nan=False)


def test_sweep_is_exponential_smoothed_and_stops_when_the_loss_explodes():
    _, _, batches = _problem()
    points = []
    result = lr_find(_model(), lambda params: torch.optim.SGD(params, lr=1.0), batches, start_lr=1e-4, end_lr=100.0,
                     num_steps=60, on_step=points.append)
    lrs, raw, smoothed = result["lrs"], result["losses"], result["smoothed"]
    n = result["steps"]
    assert result["stopped_early"] and n < 60 and len(lrs) == len(raw) == len(smoothed) == len(points) == n
    assert lrs == pytest.approx([1e-4 * (1e6) ** (i / 59) for i in range(n)])
    # the debiased exponential moving average, written out independently
    avg, expected = 0.0, []
    for i, loss in enumerate(raw):
        avg = 0.98 * avg + 0.02 * loss
        expected.append(avg / (1 - 0.98 ** (i + 1)))
    assert smoothed == pytest.approx(expected)
    assert smoothed[-1] > 4 * min(smoothed[:-1])  # stopped at the first point past 4x the best
    assert all(s <= 4 * min(smoothed[:i + 1]) for i, s in enumerate(smoothed[:-1]))
    assert points[3] == {"step": 3, "lr": lrs[3], "loss": raw[3], "smoothed": smoothed[3]}


def test_weights_optimizer_state_mode_and_rng_are_restored():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 4))
    _, _, batches = _problem()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for xb, yb in batches[:3]:  # an optimizer with history, as when the finder runs mid-training
        optimizer.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        optimizer.step()
    model.eval()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    moments = {i: {k: v.clone() for k, v in s.items()} for i, s in enumerate(optimizer.state.values())}
    rng = torch.get_rng_state()

    result = lr_find(model, optimizer, batches, num_steps=40)
    assert result["steps"] > 10
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())  # incl. BN running stats
    assert [g["lr"] for g in optimizer.param_groups] == [3e-3]
    for i, state in enumerate(optimizer.state.values()):
        assert all(torch.equal(moments[i][k], v) for k, v in state.items())
    assert not model.training and torch.equal(torch.get_rng_state(), rng)

    def explode(point):
        if point["step"] == 5:
            raise RuntimeError("store went away")

    with pytest.raises(RuntimeError):
        lr_find(model, optimizer, batches, on_step=explode)
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())  # restored on errors too


def test_cancel_and_one_shot_iterators():
    _, _, batches = _problem()
    calls = []
    cancelled = lr_find(_model(), lambda p: torch.optim.SGD(p, lr=1.0), batches,
                        should_stop=lambda: len(calls) >= 7, on_step=calls.append)
    assert cancelled["cancelled"] and cancelled["steps"] == 7
    once = lr_find(_model(), lambda p: torch.optim.SGD(p, lr=1.0), iter(batches[:5]), num_steps=50)
    assert once["steps"] == 5 and not once["stopped_early"]
    cycled = lr_find(_model(), lambda p: torch.optim.SGD(p, lr=1.0), batches[:5], num_steps=30, end_lr=1e-3)
    assert cycled["steps"] == 30  # a list is re-read from the start


def test_suggestion_rules_on_hand_made_curves():
    lrs = list(np.logspace(-6, 0, 61))
    # loss drops fastest where log10(lr) = -3: d/dlog(lr) of -tanh is most negative there
    steep_curve = [2.0 - math.tanh(2 * (math.log10(lr) + 3)) for lr in lrs]
    assert lrs[suggest_steepest(lrs, steep_curve)] == pytest.approx(1e-3, rel=0.3)
    # flat (noisy) start, a 21-point descent from index 30 to 50, then a blow-up
    valley_curve = [2.0 + 0.01 * (i % 2) for i in range(30)] + [2.0 - 0.05 * i for i in range(1, 21)] + \
                   [1.0 + 0.5 * i for i in range(1, 11)]
    index = suggest_valley(lrs, valley_curve)
    # the longest decreasing chain has 22 points (one from the flat start, then the descent), ending at 49;
    # fast.ai's rule counts it back from the end: 28..49, and picks 1.5 thirds in
    assert index == 28 + int(21 / 3) + int(21 / 3 / 2)
    assert suggest_valley(lrs[:2], valley_curve[:2]) is None and suggest_steepest(lrs[:2], valley_curve[:2]) is None
