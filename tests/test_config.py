"""RunConfig: validation of every field, exact dict/JSON/TOML round trips, unknown keys, CLI assignments.

The table of bad values is written by hand from the field comments (not derived from the validator's own
tables), and a test checks that it covers every field, so a new field cannot slip in untested.
"""

from __future__ import annotations

import dataclasses
import math
import re

import pytest

from engine.config import (
    ACTIVATIONS,
    CLIPS,
    DATASETS,
    DEVICES,
    MODELS,
    OPTIMIZERS,
    SCHEDULES,
    STOP_METRICS,
    RunConfig,
    field_help,
    parse_assignment,
)

FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(RunConfig)}

# field -> (out-of-range values, in-range boundary values)
RANGES = {
    "val_fraction": ([0.0, -0.1, 0.95], [0.9, 0.01]),
    "train_limit": ([-1], [0, 10]),
    "batch_size": ([0, 8193], [1, 8192]),
    "augment_rotate": ([-1.0, 181.0], [0.0, 180.0]),
    "augment_scale": ([-0.1, 0.91], [0.0, 0.9]),
    "augment_translate": ([-0.1, 0.51], [0.0, 0.5]),
    "hidden": ([0, 8193], [1, 8192]),
    "depth": ([0, 65], [1, 64]),
    "width": ([0, 513], [1, 512]),
    "dropout": ([-0.1, 0.95], [0.0, 0.9]),
    "lr": ([0.0, -1e-3, 10.5], [1e-8, 10.0]),
    "momentum": ([-0.1, 1.0], [0.0, 0.99]),
    "beta1": ([-0.1, 1.0], [0.0, 0.999]),
    "beta2": ([-0.5, 1.0], [0.0, 0.9999]),
    "weight_decay": ([-0.1, 1.5], [0.0, 1.0]),
    "warmup_steps": ([-1], [0, 500]),
    "step_every": ([0, -3], [1]),
    "gamma": ([0.0, 1.1], [1e-3, 1.0]),
    "decay_steps": ([0], [1]),
    "min_lr_ratio": ([-0.1, 1.1], [0.0, 1.0]),
    "clip_value": ([0.0, -1.0], [1e-6, 100.0]),
    "epochs": ([0, 1001], [1, 1000]),
    "embed_dim": ([0, 1025], [1, 1024]),
    "block_size": ([7, 1025], [8, 1024]),
    "context": ([0, 65], [1, 64]),
    "heads": ([0, 65], [1, 64]),
    "sample_temperature": ([0.0, -1.0, 10.5], [0.05, 10.0]),
    "text_negation": ([-0.1, 1.1], [0.0, 1.0]),
    "text_contrast": ([-0.1, 1.1], [0.0, 1.0]),
    "text_filler": ([-1, 11], [0, 10]),
    "vocab_size": ([1], [2, 1_000_000]),
    "vocab_min_count": ([0], [1]),
    "seed": ([-1, 2**31], [0, 2**31 - 1]),
    "patience": ([0], [1]),
    "min_delta": ([-0.1], [0.0]),
    "ema_decay": ([-0.1, 1.0], [0.0, 0.999]),
    "swa_start": ([-1], [0]),
    "layer_stats_every": ([-1], [0, 10]),
    "num_cpus": ([0.0, -1.0, 1025.0], [0.5, 1024.0]),
    "num_gpus": ([-0.5, 65.0], [0.0, 0.25, 64.0]),
    "train_per_class": ([-1, 100_001], [0, 100_000]),
    "lora_rank": ([0, 257], [1, 256]),
    "lora_alpha": ([0.0, -1.0, 1025.0], [0.5, 1024.0]),
}
CHOICES = {
    "dataset": (DATASETS, "imagenet"),
    "model": (MODELS, "vgg"),
    "activation": (ACTIVATIONS, "swish"),
    "optimizer": (OPTIMIZERS, "lbfgs"),
    "schedule": (SCHEDULES, "exponential"),
    "clip": (CLIPS, "both"),
    "early_stop_metric": (STOP_METRICS, "train_loss"),
    "device": (DEVICES, "tpu"),
    "text_level": (("word", "char"), "byte"),
    "adapter": (("none", "lora"), "prefix"),
    "names_list": (("first", "last", "both"), "middle"),
}
# text fields with a syntax of their own (engine.transfer_spec): field -> (refused values, accepted values)
SYNTAX = {
    "init_from": (["ab cd", "abc:worst", "abc:epoch", "abc:epoch-1", ":best", "x" * 201],
                  ["", "0123abcd", "0123abcd:best", "0123abcd:last", "0123abcd:epoch3", "0123abcd:epoch0"]),
    "freeze": (["", "conv1/weight", "conv1 weight", ",", "x" * 201], ["none", "backbone", "all_but_head", "conv1.*",
                                                                   "conv1.*, fc1.weight"]),
    "classes": (["5-3", "5", "10", "0-10", "1,1", "cat,dog", "1,,2", "x" * 201], ["", "5-9", "0,2,4", "0-4,7"]),
}
FREE_TEXT = {"data_dir", "name", "group", "text_column", "label_column"}  # any string is fine
FLAGS = {"augment_flip", "skip", "early_stop", "restore_best", "ema", "swa", "bidirectional"}

# values of the wrong type for each kind of field (bools are ints in Python: they must still be refused)
WRONG_TYPES = {
    "int": ["3", 2.5, True, None],
    "float": ["0.1", True, None, [0.1]],
    "bool": [1, "yes", None],
    "str": [5, None, b"mlp"],
}


def _assert_names(message: str, field: str, value) -> None:
    assert message.startswith(field + "=") or f"{field}=" in message, message
    assert repr(value) in message, message


def test_the_tables_cover_every_field():
    covered = set(RANGES) | set(CHOICES) | FREE_TEXT | FLAGS | set(SYNTAX)
    assert covered == set(FIELD_TYPES)


def test_defaults_are_valid_and_every_field_is_documented():
    RunConfig().validate()
    help_text = field_help()
    assert set(help_text) == set(FIELD_TYPES)
    assert all(text for text in help_text.values())


@pytest.mark.parametrize("field, value", [(f, v) for f, t in FIELD_TYPES.items() for v in WRONG_TYPES[t]],
                         ids=lambda x: repr(x)[:20])
def test_wrong_type_is_rejected_naming_field_value_and_type(field, value):
    with pytest.raises(ValueError) as excinfo:
        RunConfig(**{field: value}).validate()
    message = str(excinfo.value)
    _assert_names(message, field, value)
    assert FIELD_TYPES[field] in message  # "expected int"


@pytest.mark.parametrize("field, value", [(f, v) for f, (bad, _) in RANGES.items() for v in bad])
def test_out_of_range_is_rejected_naming_field_value_and_range(field, value):
    with pytest.raises(ValueError) as excinfo:
        RunConfig(**{field: value}).validate()
    message = str(excinfo.value)
    _assert_names(message, field, value)
    assert re.search(r"[\[(]\s*-?[\d.e+]+\s*,\s*[\d.e+]+\s*[\])]", message), f"no allowed interval in {message!r}"


@pytest.mark.parametrize("field, value", [(f, v) for f, (_, good) in RANGES.items() for v in good])
def test_boundary_values_inside_the_range_are_accepted(field, value):
    assert getattr(RunConfig(**{field: value}).validate(), field) == value


@pytest.mark.parametrize("field", sorted(CHOICES))
def test_unknown_choice_is_rejected_listing_the_allowed_values(field):
    allowed, bad = CHOICES[field]
    with pytest.raises(ValueError) as excinfo:
        RunConfig(**{field: bad}).validate()
    message = str(excinfo.value)
    _assert_names(message, field, bad)
    assert all(choice in message for choice in allowed)
    for choice in allowed:
        # gru reads images and text alike, so every dataset (text ones included) accepts it
        RunConfig(**{field: choice, **({"model": "gru"} if field == "dataset" else {})}).validate()


@pytest.mark.parametrize("field, value", [(f, v) for f, (bad, _) in SYNTAX.items() for v in bad], ids=lambda x: repr(x)[:20])
def test_a_transfer_field_out_of_its_syntax_is_one_line_naming_it(field, value):
    with pytest.raises(ValueError) as excinfo:
        RunConfig(**{field: value}).validate()
    message = str(excinfo.value)
    assert message.startswith(f"{field}=") and "\n" not in message and len(message) < 300, message


@pytest.mark.parametrize("field, value", [(f, v) for f, (_, good) in SYNTAX.items() for v in good])
def test_a_transfer_field_in_its_syntax_is_accepted(field, value):
    assert getattr(RunConfig(**{field: value}).validate(), field) == value


def test_classes_are_read_as_names_indices_and_ranges():
    from engine.transfer_spec import parse_classes

    names = ("T-shirt/top", "Trouser", "Pullover", "Dress")
    assert parse_classes("t-shirt/top, dress", names) == (0, 3)  # a name with a dash is a name, not a range
    assert parse_classes("3,1", names) == (1, 3)  # the dataset's order, whatever order they are typed in
    assert parse_classes("1-2", names) == (1, 2) and parse_classes("", names) == ()
    with pytest.raises(ValueError, match="choose at least 2 classes"):
        parse_classes("Trouser", names)
    with pytest.raises(ValueError, match=r"'Coat' is not a class of the dataset; its classes are T-shirt/top"):
        parse_classes("Coat,Dress", names)


def test_lora_on_a_recurrent_model_is_refused_in_one_line():
    with pytest.raises(ValueError, match="adapter=lora: a gru has no linear or convolution layer before its head"):
        RunConfig(model="gru", adapter="lora").validate()


@pytest.mark.parametrize("field", ["lr", "dropout", "clip_value", "min_delta"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_floats_are_rejected(field, value):
    with pytest.raises(ValueError, match=field):
        RunConfig(**{field: value}).validate()


def test_an_int_is_an_acceptable_float():
    assert RunConfig(lr=1).validate().lr == 1


def _unusual_config() -> RunConfig:
    """A config where every field differs from its default, with floats that are hard to print exactly."""
    return RunConfig(
        dataset="shapes", data_dir="/tmp/some data/ü", val_fraction=0.1 + 0.2, train_limit=123, batch_size=7,
        augment_rotate=12.5, augment_scale=0.15, augment_translate=1 / 3 * 0.3, augment_flip=True,
        model="resnet", hidden=33, depth=5, width=9, skip=False, activation="gelu", dropout=0.25,
        optimizer="adamw", lr=3.0000000000000004e-4, momentum=0.85, beta1=0.8, beta2=0.9876543210987654,
        weight_decay=1e-5, schedule="onecycle", warmup_steps=17, step_every=33, gamma=0.7, decay_steps=250,
        min_lr_ratio=0.05, clip="norm", clip_value=2.5, epochs=42, seed=2**31 - 1, early_stop=True,
        early_stop_metric="val_acc", patience=4, min_delta=1e-4, restore_best=False, ema=True, ema_decay=0.995,
        swa=True, swa_start=3, layer_stats_every=10, device="cpu", name='run "quoted" \\ name', group="race 1",
        embed_dim=48, bidirectional=True, text_negation=0.1 + 0.2, text_contrast=0.55, text_filler=7,
        vocab_size=1234, vocab_min_count=2, text_column="body ü", label_column="stars", text_level="char",
        num_cpus=2.5, num_gpus=0.25, init_from="0123abcd:epoch2", freeze="blocks.0.*", adapter="lora", lora_rank=3,
        lora_alpha=2.5, classes="circle, ring,cross", train_per_class=7,
        names_list="both", block_size=48, context=5, heads=3,
        sample_temperature=0.1 + 0.7,
    ).validate()


def test_round_trip_config_differs_from_default_in_every_field():
    config, default = _unusual_config(), RunConfig()
    assert all(getattr(config, f) != getattr(default, f) for f in FIELD_TYPES)


@pytest.mark.parametrize("codec", ["dict", "json", "toml"])
def test_round_trip_is_exact(codec):
    config = _unusual_config()
    encode, decode = {"dict": (RunConfig.to_dict, RunConfig.from_dict), "json": (RunConfig.to_json, RunConfig.from_json),
                      "toml": (RunConfig.to_toml, RunConfig.from_toml)}[codec]
    again = decode(encode(config))
    assert again == config
    for name, kind in FIELD_TYPES.items():  # same values and the same types (2.0 must not come back as 2)
        assert type(getattr(again, name)).__name__ == kind, name
    assert encode(again) == encode(config)


def test_toml_accepts_a_run_table_and_integers_for_floats():
    config = RunConfig.from_toml('[run]\nmodel = "mlp"\nlr = 1\nepochs = 2\n')
    assert (config.model, config.lr, config.epochs) == ("mlp", 1.0, 2)
    assert isinstance(config.lr, float)


@pytest.mark.parametrize("decode, text", [
    (RunConfig.from_dict, {"lr": 0.1, "learning_rate": 0.1}),
    (RunConfig.from_json, '{"lr": 0.1, "learning_rate": 0.1}'),
    (RunConfig.from_toml, "lr = 0.1\nlearning_rate = 0.1\n"),
    (RunConfig.from_toml, "[run]\nlearning_rate = 0.1\n"),
])
def test_unknown_keys_are_rejected(decode, text):
    with pytest.raises(ValueError, match="learning_rate"):
        decode(text)


def test_decoding_validates_values():
    with pytest.raises(ValueError, match="batch_size=0"):
        RunConfig.from_json('{"batch_size": 0}')
    with pytest.raises(ValueError, match="epochs"):
        RunConfig().with_updates(epochs="3")


def test_with_updates_changes_only_the_given_fields():
    config = RunConfig(model="mlp").with_updates(lr=0.5, seed=3)
    assert (config.model, config.lr, config.seed) == ("mlp", 0.5, 3)
    assert config.with_updates() == config


@pytest.mark.parametrize("text, expected", [
    ("lr=0.01", ("lr", 0.01)),
    (" lr = 1e-3 ", ("lr", 1e-3)),
    ("lr=1", ("lr", 1.0)),
    ("epochs=3", ("epochs", 3)),
    ("skip=false", ("skip", False)),
    ("ema=Yes", ("ema", True)),
    ("augment_flip=1", ("augment_flip", True)),
    ("model=mlp", ("model", "mlp")),
    ("name=a=b", ("name", "a=b")),
    ("data_dir=", ("data_dir", "")),
])
def test_parse_assignment_types_values(text, expected):
    key, value = parse_assignment(text)
    assert (key, value) == expected
    assert type(value) is type(expected[1])


@pytest.mark.parametrize("text, words", [
    ("learning_rate=0.1", ["learning_rate", "unknown"]),
    ("epochs=2.5", ["epochs", "'2.5'", "int"]),
    ("lr=fast", ["lr", "'fast'", "float"]),
    ("skip=maybe", ["skip", "'maybe'", "bool"]),
    ("lr", ["lr", "key=value"]),
])
def test_parse_assignment_rejects_bad_input(text, words):
    with pytest.raises(ValueError) as excinfo:
        parse_assignment(text)
    assert all(word in str(excinfo.value) for word in words), str(excinfo.value)


def test_display_name_is_generated_unless_given():
    assert RunConfig(model="mlp", optimizer="sgd", lr=0.1, seed=2).display_name() == "mlp-sgd-lr0.1-s2"
    assert RunConfig(name="mine").display_name() == "mine"
