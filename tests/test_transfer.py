"""Starting a run from another (engine.transfer, engine.adapters), through the real training loop on small slices of
mnist5k: the source's weights arrive, a new head is drawn for other classes, frozen weights and the base weights under
low-rank adapters come out of training bit-identical, the optimizer is given only what trains, a fine-tuning run
resumes to the same weights as an uninterrupted one, and a source that does not fit is refused in one line.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import engine.train as train_module
from engine.adapters import LoRAConv2d, LoRALinear, add_lora, merge_lora_state
from engine.checkpoints import epoch_path, initial_path, load_checkpoint
from engine.config import RunConfig
from engine.data.loading import load_run_split
from engine.models import model_from_config
from engine.train import MemorySink, train
from engine.transfer import SourceUnusable, load_source_weights, prepare_model

BASE = dict(dataset="mnist5k", model="convnet", epochs=1, batch_size=32, lr=0.003, train_limit=600,
            layer_stats_every=0)
SOURCE_ID = "5c0a1e000001"


def config(**changes) -> RunConfig:
    return RunConfig(**{**BASE, **changes}).validate()


@pytest.fixture
def source(trainlens_home) -> str:
    """A convnet trained one epoch on digits 0-4: the run the others start from."""
    result = train(config(classes="0-4"), MemorySink(), run_id=SOURCE_ID)
    assert result.status == "completed"
    return SOURCE_ID


def weights(run_id: str, which: str = "last") -> dict[str, torch.Tensor]:
    path = initial_path(run_id) if which == "initial" else epoch_path(run_id, int(which))
    return load_checkpoint(path).model


def test_a_run_from_another_starts_from_its_weights_with_a_new_head_for_other_classes(source):
    train(config(classes="5-9", init_from=f"{source}:last"), MemorySink(), run_id="target000001")
    start, src = weights("target000001", "initial"), weights(source, "0")
    for key in ("conv1.weight", "conv2.bias", "fc1.weight", "fc2.weight"):
        assert torch.equal(start[key], src[key]), key
    # 0-4 and 5-9 are both five classes, but a head that learnt "3" must not answer "8": it is drawn afresh
    assert start["fc3.weight"].shape == src["fc3.weight"].shape
    assert not torch.equal(start["fc3.weight"], src["fc3.weight"])


def test_the_same_classes_keep_the_sources_head(source):
    sink = MemorySink()
    train(config(classes="0-4", init_from=source), sink, run_id="target000002")
    assert torch.equal(weights("target000002", "initial")["fc3.weight"], weights(source, "0")["fc3.weight"])
    assert sink.artifacts["model_summary"]["new_head"] is False
    assert sink.artifacts["model_summary"]["source"] == source


@pytest.mark.parametrize("freeze, frozen", [("backbone", ("conv1.", "conv2.")),
                                            ("all_but_head", ("conv1.", "conv2.", "fc1.", "fc2.")),
                                            ("conv2.*,fc1.bias", ("conv2.", "fc1.bias"))])
def test_frozen_weights_are_bit_identical_after_fine_tuning_and_the_others_learn(source, freeze, frozen):
    sink = MemorySink()
    train(config(classes="5-9", init_from=source, freeze=freeze, epochs=2), sink, run_id="frozen000001")
    before, after = weights("frozen000001", "initial"), weights("frozen000001", "1")
    for key in before:
        if key.startswith(frozen):
            assert torch.equal(before[key], after[key]), f"{key} changed although frozen"
        else:
            assert not torch.equal(before[key], after[key]), f"{key} did not learn"
    summary = sink.artifacts["model_summary"]
    assert summary["frozen"] == sum(v.numel() for k, v in before.items() if k.startswith(frozen))
    assert summary["trainable"] + summary["frozen"] == summary["parameters"]


def test_the_optimizer_is_given_only_the_parameters_that_train(source, monkeypatch):
    given = []
    original = train_module.make_optimizer

    def spy(params, cfg, lr=None):
        params = list(params)
        given.extend(params)
        return original(params, cfg, lr)

    monkeypatch.setattr(train_module, "make_optimizer", spy)
    train(config(classes="5-9", init_from=source, adapter="lora", lora_rank=2), MemorySink(), run_id="lora00000001")
    assert given and all(p.requires_grad for p in given)
    state = weights("lora00000001", "0")
    trained = {k for k in state if k.endswith(("lora_a", "lora_b")) or k.startswith("fc3.")}
    assert sum(p.numel() for p in given) == sum(state[k].numel() for k in trained)


def test_adapters_leave_the_base_weights_identical_and_train_only_themselves_and_the_head(source):
    sink = MemorySink()
    train(config(classes="5-9", init_from=source, adapter="lora", lora_rank=2, epochs=2), sink, run_id="lora00000002")
    before, after, src = weights("lora00000002", "initial"), weights("lora00000002", "1"), weights(source, "0")
    adapters = [k for k in after if k.endswith(("lora_a", "lora_b"))]
    assert {k.rsplit(".", 1)[0] for k in adapters} == {"conv1", "conv2", "fc1", "fc2"}  # every layer but the head
    for key in before:
        if key in adapters or key.startswith("fc3."):
            assert not torch.equal(before[key], after[key]), f"{key} did not learn"
        else:
            assert torch.equal(before[key], after[key]), f"base weight {key} changed"
            assert torch.equal(after[key], src[key]), f"base weight {key} is not the source's"
    assert all(not before[k].any() for k in adapters if k.endswith("lora_b"))  # B = 0: the start is the base model
    summary = sink.artifacts["model_summary"]
    assert summary["adapter"] == sum(after[k].numel() for k in adapters)
    assert summary["trainable"] == summary["adapter"] + after["fc3.weight"].numel() + after["fc3.bias"].numel()


def test_an_adapted_model_starts_equal_to_its_base_and_merges_back_into_plain_weights():
    torch.manual_seed(0)
    model = model_from_config(config(), 1, 28, 10).eval()
    x = torch.randn(4, 1, 28, 28)
    expected = model(x)
    adapted = add_lora(model, rank=3, alpha=6.0, skip=("fc3",))
    assert adapted == ["conv1", "conv2", "fc1", "fc2"]
    assert isinstance(model.conv1, LoRAConv2d) and isinstance(model.fc1, LoRALinear)
    assert isinstance(model.conv1, nn.Conv2d) and isinstance(model.fc1, nn.Linear)  # still the layers hooks know
    assert torch.equal(model(x), expected)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("lora_b"):
                p.normal_()
    changed = model(x)
    plain = model_from_config(config(), 1, 28, 10).eval()
    plain.load_state_dict(merge_lora_state(model.state_dict(), 6.0 / 3))
    assert torch.allclose(plain(x), changed, atol=1e-4) and not torch.allclose(changed, expected, atol=1e-3)


def test_a_run_from_an_adapted_run_starts_from_its_merged_weights(source, trainlens_home):
    train(config(classes="0-4", init_from=source, adapter="lora", lora_rank=2), MemorySink(), run_id="lora00000003")
    adapted = load_checkpoint(epoch_path("lora00000003", 0)).model
    model = model_from_config(config(classes="0-4", init_from="lora00000003"), 1, 28, 5)
    assert load_source_weights(model, config(classes="0-4", init_from="lora00000003")) is False
    merged = merge_lora_state(adapted, 8.0 / 2)
    assert all(torch.equal(model.state_dict()[k], merged[k]) for k in merged)


def test_a_fine_tuning_run_resumes_to_the_weights_of_an_uninterrupted_one(source):
    cfg = config(classes="5-9", init_from=source, adapter="lora", lora_rank=2, freeze="conv1.*", epochs=2)
    train(cfg, MemorySink(), run_id="whole0000001")
    train(cfg, MemorySink(), run_id="resumed00001")
    # the second run resumes from its own epoch-1 checkpoint: the source is not read again
    resumed = train(cfg, MemorySink(), run_id="resumed00001", resume_from=str(epoch_path("resumed00001", 0)))
    assert resumed.status == "completed"
    whole, again = weights("whole0000001", "1"), weights("resumed00001", "1")
    assert whole.keys() == again.keys() and all(torch.equal(whole[k], again[k]) for k in whole)


def test_frozen_batch_norm_keeps_its_running_statistics(trainlens_home):
    small = {"model": "resnet", "width": 4, "depth": 1, "train_limit": 200}
    train(config(**small, classes="0-4"), MemorySink(), run_id="resnet000001")
    train(config(**small, classes="5-9", init_from="resnet000001", freeze="backbone"), MemorySink(),
          run_id="resnet000002")
    before, after = weights("resnet000002", "initial"), weights("resnet000002", "0")
    statistics = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert statistics and all(torch.equal(before[k], after[k]) for k in statistics)
    assert not torch.equal(before["fc.weight"], after["fc.weight"])


def test_a_source_of_another_architecture_is_refused_naming_the_weight_and_both_shapes(source):
    cfg = config(model="mlp", hidden=32, depth=1, init_from=source)
    with pytest.raises(SourceUnusable, match=r"init_from=5c0a1e000001: the source run's model has no net\.1\.weight "
                                             r"\(it trained a convnet; this run builds a mlp\)"):
        train(cfg, MemorySink(), run_id="refused00001")
    train(config(model="mlp", hidden=16, depth=1, classes="0-4"), MemorySink(), run_id="mlp000000001")
    wider = config(model="mlp", hidden=32, depth=1, classes="0-4", init_from="mlp000000001")
    with pytest.raises(SourceUnusable, match=r"net\.1\.weight is \[16, 784\] in the source run and \[32, 784\] here; "
                                             r"the architectures differ \(hidden 16 vs 32\)"):
        prepare_model(model_from_config(wider, 1, 28, 5), wider)


def test_a_missing_checkpoint_is_one_line(trainlens_home):
    cfg = config(init_from="0000deadbeef:epoch3")
    with pytest.raises(SourceUnusable, match="init_from=0000deadbeef:epoch3: .*no checkpoint"):
        prepare_model(model_from_config(cfg, 1, 28, 10), cfg)


def test_class_subsets_and_k_examples_per_class_are_the_same_split_restricted():
    whole = load_run_split(config(train_limit=0))
    subset = load_run_split(config(train_limit=0, classes="5-9"))
    assert subset.info.classes == ("5", "6", "7", "8", "9")
    assert sorted(set(subset.val_y.tolist())) == [0, 1, 2, 3, 4]
    keep = whole.val_y >= 5
    assert torch.equal(subset.val_x, whole.val_x[keep]) and torch.equal(subset.val_y, whole.val_y[keep] - 5)
    assert subset.mean == whole.mean  # the dataset's statistics, not a handful of images'
    five = load_run_split(config(train_limit=0, classes="5-9", train_per_class=5))
    fifty = load_run_split(config(train_limit=0, classes="5-9", train_per_class=50))
    assert torch.bincount(five.train_y).tolist() == [5] * 5 and torch.bincount(fifty.train_y).tolist() == [50] * 5
    rows = {tuple(x.flatten().tolist()) for x in fifty.train_x}
    assert all(tuple(x.flatten().tolist()) in rows for x in five.train_x)  # the 5 are among the 50
    assert torch.equal(five.val_x, subset.val_x)


def test_more_examples_per_class_than_there_are_is_one_line():
    from engine.datasets import DatasetUnavailable

    with pytest.raises(DatasetUnavailable, match=r"^train_per_class=5000: class '\d' has only \d+ training examples; "
                                                 r"choose at most \d+ \(the fewest of the chosen classes\)$"):
        load_run_split(config(classes="5-9", train_per_class=5000, train_limit=0))
