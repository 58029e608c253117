"""Token attributions through the one explain() call: they match Captum called directly, Integrated Gradients
is complete on the embedding, methods that cannot apply say why, and on `sentiment` a trained GRU's
attributions find the tokens that decide the label (the ground-truth relevance)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from captum.attr import LayerIntegratedGradients
from text_helpers import fit

from engine.data.loading import load_dataset
from engine.explain.methods import NotApplicable, explain
from engine.explain.text import (TOKEN_METHODS, mean_agreement, token_agreement, token_deletion_curve)
from engine.text.datasets import TextOptions
from engine.text.models import build_text_model
from engine.text.vocab import PAD_ID

IDS = torch.tensor([[5, 9, 3, 7, 2, 0, 0], [4, 6, 8, 0, 0, 0, 0]])


def _untrained(name: str = "gru"):
    torch.manual_seed(0)
    return build_text_model(name, vocab_size=12, num_classes=3, embed_dim=8, hidden=8).eval()


@pytest.fixture(scope="module")
def trained():
    """A GRU trained on 2,000 sentiment reviews (5 epochs, ~4 s on one core; validation accuracy ~1.0)."""
    torch.manual_seed(0)
    split = load_dataset("sentiment", limit=2000, text_options=TextOptions())
    model = build_text_model("gru", vocab_size=split.info.size, num_classes=2, embed_dim=16, hidden=32)
    return fit(model, split, epochs=5), split


def test_integrated_gradients_equal_captum_called_directly():
    model = _untrained()
    ours = explain(model, IDS, 1, "integrated_gradients", n_steps=32)
    direct = LayerIntegratedGradients(model, model.embedding).attribute(
        IDS, baselines=torch.full_like(IDS, PAD_ID), target=1, n_steps=32).sum(-1)
    torch.testing.assert_close(ours, direct * (IDS != PAD_ID))
    assert ours.shape == IDS.shape and (ours[IDS == PAD_ID] == 0).all()


@pytest.mark.parametrize("name", ["gru", "textcnn", "bow"])
def test_integrated_gradients_are_complete_on_the_embedding(name):
    model = _untrained(name)
    scores = explain(model, IDS, 2, "integrated_gradients", n_steps=300)
    reference = copy.deepcopy(model)
    with torch.no_grad():
        reference.embedding.weight.zero_()  # every token embedded as the <pad> vector, same lengths
        change = model(IDS)[:, 2] - reference(IDS)[:, 2]
    torch.testing.assert_close(scores.sum(1), change, rtol=0.02, atol=2e-3)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_explain_finds_the_token_explainer_without_anyone_importing_it_first():
    # a fresh interpreter: only engine.explain.methods is imported, as the CLI and the pages do
    code = ("import sys, torch\n"
            "from engine.explain.methods import explain\n"
            "from engine.text.models import build_text_model\n"
            "assert 'engine.explain.text' not in sys.modules\n"
            "model = build_text_model('bow', vocab_size=12, num_classes=3, embed_dim=8, hidden=8).eval()\n"
            "scores = explain(model, torch.tensor([[5, 9, 3, 0]]), 1, 'saliency')\n"
            "print(tuple(scores.shape), float(scores[0, 3]))")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent,
                          capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["(1,", "4)", "0.0"]  # one score per token, 0 on padding


def test_methods_that_do_not_apply_say_why():
    with pytest.raises(NotApplicable, match="recurrent"):
        explain(_untrained("gru"), IDS, 0, "deeplift")
    with pytest.raises(NotApplicable, match="does not apply to text"):
        explain(_untrained("gru"), IDS, 0, "grad_cam")
    assert explain(_untrained("bow"), IDS, 0, "deeplift").shape == IDS.shape


def test_every_method_gives_one_score_per_token_and_none_on_padding():
    model = _untrained("lstm")
    for method in TOKEN_METHODS:
        if method == "deeplift":
            continue
        scores = explain(model, IDS[1], 0, method)
        assert scores.shape == IDS[1].shape and (scores[3:] == 0).all() and scores[:3].abs().sum() > 0, method


def test_a_trained_grus_attributions_find_the_deciding_tokens(trained):
    model, split = trained
    ids, labels, relevance = split.val_x[:100], split.val_y[:100], split.text.val_relevance[:100]
    scores = explain(model, ids, labels, "integrated_gradients")
    agreement = mean_agreement([token_agreement(scores[i], relevance[i]) for i in range(100)])
    # measured 0.90 top-2 hit, 0.64 pointing game, 0.55 precision@k (random top-2 on ~12 tokens: ~0.2 hit)
    assert agreement.top2_hit >= 0.8, agreement
    assert agreement.pointing >= 0.5, agreement
    occlusion = mean_agreement([token_agreement(s, r) for s, r in
                                zip(explain(model, ids, labels, "occlusion"), relevance)])
    assert occlusion.top2_hit >= 0.8, occlusion


def test_deleting_the_top_tokens_first_hurts_more_than_a_random_order(trained):
    model, split = trained
    guided, random = [], []
    for i in range(20):
        target = int(split.val_y[i])
        scores = explain(model, split.val_x[i], target, "occlusion")
        curve = token_deletion_curve(model, split.val_x[i], scores, target)
        assert curve.fractions[0] == 0 and curve.fractions[-1] == 1
        guided.append(curve.area)
        random.append(curve.random_area)
    assert sum(guided) < sum(random)
