"""The Explain page's attribution maps: one per chosen method, as heatmap and overlay, with its quality scores and
the time it took ("Compare methods").

Light methods on small inputs run inline (st.cache_data); heavy ones (many forward passes) run on the server's job
board (app/server/explain_jobs.py), on a copy of the model, while a fragment polls their progress, so the page never
blocks. `compute_map` is the one computation both take: plain numbers and arrays, no st.* (it runs on the board's
thread too).
"""

from __future__ import annotations

import time

import streamlit as st
import torch

from app.charts.explain import class_label, quality_table
from app.charts.text import escape_md
from app.explain.choices import kept, remember
from app.explain.picture import SHOW_PX
from app.server.explain_jobs import FINISHED, JobBoard
from engine.explain import reading
from engine.explain.methods import METHODS, SIGNS, copy_model, explain, why_not
from engine.explain.quality import quality
from engine.explain.render import Subject, colour_bar, default_params, enlarge, heatmap, overlay, pixel_map

INLINE_MAX_VALUES = 4096  # inputs up to 64x64 grey: light methods are computed inline below this size
DEFAULT_METHODS = ["saliency", "integrated_gradients"]


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


@st.cache_resource(show_spinner=False)
def job_board() -> JobBoard:
    """One worker thread for heavy maps, shared by every session; jobs keyed by what they compute."""
    return JobBoard(max_workers=1, keep=64, thread_name="explain")


@st.fragment(run_every=0.5)
def background_progress(job_key: tuple) -> None:
    """A live progress bar for one background map; reruns the page once the map is ready."""
    board = job_board()
    if board.status(job_key) in (None, *FINISHED):  # None: dropped from the board, and the rerun submits it again
        st.rerun()  # the whole page, which now shows the finished map
    st.progress(board.progress(job_key), text="computing in the background...")


def compare_methods(subject: Subject, picture: dict, target: int, base_key: tuple) -> str:
    """The "Compare methods" tab: the chosen methods' maps, three to a row. Returns the sign chosen under "Show"
    ("auto": each method's natural view), which the other tabs draw their maps with too."""
    small = picture["inputs"][0].numel() <= INLINE_MAX_VALUES
    method_col, sign_col = st.columns([3, 2])
    chosen = kept("explain_methods", method_col.multiselect(
        "Methods", list(METHODS), default=None if remember("explain_methods") else DEFAULT_METHODS,
        format_func=lambda m: METHODS[m].title, key="explain_methods"))
    remember("explain_sign")
    sign = kept("explain_sign", sign_col.radio("Show", ["auto", *SIGNS], horizontal=True, key="explain_sign",
                                               help="auto: each method's natural view (e.g. |saliency|, positive "
                                                    "Grad-CAM)"))
    q_col, s_col = st.columns(2)
    with_quality = kept("explain_quality", q_col.toggle("Quality scores", value=None if remember("explain_quality")
                                                        else True, key="explain_quality"))
    with_sensitivity = kept("explain_sensitivity", s_col.toggle(
        "Sensitivity score", value=None if remember("explain_sensitivity") else small, key="explain_sensitivity",
        disabled=not with_quality, help="Re-runs each method 8 times on slightly noisy copies of the image."))
    st.caption(f"Every map here explains the class **{escape_md(class_label(subject.classes, target))}** (pick "
               "another class above).")
    with st.expander("How to read these maps"):
        st.markdown(reading.HOW_TO_READ)
    for row_start in range(0, len(chosen), 3):
        for col, method in zip(st.columns(3), chosen[row_start:row_start + 3]):
            with col:
                _method_map(subject, picture, target, base_key, method, sign, small, with_quality,
                            with_quality and with_sensitivity)
    with st.expander("What do the scores mean?"):
        st.markdown("- **infidelity** (Captum): error of the map at predicting how the output changes when random "
                    "squares are removed; **infidelity_relative** divides it by the output's own change: 0 is "
                    "perfect, about 1 is no better than noise.\n- **sensitivity_max** (Captum): the largest relative "
                    "change of the map under tiny input noise; lower is steadier.\n- **deletion_auc**: area under the "
                    "model's confidence as the most-attributed pixels are blurred away (lower is better); compare "
                    "with **deletion_auc_random**, the same in random order.\n- **mask_share** (shapes): share of "
                    "the top-attributed pixels on the object; **mask_chance** is what a random map gets.")
    return sign


def _method_map(subject: Subject, picture: dict, target: int, base_key: tuple, method: str, sign: str, small: bool,
                with_quality: bool, with_sensitivity: bool) -> None:
    """One method's column: its title and cost, then its map (or why it does not apply, or its progress)."""
    st.markdown(f"**{METHODS[method].title}**")
    st.caption(f"{METHODS[method].summary} {reading.cost(METHODS[method]).capitalize()}.")
    reason = why_not(subject.model, method)
    if reason:
        st.info(reason)
        return
    job_key = (*base_key, method, with_quality, with_sensitivity)
    args = (subject, picture, target, method, with_quality, with_sensitivity)
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
            return
        try:
            result = board.result(job_key)
        except Exception as exc:  # noqa: BLE001 - the job's own failure, shown where its map would be
            st.error(f"{type(exc).__name__}: {escape_md(exc)}")
            return
    shown = METHODS[method].default_sign if sign == "auto" else sign
    why = class_label(subject.classes, target)
    st.image([enlarge(heatmap(result["map"], shown), SHOW_PX),
              enlarge(overlay(picture["pixels"], result["map"], shown), SHOW_PX)],
             caption=[f"why {escape_md(why)}: heatmap ({shown})", f"why {escape_md(why)}: overlay"],
             width=SHOW_PX)  # captions are markdown; class names may come from a model's own file
    st.image(colour_bar(shown, SHOW_PX), width=SHOW_PX)
    st.caption(f"{reading.colour_key(shown)} · {result['seconds'] * 1000:.0f} ms")
    blank = reading.blank_note(method, result["map"])
    if blank:
        st.info(blank)
    if result["quality"]:
        # a plain table: in a third of a 1024 px projector page the data grid cut its values to "0.0…"
        st.table(quality_table(result["quality"]))
