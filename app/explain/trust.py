"""Whether to trust a map: how it changed across training ("Across training": the map and the prediction at every
checkpoint, from the untrained model when the run saved it) and whether it depends on the weights at all ("Sanity
check": Adebayo et al.'s cascading randomisation, with the verdict of engine/sanity_check.py).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.charts.explain import (epochs_figure, randomization_figure, randomization_passes, randomization_table,
                                randomization_verdict)
from app.charts.text import escape_md
from app.explain.maps import inline_map
from app.explain.picture import SHOW_PX
from app.explain.subject import checkpoint_problem, run_subject
from app.ui.presentation import plotly_chart
from engine import sanity_check as sanity
from engine.checkpoints import history_epochs, resolve
from engine.explain.methods import METHODS, explain, predict, why_not
from engine.explain.quality import randomization_check
from engine.explain.render import Subject, default_params, enlarge, heatmap, load_subject, overlay, pixel_map
from engine.records import epoch_label, epoch_number


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


@st.cache_data(max_entries=16, show_spinner="Re-initialising layers and recomputing maps...")
def sanity_steps(key: str, _subject: Subject, _picture: dict, target: int, method: str) -> tuple[pd.DataFrame, list]:
    """The stages' table and, per stage, the map of the (partly) random model; the trained map first."""
    params = default_params(method, _subject.spec)
    inputs = _picture["inputs"].to(_subject.device)
    steps = randomization_check(_subject.model, inputs, target, method, **params)
    trained = pixel_map(explain(_subject.model, inputs, target, method, **params))
    return randomization_table(steps, METHODS[method].default_sign), [trained, *(s.pixel_map for s in steps)]


def across_training(subject: Subject, run_id: str | None, picture: dict, target: int, sign: str) -> None:
    """The "Across training" tab: one method's map at a chosen checkpoint beside the prediction at every epoch."""
    if subject.config is None:
        st.info("This model was not trained here: it has no checkpoints over training.")
        return
    all_epochs = history_epochs(run_id)  # from the untrained model when the run saved it
    m_col, e_col = st.columns([1, 2])
    track = m_col.selectbox("Method", [m for m in METHODS if not why_not(subject.model, m)],
                            format_func=lambda m: METHODS[m].title, key="explain_track_method")
    epoch = e_col.select_slider("Epoch", all_epochs, value=all_epochs[-1], key=f"explain_epoch_{run_id}",
                                format_func=epoch_label)
    try:  # one unreadable checkpoint over training: say which, as the command line would
        stamps = tuple(resolve(run_id, e).stat().st_mtime_ns for e in all_epochs)
        history = epoch_history((picture["key"], stamps), run_id, tuple(all_epochs), target, _picture=picture)
        at_epoch = run_subject(run_id, str(epoch), resolve(run_id, epoch).stat().st_mtime_ns)
    except (OSError, RuntimeError, ValueError) as exc:
        st.error(f"The checkpoints over training cannot all be read: {checkpoint_problem(exc)}",
                 icon=":material/broken_image:")
        return
    with st.spinner(f"{METHODS[track].title} {epoch_label(epoch)}..."):
        epoch_key = (run_id, epoch, stamps[all_epochs.index(epoch)], picture["key"], target, track, False, False)
        result = inline_map(epoch_key, at_epoch, picture, target, track, False, False)
    shown = METHODS[track].default_sign if sign == "auto" else sign
    map_col, chart_col = st.columns([1, 2])
    row = history.set_index("epoch").loc[epoch_number(epoch)]
    map_col.image(enlarge(overlay(picture["pixels"], result["map"], shown), SHOW_PX),
                  # an image caption is markdown, and class names may come from a model's own file
                  caption=f"why {escape_md(subject.classes[target])}, {epoch_label(epoch)}: predicts "
                          f"{escape_md(row['predicted'])}, p({escape_md(subject.classes[target])}) = "
                          f"{row['target_prob']:.1%}")
    plotly_chart(epochs_figure(history, epoch_number(epoch), subject.classes[target]), key="explain_epochs",
                 container=chart_col)
    st.caption("Epoch 0 is the model before training (random weights).")


def sanity_check(subject: Subject, picture: dict, target: int, base_key: tuple) -> None:
    """The "Sanity check" tab: on request, the maps as the layers are re-initialised from the top, and the verdict."""
    st.markdown("Re-initialise the layers from the top, one by one, and compare each map with the trained model's "
                "(Adebayo et al., 2018). A method that explains *the model* must lose the resemblance; one that "
                "stays similar shows the image's edges whatever the weights.")
    sanity_method = st.selectbox("Method", [m for m in METHODS if not why_not(subject.model, m)],
                                 format_func=lambda m: METHODS[m].title, key="explain_sanity_method")
    sanity_key = repr((*base_key, sanity_method))
    if st.button("Run the sanity check", key="explain_sanity_run"):
        st.session_state["explain_sanity_done"] = sanity_key
    if st.session_state.get("explain_sanity_done") != sanity_key:
        return
    steps, stage_maps = sanity_steps(sanity_key, subject, picture, target, sanity_method)
    shown = METHODS[sanity_method].default_sign
    st.markdown(f"The map of class **{escape_md(subject.classes[target])}** for the trained model, then after "
                "re-initialising each layer from the top (cumulatively):")
    per_row = 6
    for start in range(0, len(stage_maps), per_row):
        for col, (index, row) in zip(st.columns(per_row), list(steps.iterrows())[start:start + per_row]):
            label = "trained" if index == 0 else f"{row['layer']} random"
            col.image(enlarge(heatmap(stage_maps[index], shown), 84),
                      caption=f"{label}: ρ {row['compared']:.2f}", width=84)
    plotly_chart(randomization_figure(steps), key="explain_sanity_chart")
    verdict_text = randomization_verdict(steps)
    (st.success if randomization_passes(steps) else st.error)(verdict_text)
    st.caption(f"ρ: Spearman rank correlation with the trained model's map, on the "
               f"{'absolute' if sanity.uses_magnitude(shown) else 'signed'} map (as the method is shown). The "
               f"threshold {sanity.THRESHOLD:.2f} on the mean over the stages was calibrated on models trained "
               "here so that it separates the methods Adebayo et al. find sensitive to the weights (gradients, "
               "Integrated Gradients) from Guided Backprop, which they find insensitive.")
