"""Character-level language models: the corpora (names from the `names` package, reviews, a user's text file and
its bad inputs), the models (causal, right shapes), sampling (temperature, prefix, fixed seed), the task seam
(a classification run's rows unchanged by it), attention maps (causal) and context attributions; on a small budget
a GRU and a transformer beat the bigram table on `names`, writing mostly new strings of a-z; `trainlens sample`.
"""

from __future__ import annotations

import json
import math
import os
import string
from pathlib import Path

import pytest
import torch

from engine.chars.corpus import check_text_bytes, read_names
from engine.chars.data import BOUNDARY_ID, IGNORE, CharOptions, load_char_dataset
from engine.chars.models import build_char_model
from engine.chars.sampling import check_temperature, sample
from engine.config import RunConfig
from engine.data.loading import load_run_split
from engine.datasets import TEXT_FILE_MAX_BYTES, DatasetUnavailable
from engine.train import MemorySink, train

LETTERS = set(string.ascii_lowercase)
REFERENCE = Path(__file__).with_name("classification_reference_rows.json")


def config(**changes) -> RunConfig:
    return RunConfig.from_dict({**RunConfig().to_dict(), "dataset": "names", "model": "gru", "device": "cpu",
                                "layer_stats_every": 0, **changes})


@pytest.fixture(scope="module")
def names_split():
    return load_run_split(config())


# ---- corpora -------------------------------------------------------------------------------------------------
def test_names_are_real_lower_case_census_names_each_once():
    first = read_names("first")
    assert len(first) == len(set(first)) > 5000
    assert {"mary", "john", "emma"} <= set(first)
    assert all(set(name) <= LETTERS for name in first)
    assert len(read_names("last")) > 80000 and "smith" in read_names("last")


def test_the_names_split_is_reproducible_disjoint_and_padded_with_next_character_labels(names_split):
    again = load_char_dataset("names", seed=0, val_fraction=0.2, data_dir=None, limit=0, options=CharOptions())
    assert torch.equal(again.train_x, names_split.train_x) and torch.equal(again.val_y, names_split.val_y)
    chars = names_split.chars
    assert not chars.train_docs & chars.val_docs and len(chars.val_docs) == round(0.2 * (len(chars.train_docs) +
                                                                                        len(chars.val_docs)))
    assert names_split.info.size == 27 and names_split.info.classes[1:] == tuple(string.ascii_lowercase)
    x, y = names_split.train_x[0], names_split.train_y[0]
    name = chars.vocab.decode(x)
    assert x[0] == BOUNDARY_ID and name in chars.train_docs  # boundary + name, padded
    labelled = y[y != IGNORE]
    assert chars.vocab.decode(labelled[:-1]) == name and labelled[-1] == BOUNDARY_ID  # name + its end
    assert torch.equal(y[:len(name)], x[1:len(name) + 1])  # each position's label is the next character
    base = chars.baselines
    assert base["uniform"] == pytest.approx(math.log(27)) and base["bigram"] < base["unigram"] < base["uniform"]


def test_reviews_are_packed_into_chunks_of_block_size():
    split = load_run_split(config(dataset="reviews", block_size=16, train_limit=50))
    assert split.train_x.shape == (50, 16) and split.val_x.shape[1] == 16
    assert torch.equal(split.train_x[0, 1:], split.train_y[0, :-1])  # packed: one stream, shifted by one


def test_a_text_file_trains_and_its_vocabulary_comes_from_the_training_chunks(trainlens_home):
    folder = trainlens_home / "data"
    folder.mkdir(parents=True)
    (folder / "poem.txt").write_text("The quick brown fox jumps over the lazy dog. " * 40, encoding="utf-8")
    split = load_run_split(config(dataset="text_file", data_dir="poem.txt", block_size=8))
    assert set(split.chars.vocab.chars) <= set("The quick brown fox jumps over the lazy dog.")
    assert len(split.train_x) + len(split.val_x) == (45 * 40 + 1) // 8


@pytest.mark.parametrize("data, message", [
    (b"", "is empty"), (b"   \n\n", "is empty"), (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
    (b"caf\xe9 au lait", "not UTF-8"), (bytes(range(1, 32)) * 100, "looks binary"),
])
def test_bad_text_files_are_refused_with_one_line(data, message):
    with pytest.raises(ValueError, match=message) as error:
        check_text_bytes(data)
    assert "\n" not in str(error.value)


def test_a_text_file_over_the_cap_is_refused_before_it_is_read(trainlens_home):
    folder = trainlens_home / "data"
    folder.mkdir(parents=True)
    with open(folder / "big.txt", "wb") as out:
        out.truncate(TEXT_FILE_MAX_BYTES + 1)
    with pytest.raises(DatasetUnavailable, match="at most 2,000,000"):
        load_run_split(config(dataset="text_file", data_dir="big.txt"))
    with pytest.raises(DatasetUnavailable, match="upload it"):
        load_run_split(config(dataset="text_file"))
    os.mkfifo(folder / "pipe.txt")  # opening a pipe waits for a writer: refused without reading it
    with pytest.raises(DatasetUnavailable, match="not a regular file"):
        load_run_split(config(dataset="text_file", data_dir="pipe.txt"))


def test_config_refuses_models_of_another_kind_of_data():
    with pytest.raises(ValueError, match="character dataset; its models are bigram"):
        config(model="convnet")
    with pytest.raises(ValueError, match="predicts characters"):
        RunConfig.from_dict({"dataset": "mnist5k", "model": "transformer"})
    with pytest.raises(ValueError, match="heads=5: embed_dim=64"):
        config(model="transformer", heads=5)


# ---- models and sampling -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["bigram", "mlp", "rnn", "gru", "lstm", "transformer"])
def test_every_model_is_causal_and_predicts_every_position(name):
    torch.manual_seed(0)
    model = build_char_model(name, vocab_size=11, embed_dim=8, hidden=8, depth=2, context=3, block_size=12, heads=2)
    ids = torch.randint(0, 11, (3, 10))
    changed = ids.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % 11  # later characters change...
    logits = model.eval()(ids)
    assert logits.shape == (3, 10, 11)
    assert torch.allclose(logits[:, :6], model(changed)[:, :6], atol=1e-6)  # ...earlier predictions do not


def test_sampling_is_seeded_starts_with_the_prefix_and_refuses_bad_input_in_one_line(names_split):
    torch.manual_seed(0)
    vocab = names_split.chars.vocab
    model = build_char_model("gru", vocab_size=len(vocab), embed_dim=8, hidden=8)
    first = sample(model, vocab, 5, temperature=0.8, prefix="em", max_chars=12, seed=3)
    assert first == sample(model, vocab, 5, temperature=0.8, prefix="em", max_chars=12, seed=3)
    assert all(s.startswith("em") and len(s) <= 12 and set(s) <= LETTERS for s in first)
    state = torch.get_rng_state()
    sample(model, vocab, 5, seed=4)
    assert torch.equal(state, torch.get_rng_state())  # recording samples never moves a run's random stream
    for bad, message in [(0, "must be above 0"), (-1, "must be above 0"), (float("nan"), "must be above 0"),
                         (1e6, "at most 10")]:
        with pytest.raises(ValueError, match=message) as error:
            check_temperature(bad)
        assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=r"'E', '7' are not in the run's vocabulary of 26 characters \(abc"):
        sample(model, vocab, 2, prefix="E7")


def test_attention_maps_have_one_map_per_layer_and_head_and_are_causal(names_split):
    from engine.explain.chars import attention_maps

    torch.manual_seed(0)
    model = build_char_model("transformer", vocab_size=27, embed_dim=16, depth=3, heads=4, block_size=32)
    maps = attention_maps(model, names_split.chars.vocab, "emma")
    assert maps["tokens"] == ["·", "e", "m", "m", "a"]
    weights = torch.from_numpy(maps["maps"])
    assert weights.shape == (3, 4, 5, 5)
    assert torch.allclose(weights.sum(-1), torch.ones(3, 4, 5))  # each position's weights add up to 1
    assert (weights.triu(1) == 0).all()  # no weight on a later position
    assert all(not block.attn.keep_attention and block.attn.attention is None for block in model.blocks)
    with pytest.raises(ValueError, match="only a transformer"):
        attention_maps(build_char_model("gru", vocab_size=27), names_split.chars.vocab, "emma")


# ---- the task seam -------------------------------------------------------------------------------------------
def test_a_classification_run_logs_exactly_the_rows_it_logged_before_the_task_seam():
    # recorded before engine/tasks.py existed (1 thread): every row but the wall-clock throughput
    reference = json.loads(REFERENCE.read_text())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for label, changes in (("mlp", dict(dataset="mnist5k", model="mlp", train_limit=256, epochs=2,
                                            layer_stats_every=3)),
                               ("gru_text", dict(dataset="sentiment", model="gru", train_limit=256, epochs=2,
                                                 embed_dim=16, hidden=16, depth=1))):
            sink = MemorySink()
            train(RunConfig.from_dict({**RunConfig().to_dict(), **changes, "device": "cpu"}), sink)
            rows = [list(r) for r in sink.rows if r[2] != "examples_per_s"]
            assert [r[:3] for r in rows] == [r[:3] for r in reference[label]]
            assert [r[3] for r in rows] == pytest.approx([r[3] for r in reference[label]], rel=1e-6, abs=1e-9)
    finally:
        torch.set_num_threads(threads)


def test_a_language_model_run_logs_bits_per_character_and_records_samples_from_step_0():
    sink = MemorySink()
    result = train(config(model="bigram", lr=0.1, train_limit=300, epochs=2, batch_size=50), sink)
    assert result.status == "completed" and result.step == 12
    loss, bpc = sink.series("val_loss"), sink.series("val_bpc")
    assert bpc == pytest.approx([v / math.log(2) for v in loss]) and loss[1] < loss[0] < math.log(27)
    assert len(sink.series("val_new")) == 2 and len(sink.series("chars_per_s")) == 2
    assert sorted(k for k in sink.artifacts if k.startswith("samples/")) == ["samples/0", "samples/12", "samples/6"]
    first = sink.artifacts["samples/0"]
    assert first["step"] == 0 and len(first["samples"]) == 20 and {"new", "real"} <= set(first)
    assert set(sink.artifacts["lm_baselines"]) >= {"uniform", "unigram", "bigram", "vocab"}
    checks = {c["name"]: c for c in sink.artifacts["recipe_checks"]}
    assert checks["loss_at_init"]["status"] == "pass"  # ln 27 at init: the table starts uniform
    assert not any(k.startswith("report/") for k in sink.artifacts)  # no classification report for a writer


# ---- trained on a small budget (a few seconds each) -----------------------------------------------------------
@pytest.fixture(scope="module")
def trained():
    """bigram, GRU and transformer trained on names on the same small budget: {model: (sink, trained model)}."""
    from engine.checkpoints import load_run_model

    budget = dict(epochs=2, batch_size=32, lr=0.01, embed_dim=32, depth=1)
    settings = {"bigram": dict(lr=0.1), "gru": dict(hidden=48, embed_dim=24), "transformer": dict(heads=4)}
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        import tempfile

        mp.setenv("TRAINLENS_HOME", tempfile.mkdtemp(prefix="char_lm_"))
        for name, changes in settings.items():
            sink = MemorySink()
            train(config(model=name, **{**budget, **changes}), sink, run_id=f"chars_{name}")
            out[name] = (sink, load_run_model(f"chars_{name}", "last")[0])
    return out


@pytest.mark.slow
def test_gru_and_transformer_beat_the_bigram_table_and_write_new_names(trained):
    final = {name: sink.series("val_loss")[-1] for name, (sink, _) in trained.items()}
    assert final["gru"] < final["bigram"] - 0.15 and final["transformer"] < final["bigram"] - 0.1, final
    for name in ("gru", "transformer"):
        sink = trained[name][0]
        last = sink.artifacts[max((k for k in sink.artifacts if k.startswith("samples/")),
                                  key=lambda k: int(k.split("/")[1]))]
        assert all(set(s) <= LETTERS for s in last["samples"])
        assert last["new"] >= 0.5 and sink.series("val_new")[-1] == last["new"]


@pytest.mark.slow
def test_context_attributions_put_most_weight_on_the_last_characters(trained, names_split):
    from engine.explain.chars import context_attributions, recency_share

    vocab = names_split.chars.vocab
    names = sorted(n for n in names_split.chars.val_docs if len(n) >= 7)[:24]
    ids = torch.tensor([[BOUNDARY_ID] + vocab.encode(n[:6]) for n in names])  # 7 positions: boundary + 6 letters
    targets = torch.tensor([vocab.index[n[6]] for n in names])
    uniform = 3 / ids.shape[1]
    gru = recency_share(context_attributions(trained["gru"][1], ids, targets))
    assert gru > 0.6 and gru > uniform + 0.15
    bigram = context_attributions(trained["bigram"][1], ids, targets)
    assert recency_share(bigram, last=1) == pytest.approx(1.0)  # a bigram reads the last character only


def test_trainlens_sample_json_returns_samples_of_a_checkpoint_and_refuses_bad_input(trainlens_home, capsys):
    from engine.cli import main
    from engine.runs.store import Store

    store = Store()
    char_config = config(model="bigram", lr=0.1, train_limit=200, epochs=1, batch_size=100)
    run_id = store.create_run(char_config, name="names bigram")
    train(char_config, MemorySink(), run_id=run_id)
    assert main(["sample", run_id[:6], "--json", "--n", "5", "--prefix", "ma", "--temperature", "0.5"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["run_id"] == run_id and len(out["samples"]) == 5 and out["epoch"] == 0
    assert all(s.startswith("ma") and set(s) <= LETTERS for s in out["samples"])
    assert {"new", "real", "temperature", "prefix"} <= set(out)
    classifier = store.create_run(RunConfig.from_dict({"dataset": "mnist5k", "model": "mlp"}), name="digits")
    for args, message in [(["--prefix", "Ma"], "'M' is not in the run's vocabulary"),
                          (["--temperature", "0"], "must be above 0"), (["--temperature", "1e9"], "at most 10"),
                          (["--n", "0"], "give 1 to 1000")]:
        assert main(["sample", run_id, *args]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert main(["sample", classifier]) == 2
    assert "classifies mnist5k: only a character-level run" in capsys.readouterr().err


def test_a_language_model_resumed_after_its_first_epoch_writes_and_logs_what_an_uninterrupted_one_does():
    from engine.checkpoints import resolve

    run = config(model="transformer", embed_dim=16, depth=1, heads=2, dropout=0.2, train_limit=256, epochs=2,
                 batch_size=64)
    straight = MemorySink()
    train(run, straight, run_id="lm_straight")
    first = MemorySink()
    stopped = train(run, first, run_id="lm_resumed", should_stop=lambda: len(first.series("loss")) >= 4)
    assert stopped.status == "cancelled" and stopped.step == 4
    resumed = MemorySink()
    assert train(run, resumed, run_id="lm_resumed", resume_from=str(resolve("lm_resumed", "last"))).step == 8
    timing = ("examples_per_s", "chars_per_s")
    again = [(s, k, v) for s, e, k, v in resumed.rows if e == 1 and k not in timing]
    expected = [(s, k, v) for s, e, k, v in straight.rows if e == 1 and k not in timing]
    assert [r[:2] for r in again] == [r[:2] for r in expected]
    assert [r[2] for r in again] == pytest.approx([r[2] for r in expected], abs=1e-6)
    assert resumed.artifacts["samples/8"]["samples"] == straight.artifacts["samples/8"]["samples"]
