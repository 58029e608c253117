"""The Explain page's subject: the model asked *why* (a training run's checkpoint, a pretrained ImageNet model or
your own), loaded once per checkpoint and shared by every session (st.cache_resource).

A text run's checkpoint is handed over to app/explain/text_explain.py, a character run's to
app/explain/chars_explain.py: each draws the rest of the page for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st
import torch

from app.charts.text import escape_md
from app.explain.own_model_form import own_model_form
from app.ui.state import get_store
from engine.checkpoints import history_epochs, list_epochs, resolve
from engine.explain import pretrained
from engine.explain.render import Subject, load_subject
from engine.records import LOGGED_MODEL, TRAINED, epoch_label


@dataclass(frozen=True)
class ChosenSubject:
    """The model the page explains, and what names it in the caches."""

    subject: Subject
    key: str  # a run's checkpoint: run, checkpoint, epoch and file stamp; otherwise the model's own id
    run_id: str | None  # the training run; None for a pretrained or your own model (no checkpoints over training)


@st.cache_resource(max_entries=6, show_spinner="Loading the checkpoint...")
def run_subject(run_id: str, which: str, stamp: int) -> Subject:
    # `stamp` (the file's mtime) makes 'best' and 'last' reload when training writes a newer checkpoint
    return load_subject(run_id, checkpoint_key(which))


def checkpoint_key(which: str) -> str | int:
    """'best' / 'last', or an engine epoch index given as text ("-1" = before training)."""
    return which if which in ("best", "last") else int(which)


def checkpoint_label(which: str) -> str:
    return which if which in ("best", "last") else epoch_label(int(which))


@st.cache_resource(max_entries=2, show_spinner="Loading the ImageNet model...")
def pretrained_subject(name: str, download: bool) -> Subject:
    loaded = pretrained.load_pretrained(name, download=download)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return Subject(f"pretrained:{name}", loaded.model.to(device), None, loaded.spec, loaded.classes, -1, device)


def choose_subject() -> ChosenSubject:
    """The "Model" choice and the model it loads. Stops the page while there is nothing to explain yet, and after
    a text run's page has been drawn."""
    source = st.radio("Model", ["Training run", "Pretrained ImageNet model", "Your own model"], horizontal=True,
                      key="explain_source")
    if source == "Training run":
        return _training_run()
    if source == "Your own model":
        subject = own_model_form()
        if subject is None:
            st.stop()
        return ChosenSubject(subject, subject.run_id, None)
    return _pretrained()


@st.cache_resource(max_entries=2, show_spinner="Loading the script's model...")
def logged_subject(run_id: str, path: str, stamp: int) -> Subject:
    """A torchvision model a script saved with run.log_model (engine.explain.logged_model), as "your own model"."""
    from engine.explain.logged_model import load_torchvision

    loaded = load_torchvision(get_store().get_artifact(run_id, LOGGED_MODEL))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return Subject(f"logged:{run_id}:{stamp}", loaded.model.to(device), None, loaded.spec, loaded.classes, -1, device)


def _training_run() -> ChosenSubject:
    store = get_store()
    runs = store.list_runs(kind=TRAINED)  # scripts' runs too: a zoo model from run.log_model has checkpoints
    logged = store.artifact_values(LOGGED_MODEL, runs["run_id"]) if not runs.empty else {}
    torchvision = {r for r, record in logged.items()
                   if isinstance(record, dict) and record.get("kind") == "torchvision"}
    runs = runs[[r in torchvision or bool(list_epochs(r)) for r in runs["run_id"]]] if not runs.empty else runs
    if runs.empty:
        st.info("No run has a checkpoint yet: one is written at the end of every epoch. Train a run first.")
        st.stop()
    ids = list(runs["run_id"])
    wanted = st.query_params.get("run")
    if wanted in ids and "explain_run" not in st.session_state:
        st.session_state["explain_run"] = wanted
    labels = {r.run_id: f"{r.name} · {r.status} · {r.run_id[:6]}" for r in runs.itertuples()}
    run_col, ckpt_col = st.columns([3, 1])
    run_id = run_col.selectbox("Run", ids, format_func=labels.get, key="explain_run")
    if run_id in torchvision:  # one set of weights, no checkpoints over training: explained as your own model
        record = logged[run_id]
        try:
            stamp = Path(record["path"]).stat().st_mtime_ns
            subject = logged_subject(run_id, record["path"], stamp)
        except (OSError, RuntimeError, ValueError) as exc:
            st.error(f"This run's model could not be loaded: {exc}")
            st.stop()
        st.caption(f"{record['architecture']} saved by the run's script · explained on {subject.device}")
        return ChosenSubject(subject, subject.run_id, None)
    which = ckpt_col.selectbox("Checkpoint", ["best", "last", *map(str, history_epochs(run_id))],
                               key=f"explain_ckpt_{run_id}", format_func=checkpoint_label)
    from app.explain.text_explain import checkpoint_is_text, text_explain_section  # text runs: tokens, not images

    # an unreadable file (pickle bytes, a crafted header, a link to a device), a missing or mismatched one: the
    # command line's one-line message, never "This app has encountered an error"
    try:
        checkpoint = resolve(run_id, checkpoint_key(which))
        stamp = checkpoint.stat().st_mtime_ns
        is_text = checkpoint_is_text(str(checkpoint), stamp)
    except (OSError, RuntimeError, ValueError) as exc:
        cannot_load(exc)
    if is_text:
        text_explain_section(run_id, which, stamp)
        st.stop()
    from app.explain.chars_explain import checkpoint_is_chars, chars_explain_section  # characters: what comes next

    if checkpoint_is_chars(str(checkpoint), checkpoint.stat().st_mtime_ns):
        chars_explain_section(run_id, which, checkpoint.stat().st_mtime_ns)
        st.stop()
    try:
        subject = run_subject(run_id, which, stamp)
    except (OSError, RuntimeError, ValueError) as exc:
        cannot_load(exc)
    subject_key = f"{run_id}:{which}:{subject.epoch}:{stamp}"
    st.caption(f"{subject.config.model} on {subject.config.dataset}, {epoch_label(subject.epoch)} · "
               f"explained on {subject.device}")
    return ChosenSubject(subject, subject_key, run_id)


def checkpoint_problem(exc: BaseException) -> str:
    """What is wrong with a checkpoint, in the one line the command line prints for it (markdown-escaped)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return escape_md(text[:600])


def cannot_load(exc: BaseException) -> None:
    """Say that this checkpoint cannot be explained, and why, then stop the page (another run or epoch can be chosen
    above)."""
    st.error(f"This checkpoint cannot be explained: {checkpoint_problem(exc)}. Choose another run or checkpoint "
             "above.", icon=":material/broken_image:")
    st.stop()


def _pretrained() -> ChosenSubject:
    name = st.selectbox("ImageNet model", pretrained.PRETRAINED, key="explain_pretrained")
    if not pretrained.available(name) and not st.session_state.get(f"explain_download_{name}"):
        st.info(f"The weights of {name} are not on this machine yet: TrainLens looks for "
                f"`{pretrained.cache_path(name)}` (torch hub cache).")
        if st.button("Download them now (needs internet)", key="explain_download"):
            st.session_state[f"explain_download_{name}"] = True
            st.rerun()
        st.stop()
    try:
        subject = pretrained_subject(name, download=True)
    except pretrained.PretrainedUnavailable as exc:
        st.session_state[f"explain_download_{name}"] = False
        st.error(escape_md(exc))
        st.stop()
    return ChosenSubject(subject, subject.run_id, None)
