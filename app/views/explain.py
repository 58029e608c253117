"""Explain page: ask a trained model *why*. Attribution maps side by side, their quality, and how they evolve.

Pick a run's checkpoint (or a pretrained ImageNet model) and an image: an upload, a validation sample, one
the model gets wrong, or an example from assets/. The page shows the input as the model sees it and its top
predictions; then one map per chosen method (heatmap and overlay, with quality scores and time taken), the
map across the run's checkpoints, and the model-randomization sanity check.

Light methods run inline; heavy ones (many forward passes) run on the server's job board (app/server/explain_jobs.py),
on a copy of the model on the run's device, and a fragment polls their progress, so the page never blocks. The
figures and tables are built in app/charts/explain.py; this script holds the selection, the caching and the
layout. Session state holds ids and plain values only; models and tensors live in st.cache_resource /
st.cache_data.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pandas as pd
import streamlit as st
import torch

from app.charts.explain import (
    class_label,
    epochs_figure,
    misclassified_table,
    quality_table,
    randomization_figure,
    randomization_table,
    randomization_verdict,
    topk_figure,
    topk_table,
)
from app.charts.text import escape_md
from app.explain.own_model_form import own_model_form
from app.server.explain_jobs import FINISHED, JobBoard
from app.ui.presentation import plotly_chart
from app.ui.state import get_store
from engine.checkpoints import history_epochs, list_epochs, resolve
from engine import sanity_check as sanity
from engine.explain import pretrained, reading
from engine.explain.ood import OodDetector, calibrate_on_split
from engine.records import epoch_label, epoch_number
from engine.explain.images import ImageDecodeError, PreparedImage, decode_image
from engine.explain.methods import METHODS, SIGNS, copy_model, explain, predict, why_not
from engine.explain.quality import quality, randomization_check
from engine.explain.render import (
    Subject,
    default_params,
    enlarge,
    heatmap,
    colour_bar,
    image_rgb,
    load_subject,
    overlay,
    pixel_map,
    run_split,
)

ASSETS = Path(__file__).resolve().parents[2] / "assets"
UPLOAD_TYPES = ["png", "jpg", "jpeg", "bmp", "gif", "webp", "tif", "tiff"]
INLINE_MAX_VALUES = 4096  # inputs up to 64x64 grey: light methods are computed inline below this size
SHOW_PX = 168  # side of each map on screen


# ---- cached resources: models, data, predictions, maps ----------------------------------------------------------


@st.cache_resource(max_entries=6, show_spinner="Loading the checkpoint...")
def run_subject(run_id: str, which: str, stamp: int) -> Subject:
    # `stamp` (the file's mtime) makes 'best' and 'last' reload when training writes a newer checkpoint
    return load_subject(run_id, checkpoint_key(which))


def checkpoint_key(which: str) -> str | int:
    """'best' / 'last', or an engine epoch index given as text ("-1" = before training)."""
    return which if which in ("best", "last") else int(which)


def checkpoint_label(which: str) -> str:
    return which if which in ("best", "last") else epoch_label(int(which))


@st.cache_resource(max_entries=6, show_spinner="Measuring the validation images, for the familiarity check...")
def ood_detector(subject_key: str, _subject: Subject) -> OodDetector | None:
    """Calibrated once per checkpoint on the run's validation split (None for a model without one)."""
    if _subject.config is None:
        return None
    return calibrate_on_split(_subject.model, _subject.spec, run_split(_subject.config))


@st.cache_resource(max_entries=2, show_spinner="Loading the ImageNet model...")
def pretrained_subject(name: str, download: bool) -> Subject:
    loaded = pretrained.load_pretrained(name, download=download)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return Subject(f"pretrained:{name}", loaded.model.to(device), None, loaded.spec, loaded.classes, -1, device)


@st.cache_resource(show_spinner=False)
def job_board() -> JobBoard:
    """One worker thread for heavy maps, shared by every session; jobs keyed by what they compute."""
    return JobBoard(max_workers=1, keep=64, thread_name="explain")


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


def compute_map(subject: Subject, model: torch.nn.Module, picture: dict, target: int, method: str, with_quality: bool,
                with_sensitivity: bool, progress=None) -> dict:
    """One map and its scores as plain numbers and arrays (no st.* here: it also runs on the worker thread)."""
    params = default_params(method, subject.spec)
    start = time.perf_counter()
    attributions = explain(model, picture["inputs"], target, method, device=subject.device, progress=progress, **params)
    seconds = time.perf_counter() - start
    scores = None
    if with_quality:
        scores = quality(model, picture["inputs"].to(subject.device), target, method, attributions.to(subject.device),
                         mask=picture["mask"], sensitivity=with_sensitivity, **params).as_dict()
    return {"map": pixel_map(attributions), "seconds": seconds, "quality": scores}


@st.cache_data(max_entries=128, show_spinner=False)
def inline_map(job_key: tuple, _subject: Subject, _picture: dict, target: int, method: str, with_quality: bool,
               with_sensitivity: bool) -> dict:
    return compute_map(_subject, _subject.model, _picture, target, method, with_quality, with_sensitivity)


def background_map(subject: Subject, picture: dict, target: int, method: str, with_quality: bool,
                   with_sensitivity: bool, progress) -> dict:
    """compute_map as a job of the board, on the worker thread."""
    # a private copy: the shared model stays free for the page's inline maps meanwhile
    model = copy_model(subject.model)
    return compute_map(subject, model, picture, target, method, with_quality, with_sensitivity, progress=progress)


@st.cache_data(max_entries=16, show_spinner="Re-initialising layers and recomputing maps...")
def sanity_steps(key: str, _subject: Subject, _picture: dict, target: int, method: str) -> tuple[pd.DataFrame, list]:
    """The stages' table and, per stage, the map of the (partly) random model; the trained map first."""
    params = default_params(method, _subject.spec)
    inputs = _picture["inputs"].to(_subject.device)
    steps = randomization_check(_subject.model, inputs, target, method, **params)
    trained = pixel_map(explain(_subject.model, inputs, target, method, **params))
    return randomization_table(steps, METHODS[method].default_sign), [trained, *(s.pixel_map for s in steps)]


@st.cache_data(max_entries=16, show_spinner="Predicting at every epoch...")
def epoch_history(key: tuple, run_id: str, epochs: tuple[int, ...], target: int, _picture: dict) -> pd.DataFrame:
    """The prediction at every checkpoint (a forward each: cheap, and it shows when the answer changed)."""
    rows = []
    for epoch in epochs:
        past = load_subject(run_id, epoch, device="cpu")
        probs = predict(past.model, _picture["inputs"])[0]
        rows.append({"epoch": epoch_number(epoch), "target_prob": float(probs[target]),
                     "predicted": past.classes[int(probs.argmax())]})
    return pd.DataFrame(rows)


@st.fragment(run_every=0.5)
def background_progress(job_key: tuple) -> None:
    """A live progress bar for one background map; reruns the page once the map is ready."""
    board = job_board()
    if board.status(job_key) in (None, *FINISHED):  # None: dropped from the board, and the rerun submits it again
        st.rerun()  # the whole page, which now shows the finished map
    st.progress(board.progress(job_key), text="computing in the background...")


# ---- the page ------------------------------------------------------------------------------------------------------

st.title("Explain")
source = st.radio("Model", ["Training run", "Pretrained ImageNet model", "Your own model"], horizontal=True,
                  key="explain_source")

if source == "Training run":
    runs = get_store().list_runs(kind="train")
    runs = runs[[bool(list_epochs(r)) for r in runs["run_id"]]] if not runs.empty else runs
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
    which = ckpt_col.selectbox("Checkpoint", ["best", "last", *map(str, history_epochs(run_id))],
                               key=f"explain_ckpt_{run_id}", format_func=checkpoint_label)
    checkpoint = resolve(run_id, checkpoint_key(which))
    from app.explain.text_explain import checkpoint_is_text, text_explain_section  # text runs: tokens, not images

    if checkpoint_is_text(str(checkpoint), checkpoint.stat().st_mtime_ns):
        text_explain_section(run_id, which, checkpoint.stat().st_mtime_ns)
        st.stop()
    try:
        subject = run_subject(run_id, which, checkpoint.stat().st_mtime_ns)
    except (OSError, RuntimeError, ValueError) as exc:  # unreadable or mismatched checkpoint: say so, don't crash
        st.error(f"This checkpoint could not be loaded: {exc}")
        st.stop()
    subject_key = f"{run_id}:{which}:{subject.epoch}:{checkpoint.stat().st_mtime_ns}"
    st.caption(f"{subject.config.model} on {subject.config.dataset}, {epoch_label(subject.epoch)} · "
               f"explained on {subject.device}")
elif source == "Your own model":
    subject = own_model_form()
    if subject is None:
        st.stop()
    run_id, which, subject_key = None, None, subject.run_id
else:
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
        st.error(str(exc))
        st.stop()
    run_id, which, subject_key = None, None, subject.run_id

# ---- the image --------------------------------------------------------------------------------------------------
choices = ["Upload", "Example image"] + (["Validation sample", "Misclassified"] if subject.config else [])
if subject.config and st.query_params.get("sample", "").isdigit() and "explain_image_source" not in st.session_state:
    st.session_state["explain_image_source"] = "Validation sample"
    st.session_state["explain_sample"] = int(st.query_params["sample"])
image_source = st.radio("Image", choices, horizontal=True, key="explain_image_source")
picture: dict | None = None  # inputs [1, C, S, S], pixels [C, S, S], mask, notes, key; rebuilt on every run
invert_choice = None
if image_source in ("Upload", "Example image"):
    if image_source == "Upload":
        upload = st.file_uploader("Image file", type=UPLOAD_TYPES, key="explain_upload",
                                  help="PNG, JPEG, BMP, GIF (first frame), WebP or TIFF; kept in memory only.")
        data, label = (upload.getvalue(), "upload") if upload else (None, None)
    else:
        examples = sorted(p.name for p in ASSETS.glob("*.png"))
        example = st.selectbox("Example", examples, key="explain_example")
        data, label = (ASSETS / example).read_bytes(), example
    if subject.spec.invert_light:
        invert_choice = {"auto": None, "invert": True, "keep": False}[
            st.radio("Colours", ["auto", "invert", "keep"], horizontal=True, key="explain_invert",
                     help=f"{subject.spec.dataset} images are light on dark: 'auto' inverts images with a "
                          "light background.")]
    if data is not None:
        try:
            prepared = prepare_bytes(data, repr(subject.spec), invert_choice, _subject=subject)
        except ImageDecodeError as exc:
            st.error(str(exc))
            st.stop()
        digest = hashlib.sha1(data).hexdigest()[:16]
        picture = {"inputs": prepared.inputs, "pixels": prepared.pixels, "mask": None, "notes": prepared.notes,
                   "key": f"{label}:{digest}:{invert_choice}", "label": None}
else:
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
    picture = {"inputs": subject.spec.prepare_pixels(pixels), "pixels": pixels,
               "mask": split.val_masks[index] if split.val_masks is not None else None,
               "notes": [f"Validation image #{index}, labelled {subject.classes[int(split.val_y[index])]}."],
               "key": f"val:{index}", "label": int(split.val_y[index])}

if picture is None:
    st.info("Upload an image (or pick an example) to explain it.")
    st.stop()

probs = predict(subject.model, picture["inputs"])[0]
predicted = int(probs.argmax())
st.markdown(f"#### The model says: {escape_md(subject.classes[predicted])} ({float(probs[predicted]):.1%})")
detector = ood_detector(subject_key, _subject=subject)
if detector is not None:
    familiarity = detector.score(subject.model, picture["inputs"], picture["pixels"])
    if familiarity.unfamiliar:
        st.warning(familiarity.message(), icon="⚠️")
else:
    st.caption("No familiarity check: this model comes without its training data, so TrainLens cannot tell whether "
               "the input resembles what it learned from.")
view_col, prob_col = st.columns([1, 2])
with view_col:
    st.image(enlarge(image_rgb(picture["pixels"]), SHOW_PX), caption="as the model sees it")
    for note in picture["notes"]:
        st.caption(note)
with prob_col:
    plotly_chart(topk_figure(topk_table(probs.numpy(), subject.classes)), key="explain_topk")
    target = st.selectbox("Explain the class", range(len(subject.classes)), index=predicted,
                          key=f"explain_target_{subject_key}_{picture['key']}",
                          format_func=lambda i: f"{class_label(subject.classes, i)} · p = {float(probs[i]):.1%}"
                          + (" · predicted" if i == predicted else ""))
target = int(target)
small = picture["inputs"][0].numel() <= INLINE_MAX_VALUES
base_key = (subject_key, picture["key"], target)

compare_tab, training_tab, sanity_tab = st.tabs(["Compare methods", "Across training", "Sanity check"])

with compare_tab:
    method_col, sign_col = st.columns([3, 2])
    chosen = method_col.multiselect("Methods", list(METHODS), default=["saliency", "integrated_gradients"],
                                    format_func=lambda m: METHODS[m].title, key="explain_methods")
    sign = sign_col.radio("Show", ["auto", *SIGNS], horizontal=True, key="explain_sign",
                          help="auto: each method's natural view (e.g. |saliency|, positive Grad-CAM)")
    q_col, s_col = st.columns(2)
    with_quality = q_col.toggle("Quality scores", value=True, key="explain_quality")
    with_sensitivity = s_col.toggle("Include sensitivity (re-runs each method 8 times)", value=small,
                                    key="explain_sensitivity", disabled=not with_quality)
    with st.expander("How to read these maps"):
        st.markdown(reading.HOW_TO_READ)
    for row_start in range(0, len(chosen), 3):
        for col, method in zip(st.columns(3), chosen[row_start:row_start + 3]):
            with col:
                st.markdown(f"**{METHODS[method].title}**")
                st.caption(f"{METHODS[method].summary} {reading.cost(METHODS[method]).capitalize()}.")
                reason = why_not(subject.model, method)
                if reason:
                    st.info(reason)
                    continue
                job_key = (*base_key, method, with_quality, with_quality and with_sensitivity)
                args = (subject, picture, target, method, with_quality, with_quality and with_sensitivity)
                # your own model's maps are computed inline: on the job board's thread they did not finish in
                # the browser test (cause not found yet), while the same job finishes in 2 s outside Streamlit
                if (small and not METHODS[method].heavy) or subject.run_id.startswith("own:"):
                    with st.spinner(f"{METHODS[method].title}..."):
                        result = inline_map(job_key, *args)
                else:
                    board = job_board()
                    board.submit(job_key, background_map, *args)
                    if board.status(job_key) not in FINISHED:
                        background_progress(job_key)
                        continue
                    try:
                        result = board.result(job_key)
                    except Exception as exc:  # noqa: BLE001 - the job's own failure, shown where its map would be
                        st.error(f"{type(exc).__name__}: {exc}")
                        continue
                shown = METHODS[method].default_sign if sign == "auto" else sign
                st.image([enlarge(heatmap(result["map"], shown), SHOW_PX),
                          enlarge(overlay(picture["pixels"], result["map"], shown), SHOW_PX)],
                         caption=[f"heatmap ({shown})", "overlay"], width=SHOW_PX)
                st.image(colour_bar(shown, SHOW_PX), width=SHOW_PX)
                st.caption(f"{reading.colour_key(shown)} · {result['seconds'] * 1000:.0f} ms")
                blank = reading.blank_note(method, result["map"])
                if blank:
                    st.info(blank)
                if result["quality"]:
                    st.dataframe(quality_table(result["quality"]), width="stretch")
    with st.expander("What do the scores mean?"):
        st.markdown("- **infidelity** (Captum): error of the map at predicting how the output changes when random "
                    "squares are removed; **infidelity_relative** divides it by the output's own change: 0 is "
                    "perfect, about 1 is no better than noise.\n- **sensitivity_max** (Captum): the largest relative "
                    "change of the map under tiny input noise; lower is steadier.\n- **deletion_auc**: area under the "
                    "model's confidence as the most-attributed pixels are blurred away (lower is better); compare "
                    "with **deletion_auc_random**, the same in random order.\n- **mask_share** (shapes): share of "
                    "the top-attributed pixels on the object; **mask_chance** is what a random map gets.")

with training_tab:
    if subject.config is None:
        st.info("This model was not trained here: it has no checkpoints over training.")
    else:
        all_epochs = history_epochs(run_id)  # from the untrained model when the run saved it
        m_col, e_col = st.columns([1, 2])
        track = m_col.selectbox("Method", [m for m in METHODS if not why_not(subject.model, m)],
                                format_func=lambda m: METHODS[m].title, key="explain_track_method")
        epoch = e_col.select_slider("Epoch", all_epochs, value=all_epochs[-1], key=f"explain_epoch_{run_id}",
                                    format_func=epoch_label)
        stamps = tuple(resolve(run_id, e).stat().st_mtime_ns for e in all_epochs)
        history = epoch_history((picture["key"], stamps), run_id, tuple(all_epochs), target, _picture=picture)
        at_epoch = run_subject(run_id, str(epoch), resolve(run_id, epoch).stat().st_mtime_ns)
        with st.spinner(f"{METHODS[track].title} {epoch_label(epoch)}..."):
            epoch_key = (run_id, epoch, stamps[all_epochs.index(epoch)], picture["key"], target, track, False, False)
            result = inline_map(epoch_key, at_epoch, picture, target, track, False, False)
        shown = METHODS[track].default_sign if sign == "auto" else sign
        map_col, chart_col = st.columns([1, 2])
        row = history.set_index("epoch").loc[epoch_number(epoch)]
        map_col.image(enlarge(overlay(picture["pixels"], result["map"], shown), SHOW_PX),
                      caption=f"{epoch_label(epoch)}: predicts {row['predicted']}, p({subject.classes[target]}) = "
                              f"{row['target_prob']:.1%}")
        plotly_chart(epochs_figure(history, epoch_number(epoch), subject.classes[target]), key="explain_epochs",
                     container=chart_col)
        st.caption("Epoch 0 is the model before training (random weights).")

with sanity_tab:
    st.markdown("Re-initialise the layers from the top, one by one, and compare each map with the trained model's "
                "(Adebayo et al., 2018). A method that explains *the model* must lose the resemblance; one that "
                "stays similar shows the image's edges whatever the weights.")
    sanity_method = st.selectbox("Method", [m for m in METHODS if not why_not(subject.model, m)],
                                 format_func=lambda m: METHODS[m].title, key="explain_sanity_method")
    sanity_key = repr((*base_key, sanity_method))
    if st.button("Run the sanity check", key="explain_sanity_run"):
        st.session_state["explain_sanity_done"] = sanity_key
    if st.session_state.get("explain_sanity_done") == sanity_key:
        steps, stage_maps = sanity_steps(sanity_key, subject, picture, target, sanity_method)
        shown = METHODS[sanity_method].default_sign
        st.markdown("The map of the trained model, then after re-initialising each layer from the top (cumulatively):")
        per_row = 6
        for start in range(0, len(stage_maps), per_row):
            for col, (index, row) in zip(st.columns(per_row), list(steps.iterrows())[start:start + per_row]):
                label = "trained" if index == 0 else f"{row['layer']} random"
                col.image(enlarge(heatmap(stage_maps[index], shown), 84),
                          caption=f"{label}: ρ {row['compared']:.2f}", width=84)
        plotly_chart(randomization_figure(steps), key="explain_sanity_chart")
        verdict_text = randomization_verdict(steps)
        (st.success if "(passes" in verdict_text else st.error)(verdict_text)
        st.caption(f"ρ: Spearman rank correlation with the trained model's map, on the "
                   f"{'absolute' if sanity.uses_magnitude(shown) else 'signed'} map (as the method is shown). The "
                   f"threshold {sanity.THRESHOLD:.2f} on the mean over the stages was calibrated on models trained "
                   "here so that it separates the methods Adebayo et al. find sensitive to the weights (gradients, "
                   "Integrated Gradients) from Guided Backprop, which they find insensitive.")
