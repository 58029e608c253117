"""LayerStats: statistics equal hand computations in numpy, hooks exist only on sampled steps."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.diagnostics.layer_stats import LayerStats
from engine.models import build_model




def _step(model: nn.Module, stats: LayerStats, optimizer: torch.optim.Optimizer, step: int, x, y) -> dict:
    stats.begin_step(step)
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    stats.after_backward()
    optimizer.step()
    return stats.end_step()


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_dead_and_zero_fraction_on_units_with_known_dead_relus():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        model[0].bias.zero_()
        model[0].bias[:3] = -1e3  # units 0..2 can never fire on these inputs: dead
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    stats = LayerStats(model, every=1)
    rows = _step(model, stats, torch.optim.SGD(model.parameters(), lr=0.0), 0, x, y)
    h = np.maximum(x.numpy() @ model[0].weight.detach().numpy().T + model[0].bias.detach().numpy(), 0)
    assert rows["dead_frac/1"] == pytest.approx(3 / 8)  # the other 5 units fire for some of 64 examples
    assert rows["dead_frac/1"] == pytest.approx(np.mean(np.all(h <= 0, axis=0)))
    assert rows["zero_frac/1"] == pytest.approx(np.mean(h == 0))
    assert 3 / 8 < rows["zero_frac/1"] < 1  # live units are zero on about half of the examples
    assert rows["act_mean/1"] == pytest.approx(h.mean(), rel=1e-5)
    assert rows["act_std/1"] == pytest.approx(h.std(ddof=1), rel=1e-5)


def test_dead_channels_of_a_conv_layer_and_saturation():
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    with torch.no_grad():
        conv[0].bias[1] = -1e3  # channel 1 is dead at every position of every image
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 2, (16,))
    rows = _step(conv, LayerStats(conv, every=1), torch.optim.SGD(conv.parameters(), lr=0.0), 0, x, y)
    assert rows["dead_frac/1"] == pytest.approx(1 / 4)

    tanh = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 6), nn.Sigmoid(), nn.Linear(6, 2))
    with torch.no_grad():
        tanh[0].weight.mul_(8)  # drive many pre-activations far into the flat tails
    x, y = torch.randn(32, 5), torch.randint(0, 2, (32,))
    rows = _step(tanh, LayerStats(tanh, every=1), torch.optim.SGD(tanh.parameters(), lr=0.0), 0, x, y)
    with torch.no_grad():
        a = torch.tanh(tanh[0](x)).numpy()
        s = torch.sigmoid(tanh[2](torch.tanh(tanh[0](x)))).numpy()
    assert rows["sat_frac/1"] == pytest.approx(np.mean(np.abs(a) > 0.97)) and rows["sat_frac/1"] > 0.3
    assert rows["sat_frac/3"] == pytest.approx(np.mean((s > 0.97) | (s < 0.03)))
    assert "dead_frac/1" not in rows and "sat_frac/1" in rows


def test_update_ratio_and_gradients_equal_a_hand_computation_after_one_sgd_step():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4))
    x, y = torch.randn(10, 3), torch.randint(0, 4, (10,))
    w0, b0 = model[0].weight.detach().numpy().copy(), model[0].bias.detach().numpy().copy()
    lr = 0.1
    rows = _step(model, LayerStats(model, every=1), torch.optim.SGD(model.parameters(), lr=lr), 0, x, y)

    # softmax regression gradients by hand: dL/dlogits = (softmax - onehot) / batch
    xn = x.numpy().astype(np.float64)
    logits = xn @ w0.T + b0
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dlogits = (p - np.eye(4)[y.numpy()]) / len(xn)
    dw, db = dlogits.T @ xn, dlogits.sum(0)
    assert rows["grad_mean/0.weight"] == pytest.approx(dw.mean(), abs=1e-7)
    assert rows["grad_std/0.weight"] == pytest.approx(dw.std(ddof=1), rel=1e-5)
    assert rows["grad_std/0.bias"] == pytest.approx(db.std(ddof=1), rel=1e-5)
    # makemore's ratio for SGD: log10(std(lr * grad) / std(weights))
    assert rows["update_ratio/0.weight"] == pytest.approx(math.log10(np.std(lr * dw) / np.std(w0)), abs=1e-4)
    assert rows["update_ratio/0.bias"] == pytest.approx(math.log10(np.std(lr * db) / np.std(b0)), abs=1e-4)


def test_update_ratio_measures_adams_real_step():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 5))
    x, y = torch.randn(20, 6), torch.randint(0, 5, (20,))
    w0 = model[0].weight.detach().clone()
    lr, eps = 1e-2, 1e-8
    rows = _step(model, LayerStats(model, every=1), torch.optim.Adam(model.parameters(), lr=lr, eps=eps), 0, x, y)
    grad = model[0].weight.grad.double()
    # Adam's first step after bias correction is lr * g / (|g| + eps): about lr * sign(g), whatever |g| is
    change = lr * grad / (grad.abs() + eps)
    expected = math.log10(change.std().item() / w0.double().std().item())
    assert rows["update_ratio/0.weight"] == pytest.approx(expected, abs=1e-4)
    sgd_style = math.log10((lr * grad).std().item() / w0.double().std().item())
    assert abs(rows["update_ratio/0.weight"] - sgd_style) > 0.5  # lr * grad would misreport Adam's step


def test_activation_gradient_stats_and_histograms():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3))
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    stats = LayerStats(model, every=2, hist_every=4, bins=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    rows = _step(model, stats, optimizer, 4, x, y)
    hist = stats.histograms()

    h = model[1](model[0](x))
    h.retain_grad()
    F.cross_entropy(model[2](h), y).backward()
    assert rows["act_grad_std/1"] == pytest.approx(h.grad.std().item(), rel=1e-5)
    assert rows["act_grad_mean/1"] == pytest.approx(h.grad.mean().item(), abs=1e-8)

    assert hist["step"] == 4 and set(hist) == {"step", "activations", "act_grads", "grads"}
    act = hist["activations"]["1"]
    values = h.detach().numpy().ravel()
    counts, edges = np.histogram(values, bins=10, range=(values.min(), values.max()))
    assert act["edges"] == pytest.approx(edges.tolist(), abs=1e-6)
    assert np.abs(np.array(act["counts"]) - counts).sum() <= 2  # float32 vs float64 at a bin edge at most
    assert sum(act["counts"]) == values.size
    assert set(hist["grads"]) == {"0.weight", "2.weight"}  # weights only, as in makemore's plot
    json.dumps(hist, allow_nan=False)

    assert _step(model, stats, optimizer, 2, x, y) and stats.histograms() == {}  # sampled, no histogram


def test_sampling_schedule_and_hooks_only_on_sampled_steps():
    torch.manual_seed(0)
    model = build_model("convnet", channels=1, size=28, num_classes=10)
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    stats = LayerStats(model, every=3)
    sampled = []
    for step in range(7):
        armed = stats.begin_step(step)
        assert _hooks(model) == (4 if armed else 0)  # one forward hook per ReLU, only when sampling
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        stats.after_backward()
        assert _hooks(model) == 0
        optimizer.step()
        rows = stats.end_step()
        if rows:
            sampled.append(step)
            assert {f"dead_frac/relu{i}" for i in range(1, 5)} <= set(rows)
            assert "update_ratio/conv1.weight" in rows and "grad_std/fc3.bias" in rows
            json.dumps(rows, allow_nan=False)
    assert sampled == [0, 3, 6]

    stats.begin_step(9)  # armed, then abandoned (e.g. a skipped step): close must still clean up
    assert _hooks(model) == 4
    stats.close()
    assert _hooks(model) == 0
    off = LayerStats(model, every=0)
    assert not off.begin_step(0) and _hooks(model) == 0 and off.end_step() == {}


def test_recurrent_model_reports_saturation():
    torch.manual_seed(0)
    model = build_model("lstm", channels=1, size=8, num_classes=3, hidden=8, depth=1)
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 3, (4,))
    rows = _step(model, LayerStats(model, every=1), torch.optim.SGD(model.parameters(), lr=0.0), 0, x, y)
    with torch.no_grad():  # lr 0 left the weights as they were during the sampled forward pass
        out, _ = model.rnn(x.permute(0, 2, 1, 3).reshape(4, 8, 8))
    assert rows["sat_frac/rnn"] == pytest.approx((out.abs() > 0.97).float().mean().item())
    assert rows["act_mean/rnn"] == pytest.approx(out.mean().item(), abs=1e-6)
