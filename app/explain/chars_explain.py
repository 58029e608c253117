"""The Explain page for character runs: type the start of a name (or any text the run knows), see the likeliest
next characters, which earlier characters drove that prediction, a transformer's attention maps and a bigram's
table.

`app/explain/subject.py` hands a run over here when its dataset is a character one. Attributions are Integrated
Gradients on the token embedding from shuffled contexts (engine.explain.chars): the same characters in random
places, so a score says how much a character mattered *where it is*. Typed text is drawn through escaped spans,
figure labels through `plotly_text`.
"""

from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from app.charts.chars import attention_figure, bigram_figure, next_char_figure
from app.charts.text import escape_md
from app.charts.text_tokens import token_spans
from app.ui.presentation import plotly_chart
from engine.checkpoints import load_checkpoint
from engine.datasets import dataset_info

DEFAULTS = {"names": "emm", "reviews": "the acting was not "}


@st.cache_data(max_entries=64, show_spinner=False)
def checkpoint_is_chars(path: str, stamp: int) -> bool:
    """Whether a checkpoint belongs to a character run (`stamp`, the file's mtime, keys the cache)."""
    return dataset_info(load_checkpoint(path).config.dataset).kind == "chars"


@st.cache_resource(max_entries=4, show_spinner="Loading the checkpoint and its characters...")
def char_subject(run_id: str, which: str, stamp: int):
    from engine.char_runs import load_char_model

    return load_char_model(run_id, int(which) if which.lstrip("-").isdigit() else which)


def chars_explain_section(run_id: str, which: str, stamp: int) -> None:
    from engine.explain.chars import attention_maps, context_attributions, next_char_probabilities

    try:
        loaded = char_subject(run_id, which, stamp)
    except (OSError, RuntimeError, ValueError) as exc:
        st.error(f"This character run could not be loaded: {escape_md(exc)}")
        return
    model, config, vocab = loaded.model, loaded.config, loaded.extras.vocab
    st.caption(escape_md(f"{config.model} on {config.dataset} ({len(vocab.chars)} characters), "
                         f"{'before training' if loaded.epoch < 0 else f'epoch {loaded.epoch + 1}'}"))
    text = st.text_input("The start of a name (or of a text the run knows)", DEFAULTS.get(config.dataset, ""),
                         max_chars=60, key="chars_explain_text",
                         help="The model reads a start token, then these characters, and predicts the next one.")
    missing = vocab.unknown(text)
    if missing:
        st.error(escape_md(f"{', '.join(repr(c) for c in missing[:10])}: not in this run's vocabulary of "
                           f"{len(vocab.chars)} characters; type only characters it was trained on"),
                 icon=":material/block:")
        return
    prediction = next_char_probabilities(model, vocab, text)
    probabilities = prediction["probabilities"]
    predicted = int(np.argmax(probabilities))
    left, right = st.columns(2)
    with left:
        st.markdown("**What comes next?** (· = the name ends)")
        plotly_chart(next_char_figure(prediction["labels"], probabilities), key="chars_explain_next")
    with right:
        labels = prediction["labels"]
        target = st.selectbox("Explain the next character", range(len(labels)), index=predicted,
                              format_func=lambda i: f"{labels[i]} ({probabilities[i]:.0%})"
                                                    + (" · predicted" if i == predicted else ""),
                              key="chars_explain_target")
        ids = torch.tensor([[0] + vocab.encode(text)])
        window = getattr(model, "window", None)
        if window is not None and ids.shape[1] > window and hasattr(model, "positions"):
            ids = ids[:, -window:]
        scores = context_attributions(model, ids, torch.tensor([target]))[0]
        tokens = prediction["tokens"]
        st.markdown("**Which earlier characters drove it** (red: towards it, blue: against)")
        # characters, not words: drawn large enough to read each one from the back of a room
        st.html(token_spans(tokens, scores.tolist()).replace("font-size:1.05rem", "font-size:1.8rem"))
        weights = np.abs(scores)
        if weights.sum() > 0:
            last = weights[-3:].sum() / weights.sum()
            st.caption(escape_md(f"{last:.0%} of the attribution is on the last {min(3, len(tokens))} characters "
                                 f"({min(3, len(tokens)) / len(tokens):.0%} if every character counted the same). "
                                 "Integrated Gradients from the same characters shuffled: a score is how much a "
                                 "character matters where it stands."))
    if hasattr(model, "blocks"):
        st.subheader("Attention")
        st.caption("Each map: row = the character that looks, column = the one it looks at (weights add up to 1 per "
                   "row). The model is causal: nothing to the right of the diagonal.")
        maps = attention_maps(model, vocab, text)
        plotly_chart(attention_figure(maps["tokens"], maps["maps"]), key="chars_explain_attention")
    if config.model == "bigram":
        st.subheader("The bigram table")
        st.caption("All this model knows: for each last character (row), the probability of each next one.")
        table = model.embedding.weight.detach().float().softmax(-1).cpu().numpy()
        plotly_chart(bigram_figure(list(vocab.tokens), table), key="chars_explain_bigram")
