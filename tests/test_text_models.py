"""Text models: padding never changes a prediction, every model trains in the same loop, and order matters
(a bag of words cannot tell "good but bad" from "bad but good"; a GRU learns the difference)."""

from __future__ import annotations

import pytest
import torch
from text_helpers import fit

from engine.config import RunConfig
from engine.data.loading import load_dataset
from engine.models import count_parameters, model_from_config
from engine.text.datasets import TextOptions
from engine.text.models import build_text_model
from engine.text.vocab import PAD_ID, Vocab
from engine.train import MemorySink, train

MODELS = ["bow", "textcnn", "rnn", "gru", "lstm"]
WORDS = "the plot was not good but cast great bad dull".split()


@pytest.mark.parametrize("name", MODELS + ["bigru"])
def test_padding_never_changes_a_prediction(name):
    torch.manual_seed(0)
    kind = "gru" if name == "bigru" else name
    model = build_text_model(kind, vocab_size=20, num_classes=3, embed_dim=8, hidden=6, depth=2,
                             bidirectional=name == "bigru").eval()
    short = torch.tensor([[5, 7, 3]])
    batch = torch.full((3, 12), PAD_ID)  # padded to a longer sentence, plus extra padding beyond every sentence
    batch[0, :3] = short[0]
    batch[1, :10] = torch.arange(2, 12)
    batch[2, :1] = 4
    with torch.no_grad():
        alone, together = model(short), model(batch)
        padded_alone = model(torch.cat([short, torch.zeros(1, 30, dtype=torch.int64)], 1))
    torch.testing.assert_close(together[0:1], alone, rtol=0, atol=1e-5)
    torch.testing.assert_close(padded_alone, alone, rtol=0, atol=1e-5)


def test_bag_of_words_is_blind_to_order_and_a_gru_is_not():
    vocab = Vocab(["<pad>", "<unk>", *WORDS])
    a = vocab.encode([["the", "plot", "was", "good", "but", "the", "cast", "was", "bad"]])
    b = vocab.encode([["the", "plot", "was", "bad", "but", "the", "cast", "was", "good"]])
    torch.manual_seed(0)
    bow = build_text_model("bow", vocab_size=len(vocab), num_classes=2).eval()
    gru = build_text_model("gru", vocab_size=len(vocab), num_classes=2).eval()
    with torch.no_grad():
        # whatever its weights, the bag of words gives the same logits, so it is right on at most half such pairs
        torch.testing.assert_close(bow(a), bow(b))
        assert not torch.allclose(gru(a), gru(b))


@pytest.mark.parametrize("name", MODELS)
def test_every_text_model_trains_in_the_same_loop(name):
    split = load_dataset("sentiment", limit=256, text_options=TextOptions())
    config = RunConfig(dataset="sentiment", model=name, epochs=1, batch_size=64, hidden=16, embed_dim=8,
                       train_limit=256, clip="norm", layer_stats_every=2)
    sink = MemorySink()
    result = train(config, sink, split=split)
    assert result.status == "completed" and len(sink.series("loss")) == 4
    assert all(v > 0 for v in sink.series("grad_norm"))
    assert sink.series("val_acc_hard") and sink.series("val_acc_easy")  # the per-subset accuracy
    assert sink.artifacts["model_summary"]["parameters"] == count_parameters(
        model_from_config(config, 0, split.info.size, 2))
    report = next(v for k, v in sink.artifacts.items() if k.startswith("report"))
    assert report["n"] == len(split.val_y)


def test_a_gru_learns_contrast_that_a_bag_of_words_cannot():
    # every review is "X but Y" (the first clause says the opposite 80% of the time), no filler: short and fast
    options = TextOptions(negation=0.0, contrast=1.0, filler=0)
    split = load_dataset("sentiment", limit=1200, text_options=options)
    scores = {}
    for name in ("bow", "gru"):
        torch.manual_seed(0)
        model = fit(build_text_model(name, vocab_size=split.info.size, num_classes=2, embed_dim=16, hidden=32),
                    split, epochs=4)
        with torch.no_grad():
            scores[name] = (model(split.val_x).argmax(1) == split.val_y).float().mean().item()
    assert scores["gru"] >= 0.95, scores
    assert scores["bow"] <= 0.85, scores


def test_image_augmentation_fields_leave_token_ids_alone():
    # a form keeps hidden values: a text run may carry a rotation set earlier for images
    split = load_dataset("sentiment", limit=64, text_options=TextOptions())
    config = RunConfig(dataset="sentiment", model="bow", epochs=1, batch_size=32, train_limit=64, augment_rotate=30.0,
                       augment_flip=True, layer_stats_every=0)
    assert train(config, MemorySink(), split=split).status == "completed"
