"""The Explain page's picture: the image the model is asked about (an upload, an example from assets/, a validation
sample or a misclassified one), prepared exactly as the model sees it.

A picture is a plain dict rebuilt on every run: inputs [1, C, S, S], pixels [C, S, S], the object mask (`shapes`)
or None, notes shown under it, a key that names it in the caches, and its label when known. Decoded uploads and
the misclassified list are st.cache_data, keyed by the subject's key.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import streamlit as st
import torch

from app.charts.explain import misclassified_table
from app.charts.text import escape_md
from engine.explain.images import ImageDecodeError, PreparedImage, decode_image
from engine.explain.methods import predict
from engine.explain.render import Subject, run_split

ASSETS = Path(__file__).resolve().parents[2] / "assets"
UPLOAD_TYPES = ["png", "jpg", "jpeg", "bmp", "gif", "webp", "tif", "tiff"]
SHOW_PX = 168  # side of the picture and of each map on screen: an overlay lines up with the picture above it


@st.cache_data(max_entries=32, show_spinner=False)
def prepare_bytes(data: bytes, spec_key: str, invert: bool | None, _subject: Subject) -> PreparedImage:
    return _subject.spec.prepare(decode_image(data), invert=invert)


@st.cache_data(max_entries=8, show_spinner="Finding the misclassified validation images...")
def misclassified(subject_key: str, _subject: Subject) -> pd.DataFrame:
    split = run_split(_subject.config)
    probs = torch.cat([predict(_subject.model, _subject.spec.normalize(split.val_x[i:i + 512]))
                       for i in range(0, len(split.val_x), 512)])
    confidence, predicted = probs.max(1)
    return misclassified_table(split.val_y.numpy(), predicted.numpy(), confidence.numpy())


def choose_picture(subject: Subject, subject_key: str) -> dict:
    """The "Image" choice and the picture it gives; stops the page until there is one."""
    choices = ["Upload", "Example image"] + (["Validation sample", "Misclassified"] if subject.config else [])
    if (subject.config and st.query_params.get("sample", "").isdigit()
            and "explain_image_source" not in st.session_state):
        st.session_state["explain_image_source"] = "Validation sample"
        st.session_state["explain_sample"] = int(st.query_params["sample"])
    image_source = st.radio("Image", choices, horizontal=True, key="explain_image_source")
    if image_source in ("Upload", "Example image"):
        picture = _from_bytes(subject, image_source)
    else:
        picture = _from_validation(subject, subject_key, image_source)
    if picture is None:
        st.info("Upload an image (or pick an example) to explain it.")
        st.stop()
    return picture


def _from_bytes(subject: Subject, image_source: str) -> dict | None:
    """An uploaded file or an example from assets/, decoded and prepared for the model; None until a file is given."""
    if image_source == "Upload":
        upload = st.file_uploader("Image file", type=UPLOAD_TYPES, key="explain_upload",
                                  help="PNG, JPEG, BMP, GIF (first frame), WebP or TIFF; kept in memory only.")
        data, label = (upload.getvalue(), "upload") if upload else (None, None)
    else:
        examples = sorted(p.name for p in ASSETS.glob("*.png"))
        example = st.selectbox("Example", examples, key="explain_example")
        data, label = (ASSETS / example).read_bytes(), example
    invert_choice = None
    if subject.spec.invert_light:
        invert_choice = {"auto": None, "invert": True, "keep": False}[
            st.radio("Colours", ["auto", "invert", "keep"], horizontal=True, key="explain_invert",
                     help=f"{subject.spec.dataset} images are light on dark: 'auto' inverts images with a "
                          "light background.")]
    if data is None:
        return None
    try:
        prepared = prepare_bytes(data, repr(subject.spec), invert_choice, _subject=subject)
    except ImageDecodeError as exc:  # it may quote the uploaded file's name
        st.error(escape_md(exc))
        st.stop()
    digest = hashlib.sha1(data).hexdigest()[:16]
    return {"inputs": prepared.inputs, "pixels": prepared.pixels, "mask": None, "notes": prepared.notes,
            "key": f"{label}:{digest}:{invert_choice}", "label": None}


def _from_validation(subject: Subject, subject_key: str, image_source: str) -> dict:
    """An image of the run's validation split: by index, or among the checkpoint's mistakes (most confident first)."""
    split = run_split(subject.config)
    if image_source == "Misclassified":
        wrong = misclassified(subject_key, _subject=subject)
        if wrong.empty:
            st.success("This checkpoint classifies every validation image correctly.")
            st.stop()
        wrong_labels = {int(r.sample): f"#{r.sample} · true {subject.classes[r.true]} → predicted "
                        f"{subject.classes[r.predicted]} ({r.confidence:.0%})" for r in wrong.itertuples()}
        index = st.selectbox("Misclassified validation image (most confident first)", list(wrong_labels),
                             format_func=wrong_labels.get, key="explain_wrong")
    else:
        index = st.number_input("Validation index", 0, len(split.val_x) - 1, key="explain_sample", step=1)
    index = int(index)
    pixels = split.val_x[index]
    return {"inputs": subject.spec.prepare_pixels(pixels), "pixels": pixels,
            "mask": split.val_masks[index] if split.val_masks is not None else None,
            "notes": [f"Validation image #{index}, labelled {subject.classes[int(split.val_y[index])]}."],
            "key": f"val:{index}", "label": int(split.val_y[index])}
