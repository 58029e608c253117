"""The Train page's preview of a text run, and the upload of a user's CSV.

The preview shows what the run will train on: parameters, sentences, steps, vocabulary size, the learning-rate
schedule and the first training batch as sentences with their labels (a table: the text stays text). An
uploaded CSV is saved under TRAINLENS_HOME/data/uploads (inside the allowed data folders) by engine/uploads.py: named
by its content hash so the same file is stored once, private to the server's user, and bounded in total size (the
uploads no run uses go first); the form's data folder is pointed at it.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.charts.metrics import lr_schedule_figure
from app.charts.text import escape_md
from app.ui.presentation import plotly_chart
from app.ui.state import get_store
from engine.config import RunConfig

UPLOAD_KEY = "train_text_csv_upload"
UPLOAD_ERROR = "train_text_csv_upload_error"  # set by the upload's callback, shown (once) by the page


def _save_upload() -> None:
    # an on_change callback runs before the script, so it may still set the form's widget value
    upload = st.session_state.get(UPLOAD_KEY)
    if upload is None:
        return
    error = store_upload(upload.getvalue(), ".csv")
    if error:
        st.session_state[UPLOAD_ERROR] = error


def store_upload(data: bytes, suffix: str) -> str | None:
    """Store an upload once by its content (engine/uploads.py: never under the user's file name, keeping the uploads
    that runs read) and point the form's data folder at it; the one-line reason when there is no room for it."""
    from engine.uploads import UploadRefused, save_upload

    runs = get_store().list_runs()  # every run's data folder: the uploads they read are kept
    in_use = runs["cfg.data_dir"].tolist() if "cfg.data_dir" in runs else []
    try:
        st.session_state["cfg_data_dir"] = save_upload(data, in_use, suffix)
    except UploadRefused as exc:
        return str(exc)
    return None


def csv_upload(config: RunConfig | None) -> None:
    """The uploader of the text_csv dataset (shown only for it)."""
    if config is None or config.dataset != "text_csv":
        return
    st.file_uploader("Your CSV (a text column and a label column, UTF-8)", type=["csv"], key=UPLOAD_KEY,
                     on_change=_save_upload,
                     help="Saved on the server under the data folder; the data folder field then points at it.")
    if UPLOAD_ERROR in st.session_state:
        st.error(escape_md(st.session_state.pop(UPLOAD_ERROR)), icon=":material/block:")


def compact_count(count: int) -> str:
    """A count short enough for a metric in half the preview column at 1024 pixels: 44,426 / 647k / 4.2M / 4.2B."""
    for scale, unit in ((1e9, "B"), (1e6, "M")):
        if count >= scale:
            return f"{count / scale:.1f}{unit}" if count < 10 * scale else f"{count / scale:,.0f}{unit}"
    return f"{count / 1000:,.0f}k" if count >= 100_000 else f"{count:,}"


def text_preview(config: RunConfig, split) -> None:
    from engine.data.loading import batches_per_epoch, iterate_batches
    from engine.models import parameter_count
    from engine.optim import schedule_curve

    from app.train.transfer_preview import transfer_lines
    from engine.transfer import parameter_summary

    info = split.info
    try:  # counted, never allocated (torch's meta device), adapters included
        counts = parameter_summary(config, 0, info.size, len(info.classes))
    except ValueError as exc:  # a freeze pattern that matches no weight of this model
        counts = None
        st.error(escape_md(str(exc)))
    params = counts["total"] if counts else parameter_count(config, 0, info.size, len(info.classes))
    steps_per_epoch = batches_per_epoch(len(split.train_x), config.batch_size)
    total = steps_per_epoch * config.epochs
    a, b = st.columns(2)  # two by two: four metrics in a row get cut on a 1024-pixel screen
    c, d = st.columns(2)
    a.metric("parameters", compact_count(params), help=f"{params:,}")
    b.metric("sentences", f"{len(split.train_x):,}", help="training sentences")
    c.metric("vocabulary", f"{len(split.text.vocab):,}", help="words of the training split, plus <pad> and <unk>")
    d.metric("steps", f"{total:,}", help=f"{steps_per_epoch} steps per epoch x {config.epochs} epochs")
    transfer = transfer_lines(config, counts)
    if transfer:
        st.markdown(transfer)
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
