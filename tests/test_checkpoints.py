"""Checkpoints: exact save/load round trips (tensors, config, optimizer state), lookup by epoch/best/last,
and resume: an interrupted run continued from its epoch checkpoint logs the same curve as an uninterrupted one.
"""

from __future__ import annotations

import pytest
import torch
from conftest import make_split

from engine.checkpoints import (
    Checkpoint,
    best_path,
    epoch_path,
    list_epochs,
    load_checkpoint,
    load_run_model,
    resolve,
    save_checkpoint,
)
from engine.config import OPTIMIZERS, RunConfig
from engine.models import model_from_config
from engine.optim import make_optimizer
from engine.train import MemorySink, train


def _take_steps(model, optimizer, steps: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(4, 3, 16, 16, generator=generator)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3])).backward()
        optimizer.step()


def test_round_trip_keeps_every_tensor_and_field(tmp_path):
    torch.manual_seed(0)
    config = RunConfig(model="resnet", width=4, depth=1, optimizer="adam", ema=True, swa=True)
    model = model_from_config(config, 3, 16, 5)  # has BatchNorm buffers, including int64 num_batches_tracked
    optimizer = make_optimizer(model.parameters(), config)
    _take_steps(model, optimizer, 2, seed=1)
    ema = {k: v * 0.5 for k, v in model.state_dict().items() if v.is_floating_point()}
    ckpt = Checkpoint(config=config, epoch=3, step=120, model=model.state_dict(), ema=ema, swa=dict(ema),
                      optimizer=optimizer.state_dict(), rng=torch.get_rng_state(),
                      metrics={"val_loss": 0.123456789, "val_acc": 0.5},
                      extra={"stopper": {"best": 0.1, "best_epoch": 2, "bad_epochs": 1}, "examples": 480})
    path = tmp_path / "ck" / "epoch_3.safetensors"
    save_checkpoint(path, ckpt)
    assert [p.name for p in path.parent.iterdir()] == ["epoch_3.safetensors"]  # no temporary file left behind

    loaded = load_checkpoint(path)
    assert loaded.config == config
    assert (loaded.epoch, loaded.step, loaded.metrics, loaded.extra) == (3, 120, ckpt.metrics, ckpt.extra)
    assert torch.equal(loaded.rng, ckpt.rng)
    for group in ("model", "ema", "swa"):
        original, again = getattr(ckpt, group), getattr(loaded, group)
        assert set(again) == set(original)
        for name, tensor in original.items():
            assert again[name].dtype == tensor.dtype and torch.equal(again[name], tensor), f"{group}.{name}"
    state, again = ckpt.optimizer, loaded.optimizer
    assert set(again["state"]) == set(state["state"])
    for index, entries in state["state"].items():
        for key, value in entries.items():
            assert torch.equal(torch.as_tensor(again["state"][index][key]), torch.as_tensor(value)), f"{index}.{key}"
    for group, group_again in zip(state["param_groups"], again["param_groups"]):
        assert {k: list(v) if isinstance(v, tuple) else v for k, v in group.items()} == group_again


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_state_round_trip_continues_identically(tmp_path, name):
    """Two more steps after save/load equal two more steps of the original optimizer, bit for bit."""
    torch.manual_seed(0)
    config = RunConfig(model="convnet", optimizer=name, lr=0.01, weight_decay=0.01)
    model = model_from_config(config, 3, 16, 4)
    optimizer = make_optimizer(model.parameters(), config)
    _take_steps(model, optimizer, 2, seed=1)
    path = tmp_path / f"{name}.safetensors"
    save_checkpoint(path, Checkpoint(config=config, epoch=0, step=2, model=model.state_dict(),
                                     optimizer=optimizer.state_dict()))

    loaded = load_checkpoint(path)
    twin = model_from_config(config, 3, 16, 4)
    twin.load_state_dict(loaded.model)
    twin_optimizer = make_optimizer(twin.parameters(), config)
    twin_optimizer.load_state_dict(loaded.optimizer)
    _take_steps(model, optimizer, 2, seed=2)
    _take_steps(twin, twin_optimizer, 2, seed=2)
    for (key, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        assert torch.equal(a, b), key


def test_lookup_by_epoch_best_and_last():
    run_id = "lookup"
    with pytest.raises(FileNotFoundError, match="no checkpoint yet"):
        resolve(run_id, "last")
    config = RunConfig()
    model = {"w": torch.ones(2)}
    for epoch in (0, 1, 10):  # 10 sorts after 1 as a number, not as text
        save_checkpoint(epoch_path(run_id, epoch), Checkpoint(config, epoch, epoch * 5, model))
    assert list_epochs(run_id) == [0, 1, 10]
    assert resolve(run_id, "last") == resolve(run_id, "best") == epoch_path(run_id, 10)  # no best file yet
    save_checkpoint(best_path(run_id), Checkpoint(config, 1, 5, model))
    assert resolve(run_id, "best") == best_path(run_id)
    assert resolve(run_id, 1) == resolve(run_id, "1") == epoch_path(run_id, 1)
    with pytest.raises(FileNotFoundError, match=r"no checkpoint after epoch 6; after epochs: 1, 2, 11$"):
        resolve(run_id, 5)  # numbered as users count epochs (engine index 5 is "after epoch 6")


def test_load_run_model_rebuilds_the_trained_weights():
    split = make_split(n_train=64, n_val=40, size=28, classes=10)  # the shape of mnist5k, which the config names
    config = RunConfig(model="mlp", hidden=8, depth=1, epochs=1, batch_size=32)
    train(config, MemorySink(), split=split, run_id="rebuild")
    model, loaded_config, info, ckpt = load_run_model("rebuild", "last")
    assert loaded_config == config and info.name == "mnist5k" and not model.training
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, ckpt.model[name])
    with pytest.raises(ValueError, match="EMA"):
        load_run_model("rebuild", "last", weights="ema")


def test_resume_from_an_epoch_checkpoint_continues_the_same_curve():
    """2 epochs straight vs 1 epoch, stop, resume: the second epoch's losses agree within 1e-6."""
    split = make_split(n_train=96, n_val=48)
    # Adam state, a schedule, dropout (global RNG) and EMA: everything resume has to restore
    config = RunConfig(model="mlp", hidden=16, depth=2, epochs=2, batch_size=16, optimizer="adam", lr=0.01,
                       schedule="cosine", dropout=0.3, ema=True, ema_decay=0.9)
    steps_per_epoch = 6

    straight = MemorySink()
    assert train(config, straight, split=split, run_id="straight").status == "completed"

    first = MemorySink()
    stopped = train(config, first, split=split, run_id="interrupted",
                    should_stop=lambda: len(first.series("loss")) >= steps_per_epoch)
    assert stopped.status == "cancelled" and stopped.step == steps_per_epoch
    assert list_epochs("interrupted") == [0]

    resumed = MemorySink()
    result = train(config, resumed, split=split, run_id="interrupted",
                   resume_from=str(resolve("interrupted", "last")))
    assert result.status == "completed" and result.step == 2 * steps_per_epoch

    second_epoch = [(s, k, v) for s, e, k, v in straight.rows if e == 1]
    again = [(s, k, v) for s, e, k, v in resumed.rows if e == 1]
    assert [(s, k) for s, k, _ in again] == [(s, k) for s, k, _ in second_epoch]
    assert [s for s, k, _ in again if k == "loss"] == list(range(steps_per_epoch + 1, 2 * steps_per_epoch + 1))
    for (step, key, expected), (_, _, value) in zip(second_epoch, again):
        if key not in ("examples_per_s",):  # wall-clock throughput differs, everything else must not
            assert value == pytest.approx(expected, abs=1e-6), (step, key)
    assert resumed.series("examples")[0] == 16 * (steps_per_epoch + 1)
