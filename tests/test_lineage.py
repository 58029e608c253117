"""A run started from another, at submission (engine.runs.lineage) and in the queue: the source is resolved to its
full id and kept on the run; a source that cannot start it is refused in one line with nothing queued (the CLI says
it on one line and exits 2); a run from a source still queued or training waits for it, and fails with the reason
when its source ends without finishing; `trainlens show` names the source and the parameter counts.
"""

from __future__ import annotations

import pytest

from engine.cli import main
from engine.config import RunConfig
from engine.records import RunStatus
from engine.runs.store import Store
from engine.train import MemorySink, train

BASE = dict(dataset="mnist5k", model="convnet", epochs=1, batch_size=64, train_limit=300, layer_stats_every=0)


def config(**changes) -> RunConfig:
    return RunConfig(**{**BASE, **changes}).validate()


@pytest.fixture
def store(trainlens_home) -> Store:
    return Store()


def finished(store: Store, cfg: RunConfig, name: str) -> str:
    """A run queued, trained in this process as a worker would, and completed."""
    run_id, sink = store.create_run(cfg, name=name), MemorySink()
    train(store.get_run(run_id)["config"], sink, run_id=run_id)  # init_from resolved, as a worker gets it
    for artifact, value in sink.artifacts.items():
        store.put_artifact(run_id, artifact, value)
    store.update_status(run_id, RunStatus.COMPLETED)
    return run_id


@pytest.fixture
def digits(store) -> str:
    return finished(store, config(classes="0-4"), "digits 0-4")


def test_the_source_is_resolved_to_its_full_id_and_kept_on_the_run(store, digits):
    run_id = store.create_run(config(classes="5-9", init_from=digits[:5], freeze="backbone"))
    assert store.get_run(run_id)["config"].init_from == f"{digits}:best"
    again = store.create_run(config(classes="5-9", init_from=f"{digits[:6]}:epoch1"))
    assert store.get_run(again)["config"].init_from == f"{digits}:epoch1"
    assert set(store.list_runs()["cfg.init_from"]) == {"", f"{digits}:best", f"{digits}:epoch1"}


def _refused(store, cfg, words: str) -> None:
    before = len(store.list_runs())
    with pytest.raises(ValueError) as caught:  # SourceRefused, or the data's DatasetUnavailable, or the config's
        store.create_run(cfg)
    message = str(caught.value)
    assert words in message, message
    assert "\n" not in message and len(message) < 400
    assert len(store.list_runs()) == before  # nothing queued


def test_a_missing_run_is_refused_in_one_line(store):
    _refused(store, config(init_from="0123456789ab"), "init_from=0123456789ab: no run has the id '0123456789ab'")


def test_a_run_of_another_architecture_is_refused_naming_the_weight_and_its_shapes(store, digits):
    _refused(store, config(model="mlp", init_from=digits),
             "trained a convnet; this run's model is mlp: set model=convnet (and its sizes) to start from it")
    mlp = finished(store, config(model="mlp", hidden=16, depth=1), "small mlp")
    _refused(store, config(model="mlp", hidden=32, depth=1, init_from=mlp),
             f"init_from={mlp}: net.1.weight is [16, 784] in run small mlp ({mlp}) and [32, 784] here; the "
             "architectures differ (hidden 16 vs 32)")


def test_a_run_of_a_dataset_with_other_images_is_refused(store, digits):
    _refused(store, config(dataset="shapes", init_from=digits),
             f"run digits 0-4 ({digits}) read 1x28x28 images (mnist5k); this run reads 3x32x32 (shapes)")


def test_a_text_run_for_an_image_model_is_refused(store):
    text = finished(store, config(dataset="sentiment", model="gru", hidden=8, embed_dim=8, train_limit=200,
                                  classes=""), "a text gru")
    _refused(store, config(model="gru", hidden=8, init_from=text),
             f"run a text gru ({text}) is a text run (sentiment); this is an image run (mnist5k): a model starts "
             "only from a run of the same kind")


CHARS = dict(dataset="names", model="gru", embed_dim=16, hidden=16, depth=1, train_limit=600, lr=0.01, classes="")


def test_a_character_model_fine_tuned_on_the_same_vocabulary_keeps_its_head(store):
    import torch

    from engine.checkpoints import initial_path, load_checkpoint
    from engine.transfer import source_checkpoint_path

    source = finished(store, config(**CHARS), "names gru")
    target = store.create_run(config(**CHARS, init_from=source), name="fine-tuned")
    resolved = store.get_run(target)["config"]  # init_from=<source>:best, as a worker gets it
    sink = MemorySink()
    train(resolved, sink, run_id=target)
    assert sink.artifacts["model_summary"]["new_head"] is False  # its next-character guesses are the source's
    start = load_checkpoint(initial_path(target)).model
    theirs = load_checkpoint(source_checkpoint_path(resolved.init_from)).model
    assert start.keys() == theirs.keys() and all(torch.equal(start[key], theirs[key]) for key in start)
    first_loss = next(value for step, epoch, key, value in sink.rows if key == "loss")
    assert first_loss < 3.0  # a fresh head would start near ln(vocabulary) = 3.3 nats


def test_a_character_model_from_another_corpus_is_refused_naming_what_differs(store):
    source = finished(store, config(**CHARS), "names gru")
    _refused(store, config(**{**CHARS, "dataset": "reviews"}, init_from=source),
             "a character model starts only from a run with the same vocabulary; dataset differs ('names' in run "
             f"names gru ({source}), 'reviews' here)")


def test_a_run_that_did_not_finish_is_refused(store, digits):
    cfg = config()
    failed = store.create_run(cfg, name="broken")
    store.update_status(failed, RunStatus.FAILED, "boom")
    _refused(store, config(init_from=failed), f"run broken ({failed}) ended failed; start from a run that completed")


def test_a_checkpoint_that_does_not_exist_is_refused(store, digits):
    _refused(store, config(init_from=f"{digits}:epoch4"), f"init_from={digits}:epoch4: run {digits} has no checkpoint "
                                                          "after epoch 4; after epochs: 1 (0: before training)")


def test_more_examples_per_class_than_the_data_has_is_refused(store):
    _refused(store, config(classes="5-9", train_per_class=900, train_limit=0),
             "train_per_class=900: class '5' has only")


def test_a_freeze_pattern_that_matches_nothing_is_refused(store):
    _refused(store, config(freeze="features.*"), "freeze='features.*': 'features.*' matches no parameter of this "
                                                 "convnet; its parameters are conv1.weight")


@pytest.mark.parametrize("assignment, words", [
    ("init_from=0123456789ab", "no run has the id"),
    ("classes=5-3", "classes='5-3': the range 5-3 is empty"),
    ("classes=4", "choose at least 2 classes"),
    ("train_per_class=5000", "train_per_class=5000: class"),
])
def test_the_cli_refuses_in_one_line_with_nothing_queued(store, capsys, assignment, words):
    code = main(["train", "--set", "train_limit=0", "--set", assignment])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and words in err and err.count("\n") == 1, err
    assert store.list_runs().empty


def test_a_run_from_a_queued_source_waits_for_it_then_starts(store):
    source = store.create_run(config(classes="0-4"), name="pretrain")
    waiting = store.create_run(config(classes="5-9", init_from=source), name="fine-tune")
    assert store.get_run(waiting)["config"].init_from == f"{source}:best"
    assert store.claim_next("w1", "cpu")["run_id"] == source
    assert store.claim_next("w2", "cpu") is None  # the fine-tuning run waits for its source
    run = store.list_runs().set_index("run_id").loc[waiting]
    assert store.waiting_reason(run.to_dict() | {"run_id": waiting}) == (
        "It starts from run pretrain, which is running: it starts when that run finishes.")
    store.update_status(source, RunStatus.COMPLETED)
    assert store.claim_next("w2", "cpu")["run_id"] == waiting


def test_a_run_whose_source_ended_without_finishing_fails_with_the_reason(store):
    source = store.create_run(config(classes="0-4"), name="pretrain")
    waiting = store.create_run(config(classes="5-9", init_from=source), name="fine-tune")
    later = store.create_run(config(), name="unrelated")
    store.request_cancel(source)
    assert store.claim_next("w1", "cpu")["run_id"] == later
    run = store.get_run(waiting)
    assert run["status"] == RunStatus.FAILED
    assert run["error"] == ("the run it starts from, pretrain, ended cancelled: there are no finished weights to "
                            "start from")


def test_show_names_the_source_and_the_parameter_counts(store, digits, capsys):
    cfg = config(classes="5-9", init_from=digits, adapter="lora", lora_rank=2)
    run_id = finished(store, cfg, "lora")
    assert main(["show", run_id]) == 0
    out = capsys.readouterr().out
    assert f"from: digits 0-4 ({digits}, best weights)" in out
    assert "parameters: 45,555: 1,979 trainable, 43,576 frozen (1,554 in adapters)" in out, out


def test_a_race_over_freezing_or_adapters_queues_each_arm_from_the_same_source(store, digits):
    from engine.race import expand_race, parse_values

    base = config(classes="5-9", init_from=digits)
    arms = expand_race(base, optimizers=["adam"], field="freeze", values=parse_values("freeze", "none, backbone, "
                                                                                      "all_but_head"), seeds=1)
    arms += expand_race(base, optimizers=["adam"], field="adapter", values=parse_values("adapter", "lora"), seeds=1)
    ids = [store.create_run(arm, name=arm.name or None, group="race") for arm in arms]
    runs = store.list_runs(group="race").set_index("run_id").loc[ids]
    assert runs["cfg.init_from"].tolist() == [f"{digits}:best"] * 4
    assert runs["cfg.freeze"].tolist() == ["none", "backbone", "all_but_head", "none"]
    assert runs["cfg.adapter"].tolist() == ["none", "none", "none", "lora"]
