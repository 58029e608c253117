"""The Train page's preview of a text run, and the upload of a user's CSV.

The preview shows what the run will train on: parameters, sentences, steps, vocabulary size, the learning-rate
schedule and the first training batch as sentences with their labels (a table: the text stays text). An
uploaded CSV is saved under TRAINLENS_HOME/data/uploads (inside the allowed data folders), named by its
content hash so the same file is stored once, and the form's data folder is pointed at it.
"""

from __future__ import annotations

import hashlib

import pandas as pd
import streamlit as st

from app.charts.metrics import lr_schedule_figure
from app.charts.text import escape_md
from app.ui.presentation import plotly_chart
from engine.config import RunConfig

UPLOAD_KEY = "train_text_csv_upload"


def _save_upload() -> None:
    # an on_change callback runs before the script, so it may still set the form's widget value
    upload = st.session_state.get(UPLOAD_KEY)
    if upload is None:
        return
    save_upload(upload.getvalue(), ".csv")


def save_upload(data: bytes, suffix: str) -> None:
    """Save an uploaded file under TRAINLENS_HOME/data/uploads, named by its content hash (never by the user's file
    name: the same file is stored once), and point the form's data folder at it."""
    from engine.paths import data_dir

    folder = data_dir() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{hashlib.sha256(data).hexdigest()[:16]}{suffix}"
    (folder / name).write_bytes(data)
    st.session_state["cfg_data_dir"] = f"uploads/{name}"


def csv_upload(config: RunConfig | None) -> None:
    """The uploader of the text_csv dataset (shown only for it)."""
    if config is None or config.dataset != "text_csv":
        return
    st.file_uploader("Your CSV (a text column and a label column, UTF-8)", type=["csv"], key=UPLOAD_KEY,
                     on_change=_save_upload,
                     help="Saved on the server under the data folder; the data folder field then points at it.")


def text_preview(config: RunConfig, split) -> None:
    from engine.data.loading import batches_per_epoch, iterate_batches
    from engine.models import count_parameters, model_from_config
    from engine.optim import schedule_curve

    info = split.info
    params = count_parameters(model_from_config(config, 0, info.size, len(info.classes)))
    steps_per_epoch = batches_per_epoch(len(split.train_x), config.batch_size)
    total = steps_per_epoch * config.epochs
    a, b = st.columns(2)  # two by two: four metrics in a row get cut on a 1024-pixel screen
    c, d = st.columns(2)
    a.metric("parameters", f"{params / 1000:,.0f}k" if params >= 100_000 else f"{params:,}", help=f"{params:,}")
    b.metric("sentences", f"{len(split.train_x):,}", help="training sentences")
    c.metric("vocabulary", f"{len(split.text.vocab):,}", help="words of the training split, plus <pad> and <unk>")
    d.metric("steps", f"{total:,}", help=f"{steps_per_epoch} steps per epoch x {config.epochs} epochs")
    for note in split.text.notes:
        st.caption(escape_md(note))
    steps, lrs = schedule_curve(config, total)
    plotly_chart(lr_schedule_figure(steps, lrs, f"learning rate: {config.schedule}").update_layout(height=220),
                    key="schedule_preview")
    xb, yb = next(iterate_batches(split.train_x, split.train_y, config.batch_size, seed=config.seed, epoch=0))
    vocab = split.text.vocab
    from engine.text.vocab import detokenize

    rows = [{"label": info.classes[int(y)], "sentence (as the model reads it)": detokenize(vocab.decode(x), config.text_level)}
            for x, y in zip(xb[:12], yb[:12])]
    st.caption("first training batch, as the model reads it (<unk> = not in the vocabulary)")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="text_batch_preview")
