"""The Explain page for text runs: type a sentence (or pick a validation one, misclassified first), see the
prediction and each method's token attributions as the sentence shaded token by token, with their quality.

`app/explain/subject.py` hands a run over here when its dataset is text. Every token is escaped before it is
drawn (app/charts/text_tokens.py); tables and captions show users' text through st.dataframe and escaped markdown.
Quality: on `sentiment`, agreement with the ground-truth deciding tokens (precision of the top-k, pointing
game, top-2 hit); on any sentence, the deletion curve (target probability as tokens become <unk>, most
important first) against a random order.
"""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st
import torch

from app.charts.text import escape_md
from app.charts.text_tokens import colour_key, deletion_figure, token_spans
from app.explain.choices import class_to_explain, kept, remember
from app.ui.presentation import plotly_chart
from engine.checkpoints import load_checkpoint, load_run_model
from engine.datasets import dataset_info
from engine.explain.methods import NotApplicable, explain
from engine.explain.text import (TOKEN_METHODS, mean_agreement, predict_tokens, token_agreement,
                                 token_deletion_curve, why_not_text)
from engine.text.vocab import UNK_ID, detokenize, tokenize

DEFAULT_SENTENCE = "the acting was not good but the plot was great"
DEFAULT_METHODS = ["integrated_gradients", "occlusion"]
MAX_CHARS = 2000
SCORED_SENTENCES = 100  # validation sentences for the method-level agreement table


@st.cache_data(max_entries=64, show_spinner=False)
def checkpoint_is_text(path: str, stamp: int) -> bool:
    """Whether a checkpoint belongs to a text run (`stamp`, the file's mtime, keys the cache)."""
    return dataset_info(load_checkpoint(path).config.dataset).kind == "text"


@st.cache_resource(max_entries=4, show_spinner="Loading the checkpoint and the vocabulary...")
def text_subject(run_id: str, which: str, stamp: int):
    from engine.data.loading import cached_run_split

    model, config, info, ckpt = load_run_model(run_id, int(which) if which.isdigit() else which)
    return model, config, info, ckpt.epoch, cached_run_split(config, download=False)


@st.cache_data(max_entries=8, show_spinner="Finding the misclassified validation sentences...")
def _validation_order(key: str, _model, _split) -> tuple[list[int], int]:
    """Validation indices, misclassified first (most confident mistakes first); and how many are wrong."""
    probs = torch.cat([predict_tokens(_model, _split.val_x[i:i + 512]) for i in range(0, len(_split.val_x), 512)])
    confidence, predicted = probs.max(1)
    wrong = (predicted != _split.val_y).nonzero().view(-1)
    wrong = wrong[confidence[wrong].argsort(descending=True)].tolist()
    right = (predicted == _split.val_y).nonzero().view(-1).tolist()
    return wrong + right, len(wrong)


@st.cache_data(max_entries=16, show_spinner="Scoring each method on validation sentences...")
def _method_agreement(key: str, methods: tuple[str, ...], _model, _split) -> pd.DataFrame:
    ids, labels = _split.val_x[:SCORED_SENTENCES], _split.val_y[:SCORED_SENTENCES]
    rows = []
    for method in methods:
        scores = explain(_model, ids, labels, method)
        agreement = mean_agreement([token_agreement(scores[i], _split.text.val_relevance[i]) for i in range(len(ids))])
        rows.append({"method": TOKEN_METHODS[method].title, "precision@k": agreement.precision_at_k,
                     "pointing game": agreement.pointing, "top-2 hit": agreement.top2_hit})
    return pd.DataFrame(rows)


def unknown_note(words: list[str]) -> str:
    """The caption under the prediction naming the words the model does not know (each quoted: a comma among them
    reads as a comma, not as the list's own)."""
    shown = ", ".join(f"“{word}”" for word in dict.fromkeys(words[:20]))
    count = len(dict.fromkeys(words))
    return escape_md(f"{count} word{'s' if count > 1 else ''} not in the vocabulary, read as <unk> (marked ? on the "
                     f"sentence): {shown}")


def text_explain_section(run_id: str, which: str, stamp: int) -> None:
    try:
        model, config, info, epoch, split = text_subject(run_id, which, stamp)
    except (OSError, RuntimeError, ValueError) as exc:  # unreadable checkpoint or data no longer there
        st.error(f"This text run could not be loaded: {escape_md(exc)}")
        return
    vocab, classes = split.text.vocab, info.classes
    st.caption(escape_md(f"{config.model} on {config.dataset} ({len(vocab):,} words in the vocabulary), "
                         f"epoch {epoch + 1}"))
    source = st.radio("Text", ["Type a sentence", "Validation sentence", "Misclassified"], horizontal=True,
                      key="text_explain_source")
    relevant = None
    if source == "Type a sentence":
        sentence = st.text_area("Sentence", DEFAULT_SENTENCE, max_chars=MAX_CHARS, key="text_explain_sentence",
                                help="Any text: it is split into lowercase words and punctuation, as in training.")
        tokens = tokenize(sentence, config.text_level)
        true_label = None
    else:
        order, wrong = _validation_order(f"{run_id}:{which}:{stamp}", model, split)
        candidates = order[:wrong] if source == "Misclassified" else order
        if not candidates:
            st.success("The model gets every validation sentence right.")
            return
        index = st.selectbox(f"{len(candidates):,} validation sentences" +
                             (" (most confident mistakes first)" if source == "Misclassified" else ""),
                             candidates[:500], key=f"text_explain_index_{source}",
                             format_func=lambda i: f"#{i} · {detokenize(split.text.val_tokens[i], config.text_level)[:90]}")
        tokens = split.text.val_tokens[index]
        true_label = int(split.val_y[index])
        if split.text.val_relevance is not None:
            relevant = split.text.val_relevance[index]
    if not tokens:
        st.info("Type a sentence to explain.")
        return
    ids = vocab.encode([tokens])
    unknown = [position for position, i in enumerate(ids[0].tolist()[:len(tokens)]) if i == UNK_ID]
    probs = predict_tokens(model, ids)[0]
    predicted = int(probs.argmax())

    st.markdown(f"#### The model says: {escape_md(classes[predicted])} ({float(probs[predicted]):.1%})")
    pred_col, target_col = st.columns([2, 1])
    with pred_col:
        top = probs.argsort(descending=True)[:5].tolist()
        st.dataframe(pd.DataFrame({"class": [classes[c] for c in top], "probability": [float(probs[c]) for c in top]}),
                     hide_index=True, width="stretch", key="text_explain_top")
        if true_label is not None:
            st.caption(escape_md(f"true class: {classes[true_label]}"))
        if unknown:
            st.caption(unknown_note([tokens[p] for p in unknown]))
    with target_col:
        # each new sentence (or checkpoint) is explained for its own prediction unless another class is picked
        target = class_to_explain(st, "text_explain_target", (run_id, which, stamp, tuple(tokens)), predicted,
                                  range(len(classes)),
                                  lambda c: f"{classes[c]}{' (predicted)' if c == predicted else ''}")
    # a row of its own: in the narrow column beside the prediction the chosen methods' names were cut at 1024 px
    methods = kept("text_explain_methods", st.multiselect(
        "Methods", list(TOKEN_METHODS), default=None if remember("text_explain_methods") else DEFAULT_METHODS,
        key="text_explain_methods", format_func=lambda m: TOKEN_METHODS[m].title))

    st.html(colour_key(classes[target]))
    rows, curves, random = [], {}, None
    for method in methods:
        spec = TOKEN_METHODS[method]
        st.markdown(f"**{spec.title}** · {escape_md(spec.summary)}")
        reason = why_not_text(model, method)
        if reason:
            st.info(escape_md(reason))
            continue
        started = time.perf_counter()
        try:
            scores = explain(model, ids, target, method)[0]
        except NotApplicable as exc:
            st.info(escape_md(exc))
            continue
        seconds = time.perf_counter() - started
        st.caption(f"why **{escape_md(classes[target])}**: red pushes towards it, blue against")
        st.html(token_spans(tokens, scores[:len(tokens)].tolist(), unknown=set(unknown)))
        deletion = token_deletion_curve(model, ids[0], scores, target)
        curves[spec.title] = (deletion.fractions, deletion.probabilities)
        random = (deletion.fractions, deletion.random)
        row = {"method": spec.title, "seconds": seconds, "deletion area": deletion.area,
               "random deletion area": deletion.random_area}
        if relevant is not None:
            agreement = token_agreement(scores, relevant)
            row.update({"precision@k": agreement.precision_at_k, "pointing game": agreement.pointing,
                        "top-2 hit": agreement.top2_hit})
        rows.append(row)
    if rows:
        st.subheader("Quality")
        st.caption("Deletion area: the mean probability of the class as the sentence's tokens become <unk>, "
                   "highest score first (lower: the scores found what the model needs); a random order for "
                   "comparison." + (" Precision@k, pointing game and top-2 hit compare the top tokens with the "
                                    "words that decide the label (ground truth of the generated sentence)."
                                    if relevant is not None else ""))
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="text_explain_quality")
        plotly_chart(deletion_figure(curves, random, classes[target]), key="text_explain_deletion")
    if split.text.val_relevance is not None and methods:
        usable = tuple(m for m in methods if why_not_text(model, m) is None)
        if usable and st.toggle(f"Score the methods on {SCORED_SENTENCES} validation sentences",
                                key="text_explain_score_all"):
            st.dataframe(_method_agreement(f"{run_id}:{which}:{stamp}", usable, model, split), hide_index=True,
                         width="stretch", key="text_explain_agreement")
