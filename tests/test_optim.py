"""Optimizers by name, and every learning-rate schedule at known steps.

Schedules are checked against values computed by hand and, where torch has the same schedule, against
torch.optim.lr_scheduler itself (StepLR, CosineAnnealingLR, OneCycleLR) driving a real optimizer.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine.config import RunConfig
from engine.optim import lr_at, lr_factor, make_optimizer, schedule_curve, set_lr


def _params():
    return [torch.nn.Parameter(torch.zeros(3))]


@pytest.mark.parametrize("name, cls, expected", [
    ("sgd", torch.optim.SGD, {"momentum": 0, "nesterov": False}),
    ("momentum", torch.optim.SGD, {"momentum": 0.8, "nesterov": False}),
    ("nesterov", torch.optim.SGD, {"momentum": 0.8, "nesterov": True}),
    ("adagrad", torch.optim.Adagrad, {}),
    ("rmsprop", torch.optim.RMSprop, {"momentum": 0}),  # plain RMSprop, as taught: no momentum term
    ("adam", torch.optim.Adam, {"betas": (0.7, 0.95)}),
    ("adamw", torch.optim.AdamW, {"betas": (0.7, 0.95)}),
])
def test_each_optimizer_builds_the_torch_class_with_the_settings(name, cls, expected):
    config = RunConfig(optimizer=name, lr=0.05, momentum=0.8, beta1=0.7, beta2=0.95, weight_decay=0.01)
    optimizer = make_optimizer(_params(), config)
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.05 and group["weight_decay"] == 0.01
    for key, value in expected.items():
        assert group[key] == value, key
    assert make_optimizer(_params(), config, lr=0.3).param_groups[0]["lr"] == 0.3  # the LR finder's override


def test_adam_and_adamw_differ_in_how_they_decay_weights():
    # one step from w=1 with zero gradient: Adam adds wd*w to the gradient (then normalises it away to a full
    # lr-sized step), AdamW shrinks w by lr*wd directly
    results = {}
    for name in ("adam", "adamw"):
        param = torch.nn.Parameter(torch.ones(1))
        optimizer = make_optimizer([param], RunConfig(optimizer=name, lr=0.1, weight_decay=0.5))
        param.grad = torch.zeros(1)
        optimizer.step()
        results[name] = param.item()
    assert results["adamw"] == pytest.approx(1 - 0.1 * 0.5)
    assert results["adam"] == pytest.approx(1 - 0.1, abs=1e-6)


def _factors(config: RunConfig, total: int) -> list[float]:
    return [lr_factor(config, step, total) for step in range(total)]


def test_constant():
    assert _factors(RunConfig(schedule="constant"), 5) == [1.0] * 5


def test_step_decay_by_hand():
    config = RunConfig(schedule="step", step_every=3, gamma=0.5, lr=0.2)
    assert [lr_at(config, s, 100) for s in (0, 2, 3, 5, 6, 9, 10)] == pytest.approx(
        [0.2, 0.2, 0.1, 0.1, 0.05, 0.025, 0.025])


def test_cosine_endpoints_and_midpoint_by_hand():
    config = RunConfig(schedule="cosine", lr=0.4, min_lr_ratio=0.25)
    total = 100
    assert lr_at(config, 0, total) == pytest.approx(0.4)
    assert lr_at(config, 50, total) == pytest.approx(0.4 * (0.25 + 0.75 * 0.5))  # halfway: mean of peak and floor
    assert lr_at(config, 25, total) == pytest.approx(0.4 * (0.25 + 0.75 * 0.5 * (1 + math.cos(math.pi / 4))))
    assert lr_at(config, total, total) == pytest.approx(0.1)  # the floor, min_lr_ratio * lr
    values = [lr_at(config, s, total) for s in range(total)]
    assert all(a > b for a, b in zip(values, values[1:]))  # strictly decreasing
    assert min(values) > 0.1


def test_inverse_time_by_hand():
    config = RunConfig(schedule="inverse_time", lr=0.3, decay_steps=10)
    for step in (0, 5, 10, 30, 990):
        assert lr_at(config, step, 1000) == pytest.approx(0.3 / (1 + step / 10))


def test_linear_warmup_by_hand():
    config = RunConfig(schedule="warmup", warmup_steps=4, lr=0.8)
    assert [lr_at(config, s, 10) for s in range(7)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 0.8, 0.8, 0.8])


def test_onecycle_ignores_warmup_steps_it_has_its_own_warmup():
    plain = RunConfig(schedule="onecycle", lr=0.5)
    warmed = RunConfig(schedule="onecycle", lr=0.5, warmup_steps=5)
    assert [lr_at(warmed, s, 60) for s in range(60)] == pytest.approx([lr_at(plain, s, 60) for s in range(60)])


@pytest.mark.parametrize("schedule", ["step", "cosine", "inverse_time"])
def test_warmup_is_prepended_then_the_schedule_starts_from_the_peak(schedule):
    total, warmup = 60, 5
    plain = RunConfig(schedule=schedule, step_every=7, lr=0.5)
    warmed = RunConfig(schedule=schedule, step_every=7, lr=0.5, warmup_steps=warmup)
    assert [lr_at(warmed, s, total) for s in range(warmup)] == pytest.approx([0.5 * (s + 1) / warmup for s in range(warmup)])
    # after the warmup, the schedule runs over the remaining steps as if they were the whole run
    after = [lr_at(warmed, warmup + t, total) for t in range(total - warmup)]
    assert after == pytest.approx([lr_at(plain, t, total - warmup) for t in range(total - warmup)])


def _torch_lrs(make_scheduler, total: int, lr: float) -> list[float]:
    """The lr a real optimizer uses at each of `total` steps under a torch scheduler."""
    optimizer = torch.optim.SGD(_params(), lr=lr)
    scheduler = make_scheduler(optimizer)
    lrs = []
    for _ in range(total):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_step_matches_torch_steplr():
    config = RunConfig(schedule="step", step_every=4, gamma=0.3, lr=0.1)
    expected = _torch_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=4, gamma=0.3), 30, 0.1)
    assert [lr_at(config, s, 30) for s in range(30)] == pytest.approx(expected, rel=1e-9)


def test_cosine_matches_torch_cosine_annealing():
    total = 40
    config = RunConfig(schedule="cosine", lr=0.1, min_lr_ratio=0.1)
    expected = _torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=total, eta_min=0.01), total, 0.1)
    assert [lr_at(config, s, total) for s in range(total)] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("total", [10, 37, 100, 1000])
def test_onecycle_matches_torch_onecycle(total):
    config = RunConfig(schedule="onecycle", lr=0.2)
    expected = _torch_lrs(lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.2, total_steps=total), total, 0.2)
    ours = [lr_at(config, s, total) for s in range(total)]
    assert ours == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert max(ours) == pytest.approx(0.2, rel=1e-3) and ours[0] == pytest.approx(0.2 / 25)


def test_schedule_curve_is_lr_at_every_step():
    config = RunConfig(schedule="cosine", warmup_steps=3, lr=0.1)
    steps, lrs = schedule_curve(config, 20)
    assert steps.tolist() == list(range(1, 21))
    assert np.allclose(lrs, [lr_at(config, s, 20) for s in range(20)])


def test_set_lr_sets_every_group():
    optimizer = torch.optim.SGD([{"params": _params()}, {"params": _params(), "lr": 5.0}], lr=1.0)
    set_lr(optimizer, 0.125)
    assert [g["lr"] for g in optimizer.param_groups] == [0.125, 0.125]
