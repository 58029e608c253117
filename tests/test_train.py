"""The training loop on tiny random data: logging contract, clipping, early stopping, EMA/SWA, divergence,
cancellation and determinism.

References are independent: torch's own gradient-norm functions for clipping, an EMA and an SWA average
recomputed by hand from the weight trajectory (captured with an optimizer step hook), and loss/accuracy
recomputed by hand for `evaluate`.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import make_split
from torch import nn

import engine.train as train_module
from engine.checkpoints import epoch_path, load_checkpoint
from engine import records
from engine.config import RunConfig
from engine.data.loading import normalize
from engine.models import model_from_config
from engine.grads import FlatGradients, clip_tensors
from engine.stopping import EarlyStopping
from engine.train import MemorySink, train
from engine.validation import evaluate

STEP_KEYS = set(records.STEP_KEYS)
EPOCH_KEYS = records.EPOCH_KEYS - {"best_epoch"}  # best_epoch is logged once, at the end, with early stopping


def tiny_config(**changes) -> RunConfig:
    base = dict(model="mlp", hidden=16, depth=1, epochs=2, batch_size=32, optimizer="adam", lr=0.01)
    return RunConfig(**{**base, **changes}).validate()


def spy_optimizer(monkeypatch, *, pre=None, post=None) -> None:
    """Register step hooks on the optimizer train() builds (pre: after clipping, post: after the update)."""
    original = train_module.make_optimizer

    def make(params, config, lr=None):
        optimizer = original(params, config, lr)
        if pre is not None:
            optimizer.register_step_pre_hook(lambda opt, args, kwargs: pre(opt))
        if post is not None:
            optimizer.register_step_post_hook(lambda opt, args, kwargs: post(opt))
        return optimizer

    monkeypatch.setattr(train_module, "make_optimizer", make)


def params_of(optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


# ---- logging contract ----

def test_logs_every_step_and_epoch_key(tiny_split, trainlens_home):
    sink = MemorySink()
    result = train(tiny_config(), sink, split=tiny_split, run_id="contract")
    steps_per_epoch = math.ceil(96 / 32)
    assert result.status == "completed" and result.step == 2 * steps_per_epoch and result.epoch == 1
    step_rows = [r for r in sink.rows if r[2] in STEP_KEYS]
    assert len(step_rows) == 2 * steps_per_epoch * len(STEP_KEYS)
    assert sorted({r[0] for r in step_rows}) == list(range(1, 2 * steps_per_epoch + 1))
    # no EMA/SWA/best_epoch keys unless asked; per-layer statistics ("kind/layer" keys) are on by default
    assert {r[2] for r in sink.rows if "/" not in r[2]} == STEP_KEYS | EPOCH_KEYS
    for epoch in (0, 1):
        rows = {k: (s, v) for s, e, k, v in sink.rows if e == epoch and k in EPOCH_KEYS}
        assert set(rows) == EPOCH_KEYS
        assert {s for s, _ in rows.values()} == {(epoch + 1) * steps_per_epoch}  # at the epoch's last step
    assert sink.series("examples") == [32, 64, 96, 128, 160, 192]
    assert sink.last_progress == (6, 6, 1)
    assert sink.artifacts["model_summary"]["total_steps"] == 6
    # a checkpoint per epoch, plus best whenever val_loss improved
    assert [c for c in sink.checkpoints if c[1] == "epoch"] == [(0, "epoch", str(epoch_path("contract", 0))),
                                                                (1, "epoch", str(epoch_path("contract", 1)))]
    assert any(c[1] == "best" for c in sink.checkpoints)
    assert str(trainlens_home) in sink.checkpoints[0][2]


def test_logged_lr_follows_the_schedule(tiny_split):
    from engine.optim import lr_at

    config = tiny_config(schedule="cosine", warmup_steps=2, lr=0.05)
    sink = MemorySink()
    train(config, sink, split=tiny_split)
    assert sink.series("lr") == pytest.approx([lr_at(config, s, 6) for s in range(6)])


def test_train_accuracy_and_validation_against_a_hand_count(tiny_split):
    sink = MemorySink()
    train(tiny_config(epochs=1), sink, split=tiny_split)
    epoch = {k: v for _, _, k, v in sink.rows if k in EPOCH_KEYS}
    losses = sink.series("loss")
    assert epoch["train_loss"] == pytest.approx(sum(losses) / len(losses), rel=1e-5)  # equal-size batches
    assert 0.0 <= epoch["train_acc"] <= 1.0 and 0.0 <= epoch["val_acc"] <= 1.0


def test_evaluate_matches_a_hand_computation():
    torch.manual_seed(0)
    split = make_split(n_val=50)
    model = model_from_config(tiny_config(), 1, 8, 3).train()
    result = evaluate(model, split.val_x, split.val_y, split.mean, split.std, batch_size=16)
    assert model.training  # evaluate restores the mode it found
    with torch.no_grad():
        logits = model.eval()(normalize(split.val_x, split.mean, split.std))
    assert result["loss"] == pytest.approx(F.cross_entropy(logits, split.val_y).item(), rel=1e-5)
    assert result["acc"] == pytest.approx((logits.argmax(1) == split.val_y).float().mean().item())
    from sklearn.metrics import f1_score

    assert result["f1"] == pytest.approx(f1_score(split.val_y, logits.argmax(1), average="macro", zero_division=0))


# ---- gradient clipping ----

def _model_with_gradients(scale: float) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    for param in model.parameters():
        param.grad = torch.randn_like(param) * scale
    return model


def clip_flat(model, config):
    """The training loop's path: gradients bound into one flat buffer, then clipped there."""
    values = [p.grad.clone() for p in model.parameters()]
    grads = FlatGradients(model)
    for p, value in zip(model.parameters(), values):
        p.grad.copy_(value)
    return grads.clip(config)


def clip_separate(model, config):
    """The fallback for models whose gradients cannot share one buffer."""
    return clip_tensors(list(model.parameters()), config)


@pytest.mark.parametrize("clip_fn", [clip_flat, clip_separate])
@pytest.mark.parametrize("mode, clip_value, should_clip", [
    ("none", 0.1, False),
    ("norm", 0.5, True), ("norm", 1e3, False),
    ("value", 0.25, True), ("value", 1e3, False),
])
def test_clip_gradients_against_torch(mode, clip_value, should_clip, clip_fn):
    model = _model_with_gradients(scale=1.0)
    before = [p.grad.clone() for p in model.parameters()]
    copies = [nn.Parameter(p.detach().clone()) for p in model.parameters()]
    for copied, grad in zip(copies, before):
        copied.grad = grad.clone()
    reference = torch.nn.utils.clip_grad_norm_(copies, max_norm=float("inf"))  # torch's total norm, on a copy
    assert reference == pytest.approx(torch.nn.utils.get_total_norm(before).item())

    norm, clipped = clip_fn(model, RunConfig(clip=mode, clip_value=clip_value))
    after = [p.grad for p in model.parameters()]

    assert norm.item() == pytest.approx(reference.item(), rel=1e-6)  # the logged norm is the norm before clipping
    assert bool(clipped.item()) is should_clip
    if mode == "norm":
        after_norm = torch.nn.utils.get_total_norm(after).item()
        assert after_norm <= clip_value * (1 + 1e-5)
        if should_clip:
            assert after_norm == pytest.approx(clip_value, rel=1e-5)
            for b, a in zip(before, after):  # direction kept: a uniform rescale
                assert torch.allclose(a, b * clip_value / reference, atol=1e-7)
    elif mode == "value":
        assert max(a.abs().max().item() for a in after) <= clip_value
        for b, a in zip(before, after):
            assert torch.equal(a, b.clamp(-clip_value, clip_value))
    if not should_clip:
        assert all(torch.equal(a, b) for a, b in zip(after, before))


@pytest.mark.parametrize("mode", ["none", "norm", "value"])
def test_training_logs_the_pre_clip_norm_and_steps_with_clipped_gradients(monkeypatch, tiny_split, mode):
    clip_value = 0.0625  # exact in float32, so "<= clip_value" needs no tolerance for value clipping
    norms_before, norms_at_step, max_at_step = [], [], []
    original = FlatGradients.clip

    def recording_clip(self, config):
        norms_before.append(torch.nn.utils.get_total_norm([p.grad for p in self.params]).item())
        return original(self, config)

    def at_step(optimizer):
        grads = [p.grad for p in params_of(optimizer)]
        norms_at_step.append(torch.nn.utils.get_total_norm(grads).item())
        max_at_step.append(max(g.abs().max().item() for g in grads))

    monkeypatch.setattr(FlatGradients, "clip", recording_clip)
    spy_optimizer(monkeypatch, pre=at_step)
    sink = MemorySink()
    train(tiny_config(clip=mode, clip_value=clip_value, epochs=1), sink, split=tiny_split)

    assert sink.series("grad_norm") == pytest.approx(norms_before, rel=1e-6)
    assert len(norms_before) == 3 and min(norms_before) > clip_value  # every step needed clipping here
    if mode == "none":
        assert sink.series("clipped") == [0.0, 0.0, 0.0]
        assert norms_at_step == pytest.approx(norms_before, rel=1e-6)
    elif mode == "norm":
        assert sink.series("clipped") == [1.0, 1.0, 1.0]
        assert max(norms_at_step) <= clip_value * (1 + 1e-5)
    else:
        assert sink.series("clipped") == [1.0, 1.0, 1.0]
        assert max(max_at_step) <= clip_value


# ---- early stopping ----

def test_early_stopping_lower_is_better():
    stopper = EarlyStopping("val_loss", patience=2, min_delta=0.0)
    assert [stopper.update(e, v) for e, v in enumerate([1.0, 0.8, 0.9, 0.8, 0.7])] == [True, True, False, False, True]
    assert (stopper.best, stopper.best_epoch, stopper.bad_epochs, stopper.should_stop) == (0.7, 4, 0, False)
    stopper.update(5, 0.75)
    assert not stopper.should_stop
    stopper.update(6, 0.71)
    assert stopper.should_stop  # two epochs in a row without beating 0.7


def test_early_stopping_higher_is_better_for_accuracy():
    stopper = EarlyStopping("val_acc", patience=1, min_delta=0.0)
    assert stopper.update(0, 0.5) and stopper.update(1, 0.6)
    assert not stopper.update(2, 0.55)
    assert stopper.should_stop and stopper.best_epoch == 1


def test_early_stopping_min_delta_and_state_round_trip():
    stopper = EarlyStopping("val_loss", patience=3, min_delta=0.1)
    stopper.update(0, 1.0)
    assert not stopper.update(1, 0.95)  # better, but by less than min_delta
    assert stopper.update(2, 0.85)  # better by 0.15
    assert stopper.best == 0.85 and stopper.bad_epochs == 0
    assert not stopper.update(3, 0.8)
    again = EarlyStopping("val_loss", 3, 0.1, stopper.state())
    assert again.state() == stopper.state() == {"best": 0.85, "best_epoch": 2, "bad_epochs": 1}
    acc = EarlyStopping("val_acc", patience=1, min_delta=0.05)
    acc.update(0, 0.5)
    assert not acc.update(1, 0.54) and acc.should_stop


def test_a_run_that_stops_improving_stops_early(tiny_split, trainlens_home):
    # min_delta=10: after the first epoch no change of val_loss can count as an improvement
    sink = MemorySink()
    config = tiny_config(epochs=5, early_stop=True, patience=1, min_delta=10.0)
    result = train(config, sink, split=tiny_split, run_id="early")
    assert result.status == "stopped_early"
    assert (result.epoch, result.step, result.best_epoch) == (1, 6, 0)
    assert len(sink.series("val_loss")) == 2
    assert sink.series("best_epoch") == [0.0]
    assert [c[0] for c in sink.checkpoints if c[1] == "epoch"] == [0, 1]


def test_patience_not_reached_completes_with_best_epoch_logged(tiny_split):
    sink = MemorySink()
    result = train(tiny_config(epochs=2, early_stop=True, patience=5), sink, split=tiny_split)
    assert result.status == "completed"
    assert sink.series("best_epoch") == [float(result.best_epoch)]


# ---- EMA and SWA ----

def test_ema_and_swa_follow_the_weight_trajectory(monkeypatch, tiny_split):
    decay = 0.6
    trajectory: list[list[torch.Tensor]] = []  # the weights after every optimizer step
    spy_optimizer(monkeypatch, post=lambda opt: trajectory.append([p.detach().clone() for p in params_of(opt)]))
    config = tiny_config(epochs=3, ema=True, ema_decay=decay, swa=True, swa_start=1)
    sink = MemorySink()
    train(config, sink, split=tiny_split, run_id="averages")
    steps_per_epoch = 3
    assert len(trajectory) == 3 * steps_per_epoch

    # EMA as torch.optim.swa_utils.AveragedModel defines it: starts at the first step's weights, then
    # ema = decay * ema + (1 - decay) * weights after every step
    ema = [t.clone() for t in trajectory[0]]
    for weights in trajectory[1:]:
        ema = [decay * e + (1 - decay) * w for e, w in zip(ema, weights)]
    # SWA: the plain mean of the weights at the end of epochs swa_start..last
    ends = [trajectory[(epoch + 1) * steps_per_epoch - 1] for epoch in (1, 2)]
    swa = [(a + b) / 2 for a, b in zip(*ends)]

    ckpt = load_checkpoint(epoch_path("averages", 2))
    model = model_from_config(config, 1, 8, 3)
    names = [name for name, _ in model.named_parameters()]  # the optimizer's order; the MLP has no buffers
    assert sorted(names) == sorted(ckpt.model) == sorted(ckpt.ema) == sorted(ckpt.swa)
    for name, raw, e, s in zip(names, trajectory[-1], ema, swa):
        assert torch.equal(ckpt.model[name], raw)
        assert torch.allclose(ckpt.ema[name], e, atol=1e-6), name
        assert not torch.allclose(ckpt.ema[name], raw)  # the average really lags the raw weights
        assert torch.allclose(ckpt.swa[name], s, atol=1e-6), name

    assert len(sink.series("ema_val_loss")) == len(sink.series("ema_val_acc")) == 3
    assert len(sink.series("swa_val_loss")) == len(sink.series("swa_val_acc")) == 2  # from epoch swa_start on
    # the logged EMA validation loss is that of the hand-computed EMA weights
    model.load_state_dict(dict(zip(names, ema)))
    hand = evaluate(model, tiny_split.val_x, tiny_split.val_y, tiny_split.mean, tiny_split.std)
    assert sink.series("ema_val_loss")[-1] == pytest.approx(hand["loss"], rel=1e-5)
    assert sink.series("ema_val_loss")[-1] != pytest.approx(sink.series("val_loss")[-1])


# ---- divergence, cancellation, determinism ----

def test_divergence_stops_the_run_and_names_the_step(tiny_split):
    config = tiny_config(model="mlp", depth=3, activation="gelu", optimizer="sgd", lr=10.0, batch_size=16, epochs=3)
    sink = MemorySink()
    result = train(config, sink, split=tiny_split)
    assert result.status == "diverged"
    losses = sink.series("loss")
    assert len(losses) == result.step and not math.isfinite(losses[-1]) and all(map(math.isfinite, losses[:-1]))
    assert f"at step {result.step}" in result.error
    assert result.step < 18  # stopped before the end of the run
    assert max(r[0] for r in sink.rows) == result.step  # nothing logged after the bad step


def test_should_stop_cancels_within_one_step(tiny_split):
    sink = MemorySink()
    result = train(tiny_config(epochs=3), sink, should_stop=lambda: len(sink.series("loss")) >= 4, split=tiny_split)
    assert result.status == "cancelled"
    assert result.step == 4 and len(sink.series("loss")) == 4
    assert len(sink.series("val_loss")) == 1  # epoch 0 finished; epoch 1 was cancelled mid-way


def _loss_curve(seed: int, split) -> list[float]:
    sink = MemorySink()
    config = tiny_config(seed=seed, epochs=2, batch_size=16, dropout=0.3, augment_rotate=15.0, augment_translate=0.1)
    train(config, sink, split=split)
    return sink.series("loss") + sink.series("val_loss")


def test_same_seed_same_curve_different_seed_different_curve(tiny_split):
    first = _loss_curve(0, tiny_split)
    assert _loss_curve(0, tiny_split) == first  # bit for bit on CPU
    assert _loss_curve(1, tiny_split) != first


def test_layer_statistics_and_recipe_checks_come_with_every_run(tiny_split):
    sink = MemorySink()
    train(tiny_config(layer_stats_every=2), sink, split=tiny_split)
    sampled = sorted({step for step, _, key, _ in sink.rows if key.startswith("update_ratio/")})
    assert sampled == [1, 3, 5]  # steps 0, 2, 4 are sampled; rows are logged at the step count after them
    assert any(key.startswith("act_std/") for _, _, key, _ in sink.rows)
    names = [check["name"] for check in sink.artifacts["recipe_checks"]]
    assert names[:3] == ["loss_at_init", "input_independent", "clipping"]
    assert {"report/last"} <= set(sink.artifacts)
    report = sink.artifacts["report/last"]
    assert sum(map(sum, report["confusion"])) == len(tiny_split.val_y)


def test_layer_statistics_can_be_turned_off(tiny_split):
    sink = MemorySink()
    train(tiny_config(layer_stats_every=0), sink, split=tiny_split)
    assert not any("/" in key for _, _, key, _ in sink.rows)


def test_flat_gradients_are_views_that_backward_fills_and_zero_clears():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    reference = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    reference.load_state_dict(model.state_dict())
    grads = FlatGradients(model)
    x = torch.randn(5, 4)
    for _ in range(2):  # twice: zero() must clear the first backward's gradients
        grads.zero()
        model(x).pow(2).sum().backward()
    reference(x).pow(2).sum().backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.allclose(p.grad, q.grad)
        assert p.grad.data_ptr() >= grads.flat.data_ptr()  # still a view into the buffer
    assert torch.equal(grads.flat, torch.cat([q.grad.reshape(-1) for q in reference.parameters()]))
    for p in model.parameters():  # something resets gradients to None: zero() binds the views again
        p.grad = None
    grads.zero()
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())
