"""The Train page's preview of a character run, and the upload of a user's text file.

The preview says what the run will learn from: parameters, names (or chunks of text), the vocabulary, steps, the
counting baselines its loss will be drawn against, and the first training batch as the model reads it. An uploaded
text file is checked first (empty, binary, not UTF-8, over the cap: one line, nothing saved), then stored like the
CSV upload (engine/uploads.py: once per content, never under the user's file name, bounded in total size), and the
form's data folder is pointed at it.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.charts.metrics import lr_schedule_figure
from app.charts.text import escape_md
from app.train.text_train import store_upload
from app.ui.presentation import plotly_chart
from engine.config import RunConfig
from engine.datasets import TEXT_FILE_MAX_BYTES

UPLOAD_KEY = "train_text_file_upload"
ERROR_KEY = "train_text_file_error"


def _save_upload() -> None:
    # an on_change callback runs before the script, so it may still set the form's widget value
    st.session_state.pop(ERROR_KEY, None)
    upload = st.session_state.get(UPLOAD_KEY)
    if upload is None:
        return
    from engine.chars.corpus import check_text_bytes

    if upload.size > TEXT_FILE_MAX_BYTES:  # refused before reading it
        st.session_state[ERROR_KEY] = (f"This file is {upload.size:,} bytes; at most {TEXT_FILE_MAX_BYTES:,} are "
                                       "trained on.")
        return
    data = upload.getvalue()
    try:
        check_text_bytes(data, "this file")
    except ValueError as exc:
        st.session_state[ERROR_KEY] = str(exc)[0].upper() + str(exc)[1:]
        return
    error = store_upload(data, ".txt")
    if error:
        st.session_state[ERROR_KEY] = error


def text_file_upload(config: RunConfig | None) -> None:
    """The uploader of the text_file dataset (shown only for it)."""
    if config is None or config.dataset != "text_file":
        return
    st.file_uploader(f"Your text (UTF-8, up to {TEXT_FILE_MAX_BYTES // 1_000_000} MB: a book, lyrics, code)",
                     type=["txt", "md", "py", "csv", "tex"], key=UPLOAD_KEY, on_change=_save_upload,
                     help="Saved on the server under the data folder; the data folder field then points at it.")
    if st.session_state.get(ERROR_KEY):
        st.error(escape_md(st.session_state[ERROR_KEY]), icon=":material/block:")


def char_preview(config: RunConfig, split) -> None:
    from engine.data.loading import batches_per_epoch
    from engine.models import count_parameters, model_from_config
    from engine.optim import schedule_curve

    chars, info = split.chars, split.info
    params = count_parameters(model_from_config(config, 0, info.size, len(info.classes)))
    steps_per_epoch = batches_per_epoch(len(split.train_x), config.batch_size)
    total = steps_per_epoch * config.epochs
    a, b = st.columns(2)
    c, d = st.columns(2)
    a.metric("parameters", f"{params / 1000:,.0f}k" if params >= 100_000 else f"{params:,}", help=f"{params:,}")
    b.metric("names" if chars.padded else "chunks", f"{len(split.train_x):,}",
             help="training names, one per row" if chars.padded else
             f"training chunks of {config.block_size} characters")
    c.metric("characters", f"{len(chars.vocab.chars)}", help="the vocabulary of the training split, plus the "
             "boundary token that starts and ends a name")
    d.metric("steps", f"{total:,}", help=f"{steps_per_epoch} steps per epoch x {config.epochs} epochs")
    base = chars.baselines
    st.caption(escape_md(f"Loss to beat (nats per character, on the validation split): uniform guess "
                         f"{base['uniform']:.2f}, letter frequencies {base['unigram']:.2f}, letter pairs counted "
                         f"{base['bigram']:.2f}."))
    for note in chars.notes:
        st.caption(escape_md(note))
    steps, lrs = schedule_curve(config, total)
    plotly_chart(lr_schedule_figure(steps, lrs, f"learning rate: {config.schedule}").update_layout(height=220),
                 key="schedule_preview")
    rows = [{"the model reads": ("·" if int(x[0]) == 0 else "") + chars.vocab.decode(x),
             "and learns to write": chars.vocab.decode(y[y >= 0])
             + ("·" if bool((y == 0).any()) else "")} for x, y in zip(split.train_x[:10], split.train_y[:10])]
    st.caption("first training examples: each character is trained to predict the one below it (· = a name's "
               "start, or its end)")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="char_batch_preview")
