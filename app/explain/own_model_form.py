"""The Explain page's "Your own model" form: a torchvision architecture with uploaded safetensors weights, or an
exported program from a folder the server's operator allows. Returns a Subject, or None until one is ready.

Uploads are checked by their first bytes (engine.explain.own_model.check_upload) before anything reads them:
only safetensors, never a pickle or a `.pt2` archive. Names typed here (class names) are shown as text.
"""

from __future__ import annotations

import hashlib

import streamlit as st
import torch

from app.charts.text import escape_md
from engine.explain import own_model
from engine.explain.own_model import OwnModelError, Preparation
from engine.explain.render import Subject


@st.cache_resource(max_entries=2, show_spinner="Loading your model...")
def _weights_subject(digest: str, architecture: str, filename: str, _data: bytes, preparation: Preparation) -> Subject:
    loaded = own_model.from_weights(architecture, own_model.state_from_upload(filename, _data), preparation, filename)
    return _subject(f"own:{digest}", loaded)


@st.cache_resource(max_entries=2, show_spinner="Loading the exported program...")
def _exported_subject(path: str, stamp: int) -> Subject:
    return _subject(f"own:{path}:{stamp}", own_model.from_exported(path))


def _subject(key: str, loaded: own_model.OwnModel) -> Subject:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return Subject(key, loaded.model.to(device), None, loaded.spec, loaded.classes, -1, device)


def _numbers(text: str, label: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise OwnModelError(f"{label}: write numbers separated by commas, e.g. 0.485, 0.456, 0.406") from None
    if len(values) not in (1, 3):
        raise OwnModelError(f"{label}: one value (grey images) or three (RGB)")
    return values


def own_model_form() -> Subject | None:
    kind = st.radio("What do you have?", ["Weights for a torchvision architecture (safetensors)",
                                          "An exported program on this server (.pt2)"], key="own_kind")
    try:
        if kind.startswith("Weights"):
            return _weights_form()
        return _exported_form()
    except OwnModelError as exc:
        st.error(str(exc))
        return None


def _weights_form() -> Subject | None:
    names = own_model.architectures()
    arch_col, size_col = st.columns([2, 1])
    architecture = arch_col.selectbox("Architecture", names, index=names.index("resnet18"), key="own_arch")
    size = size_col.number_input("Input size (pixels, square)", 8, 1024, 224, key="own_size")
    mean_col, std_col = st.columns(2)
    mean = mean_col.text_input("Mean per channel (pixels in 0-1)", "0.485, 0.456, 0.406", key="own_mean")
    std = std_col.text_input("Std per channel", "0.229, 0.224, 0.225", key="own_std")
    names_text = st.text_area("Class names, one per line (empty: numbered)", key="own_classes", height=80)
    upload = st.file_uploader("Weights (.safetensors)", type=["safetensors"], key="own_weights",
                              help="Only safetensors: it holds tensors and nothing that runs. A PyTorch .pt/.pth "
                                   "state dict can be converted with safetensors.torch.save_file, or given to "
                                   "the CLI by path. Exported programs (.pt2) are never accepted from a browser. "
                                   "Uploads are capped at the server's upload size (10 MB by default): bigger "
                                   "weights (resnet18 is 45 MB) go through `trainlens explain-model --weights`.")
    if upload is None:
        st.info("Upload the weights (a safetensors file) to explain your model.")
        return None
    data = upload.getvalue()
    own_model.check_upload(upload.name, data)  # refuses anything but safetensors before it is read
    classes = tuple(line.strip() for line in names_text.splitlines() if line.strip())
    preparation = Preparation(int(size), _numbers(mean, "Mean"), _numbers(std, "Std"), classes)
    digest = hashlib.sha1(data).hexdigest()[:16]
    subject = _weights_subject(f"{digest}:{architecture}:{preparation}", architecture, upload.name, data, preparation)
    st.caption(f"{architecture} with your weights · {len(subject.classes)} classes · explained on {subject.device}")
    return subject


def _exported_form() -> Subject | None:
    folders = own_model.model_dirs()
    programs = own_model.exported_programs()
    if not programs:
        st.info(f"Exported programs are loaded only from folders the server's operator lists in "
                f"{own_model.MODEL_DIRS_ENV} (opening one can run code, so they are never uploaded). "
                + ("No .pt2 file is in " + ", ".join(map(str, folders)) + "." if folders
                   else f"{own_model.MODEL_DIRS_ENV} is not set on this server."))
        return None
    path = st.selectbox("Exported program", [str(p) for p in programs], key="own_program")
    st.caption("Input size, normalisation and class names come from the JSON file of the same name next to it.")
    from pathlib import Path

    subject = _exported_subject(path, Path(path).stat().st_mtime_ns)
    st.caption(f"{escape_md(Path(path).name)} · {len(subject.classes)} classes · explained on {subject.device}")
    return subject
